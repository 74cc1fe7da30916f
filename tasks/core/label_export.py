"""Items that need a human look, in the overrides format: `kiln label export [--out FILE]`.

Collects, from the last run's outputs: suspected label errors (`reports/label_issues.csv`, with
the model's class in `suggested`), rows validate quarantined for a missing or unknown label
(`data/quarantine/validate.jsonl`), and items clean rejected for conflicting labels
(`data/quarantine/clean.jsonl`). Columns: `key,label` (what `labels.overrides` names; `label` is
left empty: it is the reviewer's answer), then for the reviewer `suggested` (the model's class, if
any), `given` (the crawled label), `item` (the image file, data/raw/images/<key>.<ext>), `url`
and `reason`. A person fills `label` where they decide, and `kiln label import FILE`
(tasks/core/label_import.py) merges the filled rows into the overrides file.

Labelling from scratch: the rows of `data/raw/items.jsonl` without a label (a folder read with
`source.labelled: false`, or a table whose label cell is empty) that the overrides file does not
label yet are listed too ("unlabelled"), all of them, or with `least_sure=N` the N the champion is
least sure of (lowest probability of its best guess, which is in `suggested`). The labels a
person writes into the overrides file are the training labels of the next run: the file is a DVC
dependency of validate and clean, and versioned with the project.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pandas as pd

from tasks.core.label_review import key_of_image_path, write_csv
from tasks.core.params import Params
from tasks.core.paths import RAW_DIR
from tasks.core.text_norm import normalise_text, text_key

COLUMNS = ["key", "label", "suggested", "given", "item", "url", "reason"]
_LABEL_REASONS = ("(label)", "(label_normalised)")  # validate's expectations on the label


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def unlabelled(project: Path, params: Params) -> list[tuple[dict[str, Any], Path | str]]:
    """(review row, the item's image file or text) for every raw row without a label whose key
    the overrides file does not label."""
    items = project / RAW_DIR / "items.jsonl"
    overrides = project / params.labels.overrides
    labelled = set()
    if overrides.is_file():
        with open(overrides, newline="", encoding="utf-8") as fh:
            labelled = {r["key"] for r in csv.DictReader(fh) if (r.get("label") or "").strip()}
    text_cfg = getattr(params.clean, "text", None)  # the text task types' normalisation
    out = []
    for row in _jsonl(items):
        if (row.get("label") or "").strip():
            continue
        key, value = key_of_image_path(row.get("image_path")), None
        if key is not None:
            value = project / RAW_DIR / row["image_path"]
        elif text_cfg is not None and isinstance(row.get(text_cfg.column), str):
            value = row[text_cfg.column]
            key = text_key(normalise_text(value, text_cfg))
        if key is None or key in labelled:
            continue
        item = (RAW_DIR / row["image_path"]).as_posix() if isinstance(value, Path) else None
        review = {"key": key, "label": "", "url": row["url"], "reason": "unlabelled",
                  "given": None, "item": item}  # fmt: skip
        out.append((review, value))
    return out


def least_sure(found: list[tuple[dict[str, Any], Path | str]], project: Path, n: int
               ) -> list[dict[str, Any]]:
    """The `n` unlabelled items the champion is least sure of, least sure first."""
    from serve.predict import best_guesses  # noqa: PLC0415 (ONNX Runtime only when ranking)
    from tasks.core.registry import REGISTRY_DIR  # noqa: PLC0415

    inputs = [v.read_bytes() if isinstance(v, Path) else v for _, v in found]  # PNG bytes, texts
    version, guesses = best_guesses(inputs, project / REGISTRY_DIR)
    ranked = sorted(zip(found, guesses, strict=True), key=lambda x: (x[1][1], x[0][0]["key"]))
    return [{**review, "suggested": label,
             "reason": f"unlabelled; champion {version} guesses {label} (p={p:.3f})"}
            for (review, _), (label, p) in ranked[:n]]  # fmt: skip


def items_to_review(
    project: Path, params: Params | None = None, least_sure_n: int | None = None
) -> list[dict[str, Any]]:
    """Rows for the review file, one per key, sorted by (reason, key); with `params`, the
    unlabelled items too (all, or the `least_sure_n` the champion is least sure of, in that
    order, after the others)."""
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
    reviewed = sorted(out.values(), key=lambda r: (r["reason"], r["key"]))
    if params is None:
        return reviewed
    found = [(review, value) for review, value in unlabelled(project, params)
             if review["key"] not in out]  # fmt: skip
    if least_sure_n is None:
        return reviewed + sorted((review for review, _ in found), key=lambda r: r["key"])
    return reviewed + (least_sure(found, project, least_sure_n) if found else [])


def export(
    project: Path, target: Path, params: Params | None = None, least_sure_n: int | None = None
) -> int:
    """Write the review file (atomically); returns how many items it lists."""
    rows = items_to_review(project, params, least_sure_n)
    write_csv(target, rows, COLUMNS)
    return len(rows)
