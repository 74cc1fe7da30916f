"""Items that need a human look, in the overrides format: `kiln label export [--out FILE]`.

Collects, from the last run's outputs: suspected label errors (`reports/label_issues.csv`, with
the model's class in `suggested`), rows validate quarantined for a missing or unknown label
(`data/quarantine/validate.jsonl`), and items clean rejected for conflicting labels
(`data/quarantine/clean.jsonl`). Columns: `key,label` (what `labels.overrides` names; `label` is
left empty: it is the reviewer's answer), then for the reviewer `suggested` (the model's class, if
any), `given` (the crawled label), `item` (the image file, data/raw/images/<key>.<ext>), `url`
and `reason`. A person fills `label` where they decide, and `kiln label import FILE`
(tasks/core/label_import.py) merges the filled rows into the overrides file.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pandas as pd

from tasks.core.label_review import key_of_image_path, write_csv
from tasks.core.paths import RAW_DIR

COLUMNS = ["key", "label", "suggested", "given", "item", "url", "reason"]
_LABEL_REASONS = ("(label)", "(label_normalised)")  # validate's expectations on the label


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def items_to_review(project: Path) -> list[dict[str, Any]]:
    """Rows for the review file, one per key, sorted by (reason, key)."""
    out: dict[str, dict[str, Any]] = {}
    issues = project / "reports/label_issues.csv"
    if issues.is_file():
        with open(issues, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                out[row["key"]] = {
                    "key": row["key"],
                    "label": "",
                    "suggested": row["suggested"],
                    "url": row["url"],
                    "reason": "suspected label error",
                    "given": row["label"],
                }
    for row in _jsonl(project / "data/quarantine/validate.jsonl"):
        key = key_of_image_path(row.get("image_path"))
        if key and any(r in row.get("reason", "") for r in _LABEL_REASONS):
            out.setdefault(
                key,
                {
                    "key": key,
                    "label": "",
                    "item": row.get("image_path"),
                    "url": row.get("url"),
                    "reason": "missing or unknown label",
                    "given": row.get("label"),
                },
            )
    validated = project / "data/validated/items.parquet"
    paths = {}
    if validated.is_file():
        frame = pd.read_parquet(validated, columns=["url", "image_path", "label"])
        paths = {u: (p, g) for u, p, g in frame.itertuples(index=False)}
    for row in _jsonl(project / "data/quarantine/clean.jsonl"):
        image_path, given = paths.get(row.get("url"), (None, None))
        key = key_of_image_path(image_path)
        if key and row.get("reason", "").startswith("conflicting labels"):
            out.setdefault(
                key,
                {
                    "key": key,
                    "label": "",
                    "item": image_path,
                    "url": row["url"],
                    "reason": "conflicting labels",
                    "given": given,
                },
            )
    for row in out.values():  # the image, as a path from the project (a label error's: by url)
        image = row.get("item") or paths.get(row["url"], (None, None))[0]
        row["item"] = (RAW_DIR / image).as_posix() if image else None
    return sorted(out.values(), key=lambda r: (r["reason"], r["key"]))


def export(project: Path, target: Path) -> int:
    """Write the review file (atomically); returns how many items it lists."""
    rows = items_to_review(project)
    write_csv(target, rows, COLUMNS)
    return len(rows)
