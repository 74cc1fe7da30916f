"""Loading a registry version for serving (`kiln serve`, `kiln predict`): ONNX Runtime or PyTorch.

Every file is read once and checked against the sha256 the registry recorded for it before it is
parsed (tasks.registry.verified_bytes); there is no pickle anywhere. The ONNX backend needs only
onnxruntime and numpy: nothing here imports torch unless the torch backend is asked for.
Both backends take uint8 pixels (N, H, W) and return float32 logits (N, n_classes): the ONNX
graph holds the preprocessing (tasks/export.py), the torch backend applies the same
`tasks.models.preprocess`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tasks import registry

BACKENDS = ("onnx", "torch")


@dataclass(frozen=True)
class LoadedModel:
    version: str
    entry: dict[str, Any]  # the registry entry: metrics, data version, git revision, ...
    card: dict[str, Any]  # models/card.json of that version (hash-checked)
    backend: str
    run: Callable[[np.ndarray], np.ndarray]  # uint8 (N, H, W) -> float32 logits (N, K)

    @property
    def task(self) -> str:
        return self.entry.get("task", "image_classification")

    @property
    def labels(self) -> list[str]:
        return list(self.card["classes"])

    @property
    def height(self) -> int:
        return int(self.card["config"]["height"])

    @property
    def width(self) -> int:
        return int(self.card["config"]["width"])


def _onnx_runner(root: Path, version: str, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    import onnxruntime as ort  # noqa: PLC0415 (the torch backend does not need it)

    blob = registry.verified_bytes(root, version, "model.onnx")
    spec = json.loads(registry.verified_bytes(root, version, "onnx.json"))
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    try:
        session = ort.InferenceSession(blob, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types (Fail, InvalidGraph...)
        raise registry.RegistryError(f"version {version} model.onnx does not load: {exc}") from None
    names = [spec["output"]["name"]]
    feed = spec["input"]["name"]
    return lambda pixels: session.run(names, {feed: pixels})[0]  # InferenceSession is thread-safe


def _torch_runner(root: Path, version: str, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    import torch  # noqa: PLC0415 (optional backend)

    from tasks.models import load_model, predict_logits, preprocess  # noqa: PLC0415

    for name in ("card.json", "model.safetensors"):
        registry.verified_bytes(root, version, name)
    model, card = load_model(root / "versions" / version)  # checks weights against the card too
    torch.set_num_threads(threads)

    def run(pixels: np.ndarray) -> np.ndarray:
        x = preprocess(torch.from_numpy(pixels), card["preprocessing"])
        return predict_logits(model, x).numpy()

    return run


def load_version(
    root: Path | str, version: str, backend: str = "onnx", threads: int = 1
) -> LoadedModel:
    """A hash-checked, ready-to-run registry version; raises RegistryError if it is not."""
    if backend not in BACKENDS:
        raise registry.RegistryError(f"unknown backend {backend!r}; known: {list(BACKENDS)}")
    root = Path(root)
    entry = registry.entry(root, version)
    card = json.loads(registry.verified_bytes(root, version, "card.json"))
    make = _onnx_runner if backend == "onnx" else _torch_runner
    return LoadedModel(version, entry, card, backend, make(root, version, threads))


def load_champion(root: Path | str, backend: str = "onnx", threads: int = 1) -> LoadedModel:
    current = registry.champion(root)
    if current is None:
        raise registry.RegistryError(
            f"no champion in {root}: run the pipeline (`kiln run`) or `kiln promote --force`"
        )
    return load_version(root, current[0], backend, threads)
