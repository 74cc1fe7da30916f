"""Image classification's export stage: models/ -> export/.

Writes `export/model.onnx`: the hash-checked model of models/ with its normalisation inside the
graph, so the ONNX model takes what the clean stage produces (uint8 pixels `(N, H, W)` grayscale
or `(N, H, W, 3)` RGB, at the card's size, N free) and returns float32 logits `(N, n_classes)`; a
server needs no normalisation constants and cannot get them wrong. Fitting an image of another
size or mode to that input is `tasks.core.images.fit_image` with the card's `preprocessing`, as
in clean and `kiln serve`; onnx.json records it.

Before anything is written, a parity check runs ONNX Runtime and PyTorch (the evaluate stage's
own `preprocess` + `predict_logits`) on a fixed batch: the first `export.parity_batch` test images
plus an all-0, an all-255 and a seeded random image. Every logit must agree within `export.atol`
and every argmax exactly; otherwise the stage fails and export/ keeps the last good export.
`export/onnx.json` records the ONNX file's sha256, the weights it came from, the input/output
spec, the preprocessing and the parity result.

Uses the TorchScript exporter (`dynamo=False`): it needs no `onnxscript`, and neither model has
control flow that would need torch.export.
"""

from __future__ import annotations

import hashlib
import io
import logging
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from tasks.core.dataset import DataError
from tasks.core.models import ModelError, load_model, predict_logits
from tasks.core.onnx_export import (
    EXPORT_DIR,
    ONNX_FILE,
    ExportError,
    compare_logits,
    exporting,
    write_export,
)
from tasks.core.paths import CLEAN_DIR, MODELS_DIR
from tasks.types.image_classification.data import read_clean
from tasks.types.image_classification.models import (
    ARCHITECTURES,
    normalisation,
    normalise,
    preprocess,
)

if TYPE_CHECKING:
    from tasks.core.params import ExportParams
    from tasks.types.image_classification.params import ImageParams

logger = logging.getLogger("kiln.export")

INPUT, OUTPUT = "pixels", "logits"


class PixelsToLogits(nn.Module):
    """uint8 (N, H, W) or (N, H, W, C) -> logits: `models.preprocess` followed by the network."""

    def __init__(self, model: nn.Module, preprocessing: dict[str, Any]) -> None:
        super().__init__()
        self.model = model
        self.scale = preprocessing["scale"]
        mean, std = normalisation(preprocessing)
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model(normalise(pixels, self.scale, self.mean, self.std))


def parity_batch(test_pixels: np.ndarray, n: int) -> np.ndarray:
    """The fixed batch: the first n test images, then all-0, all-255 and a seed-0 random image."""
    shape = test_pixels.shape[1:]
    extremes = np.stack([np.zeros(shape, np.uint8), np.full(shape, 255, np.uint8)])
    noise = np.random.default_rng(0).integers(0, 256, (1, *shape), dtype=np.uint8)
    return np.concatenate([test_pixels[:n], extremes, noise])


def input_shape(config: dict[str, Any]) -> tuple[int, ...]:
    """One image as the graph takes it: (H, W) grayscale, (H, W, C) otherwise."""
    size = (config["height"], config["width"])
    return size if config["in_channels"] == 1 else (*size, config["in_channels"])


def to_onnx(model: nn.Module, card: dict[str, Any], opset: int) -> bytes:
    """The ONNX bytes of the pixels -> logits graph, batch dimension dynamic."""
    example = torch.zeros(2, *input_shape(card["config"]), dtype=torch.uint8)
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # "legacy TorchScript-based ONNX export": chosen on purpose
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            PixelsToLogits(model.eval(), card["preprocessing"]),
            (example,),
            buffer,
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT],
            output_names=[OUTPUT],
            dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
        )
    import onnx  # noqa: PLC0415 (only this stage needs the onnx package)

    onnx.checker.check_model(onnx.load_from_string(buffer.getvalue()))
    return buffer.getvalue()


def check_parity(
    blob: bytes, model: nn.Module, card: dict[str, Any], batch: np.ndarray, atol: float
) -> dict[str, Any]:
    """ONNX Runtime vs PyTorch logits on `batch`; raises ExportError beyond `atol`."""
    import onnxruntime as ort  # noqa: PLC0415

    session = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    got = session.run([OUTPUT], {INPUT: batch})[0]
    x = preprocess(torch.from_numpy(batch), card["preprocessing"])
    want = predict_logits(model.cpu(), x).numpy()
    return compare_logits(got, want, atol)


def export_model(
    model: nn.Module, card: dict[str, Any], test_pixels: np.ndarray, cfg: ExportParams
) -> tuple[bytes, dict[str, Any]]:
    """(model.onnx bytes, onnx.json content); pure, writes nothing."""
    config = card["config"]
    if test_pixels.shape[1:] != input_shape(config):
        channels = 1 if test_pixels.ndim == 3 else test_pixels.shape[3]
        raise ModelError(
            f"models/card.json config.height={config['height']}, config.width={config['width']} "
            f"(config.in_channels={config['in_channels']}) but the test images are "
            f"{test_pixels.shape[1]}x{test_pixels.shape[2]} ({channels} channels)"
        )
    blob = to_onnx(model, card, cfg.opset)
    parity = check_parity(blob, model, card, parity_batch(test_pixels, cfg.parity_batch), cfg.atol)
    import onnxruntime as ort  # noqa: PLC0415

    info = {
        "onnx_sha256": hashlib.sha256(blob).hexdigest(),
        "weights_sha256": card["weights_sha256"],
        "opset": cfg.opset,
        "input": {"name": INPUT, "dtype": "uint8", "shape": ["batch", *input_shape(config)]},
        "output": {"name": OUTPUT, "dtype": "float32", "shape": ["batch", config["n_classes"]]},
        "classes": list(card["classes"]),
        "preprocessing": card["preprocessing"],  # fit (tasks.core.images) + normalisation
        "parity": parity,
        "versions": {"torch": torch.__version__, "onnxruntime": ort.__version__},
    }
    return blob, info


def export_stage(params: ImageParams) -> int:
    """models/ -> export/ after the parity check; the exit code."""
    try:
        model, card = load_model(MODELS_DIR, ARCHITECTURES)
        test = read_clean(CLEAN_DIR).split("test")
        with exporting(logger):
            blob, info = export_model(model, card, test.pixels, params.export)
    except (DataError, ModelError, ExportError) as exc:
        logger.error("export failed: %s", exc)
        return 1
    write_export(blob, info)
    parity = info["parity"]
    logger.info(
        f"wrote {EXPORT_DIR / ONNX_FILE} ({len(blob)} bytes, sha256 {info['onnx_sha256'][:12]}…); "
        f"parity on {parity['n']} images: max |logit diff| {parity['max_abs_diff']:.2e} "
        f"≤ {parity['atol']:g}, argmax equal on all"
    )
    return 0
