"""The artifacts a flow run publishes: a metrics table and a markdown summary of every stage; and
evaluate's per-class metrics table, on its task run.

The figures come from the stages' own reports under `reports/` (docs/contracts.md); nothing here
computes a figure of its own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.crawl_report import crawl_figures, partial_crawl_line
from flows.dvc_stages import StageOutcome
from tasks.core import registry
from tasks.core.baselines import best_baseline
from tasks.core.data_docs import DEFAULT_PORT as DATA_DOCS_PORT


def _read(project: Path, name: str) -> dict[str, Any]:
    path = project / "reports" / name
    if not path.exists():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def stage_counts(project: Path) -> dict[str, Any]:
    """Records per stage: crawled, rejected, quarantined, cleaned, trained on (None if unknown)."""
    crawl, validate, clean = (
        _read(project, f) for f in ("crawl.json", "validate.json", "clean.json")
    )
    return {
        "crawled": crawl.get("items"),
        "rejected_by_crawl": crawl.get("rejects"),
        "quarantined_by_validate": validate.get("n_quarantined"),
        "removed_by_clean": clean.get("n_rejected"),
        "cleaned": clean.get("n_out"),
        "trained_on": (clean.get("splits") or {}).get("train"),
        "tested_on": (clean.get("splits") or {}).get("test"),
    }


# Where `kiln data-docs` serves the GX Data Docs (its default port): an http link the Prefect UI's
# artifact page can open, which a file:// one is not.
DATA_DOCS_URL = f"http://127.0.0.1:{DATA_DOCS_PORT}/"
# Every task type's headline (each params model's HEADLINE_METRICS) and MASE; a project reports
# its own.
METRIC_NAMES = ("accuracy", "macro_f1", "mae", "rmse", "mape", "mase", "val_loss", "perplexity")


def headline_metrics(project: Path) -> dict[str, Any]:
    metrics = _read(project, "metrics.json")
    return {k: metrics[k] for k in (*METRIC_NAMES, "n_test") if k in metrics}


def baseline_rows(project: Path) -> list[dict[str, Any]]:
    """The model, then each baseline of reports/metrics.json (tasks/core/baselines.py), on the
    metrics the model reports; [] when there are no baselines."""
    metrics = _read(project, "metrics.json")
    baselines = metrics.get("baselines") or {}
    if not baselines:
        return []
    names = [k for k in METRIC_NAMES if isinstance(metrics.get(k), int | float)]
    rows = [{"name": "model", **{k: metrics[k] for k in names}}]
    rows += [{"name": name, **{k: b.get(k) for k in names}} for name, b in baselines.items()]
    return rows


def _number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "-" if value is None else str(value)


def baselines_markdown(project: Path) -> list[str]:
    """A table of the model and its baselines, the best baseline of each metric in bold."""
    rows = baseline_rows(project)
    if not rows:
        return []
    names = [k for k in rows[0] if k != "name"]
    best = {}
    for k in names:
        found = best_baseline({r["name"]: r for r in rows[1:]}, k)
        best[k] = found and found[0]
    lines = ["| model vs baselines | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for row in rows:
        cells = [
            f"**{_number(row[k])}**"
            if best[k] == row["name"] and row is not rows[0]
            else _number(row[k])
            for k in names
        ]
        lines.append(f"| {row['name']} | " + " | ".join(cells) + " |")
    return ["", *lines, "", "Best baseline per metric in bold; promote gates on `promote.metric`."]


def summary_markdown(project: Path, outcomes: list[StageOutcome], failure: str | None) -> str:
    lines = ["# refresh-and-retrain", ""]
    if failure:
        lines += [f"**Failed:** {failure.splitlines()[0]}", ""]
    if partial := partial_crawl_line(project):  # stopped at a limit: kept or refused
        lines += [partial, ""]
    if any(o.stage == "train" and not o.ran for o in outcomes):
        lines += [
            "**Nothing retrained:** train was up to date (its data and params unchanged); "
            "the metrics below are the last trained model's.",
            "",
        ]
    # A list, not a table column: the Prefect UI does not wrap a table cell, and cut the reason
    # off at the page's width (tests/integration/test_prefect_ui.py).
    lines += ["**Stages:**", ""]
    lines += [f"* **{o.stage}** {'ran' if o.ran else 'skipped'}: {o.reason}" for o in outcomes]
    lines += ["", "| records | count |", "|---|---|"]
    lines += [
        f"| {k.replace('_', ' ')} | {v if v is not None else '-'} |"
        for k, v in stage_counts(project).items()
    ]
    metrics = headline_metrics(project)
    if metrics:
        lines += ["", "| test metric | value |", "|---|---|"]
        lines += [
            f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |"
            for k, v in metrics.items()
        ]
    lines += baselines_markdown(project)
    for line in champion_lines(project, outcomes):
        label, _, text = line.partition(": ")
        lines += ["", f"**{label}:** {text}"]
    return "\n".join(lines) + "\n"


# How a version became the champion: the registry history's actions (tasks/core/registry.py).
_BECAME = {
    "promote": "promoted",
    "force": "promoted by `kiln promote --force`",
    "rollback": "restored by `kiln models rollback`",
}


def champion_lines(project: Path, outcomes: list[StageOutcome], note: str = "") -> list[str]:
    """What this run did to the champion, the end of `kiln run` and of the run summary: when
    promote ran, its decision ("Promotion: ...") and the champion after it; otherwise only the
    champion, when it became one and that this run left it alone: reports/promotion.json then
    holds an earlier run's decision, which is not news. `note` is added in the parentheses."""
    try:
        history = registry.read_registry(project / registry.REGISTRY_DIR).get("history") or []
        current = registry.champion(project / registry.REGISTRY_DIR)
    except registry.RegistryError as exc:
        return [f"Champion: unknown ({exc})"]
    version = current[0] if current else None
    lines, notes = [], []
    if any(o.stage == "promote" and o.ran for o in outcomes):
        lines.append(f"Promotion: {_read(project, 'promotion.json').get('reason', '-')}")
    else:
        event = next((e for e in reversed(history) if e.get("version") == version), None)
        if event:
            when = event["at"].replace("T", " ").replace("Z", " UTC")
            notes.append(f"{_BECAME.get(event['action'], event['action'])} {when}")
        notes.append("unchanged by this run")
    said = "; ".join(filter(None, (", ".join(notes), note)))
    lines.append(f"Champion: {version or 'none yet'}" + (f" ({said})" if said else ""))
    return lines


def promotion_markdown(project: Path, outcomes: list[StageOutcome]) -> str | None:
    """The promote stage's decision with both sides' metrics on the same test items."""
    report = _read(project, "promotion.json")
    if not report or not any(o.stage == "promote" and o.ran for o in outcomes):
        return None
    before = report.get("champion_before") or {}
    theirs = before.get("metrics_now") or {}
    lines = [
        "# promotion",
        "",
        f"**{report['outcome']}**: {report['reason']}",
        "",
        f"| metric | challenger | champion {before.get('version', '(none)')} |",
        "|---|---|---|",
    ]
    lines += [
        f"| {k} | {v} | {theirs.get(k, '-')} |" for k, v in report["challenger"]["metrics"].items()
    ]
    lines += ["", f"Champion after this run: {report.get('champion_after') or 'none'}"]
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def validation_markdown(project: Path) -> str | None:
    """Which expectations failed, on how many rows, with examples (reports/validation/
    summary.json, written by the validate stage), and a link to the GX Data Docs."""
    summary = _read(project, "validation/summary.json")
    if not summary:
        return None
    lines = [
        "# validation",
        "",
        f"**{'passed' if summary['success'] else 'FAILED'}**: {summary['n_valid']} of "
        f"{summary['n_in']} rows valid, {summary['n_quarantined']} quarantined "
        f"(share {summary['quarantine_share']}). Data Docs: [{DATA_DOCS_URL}]({DATA_DOCS_URL}) "
        f"(`kiln data-docs` serves {summary['data_docs']} there)",
        "",
    ]
    lines += [f"* failure: {_cell(m)}" for m in summary.get("failures", [])]
    lines += [f"* warning: {_cell(m)}" for m in summary.get("warnings", [])]
    failed = [e for e in summary["expectations"] if not e["success"]]
    if not failed:
        lines += ["", f"All {len(summary['expectations'])} expectations passed."]
        return "\n".join(lines) + "\n"
    # A list, not a table: the Prefect UI does not wrap a table cell, and cut the examples off at
    # the page's width (tests/integration/test_prefect_ui.py).
    lines += ["", "**Failed expectations**, each with example rows (url: value):", ""]
    for e in failed:
        if e["raised"]:
            what = f"raised: {_cell(e['raised'])}"
        elif e["failed_rows"]:
            what = f"{e['failed_rows']} rows"
        else:  # a check of the whole table (a column, the row count): no rows to show
            observed = e.get("observed")
            what = "failed" + (f", observed {_cell(observed)}" if observed is not None else "")
        lines.append(f"* **{_cell(e['expectation'])}** ({e['severity']}): {what}")
        lines += [f"  * {_cell(x['url'])}: {_cell(repr(x['value']))}" for x in e["examples"]]
    return "\n".join(lines) + "\n"


def drift_markdown(project: Path) -> str | None:
    """Drift against the last DVC-recorded data (reports/drift.json, written by validate)."""
    drift = _read(project, "drift.json")
    if not drift:
        return None
    lines = ["# drift", "", f"**{drift['status']}**, compared with {drift.get('previous')}", ""]
    checks = drift.get("checks") or {}
    if checks:
        lines += ["| check | statistic | threshold | severity | verdict |", "|---|---|---|---|---|"]
        for name, c in checks.items():
            verdict = c.get("verdict") or ("drifted" if c["drifted"] else "ok")
            statistic = "–" if c["statistic"] is None else c["statistic"]
            lines.append(
                f"| {name} | {statistic} | {c['threshold']} | {c['severity']} | "
                f"{'**drifted**' if verdict == 'drifted' else verdict} |"
            )
    return "\n".join(lines) + "\n"


def per_class_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per class of a classifier's metrics.json `per_class` (scikit-learn's precision,
    recall, F1 and support: tasks/core/classification.py), in its order; [] for other task types."""
    return [
        {"class": name, **{k: figures[k] for k in ("precision", "recall", "f1", "support")}}
        for name, figures in (metrics.get("per_class") or {}).items()
    ]


def publish_per_class(stage: str, spec: dict[str, Any], project: Path) -> bool:
    """The per-class metrics of the stage's metrics files (dvc.yaml `metrics:`; evaluate's
    reports/metrics.json) as a table artifact of the current task run; False when none has any."""
    for out in spec.get("metrics", []):
        path = project / (out if isinstance(out, str) else next(iter(out)))
        if path.is_file() and (rows := per_class_rows(json.loads(path.read_text("utf-8")))):
            create_table_artifact(
                table=rows,
                key=f"{stage}-per-class",
                description=f"Per-class test metrics from `{path.relative_to(project).as_posix()}`"
                " (scikit-learn)",
            )
            return True
    return False


def crawl_stats(project: Path) -> dict[str, Any]:
    """The last crawl's figures (reports/crawl.json, or reports/crawl_partial.json when it was
    refused for being partial: tasks/crawl.py), in a fixed order. The crawl's task run shows them
    as its artifact (flows/crawl_report.py)."""
    return crawl_figures(project)


def publish_artifacts(
    project: Path, outcomes: list[StageOutcome], failure: str | None = None
) -> None:
    for key, markdown, description in (
        ("validation", validation_markdown(project), "Expectations that failed, with examples"),
        ("drift", drift_markdown(project), "Drift against the last DVC-recorded data"),
        ("promotion", promotion_markdown(project, outcomes), "Champion/challenger decision"),
    ):
        if markdown:
            create_markdown_artifact(markdown=markdown, key=key, description=description)
    metrics = headline_metrics(project)
    if metrics:
        create_table_artifact(
            table=[{"metric": k, "value": v} for k, v in metrics.items()],
            key="metrics",
            description="Test-split metrics from reports/metrics.json",
        )
    rows = baseline_rows(project)
    if rows:
        create_table_artifact(
            table=rows,
            key="baselines",
            description="The model and its baselines on the same test split (metrics.json)",
        )
    create_markdown_artifact(
        markdown=summary_markdown(project, outcomes, failure),
        key="run-summary",
        description="What each stage did and the records it accounted for",
    )
