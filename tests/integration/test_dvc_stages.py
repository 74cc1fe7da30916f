"""The stage runner (flows/dvc_stages.py) on a real git + DVC repository of its own.

Its stages are tiny scripts, so each test takes seconds: a slow stage that waits for the test, one
that fails, and a frozen one. The real `dvc` CLI plays the user beside the flow.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

import pytest
import yaml

from flows.dvc_stages import (
    FIRST_RUN_REASON,
    FROZEN_REASON,
    UP_TO_DATE_REASON,
    StageFailed,
    run_stage,
)
from tests.project import dvc, run

pytestmark = pytest.mark.integration

# Waits for the file "release" (at most 60 s) before it writes its output; a second copy started
# while the first one runs fails at once, so a `dvc repro` that ran it beside the runner would fail
# with its own message, not with DVC's lock error.
SLOW = """\
import pathlib, sys, time
started = pathlib.Path("started")
if started.exists():
    sys.exit("slow: started a second time while the first one runs")
started.write_text("")
deadline = time.monotonic() + 60
while not pathlib.Path("release").exists() and time.monotonic() < deadline:
    time.sleep(0.05)
pathlib.Path("out.txt").write_text("slow\\n")
print("2026-12-06 16:00:00,123 WARNING kiln.slow: wrote out.txt", flush=True)
"""
BROKEN = """\
import pathlib, sys
pathlib.Path("broken.txt").write_text("half\\n")
print("2026-12-06 16:00:00,123 ERROR kiln.broken: giving up", flush=True)
sys.exit(3)
"""
REFRESH = """\
import pathlib
path = pathlib.Path("refreshed.txt")
path.write_text((path.read_text() if path.exists() else "") + "refresh\\n")
"""
# Persistent outputs, as in Kiln's dvc.yaml (DVC's run cache, which skips them, cannot save a
# stage when the working directory is outside the repository).
PIPELINE = {"stages": {
    "refresh": {"frozen": True, "cmd": "python refresh.py", "deps": ["refresh.py"],
                "outs": [{"refreshed.txt": {"persist": True}}]},
    "slow": {"cmd": "python slow.py", "deps": ["slow.py"],
             "outs": [{"out.txt": {"persist": True}}]},
    "broken": {"cmd": "python broken.py", "deps": ["broken.py", "out.txt"],
               "outs": [{"broken.txt": {"persist": True}}]},
}}


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.levelname, record.getMessage()))


@pytest.fixture
def logged() -> _Records:
    logger = logging.getLogger("tests.dvc_stages")
    handler = _Records()
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    for name, text in (("slow.py", SLOW), ("broken.py", BROKEN), ("refresh.py", REFRESH)):
        (project / name).write_text(text)
    (project / "dvc.yaml").write_text(yaml.safe_dump(PIPELINE, sort_keys=False))
    (project / ".gitignore").write_text("/started\n/release\n")
    run(["git", "init", "-q"], project)
    dvc("init", "-q", cwd=project)
    dvc("config", "core.autostage", "false", cwd=project)
    return project


def _stale(project: Path) -> dict:
    return json.loads(dvc("status", "--json", cwd=project).stdout or "{}")


def _locked(project: Path) -> dict:
    lock = project / "dvc.lock"
    return yaml.safe_load(lock.read_text())["stages"] if lock.exists() else {}


def test_dvc_repro_fails_on_the_lock_while_a_stage_runs(project: Path, logged: _Records) -> None:
    logger = logging.getLogger("tests.dvc_stages")
    outcome = {}
    runner = threading.Thread(
        target=lambda: outcome.update(slow=run_stage("slow", project, logger)), daemon=True)
    runner.start()
    try:
        deadline = time.monotonic() + 60
        while not (project / "started").exists():
            assert runner.is_alive() and time.monotonic() < deadline, logged.lines
            time.sleep(0.05)
        repro = dvc("repro", "slow", cwd=project, check=False)
        assert repro.returncode != 0, repro.stdout
        assert "Unable to acquire lock" in repro.stderr + repro.stdout, repro.stderr
    finally:
        (project / "release").write_text("")
        runner.join(timeout=60)
    assert not runner.is_alive()
    assert outcome["slow"].ran
    assert "slow" not in _stale(project)
    assert _locked(project)["slow"]["outs"][0]["path"] == "out.txt"
    assert ("WARNING", "WARNING kiln.slow: wrote out.txt") in logged.lines


def test_an_up_to_date_stage_is_skipped_with_the_reason(project: Path, logged: _Records) -> None:
    logger = logging.getLogger("tests.dvc_stages")
    (project / "release").write_text("")
    first = run_stage("slow", project, logger)
    assert (first.ran, first.reason) == (True, FIRST_RUN_REASON)
    (project / "started").unlink()
    again = run_stage("slow", project, logger)
    assert (again.ran, again.reason) == (False, UP_TO_DATE_REASON)
    assert not (project / "started").exists()  # the command did not run
    assert any(m.startswith("slow skipped: up to date") for _, m in logged.lines), logged.lines
    (project / "slow.py").write_text(SLOW + "# edited\n")
    edited = run_stage("slow", project, logger)
    assert edited.ran and "slow.py modified" in edited.reason, edited.reason


def test_a_failed_stage_leaves_dvc_lock_as_it_was(project: Path, logged: _Records) -> None:
    logger = logging.getLogger("tests.dvc_stages")
    (project / "release").write_text("")
    assert run_stage("slow", project, logger).ran  # committed by itself
    before = (project / "dvc.lock").read_bytes()
    with pytest.raises(StageFailed, match="exited with status 3"):
        run_stage("broken", project, logger)
    assert (project / "dvc.lock").read_bytes() == before
    stale = _stale(project)  # the lock is free again: the CLI answers
    assert "broken" in stale and "slow" not in stale, stale
    assert logged.lines.count(("ERROR", "ERROR kiln.broken: giving up")) == 1


def test_a_frozen_stage_runs_every_time_and_is_committed(project: Path, logged: _Records) -> None:
    logger = logging.getLogger("tests.dvc_stages")
    for _ in range(2):
        outcome = run_stage("refresh", project, logger)
        assert (outcome.ran, outcome.reason) == (True, FROZEN_REASON)
        assert "refresh" not in _stale(project)
    assert (project / "refreshed.txt").read_text() == "refresh\nrefresh\n"
    recorded = _locked(project)["refresh"]["outs"][0]
    assert recorded["size"] == len("refresh\nrefresh\n")


def test_runner_addresses_the_project_s_stage_from_another_directory(
        project: Path, logged: _Records, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # not the project: the stage is still found and committed there
    (project / "release").write_text("")
    assert run_stage("slow", project, logging.getLogger("tests.dvc_stages")).ran
    assert "slow" in _locked(project)
