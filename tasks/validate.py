"""Validate the crawl: `python -m tasks.validate` (DVC stage `validate`, from the project root).

Reads `data/raw/items.jsonl` (and, for image classification, the images under `data/raw/`),
checks every row with a Great Expectations 1.x suite built from the `validate` and `labels` params
and what the task type's rows hold (`TaskType.columns`: labels, images, a text column, a time
and a value column), and writes `data/validated/items.parquet` (rows that passed),
`data/quarantine/validate.jsonl` (rows that did not, with the reason), Data Docs under
`reports/validation/` and `reports/validate.json`.

Row-level failures (a null or unknown label, an unreadable image, an empty text, a date that does
not parse, a value that is not a number...) quarantine the row; the suite is then re-run on the
remaining rows. The stage passes only if that second run succeeds and at most
`validate.max_quarantine_share` of the rows were quarantined. Table-level failures (missing
column, too few rows, empty crawl) and expectations that raised fail it outright. A failing run
still writes the report and the metrics, but leaves `data/validated` and the quarantine file as
they were: the last good outputs survive a failed run.

The suite is the task type's defaults plus `validate.expectations` (tasks/core/gx_suite.py); an
expectation of severity `warn` is reported (log, metrics, summary) but neither quarantines nor
fails. Drift against the last DVC-recorded version (tasks/core/drift.py) goes to
`reports/drift.json`, and drawn in `reports/validation/drift.png`; a drifted `fail` check fails
the stage. `reports/validation/summary.json` feeds the flow's markdown artifact (flows/summary.py).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from tasks.core.drift import (
    DRIFT_PNG,
    PROFILE,
    drift_failures,
    drift_report,
    plot_drift,
    profile_of,
)
from tasks.core.gx_suite import Check, RawItemsSuite
from tasks.core.io import atomic_dir, read_jsonl, write_json, write_jsonl, write_parquet
from tasks.core.label_review import OverridesError, read_overrides
from tasks.core.params import LabelParams, ParamsError, ValidateParams, load_params
from tasks.core.paths import (
    DRIFT_REPORT,
    RAW_DIR,
    VALIDATE_QUARANTINE,
    VALIDATE_REPORT,
    VALIDATED_DIR,
    VALIDATION_DIR,
)
from tasks.core.plugins import task_type
from tasks.core.stage import setup_logging
from tasks.core.validate_derive import (
    IMAGES,
    TaskColumns,
    _plain,
    _with_derived,  # noqa: F401 (tests reach it through validate)
    with_derived,
)
from tasks.core.validate_report import validation_summary

log = logging.getLogger("kiln.validate")


@dataclass
class ValidationOutcome:
    n_in: int
    valid: pd.DataFrame  # raw rows that passed every row-level expectation, raw columns only
    quarantine: list[dict[str, Any]]  # the other rows: raw columns plus `reason`
    success: bool
    failures: list[str]  # why the stage fails; empty when it passes
    failed_rows: dict[str, int]  # row-level expectation -> rows failing it, on all rows
    suite: RawItemsSuite = field(repr=False)  # holds both GX runs, for the Data Docs
    warnings: list[str] = field(default_factory=list)  # severity "warn" failures: reported only
    checks: list[Check] = field(default_factory=list, repr=False)  # the run on all rows
    checked: pd.DataFrame | None = field(default=None, repr=False)  # raw + derived columns
    profile: pd.DataFrame | None = field(default=None, repr=False)  # valid rows, for drift
    shown_as: dict[str, str] = field(default_factory=dict)  # derived -> raw column, for examples

    @property
    def metrics(self) -> dict[str, Any]:
        n_q = len(self.quarantine)
        return {
            "n_in": self.n_in,
            "n_valid": len(self.valid),
            "n_quarantined": n_q,
            "quarantine_share": round(n_q / self.n_in, 6) if self.n_in else 0.0,
            "success": self.success,
            "failed_rows": self.failed_rows,
            "failures": self.failures,
            "warnings": self.warnings,
        }

    def add_drift(self, report: dict[str, Any]) -> None:
        """Fold the drift report in: a drifted `fail` check fails the stage, `warn` is reported."""
        failures = drift_failures(report)
        self.failures += failures
        self.warnings += [
            f"drift {name}: {c['statistic']} > threshold {c['threshold']}"
            for name, c in (report.get("checks") or {}).items()
            if c["drifted"] and c["severity"] == "warn"
        ]
        self.success = self.success and not failures


def _pct(share: float) -> str:
    return f"{share * 100:.4g}%"


def _table_failures(checks: list[Check], params: ValidateParams) -> list[tuple[Check, str]]:
    """(check, message) for failures that quarantine cannot cure, in suite order."""
    missing = {c.column for c in checks if c.failed and c.name.startswith("expect_column_to_exist")}
    # An expectation on a missing column raises; it is a failure, said once per column.
    blocked = Counter(c.column for c in checks if c.raised and c.column in missing)
    messages = []
    for check in checks:
        if not check.failed or check.row_level or (check.raised and check.column in missing):
            continue
        if check.column in missing:
            message = (
                f"{check.name} failed: column missing "
                f"({blocked[check.column]} expectations on it could not run)"
            )
        elif check.raised is not None:
            message = f"{check.name} raised: {check.raised}"
        elif check.name == "expect_table_row_count_to_be_between" and check.severity == "fail":
            message = f"{check.name} failed: {check.observed} rows < min_rows {params.min_rows}"
        else:
            observed = f" (observed {check.observed})" if check.observed is not None else ""
            message = f"{check.name} failed{observed}"
        messages.append((check, message))
    return messages


def _split_by_severity(found: list[tuple[Check, str]]) -> tuple[list[str], list[str]]:
    """(failures, warnings): a raise is a failure whatever the severity (it checked nothing)."""
    failures = [m for c, m in found if c.severity == "fail" or c.raised is not None]
    warnings = [m for c, m in found if c.severity == "warn" and c.raised is None]
    return failures, warnings


def _check_accounting(raw: pd.DataFrame, valid: pd.DataFrame, quarantine: list[dict]) -> None:
    """N1: every input row is in exactly one of valid / quarantine, counted by url."""

    def key(url: Any) -> Any:
        url = _plain(url)
        return url if url is None or isinstance(url, str) else repr(url)  # lists are unhashable

    def urls(frame: pd.DataFrame) -> list[Any]:
        return [key(u) for u in frame["url"]] if "url" in frame else [None] * len(frame)

    out = Counter(urls(valid)) + Counter(key(row.get("url")) for row in quarantine)
    if Counter(urls(raw)) != out or len(raw) != len(valid) + len(quarantine):
        raise AssertionError(
            f"accounting broken: n_in {len(raw)} != n_valid {len(valid)} "
            f"+ n_quarantined {len(quarantine)} (by url)"
        )


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    return "number" if isinstance(value, int | float) else type(value).__name__


def _mixed_types(valid: pd.DataFrame) -> list[str]:
    """Columns whose valid rows hold values of more than one type (a float and a numeric string
    from a custom spider): parquet takes one type per column, so say so instead of crashing."""
    messages = []
    for column in valid.columns:
        kinds = sorted({_kind(v) for v in valid[column] if _plain(v) is not None})
        if len(kinds) > 1:
            messages.append(
                f"column {column} mixes value types ({', '.join(kinds)}) in valid rows; "
                "the crawl must write one type per field"
            )
    return messages


def validate_items(
    df: pd.DataFrame,
    raw_dir: Path,
    labels: LabelParams,
    params: ValidateParams,
    overrides: dict[str, str] | None = None,
    *,
    task: TaskColumns = IMAGES,
) -> ValidationOutcome:
    """Check the raw rows `df` of a crawl for `task`'s type (images named relative to `raw_dir`);
    decide pass or fail. `overrides` ({key: class}, labels.overrides) stand in for the crawled
    labels of classification tasks."""
    raw = df.reset_index(drop=True).astype(object)  # positions = GX's unexpected indexes
    n_in = len(raw)
    checked = with_derived(raw, raw_dir, labels, params.numeric_columns, overrides, task=task)
    suite = RawItemsSuite(labels, params, task)

    first = suite.run(checked, "all_rows")
    failures, warnings = _split_by_severity(_table_failures(first, params))
    reasons: dict[int, list[str]] = {}
    failed_rows = {}
    for check in (c for c in first if c.row_level):
        failed_rows[check.name] = len(check.rows)
        if check.severity == "warn":  # reported, never quarantined
            warnings.append(f"{check.name} failed on {len(check.rows)} of {n_in} rows")
            continue
        for i in check.rows:
            reasons.setdefault(i, []).append(check.name)
    bad = sorted(reasons)
    quarantine = [
        {**{k: _plain(v) for k, v in raw.loc[i].items()}, "reason": "; ".join(reasons[i])}
        for i in bad
    ]
    valid = raw.drop(index=bad).reset_index(drop=True)
    _check_accounting(raw, valid, quarantine)

    if not failures:  # table-level failures end it; otherwise judge the share and the rest
        share = len(bad) / n_in if n_in else 0.0
        if share > params.max_quarantine_share:
            which = ", ".join(
                f"{c.name} failed on {len(c.rows)} of {n_in} rows"
                for c in first
                if c.row_level and c.severity == "fail"
            )
            failures.append(
                f"{which} ({len(bad)} of {n_in} rows quarantined: {_pct(share)} > "
                f"max_quarantine_share {_pct(params.max_quarantine_share)})"
            )
        second = suite.run(checked.drop(index=bad), "valid_rows")
        failures += [
            f"after quarantine: {c.name} failed on {len(c.rows)} of {len(valid)} rows"
            for c in second
            if c.row_level and c.severity == "fail"
        ]
        more_failures, _ = _split_by_severity(_table_failures(second, params))
        failures += [f"after quarantine: {m}" for m in more_failures]
    failures += _mixed_types(valid)
    return ValidationOutcome(
        n_in=n_in,
        valid=valid,
        quarantine=quarantine,
        success=not failures,
        failures=failures,
        failed_rows=failed_rows,
        suite=suite,
        warnings=warnings,
        checks=first,
        checked=checked,
        profile=profile_of(checked.drop(index=bad), params.numeric_columns, task),
        shown_as=task.shown_as(),
    )


def drift_csv(drift: dict[str, Any]) -> str:
    """One row per drift check with a statistic: DVC's bar plot of reports/validation/drift.csv
    (dvc.yaml `plots:`) shows each statistic beside its threshold."""
    rows = ["check,statistic,threshold,verdict"]
    for name, check in (drift.get("checks") or {}).items():
        if check.get("statistic") is not None:
            verdict = check.get("verdict") or ("drifted" if check.get("drifted") else "ok")
            rows.append(f"{name},{check['statistic']},{check['threshold']},{verdict}")
    return "\n".join(rows) + "\n"


def main() -> int:
    setup_logging()
    # GX's INFO lines are set-up chatter; one of its modules pins its own logger to INFO.
    for name in ("great_expectations", "great_expectations.data_context.types.base"):
        logging.getLogger(name).setLevel(logging.WARNING)
    started = time.perf_counter()
    try:
        params = load_params()
    except ParamsError as exc:
        log.error("%s", exc)
        return 1
    items_file = RAW_DIR / "items.jsonl"
    if not items_file.is_file():
        log.error("%s not found: run the crawl first", items_file)
        return 1
    df = pd.DataFrame(read_jsonl(items_file), dtype=object)
    task = task_type(params.project.task).columns(params)
    log.info("read %d rows from %s (%s)", len(df), items_file, params.project.task)

    overrides = None  # labels/overrides.csv names classes: only classification reads it
    try:
        if task.has_labels:
            overrides = read_overrides(Path(params.labels.overrides), params.labels)
    except OverridesError as exc:
        log.error("%s", exc)
        return 1
    outcome = validate_items(df, RAW_DIR, params.labels, params.validate_, overrides, task=task)
    drift = {"status": "not checked (no valid rows)"}
    if len(outcome.valid):
        drift = drift_report(Path.cwd(), outcome.profile, params.validate_.drift, task)
        outcome.add_drift(drift)
    with atomic_dir(VALIDATION_DIR) as tmp:
        outcome.suite.write_docs(tmp)
        write_json(tmp / "summary.json", validation_summary(outcome, VALIDATION_DIR / "index.html"))
        (tmp / "drift.csv").write_text(drift_csv(drift), encoding="utf-8")
        plot_drift(drift, tmp / DRIFT_PNG)  # the same checks, drawn for the Prefect UI
    write_json(VALIDATE_REPORT, outcome.metrics)
    write_json(DRIFT_REPORT, drift)
    for warning in outcome.warnings:
        log.warning("%s", warning)
    if not outcome.success:
        log.error("validation failed: %s", "; ".join(outcome.failures))
        log.error("%s left as it was; report: %s/index.html", VALIDATED_DIR, VALIDATION_DIR)
        return 1
    with atomic_dir(VALIDATED_DIR) as tmp:
        write_parquet(outcome.valid, tmp / "items.parquet")
        write_parquet(outcome.profile, tmp / PROFILE)
    write_jsonl(VALIDATE_QUARANTINE, outcome.quarantine)
    log.info(
        "validated %d of %d rows, quarantined %d, in %.1f s; report: %s/index.html",
        len(outcome.valid),
        outcome.n_in,
        len(outcome.quarantine),
        time.perf_counter() - started,
        VALIDATION_DIR,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
