"""The model commands of `kiln`: `kiln promote`, `kiln models list|rollback`, `kiln serve`,
`kiln predict FILE...` (registered on the main app by flows/cli.py).

Thin shells: the decisions live in tasks/promote.py and tasks/core/registry.py, serving in
serve/.
Each command works on the registry of `--project` (default: the current directory) and exits 1
with the cause in red when it cannot do what was asked; the champion is then unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tasks.core import registry
from tasks.core.params import ParamsError, load_params

ProjectOpt = Annotated[Path, typer.Option("--project", "-p", help="Project directory.")]
models_app = typer.Typer(no_args_is_help=True, help="The model registry: list, rollback.")


def _fail(message: str) -> typer.Exit:
    typer.secho(message, fg="red", err=True)
    return typer.Exit(1)


def promote(
    force: Annotated[bool, typer.Option("--force", help="Override the decision.")] = False,
    reason: Annotated[str, typer.Option(help="Why (recorded in the registry).")] = "",
    project: ProjectOpt = Path("."),
) -> None:
    """Make models/ (with its export/) the champion regardless of metrics, recorded as forced."""
    if not force:
        raise _fail("the automatic decision is the DVC stage `promote` (`kiln run`, `dvc repro "
                    "promote`); `kiln promote --force --reason TEXT` overrides it")
    from tasks.core.dataset import DataError  # noqa: PLC0415 (torch only for this command)
    from tasks.core.models import ModelError  # noqa: PLC0415
    from tasks.promote import PromoteError, force_promote  # noqa: PLC0415

    project = project.resolve()
    try:
        version = force_promote(project, load_params(project / "params.yaml"),
                                project / registry.REGISTRY_DIR, reason)
    except (ParamsError, DataError, ModelError, PromoteError, registry.RegistryError) as exc:
        raise _fail(f"not promoted: {exc}") from None
    typer.echo(f"champion is now {version} (forced: {reason.strip()})")


@models_app.command("list")
def list_models(project: ProjectOpt = Path("."),
                as_json: Annotated[bool, typer.Option("--json", help="As JSON.")] = False) -> None:
    """Every registered version: git revision, data version, metrics; * marks the champion."""
    try:
        rows = registry.list_rows(project.resolve() / registry.REGISTRY_DIR)
    except registry.RegistryError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo("no models registered yet")
        return
    header = ["", "version", "created (UTC)", "git", "data", "acc", "macroF1", "reason"]
    table = [header] + [
        ["*" if r["champion"] else "", r["version"], r["created_at"], r["git_rev"],
         r["data_version"], *(f"{r[k]:.4f}" if r[k] is not None else "-"
                              for k in ("accuracy", "macro_f1")), r["reason"]]
        for r in rows
    ]
    widths = [max(len(cell) for cell in column) for column in zip(*table, strict=True)]
    numbers = (5, 6)  # acc, macroF1: right-aligned
    for line in table:
        cells = zip(line, widths, strict=True)
        typer.echo("  ".join(cell.rjust(w) if i in numbers else cell.ljust(w)
                             for i, (cell, w) in enumerate(cells)).rstrip())


@models_app.command("rollback")
def rollback(version: str, project: ProjectOpt = Path("."),
             reason: Annotated[str, typer.Option(help="Why (recorded).")] = "") -> None:
    """Make an earlier VERSION the champion again (its files are hash-checked first)."""
    try:
        before = registry.rollback(project.resolve() / registry.REGISTRY_DIR, version, reason)
    except registry.RegistryError as exc:
        raise _fail(f"not rolled back: {exc}") from None
    typer.echo(f"champion is now {version} (was {before})")


def serve(project: ProjectOpt = Path("."),
          host: Annotated[str | None, typer.Option(help="Override serve.host.")] = None,
          port: Annotated[int | None, typer.Option(help="Override serve.port.")] = None,
          backend: Annotated[str | None, typer.Option(help="onnx or torch.")] = None) -> None:
    """Serve the champion over HTTP (POST /predict, GET /health, GET /model, /docs)."""
    from serve.__main__ import run_server, serve_params  # noqa: PLC0415

    project = project.resolve()
    try:
        settings = serve_params(project, host=host, port=port, backend=backend)
        run_server(project, settings)
    except (ParamsError, registry.RegistryError, ValueError) as exc:
        raise _fail(f"cannot serve: {exc}") from None


def predict(files: Annotated[list[Path], typer.Argument(metavar="FILE", help="PNG images.")],
            project: ProjectOpt = Path("."),
            backend: Annotated[str, typer.Option(help="onnx or torch.")] = "onnx",
            as_json: Annotated[bool, typer.Option("--json", help="As JSON.")] = False) -> None:
    """Predict PNG FILEs with the champion, preprocessed exactly as the server does."""
    from serve.inputs import InputError  # noqa: PLC0415
    from serve.predict import predict_files  # noqa: PLC0415

    try:
        rows = predict_files(files, project.resolve() / registry.REGISTRY_DIR, backend)
    except (InputError, registry.RegistryError) as exc:
        raise _fail(f"no predictions: {exc}") from None
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    typer.echo("file,label,probability,version")
    for r in rows:
        typer.echo(f"{r['file']},{r['label']},{r['probability']},{r['version']}")


def register(app: typer.Typer) -> None:
    app.command()(promote)
    app.add_typer(models_app, name="models")
    app.command()(serve)
    app.command()(predict)
