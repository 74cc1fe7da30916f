"""`kiln server` on PostgreSQL: a flow run of `kiln run` against it is recorded in PostgreSQL."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from flows.prefect_server import api_answers
from tests.postgres import PASSWORD, PostgresCluster
from tests.project import (
    flow_run_id,
    free_port,
    make_project,
    prefect_api,
    run,
    task_run_states,
    tiny_demo_overrides,
)

pytestmark = pytest.mark.integration
FLOORS = {"promote": {"floors": {"accuracy": 0.3, "macro_f1": 0.0}, "baseline_gate": False}}


def _kiln(project: Path, *args: str, api_url: str | None = None, **extra_env: str):  # noqa: ANN202
    env = {"PREFECT_API_URL": api_url} if api_url else {}
    return run([sys.executable, "-m", "flows.cli", *args, "--project", str(project)], project,
               extra_env={**env, **extra_env})


def test_kiln_server_on_postgres_records_the_flow_run(postgres: PostgresCluster,
                                                      tmp_path: Path) -> None:
    database_url = postgres.create_database("prefect")
    project = make_project(tmp_path, {**tiny_demo_overrides(free_port()), **FLOORS})
    port = free_port()
    started = _kiln(project, "server", "--port", str(port), KILN_PREFECT_DATABASE_URL=database_url)
    try:
        assert f"Database: postgresql+asyncpg://kiln:***@127.0.0.1:{postgres.port}/prefect" in \
            started.stdout
        assert PASSWORD not in started.stdout + started.stderr
        api = f"http://127.0.0.1:{port}/api"
        assert api_answers(api)
        # Prefect created its schema in PostgreSQL, and SQLite was not used
        schema = postgres.query("prefect", "SELECT to_regclass('flow_run') IS NOT NULL AS ok")
        assert schema[0]["ok"]
        assert not list((project / ".kiln" / "prefect").glob("*.db"))

        result = _kiln(project, "run", api_url=api)
        run_id = flow_run_id(result.stdout)
        assert prefect_api(api, f"/flow_runs/{run_id}")["state"]["type"] == "COMPLETED"
        assert set(task_run_states(api, run_id).values()) == {"Completed"}
        rows = postgres.query("prefect", "SELECT name, state_type::text AS state FROM flow_run "
                                         "WHERE id = $1::uuid", run_id)
        assert [r["state"] for r in rows] == ["COMPLETED"], rows
        tasks = postgres.query("prefect", "SELECT count(*) AS n FROM task_run "
                                          "WHERE flow_run_id = $1::uuid", run_id)
        assert tasks[0]["n"] == len(task_run_states(api, run_id))
    finally:
        stopped = _kiln(project, "server", "--stop")
        assert "stopped Prefect server" in stopped.stdout
