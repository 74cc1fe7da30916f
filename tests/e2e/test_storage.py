"""Refreshes stored beyond one machine (flows/storage.py, docs/storage.md): a DVC remote and one
git commit per refresh, on a tiny demo site and a real Prefect server.

The directory-remote test goes through three runs of one project: a full run (pushed and
committed); a run whose promote decision changes while the remote is down (fails loudly, nothing
lost, nothing committed); a run with the remote back (every stage up to date, the pending refresh
is pushed and committed). A fresh clone then restores each refresh with `git checkout` + `dvc
pull`, `dvc repro` has nothing to do, and the clone serves the champion from the remote's copy.
The S3 test runs once against moto's S3 server on loopback through the real dvc-s3.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.dvc_stages import stage_names
from tests.project import (
    REPO,
    dvc,
    flow_run_id,
    free_port,
    make_project,
    prefect_api,
    run,
    task_run_states,
    tiny_demo_overrides,
    write_params,
)

pytestmark = pytest.mark.e2e
STAGES = stage_names(REPO)
FLOORS = {"promote": {"floors": {"accuracy": 0.3, "macro_f1": 0.0}, "baseline_gate": False}}
BRANCH = "kiln-refreshes"


def _kiln(project: Path, *args: str, api_url: str | None = None, check: bool = True,
          extra_env: dict[str, str] | None = None, cwd: Path | None = None):  # noqa: ANN202
    env = {**({"PREFECT_API_URL": api_url} if api_url else {}), **(extra_env or {})}
    return run([sys.executable, "-m", "flows.cli", *args, "--project", str(project)],
               cwd or project, check=check, extra_env=env)


def _digests(root: Path) -> dict[str, str]:
    """sha256 of every file under `root`, by relative path."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".gitignore"}


def _outputs(project: Path) -> dict[str, str]:
    """Digests of every stage output: data, models, export, reports."""
    found = {}
    for name in ("data", "models", "export", "reports"):
        found |= {f"{name}/{k}": v for k, v in _digests(project / name).items()}
    return found


def _git(project: Path, *args: str) -> str:
    return run(["git", *args], project).stdout.strip()


def _png(project: Path) -> Path:
    return next(iter(sorted((project / "data" / "raw").rglob("*.png"))))


def _clone_and_restore(project: Path, commit: str, dest: Path,
                       extra_env: dict[str, str] | None = None) -> Path:
    """A second machine: a git clone, `git checkout COMMIT`, `dvc pull`; nothing else copied."""
    run(["git", "clone", "-q", str(project), str(dest)], dest.parent)
    run(["git", "checkout", "-q", commit], dest)
    run([sys.executable, "-m", "dvc", "pull"], dest, extra_env=extra_env)
    status = run([sys.executable, "-m", "dvc", "status", "--json"], dest, extra_env=extra_env)
    assert json.loads(status.stdout or "{}") == {}, status.stdout
    repro = run([sys.executable, "-m", "dvc", "repro"], dest, extra_env=extra_env)
    assert "Data and pipelines are up to date" in repro.stdout, repro.stdout
    return dest


def test_directory_remote_commit_per_refresh_restore_and_retry(tmp_path: Path,  # noqa: PLR0915 (one scenario)
                                                               prefect_server) -> None:
    api = prefect_server.api_url
    remote = tmp_path / "remote"
    project = make_project(tmp_path, {**tiny_demo_overrides(free_port()), **FLOORS,
                                      "storage": {"remote": str(remote), "branch": BRANCH}})
    main = _git(project, "rev-parse", "HEAD")

    # 1. A full run: pushed to the remote and committed on the branch; HEAD stays where it was.
    first = _kiln(project, "run", api_url=api)
    states = task_run_states(api, flow_run_id(first.stdout))
    assert states == {**dict.fromkeys(STAGES, "Completed"), "storage": "Completed"}, states
    assert f"on branch {BRANCH}" in first.stdout
    assert _git(project, "rev-parse", "HEAD") == main
    refresh1 = _git(project, "rev-parse", BRANCH)
    assert _git(project, "rev-parse", f"{refresh1}^") == main
    committed = set(_git(project, "diff", "--name-only", main, refresh1).splitlines())
    assert {"dvc.lock", ".dvc/config", "registry/registry.json", "storage/registry/v0001.dvc",
            "data/.gitignore"} <= committed, committed  # params.yaml: as committed before
    subject = _git(project, "log", "-1", "--format=%s", refresh1)
    metrics = json.loads((project / "reports" / "metrics.json").read_text())
    assert subject.startswith("Kiln refresh: data ") and "promoted, champion v0001" in subject
    assert f"accuracy={metrics['accuracy']:.4f}" in subject
    assert json.loads(dvc("status", "--json", cwd=project).stdout or "{}") == {}
    assert json.loads(dvc("status", "--cloud", "--json", cwd=project).stdout or "{}") == {}
    outputs1 = _outputs(project)
    promotion1 = (project / "reports" / "promotion.json").read_bytes()

    # 2. The remote goes down (a file where its directory was) while promote's decision changes:
    # the run fails loudly at `storage`, nothing is committed, nothing local is lost.
    remote.rename(tmp_path / "remote-away")
    remote.write_text("not a directory\n")
    write_params(project, {"promote": {"min_improvement": 0.001}})
    second = _kiln(project, "run", api_url=api, check=False)
    assert second.returncode == 1, second.stdout + second.stderr
    run_id = flow_run_id(second.stdout)
    assert prefect_api(api, f"/flow_runs/{run_id}")["state"]["type"] == "FAILED"
    assert task_run_states(api, run_id)["storage"] == "Failed"
    assert "this refresh is NOT stored" in second.stderr
    assert _git(project, "rev-parse", BRANCH) == refresh1
    history = _kiln(project, "history", check=False)
    assert "NOT STORED" in history.stderr and len(history.stdout.splitlines()) == 2
    promotion2 = (project / "reports" / "promotion.json").read_bytes()
    assert promotion2 != promotion1  # the new decision is recorded locally ...
    assert json.loads(dvc("status", "--json", cwd=project).stdout or "{}") == {}  # ... and cached

    # 3. The remote is back: the next run (every stage up to date) pushes and commits it.
    remote.unlink()
    (tmp_path / "remote-away").rename(remote)
    third = _kiln(project, "run", api_url=api)
    states = task_run_states(api, flow_run_id(third.stdout))
    assert states == {"crawl": "Completed", **dict.fromkeys(STAGES[1:], "Skipped"),
                      "storage": "Completed"}, states
    refresh2 = _git(project, "rev-parse", BRANCH)
    assert _git(project, "rev-parse", f"{refresh2}^") == refresh1
    assert not (project / ".kiln" / "storage-pending.json").exists()
    rows = json.loads(_kiln(project, "history", "--json").stdout)
    assert [r["commit"] for r in rows["refreshes"]] == [refresh2, refresh1]
    assert rows["pending"] is None
    assert [r["champion"] for r in rows["refreshes"]] == ["v0001", "v0001"]
    assert rows["refreshes"][0]["promotion"] in ("kept", "unchanged")
    assert rows["refreshes"][1]["promotion"] == "promoted"
    assert f"accuracy={metrics['accuracy']:.4f}" in rows["refreshes"][1]["metrics"]
    table = _kiln(project, "history").stdout.splitlines()
    assert table[0].split() == ["refreshed", "(UTC)", "commit", "data", "metrics", "promotion",
                                "champion"]
    assert table[1].split()[1] == refresh2[:10] and len(table) == 3

    # 4. A second machine: a clone restores each refresh exactly and serves the champion.
    machines = tmp_path / "machines"
    machines.mkdir()
    clone = _clone_and_restore(project, refresh2, machines / "latest")
    assert _outputs(clone) == _outputs(project)
    assert _digests(clone / "registry" / "versions") == _digests(project / "registry" /
                                                                 "versions")
    old = _clone_and_restore(project, refresh1, machines / "first")
    assert _outputs(old) == outputs1
    assert (old / "reports" / "promotion.json").read_bytes() == promotion1
    png = _png(project)
    here = json.loads(_kiln(project, "predict", str(png), "--json").stdout)
    there = json.loads(_kiln(clone, "predict", str(png), "--json").stdout)
    assert there == here and there[0]["version"] == "v0001"
    # the registry's hash check holds on the clone: a damaged file is refused, not served
    onnx = clone / "registry" / "versions" / "v0001" / "model.onnx"
    onnx.chmod(0o644)
    onnx.write_bytes(onnx.read_bytes()[:-1])
    refused = _kiln(clone, "predict", str(png), check=False)
    assert refused.returncode == 1 and "sha256" in refused.stderr, refused.stderr


@contextlib.contextmanager
def _moto_s3(port: int) -> Iterator[str]:
    """moto's S3 server on loopback; its endpoint URL. Its buckets live in this process, so a
    server started again on the same port finds them (a remote that was down and came back)."""
    from moto.server import ThreadedMotoServer  # noqa: PLC0415

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
          "AWS_DEFAULT_REGION": "us-east-1", "AWS_SESSION_TOKEN": "testing"}


def test_s3_remote_on_moto(tmp_path: Path, prefect_server, monkeypatch) -> None:  # noqa: PLR0915 (one scenario)
    """dvc-s3 against moto's S3 server: stored, a run while the endpoint is down fails loudly and
    the next one stores it, and a clone serves the champion pulled from the bucket."""
    import boto3  # noqa: PLC0415

    from tests.integration.test_serve import _live_server  # noqa: PLC0415

    for key, value in S3_ENV.items():
        monkeypatch.setenv(key, value)
    api = prefect_server.api_url
    port = free_port()
    with _moto_s3(port) as endpoint:
        s3 = boto3.client("s3", endpoint_url=endpoint)
        s3.create_bucket(Bucket="kiln")
        project = make_project(tmp_path, {
            **tiny_demo_overrides(free_port()), **FLOORS,
            "storage": {"remote": "s3://kiln/refreshes", "endpoint_url": endpoint}})
        first = _kiln(project, "run", api_url=api)
        assert "on branch kiln-refreshes" in first.stdout
        config = (project / ".dvc" / "config").read_text()
        assert "s3://kiln/refreshes" in config and endpoint in config
        keys = s3.list_objects_v2(Bucket="kiln", Prefix="refreshes/")["KeyCount"]
        assert keys > 10, keys
        refresh1 = _git(project, "rev-parse", "kiln-refreshes")

    # The endpoint is down: the run fails at storage with the client's error, nothing committed.
    write_params(project, {"promote": {"min_improvement": 0.001}})
    started = time.monotonic()
    down = _kiln(project, "run", api_url=api, check=False)
    # it fails, it does not hang: 35 s on 2 busy cores, crawl and promote included
    assert time.monotonic() - started < 180
    assert down.returncode == 1 and "this refresh is NOT stored" in down.stderr, down.stderr
    assert task_run_states(api, flow_run_id(down.stdout))["storage"] == "Failed"
    assert _git(project, "rev-parse", "kiln-refreshes") == refresh1
    assert (project / ".kiln" / "storage-pending.json").exists()

    with _moto_s3(port):  # back, with the same bucket: the next run stores the refresh
        _kiln(project, "run", api_url=api)
        refresh2 = _git(project, "rev-parse", "kiln-refreshes")
        assert _git(project, "rev-parse", f"{refresh2}^") == refresh1
        assert not (project / ".kiln" / "storage-pending.json").exists()
        clone = _clone_and_restore(project, "kiln-refreshes", tmp_path / "clone")
        assert _outputs(clone) == _outputs(project)
        png = _png(project)
        assert json.loads(_kiln(clone, "predict", str(png), "--json").stdout) == \
            json.loads(_kiln(project, "predict", str(png), "--json").stdout)
    # The clone serves the champion it pulled (the server checks each file's sha256).
    with _live_server(clone) as (_port, http):
        assert http.get("/health").json()["model_version"] == "v0001"
        served = http.get("/model").json()
    registry_json = json.loads((project / "registry" / "registry.json").read_text())
    assert served["version"] == "v0001", served
    assert registry_json["champion"] == "v0001"
