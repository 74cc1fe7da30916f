"""Image classification's clean stage: the validated crawl -> data/clean/.

Reads `data/validated/items.parquet` and the images in `data/raw/images/`, and writes
`data/clean/items.parquet` + `data/clean/pixels.npy` (row-aligned, sorted by key) +
`data/clean/preprocessing.json`, `data/quarantine/clean.jsonl` (every removed row with its reason)
and `reports/clean.json`.

* images: every image is decoded and fitted to the model's input by `tasks.core.images.fit_image`
  as `clean.image` says (size, mode, fit, resampling, background); a null size is the most common
  width x height of the readable images, mode `auto` is RGB if any image has colour, else L.
  pixels.npy holds the fitted uint8 pixels, (N, H, W) for L and (N, H, W, 3) for RGB, and
  preprocessing.json the resolved `ImageFit` plus `clean.image.normalise`, which train records in
  the model card. With fit `none`, an image of another size is rejected.
* key: sha256 of the image bytes. Rows sharing a key are one item: the first url in sorted
  order is kept and the others are recorded with `duplicate_of`; if the copies disagree on the
  normalised label, every copy is rejected ("conflicting labels").
* near duplicates: same average hash and close pixels (`tasks.core.clean_dedupe`), recorded so.
* labels: normalised to the canonical class (`tasks.core.labels.normalise_label`), then the
  overrides file wins; likely wrong labels go to `reports/label_issues.csv` and are reported,
  dropped or relabelled per `clean.label_review` (`tasks.core.label_review`).
* `clean.numeric_columns`: parsed to float (unparseable -> NaN), missing values filled or dropped
  per column, outliers clipped or dropped (`tasks.core.clean_numeric`); a column with no value
  at all is filled with 0.0 and named in the report.
* every operation is in the report's `operations` with the rows it touched.
* split: sha256(split_salt + key) as a number in [0, 1): test, then val, then train, so an item
  keeps its split when others are added.

Same inputs give byte-identical outputs, and cleaning the output again changes nothing.
"""

from __future__ import annotations

import hashlib
import io
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
from PIL import Image

from tasks.core.clean_dedupe import count, exact_duplicates, near_duplicates
from tasks.core.clean_numeric import clean_numeric
from tasks.core.images import IMAGE_ERRORS, ImageFit, ImageSizeError, fit_image, is_colour, to_mode
from tasks.core.io import atomic_dir, write_json, write_jsonl, write_parquet
from tasks.core.label_review import (
    ISSUE_COLUMNS,
    OverridesError,
    read_overrides,
    review_labels,
    write_csv,
)
from tasks.core.labels import normalise_label
from tasks.core.params import LabelParams
from tasks.core.paths import (
    CLEAN_DIR,
    CLEAN_QUARANTINE,
    CLEAN_REPORT,
    LABEL_ISSUES,
    RAW_IMAGES,
    VALIDATED_ITEMS,
)
from tasks.core.progress import track
from tasks.core.splits import SPLITS, split_of
from tasks.types.image_classification.data import PREPROCESSING_FILE

if TYPE_CHECKING:
    from tasks.types.image_classification.params import (
        ImageCleanParams,
        ImageParams,
        ImagePreprocessParams,
    )

log = logging.getLogger("kiln.clean")


REQUIRED = ("url", "label", "image_path")


@dataclass
class CleanResult:
    items: pd.DataFrame  # docs/contracts.md columns, sorted by key
    pixels: np.ndarray  # uint8 (N, H, W) or (N, H, W, 3), row i is items row i
    rejects: list[dict[str, Any]]  # url, reason (+ duplicate_of), sorted by url
    report: dict[str, Any]  # reports/clean.json
    label_issues: list[dict[str, Any]] = field(default_factory=list)  # reports/label_issues.csv
    preprocessing: dict[str, Any] = field(default_factory=dict)  # preprocessing.json


class _Rejected(Exception):
    """A row cannot be used; the message is its reason in the quarantine file."""


def _is_null(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _load_image(images_dir: Path, image_path: Any, mode: str | None, background: Any) -> tuple:
    """(key, decoded image) of a row's image; image_path is `images/<sha256>.<ext>`. The image is
    converted to `mode` (transparency flattened onto `background`) unless mode is None (auto)."""
    if not isinstance(image_path, str):
        raise _Rejected(f"image_path is not a string: {image_path!r}")
    # Only the file name is used, so a path with "../" cannot leave images_dir.
    path = images_dir / PurePosixPath(image_path).name
    try:
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            image = img.copy() if mode is None else to_mode(img, mode, background)
    except IMAGE_ERRORS as exc:
        raise _Rejected(f"image unreadable: {image_path} ({type(exc).__name__})") from None
    return hashlib.sha256(data).hexdigest(), image


def _read_rows(
    rows: list[dict[str, Any]],
    images_dir: Path,
    labels: LabelParams,
    rejects: list[dict],
    overrides: dict[str, str],
    *,
    image: ImagePreprocessParams,
) -> list[dict[str, Any]]:
    """Rows with a readable image and a known label, each with key/label/image set; a label
    in `overrides` (by key) wins over the crawled one."""
    kept = []
    mode = None if image.mode == "auto" else image.mode
    for row in track(rows, "clean.images", unit="images", logger=log):
        raw_label = None if _is_null(row["label"]) else row["label"]
        try:
            key, decoded = _load_image(images_dir, row["image_path"], mode, image.background)
            label = overrides.get(key) or normalise_label(raw_label, labels)
            if label is None:
                raise _Rejected(f"unknown label {raw_label!r}")
        except _Rejected as exc:
            rejects.append({"url": row["url"], "reason": str(exc)})
            continue
        kept.append({**row, "key": key, "label": label, "raw_label": raw_label, "image": decoded})
    return kept


def resolve_fit(image: ImagePreprocessParams, decoded: list[Image.Image]) -> ImageFit:
    """clean.image with its size and mode resolved: a null size is the most common (height,
    width) of `decoded` (ties: the larger, so the choice is fixed), mode auto is RGB if any image
    has colour, else L."""
    if image.height is not None and image.width is not None:
        size = (image.height, image.width)
    else:
        sizes = Counter((img.height, img.width) for img in decoded)
        size = max(sizes.items(), key=lambda kv: (kv[1], kv[0]))[0] if sizes else (1, 1)
    mode = image.mode
    if mode == "auto":
        mode = "RGB" if any(is_colour(img, image.background) for img in decoded) else "L"
    return ImageFit(*size, mode, image.fit, image.resample, tuple(image.background))


def _fit_images(kept: list[dict], spec: ImageFit, rejects: list[dict]) -> tuple[list[dict], int]:
    """Each item's image fitted to `spec` as its `pixels`; fit none rejects the other sizes.
    Returns the items kept and how many were resampled."""
    fitted, n_resampled = [], 0
    for item in kept:
        img = item.pop("image")
        try:
            item["pixels"] = fit_image(img, spec)
        except ImageSizeError:
            reason = f"image size {img.width}x{img.height} is not {spec.width}x{spec.height}"
            rejects.append({"url": item["url"], "reason": f"{reason} (clean.image.fit none)"})
            continue
        n_resampled += img.size != (spec.width, spec.height)
        fitted.append(item)
    return fitted, n_resampled


REVIEW_SIDE = 8  # label review's model sees each image averaged down to at most 8x8 a channel


def _compact(pixels: np.ndarray) -> np.ndarray:
    """`pixels` averaged over blocks (Pillow's box filter) to at most REVIEW_SIDE a side; an
    image that small already is returned as it is."""
    h, w = pixels.shape[:2]
    size = (min(w, REVIEW_SIDE), min(h, REVIEW_SIDE))
    if size == (w, h):
        return pixels
    return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BOX), dtype=np.uint8)


def _review_labels(
    survivors: list[dict], labels: LabelParams, params: ImageCleanParams, rejects: list[dict]
) -> tuple[list[dict], list[dict[str, Any]], dict[str, Any]]:
    """`tasks.core.label_review.review_labels` on compact images: its logistic regression on
    every pixel took 190 s for 160 images of 32x32 RGB on this 2-core machine, 1 s at 8x8."""
    full = {s["key"]: s["pixels"] for s in survivors}
    compact = [{**s, "pixels": _compact(s["pixels"])} for s in survivors]
    reviewed, issues, op = review_labels(compact, labels, params.label_review, rejects)
    return [{**s, "pixels": full[s["key"]]} for s in reviewed], issues, op


def clean_items(
    df: pd.DataFrame,
    images_dir: Path,
    labels: LabelParams,
    params: ImageCleanParams,
    overrides: dict[str, str] | None = None,
) -> CleanResult:
    """Dedupe, fix labels, clean numbers and split the validated rows `df`."""
    absent = [c for c in REQUIRED if c not in df.columns]
    if absent:
        raise ValueError(f"validated items lack columns {absent}")
    rows = df.sort_values("url", kind="stable").to_dict("records")
    rejects: list[dict[str, Any]] = []
    overrides = overrides or {}
    kept = _read_rows(rows, Path(images_dir), labels, rejects, overrides, image=params.image)
    spec = resolve_fit(params.image, [item["image"] for item in kept])
    kept, n_resampled = _fit_images(kept, spec, rejects)
    n_overridden = sum(k["key"] in overrides for k in kept)
    survivors = exact_duplicates(kept, rejects)
    n_duplicates = count(rejects, "duplicate")
    survivors = near_duplicates(survivors, rejects, params.near_duplicates)
    survivors.sort(key=lambda item: item["key"])  # input order never matters from here on
    survivors, issues, review_op = _review_labels(survivors, labels, params, rejects)
    columns, numeric_rejects, numeric_ops = clean_numeric(survivors, params)
    for i, reason in sorted(numeric_rejects.items()):
        rejects.append({"url": survivors[i]["url"], "reason": reason})
    keep = [i for i in range(len(survivors)) if i not in numeric_rejects]
    survivors = [survivors[i] for i in keep]

    items = pd.DataFrame(
        {
            "key": [s["key"] for s in survivors],
            "url": [s["url"] for s in survivors],
            "label": [s["label"] for s in survivors],
            "label_index": np.array(
                [labels.classes.index(s["label"]) for s in survivors], dtype=np.int64
            ),
            "split": [split_of(s["key"], params) for s in survivors],
        }
    )
    for column in params.numeric_columns:
        items[column] = columns[column][keep] if keep else np.zeros(0)
    entirely_missing = [op["column"] for op in numeric_ops if op.get("entirely_missing")]
    for column in entirely_missing:
        log.warning("column %s has no numeric value in any row", column)
    items["first_seen"] = [
        None if _is_null(v) else v for v in (s.get("first_seen") for s in survivors)
    ]
    pixels = np.stack([s["pixels"] for s in survivors]) if survivors else np.zeros((0, *spec.shape))
    rejects.sort(key=lambda r: (r["url"], r["reason"]))

    n_in, n_out = len(df), len(items)
    urls_out = Counter(items["url"]) + Counter(r["url"] for r in rejects)
    if Counter(df["url"]) != urls_out or n_in != n_out + len(rejects):
        raise AssertionError(
            f"accounting broken: n_in {n_in} != n_out {n_out} + n_rejected {len(rejects)}"
        )
    n_relabelled = sum(s["raw_label"] != s["label"] for s in survivors)
    started = Counter(r["reason"].split(" (")[0].split(":")[0] for r in rejects)
    operations = [
        *({"op": f"reject: {why}", "rows": k} for why, k in sorted(started.items())),
        {"op": f"images resampled to {spec.width}x{spec.height} ({spec.fit})", "rows": n_resampled},
        {"op": "labels changed from the crawled ones", "rows": n_relabelled},
        {"op": "label_overrides", "rows": n_overridden},
        review_op,
        *numeric_ops,
    ]
    report = {
        "n_in": n_in,
        "n_out": n_out,
        "n_duplicates": n_duplicates,
        "n_near_duplicates": count(rejects, "near duplicate"),
        "n_rejected": len(rejects),
        "n_relabelled": n_relabelled,
        "n_label_issues": len(issues),
        "imputed": {
            op["column"]: op["rows"] if op["strategy"] != "drop" else 0
            for op in numeric_ops
            if op["op"] == "missing"
        },
        "entirely_missing": entirely_missing,
        "operations": operations,
        "splits": {name: int((items["split"] == name).sum()) for name in SPLITS},
        "image": spec.to_json(),
    }
    preprocessing = {**spec.to_json(), "normalise": params.image.normalise}
    return CleanResult(items, pixels.astype(np.uint8), rejects, report, issues, preprocessing)


def _write_parquet(items: pd.DataFrame, target: Path, numeric: list[str]) -> None:
    # A fixed schema and no pandas metadata: equal rows give byte-identical files.
    schema = pa.schema(
        [
            ("key", pa.string()),
            ("url", pa.string()),
            ("label", pa.string()),
            ("label_index", pa.int64()),
            ("split", pa.string()),
            *((column, pa.float64()) for column in numeric),
            ("first_seen", pa.string()),
        ]
    )
    write_parquet(items, target, schema)


def clean_stage(params: ImageParams) -> int:
    """data/validated + data/raw/images -> data/clean/, quarantine, reports; the exit code."""
    started = time.perf_counter()
    if not VALIDATED_ITEMS.is_file():
        log.error("%s not found: run the validate stage first", VALIDATED_ITEMS)
        return 1
    df = pd.read_parquet(VALIDATED_ITEMS)
    log.info("read %d rows from %s", len(df), VALIDATED_ITEMS)
    try:
        overrides = read_overrides(Path(params.labels.overrides), params.labels)
    except OverridesError as exc:
        log.error("%s", exc)
        return 1
    result = clean_items(df, RAW_IMAGES, params.labels, params.clean, overrides)
    if result.items.empty:
        log.error("clean kept none of %d rows; %s left as it was", len(df), CLEAN_DIR)
        return 1
    with atomic_dir(CLEAN_DIR) as tmp:
        _write_parquet(result.items, tmp / "items.parquet", list(params.clean.numeric_columns))
        np.save(tmp / "pixels.npy", result.pixels, allow_pickle=False)
        write_json(tmp / PREPROCESSING_FILE, result.preprocessing)
    write_jsonl(CLEAN_QUARANTINE, result.rejects)
    write_csv(LABEL_ISSUES, result.label_issues, ISSUE_COLUMNS)
    write_json(CLEAN_REPORT, result.report)
    r = result.report
    image = r["image"]
    log.info(
        "kept %d of %d rows (%d duplicates, %d rejected, %d relabelled), splits %s, images "
        "%dx%d %s (%s), in %.1f s",
        r["n_out"],
        r["n_in"],
        r["n_duplicates"],
        r["n_rejected"],
        r["n_relabelled"],
        r["splits"],
        image["width"],
        image["height"],
        image["mode"],
        image["fit"],
        time.perf_counter() - started,
    )
    return 0
