"""The flow's stage task (flows/refresh_and_retrain.py `dvc_stage`) on the real Prefect server: a
stage's progress lines become its task run's progress artifact, updated while the stage runs and
100 when it succeeded; a stage that prints none gets one at 100 too.

The project is a git + DVC repository of two tiny stages: `train` counts 10 steps with
tasks.core.progress (every step logged) and waits at step 5 for the test, `validate` prints
nothing. A small flow in a subprocess runs both through `dvc_stage`, as `kiln run` does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from tests.project import dvc, env, prefect_api, run

pytestmark = pytest.mark.integration

TRAIN = """\
import logging, pathlib, time
from tasks.core.progress import Progress
from tasks.core.stage import setup_logging
setup_logging()
log = logging.getLogger("kiln.train")
with Progress("train", 10, unit="steps", logger=log, every_s=0, tty=False) as bar:
    for step in range(10):
        bar.update()
        if step == 4:  # half way: the test looks at the artifact, then lets it finish
            deadline = time.monotonic() + 60
            while not pathlib.Path("release").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
pathlib.Path("model.txt").write_text("trained\\n")
"""
VALIDATE = 'import pathlib; pathlib.Path("valid.txt").write_text("ok\\n")\n'
PIPELINE = {"stages": {
    "validate": {"cmd": "python validate.py", "deps": ["validate.py"],
                 "outs": [{"valid.txt": {"persist": True}}]},
    "train": {"cmd": "python train.py", "deps": ["train.py", "valid.txt"],
              "outs": [{"model.txt": {"persist": True}}]},
}}  # fmt: skip
FLOW = """\
import sys
from pathlib import Path
from prefect import flow
from flows.refresh_and_retrain import dvc_stage

@flow
def probe(project: str) -> None:
    for stage in ("validate", "train"):
        dvc_stage.with_options(name=stage, task_run_name=stage)(stage, Path(project))

probe.with_options(name=sys.argv[2])(sys.argv[1])
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    (project / "train.py").write_text(TRAIN)
    (project / "validate.py").write_text(VALIDATE)
    (project / "dvc.yaml").write_text(yaml.safe_dump(PIPELINE, sort_keys=False))
    (project / ".gitignore").write_text("/release\n")
    run(["git", "init", "-q"], project)
    dvc("init", "-q", cwd=project)
    dvc("config", "core.autostage", "false", cwd=project)
    return project


def _artifacts(api: str, flow_name: str) -> dict[str, dict]:
    """The flow run's progress artifacts by key, once its run exists."""
    runs = prefect_api(api, "/flow_runs/filter", {"flows": {"name": {"any_": [flow_name]}}})
    if not runs:
        return {}
    found = prefect_api(api, "/artifacts/filter", {"artifacts": {
        "flow_run_id": {"any_": [runs[0]["id"]]}, "type": {"any_": ["progress"]}}})  # fmt: skip
    return {a["key"]: a for a in found}


def test_a_stage_s_progress_is_an_artifact_of_its_task_run(prefect_server, project, tmp_path):
    api, flow_name = prefect_server.api_url, f"progress-probe-{uuid.uuid4().hex[:8]}"
    (tmp_path / "flow.py").write_text(FLOW)
    proc = subprocess.Popen(
        [sys.executable, str(tmp_path / "flow.py"), str(project), flow_name], cwd=project,
        env={**env(), "PREFECT_API_URL": api}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip
    try:
        half = None
        deadline = time.monotonic() + 120
        while half is None and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            train = _artifacts(api, flow_name).get("train-progress")
            half = train if train and train["data"] == 50 else None
            time.sleep(0.5)
        assert half is not None, "the train artifact never showed 50 % while train ran"
        assert half["description"].startswith("train: 5/10 steps")
        (project / "release").write_text("")
        output, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, output
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    artifacts = _artifacts(api, flow_name)
    train, validate = artifacts["train-progress"], artifacts["validate-progress"]
    assert train["id"] == half["id"]  # one artifact per stage, updated in place
    assert (train["data"], validate["data"]) == (100, 100)
    assert (
        train["description"].startswith("train: 10/10 steps") and "done in" in train["description"]
    )
    assert validate["description"] == "validate: done"
    task_run = prefect_api(api, f"/task_runs/{train['task_run_id']}")
    assert task_run["name"] == "train"
