"""`kiln deploy` and `kiln worker`: the refresh-and-retrain deployment on a process work pool.

`kiln deploy` creates the project's process work pool when missing and applies prefect.yaml's
deployment with `prefect deploy`, on params.yaml's cron; `kiln worker` runs `prefect worker start`
on that pool in a clone of the project. The deployment's one pull step moves each run into the
clone of the worker that took it (KILN_PROJECT_DIR), and its concurrency limit of 1 keeps to one
run at a time across all workers. Prefect is imported only after the API URL is in the
environment (flows/cli.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

DEPLOYMENT = "refresh-and-retrain"  # prefect.yaml's deployment (and the flow's name)
PROJECT_DIR_ENV = "KILN_PROJECT_DIR"
HEARTBEAT_ENV = "PREFECT_FLOWS_HEARTBEAT_FREQUENCY"
# Seconds between the heartbeats of a worker's flow runs (`kiln worker` sets it unless set; at
# least 30); a run silent for 3 of them is marked Crashed (ensure_crash_automation).
HEARTBEAT_S = 60
MISSED_HEARTBEATS = 3


def pool_name(project_name: str) -> str:
    """The project's work pool: its workers run only its deployment."""
    return f"kiln-{project_name}"


def prefect_file(project: Path) -> Path:
    """The project's prefect.yaml (Kiln's, copied with the code, or the project's own)."""
    path = project / "prefect.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: copy Kiln's prefect.yaml into the project")
    return path


def ensure_work_pool(name: str) -> bool:
    """Create the process work pool `name` unless it exists; True when created."""
    from prefect.client.orchestration import get_client  # noqa: PLC0415 (after the API URL)
    from prefect.client.schemas.actions import WorkPoolCreate  # noqa: PLC0415
    from prefect.exceptions import ObjectNotFound  # noqa: PLC0415
    from prefect.workers.process import ProcessWorker  # noqa: PLC0415

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(name)
            return False
        except ObjectNotFound:
            pass
        client.create_work_pool(WorkPoolCreate(
            name=name, type=ProcessWorker.type,
            base_job_template=ProcessWorker.get_default_base_job_template(),
            description="Kiln's refresh-and-retrain runs (kiln worker)"))
        return True


def deploy_command(project: Path, pool: str, cron: str, timezone: str) -> list[str]:
    return [sys.executable, "-m", "prefect", "deploy", "--no-prompt",
            "--prefect-file", str(prefect_file(project)), "--name", DEPLOYMENT,
            "--pool", pool, "--cron", cron, "--timezone", timezone]


def deploy(project: Path, pool: str, cron: str, timezone: str) -> subprocess.CompletedProcess:
    """`prefect deploy` of prefect.yaml's deployment, from the project (entrypoint relative)."""
    env = {**os.environ}
    env.pop(PROJECT_DIR_ENV, None)  # the pull step's placeholder stays one until a run starts
    return subprocess.run(deploy_command(project, pool, cron, timezone), cwd=project, env=env,
                          capture_output=True, text=True, check=False)


def worker_command(pool: str, name: str | None, limit: int | None) -> list[str]:
    cmd = [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--type",
           "process"]
    if name:
        cmd += ["--name", name]
    if limit:
        cmd += ["--limit", str(limit)]
    return cmd


def heartbeat_s() -> int:
    return int(os.environ.get(HEARTBEAT_ENV) or HEARTBEAT_S)


def worker_env(project: Path, api_url: str) -> dict[str, str]:
    """The environment of `kiln worker` and of the flow-run processes it starts: the server, the
    clone (the pull step's KILN_PROJECT_DIR), the heartbeat period `kiln deploy`'s automation
    expects, and this interpreter's directory first on PATH, so that the deployment's command
    `python -m prefect.engine` (prefect.yaml) runs in this environment."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return {**os.environ, "PREFECT_API_URL": api_url, PROJECT_DIR_ENV: str(project),
            HEARTBEAT_ENV: str(heartbeat_s()), "PATH": path}


def crash_automation_name(pool: str) -> str:
    return f"kiln: crash {DEPLOYMENT} runs on {pool} without heartbeats"


def ensure_crash_automation(pool: str) -> None:
    """(Re)create the automation that marks a run of the deployment Crashed when its heartbeats
    stop (a worker killed with its run): its concurrency slot frees and the next run starts on
    another worker. Prefect's recipe for "zombie" flow runs, limited to this deployment."""
    from datetime import timedelta  # noqa: PLC0415

    from prefect.client.orchestration import get_client  # noqa: PLC0415 (after the API URL)
    from prefect.client.schemas.objects import StateType  # noqa: PLC0415
    from prefect.events.actions import ChangeFlowRunState  # noqa: PLC0415
    from prefect.events.schemas.automations import (  # noqa: PLC0415
        AutomationCore,
        EventTrigger,
        Posture,
    )
    from prefect.events.schemas.events import ResourceSpecification  # noqa: PLC0415

    name = crash_automation_name(pool)
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(f"{DEPLOYMENT}/{DEPLOYMENT}")
        for old in client.read_automations_by_name(name):
            client.delete_automation(old.id)
        silent = timedelta(seconds=MISSED_HEARTBEATS * heartbeat_s())
        client.create_automation(AutomationCore(
            name=name,
            description=f"A run of {DEPLOYMENT} silent for {silent.seconds} s is Crashed "
                        "(kiln deploy)",
            trigger=EventTrigger(
                after={"prefect.flow-run.heartbeat"},
                expect={"prefect.flow-run.heartbeat", "prefect.flow-run.Completed",
                        "prefect.flow-run.Failed", "prefect.flow-run.Cancelled",
                        "prefect.flow-run.Crashed"},
                match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
                match_related=ResourceSpecification({
                    "prefect.resource.id": [f"prefect.deployment.{deployment.id}"]}),
                for_each={"prefect.resource.id"},
                posture=Posture.Proactive,
                threshold=1,
                within=silent,
            ),
            actions=[ChangeFlowRunState(
                state=StateType.CRASHED,
                message=f"no heartbeat for {silent.seconds} s: its worker is gone")],
        ))
