"""A reviewer's decisions into the overrides file: `kiln label import FILE`.

FILE is a review file as `kiln label export` writes it (tasks/core/label_export.py), or any CSV
with `key` and `label` columns; other columns are ignored, and so is a row whose `label` is empty
(no decision). Every row is checked before anything is written: its key must be an item of the
last crawl (an image's sha256, the name of its file under data/raw/images; or a key of
data/clean/items.parquet, which text task types key by their normalised text) and its label a
class or an alias of `labels`. Any bad row fails the import with every problem listed and the
overrides file untouched; otherwise the file is rewritten atomically: its rows, with the new
decisions replacing those of the same key, then the new keys. validate and clean depend on the
overrides file (dvc.yaml), so the next run applies them.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tasks.core.label_review import OverridesError, key_of_image_path, read_overrides, write_csv
from tasks.core.labels import normalise_label
from tasks.core.params import Params
from tasks.core.paths import CLEAN_DIR, RAW_DIR

MAX_LISTED = 20  # problems shown; the count says how many more


class LabelImportError(ValueError):
    """The review file cannot be imported; the message lists each bad row."""


@dataclass(frozen=True)
class Imported:
    added: int
    changed: int
    unchanged: int
    undecided: int  # rows with an empty label


def known_keys(project: Path) -> set[str]:
    """The keys an override can name: the items of the last crawl and of the last clean."""
    keys = set()
    items = project / RAW_DIR / "items.jsonl"
    if items.is_file():
        with open(items, encoding="utf-8") as fh:
            keys |= {key_of_image_path(json.loads(line).get("image_path"))
                     for line in fh if line.strip()}
    clean = project / CLEAN_DIR / "items.parquet"
    if clean.is_file():
        keys |= set(pd.read_parquet(clean, columns=["key"])["key"])
    keys.discard(None)
    return keys


def _decisions(path: Path, params: Params, known: set[str]) -> tuple[dict[str, str], int]:
    """{key: canonical class} of the rows with a label, and how many rows had none."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if not {"key", "label"} <= set(reader.fieldnames or ()):
                raise LabelImportError(
                    f"{path}: needs columns key and label; got {reader.fieldnames}")
            rows = list(enumerate(reader, start=2))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise LabelImportError(f"{path}: cannot read it as CSV: {exc}") from None
    decided, problems, undecided = {}, [], 0
    classes = ", ".join(params.labels.classes)
    for line, row in rows:
        key, raw = (row["key"] or "").strip(), (row["label"] or "").strip()
        if not raw:
            undecided += 1
            continue
        label = normalise_label(raw, params.labels)
        if key not in known:
            problems.append(f"line {line}: key {key!r} is no item of the last crawl")
        elif label is None:
            problems.append(f"line {line}: label {raw!r} is not a class (classes: {classes})")
        elif decided.get(key, label) != label:
            problems.append(f"line {line}: key {key!r} is given {decided[key]!r} above and "
                            f"{label!r} here")
        else:
            decided[key] = label
    if problems:
        extra = len(problems) - MAX_LISTED
        more = f"\n  ... and {extra} more" if extra > 0 else ""
        raise LabelImportError(f"{path}: nothing imported, {len(problems)} bad row(s):\n  "
                           + "\n  ".join(problems[:MAX_LISTED]) + more)
    return decided, undecided


def import_decisions(project: Path, review: Path, params: Params) -> Imported:
    """Merge the decisions of `review` into `labels.overrides` (module docstring)."""
    known = known_keys(project)
    if not known:
        raise LabelImportError("no crawled items to check the keys against: run `kiln run` first")
    decided, undecided = _decisions(review, params, known)
    target = project / params.labels.overrides
    try:
        existing = read_overrides(target, params.labels)
    except OverridesError as exc:
        raise LabelImportError(f"the overrides file is invalid, fix it first: {exc}") from None
    changed = sum(1 for k, v in decided.items() if k in existing and existing[k] != v)
    unchanged = sum(1 for k, v in decided.items() if existing.get(k) == v)
    merged = {**existing, **decided}  # a dict keeps the existing keys' order, new ones after
    write_csv(target, [{"key": k, "label": v} for k, v in merged.items()], ["key", "label"])
    return Imported(len(decided) - changed - unchanged, changed, unchanged, undecided)
