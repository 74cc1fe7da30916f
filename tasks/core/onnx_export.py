"""What every task type's export stage shares: the parity comparison of ONNX Runtime against
PyTorch, the one writer of export/ (model.onnx + onnx.json, in one directory swap), and the
export's progress (`exporting`)."""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np

from tasks.core.io import atomic_dir, write_bytes, write_json
from tasks.core.paths import EXPORT_DIR
from tasks.core.progress import Progress, working

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


def exporting(logger: logging.Logger | None = None) -> AbstractContextManager[Progress]:
    """`with exporting(log): blob, info = ...`: torch.onnx.export and the parity check as one
    step, `export.onnx` (tasks.core.progress.working): a start line, `working <s>s` every 10 s
    (tracing MiniLM takes many seconds), and `done in <s>s`, or `stopped after` when it raised."""
    return working("export.onnx", logger)


def write_export(blob: bytes, info: dict[str, Any], export_dir: Path = EXPORT_DIR) -> None:
    """export/ in one swap: model.onnx and onnx.json."""
    with atomic_dir(export_dir) as tmp:
        write_bytes(tmp / ONNX_FILE, blob)
        write_json(tmp / ONNX_CARD, info)
