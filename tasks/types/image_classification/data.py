"""Reading image classification's `data/clean` for its train, evaluate and export stages.

`data/clean/items.parquet` + `pixels.npy` (docs/contracts.md) become numpy arrays per split, plus
a data version: the sha256 over both files, recorded in the model card and in the checkpoint key.
Needs only numpy, pandas and pyarrow.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tasks.core.dataset import DataError, check_labels

CLEAN_FILES = ("items.parquet", "pixels.npy")


@dataclass(frozen=True)
class Split:
    pixels: np.ndarray  # uint8 (N, H, W), 0..255
    labels: np.ndarray  # int64 (N,), index into the classes


@dataclass(frozen=True)
class CleanData:
    items: pd.DataFrame  # columns label, label_index, split; row-aligned with pixels
    pixels: np.ndarray  # uint8 (N, H, W)
    data_version: str

    def split(self, name: str) -> Split:
        mask = (self.items["split"] == name).to_numpy()
        return Split(self.pixels[mask], self.items["label_index"].to_numpy(np.int64)[mask])


def data_version(clean_dir: Path | str) -> str:
    """sha256 over the data/clean files (name, size and bytes of each, in a fixed order)."""
    digest = hashlib.sha256()
    for name in CLEAN_FILES:
        path = Path(clean_dir) / name
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
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"cannot read {clean_dir}: {exc}") from None
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or len(pixels) != len(items):
        raise DataError(
            f"{clean_dir}/pixels.npy must be uint8 (N, H, W) with N = {len(items)} rows of "
            f"items.parquet, got {pixels.dtype} {pixels.shape}"
        )
    return CleanData(items, pixels, version)


@dataclass(frozen=True)
class TrainData:
    train: Split
    val: Split
    classes: tuple[str, ...]
    data_version: str


def load_train_data(clean_dir: Path | str, classes: list[str]) -> TrainData:
    """The train and val splits, labels checked against `classes` (params labels.classes)."""
    clean = read_clean(clean_dir)
    check_labels(clean.items, classes, "params labels.classes")
    data = TrainData(clean.split("train"), clean.split("val"), tuple(classes), clean.data_version)
    if not len(data.train.labels) or not len(data.val.labels):
        raise DataError(
            f"{clean_dir} needs train and val rows; split counts: "
            f"{clean.items['split'].value_counts().to_dict()}"
        )
    return data
