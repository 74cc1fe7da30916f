"""The artifacts a flow run publishes: a metrics table and a markdown summary of every stage.

The figures come from the stages' own reports under `reports/` (docs/contracts.md); nothing here
computes a figure of its own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.dvc_stages import StageOutcome


def _read(project: Path, name: str) -> dict[str, Any]:
    path = project / "reports" / name
    if not path.exists():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def stage_counts(project: Path) -> dict[str, Any]:
    """Records per stage: crawled, rejected, quarantined, cleaned, trained on (None if unknown)."""
    crawl, validate, clean = (_read(project, f) for f in ("crawl.json", "validate.json",
                                                          "clean.json"))
    return {
        "crawled": crawl.get("items"),
        "rejected_by_crawl": crawl.get("rejects"),
        "quarantined_by_validate": validate.get("n_quarantined"),
        "removed_by_clean": clean.get("n_rejected"),
        "cleaned": clean.get("n_out"),
        "trained_on": (clean.get("splits") or {}).get("train"),
        "tested_on": (clean.get("splits") or {}).get("test"),
    }


def headline_metrics(project: Path) -> dict[str, Any]:
    metrics = _read(project, "metrics.json")
    return {k: metrics[k] for k in ("accuracy", "macro_f1", "n_test") if k in metrics}


def summary_markdown(project: Path, outcomes: list[StageOutcome], failure: str | None) -> str:
    lines = ["# refresh-and-retrain", ""]
    if failure:
        lines += [f"**Failed:** {failure.splitlines()[0]}", ""]
    lines += ["| stage | ran | why |", "|---|---|---|"]
    lines += [f"| {o.stage} | {'yes' if o.ran else 'skipped'} | {o.reason} |" for o in outcomes]
    lines += ["", "| records | count |", "|---|---|"]
    lines += [f"| {k.replace('_', ' ')} | {v if v is not None else '-'} |"
              for k, v in stage_counts(project).items()]
    metrics = headline_metrics(project)
    if metrics:
        lines += ["", "| test metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |"
                  for k, v in metrics.items()]
    return "\n".join(lines) + "\n"


def publish_artifacts(project: Path, outcomes: list[StageOutcome],
                      failure: str | None = None) -> None:
    metrics = headline_metrics(project)
    if metrics:
        create_table_artifact(
            table=[{"metric": k, "value": v} for k, v in metrics.items()],
            key="metrics", description="Test-split metrics from reports/metrics.json",
        )
    create_markdown_artifact(
        markdown=summary_markdown(project, outcomes, failure), key="run-summary",
        description="What each stage did and the records it accounted for",
    )
