"""`kiln sweep` (run params.yaml's sweep), `kiln sweep show`, `kiln sweep apply best`
(registered on the main app by flows/cli.py; docs/sweeps.md explains the section)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from tasks.core.params import ParamsError, load_params

ProjectOpt = Annotated[Path, typer.Option("--project", "-p", help="Project directory.")]
NameOpt = Annotated[str | None, typer.Option("--name", help="The sweep (default: sweep.name).")]
sweep_app = typer.Typer(help="Hyperparameter sweeps as DVC experiments: run, show, apply.")


def _fail(message: str) -> typer.Exit:
    typer.secho(message, fg="red", err=True)
    return typer.Exit(1)


def _results(project: Path, name: str | None) -> tuple[Any, list[dict[str, Any]], str, str]:
    """(study, rows, metric, sweep name) of a sweep as `kiln sweep` left it."""
    from flows.sweep_plan import SweepError, load_study  # noqa: PLC0415
    from flows.sweep_report import experiments, trial_rows  # noqa: PLC0415

    try:
        params = load_params(project / "params.yaml")
        name = name or (params.sweep.name if params.sweep else "sweep")
        study = load_study(project, name)
    except (ParamsError, SweepError) as exc:
        raise _fail(str(exc)) from None
    drop = params.sweep.overfit_drop if params.sweep else 0.02
    rows = trial_rows(study, experiments(project), type(params).HEADLINE_METRICS, drop)
    return study, rows, study.user_attrs["metric"], name


def check_sweep(project: Path) -> None:
    """Exit 2 when params.yaml's sweep section does not fit the project (`kiln check`): a key a
    stage before train reads, a value its key refuses."""
    from flows.sweep_plan import SweepError, plan  # noqa: PLC0415
    from tasks.core.params import read_params_file  # noqa: PLC0415

    params_path = project / "params.yaml"
    params = load_params(params_path)
    if params.sweep is None:
        return
    try:
        plan(params, read_params_file(params_path), project / "dvc.yaml")
    except SweepError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from None


def show(project: ProjectOpt = Path("."), name: NameOpt = None) -> None:
    """The trials side by side: params, validation metric, test metrics, epochs, flags."""
    from flows.sweep_report import best_row, table  # noqa: PLC0415

    study, rows, metric, name = _results(project.resolve(), name)
    typer.echo(table(rows))
    best = best_row(rows, metric, study.direction.name == "MAXIMIZE")
    if best is not None:
        typer.echo(f"best: {best['experiment']} ({metric} {best[metric]:.4f}, validation)")
    overfit = [r["experiment"] for r in rows if r["overfit"]]
    if overfit:
        typer.echo(f"overfit (validation peaked early and fell): {', '.join(overfit)}")


def apply(
    which: Annotated[str, typer.Argument(help="best, or a trial's experiment name.")] = "best",
    project: ProjectOpt = Path("."),
    name: NameOpt = None,
) -> None:
    """Write a trial's params (the best on validation by default) into params.yaml."""
    from flows.sweep_report import best_row  # noqa: PLC0415
    from tasks.core.params_rewrite import set_values  # noqa: PLC0415

    project = project.resolve()
    study, rows, metric, name = _results(project, name)
    if which == "best":
        row = best_row(rows, metric, study.direction.name == "MAXIMIZE")
        if row is None:
            raise _fail(f"sweep {name} has no completed trial yet")
    else:
        row = next((r for r in rows if r["experiment"] == which), None)
        if row is None:
            raise _fail(f"no trial {which!r} in sweep {name}: {[r['experiment'] for r in rows]}")
    values = {key: row[key] for key in study.user_attrs["keys"]}
    set_values(project / "params.yaml", values)
    tests = ", ".join(f"{k[5:]} {v:.4f}" for k, v in row.items()
                      if k.startswith("test_") and isinstance(v, float))  # fmt: skip
    typer.echo(f"params.yaml now has {', '.join(f'{k}={v}' for k, v in values.items())} from "
               f"{row['experiment']}: {metric} {row[metric]:.4f} on validation (chosen on), "
               f"test {tests or '-'} (reported only). `kiln run` retrains with them.")  # fmt: skip


def register(app: typer.Typer, prefect_env: Callable[[Path, int], Any], port_default: int) -> None:
    """Add `kiln sweep` to `app`; `prefect_env(project, port)` finds or starts the server."""

    @sweep_app.callback(invoke_without_command=True)
    def run(
        ctx: typer.Context,
        project: ProjectOpt = Path("."),
        port: Annotated[int, typer.Option(help="Port of the local Prefect server.")] = port_default,
        jobs: Annotated[int | None, typer.Option(
            "--jobs", "-j", help="Trials at a time (default: sweep.jobs).")] = None,
    ) -> None:
        """Run params.yaml's sweep: each trial a DVC experiment, the sweep a Prefect flow."""
        if ctx.invoked_subcommand is not None:
            return
        project = project.resolve()
        server = prefect_env(project, port)
        from flows.sweep import sweep  # noqa: PLC0415 (Prefect: after the server's env)
        from flows.sweep_report import table  # noqa: PLC0415

        state = sweep(project_dir=str(project), jobs=jobs, return_state=True)
        typer.echo(f"\nFlow run: {server.ui_url}/runs/flow-run/{state.state_details.flow_run_id}")
        if not state.is_completed():
            raise _fail(f"sweep {state.type.value.lower()}: {state.message}")
        typer.echo(table(state.result()))
        typer.echo("`kiln sweep show` lists them again; `kiln sweep apply best` takes the best.")

    sweep_app.command("show")(show)
    sweep_app.command("apply")(apply)
    app.add_typer(sweep_app, name="sweep")
