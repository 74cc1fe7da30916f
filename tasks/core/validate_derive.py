"""Derived columns the suite of `python -m tasks.validate` checks, computed from the raw crawl.

Which ones depends on what the task type's rows hold (`TaskColumns`, given by the task type):

* every task: `<column>_number` for each `validate.numeric_columns` entry (float, NaN if missing
  or unparseable), and for forecasting the series' value column too;
* classification: `label_normalised` (the canonical class, else the raw value so the in-set check
  fails visibly), with `labels.overrides` applied by the item's key;
* images: `image_readable`/`image_width`/`image_height`/`image_mean` (opened only inside
  data/raw, decoded fully);
* text: `<text column>_chars`, the length in characters of the text as clean normalises it;
* forecasting: `<time column>_is_date` and `<value column>_is_number` (True, False, or None for a
  null value, which the not-null expectation or clean's fill deals with).
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from PIL import Image

from tasks.core.columns import LABEL, TaskColumns
from tasks.core.images import IMAGE_ERRORS
from tasks.core.label_review import key_of_image_path
from tasks.core.labels import normalise_label
from tasks.core.params import LabelParams
from tasks.core.progress import track
from tasks.core.text_norm import normalise_text, text_key

if TYPE_CHECKING:
    from collections.abc import Iterable


log = logging.getLogger("kiln.validate")

IMAGES = TaskColumns(labels=True, images=True)  # the default of the building blocks' tests


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


_NO_IMAGE = (False, None, None, None)


def _image_facts(raw_root: Path, image_path: Any) -> tuple[bool, int | None, int | None, Any]:
    """(readable, width, height, mean grey level 0-255) of an image named relative to data/raw;
    never outside it."""
    if not isinstance(image_path, str) or "\x00" in image_path:  # NUL: no such file name
        return _NO_IMAGE
    path = (raw_root / image_path).resolve()
    if not path.is_relative_to(raw_root):
        return _NO_IMAGE  # "../" or an absolute path: not ours to open
    try:
        with Image.open(path) as img:
            img.load()  # decode fully: a truncated file fails here, not in clean
            mean = float(np.asarray(img.convert("L"), dtype=np.float64).mean())
            return True, img.width, img.height, mean
    except IMAGE_ERRORS as exc:
        log.debug("image %s unreadable: %s", image_path, exc)
        return _NO_IMAGE


def _number_text(value: Any) -> Any:
    """What pd.to_numeric may parse: a stripped string or a number; anything else is missing."""
    if isinstance(value, str):
        return value.strip()
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def number_column(column: str) -> str:
    """The derived float column of a `validate.numeric_columns` entry."""
    return f"{column}_number"


def _column(raw: pd.DataFrame, name: str) -> pd.Series:
    """The raw column, or all nulls when the crawl lacks it (expect_column_to_exist says so)."""
    if name in raw:
        return raw[name]
    return pd.Series([None] * len(raw), index=raw.index, dtype=object)


def _object(values: Iterable[Any], index: pd.Index) -> pd.Series:
    return pd.Series(list(values), index=index, dtype=object)


def _add_numbers(out: pd.DataFrame, raw: pd.DataFrame, numeric: Iterable[str]) -> None:
    for column in numeric:
        text = _column(raw, column).map(_number_text)
        parsed = pd.to_numeric(text, errors="coerce").astype(np.float64)
        out[number_column(column)] = parsed.where(np.isfinite(parsed))  # "inf" is no number


def _add_labels(
    out: pd.DataFrame,
    raw: pd.DataFrame,
    labels: LabelParams,
    keys: Iterable[str | None],
    overrides: dict[str, str] | None,
) -> None:
    """`label_normalised`; a row whose key is in `overrides` is checked with the override as its
    label, which also replaces `label` (clean applies it too)."""
    label = list(_column(raw, LABEL))
    if overrides:
        fixed = [overrides.get(k) if k is not None else None for k in keys]
        label = [f if f is not None else v for f, v in zip(fixed, label, strict=True)]
        if LABEL in raw:
            out[LABEL] = _object(label, raw.index)
    out["label_normalised"] = _object((_label_to_check(v, labels) for v in label), raw.index)


def _with_derived(
    raw: pd.DataFrame,
    raw_dir: Path,
    labels: LabelParams,
    numeric: list[str] | tuple = (),
    overrides: dict[str, str] | None = None,
) -> pd.DataFrame:
    """`raw` plus what an image-classification suite checks: label_normalised, image_* facts and,
    for each numeric column, `<column>_number` (float; NaN where missing or unparseable). A row
    whose key (sha256 of its image) is in `overrides` is checked with the override as its label."""
    out = raw.copy()
    paths = list(_column(raw, "image_path"))
    _add_labels(out, raw, labels, [key_of_image_path(p) for p in paths], overrides)
    raw_root = Path(raw_dir).resolve()
    images = track(paths, "validate.images", unit="images", logger=log)
    facts = [_image_facts(raw_root, p) for p in images]
    for i, name in enumerate(("image_readable", "image_width", "image_height")):
        out[name] = _object((f[i] for f in facts), raw.index)
    out["image_mean"] = pd.Series([f[3] for f in facts], index=raw.index, dtype=np.float64)
    _add_numbers(out, raw, numeric)
    return out


def _normalised(value: Any, task: TaskColumns) -> str | None:
    return normalise_text(value, task.text) if isinstance(value, str) else None


def _parses_as_date(value: Any) -> bool | None:
    """True for a date/datetime string pandas reads (ISO 8601 or another common form), False for
    anything else, None for a null (the not-null expectation reports it)."""
    if _is_null(value):
        return None
    if not isinstance(value, str) or not value.strip():
        return False  # a number is not a date, whatever epoch it might count from
    try:
        with warnings.catch_warnings():  # "could not infer format": a per-value parse is meant
            warnings.simplefilter("ignore", UserWarning)
            return not pd.isna(pd.to_datetime(value.strip(), format="mixed"))
    except (ValueError, OverflowError):  # pandas' DateParseError is a ValueError
        return False


def _derived_text(
    out: pd.DataFrame,
    raw: pd.DataFrame,
    labels: LabelParams,
    overrides: dict[str, str] | None,
    task: TaskColumns,
) -> None:
    normalised = [_normalised(v, task) for v in _column(raw, task.text.column)]
    out[task.text_chars] = _object((None if t is None else len(t) for t in normalised), raw.index)
    if task.has_labels:  # overrides are keyed by the normalised text's sha256, as clean keys it
        keys = [None if t is None else text_key(t) for t in normalised]
        _add_labels(out, raw, labels, keys, overrides)


def _derived_series(out: pd.DataFrame, raw: pd.DataFrame, task: TaskColumns) -> None:
    """`<time>_is_date` and `<value>_is_number`: True, False, or None where the value is null."""
    times = _column(raw, task.time_column)
    out[task.time_is_date] = _object(times.map(_parses_as_date), raw.index)
    values = _column(raw, task.value_column)
    parsed = pd.to_numeric(values.map(_number_text), errors="coerce").astype(np.float64)
    is_number = (
        None if _is_null(v) else bool(np.isfinite(p)) for v, p in zip(values, parsed, strict=True)
    )
    out[task.value_is_number] = _object(is_number, raw.index)


def with_derived(
    raw: pd.DataFrame,
    raw_dir: Path,
    labels: LabelParams,
    numeric: list[str] | tuple = (),
    overrides: dict[str, str] | None = None,
    *,
    task: TaskColumns = IMAGES,
) -> pd.DataFrame:
    """`raw` plus the derived columns the task type's suite checks (module docstring)."""
    if task.has_images:
        return _with_derived(raw, raw_dir, labels, numeric, overrides)
    out = raw.copy()
    if task.has_text:
        _derived_text(out, raw, labels, overrides, task)
    if task.is_series:
        _derived_series(out, raw, task)
    _add_numbers(out, raw, task.numeric(numeric))
    return out
