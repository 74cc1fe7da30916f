"""Build a synthetic crawl (`data/raw/`) per docs/contracts.md, for tests of the stages after crawl.

Items are scikit-learn's real handwritten digits (load_digits, shipped with the library, no
network), saved as 8x8 PNGs with Pillow. `Dirt` says how many rows get each kind of defect; the
rows are chosen with a seeded RNG and never overlap, so every count is exact.

    from tests.raw_fixture import Dirt, build_raw, write_params
    write_params(tmp_path, {"validate": {"min_rows": 50}})
    items = build_raw(tmp_path, n_items=200, dirt=Dirt(unknown_labels=3, duplicates=5))
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image

from tests.project import merge_params

REPO_PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"
SITE = "http://127.0.0.1:8765"
FIRST_SEEN = "2026-01-01T00:00:00Z"
WORDS = ["zero", "One", " two ", "THREE", "four", "Five ", "six", "Seven", "eight", " nine"]


@dataclass(frozen=True)
class Dirt:
    """How many rows carry each defect (counts of distinct base items unless said otherwise)."""

    duplicates: int = 0  # extra rows: an existing image and label under a second URL
    conflicting: int = 0  # extra rows: an existing image under a second URL, different label
    near_duplicates: int = 0  # extra rows: an existing image 2 grey levels brighter, same label
    wrong_labels: int = 0  # label set to another digit ((true + 1) % 10): a labelling mistake
    alias_labels: int = 0  # label spelt as a word or with odd case/space ("THREE", " nine")
    unknown_labels: int = 0  # label "n/a"
    null_labels: int = 0  # label null
    missing_images: int = 0  # image_path names a file that is not there
    broken_images: int = 0  # image file is not a PNG
    wrong_size_images: int = 0  # a 16x16 PNG instead of 8x8
    bad_numbers: int = 0  # ink and price "lots" (unparseable)
    null_numbers: int = 0  # ink and price null
    numeric_labels: bool = False  # every label written as a JSON number: a flipped dtype
    int_image_paths: bool = False  # every image_path written as a JSON number
    drop_columns: tuple[str, ...] = ()  # keys left out of every row


@functools.cache
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # noqa: PLC0415 (slow import, only when used)

    digits = load_digits()
    # Ink levels 0..16 scaled to 0..255 as the demo site does (crawlers/demo_site.py).
    pixels = (digits.images.astype(np.uint16) * 255 // 16).astype(np.uint8)
    return pixels, digits.target


def png_bytes(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def _write_image(raw_dir: Path, data: bytes) -> str:
    name = f"images/{hashlib.sha256(data).hexdigest()}.png"
    (raw_dir / name).write_bytes(data)
    return name


def _item(index: int, label: Any, image_path: str, image_bytes: bytes, url: str) -> dict:
    fields = {
        "title": f"Handwritten digit #{index}",
        "label": label,
        "image": f"/static/digits/{index}.png",
        "writer": f"writer-{index % 13}",
        "ink": f"{0.2 + (index % 50) / 100:.2f}",  # share of dark pixels
        "price": f"{1 + (index % 7) * 0.25:.2f}",  # EUR
    }
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode() + image_bytes)
    return {
        **fields,
        "url": url,
        "content_hash": digest.hexdigest(),
        "first_seen": FIRST_SEEN,
        "image_url": f"{SITE}{fields['image']}",
        "image_path": image_path,
    }


def build_raw(
    root: Path,
    n_items: int = 200,
    dirt: Dirt = Dirt(),
    seed: int = 0,
    *,
    start: int = 0,
    darken: int = 1,
) -> list[dict]:
    """Write `root/data/raw/` (items.jsonl sorted by url, images/) and return the rows written.

    Item i is always digit i at URL .../item/00i, so a larger `n_items` only adds items. For a
    shifted second crawl: `start` skips the first digits (new items), `darken` divides every
    pixel (a darker site: mean image intensity drifts).
    """
    pixels, targets = _digits()
    if start + n_items > len(targets):
        raise ValueError(f"start + n_items {start + n_items} > {len(targets)} digits available")
    raw_dir = root / "data" / "raw"
    (raw_dir / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(start, start + n_items):
        data = png_bytes(pixels[i] // darken)
        url = f"{SITE}/item/{i:04d}"
        rows.append(_item(i, str(targets[i]), _write_image(raw_dir, data), data, url))

    # Positions in `rows` (not digit numbers) that get dirt.
    picks = iter(int(i) for i in np.random.default_rng(seed).permutation(n_items))
    extra = _add_copies(rows, targets[start:], picks, dirt)
    for j in range(dirt.near_duplicates):
        i = next(picks)
        data = png_bytes(
            np.clip(pixels[start + i].astype(np.int16) // darken + 2, 0, 255).astype(np.uint8)
        )
        near = {**rows[i], "url": f"{SITE}/item/near-{j:03d}"}
        extra.append({**near, "image_path": _write_image(raw_dir, data)})
    _dirty_labels(rows, targets[start:], picks, dirt)
    _dirty_images_and_numbers(rows, raw_dir, pixels[start:] // darken, picks, dirt)
    rows = sorted(rows + extra, key=lambda row: row["url"])
    for i, row in enumerate(rows):
        if dirt.numeric_labels and str(row["label"]).strip().isdigit():
            row["label"] = int(row["label"])
        if dirt.int_image_paths:
            row["image_path"] = i
        for key in dirt.drop_columns:
            row.pop(key, None)
    write_items(raw_dir, rows)
    return rows


def _add_copies(rows: list[dict], targets: np.ndarray, picks: Iterator[int], dirt: Dirt) -> list:
    extra = []
    for j in range(dirt.duplicates):
        extra.append({**rows[next(picks)], "url": f"{SITE}/item/dup-{j:03d}"})
    for j in range(dirt.conflicting):
        i = next(picks)
        other = str((targets[i] + 1) % 10)
        extra.append({**rows[i], "url": f"{SITE}/item/conflict-{j:03d}", "label": other})
    return extra


def _dirty_labels(rows: list[dict], targets: np.ndarray, picks: Iterator[int], dirt: Dirt) -> None:
    for _ in range(dirt.alias_labels):
        i = next(picks)
        rows[i]["label"] = WORDS[targets[i]]
    for _ in range(dirt.wrong_labels):
        i = next(picks)
        rows[i]["label"] = str((targets[i] + 1) % 10)
    for _ in range(dirt.unknown_labels):
        rows[next(picks)]["label"] = "n/a"
    for _ in range(dirt.null_labels):
        rows[next(picks)]["label"] = None


def _dirty_images_and_numbers(
    rows: list[dict], raw_dir: Path, pixels: np.ndarray, picks: Iterator[int], dirt: Dirt
) -> None:
    for _ in range(dirt.missing_images):
        rows[next(picks)]["image_path"] = f"images/{'0' * 64}.png"
    for _ in range(dirt.broken_images):
        i = next(picks)
        rows[i]["image_path"] = _write_image(raw_dir, f"not a png {i}".encode())
    for _ in range(dirt.wrong_size_images):
        i = next(picks)
        big = np.kron(pixels[i], np.ones((2, 2), dtype=np.uint8))  # 16x16
        rows[i]["image_path"] = _write_image(raw_dir, png_bytes(big))
    for _ in range(dirt.bad_numbers):
        rows[next(picks)].update(ink="lots", price="lots")
    for _ in range(dirt.null_numbers):
        rows[next(picks)].update(ink=None, price=None)


def write_items(raw_dir: Path, rows: list[dict]) -> None:
    raw_dir.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(row, sort_keys=True) + "\n" for row in rows]
    (raw_dir / "items.jsonl").write_text("".join(lines), encoding="utf-8")


def write_params(root: Path, overrides: dict | None = None) -> Path:
    """Copy the repo's params.yaml into `root`, with nested `overrides` applied."""
    params = yaml.safe_load(REPO_PARAMS.read_text(encoding="utf-8"))
    root.mkdir(parents=True, exist_ok=True)
    target = root / "params.yaml"
    target.write_text(yaml.safe_dump(merge_params(params, overrides or {})), encoding="utf-8")
    return target
