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
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperArgument, TyperOption

from flows.cli_models import register as register_model_commands
from flows.cli_sweep import check_sweep
from flows.cli_sweep import register as register_sweep_commands
from flows.cli_workers import register as register_worker_commands
from flows.dvc_plots import ensure_template
from flows.prefect_server import (
    DATABASE_URL_ENV,
    DEFAULT_PORT,
    ensure_server,
    other_projects_runs,
    project_tags,
    read_pid_file,
    read_url_file,
    redacted,
)
from tasks.core.data_docs import DEFAULT_PORT as DATA_DOCS_PORT
from tasks.core.params import ParamsError, load_params


def _help_without_python_types() -> None:
    """typer 0.29 prints each parameter's Python type in help: `--json <bool>`, `--help <bool>`,
    `FILE... <list[Path]>`. A flag takes no value and an argument's metavar says what it is, so
    those show none; an option that takes a value keeps its type (`--port <int>`)."""
    option_type = TyperOption.display_type_rich

    def option(self: TyperOption, ctx: typer.Context) -> str | None:
        return None if self.is_flag else option_type(self, ctx=ctx)

    def argument(_self: TyperArgument, ctx: typer.Context) -> None:  # noqa: ARG001
        return None

    TyperOption.display_type_rich = option  # type: ignore[method-assign]
    TyperArgument.display_type_rich = argument  # type: ignore[method-assign]


_help_without_python_types()
app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Kiln: declarative crawl → validate → clean → train → evaluate → export → "
                       "promote pipelines.")

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


def _version(show: bool) -> None:
    if show:
        from importlib.metadata import version  # noqa: PLC0415

        typer.echo(f"kiln {version('kiln')}")
        raise typer.Exit


@app.callback()
def _options(_version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Print Kiln's version.")] = False,
             ) -> None:
    pass


@app.command()
def run(project: ProjectOpt = Path("."), port: PortOpt = DEFAULT_PORT) -> None:
    """Run refresh-and-retrain once: the stages crawl, validate, clean, train, evaluate, export
    and promote of dvc.yaml, each through DVC (an up-to-date one is skipped)."""
    project = project.resolve()
    params = _params_or_exit(project)
    ensure_template(project)  # `dvc plots show` offline after the run (flows/dvc_plots.py)
    server = _prefect_env(project, port)
    from prefect import tags  # noqa: PLC0415 (after env)
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings  # noqa: PLC0415

    from flows.refresh_and_retrain import refresh_and_retrain  # noqa: PLC0415 (after env)
    from flows.summary import champion_lines  # noqa: PLC0415 (after env)

    # No flow-run heartbeats for this one interactive run: nothing consumes them unless an
    # automation is set up for it, and Prefect 3.9 joins the heartbeat thread at the end of the
    # flow while it sleeps in 1 s steps: 1.08 s per run vs 0.11 s without (an empty flow, median
    # of 3, against a local server). `kiln schedule` keeps them (deployments are what such
    # automations watch).
    # Tagged with the project's name and directory: one server, several projects (`kiln server`).
    with (temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
          tags(*project_tags(params.project.name, project))):
        state = refresh_and_retrain(project_dir=str(project), return_state=True)
    run_url = f"{server.ui_url}/runs/flow-run/{state.state_details.flow_run_id}"
    typer.echo(f"\nFlow run: {run_url}")
    if not state.is_completed():
        typer.secho(f"refresh-and-retrain {state.type.value.lower()}: {state.message}",
                    fg="red", err=True)
        raise typer.Exit(1)
    _echo_stages(state.result())
    metrics_path = project / "reports" / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    names = ("accuracy", "macro_f1", "mae", "rmse", "mape", "perplexity")  # whichever the task has
    typer.echo("Test metrics: " + ", ".join(
        f"{k}={metrics[k]:.4f}" for k in names if k in metrics))
    for line in champion_lines(project, state.result(), note="`kiln models list`"):
        typer.echo(line)  # this run's promote decision, if it decided; the champion
    _echo_stored(project)
    typer.echo(f"Prefect UI: {server.ui_url} (stop it with `kiln server --stop`)")


def _echo_stages(outcomes: list) -> None:
    """Which stages ran and which DVC found up to date; and, when train did not run, that the
    model and metrics printed next are an earlier run's."""
    ran = [o.stage for o in outcomes if o.ran]
    skipped = [o.stage for o in outcomes if not o.ran]
    typer.echo(f"Stages run: {', '.join(ran) or 'none'}"
               + (f"; skipped, up to date: {', '.join(skipped)}" if skipped else ""))
    if "train" in skipped:
        typer.echo("Nothing retrained: the data and params train reads are unchanged since "
                   "the last run, so the model and test metrics below are that run's")


def _echo_stored(project: Path) -> None:
    """Where the refresh was stored (flows/storage.py), when params name a remote."""
    storage = load_params(project / "params.yaml").storage
    if not storage.remote:
        return
    from flows.storage import history as refreshes  # noqa: PLC0415

    rows = refreshes(project, storage.branch)
    if rows:
        typer.echo(f"Stored: commit {rows[0]['commit'][:10]} on branch {storage.branch}, data "
                   f"and models on DVC remote {storage.remote} (`kiln history`)")


@app.command()
def history(project: ProjectOpt = Path("."),
            as_json: Annotated[bool, typer.Option("--json", help="As JSON.")] = False) -> None:
    """The refreshes committed on storage.branch, newest first: time, commit, data version,
    metrics, promotion decision and champion (`git checkout COMMIT && dvc pull` restores one)."""
    from flows.storage import history as refreshes  # noqa: PLC0415
    from flows.storage import pending  # noqa: PLC0415

    project = project.resolve()
    storage = _params_or_exit(project).storage
    rows = refreshes(project, storage.branch)
    failed = pending(project)
    if as_json:
        typer.echo(json.dumps({"branch": storage.branch, "refreshes": rows, "pending": failed},
                              indent=2))
        return
    if failed:
        typer.secho(f"NOT STORED: the refresh of {failed.get('at')} failed to be pushed or "
                    f"committed ({failed.get('error')}); the next `kiln run` retries",
                    fg="red", err=True)
    if not rows:
        typer.echo(f"no refreshes committed on branch {storage.branch}"
                   + ("" if storage.remote else " (params.yaml names no storage.remote)"))
        return
    table = [["refreshed (UTC)", "commit", "data", "metrics", "promotion", "champion"]] + [
        [r["refreshed_at"], r["commit"][:10], r["data_version"][:12], r["metrics"],
         r["promotion"], r["champion"]] for r in rows]
    widths = [max(len(cell) for cell in column) for column in zip(*table, strict=True)]
    for line in table:
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True))
                   .rstrip())


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
        tags=project_tags(params.project.name, project),  # its runs carry them (`kiln server`)
    )


@app.command()
def server(project: ProjectOpt = Path("."), port: PortOpt = DEFAULT_PORT,
           stop: Annotated[bool, typer.Option("--stop", help="Stop the local server.")] = False,
           database_url: Annotated[str | None, typer.Option(
               envvar=DATABASE_URL_ENV, metavar="URL", show_envvar=True,
               help="PostgreSQL for a server this starts: postgresql+asyncpg://USER:PASS@HOST:"
                    "PORT/DB (default: SQLite in .kiln/prefect).")] = None,
           force: Annotated[bool, typer.Option(
               "--force", help="With --stop: stop it even while another project's runs are "
                               "in progress on it.")] = False,
           ) -> None:
    """Start (or find) the local Prefect server and print the UI's address.

    One server serves several projects: each flow run is tagged `kiln-project:<name>` and
    `kiln-dir:<directory>` (filter the UI's runs by them). `--stop` stops the server this
    project started, and refuses while another project's run is pending or running on it."""
    project = project.resolve()
    if database_url:
        os.environ[DATABASE_URL_ENV] = database_url  # read by flows/prefect_server.py
        typer.echo(f"Database: {redacted(database_url)} (for a server this starts)")
    if stop:
        home = project / ".kiln" / "prefect"
        pid = read_pid_file(home)
        if pid is None:
            typer.echo("no local Prefect server recorded")
            return
        if not force:
            _refuse_if_others_run(read_url_file(home) or f"http://127.0.0.1:{port}/api", project)
        from flows.prefect_server import PrefectServer  # noqa: PLC0415

        PrefectServer("", "", pid).stop()
        typer.echo(f"stopped Prefect server (pid {pid})")
        return
    typer.echo(f"Prefect UI: {_prefect_env(project, port).ui_url}")


def _refuse_if_others_run(api_url: str, project: Path) -> None:
    """Exit 1, naming them, while other projects' flow runs are in progress on the server."""
    try:
        others = other_projects_runs(api_url, project)
    except OSError as exc:  # a server that does not answer runs nothing: stopping loses nothing
        typer.echo(f"the server at {api_url} does not answer ({exc}); stopping it")
        return
    if others:
        lines = "\n".join(f"  {r.name} ({r.id}, {r.state.lower()}) of {r.project_dir}"
                          for r in others)
        typer.secho(f"not stopping the Prefect server: other projects' runs are in progress "
                    f"on it:\n{lines}\nwait for them, or stop it anyway with --force",
                    fg="red", err=True)
        raise typer.Exit(1)


@app.command("data-docs")
def data_docs(project: ProjectOpt = Path("."),
              port: Annotated[int, typer.Option(help="Port to serve them on.")] = DATA_DOCS_PORT,
              ) -> None:
    """Serve the last validate stage's Great Expectations Data Docs over http until Ctrl-C."""
    from tasks.core.data_docs import server  # noqa: PLC0415
    from tasks.core.paths import VALIDATION_DIR  # noqa: PLC0415

    site = project.resolve() / VALIDATION_DIR
    if not (site / "index.html").is_file():
        typer.secho(f"no Data Docs in {site}: the validate stage writes them (`kiln run`)",
                    fg="red", err=True)
        raise typer.Exit(1)
    httpd = server(site, port)
    # Ctrl-C stops it even when it was started with SIGINT ignored, as a shell's background job
    # (`cmd &` in a script) is: Python then never raises KeyboardInterrupt
    signal.signal(signal.SIGINT, signal.default_int_handler)
    typer.echo(f"Data Docs: http://127.0.0.1:{port}/ (Ctrl-C stops)")
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()


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


@app.command("params")
def params_command(
    project: ProjectOpt = Path("."),
    schema: Annotated[bool, typer.Option(
        "--schema", help="List every key with its type, default and meaning.")] = False,
    task: Annotated[str | None, typer.Option(
        help="With --schema: the task type whose keys to list (default: params.yaml's).")] = None,
) -> None:
    """Print params.yaml as Kiln reads it, defaults included; with --schema, every key it can
    hold."""
    if not schema:
        import yaml  # noqa: PLC0415

        from tasks.core.params import complete  # noqa: PLC0415

        typer.echo(yaml.safe_dump(complete(_params_or_exit(project.resolve())), sort_keys=False))
        return
    from tasks.core.params import Params, read_params_file  # noqa: PLC0415
    from tasks.core.params_doc import schema_text  # noqa: PLC0415
    from tasks.core.plugins import UnknownTaskType, task_type  # noqa: PLC0415

    path = project.resolve() / "params.yaml"
    if task is None and path.exists():
        try:
            task = (read_params_file(path).get("project") or {}).get("task")
        except ParamsError as exc:
            typer.secho(str(exc), fg="red", err=True)
            raise typer.Exit(2) from None
    try:
        model = task_type(task).params if task else Params
    except UnknownTaskType as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"# params.yaml keys (task type: {task or 'any'}), each as `key: type = default`")
    typer.echo(schema_text(model))
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
    least_sure: Annotated[int | None, typer.Option(
        min=1, help="Of the unlabelled items, only the N the champion is least sure of.")] = None,
) -> None:
    """Write the items that need a human look (suspected label errors, missing labels, items
    with no label yet)."""
    from serve.inputs import InputError  # noqa: PLC0415
    from tasks.core.label_export import export  # noqa: PLC0415 (pandas only when used)
    from tasks.core.registry import RegistryError  # noqa: PLC0415

    project = project.resolve()
    params = _params_or_exit(project)
    target = out if out.is_absolute() else project / out
    try:
        n = export(project, target, params, least_sure)
    except (RegistryError, InputError) as exc:  # no champion, or one that cannot rank these
        typer.secho(f"cannot rank by the champion: {exc}", fg="red", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{n} items to review in {target}; fill `label` where you decide (`suggested` is "
               f"the model's class, `given` the crawled one), then `kiln label import {out}`")


@label_app.command("import")
def label_import(
    review: Annotated[Path, typer.Argument(metavar="FILE", help="A filled review file.")],
    project: ProjectOpt = Path("."),
) -> None:
    """Merge FILE's decisions (rows with a `label`) into the overrides file, every row checked
    first; the next `kiln run` applies them."""
    from tasks.core.label_import import LabelImportError, import_decisions  # noqa: PLC0415

    project = project.resolve()
    params = _params_or_exit(project)
    try:
        done = import_decisions(project, review, params)
    except LabelImportError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{params.labels.overrides}: {done.added} added, {done.changed} changed, "
               f"{done.unchanged} already there; {done.undecided} rows without a label skipped. "
               "The next `kiln run` applies them (validate and clean depend on the file)")


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
    if params.crawl is None:
        typer.secho("params.yaml has no crawl section (source.kind is "
                    f"{params.source.kind}): there is nothing to check", fg="red", err=True)
        raise typer.Exit(2)
    from crawlers.check import CheckError, format_report  # noqa: PLC0415
    from crawlers.check import check_url as check_page  # noqa: PLC0415

    try:
        got, report = check_page(check_url, params.crawl)
    except CheckError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(1) from None
    text, kept = format_report(got, report, params.crawl)
    typer.echo(text)
    if not kept:
        raise typer.Exit(1)  # the crawl would reject the page


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
register_worker_commands(app, _prefect_env, DEFAULT_PORT)  # kiln deploy, kiln worker


class _StageName(logging.Filter):
    """Adds the task run's name (the stage) to each line of a task run: Prefect puts it in the
    record, and its own lines ("Finished in state Completed()") are otherwise the same line after
    every stage."""

    def filter(self, record: logging.LogRecord) -> bool:
        name = getattr(record, "task_run_name", None)
        record.stage = f"[{name}]" if name else ""
        return True


def main() -> None:
    # Kiln's own progress at INFO; libraries (httpx's request lines, ...) only when they warn.
    console = logging.StreamHandler(sys.stderr)
    console.addFilter(_StageName())
    console.setFormatter(logging.Formatter("%(asctime)s %(name)s%(stage)s %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[console])
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
