"""A `data/clean` fixture from sklearn's digits: `python -m tests.clean_fixture DIR [N_ITEMS]`.

Writes DIR/data/clean/items.parquet + pixels.npy as docs/contracts.md describes (the clean stage's
output), and DIR/params.yaml (the repo's params with overrides), so a test or a measurement can run
`python -m tasks.train` / `tasks.evaluate` in DIR without crawling. Splits come from a stable hash
of each item's key, so the first N items of a bigger fixture keep their splits.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

REPO_PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"
CLASSES = [str(d) for d in range(10)]


def _split(key: str, salt: str, val_share: float, test_share: float) -> str:
    u = int(hashlib.sha256(f"{salt}:{key}".encode()).hexdigest()[:15], 16) / 16**15  # in [0, 1)
    return "test" if u < test_share else "val" if u < test_share + val_share else "train"


def write_clean_fixture(
    root: Path | str,
    n_items: int | None = None,
    *,
    upscale: int = 1,
    val_share: float = 0.15,
    test_share: float = 0.15,
    salt: str = "kiln",
) -> Path:
    """Write `root/data/clean` from the first `n_items` digits (all 1797 if None); returns the dir.

    `upscale` repeats each pixel (8x8 -> 8k x 8k) to make a fixture of another image size.
    """
    from sklearn.datasets import load_digits  # noqa: PLC0415 (test-only dependency)

    digits = load_digits()
    n = len(digits.images) if n_items is None else n_items
    # sklearn digits are 0..16 ink levels; the demo site's PNGs are 0..255 grayscale.
    pixels = np.rint(digits.images[:n] * (255 / 16)).astype(np.uint8)
    if upscale > 1:
        pixels = pixels.repeat(upscale, axis=1).repeat(upscale, axis=2)
    targets = digits.target[:n].astype(np.int64)
    rng = np.random.default_rng(0)
    keys = [hashlib.sha256(p.tobytes()).hexdigest() for p in pixels]  # all 1797 digits differ
    items = pd.DataFrame(
        {
            "key": keys,
            "url": [f"http://127.0.0.1:8765/item/{i}" for i in range(n)],
            "label": [CLASSES[t] for t in targets],
            "label_index": targets,
            "split": [_split(k, salt, val_share, test_share) for k in keys],
            "ink": rng.uniform(0.0, 1.0, n),
            "price": rng.uniform(1.0, 20.0, n).round(2),
            "first_seen": "2024-01-01T00:00:00Z",
        }
    )
    order = np.argsort(np.asarray(keys), kind="stable")
    clean = Path(root) / "data" / "clean"
    clean.mkdir(parents=True, exist_ok=True)
    items.iloc[order].reset_index(drop=True).to_parquet(clean / "items.parquet", index=False)
    np.save(clean / "pixels.npy", pixels[order], allow_pickle=False)
    return clean


def write_params(root: Path | str, **sections: dict[str, Any]) -> Path:
    """Write `root/params.yaml`: the repo's params with per-section overrides (train={...})."""
    params = yaml.safe_load(REPO_PARAMS.read_text(encoding="utf-8"))
    for name, overrides in sections.items():
        params[name] = {**params[name], **overrides}
    path = Path(root) / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return path


def write_project(
    root: Path | str, n_items: int | None = None, *, upscale: int = 1, **sections: dict[str, Any]
) -> Path:
    """A runnable project dir: params.yaml + data/clean."""
    write_clean_fixture(root, n_items, upscale=upscale)
    write_params(root, **sections)
    return Path(root)


def write_trained_project(root: Path, n_items: int, train: dict[str, Any]) -> Path:
    """`write_project` plus one real run of the train stage in it (models/ written): the image
    plug-in's `train_stage` on root/params.yaml, as `python -m tasks.train` runs it (without
    `run_stage`'s logging set-up, which would replace pytest's log capture)."""
    from tasks.core.params import load_params  # noqa: PLC0415
    from tasks.types.image_classification.train import (  # noqa: PLC0415 (torch: tests that train)
        train_stage,
    )

    write_project(root, n_items, train=train)
    cwd = Path.cwd()
    try:
        os.chdir(root)
        if train_stage(load_params()) != 0:
            raise RuntimeError(f"the train stage failed in {root}")
    finally:
        os.chdir(cwd)
    return root


if __name__ == "__main__":
    target = Path(sys.argv[1])
    write_project(target, int(sys.argv[2]) if len(sys.argv) > 2 else None)
    print(f"wrote {target}/params.yaml and {target}/data/clean")
