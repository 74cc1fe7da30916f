"""`kiln deploy` and `kiln worker` (flows/deploy.py): runs of refresh-and-retrain taken by workers
on the project's process work pool, one at a time."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from flows.deploy import (
    DEPLOYMENT,
    deploy,
    ensure_crash_automation,
    ensure_work_pool,
    pool_name,
    prefect_file,
    worker_env,
)
from flows.deploy import worker_command as make_worker_command
from flows.prefect_server import api_answers
from tasks.core.params import ParamsError, load_params

ProjectOpt = Annotated[Path, typer.Option("--project", "-p", help="Project directory.")]
PoolOpt = Annotated[str | None, typer.Option(
    help="Work pool (default: kiln-<project.name> of params.yaml).")]


def _params(project: Path):  # noqa: ANN202
    try:
        return load_params(project / "params.yaml")
    except ParamsError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from None


def register(app: typer.Typer, prefect_env: Callable[[Path, int], Any], port_default: int) -> None:
    """Add `kiln deploy` and `kiln worker` to `app`; `prefect_env(project, port)` finds or starts
    the server."""

    @app.command("deploy")
    def deploy_command(
        project: ProjectOpt = Path("."),
        port: Annotated[int, typer.Option(help="Port of the local Prefect server.")] = port_default,
        pool: PoolOpt = None,
    ) -> None:
        """Create (or update) the refresh-and-retrain deployment of prefect.yaml on the project's
        process work pool (created when missing), on params.yaml's cron; `kiln worker` runs it."""
        project = project.resolve()
        params = _params(project)
        try:
            prefect_file(project)
        except FileNotFoundError as exc:
            typer.secho(str(exc), fg="red", err=True)
            raise typer.Exit(2) from None
        (project / ".kiln" / "prefect").mkdir(parents=True, exist_ok=True)  # PREFECT_HOME
        server = prefect_env(project, port)
        pool = pool or pool_name(params.project.name)
        if ensure_work_pool(pool):
            typer.echo(f"Created process work pool '{pool}'")
        done = deploy(project, pool, params.schedule.cron, params.schedule.timezone)
        if done.returncode != 0:
            typer.secho(f"prefect deploy failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}",
                        fg="red", err=True)
            raise typer.Exit(1)
        ensure_crash_automation(pool)
        typer.echo(f"Deployment '{DEPLOYMENT}/{DEPLOYMENT}' on pool '{pool}', cron "
                   f"'{params.schedule.cron}' ({params.schedule.timezone}), one run at a time; "
                   f"start workers with `kiln worker` in clones of the project. "
                   f"Watch it at {server.ui_url}/deployments")

    @app.command("worker")
    def worker_command(
        project: ProjectOpt = Path("."),
        port: Annotated[int, typer.Option(help="Port of the local Prefect server.")] = port_default,
        pool: PoolOpt = None,
        name: Annotated[str | None, typer.Option(help="Worker name (default: Prefect's).")] = None,
        limit: Annotated[int | None, typer.Option(
            min=1, help="Flow runs at a time on this worker (default: no limit).")] = None,
    ) -> None:
        """Run a Prefect worker on the project's work pool: it takes refresh-and-retrain runs and
        runs them in this project directory (a clone of the project's git repository). Needs a
        running server: PREFECT_API_URL, or `kiln server` on --port. Ctrl-C stops."""
        project = project.resolve()
        params = _params(project)
        api_url = os.environ.get("PREFECT_API_URL") or f"http://127.0.0.1:{port}/api"
        if not api_answers(api_url):
            typer.secho(f"no Prefect server answers at {api_url}: start one with `kiln server` "
                        "or set PREFECT_API_URL", fg="red", err=True)
            raise typer.Exit(2)
        pool = pool or pool_name(params.project.name)
        typer.echo(f"Worker on pool '{pool}' of {api_url}, running flows in {project}", err=True)
        os.chdir(project)
        sys.stderr.flush()
        os.execve(sys.executable, make_worker_command(pool, name, limit),  # noqa: S606
                  worker_env(project, api_url))
