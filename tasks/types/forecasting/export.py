"""The export side of forecasting: run by `python -m tasks.export` when project.task is
`forecasting` (stages.py export_stage is the shell; this module is its pure core).

ONNX: float32 raw values (batch, window) in the original unit -> forecast (batch, horizon) in the
original unit, scaling inside the graph (the Forecaster of tasks/types/forecasting/report.py);
parity with PyTorch on a fixed batch (the first test windows, a constant and a random walk) within
export.atol before anything is written.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from tasks.core.models import ModelError
from tasks.types.forecasting.data import Series
from tasks.types.forecasting.report import Forecaster, forecast, rolling_inputs

if TYPE_CHECKING:
    from tasks.core.params import Params

INPUT, OUTPUT = "values", "forecast"


def to_onnx(forecaster: Forecaster, opset: int) -> bytes:
    window = int(forecaster.preprocessing["window"])
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # "legacy TorchScript-based ONNX export": chosen on purpose
        warnings.simplefilter("ignore")
        torch.onnx.export(
            forecaster,
            (torch.zeros(2, window),),
            buffer,
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT],
            output_names=[OUTPUT],
            dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
        )
    import onnx  # noqa: PLC0415

    onnx.checker.check_model(onnx.load_from_string(buffer.getvalue()))
    return buffer.getvalue()


def parity_inputs(series: Series, window: int, n: int) -> np.ndarray:
    """The fixed batch: the first n test windows, a constant window at the train mean and a
    seed-0 random walk around it."""
    train = series.values[: series.n_train]
    flat = np.full((1, window), train.mean())
    walk = train.mean() + np.cumsum(np.random.default_rng(0).normal(0, train.std() / 10, window))
    return np.concatenate([rolling_inputs(series, window)[:n], flat, walk[None]]).astype(np.float32)


def export_forecaster(
    forecaster: Forecaster, card: dict[str, Any], series: Series, params: Params
) -> tuple[bytes, dict[str, Any]]:
    import onnxruntime as ort  # noqa: PLC0415

    cfg, prep = params.export, forecaster.preprocessing
    blob = to_onnx(forecaster, cfg.opset)
    batch = parity_inputs(series, int(prep["window"]), cfg.parity_batch)
    session = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    got = session.run([OUTPUT], {INPUT: batch})[0]
    diff = float(np.abs(got - forecast(forecaster, batch)).max())
    if not diff <= cfg.atol:  # `not <=`: NaN fails too
        raise ModelError(
            f"ONNX Runtime and PyTorch disagree on the parity batch of {len(batch)}: "
            f"max |forecast diff| {diff:.3g} (export.atol {cfg.atol:g})"
        )
    info = {
        "onnx_sha256": hashlib.sha256(blob).hexdigest(),
        "weights_sha256": card["weights_sha256"],
        "opset": cfg.opset,
        "input": {"name": INPUT, "dtype": "float32", "shape": ["batch", int(prep["window"])]},
        "output": {"name": OUTPUT, "dtype": "float32", "shape": ["batch", int(prep["horizon"])]},
        "classes": [],
        "preprocessing": prep,
        "parity": {"n": len(batch), "max_abs_diff": diff, "atol": cfg.atol},
        "versions": {"torch": torch.__version__, "onnxruntime": ort.__version__},
    }
    return blob, info
