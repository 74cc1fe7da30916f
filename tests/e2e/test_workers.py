"""Workers: `kiln deploy` and two `kiln worker`s, each in its own clone of a project's git
repository, on one Prefect server backed by PostgreSQL. Each flow run is taken by one worker only,
runs in that worker's clone, and the deployment's concurrency limit keeps runs one at a time; a
worker killed with its run leaves the run Crashed and the next run completes on the other."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from flows.deploy import pool_name
from flows.prefect_server import PrefectServer, start_server
from tests.postgres import PostgresCluster
from tests.project import (
    TERMINAL_STATES,
    free_port,
    kiln_worker,
    make_project,
    prefect_api,
    run,
    tiny_demo_overrides,
    wait_flow_run,
)

pytestmark = pytest.mark.e2e
FLOORS = {"promote": {"floors": {"accuracy": 0.3, "macro_f1": 0.0}, "baseline_gate": False}}
# Far from now: no scheduled run starts during the test; the runs are created by hand.
SCHEDULE = {"cron": "0 3 29 2 *", "timezone": "UTC"}


@pytest.fixture
def pg_prefect(postgres: PostgresCluster, tmp_path: Path) -> Iterator[PrefectServer]:
    server = start_server(tmp_path / "prefect-home", free_port(),
                          database_url=postgres.create_database("prefect"))
    try:
        yield server
    finally:
        server.stop()


def _worker(clone: Path, name: str, api: str, log: Path,
            heartbeat_s: int | None = None) -> AbstractContextManager[subprocess.Popen]:
    beats = {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(heartbeat_s)} if heartbeat_s else {}
    return kiln_worker(clone, api, log, name, PREFECT_WORKER_QUERY_SECONDS="1",
                       PREFECT_WORKER_HEARTBEAT_SECONDS="5", **beats)


def _clones_of_one_project(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "origin").mkdir()
    origin = make_project(tmp_path / "origin", {**tiny_demo_overrides(free_port()), **FLOORS,
                                                "project": {"name": "workers"},
                                                "schedule": SCHEDULE})
    clones = {n: tmp_path / n for n in ("worker-a", "worker-b")}
    for clone in clones.values():
        run(["git", "clone", "-q", str(origin), str(clone)], tmp_path)
    return clones


def _deploy(clone: Path, api: str, **extra_env: str) -> dict:
    deployed = run([sys.executable, "-m", "flows.cli", "deploy", "--project", str(clone)], clone,
                   extra_env={"PREFECT_API_URL": api, **extra_env})
    assert f"Created process work pool '{pool_name('workers')}'" in deployed.stdout
    [deployment] = prefect_api(api, "/deployments/filter", {})
    return deployment


def _kill_with_its_run(worker: subprocess.Popen, flow_run: dict) -> None:
    """SIGKILL the worker and its flow-run process (which Prefect starts in a session of its
    own): as when the machine goes away, nobody reports anything."""
    pid = int(str(flow_run["infrastructure_pid"]).rsplit(":", 1)[-1])
    for group in (worker.pid, pid):
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass
    worker.wait(timeout=30)


def _taker(logs: dict[str, Path], run_id: str, timeout_s: float) -> list[str]:
    """The workers whose output shows the run's flow-run process (it logs its UI link when it
    starts; a worker that lost the race for the run logs only an aborted submission)."""
    deadline = time.monotonic() + timeout_s
    while not (takers := [n for n, p in logs.items() if f"/runs/flow-run/{run_id}\n" in
                          p.read_text()]):  # fmt: skip
        assert time.monotonic() < deadline, {n: p.read_text()[-3000:] for n, p in logs.items()}
        time.sleep(1)
    return takers


def test_two_workers_one_run_each_one_at_a_time_and_a_killed_worker_crashes_only_its_run(
        pg_prefect: PrefectServer, tmp_path: Path) -> None:
    """One scenario for every claim (one project, one server, two workers; ~3 min): two runs
    started at once go one at a time, each to one worker only; the worker that took the first is
    killed with it mid-run: that run is Crashed by `kiln deploy`'s automation and the second then
    completes on the other worker, in its clone only."""
    api = pg_prefect.api_url
    clones = _clones_of_one_project(tmp_path)
    beat = 30  # Prefect's least; `kiln deploy` crashes a run silent for 3 of them
    deployment = _deploy(clones["worker-a"], api, PREFECT_FLOWS_HEARTBEAT_FREQUENCY=str(beat))
    pool = pool_name("workers")
    assert (deployment["name"], deployment["work_pool_name"]) == ("refresh-and-retrain", pool)
    assert deployment["global_concurrency_limit"]["limit"] == 1
    assert deployment["concurrency_options"]["collision_strategy"] == "ENQUEUE"
    assert deployment["schedules"][0]["schedule"]["cron"] == SCHEDULE["cron"]
    assert deployment["job_variables"] == {"command": "python -m prefect.engine"}
    assert deployment["pull_steps"] == [{"prefect.deployments.steps.set_working_directory": {
        "directory": "{{ $KILN_PROJECT_DIR }}"}}]
    [automation] = prefect_api(api, "/automations/filter", {})
    assert automation["trigger"]["within"] == 3 * beat

    logs = {n: tmp_path / f"{n}.log" for n in clones}
    new_run = f"/deployments/{deployment['id']}/create_flow_run"
    with _worker(clones["worker-a"], "worker-a", api, logs["worker-a"], beat) as worker_a, \
            _worker(clones["worker-b"], "worker-b", api, logs["worker-b"], beat) as worker_b:
        run_ids = [prefect_api(api, new_run, {})["id"] for _ in range(2)]
        deadline = time.monotonic() + 120
        while not (running := [i for i in run_ids if prefect_api(api, f"/flow_runs/{i}")
                               ["state"]["type"] == "RUNNING"]):  # fmt: skip
            assert time.monotonic() < deadline, "neither run started"
            time.sleep(1)
        [first] = running  # one at a time: the other waits for the slot
        [second] = [i for i in run_ids if i != first]
        [taker] = _taker(logs, first, timeout_s=60)
        time.sleep(5)  # mid-run: the flow has sent its first heartbeat and started the crawl
        # Both workers keep polling the waiting run; neither may start it.
        assert prefect_api(api, f"/flow_runs/{second}")["state"]["type"] == "SCHEDULED"
        killed = {"worker-a": worker_a, "worker-b": worker_b}[taker]
        _kill_with_its_run(killed, prefect_api(api, f"/flow_runs/{first}"))
        crashed = wait_flow_run(api, first, TERMINAL_STATES, timeout_s=3 * beat + 90)
        assert crashed["state"]["type"] == "CRASHED", crashed["state"]
        done = wait_flow_run(api, second, TERMINAL_STATES, timeout_s=300)
    assert done["state"]["type"] == "COMPLETED", done["state"]
    assert crashed["end_time"] is None or done["start_time"] >= crashed["end_time"]
    [other] = [n for n in clones if n != taker]
    assert _taker(logs, second, timeout_s=0) == [other]
    assert _taker(logs, first, timeout_s=0) == [taker]
    # The completed run wrote only in its worker's clone; the killed one promoted nothing.
    assert (clones[other] / "registry" / "registry.json").exists()
    assert (clones[other] / "dvc.lock").exists()
    assert not (clones[taker] / "registry" / "registry.json").exists()
