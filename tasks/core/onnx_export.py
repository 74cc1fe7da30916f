"""What every task type's export stage shares: the parity comparison of ONNX Runtime against
PyTorch, and the one writer of export/ (model.onnx + onnx.json, in one directory swap)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tasks.core.io import atomic_dir, write_bytes, write_json
from tasks.core.paths import EXPORT_DIR

ONNX_FILE, ONNX_CARD = "model.onnx", "onnx.json"


class ExportError(RuntimeError):
    """The ONNX graph does not reproduce the PyTorch model; the message gives the difference."""


def compare_logits(got: np.ndarray, want: np.ndarray, atol: float, what: str = "") -> dict:
    """ONNX Runtime (`got`) vs PyTorch (`want`) logits (N, K) of one batch of N `what`: the parity
    record, or ExportError beyond `atol` or on any differing argmax (image and text classifiers)."""
    n = len(got)
    diff = float(np.abs(got - want).max())
    agree = int((got.argmax(1) == want.argmax(1)).sum())
    if not diff <= atol or agree != n:  # `not <=`: a NaN difference fails too
        raise ExportError(
            f"ONNX Runtime and PyTorch disagree on the parity batch of {n}{what}: max "
            f"|logit diff| {diff:.3g} (export.atol {atol:g}), argmax equal on {agree}/{n}"
        )
    return {"n": n, "max_abs_diff": diff, "atol": atol, "argmax_agree": agree}


def write_export(blob: bytes, info: dict[str, Any], export_dir: Path = EXPORT_DIR) -> None:
    """export/ in one swap: model.onnx and onnx.json."""
    with atomic_dir(export_dir) as tmp:
        write_bytes(tmp / ONNX_FILE, blob)
        write_json(tmp / ONNX_CARD, info)
