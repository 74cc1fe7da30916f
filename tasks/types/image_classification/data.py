"""Reading image classification's `data/clean` for its train, evaluate and export stages.

`data/clean/items.parquet` + `pixels.npy` + `preprocessing.json` (docs/contracts.md) become
numpy arrays per split, how the images were fitted, and a data version: the sha256 over the
files, recorded in the model card and in the checkpoint key. Needs only numpy, pandas and pyarrow.

Pixels are uint8 (N, H, W) for grayscale and (N, H, W, 3) for RGB: `numpy.asarray` of the fitted
PIL images, stacked (tasks/core/images.py). A data/clean written before preprocessing.json existed
(grayscale, one size) reads as fit `none` at its own size.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tasks.core.dataset import DataError, check_labels
from tasks.core.images import ImageFit

PREPROCESSING_FILE = "preprocessing.json"  # the ImageFit of the pixels + clean.image.normalise
CLEAN_FILES = ("items.parquet", "pixels.npy", PREPROCESSING_FILE)


@dataclass(frozen=True)
class Split:
    pixels: np.ndarray  # uint8 (N, H, W) or (N, H, W, 3), 0..255
    labels: np.ndarray  # int64 (N,), index into the classes


@dataclass(frozen=True)
class CleanData:
    items: pd.DataFrame  # columns label, label_index, split; row-aligned with pixels
    pixels: np.ndarray  # uint8 (N, H, W) or (N, H, W, 3)
    data_version: str
    preprocessing: dict[str, Any]  # ImageFit.to_json() + "normalise"

    def split(self, name: str) -> Split:
        mask = (self.items["split"] == name).to_numpy()
        return Split(self.pixels[mask], self.items["label_index"].to_numpy(np.int64)[mask])


def data_version(clean_dir: Path | str) -> str:
    """sha256 over the data/clean files (name, size and bytes of each, in a fixed order)."""
    digest = hashlib.sha256()
    for name in CLEAN_FILES:
        path = Path(clean_dir) / name
        if name == PREPROCESSING_FILE and not path.exists():
            continue  # written before the file existed: the same version as then
        digest.update(f"{name}\0{path.stat().st_size}\0".encode())
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def read_clean(clean_dir: Path | str) -> CleanData:
    clean_dir = Path(clean_dir)
    try:
        items = pd.read_parquet(
            clean_dir / "items.parquet", columns=["label", "label_index", "split"]
        )
        pixels = np.load(clean_dir / "pixels.npy", allow_pickle=False)
        version = data_version(clean_dir)
        prep = _read_preprocessing(clean_dir / PREPROCESSING_FILE, pixels)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"cannot read {clean_dir}: {exc}") from None
    shape = ImageFit.from_json(prep).shape
    if pixels.dtype != np.uint8 or pixels.shape[1:] != shape or len(pixels) != len(items):
        raise DataError(
            f"{clean_dir}/pixels.npy must be uint8 (N, {', '.join(map(str, shape))}) with N = "
            f"{len(items)} rows of items.parquet, got {pixels.dtype} {pixels.shape}"
        )
    return CleanData(items, pixels, version, prep)


def _read_preprocessing(path: Path, pixels: np.ndarray) -> dict[str, Any]:
    """preprocessing.json, or for a data/clean without one: its grayscale pixels as they are."""
    if path.exists():
        prep = json.loads(path.read_text(encoding="utf-8"))
        ImageFit.from_json(prep)  # every key there and valid
        if prep.get("normalise") not in ("dataset", "unit"):
            raise ValueError(f"{path.name}: normalise {prep.get('normalise')!r}")
        return prep
    if pixels.ndim != 3 or min(pixels.shape[1:], default=0) < 1:
        raise ValueError(f"pixels.npy of shape {pixels.shape} without {path.name}")
    legacy = ImageFit(int(pixels.shape[1]), int(pixels.shape[2]), "L", "none")
    return {**legacy.to_json(), "normalise": "dataset"}


@dataclass(frozen=True)
class TrainData:
    train: Split
    val: Split
    classes: tuple[str, ...]
    data_version: str
    preprocessing: dict[str, Any]  # how the pixels were fitted, clean.image.normalise


def load_train_data(clean_dir: Path | str, classes: list[str]) -> TrainData:
    """The train and val splits, labels checked against `classes` (params labels.classes)."""
    clean = read_clean(clean_dir)
    check_labels(clean.items, classes, "params labels.classes")
    data = TrainData(
        clean.split("train"),
        clean.split("val"),
        tuple(classes),
        clean.data_version,
        clean.preprocessing,
    )
    if not len(data.train.labels) or not len(data.val.labels):
        raise DataError(
            f"{clean_dir} needs train and val rows; split counts: "
            f"{clean.items['split'].value_counts().to_dict()}"
        )
    return data
