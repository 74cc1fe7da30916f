"""`kiln sweep` end to end, as the README's "Hyperparameter sweeps" section says, on the tiny demo
and a real Prefect server: its two sweep sections (a grid, then TPE with pruning) and its
commands, read from README.md, after a first `kiln run` and a commit.

Checked: each trial is a DVC experiment against the commit, only train and evaluate ran in it;
the Prefect flow run has one task run per trial and the sweep's artifacts; `kiln sweep show`
lists validation and test metrics; `kiln sweep apply best` then `kiln run` trains the best trial's
model again, to the same validation metric.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from flows.sweep_plan import load_study
from flows.sweep_report import best_row, experiments, trial_rows
from tasks.core.params import load_params
from tests.project import (
    REPO,
    dvc,
    flow_run_id,
    free_port,
    make_project,
    prefect_api,
    run,
    task_run_states,
    tiny_demo_overrides,
)

pytestmark = pytest.mark.e2e
# Trials with a poor learning rate must be results, not failures: no accuracy floor in evaluate.
OVERRIDES = {"evaluate": {"min_accuracy": 0.0}}


def readme_sweep() -> tuple[list[str], list[str]]:
    """The yaml blocks and the commands of the README's sweep section."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("### Hyperparameter sweeps", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(yaml|bash)\n(.*?)```", section, flags=re.DOTALL)
    yamls = [body for kind, body in blocks if kind == "yaml"]
    commands = [line.split("#")[0].strip() for kind, body in blocks if kind == "bash"
                for line in body.splitlines() if line.strip()]  # fmt: skip
    return yamls, commands


def _kiln(project: Path, api: str, *args: str) -> str:
    # `python -m flows.cli` with cwd=project runs the project's copy of the code, as a user would.
    done = run([sys.executable, "-m", "flows.cli", *args, "--project", str(project)], project,
               extra_env={"PREFECT_API_URL": api})  # fmt: skip
    return done.stdout + done.stderr


def _check_sweep(project: Path, api: str, name: str, output: str) -> list[dict]:
    study = load_study(project, name)
    rows = trial_rows(study, experiments(project), ("macro_f1", "accuracy"), 0.02)
    assert rows and {r["state"] for r in rows} <= {"complete", "pruned"}, rows
    head = run(["git", "rev-parse", "HEAD"], project).stdout.strip()
    assert all(r["commit"] == head[:7] for r in rows)  # recorded against the commit
    assert all(r["test_macro_f1"] is not None and r["val_macro_f1"] is not None for r in rows)
    for row in rows:
        if row["state"] == "pruned":
            assert row["epochs"] < 4 and row["pruned_at_epoch"] == row["epochs"]
    # Only train and evaluate ran in each trial: what came before is up to date.
    assert output.count("Stage 'clean' didn't change, skipping") == len(rows), output[-3000:]
    assert "Running stage 'clean'" not in output and "Running stage 'export'" not in output
    run_id = flow_run_id(output)
    states = task_run_states(api, run_id)
    assert states == {r["experiment"]: "Pruned" if r["state"] == "pruned" else "Completed"
                      for r in rows}  # fmt: skip
    artifacts = prefect_api(api, "/artifacts/filter",
                            {"artifacts": {"flow_run_id": {"any_": [run_id]}}})  # fmt: skip
    by_key = {a["key"]: a for a in artifacts}
    assert by_key[f"sweep-{name}-plot"]["data"].startswith("data:image/png;base64,")
    assert len(json.loads(by_key[f"sweep-{name}-trials"]["data"])) == len(rows)
    return rows


def test_readme_sweeps_then_apply_best_and_run(tmp_path: Path, prefect_server) -> None:
    api = prefect_server.api_url
    yamls, commands = readme_sweep()
    assert commands == ["kiln sweep", "kiln sweep show", "kiln sweep apply best", "kiln run"]
    project = make_project(tmp_path, {**tiny_demo_overrides(free_port()), **OVERRIDES},
                           verbatim=True)  # fmt: skip
    _kiln(project, api, "run")
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "first run"], project)
    params_text = (project / "params.yaml").read_text()

    for block in yamls:  # the grid, then TPE
        (project / "params.yaml").write_text(params_text + "\n" + block)
        name = load_params(project / "params.yaml").sweep.name
        rows = _check_sweep(project, api, name, _kiln(project, api, "sweep"))
    grid = load_study(project, "lr-grid").trials
    assert sorted(t.params["train.lr"] for t in grid) == [0.003, 0.01]
    assert len(rows) == 2  # the TPE sweep's budget

    shown = _kiln(project, api, "sweep", "show")
    assert "val_macro_f1" in shown and "test_macro_f1" in shown and "lr-tpe-1" in shown
    dvc("plots", "show", "-o", str(tmp_path / "plots"), cwd=project)
    assert "reports/sweep/vs/train.lr.csv" in (tmp_path / "plots" / "index.html").read_text()

    best = best_row(rows, "val_macro_f1", maximize=True)
    assert best is not None
    applied = _kiln(project, api, "sweep", "apply", "best")
    assert f"from {best['experiment']}" in applied
    assert load_params(project / "params.yaml").train.lr == best["train.lr"]
    _kiln(project, api, "run")
    trained = json.loads((project / "reports" / "train" / "metrics.json").read_text())
    assert trained["best_val_macro_f1"] == pytest.approx(best["val_macro_f1"], abs=1e-9)
