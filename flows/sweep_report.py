"""A sweep's trials side by side: params, the validation metric chosen on, the test metrics only
reported, and each trial's curves, from the Optuna study and the DVC experiments
(`dvc exp show`). `write_reports` writes reports/sweep/ (trials.csv, curves.csv, one
`vs/<key>.csv` per varied key, sweep.png, and a dvc.yaml declaring them as plots: what `dvc plots
show` and the Prefect artifacts show).
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tasks.core.io import atomic_dir
from tasks.core.paths import METRICS, SWEEP_REPORTS, TRAIN_REPORTS
from tasks.core.sweep_trial import trial_name

TRAIN_SUMMARY = str(TRAIN_REPORTS / "metrics.json")  # DVCLive's: best_<metric>, best_epoch


def experiments(project: Path) -> dict[str, dict[str, Any]]:
    """{experiment name: {commit, params, metrics: {file: data}}} of every commit's experiments."""
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", "exp", "show", "--json", "--all-commits"],
        cwd=project, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"dvc exp show failed: {proc.stderr.strip()[-2000:]}")
    found: dict[str, dict[str, Any]] = {}
    for commit in json.loads(proc.stdout or "[]"):
        for group in commit.get("experiments") or []:
            for rev in group.get("revs") or []:
                data = rev.get("data") or {}
                found[rev.get("name") or rev["rev"]] = {
                    "commit": commit.get("rev"),
                    "params": ((data.get("params") or {}).get("params.yaml") or {}).get("data"),
                    "metrics": {f: m.get("data") or {} for f, m in
                                (data.get("metrics") or {}).items()},  # fmt: skip
                }
    return found


def peaked_and_fell(history: list[dict[str, float]], metric: str, maximize: bool,
                    drop: float) -> bool:  # fmt: skip
    """Whether the validation metric peaked before the last epoch and ended worse than the peak
    by more than `drop` (a share of the peak) while the train loss kept falling: overfitting."""
    rows = [h for h in history if metric in h]
    if len(rows) < 2:
        return False
    values = [h[metric] for h in rows]
    best = values.index(max(values) if maximize else min(values))
    worse_by = (values[best] - values[-1]) if maximize else (values[-1] - values[best])
    losses = [h.get("train_loss") for h in (rows[best], rows[-1])]
    still_learning = None not in losses and losses[1] < losses[0]
    return best < len(values) - 1 and worse_by > drop * abs(values[best]) and still_learning


def trial_rows(study: Any, experiments_: dict[str, dict[str, Any]], test_metrics: tuple[str, ...],
               overfit_drop: float) -> list[dict[str, Any]]:  # fmt: skip
    """One row per trial: its params, validation and test metrics, epochs and flags."""
    metric = study.user_attrs["metric"]
    keys = study.user_attrs["keys"]
    maximize = study.direction.name == "MAXIMIZE"
    rows = []
    for trial in study.get_trials(deepcopy=False):
        name = trial_name(study.study_name, trial.number)
        exp = experiments_.get(name, {})
        summary = exp.get("metrics", {}).get(TRAIN_SUMMARY, {})
        test = exp.get("metrics", {}).get(str(METRICS), {})
        history = trial.user_attrs.get("history", [])
        rows.append({
            "trial": trial.number,
            "experiment": name,
            "state": trial.state.name.lower(),
            **{key: trial.params.get(key) for key in keys},
            metric: summary.get(f"best_{metric}"),
            **{f"test_{m}": test.get(m) for m in test_metrics},
            "best_epoch": summary.get("best_epoch"),
            "epochs": summary.get("epochs_run", len(history) or None),
            "pruned_at_epoch": trial.user_attrs.get("pruned_at_epoch"),
            "overfit": peaked_and_fell(history, metric, maximize, overfit_drop),
            "commit": (exp.get("commit") or "")[:7],
        })  # fmt: skip
    return rows


def best_row(rows: list[dict[str, Any]], metric: str, maximize: bool) -> dict[str, Any] | None:
    """The completed trial with the best validation metric (ties: the earlier trial)."""
    done = [r for r in rows if r["state"] == "complete" and r[metric] is not None]
    if not done:
        return None
    return sorted(done, key=lambda r: (-r[metric] if maximize else r[metric], r["trial"]))[0]


def _csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return out.getvalue()


def curves(study: Any) -> list[dict[str, Any]]:
    """Each trial's per-epoch train loss, validation loss and metric."""
    metric = study.user_attrs["metric"]
    return [
        {"trial": t.number, "epoch": h.get("epoch"), "train_loss": h.get("train_loss"),
         "val_loss": h.get("val_loss"), metric: h.get(metric)}
        for t in study.get_trials(deepcopy=False) for h in t.user_attrs.get("history", [])
    ]  # fmt: skip


def plot_png(rows: list[dict[str, Any]], curve_rows: list[dict[str, Any]], keys: list[str],
             metric: str, log_keys: set[str]) -> bytes:  # fmt: skip
    """The metric against each varied key (one panel each), then every trial's curves."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    import matplotlib.ticker  # noqa: PLC0415

    fig, axes = plt.subplots(1, len(keys) + 2, figsize=(4 * (len(keys) + 2), 3.4), squeeze=False)
    colours = {"complete": "tab:blue", "pruned": "tab:orange", "fail": "tab:red"}
    for ax, key in zip(axes[0], keys, strict=False):
        for state, colour in colours.items():
            pts = [(r[key], r[metric]) for r in rows
                   if r["state"] == state and r[metric] is not None]  # fmt: skip
            if pts:
                ax.scatter(*zip(*pts, strict=True), c=colour, label=state)
        if key in log_keys:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # unreadable
        ax.set(xlabel=key, ylabel=f"{metric} (validation)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    by_trial: dict[int, list[dict[str, Any]]] = {}
    for c in curve_rows:
        by_trial.setdefault(c["trial"], []).append(c)
    overfit = {r["trial"] for r in rows if r["overfit"]}
    metric_ax, loss_ax = axes[0][-2], axes[0][-1]
    for trial, points in sorted(by_trial.items()):
        epochs = [p["epoch"] for p in points]
        style = "--" if trial in overfit else "-"
        metric_ax.plot(epochs, [p[metric] for p in points], style, label=f"{trial}")
        (line,) = loss_ax.plot(epochs, [p["val_loss"] for p in points], "-", label=f"{trial} val")
        loss_ax.plot(epochs, [p["train_loss"] for p in points], ":", color=line.get_color())
    metric_ax.set(xlabel="epoch", ylabel=metric, title="per trial (dashed: overfit)")
    loss_ax.set(xlabel="epoch", ylabel="loss", title="val (solid) vs train (dotted)")
    if by_trial:
        metric_ax.legend(fontsize=6, title="trial")
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=80)
    plt.close(fig)
    return out.getvalue()


def write_reports(project: Path, study: Any, rows: list[dict[str, Any]],
                  log_keys: set[str]) -> Path:  # fmt: skip
    """reports/sweep/ for this sweep, replaced whole (a key no longer varied leaves no file)."""
    metric, keys = study.user_attrs["metric"], study.user_attrs["keys"]
    curve_rows = curves(study)
    with atomic_dir(project / SWEEP_REPORTS) as tmp:
        (tmp / "trials.csv").write_text(_csv(rows), encoding="utf-8")
        (tmp / "curves.csv").write_text(_csv(curve_rows), encoding="utf-8")
        (tmp / "vs").mkdir()
        for key in keys:
            points = [{"value": r[key], "metric": r[metric], "trial": r["trial"]}
                      for r in rows if r["state"] == "complete" and r[metric] is not None]
            (tmp / "vs" / f"{key}.csv").write_text(_csv(points), encoding="utf-8")
        (tmp / "sweep.png").write_bytes(plot_png(rows, curve_rows, keys, metric, log_keys))
        (tmp / "dvc.yaml").write_text(_PLOTS, encoding="utf-8")
    return project / SWEEP_REPORTS


# The sweep's plots for `dvc plots show`, in a dvc.yaml of their own beside them (DVC reads every
# dvc.yaml of the project): declared in the project's dvc.yaml, they would be missing, and DVC
# would warn "failed to load some plots", on every run of a project that never swept.
_PLOTS = """\
# Written by `kiln sweep` (flows/sweep_report.py): this sweep's plots for `dvc plots show`.
plots:
  - vs:  # each trial's validation metric against each varied key
      template: scatter
      x: value
      y: metric
  - sweep.png  # the same, and each trial's train and validation curves
"""


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as aligned text columns (floats to 4 decimals)."""
    if not rows:
        return "no trials yet"

    def cell(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else "-" if v is None else str(v)

    cols = [c for c in rows[0] if c != "commit"]
    cells = [[cell(r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)
