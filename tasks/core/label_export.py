"""Items that need a human look, in the overrides format: `kiln label export [--out FILE]`.

Collects, from the last run's outputs: suspected label errors (`reports/label_issues.csv`, the
label column prefilled with the model's class), rows validate quarantined for a missing or unknown
label (`data/quarantine/validate.jsonl`), and items clean rejected for conflicting labels
(`data/quarantine/clean.jsonl`); the last two have an empty label. Columns: `key,label` (what
`labels.overrides` names) then `url,reason,given` for the reviewer. A person fills or checks
`label`, deletes the rows they do not want to change, and appends the rest to the overrides file;
an empty label left in the overrides file fails clean loudly.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pandas as pd

from tasks.core.label_review import key_of_image_path, write_csv

COLUMNS = ["key", "label", "url", "reason", "given"]
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
                    "label": row["suggested"],
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
                    "url": row["url"],
                    "reason": "conflicting labels",
                    "given": given,
                },
            )
    return sorted(out.values(), key=lambda r: (r["reason"], r["key"]))


def export(project: Path, target: Path) -> int:
    """Write the review file (atomically); returns how many items it lists."""
    rows = items_to_review(project)
    write_csv(target, rows, COLUMNS)
    return len(rows)
