"""The cheap edges of `kiln server --database-url`, `kiln deploy` and `kiln worker` (the real runs
are in tests/integration/test_prefect_postgres.py and tests/e2e/test_workers.py)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import yaml

from flows.deploy import (
    DEPLOYMENT,
    deploy_command,
    pool_name,
    prefect_file,
    worker_command,
    worker_env,
)
from flows.prefect_server import redacted, start_server
from tests.project import REPO, free_port, run


def test_the_password_never_shows() -> None:
    url = "postgresql+asyncpg://kiln:s3cr:et@db.example:5432/prefect"
    assert redacted(url) == "postgresql+asyncpg://kiln:***@db.example:5432/prefect"
    assert redacted("postgresql+asyncpg://kiln@db/prefect") == \
        "postgresql+asyncpg://kiln@db/prefect"


def test_only_asyncpg_urls_start_a_server(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"postgresql\+asyncpg:// URL") as err:
        start_server(tmp_path, free_port(), database_url="postgresql://kiln:hunter2@db/prefect")
    assert "hunter2" not in str(err.value)


def test_prefect_yaml_declares_the_deployment_kiln_deploys() -> None:
    config = yaml.safe_load((REPO / "prefect.yaml").read_text())
    [deployment] = config["deployments"]
    assert deployment["name"] == DEPLOYMENT
    assert deployment["concurrency_limit"] == {"limit": 1, "collision_strategy": "ENQUEUE"}
    assert config["pull"] == [{"prefect.deployments.steps.set_working_directory": {
        "directory": "{{ $KILN_PROJECT_DIR }}"}}]
    # One process per flow run (no workspace supervisor before it): docs/workers.md
    assert deployment["work_pool"]["job_variables"] == {"command": "python -m prefect.engine"}
    cmd = deploy_command(REPO, pool_name("demo"), "0 3 * * *", "UTC")
    assert cmd[cmd.index("--pool") + 1] == "kiln-demo"
    assert cmd[cmd.index("--prefect-file") + 1] == str(prefect_file(REPO))
    assert worker_command("kiln-demo", "w1", 2)[-7:] == [
        "--pool", "kiln-demo", "--type", "process", "--name", "w1", "--limit", "2"][-7:]


def test_flow_runs_start_in_the_workers_interpreter(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    env = worker_env(tmp_path, "http://127.0.0.1:4200/api")
    python = shutil.which("python", path=env["PATH"])
    assert python is not None and Path(python).parent == Path(sys.executable).parent, python
    assert env["KILN_PROJECT_DIR"] == str(tmp_path)


def test_worker_needs_a_server(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    result = run([sys.executable, "-m", "flows.cli", "worker", "--project", str(tmp_path),
                  "--port", str(free_port())], REPO, check=False,
                 extra_env={"PREFECT_API_URL": ""})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no Prefect server answers" in result.stderr
