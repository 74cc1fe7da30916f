"""Promote stage: `python -m tasks.promote` (DVC stage `promote`: models/ + export/ -> registry/).

The newly trained model (the challenger: models/ with its ONNX export in export/) replaces the
champion of registry/ (tasks/core/registry.py) only if it clears `promote.floors`, beats the best
baseline of reports/metrics.json on `promote.metric` by `promote.min_margin_over_baseline`
(absolute points for accuracy/macro-F1, relative for the lower-is-better metrics; the baselines are
the evaluate stage's, on the same train and test split: tasks/core/baselines.py), and does not lose
to the champion on `promote.metric` by more than `promote.min_improvement` allows. Champion and
challenger are measured on the same items: the challenger's figures are reports/metrics.json (the
evaluate stage on the current test split), and the champion is re-evaluated here with the evaluate
stage's code on that same split, because splits are stable per item but a refresh may add items.
`promote.baseline_gate: false` reports the baseline comparison without refusing on it; with the
gate on, metrics.json without baselines is refused.

The decision and its reason ("macro-F1 0.9120 vs champion v0001 0.9050 on the same 270 test
items, +0.0070 ≥ 0.005; macro-F1 0.9120 vs best baseline logreg_pixels 0.8900, +0.0220 ≥ margin
0.01: promoted as v0002") go to reports/promotion.json, written whatever the outcome; the stage
fails (exit 1) only when it cannot decide. A worse challenger, a failure
before this stage or a crash in it leaves the champion untouched. `kiln promote --force --reason`
calls `force_promote`, recorded in the registry as forced.
"""

from __future__ import annotations

import json
import logging
import math
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.core import registry
from tasks.core.baselines import HIGHER_IS_BETTER, best_baseline
from tasks.core.dataset import DataError
from tasks.core.io import write_json
from tasks.core.models import CARD_FILE, WEIGHTS_FILE, ModelError, read_card
from tasks.core.onnx_export import ONNX_CARD, ONNX_FILE
from tasks.core.params import ParamsError, load_params
from tasks.core.paths import CLEAN_DIR, EXPORT_DIR, METRICS, MODELS_DIR, PROMOTION_REPORT
from tasks.core.plugins import task_type
from tasks.core.stage import setup_logging

if TYPE_CHECKING:
    from tasks.core.params import Params, PromoteParams

logger = logging.getLogger("kiln.promote")

LABELS = {
    "accuracy": "accuracy",
    "macro_f1": "macro-F1",
    "mae": "MAE",
    "rmse": "RMSE",
    "mape": "MAPE",
    "val_loss": "test loss",
    "perplexity": "perplexity",
}


class PromoteError(RuntimeError):
    """The challenger or the champion cannot be judged; the message names the file."""


@dataclass(frozen=True)
class Decision:
    outcome: str  # "promoted", "kept" (champion stays) or "unchanged" (challenger is champion)
    reason: str

    @property
    def promoted(self) -> bool:
        return self.outcome == "promoted"


def headline(metrics: dict[str, Any], task: str) -> dict[str, Any]:
    """The metrics promote compares (the task type's headline metrics) and n_test."""
    return {k: metrics[k] for k in (*task_type(task).headline_metrics, "n_test")}


def baseline_headlines(metrics: dict[str, Any], task: str) -> dict[str, dict[str, Any]]:
    """metrics.json's `baselines`, each cut to the headline metrics it reports ({} if none)."""
    names = (*task_type(task).headline_metrics, "n_test")
    baselines = metrics.get("baselines")
    if not isinstance(baselines, dict):
        return {}
    return {
        name: {k: b[k] for k in names if k in b}
        for name, b in baselines.items()
        if isinstance(b, dict)
    }


def baseline_gate(
    cfg: PromoteParams, challenger: dict[str, Any], baselines: dict[str, dict[str, Any]]
) -> tuple[bool, str]:
    """(passes, the comparison as text): the challenger against the best baseline on
    `cfg.metric`. The gain is in the metric's good direction: absolute for accuracy/macro-F1,
    relative to the baseline for the lower-is-better metrics; it must reach
    `cfg.min_margin_over_baseline` (always passes with `cfg.baseline_gate` off)."""
    name, new, margin = LABELS[cfg.metric], challenger[cfg.metric], cfg.min_margin_over_baseline
    best = best_baseline(baselines, cfg.metric)
    if best is None:
        text = f"{METRICS} reports no baseline with {name} to beat"
        if not cfg.baseline_gate:
            return True, f"{text} (baseline gate off)"
        return False, f"{text} (promote.baseline_gate: false promotes without one)"
    base_name, base = best
    if HIGHER_IS_BETTER[cfg.metric]:
        gain = round(new - base, 6)
        ok, shown = gain >= margin, f"{gain:+.4f} {{}} margin {margin:g}"
    else:  # relative: "1% lower" means the same for a perplexity of 8 or an MAE of 0.3 ppm
        gain = round((base - new) / abs(base), 6) if base else (0.0 if new == base else -math.inf)
        ok, shown = gain >= margin, f"{gain:+.2%} better {{}} margin {margin * 100:g}%"
    text = f"{name} {new:.4f} vs best baseline {base_name} {base:.4f}, " + shown.format(
        "≥" if ok else "<"
    )
    if not cfg.baseline_gate:
        return True, f"{text} (baseline gate off)"
    return ok, text


def _floors(cfg: PromoteParams, challenger: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(floors missed, floors cleared) as text, for the floors of metrics the challenger has."""
    missed, cleared = [], []
    for name, bound in cfg.floors.model_dump().items():
        if bound is None or name not in challenger:
            continue
        value, higher = challenger[name], HIGHER_IS_BETTER[name]
        ok = value >= bound if higher else value <= bound
        if ok:
            cleared.append(f"{LABELS[name]} {value:.4f} {'≥' if higher else '≤'} {bound:g}")
        else:
            missed.append(
                f"{LABELS[name]} {value:.4f} {'< floor' if higher else '> limit'} {bound:g}"
            )
    return missed, cleared


def decide(
    cfg: PromoteParams,
    challenger: dict[str, Any],
    champion: dict[str, Any] | None,
    champion_version: str | None = None,
    baselines: dict[str, dict[str, Any]] | None = None,
) -> Decision:
    """Pure: the floors, then the best of `baselines` (None: not judged), then the champion;
    headline metrics measured on the same test items."""
    missed, cleared = _floors(cfg, challenger)
    keeps = f"champion {champion_version} kept" if champion_version else "no champion yet"
    if missed:
        return Decision("kept", f"{', '.join(missed)}: not promoted ({keeps})")
    gate = None if baselines is None else baseline_gate(cfg, challenger, baselines)
    if gate is not None and not gate[0]:
        return Decision("kept", f"{gate[1]}: not promoted ({keeps})")
    beats = f"; {gate[1]}" if gate else ""
    name, new = LABELS[cfg.metric], challenger[cfg.metric]
    if champion is None:
        return Decision(
            "promoted",
            f"no champion yet; floors cleared ({', '.join(cleared) or 'none set'}){beats}: "
            "promoted",
        )
    old = champion[cfg.metric]
    # The gain in the metric's good direction; rounded to 6 places: no float-noise ties.
    delta = round((new - old) if HIGHER_IS_BETTER[cfg.metric] else (old - new), 6)
    head = (
        f"{name} {new:.4f} vs champion {champion_version} {old:.4f} on the same "
        f"{challenger['n_test']} test items, {delta:+.4f}"
    )
    if delta >= cfg.min_improvement:
        return Decision("promoted", f"{head} ≥ {cfg.min_improvement:g}{beats}: promoted")
    return Decision("kept", f"{head} < {cfg.min_improvement:g}{beats}: not promoted ({keeps})")


def champion_on(
    root: Path, version: str, params: Params, clean_dir: Path = CLEAN_DIR
) -> dict[str, Any] | str:
    """The champion's metrics on the current test split, or why it cannot be measured there.

    The task type measures it (`TaskType.test_metrics`) on data/clean under `clean_dir`."""
    for name in registry.entry(root, version).get("files", {}) or (CARD_FILE, WEIGHTS_FILE):
        registry.verified_bytes(root, version, name)  # RegistryError if damaged: fail loudly
    task = params.project.task
    try:
        measured = task_type(task).test_metrics(root / "versions" / version, clean_dir, params)
        return headline(measured, task)
    except (ValueError, RuntimeError, KeyError) as exc:  # DataError, ModelError, the task's own
        return f"{type(exc).__name__}: {exc}"


def git_info(project: Path) -> dict[str, Any]:
    """The code's git revision and whether tracked files differ from it (None outside git)."""

    def git(*args: str) -> str | None:
        try:
            proc = subprocess.run(
                ["git", *args], cwd=project, capture_output=True, text=True, timeout=30, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return proc.stdout.strip() if proc.returncode == 0 else None

    rev = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if rev else None
    return {"git_rev": rev, "git_dirty": bool(status) if status is not None else None}


def challenger_files(project: Path) -> tuple[dict[str, Path], dict[str, Any]]:
    """models/ + export/ files of the challenger and its card; checks they belong together."""
    models, export = project / MODELS_DIR, project / EXPORT_DIR
    card, _ = read_card(models)  # weights checked against the card's sha256
    try:
        onnx_card = json.loads((export / ONNX_CARD).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise PromoteError(f"cannot read {export / ONNX_CARD}: {exc}; run export") from None
    if onnx_card.get("weights_sha256") != card["weights_sha256"]:
        raise PromoteError(f"{export} was exported from other weights than {models}; re-run export")
    if registry.sha256_file(export / ONNX_FILE) != onnx_card.get("onnx_sha256"):
        raise PromoteError(f"{export / ONNX_FILE} does not match {ONNX_CARD}: re-run export")
    # Every file of both directories (a task type may add some, e.g. a tokenizer), by name.
    files = {p.name: p for d in (models, export) for p in sorted(d.iterdir()) if p.is_file()}
    clash = sorted({p.name for p in models.iterdir()} & {p.name for p in export.iterdir()})
    if clash:
        raise PromoteError(f"{models} and {export} both hold {clash}: names must be distinct")
    return files, card


def _info(project: Path, params: Params, card: dict[str, Any], metrics: dict | None) -> dict:
    config = card["config"]
    image = {"height": config["height"], "width": config["width"]} if "height" in config else None
    return {
        "task": params.project.task,
        "architecture": card["architecture"],
        "classes": card["classes"],
        "image": image,
        "data_version": card.get("data_version"),
        "weights_sha256": card["weights_sha256"],
        "metrics": metrics,
        **git_info(project),
    }


def promote(project: Path, params: Params, root: Path) -> dict[str, Any]:
    """Decide, register a promoted challenger; returns the promotion.json content."""
    files, card = challenger_files(project)
    task = params.project.task
    try:
        reported = json.loads((project / METRICS).read_text(encoding="utf-8"))
        metrics = headline(reported, task)
    except (OSError, json.JSONDecodeError, KeyError) as exc:
        raise PromoteError(f"cannot read {METRICS}: {exc!r}; run the evaluate stage") from None
    baselines = baseline_headlines(reported, task)
    current, before = registry.champion(root), None
    their_task = current and registry.task_of(current[1])
    if current and current[1]["weights_sha256"] == card["weights_sha256"]:
        decision = Decision("unchanged", f"the challenger is champion {current[0]} already")
    elif current and their_task != task:
        # The project switched task type (`kiln use`): no champion of this task type to beat,
        # only the floors; the old champion stays in the registry (`kiln models rollback`).
        first = decide(params.promote, metrics, None, None, baselines)
        decision = Decision(
            first.outcome,
            f"champion {current[0]} is a {their_task} model and the project is {task} now: "
            f"judged as its first {task} model; {first.reason}",
        )
    else:
        theirs = champion_on(root, current[0], params, project / CLEAN_DIR) if current else None
        if isinstance(theirs, dict) and theirs["n_test"] != metrics["n_test"]:
            raise PromoteError(
                f"{METRICS} has n_test={metrics['n_test']} but the current test split has "
                f"{theirs['n_test']}: stale metrics, run evaluate"
            )
        if isinstance(theirs, str):
            decision = Decision(
                "kept",
                f"champion {current[0]} cannot be measured on the current "
                f"test items ({theirs}): not promoted; `kiln promote --force "
                "--reason ...` overrides",
            )
        else:
            decision = decide(params.promote, metrics, theirs, current and current[0], baselines)
            before = theirs
    after = current[0] if current else None
    if decision.promoted:
        after = registry.add_version(
            root, files, _info(project, params, card, metrics), reason=decision.reason
        )
        decision = Decision("promoted", f"{decision.reason} as {after}")
    return {
        "outcome": decision.outcome,
        "promoted": decision.promoted,
        "reason": decision.reason,
        "forced": False,
        "metric": params.promote.metric,
        "min_improvement": params.promote.min_improvement,
        "floors": params.promote.floors.model_dump(),
        "baseline_gate": params.promote.baseline_gate,
        "min_margin_over_baseline": params.promote.min_margin_over_baseline,
        "best_baseline": _best(baselines, params.promote.metric),
        "challenger": {
            "weights_sha256": card["weights_sha256"],
            "data_version": card.get("data_version"),
            "metrics": metrics,
            "baselines": baselines,
        },
        "champion_before": current and {"version": current[0], "metrics_now": before},
        "champion_after": after,
    }


def _best(baselines: dict[str, dict[str, Any]], metric: str) -> dict[str, Any] | None:
    best = best_baseline(baselines, metric)
    return best and {"name": best[0], metric: best[1]}


def force_promote(project: Path, params: Params, root: Path, reason: str) -> str:
    """`kiln promote --force`: make models/ + export/ the champion, recorded as forced."""
    if not reason.strip():
        raise PromoteError("a forced promotion needs --reason")
    files, card = challenger_files(project)
    current = registry.champion(root)
    if current and current[1]["weights_sha256"] == card["weights_sha256"]:
        raise PromoteError(f"{MODELS_DIR} is champion {current[0]} already; nothing to force")
    metrics_path = project / METRICS
    task = params.project.task
    metrics = (
        headline(json.loads(metrics_path.read_text()), task) if metrics_path.exists() else None
    )
    return registry.add_version(
        root,
        files,
        _info(project, params, card, metrics),
        reason=f"forced: {reason.strip()}",
        forced=True,
        action="force",
    )


def main() -> int:
    setup_logging()

    try:
        report = promote(Path("."), load_params(), registry.REGISTRY_DIR)
    except (ParamsError, DataError, ModelError, PromoteError, registry.RegistryError) as exc:
        logger.error("promote failed (champion untouched): %s", exc)
        return 1
    write_json(PROMOTION_REPORT, report)
    logger.info("%s; wrote %s", report["reason"], PROMOTION_REPORT)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
