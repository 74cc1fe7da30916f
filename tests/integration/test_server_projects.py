"""One Prefect server, several projects: runs carry their project's tags, and `kiln server
--stop` does not stop the server under another project's run in progress."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from flows.prefect_server import PrefectServer, api_answers, project_tags, start_server
from tests.project import flow_run_id, free_port, make_project, prefect_api, run

pytestmark = pytest.mark.integration


def _running_flow_run(api_url: str, tags: list[str]) -> dict:
    flow = prefect_api(api_url, "/flows/", {"name": "refresh-and-retrain"})
    return prefect_api(api_url, "/flow_runs/", {
        "flow_id": flow["id"], "name": "another-projects-run", "tags": tags,
        "state": {"type": "RUNNING", "name": "Running"}})


def _stop(project: Path, *flags: str):  # noqa: ANN202 (CompletedProcess)
    return run([sys.executable, "-m", "flows.cli", "server", "--stop", "--project", str(project),
                *flags], project, check=False)


def test_stop_refuses_while_another_project_runs_and_force_stops(tmp_path: Path) -> None:
    here, other = tmp_path / "here", tmp_path / "other"
    here.mkdir()
    other.mkdir()
    server = start_server(here / ".kiln" / "prefect", free_port())  # as `kiln server` leaves it
    try:
        # This project's own run does not hold the server up; another project's does.
        _running_flow_run(server.api_url, project_tags("here", here))
        theirs = _running_flow_run(server.api_url, project_tags("other", other))
        refused = _stop(here)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "other projects' runs are in progress" in refused.stderr
        assert theirs["id"] in refused.stderr and str(other) in refused.stderr
        assert "--force" in refused.stderr
        assert api_answers(server.api_url)  # still up
        # A project that did not start it has no server to stop.
        assert "no local Prefect server recorded" in _stop(other).stdout
        forced = _stop(here, "--force")
        assert forced.returncode == 0, forced.stderr
        assert f"stopped Prefect server (pid {server.pid})" in forced.stdout
        assert not api_answers(server.api_url)
    finally:
        server.stop()


def test_stop_stops_when_only_this_project_ran(tmp_path: Path) -> None:
    server = start_server(tmp_path / ".kiln" / "prefect", free_port())
    try:
        flow_run = _running_flow_run(server.api_url, project_tags("here", tmp_path))
        prefect_api(server.api_url, f"/flow_runs/{flow_run['id']}/set_state",
                    {"state": {"type": "COMPLETED", "name": "Completed"}, "force": True})
        stopped = _stop(tmp_path)
        assert stopped.returncode == 0, stopped.stderr
        assert not api_answers(server.api_url)
    finally:
        server.stop()


def test_kiln_run_tags_its_flow_run_with_the_project(prefect_server: PrefectServer,
                                                     tmp_path: Path) -> None:
    project = make_project(tmp_path, {"project": {"name": "tag-test"}})
    (project / "dvc.yaml").write_text("stages: {}\n")  # a run with no stage: quick
    result = run([sys.executable, "-m", "flows.cli", "run", "--project", str(project)], project,
                 check=False, extra_env={"PREFECT_API_URL": prefect_server.api_url})
    flow_run = prefect_api(prefect_server.api_url,
                           f"/flow_runs/{flow_run_id(result.stdout + result.stderr)}")
    assert set(flow_run["tags"]) >= {"kiln-project:tag-test", f"kiln-dir:{project.resolve()}"}
    # The UI's filter by tag is the API's: this project's runs, no other's.
    found = prefect_api(prefect_server.api_url, "/flow_runs/filter",
                        {"flow_runs": {"tags": {"all_": [f"kiln-dir:{project.resolve()}"]}}})
    assert [r["id"] for r in found] == [flow_run["id"]]
