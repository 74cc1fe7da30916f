"""A killed `kiln run` leaves nothing running and nothing half-recorded (issue 15).

`kiln run` is killed with SIGKILL, the process alone during the crawl (what orphaned the spider,
which kept writing into the crawl job the next run resumed and trained on) and its whole process
group during training. After each: no process of the run is left once the stage guard's grace
period is over; while one is, the project's run lock refuses a second run; dvc.lock records
nothing of the killed stage; and the next `kiln run` crawls every page and completes (the crawl
killed with its run, and its demo site, resumes and asks again for what failed as the site went).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from flows.run_guard import RunInProgress, single_run_lock
from flows.stage_guard import GRACE_S
from tests.e2e.kill_anywhere import kiln_run, processes_in
from tests.project import free_port, make_project, merge_params, run, tiny_demo_overrides

pytestmark = pytest.mark.e2e
# A crawl of ~15 s (one request at a time) and training of ~15 s, so that a kill lands inside
# them; a model that clears its floors; the baseline gate off (a test of the run, not the model).
SLOW = {
    "demo_site": {"n_items": 300},
    "crawl": {"concurrency": 1},
    "train": {"epochs": 40, "patience": 40},
    "promote": {"floors": {"accuracy": 0.3, "macro_f1": 0.0}, "baseline_gate": False},
}


def _wait_for_line(log: Path, text: str, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in log.read_text(errors="replace"):
        assert time.monotonic() < deadline, f"no {text!r} in {log}:\n{log.read_text()[-3000:]}"
        time.sleep(0.2)


def _kiln_run(project: Path, api_url: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(
        [sys.executable, "-m", "flows.cli", "run", "--project", str(project)],
        project,
        check=check,
        extra_env={"PREFECT_API_URL": api_url},
    )


@pytest.mark.parametrize(
    ("kill", "during", "line"),
    [
        # The kill during the crawl takes the demo site (served by the run) down with it: the
        # stopping spider's last requests fail, and the resumed crawl must ask for them again.
        ("process", "crawl", "Spider opened"),
        ("group", "train", "progress train"),
    ],
)
def test_a_killed_run_leaves_nothing_behind(
    tmp_path: Path, prefect_server, kill: str, during: str, line: str
) -> None:
    project = make_project(tmp_path, merge_params(tiny_demo_overrides(free_port()), SLOW))
    api = prefect_server.api_url
    log = tmp_path / "killed.log"
    killed = kiln_run(project, api, log)
    _wait_for_line(log, line)
    time.sleep(1)
    if kill == "process":
        os.kill(killed.pid, signal.SIGKILL)
    else:
        os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    assert processes_in(project), "the stage had already ended: the kill missed it"

    # dvc.lock holds exactly the stages the killed run finished and committed (its
    # flow process, the only one that commits, is gone)
    lock = (
        yaml.safe_load((project / "dvc.lock").read_text())
        if (project / "dvc.lock").exists()
        else {"stages": {}}
    )
    committed = set(re.findall(r"(\w+): committed to dvc.lock", log.read_text()))
    assert set(lock["stages"]) == committed and during not in committed, (lock, committed)

    # While any process of the killed run lives, the run lock refuses another run; once the
    # lock is free, none is left.
    deadline = time.monotonic() + GRACE_S + 15
    refusals = 0
    while True:
        try:
            with single_run_lock(project):
                assert not processes_in(project), "the lock was free while the run lived on"
                break
        except RunInProgress:
            refusals += 1
            assert time.monotonic() < deadline, f"still running: {processes_in(project)}"
            time.sleep(0.2)
    assert refusals, "the stage's processes did not hold the run lock"

    _kiln_run(project, api)  # completes: crawl (resumed or anew), every later stage, promote
    crawl = json.loads((project / "reports" / "crawl.json").read_text())
    assert not crawl["partial"] and crawl["items"] >= 290, crawl  # 300 listed, 2 broken pages
    registry = json.loads((project / "registry" / "registry.json").read_text())
    assert registry["champion"] == "v0001"
    stale = run([sys.executable, "-m", "dvc", "status", "--json"], project).stdout
    assert json.loads(stale or "{}") == {}
    assert not processes_in(project)


def test_kill_anywhere_one_round(tmp_path: Path) -> None:
    """tests/e2e/kill_anywhere.py, shortened to one random kill: zero violations."""
    from tests.e2e.kill_anywhere import main  # noqa: PLC0415

    # seed 9: a group kill 47 % into the time of the first run (one round: no second run to time)
    assert main(["--runs", "1", "--seed", "9", "--keep", str(tmp_path)]) == 0
