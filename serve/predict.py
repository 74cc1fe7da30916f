"""Batch predictions from the command line: `kiln predict FILE...` (PNG files).

The same path as `POST /predict`: the champion loaded from the registry with hash checks, each
PNG decoded exactly as the server and the clean stage do (serve.images), one forward pass per
`batch` files. A file that cannot be used is named in the error, and nothing is predicted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from serve.backends import load_champion
from serve.images import InputError, decode_png


def predict_files(
    paths: list[Path], root: Path, backend: str = "onnx", batch: int = 256
) -> list[dict[str, Any]]:
    """One row per file: file, label, probability, version; raises InputError naming a file."""
    loaded = load_champion(root, backend)
    if loaded.task != "image_classification":
        raise InputError(
            ("champion",),
            f"`kiln predict` reads PNG files for image models; champion {loaded.version} is a "
            f"{loaded.task} model: send its inputs to POST /predict of `kiln serve`",
        )
    images = []
    for path in paths:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise InputError((str(path),), f"cannot read: {exc.strerror}") from None
        images.append(decode_png(raw, loaded.height, loaded.width, (str(path),)))
    rows: list[dict[str, Any]] = []
    for start in range(0, len(images), batch):
        logits = loaded.run(np.stack(images[start : start + batch]))
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs = shifted / shifted.sum(axis=1, keepdims=True)
        for path, p in zip(paths[start : start + batch], probs, strict=True):
            k = int(p.argmax())
            rows.append(
                {
                    "file": str(path),
                    "label": loaded.labels[k],
                    "probability": round(float(p[k]), 6),
                    "version": loaded.version,
                }
            )
    return rows
