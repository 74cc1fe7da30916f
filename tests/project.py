"""Test helpers: a throw-away Kiln project (git + DVC repository) and the Prefect REST API.

`make_project` copies the code, dvc.yaml and params.yaml into a temporary directory, applies
params overrides, and makes it a git + DVC repository of its own, so integration and end-to-end
tests run the real `dvc` and `kiln` commands without touching the checkout.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from flows.dvc_plots import TEMPLATE, ensure_template

REPO = Path(__file__).resolve().parents[1]
# labels/: the overrides file; serve/: `kiln serve` and the task types' request schemas
CODE = ("tasks", "flows", "crawlers", "serve", "dvc.yaml", ".dvcignore", "labels",
        "prefect.yaml")  # prefect.yaml: `kiln deploy` (flows/deploy.py)
BIN = Path(sys.executable).parent

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "kiln-tests", "GIT_AUTHOR_EMAIL": "tests@kiln.invalid",
    "GIT_COMMITTER_NAME": "kiln-tests", "GIT_COMMITTER_EMAIL": "tests@kiln.invalid",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def env() -> dict[str, str]:
    """The environment stage subprocesses run with: this venv first on PATH, offline, no TTY."""
    return {**os.environ, **GIT_IDENTITY, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "PYTHONUNBUFFERED": "1", "DVC_NO_ANALYTICS": "1"}


def run(cmd: list[str], cwd: Path, check: bool = True, timeout: float = 600,
        extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, env={**env(), **(extra_env or {})}, text=True,
                          capture_output=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} exited {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}"
                             f"\n--- stderr\n{proc.stderr[-4000:]}")
    return proc


def dvc(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "dvc", *args], cwd, check=check)


def merge_params(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """`base` with `overrides` merged in: nested dicts merge, other values replace."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_params(out[key], value)
        else:
            out[key] = value
    return out


def tiny_demo_overrides(port: int) -> dict[str, Any]:
    """A demo site and model small enough for a 2-core CI machine (about a minute a run)."""
    return {
        "demo_site": {"port": port, "n_items": 150, "per_page": 25, "n_duplicates": 5,
                      "n_broken": 2, "bad_label_share": 0.02},
        "crawl": {"start_urls": [f"http://127.0.0.1:{port}/"], "concurrency": 8},
        "validate": {"min_rows": 60, "max_quarantine_share": 0.1},
        "train": {"epochs": 4, "patience": 2, "channels": 8, "batch_size": 32},
        "evaluate": {"min_accuracy": 0.3},
    }


def write_params(project: Path, overrides: dict[str, Any]) -> None:
    base = yaml.safe_load((project / "params.yaml").read_text())
    merged = merge_params(base, overrides)
    (project / "params.yaml").write_text(yaml.safe_dump(merged, sort_keys=False))


def set_params(path: Path, overrides: dict[str, Any]) -> None:
    """Apply `overrides` to the params file at `path` the way `dvc exp run -S` does (DVC's own
    code: comments and mapping styles kept), e.g. {"train": {"epochs": 2}} as train.epochs=2."""
    from dvc.utils.hydra import apply_overrides  # noqa: PLC0415

    def flat(tree: dict[str, Any], prefix: str = "") -> list[str]:
        return [item for key, value in tree.items() for item in (
            flat(value, f"{prefix}{key}.") if isinstance(value, dict)
            else [f"{prefix}{key}={json.dumps(value)}"])]  # JSON values are Hydra values

    apply_overrides(path, flat(overrides))


def make_project(root: Path, overrides: dict[str, Any] | None = None,
                 base: str = "params.yaml", verbatim: bool = False) -> Path:
    """A fresh git + DVC repository holding Kiln's code and params (with overrides).

    `base`: the params file the overrides apply to, relative to the repository (e.g.
    "examples/jokes.params.yaml" for another task type). `verbatim`: keep the file as written
    (comments, flow mappings) and apply the overrides with `set_params`, not a YAML re-dump."""
    project = root / "project"
    project.mkdir()
    for name in CODE:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, project / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy2(src, project / name)
    if verbatim:
        shutil.copyfile(REPO / base, project / "params.yaml")
        set_params(project / "params.yaml", overrides or {})
    else:
        params = yaml.safe_load((REPO / base).read_text())
        (project / "params.yaml").write_text(
            yaml.safe_dump(merge_params(params, overrides or {}), sort_keys=False))
    (project / ".gitignore").write_text("/.kiln/\n__pycache__/\n")
    run(["git", "init", "-q"], project)
    dvc("init", "-q", cwd=project)
    # The repository's DVC settings (no analytics; the cache hardlinks outputs instead of copying).
    shutil.copyfile(REPO / ".dvc" / "config", project / ".dvc" / "config")
    # ... whose `plots.html_template` is the offline page (flows/dvc_plots.py), made once here
    (project / TEMPLATE).parent.mkdir(exist_ok=True)
    shutil.copyfile(ensure_template(REPO), project / TEMPLATE)
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "kiln test project"], project)
    return project


def crawl_and_record(project: Path) -> None:
    """The crawl stage against the demo site params.yaml names (served for its duration), then
    recorded in dvc.lock: the crawl is frozen, so `dvc repro` never runs it itself."""
    from crawlers.demo_site import start_demo_site  # noqa: PLC0415 (only tests that crawl)
    from tasks.core.params import load_params  # noqa: PLC0415

    site = start_demo_site(load_params(project / "params.yaml").demo_site)
    try:
        run([sys.executable, "-m", "tasks.crawl"], project)
    finally:
        site.stop()
    dvc("commit", "--force", "crawl", cwd=project)


def flow_run_id(kiln_output: str) -> str:
    match = re.search(r"/runs/flow-run/([0-9a-f-]{36})", kiln_output)
    if not match:
        raise AssertionError(f"no flow run URL in kiln's output:\n{kiln_output[-3000:]}")
    return match.group(1)


def prefect_api(api_url: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """GET (or POST `body` to) the Prefect server's REST API."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{api_url}{path}", data=data,  # noqa: S310 (loopback)
                                     headers={"Content-Type": "application/json"})
    # Like Prefect's own client, retry 429/502/503: a loaded SQLite server answers 503 when its
    # database is busy (seen with a load average of 6 on 2 cores).
    for attempt in range(6):
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310 (loopback)
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            if exc.code not in (429, 502, 503) or attempt == 5:
                raise
            time.sleep(0.5 * 2**attempt)
    raise AssertionError("unreachable")


TERMINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def wait_flow_run(api_url: str, run_id: str, types: set[str], timeout_s: float) -> dict[str, Any]:
    """The flow run (as the REST API returns it) once its state is one of `types`."""
    deadline = time.monotonic() + timeout_s
    while (flow_run := prefect_api(api_url, f"/flow_runs/{run_id}"))["state"]["type"] not in types:
        if time.monotonic() > deadline:
            raise AssertionError(f"flow run {run_id} still {flow_run['state']} after {timeout_s} s")
        time.sleep(2)
    return flow_run


@contextmanager
def kiln_worker(project: Path, api_url: str, log: Path, name: str,
                **settings: str) -> Iterator[subprocess.Popen]:
    """`kiln worker` in `project` (on its work pool), its output in `log`, with `settings` in its
    environment (e.g. PREFECT_WORKER_QUERY_SECONDS="1"); stopped with its process group after."""
    with log.open("w") as out:
        command = [sys.executable, "-m", "flows.cli", "worker", "--project", str(project),
                   "--name", name]
        proc = subprocess.Popen(command, cwd=project, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True,
                                env={**env(), "PREFECT_API_URL": api_url, **settings})
    try:
        yield proc
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def task_run(api_url: str, run_id: str, name: str) -> dict[str, Any]:
    """The task run called `name` in one flow run (as the REST API returns it)."""
    runs = prefect_api(api_url, "/task_runs/filter",
                       {"flow_runs": {"id": {"any_": [run_id]}}, "limit": 50})
    matches = [r for r in runs if r["name"] == name]
    if len(matches) != 1:
        raise AssertionError(f"{len(matches)} task runs named {name!r} in flow run {run_id}")
    return matches[0]


def task_run_states(api_url: str, run_id: str) -> dict[str, str]:
    """{task run name: state name} of one flow run, e.g. {"train": "Skipped"}."""
    runs = prefect_api(api_url, "/task_runs/filter",
                       {"flow_runs": {"id": {"any_": [run_id]}}, "limit": 50})
    return {r["name"]: r["state"]["name"] for r in runs}


def record_validated(project: Path, profile: Any, cache_dir: str | None = None) -> str:
    """Record `profile` (a DataFrame) as a successful validate leaves it: a DVC repository whose
    dvc.yaml declares data/validated, committed by DVC itself into dvc.lock and the cache (as
    the drift check reads the previous version). Returns the lock's md5 of data/validated."""
    from dvc.repo import Repo  # noqa: PLC0415 (only the drift tests need DVC in-process)

    if not (project / ".dvc").is_dir():
        Repo.init(str(project), no_scm=True)
    if cache_dir:
        with (project / ".dvc/config").open("a") as config:
            config.write(f"[cache]\n    dir = {cache_dir}\n")
    stage = {"cmd": "python -m tasks.validate", "outs": [{"data/validated": {"persist": True}}]}
    (project / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"validate": stage}}))
    (project / "data/validated").mkdir(parents=True, exist_ok=True)
    profile.to_parquet(project / "data/validated/profile.parquet")
    with Repo(str(project)) as repo:
        repo.commit(f"{project / 'dvc.yaml'}:validate", force=True)
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    return lock["stages"]["validate"]["outs"][0]["md5"]
