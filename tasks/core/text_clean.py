"""Clean stage of the text task types: `python -m tasks.clean` with project.task
text_classification or text_generation (their plug-ins' clean calls `clean_texts_stage`).

Reads `data/validated/items.parquet` (the text in column `clean.text.column`, the label in
`label`) and writes `data/clean/items.parquet` (key, url, text, split, first_seen, and for
classification label, label_index; sorted by key), `data/quarantine/clean.jsonl`,
`reports/label_issues.csv` (header only: text label review is not built) and `reports/clean.json`.

* text: normalised by `tasks.core.text_norm.normalise_text` per `clean.text` (the same function
  serving
  applies, read from the model card); shorter than `clean.text.min_chars` after that: rejected.
* key: sha256 of the normalised text (`text_key`). Rows sharing a key are one item: the first url
  kept, the others recorded with `duplicate_of`; copies that disagree on the label are all
  rejected ("conflicting labels"). Near duplicates (same `dedupe_form`: case-folded letters and
  digits) are handled the same way when `clean.text.near_duplicates` is on.
* labels (classification): `tasks.core.labels.normalise_label` (classes + aliases), then
  `labels/overrides.csv` (key = text_key of the normalised text) wins; unknown labels rejected.
* split: the stable hash of the key (`tasks.core.splits.split_of`).

Same input, byte-identical output; cleaning the output again changes nothing.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from tasks.core.clean_dedupe import keep_first_of_each
from tasks.core.io import atomic_dir, write_json, write_jsonl, write_parquet
from tasks.core.label_review import ISSUE_COLUMNS, OverridesError, read_overrides, write_csv
from tasks.core.labels import normalise_label
from tasks.core.paths import (
    CLEAN_DIR,
    CLEAN_QUARANTINE,
    CLEAN_REPORT,
    LABEL_ISSUES,
    VALIDATED_ITEMS,
)
from tasks.core.progress import track
from tasks.core.splits import split_of
from tasks.core.text_norm import dedupe_form, normalise_text, text_key

if TYPE_CHECKING:
    from tasks.core.params import Params

log = logging.getLogger("kiln.clean")

SPLITS = ("train", "val", "test")


@dataclass
class TextCleanResult:
    items: pd.DataFrame  # the data/clean/items.parquet rows, sorted by key
    rejects: list[dict[str, Any]]  # url, reason (+ duplicate_of), sorted by url
    report: dict[str, Any]  # reports/clean.json


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _grouped(rows: list[dict], key: str) -> list[list[dict]]:
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in rows:  # rows are in url order, so is each group; dicts keep first-seen order
        groups[row[key]].append(row)
    return list(groups.values())


def _read_rows(
    rows: list[dict],
    params: Params,
    overrides: dict[str, str],
    rejects: list[dict],
    classify: bool,
) -> tuple[list[dict], dict[str, int]]:
    """Rows with a usable text (and label when `classify`), normalised; counts of changes."""
    cfg, labels = params.clean.text, params.labels
    kept, changed = [], Counter()
    for row in track(rows, "clean.texts", unit="texts", logger=log):
        raw = row.get(cfg.column)
        if _missing(raw) or not isinstance(raw, str):
            rejects.append({"url": row["url"], "reason": f"text missing: {cfg.column} is {raw!r}"})
            continue
        text = normalise_text(raw, cfg)
        changed["text normalised"] += text != raw
        if len(text) < cfg.min_chars:
            reason = f"text too short: {len(text)} < clean.text.min_chars {cfg.min_chars}"
            rejects.append({"url": row["url"], "reason": reason})
            continue
        key, label, raw_label = text_key(text), None, None
        if classify:
            raw_label = None if _missing(row.get("label")) else row.get("label")
            label = overrides.get(key) or normalise_label(raw_label, labels)
            if label is None:
                rejects.append({"url": row["url"], "reason": f"unknown label {raw_label!r}"})
                continue
            changed["labels changed from the crawled ones"] += label != raw_label
            changed["label_overrides"] += key in overrides
        first_seen = row.get("first_seen")
        kept.append(
            {
                "key": key,
                "url": row["url"],
                "text": text,
                "label": label,
                "form": dedupe_form(text),
                "first_seen": None if _missing(first_seen) else str(first_seen),
            }
        )
    return kept, changed


def clean_texts(
    df: pd.DataFrame,
    params: Params,
    overrides: dict[str, str] | None = None,
    classify: bool | None = None,
) -> TextCleanResult:
    """Normalise, reject, dedupe, label (when `classify`: the rows have labels; default: when
    params has classes) and split the validated rows `df`; pure."""
    column = params.clean.text.column
    classify = bool(params.labels.classes) if classify is None else classify
    needed = ["url", column, *(["label"] if classify else [])]
    absent = [c for c in needed if c not in df.columns]
    if absent:
        raise ValueError(f"validated items lack columns {absent} (clean.text.column is {column!r})")
    rows = df.sort_values("url", kind="stable").to_dict("records")
    rejects: list[dict[str, Any]] = []
    kept, changed = _read_rows(rows, params, overrides or {}, rejects, classify)
    survivors = keep_first_of_each(_grouped(kept, "key"), "duplicate", rejects)
    n_duplicates = sum(r["reason"] == "duplicate" for r in rejects)
    if params.clean.text.near_duplicates:
        survivors = keep_first_of_each(_grouped(survivors, "form"), "near duplicate", rejects)
    survivors.sort(key=lambda item: item["key"])
    rejects.sort(key=lambda r: (r["url"], r["reason"]))

    items = pd.DataFrame(
        {
            "key": [s["key"] for s in survivors],
            "url": [s["url"] for s in survivors],
            "text": [s["text"] for s in survivors],
            "split": [split_of(s["key"], params.clean) for s in survivors],
            "first_seen": [s["first_seen"] for s in survivors],
        }
    )
    if classify:
        classes = params.labels.classes
        items["label"] = [s["label"] for s in survivors]
        items["label_index"] = np.array([classes.index(s["label"]) for s in survivors], np.int64)
    _check_accounting(df, items, rejects)
    report = _report(len(df), items, rejects, changed, n_duplicates)
    return TextCleanResult(items, rejects, report)


def _check_accounting(df: pd.DataFrame, items: pd.DataFrame, rejects: list[dict]) -> None:
    urls_out = Counter(items["url"]) + Counter(r["url"] for r in rejects)
    if Counter(df["url"]) != urls_out or len(df) != len(items) + len(rejects):
        raise AssertionError(
            f"accounting broken: n_in {len(df)} != n_out {len(items)} + n_rejected {len(rejects)}"
        )


def _report(
    n_in: int, items: pd.DataFrame, rejects: list[dict], changed: Counter, n_duplicates: int
) -> dict[str, Any]:
    reasons = Counter(r["reason"].split(":")[0].split(" (")[0] for r in rejects)
    operations = [
        {"op": "text normalised (clean.text)", "rows": changed["text normalised"]},
        *({"op": f"reject: {why}", "rows": k} for why, k in sorted(reasons.items())),
    ]
    if "label" in items.columns:
        operations += [
            {
                "op": "labels changed from the crawled ones",
                "rows": changed["labels changed from the crawled ones"],
            },
            {"op": "label_overrides", "rows": changed["label_overrides"]},
        ]
    report = {
        "n_in": n_in,
        "n_out": len(items),
        "n_duplicates": n_duplicates,
        "n_near_duplicates": sum(r["reason"] == "near duplicate" for r in rejects),
        "n_rejected": len(rejects),
        "n_relabelled": changed["labels changed from the crawled ones"],
        "operations": operations,
        "splits": {name: int((items["split"] == name).sum()) for name in SPLITS},
    }
    if "label" in items.columns:
        report["classes"] = {k: int(v) for k, v in sorted(Counter(items["label"]).items())}
    return report


def write_items(items: pd.DataFrame, target: Path) -> None:
    """items.parquet with a fixed schema and no pandas metadata: equal rows, equal bytes."""
    fields = [("key", pa.string()), ("url", pa.string()), ("text", pa.string())]
    if "label" in items.columns:
        fields += [("label", pa.string()), ("label_index", pa.int64())]
    fields += [("split", pa.string()), ("first_seen", pa.string())]
    write_parquet(items[[name for name, _ in fields]], target, pa.schema(fields))


def clean_texts_stage(params: Params, classify: bool) -> int:
    """The clean stage of the text task types (`classify`: the texts have labels); returns the
    exit code."""
    started = time.perf_counter()
    if not VALIDATED_ITEMS.is_file():
        log.error("%s not found: run the validate stage first", VALIDATED_ITEMS)
        return 1
    df = pd.read_parquet(VALIDATED_ITEMS)
    log.info("read %d rows from %s", len(df), VALIDATED_ITEMS)
    try:
        overrides = {}
        if classify:
            overrides = read_overrides(Path(params.labels.overrides), params.labels)
        result = clean_texts(df, params, overrides, classify)
    except (OverridesError, ValueError) as exc:
        log.error("clean failed: %s", exc)
        return 1
    if result.items.empty:
        log.error("clean kept none of %d rows; %s left as it was", len(df), CLEAN_DIR)
        return 1
    with atomic_dir(CLEAN_DIR) as tmp:
        write_items(result.items, tmp / "items.parquet")
    write_jsonl(CLEAN_QUARANTINE, result.rejects)
    write_csv(LABEL_ISSUES, [], ISSUE_COLUMNS)  # no text label review: the header alone
    write_json(CLEAN_REPORT, result.report)
    r = result.report
    for op in r["operations"]:
        log.info("  %s: %d rows", op["op"], op["rows"])
    log.info(
        "kept %d of %d rows (%d duplicates, %d near duplicates, %d rejected), splits %s, in %.1f s",
        r["n_out"],
        r["n_in"],
        r["n_duplicates"],
        r["n_near_duplicates"],
        r["n_rejected"],
        r["splits"],
        time.perf_counter() - started,
    )
    return 0
