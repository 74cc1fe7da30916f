"""Validate the crawl: `python -m tasks.validate` (DVC stage `validate`, run from the project root).

Reads `data/raw/items.jsonl` and the images under `data/raw/`, checks every row with a Great
Expectations 1.x suite built from the `validate` and `labels` params, and writes
`data/validated/items.parquet` (rows that passed), `data/quarantine/validate.jsonl` (rows that
did not, with the reason), Data Docs under `reports/validation/` and `reports/validate.json`.

Row-level failures (a null label, an unknown label, an unreadable image...) quarantine the row;
the suite is then re-run on the remaining rows. The stage passes only if that second run succeeds
and at most `validate.max_quarantine_share` of the rows were quarantined. Table-level failures
(missing column, too few rows, empty crawl) and expectations that raised fail it outright. A
failing run still writes the report and the metrics, but leaves `data/validated` and the
quarantine file as they were (RELIABILITY.md N2).
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image
from tqdm import tqdm

from tasks.gx_suite import Check, RawItemsSuite
from tasks.io import atomic_dir, read_jsonl, write_json, write_jsonl
from tasks.labels import normalise_label
from tasks.params import LabelParams, ParamsError, ValidateParams, load_params

log = logging.getLogger("kiln.validate")

RAW_DIR = Path("data/raw")
VALIDATED_DIR = Path("data/validated")
QUARANTINE = Path("data/quarantine/validate.jsonl")
REPORT_DIR = Path("reports/validation")
METRICS = Path("reports/validate.json")

# Pillow raises OSError (UnidentifiedImageError is one) for missing or undecodable files,
# SyntaxError from some format plugins on corrupt chunks, DecompressionBombError for huge ones.
_IMAGE_ERRORS = (OSError, SyntaxError, Image.DecompressionBombError)


@dataclass
class ValidationOutcome:
    n_in: int
    valid: pd.DataFrame  # raw rows that passed every row-level expectation, raw columns only
    quarantine: list[dict[str, Any]]  # the other rows: raw columns plus `reason`
    success: bool
    failures: list[str]  # why the stage fails; empty when it passes
    failed_rows: dict[str, int]  # row-level expectation -> rows failing it, on all rows
    suite: RawItemsSuite = field(repr=False)  # holds both GX runs, for the Data Docs

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
        }


def _is_null(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _plain(value: Any) -> Any:
    """A JSON-ready value: pandas' NaN for an absent key becomes null, numpy scalars Python."""
    if _is_null(value):
        return None
    return value.item() if hasattr(value, "item") else value


def _label_to_check(raw: Any, labels: LabelParams) -> Any:
    """The canonical class, else the raw value itself (so it fails the in-set check, visibly)."""
    if _is_null(raw):
        return None  # the not-null expectation reports it
    if isinstance(raw, str):
        return normalise_label(raw, labels) or raw.strip()
    return raw  # a number or a list is never one of the class strings


def _image_facts(raw_root: Path, image_path: Any) -> tuple[bool, int | None, int | None]:
    """(readable, width, height) of an image named relative to data/raw; never outside it."""
    if not isinstance(image_path, str) or "\x00" in image_path:  # NUL: no such file name
        return False, None, None
    path = (raw_root / image_path).resolve()
    if not path.is_relative_to(raw_root):
        return False, None, None  # "../" or an absolute path: not ours to open
    try:
        with Image.open(path) as img:
            img.load()  # decode fully: a truncated file fails here, not in clean
            return True, img.width, img.height
    except _IMAGE_ERRORS as exc:
        log.debug("image %s unreadable: %s", image_path, exc)
        return False, None, None


def _with_derived(raw: pd.DataFrame, raw_dir: Path, labels: LabelParams) -> pd.DataFrame:
    """`raw` plus the columns the suite checks: label_normalised and image_* facts."""
    out = raw.copy()
    none = [None] * len(raw)
    label = raw["label"] if "label" in raw else none
    paths = raw["image_path"] if "image_path" in raw else none
    raw_root = Path(raw_dir).resolve()
    facts = [_image_facts(raw_root, p) for p in tqdm(paths, desc="images", disable=None)]
    derived = {
        "label_normalised": [_label_to_check(v, labels) for v in label],
        "image_readable": [f[0] for f in facts],
        "image_width": [f[1] for f in facts],
        "image_height": [f[2] for f in facts],
    }
    for name, values in derived.items():
        out[name] = pd.Series(values, index=raw.index, dtype=object)
    return out


def _pct(share: float) -> str:
    return f"{share * 100:.4g}%"


def _table_failures(checks: list[Check], params: ValidateParams) -> list[str]:
    """Messages for failures that quarantine cannot cure, in suite order."""
    missing = {c.column for c in checks if c.failed and c.name.startswith("expect_column_to_exist")}
    # An expectation on a missing column raises; it is a failure, said once per column.
    blocked = Counter(c.column for c in checks if c.raised and c.column in missing)
    messages = []
    for check in checks:
        if not check.failed or check.row_level or (check.raised and check.column in missing):
            continue
        if check.column in missing:
            messages.append(
                f"{check.name} failed: column missing "
                f"({blocked[check.column]} expectations on it could not run)"
            )
        elif check.raised is not None:
            messages.append(f"{check.name} raised: {check.raised}")
        elif check.name == "expect_table_row_count_to_be_between":
            messages.append(
                f"{check.name} failed: {check.observed} rows < min_rows {params.min_rows}"
            )
        else:
            observed = f" (observed {check.observed})" if check.observed is not None else ""
            messages.append(f"{check.name} failed{observed}")
    return messages


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


def validate_items(
    df: pd.DataFrame, raw_dir: Path, labels: LabelParams, params: ValidateParams
) -> ValidationOutcome:
    """Check the raw rows `df` (images named relative to `raw_dir`); decide pass or fail."""
    raw = df.reset_index(drop=True).astype(object)  # positions = GX's unexpected indexes
    n_in = len(raw)
    checked = _with_derived(raw, raw_dir, labels)
    suite = RawItemsSuite(labels, params)

    first = suite.run(checked, "all_rows")
    failures = _table_failures(first, params)
    reasons: dict[int, list[str]] = {}
    failed_rows = {}
    for check in (c for c in first if c.row_level):
        failed_rows[check.name] = len(check.rows)
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
                f"{name} failed on {k} of {n_in} rows" for name, k in failed_rows.items()
            )
            failures.append(
                f"{which} ({len(bad)} of {n_in} rows quarantined: {_pct(share)} > "
                f"max_quarantine_share {_pct(params.max_quarantine_share)})"
            )
        second = suite.run(checked.drop(index=bad), "valid_rows")
        failures += [
            f"after quarantine: {c.name} failed on {len(c.rows)} of {len(valid)} rows"
            for c in second
            if c.row_level
        ]
        failures += [f"after quarantine: {m}" for m in _table_failures(second, params)]
    return ValidationOutcome(
        n_in=n_in,
        valid=valid,
        quarantine=quarantine,
        success=not failures,
        failures=failures,
        failed_rows=failed_rows,
        suite=suite,
    )


def _write_parquet(frame: pd.DataFrame, target: Path) -> None:
    # No pandas metadata in the file: equal rows give equal bytes whatever pandas wrote them.
    table = pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None)
    pq.write_table(table, target)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
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
    log.info("read %d rows from %s", len(df), items_file)

    outcome = validate_items(df, RAW_DIR, params.labels, params.validate_)
    with atomic_dir(REPORT_DIR) as tmp:
        outcome.suite.write_docs(tmp)
    write_json(METRICS, outcome.metrics)
    if not outcome.success:
        log.error("validation failed: %s", "; ".join(outcome.failures))
        log.error("%s left as it was; report: %s/index.html", VALIDATED_DIR, REPORT_DIR)
        return 1
    with atomic_dir(VALIDATED_DIR) as tmp:
        _write_parquet(outcome.valid, tmp / "items.parquet")
    write_jsonl(QUARANTINE, outcome.quarantine)
    log.info(
        "validated %d of %d rows, quarantined %d, in %.1f s; report: %s/index.html",
        len(outcome.valid),
        outcome.n_in,
        len(outcome.quarantine),
        time.perf_counter() - started,
        REPORT_DIR,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
