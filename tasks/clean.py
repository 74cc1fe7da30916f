"""Clean the validated crawl: `python -m tasks.clean` (DVC stage `clean`, from the project root).

Reads `data/validated/items.parquet` and the images in `data/raw/images/`, and writes
`data/clean/items.parquet` + `data/clean/pixels.npy` (row-aligned, sorted by key),
`data/quarantine/clean.jsonl` (every removed row with its reason) and `reports/clean.json`.

* key: sha256 of the image bytes. Rows sharing a key are one item: the first url in sorted
  order is kept and the others are recorded with `duplicate_of`; if the copies disagree on the
  normalised label, every copy is rejected ("conflicting labels").
* labels: normalised to the canonical class (`tasks.labels.normalise_label`).
* `clean.numeric_columns`: parsed to float (unparseable -> NaN), then imputed per `clean.impute`;
  a column with no value at all is filled with 0.0 and named in the report.
* split: sha256(split_salt + key) as a number in [0, 1): test, then val, then train, so an item
  keeps its split when others are added.

Same inputs give byte-identical outputs, and cleaning the output again changes nothing.
"""

from __future__ import annotations

import hashlib
import io
import logging
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image
from tqdm import tqdm

from tasks.io import atomic_dir, write_json, write_jsonl
from tasks.labels import normalise_label
from tasks.params import CleanParams, LabelParams, ParamsError, load_params

log = logging.getLogger("kiln.clean")

VALIDATED = Path("data/validated/items.parquet")
IMAGES_DIR = Path("data/raw/images")
CLEAN_DIR = Path("data/clean")
QUARANTINE = Path("data/quarantine/clean.jsonl")
METRICS = Path("reports/clean.json")

SPLITS = ("train", "val", "test")
REQUIRED = ("url", "label", "image_path")
# Pillow raises OSError (UnidentifiedImageError is one) for missing or undecodable files,
# SyntaxError from some format plugins on corrupt chunks, DecompressionBombError for huge ones.
_IMAGE_ERRORS = (OSError, SyntaxError, Image.DecompressionBombError)


@dataclass
class CleanResult:
    items: pd.DataFrame  # docs/contracts.md columns, sorted by key
    pixels: np.ndarray  # uint8 (N, H, W), row i is items row i
    rejects: list[dict[str, Any]]  # url, reason (+ duplicate_of), sorted by url
    report: dict[str, Any]  # reports/clean.json


class _Rejected(Exception):
    """A row cannot be used; the message is its reason in the quarantine file."""


def split_of(key: str, params: CleanParams) -> str:
    """The stable split of an item: depends only on its key and the salt."""
    digest = hashlib.sha256((params.split_salt + key).encode("utf-8")).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64  # uniform in [0, 1)
    if u < params.test_share:
        return "test"
    if u < params.test_share + params.val_share:
        return "val"
    return "train"


def _is_null(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _load_image(images_dir: Path, image_path: Any) -> tuple[str, np.ndarray]:
    """(key, grayscale pixels) of a row's image; image_path is `images/<sha256>.<ext>`."""
    if not isinstance(image_path, str):
        raise _Rejected(f"image_path is not a string: {image_path!r}")
    # Only the file name is used, so a path with "../" cannot leave images_dir.
    path = images_dir / PurePosixPath(image_path).name
    try:
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as img:
            pixels = np.asarray(img.convert("L"), dtype=np.uint8)
    except _IMAGE_ERRORS as exc:
        raise _Rejected(f"image unreadable: {image_path} ({type(exc).__name__})") from None
    return hashlib.sha256(data).hexdigest(), pixels


def _read_rows(
    rows: list[dict[str, Any]], images_dir: Path, labels: LabelParams, rejects: list[dict]
) -> list[dict[str, Any]]:
    """Rows with a readable image and a known label, each with key/label/pixels set."""
    kept = []
    for row in tqdm(rows, desc="images", disable=None):
        raw_label = None if _is_null(row["label"]) else row["label"]
        try:
            key, pixels = _load_image(images_dir, row["image_path"])
            label = normalise_label(raw_label, labels)
            if label is None:
                raise _Rejected(f"unknown label {raw_label!r}")
        except _Rejected as exc:
            rejects.append({"url": row["url"], "reason": str(exc)})
            continue
        kept.append({**row, "key": key, "label": label, "raw_label": raw_label, "pixels": pixels})
    return kept


def _drop_odd_sizes(kept: list[dict], rejects: list[dict]) -> list[dict]:
    """Keep the images of the most common size (validate already checked the expected one)."""
    sizes = Counter(item["pixels"].shape for item in kept)
    if len(sizes) <= 1:
        return kept
    shape = max(sizes.items(), key=lambda kv: (kv[1], kv[0]))[0]  # ties: larger shape, fixed
    for item in kept:
        if item["pixels"].shape != shape:
            h, w = item["pixels"].shape
            reason = f"image size {w}x{h} differs from the others' {shape[1]}x{shape[0]}"
            rejects.append({"url": item["url"], "reason": reason})
    return [item for item in kept if item["pixels"].shape == shape]


def _dedupe(kept: list[dict], rejects: list[dict]) -> tuple[list[dict], int]:
    """One row per key (kept is in url order, so the first copy has the smallest url)."""
    by_key: dict[str, list[dict]] = defaultdict(list)
    for item in kept:
        by_key[item["key"]].append(item)
    survivors, n_duplicates = [], 0
    for copies in by_key.values():
        if len({c["label"] for c in copies}) > 1:
            rejects.extend({"url": c["url"], "reason": "conflicting labels"} for c in copies)
            continue
        first, *others = copies
        survivors.append(first)
        n_duplicates += len(others)
        rejects.extend(
            {"url": c["url"], "reason": "duplicate", "duplicate_of": first["url"]} for c in others
        )
    return survivors, n_duplicates


def _numeric(values: list[Any], impute: str) -> tuple[np.ndarray, int, bool]:
    """(filled float64 values, how many were filled, whether none had a value at all)."""
    text = pd.Series([v.strip() if isinstance(v, str) else v for v in values], dtype=object)
    numbers = np.array(pd.to_numeric(text, errors="coerce"), dtype=np.float64)  # a copy
    numbers[~np.isfinite(numbers)] = np.nan  # "inf" parses, but is not a measurement
    missing = np.isnan(numbers)
    if missing.all():
        fill = 0.0
    elif impute == "mean":
        fill = float(np.mean(numbers[~missing]))
    elif impute == "median":
        fill = float(np.median(numbers[~missing]))
    else:
        fill = 0.0
    numbers[missing] = fill
    return numbers, int(missing.sum()), bool(missing.all())


def clean_items(
    df: pd.DataFrame, images_dir: Path, labels: LabelParams, params: CleanParams
) -> CleanResult:
    """Dedupe, normalise labels, impute numbers and split the validated rows `df`."""
    absent = [c for c in REQUIRED if c not in df.columns]
    if absent:
        raise ValueError(f"validated items lack columns {absent}")
    rows = df.sort_values("url", kind="stable").to_dict("records")
    rejects: list[dict[str, Any]] = []
    kept = _drop_odd_sizes(_read_rows(rows, Path(images_dir), labels, rejects), rejects)
    survivors, n_duplicates = _dedupe(kept, rejects)
    survivors.sort(key=lambda item: item["key"])

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
    imputed, entirely_missing = {}, []
    for column in params.numeric_columns:
        values, imputed[column], none = _numeric([s.get(column) for s in survivors], params.impute)
        items[column] = values
        if none:
            entirely_missing.append(column)
            log.warning("column %s has no numeric value in any row: filled with 0.0", column)
    items["first_seen"] = [
        None if _is_null(v) else v for v in (s.get("first_seen") for s in survivors)
    ]
    shape = survivors[0]["pixels"].shape if survivors else (0, 0)
    pixels = np.stack([s["pixels"] for s in survivors]) if survivors else np.zeros((0, *shape))
    rejects.sort(key=lambda r: (r["url"], r["reason"]))

    n_in, n_out = len(df), len(items)
    urls_in, urls_out = (
        Counter(df["url"]),
        Counter(items["url"]) + Counter(r["url"] for r in rejects),
    )
    if urls_in != urls_out or n_in != n_out + len(rejects):
        raise AssertionError(
            f"accounting broken: n_in {n_in} != n_out {n_out} + n_rejected {len(rejects)}"
        )
    report = {
        "n_in": n_in,
        "n_out": n_out,
        "n_duplicates": n_duplicates,
        "n_rejected": len(rejects),
        "n_relabelled": sum(s["raw_label"] != s["label"] for s in survivors),
        "imputed": imputed,
        "entirely_missing": entirely_missing,
        "splits": {name: int((items["split"] == name).sum()) for name in SPLITS},
    }
    return CleanResult(items, pixels.astype(np.uint8), rejects, report)


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
    table = pa.Table.from_pandas(items, schema=schema, preserve_index=False)
    pq.write_table(table.replace_schema_metadata(None), target)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    started = time.perf_counter()
    try:
        params = load_params()
    except ParamsError as exc:
        log.error("%s", exc)
        return 1
    if not VALIDATED.is_file():
        log.error("%s not found: run the validate stage first", VALIDATED)
        return 1
    df = pd.read_parquet(VALIDATED)
    log.info("read %d rows from %s", len(df), VALIDATED)
    result = clean_items(df, IMAGES_DIR, params.labels, params.clean)
    if result.items.empty:
        log.error("clean kept none of %d rows; %s left as it was", len(df), CLEAN_DIR)
        return 1
    with atomic_dir(CLEAN_DIR) as tmp:
        _write_parquet(result.items, tmp / "items.parquet", list(params.clean.numeric_columns))
        np.save(tmp / "pixels.npy", result.pixels, allow_pickle=False)
    write_jsonl(QUARANTINE, result.rejects)
    write_json(METRICS, result.report)
    r = result.report
    log.info(
        "kept %d of %d rows (%d duplicates, %d rejected, %d relabelled), splits %s, in %.1f s",
        r["n_out"],
        r["n_in"],
        r["n_duplicates"],
        r["n_rejected"],
        r["n_relabelled"],
        r["splits"],
        time.perf_counter() - started,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
