"""Derived columns the suite of `python -m tasks.validate` checks, computed from the raw crawl.

`label_normalised` (the canonical class, else the raw value so the in-set check fails visibly),
`image_readable`/`image_width`/`image_height`/`image_mean` (opened only inside data/raw, decoded
fully), and `<column>_number` for each `validate.numeric_columns` entry (float, NaN if missing).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from tasks.images import IMAGE_ERRORS
from tasks.label_review import key_of_image_path
from tasks.labels import normalise_label
from tasks.params import LabelParams

log = logging.getLogger("kiln.validate")



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


def _with_derived(
    raw: pd.DataFrame,
    raw_dir: Path,
    labels: LabelParams,
    numeric: list[str] | tuple = (),
    overrides: dict[str, str] | None = None,
) -> pd.DataFrame:
    """`raw` plus the columns the suite checks: label_normalised, image_* facts and, for each
    numeric column, `<column>_number` (float; NaN where missing or unparseable). A row whose
    key is in `overrides` is checked with the override as its label (clean applies it too)."""
    out = raw.copy()
    none = [None] * len(raw)
    label = raw["label"] if "label" in raw else none
    paths = raw["image_path"] if "image_path" in raw else none
    if overrides:
        fixed = [overrides.get(key_of_image_path(p)) for p in paths]
        label = [f if f is not None else v for f, v in zip(fixed, label, strict=True)]
        if "label" in raw:
            out["label"] = pd.Series(label, index=raw.index, dtype=object)
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
    out["image_mean"] = pd.Series([f[3] for f in facts], index=raw.index, dtype=np.float64)
    for column in numeric:
        values = raw[column] if column in raw else pd.Series(none, index=raw.index, dtype=object)
        text = values.map(_number_text)
        parsed = pd.to_numeric(text, errors="coerce").astype(np.float64)
        out[number_column(column)] = parsed.where(np.isfinite(parsed))  # "inf" is no number
    return out
