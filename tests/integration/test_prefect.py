"""The real Prefect server: finding it, and serving the flow as a scheduled deployment."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows.prefect_server import PrefectServer, api_answers, ensure_server
from tests.project import env, free_port, make_project, prefect_api

pytestmark = pytest.mark.integration


def test_server_answers_and_serves_the_ui(prefect_server: PrefectServer) -> None:
    assert api_answers(prefect_server.api_url)
    # The UI is told where its API is, or it shows "Can't connect to Server API".
    settings = prefect_api(prefect_server.ui_url, "/ui-settings")
    assert settings["api_url"] == prefect_server.api_url


def test_configured_api_is_used_not_a_new_server(prefect_server, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("PREFECT_API_URL", prefect_server.api_url)
    found = ensure_server(tmp_path / "home", port=free_port())
    assert found.api_url == prefect_server.api_url
    assert found.pid is None  # not ours: `stop()` leaves it alone
    assert not (tmp_path / "home").exists()


def test_schedule_serves_a_deployment_on_the_params_cron(prefect_server, tmp_path: Path) -> None:
    cron = "17 4 * * 1"
    project = make_project(tmp_path, {"project": {"name": "cron-test"},
                                      "schedule": {"cron": cron, "timezone": "Europe/Paris"}})
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "schedule", "--project", str(project)], cwd=project,
        env={**env(), "PREFECT_API_URL": prefect_server.api_url},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deployment = None
        deadline = time.monotonic() + 90
        while deployment is None and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            found = prefect_api(prefect_server.api_url, "/deployments/filter",
                                {"deployments": {"name": {"any_": ["cron-test"]}}})
            deployment = found[0] if found else None
            time.sleep(1)
        assert deployment is not None, "deployment never appeared"
        schedule = deployment["schedules"][0]["schedule"]
        assert (schedule["cron"], schedule["timezone"]) == (cron, "Europe/Paris")
        assert deployment["parameters"] == {"project_dir": str(project)}
        # its runs carry the project's tags (one server, several projects: `kiln server`)
        assert set(deployment["tags"]) >= {"kiln-project:cron-test", f"kiln-dir:{project}"}
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
