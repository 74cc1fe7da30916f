"""The `kiln` command line's own text: version, help, `models list`, `params --schema`."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from flows.cli import app
from flows.dvc_stages import stage_names
from tasks.core import registry
from tasks.core.params_doc import keys
from tasks.core.plugins import task_type
from tests.project import REPO

runner = CliRunner()


def test_version() -> None:
    from importlib.metadata import version  # noqa: PLC0415

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output == f"kiln {version('kiln')}\n"


def test_help_shows_no_python_types_and_run_names_every_stage() -> None:
    pages = {cmd: runner.invoke(app, [*cmd, "--help"], env={"COLUMNS": "200"}).output
             for cmd in ((), ("run",), ("predict",), ("check",), ("models", "list"), ("params",))}
    for cmd, text in pages.items():
        assert "Usage:" in text, (cmd, text)
        assert "<bool>" not in text and "list[" not in text, (cmd, text)
    assert re.search(r"--port +<int>", pages[("run",)])  # an option that takes a value keeps it
    for stage in stage_names(REPO):
        assert stage in pages[("run",)], stage


def test_models_list_columns_line_up(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    model = tmp_path / "model.bin"
    model.write_bytes(b"weights")
    infos = [{"data_version": "d" * 64, "git_rev": "0123456789abcdef", "git_dirty": True,
              "metrics": {"accuracy": 0.9, "macro_f1": 0.85}},
             {"data_version": "e" * 64, "git_rev": None, "metrics": {"mae": 1.5}}]
    for info, reason in zip(infos, ("first", "a longer reason"), strict=True):
        registry.add_version(root, {"model.bin": model}, info, reason=reason)
    result = runner.invoke(app, ["models", "list", "-p", str(tmp_path)])
    assert result.exit_code == 0, result.output
    header, *rows = result.output.splitlines()
    assert len(rows) == 2
    for column in ("version", "git", "data", "reason"):  # left-aligned: same start everywhere
        start = header.index(column)
        for row in rows:
            assert row[start - 1] == " " and row[start] != " ", (column, result.output)
    end = header.index("macroF1") + len("macroF1")  # numbers: right-aligned, same end
    assert rows[0][end - 6:end] == "0.8500" and rows[1][end - 1] == "-", result.output
    assert rows[1].startswith("*")  # the champion: the last one added


def test_params_schema_lists_every_key_with_type_default_and_meaning(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text(encoding="utf-8"))
    result = runner.invoke(app, ["params", "--schema", "-p", str(tmp_path)])
    assert result.exit_code == 0, result.output
    model = task_type("image_classification").params
    listed = [line.split(":", 1)[0] for line in result.output.splitlines()
              if line and not line.startswith(("#", " "))]
    assert listed == [k.key for k in keys(model)]
    assert "crawl.concurrency: int = 16\n    Concurrent requests per domain.\n" in result.output
    assert "crawl.fields.<name>.required: bool = True\n" in result.output
    # a section's default instance, not its class's defaults (DriftCheck has none)
    assert "validate.drift.label_psi.threshold: float = 0.25\n" in result.output
    forecasting = runner.invoke(
        app, ["params", "--schema", "--task", "forecasting", "-p", str(tmp_path)])
    assert forecasting.exit_code == 0, forecasting.output
    assert "train.series.horizon: int = 4\n" in forecasting.output
    assert "train.channels" not in forecasting.output  # the CNN's key
    unknown = runner.invoke(app, ["params", "--schema", "--task", "nope"])
    assert unknown.exit_code == 2 and "not a registered task type" in unknown.output
