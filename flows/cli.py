"""The `kiln` command line: `kiln --help`.

`kiln run` is the main job: check params.yaml, find or start the Prefect server, run the
refresh-and-retrain flow (starting the demo site if params point at it), then print the flow
run's URL and the test metrics. Prefect is imported only after the server's URL is in the
environment, because Prefect reads its settings on import.
"""

from __future__ import annotations

import atexit
import gc
import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from flows.cli_models import echo_champion
from flows.cli_models import register as register_model_commands
from flows.cli_sweep import check_sweep
from flows.cli_sweep import register as register_sweep_commands
from flows.prefect_server import DEFAULT_PORT, ensure_server, read_pid_file
from tasks.core.params import ParamsError, load_params

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Kiln: declarative crawl → validate → clean → train → evaluate pipelines.")

ProjectOpt = Annotated[Path, typer.Option("--project", "-p", help="Project directory.")]
PortOpt = Annotated[int, typer.Option(help="Port of the local Prefect server.")]


def _params_or_exit(project: Path):  # noqa: ANN202 (returns tasks.core.params.Params)
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
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings  # noqa: PLC0415

    from flows.refresh_and_retrain import refresh_and_retrain  # noqa: PLC0415 (after env)

    # No flow-run heartbeats for this one interactive run: nothing consumes them unless an
    # automation is set up for it, and Prefect 3.9 joins the heartbeat thread at the end of the
    # flow while it sleeps in 1 s steps: 1.08 s per run vs 0.11 s without (an empty flow, median
    # of 3, against a local server). `kiln schedule` keeps them (deployments are what such
    # automations watch).
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        state = refresh_and_retrain(project_dir=str(project), return_state=True)
    run_url = f"{server.ui_url}/runs/flow-run/{state.state_details.flow_run_id}"
    typer.echo(f"\nFlow run: {run_url}")
    if not state.is_completed():
        typer.secho(f"refresh-and-retrain {state.type.value.lower()}: {state.message}",
                    fg="red", err=True)
        raise typer.Exit(1)
    metrics_path = project / "reports" / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    names = ("accuracy", "macro_f1", "mae", "rmse", "mape", "perplexity")  # whichever the task has
    typer.echo("Test metrics: " + ", ".join(
        f"{k}={metrics[k]:.4f}" for k in names if k in metrics))
    echo_champion(project)  # the promote decision and the champion (`kiln models list`)
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
def check(project: ProjectOpt = Path("."),
          write: Annotated[bool, typer.Option(
              "--write", help="Write every key, defaults included, into params.yaml.")] = False,
          ) -> None:
    """Check params.yaml against the schema, the keys dvc.yaml tracks and `dvc exp run -S`'s
    rewrite, without running anything; with --write, first complete the file with every default
    (old one kept as .bak)."""
    project = project.resolve()
    if write:
        _complete_params_file(project / "params.yaml")
    _params_or_exit(project)
    _rewritable_or_exit(project / "params.yaml")
    check_sweep(project)  # its keys and values against the project
    typer.echo("params.yaml is valid")


def _rewritable_or_exit(path: Path) -> None:
    """Exit 2 unless `dvc exp run -S` can rewrite `path` and every reader still reads the same."""
    from tasks.core.params_rewrite import rewrite_problem  # noqa: PLC0415 (imports DVC)

    if (problem := rewrite_problem(path)) is not None:
        typer.secho(problem, fg="red", err=True)
        raise typer.Exit(2)


def _complete_params_file(path: Path) -> None:
    """Rewrite `path` with every key and its value (its comments are lost; the old file is kept
    as .bak), so that DVC finds every key it tracks."""
    import shutil  # noqa: PLC0415

    import yaml  # noqa: PLC0415

    from tasks.core.io import atomic_path  # noqa: PLC0415
    from tasks.core.params import complete, parse_params, read_params_file  # noqa: PLC0415

    try:
        params = parse_params(read_params_file(path))
    except ParamsError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from None
    shutil.copyfile(path, path.with_suffix(".yaml.bak"))
    with atomic_path(path) as tmp:
        Path(tmp).write_text(yaml.safe_dump(complete(params), sort_keys=False), encoding="utf-8")
    typer.echo(f"wrote every key of {path.name} (previous one in {path.name}.bak)")


label_app = typer.Typer(no_args_is_help=True, help="Manual labelling (labels/overrides.csv).")
app.add_typer(label_app, name="label")


@label_app.command("export")
def label_export(
    project: ProjectOpt = Path("."),
    out: Annotated[Path, typer.Option(help="Where the review file goes.")] = Path(
        "labels/to_review.csv"),
) -> None:
    """Write the items that need a human look (suspected label errors, missing labels)."""
    from tasks.core.label_export import export  # noqa: PLC0415 (pandas only when used)

    project = project.resolve()
    target = out if out.is_absolute() else project / out
    n = export(project, target)
    typer.echo(f"{n} items to review in {target}; fill `label`, then append the rows to "
               f"{_params_or_exit(project).labels.overrides}")


@app.command()
def crawl(project: ProjectOpt = Path("."),
          check_url: Annotated[str | None, typer.Option(
              "--check", metavar="URL", help="Fetch this one page and show the fields.")] = None,
          ) -> None:
    """Run the crawl stage; with --check URL, only try the field selectors on one page."""
    project = project.resolve()
    params = _params_or_exit(project)
    if check_url is None:
        import subprocess  # noqa: PLC0415

        raise typer.Exit(subprocess.call([sys.executable, "-m", "tasks.crawl"], cwd=project))
    from crawlers.check import CheckError, format_report  # noqa: PLC0415
    from crawlers.check import check_url as check_page  # noqa: PLC0415

    try:
        got, report = check_page(check_url, params.crawl)
    except CheckError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(1) from None
    typer.echo(format_report(got, report, params.crawl))
    if any(r.n_matches == 0 and params.crawl.fields[n].required for n, r in report.items()):
        raise typer.Exit(1)  # a required field matched nothing: the crawl would reject the page


@app.command()
def use(params_file: Annotated[Path, typer.Argument(help="A params file, e.g. examples/…")],
        project: ProjectOpt = Path(".")) -> None:
    """Make PARAMS_FILE the active params.yaml (checked first; the old one kept as .bak)."""
    import shutil  # noqa: PLC0415

    _params_or_exit_file(params_file, project.resolve() / "dvc.yaml")
    _rewritable_or_exit(params_file)
    target = project.resolve() / "params.yaml"
    if target.exists():
        shutil.copyfile(target, target.with_suffix(".yaml.bak"))
    shutil.copyfile(params_file, target)
    typer.echo(f"params.yaml is now {params_file} (previous one in params.yaml.bak)")


def _params_or_exit_file(path: Path, dvc_yaml: Path) -> None:
    try:
        load_params(path, dvc_yaml)
    except ParamsError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from None


register_model_commands(app)  # kiln promote, kiln models list|rollback, kiln serve, kiln predict
register_sweep_commands(app, _prefect_env, DEFAULT_PORT)  # kiln sweep [show|apply]


def main() -> None:
    # Kiln's own progress at INFO; libraries (httpx's request lines, ...) only when they warn.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s",
                        stream=sys.stderr)
    logging.getLogger("kiln").setLevel(logging.INFO)
    # At exit, after Prefect has sent its queued logs and events (threading's exit hooks run
    # before atexit's) and while the other exit handlers still run, move every object to the
    # collector's permanent generation: the interpreter's final collections then skip ~170k
    # objects of Prefect, pydantic and DVC that the OS frees anyway. Process exit after a flow
    # run: 0.25 s instead of 1.0 s (imports of a `kiln run`, 2 runs each on 2 busy cores).
    atexit.register(gc.freeze)
    app()


if __name__ == "__main__":
    main()
