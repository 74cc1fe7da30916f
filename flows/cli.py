"""The `kiln` command line: `kiln --help`.

`kiln run` is the main job: check params.yaml, find or start the Prefect server, run the
refresh-and-retrain flow (starting the demo site if params point at it), then print the flow
run's URL and the test metrics. Prefect is imported only after the server's URL is in the
environment, because Prefect reads its settings on import.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from flows.prefect_server import DEFAULT_PORT, ensure_server, read_pid_file
from tasks.params import ParamsError, load_params

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Kiln: declarative crawl → validate → clean → train → evaluate pipelines.")

ProjectOpt = Annotated[Path, typer.Option("--project", "-p", help="Project directory.")]
PortOpt = Annotated[int, typer.Option(help="Port of the local Prefect server.")]


def _params_or_exit(project: Path):  # noqa: ANN202 (returns tasks.params.Params)
    try:
        return load_params(project / "params.yaml")
    except ParamsError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from None


def _prefect_env(project: Path, port: int):  # noqa: ANN202 (returns PrefectServer)
    home = (project / ".kiln" / "prefect").resolve()
    os.environ.setdefault("PREFECT_HOME", str(home))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    return ensure_server(home, port)


@app.command()
def run(project: ProjectOpt = Path("."), port: PortOpt = DEFAULT_PORT) -> None:
    """Run refresh-and-retrain once: crawl, validate, clean, train, evaluate (via DVC)."""
    project = project.resolve()
    _params_or_exit(project)
    server = _prefect_env(project, port)
    from flows.refresh_and_retrain import refresh_and_retrain  # noqa: PLC0415 (after env)

    state = refresh_and_retrain(project_dir=str(project), return_state=True)
    run_url = f"{server.ui_url}/runs/flow-run/{state.state_details.flow_run_id}"
    typer.echo(f"\nFlow run: {run_url}")
    if not state.is_completed():
        typer.secho(f"refresh-and-retrain {state.type.value.lower()}: {state.message}",
                    fg="red", err=True)
        raise typer.Exit(1)
    metrics_path = project / "reports" / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    typer.echo("Test metrics: " + ", ".join(
        f"{k}={metrics[k]:.4f}" for k in ("accuracy", "macro_f1") if k in metrics))
    typer.echo(f"Prefect UI: {server.ui_url} (stop it with `kiln server --stop`)")


@app.command()
def schedule(project: ProjectOpt = Path("."), port: PortOpt = DEFAULT_PORT) -> None:
    """Serve refresh-and-retrain as a deployment on the cron in params.yaml (Ctrl-C stops)."""
    project = project.resolve()
    params = _params_or_exit(project)
    server = _prefect_env(project, port)
    from prefect.schedules import Cron  # noqa: PLC0415 (after env)

    from flows.refresh_and_retrain import refresh_and_retrain  # noqa: PLC0415 (after env)

    typer.echo(f"Serving deployment '{params.project.name}' on cron "
               f"'{params.schedule.cron}' ({params.schedule.timezone}); "
               f"watch it at {server.ui_url}/deployments")
    refresh_and_retrain.serve(
        name=params.project.name,
        schedules=[Cron(params.schedule.cron, timezone=params.schedule.timezone)],
        parameters={"project_dir": str(project)},
        global_limit=1,  # two refresh runs never interleave their writes
    )


@app.command()
def server(project: ProjectOpt = Path("."), port: PortOpt = DEFAULT_PORT,
           stop: Annotated[bool, typer.Option("--stop", help="Stop the local server.")] = False,
           ) -> None:
    """Start (or find) the local Prefect server and print the UI's address."""
    project = project.resolve()
    if stop:
        pid = read_pid_file(project / ".kiln" / "prefect")
        if pid is None:
            typer.echo("no local Prefect server recorded")
            return
        from flows.prefect_server import PrefectServer  # noqa: PLC0415

        PrefectServer("", "", pid).stop()
        typer.echo(f"stopped Prefect server (pid {pid})")
        return
    typer.echo(f"Prefect UI: {_prefect_env(project, port).ui_url}")


@app.command("demo-site")
def demo_site(project: ProjectOpt = Path("."),
              port: Annotated[int | None, typer.Option(help="Override demo_site.port.")] = None,
              ) -> None:
    """Serve the demo website from params.yaml's demo_site section until Ctrl-C."""
    params = _params_or_exit(project.resolve())
    from crawlers.demo_site import start_demo_site  # noqa: PLC0415

    site = start_demo_site(params.demo_site, port=port)
    typer.echo(f"Demo site at {site.url} (Ctrl-C stops)")
    try:
        import threading  # noqa: PLC0415

        threading.Event().wait()
    except KeyboardInterrupt:
        site.stop()


@app.command()
def check(project: ProjectOpt = Path(".")) -> None:
    """Check params.yaml against the schema without running anything."""
    _params_or_exit(project.resolve())
    typer.echo("params.yaml is valid")


def main() -> None:
    # Kiln's own progress at INFO; libraries (httpx's request lines, ...) only when they warn.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s",
                        stream=sys.stderr)
    logging.getLogger("kiln").setLevel(logging.INFO)
    app()


if __name__ == "__main__":
    main()
