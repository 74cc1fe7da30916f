"""Loading a registry version for serving (`kiln serve`, `kiln predict`): ONNX Runtime or PyTorch.

Every file is read once and checked against the sha256 the registry recorded for it before it is
parsed (tasks.core.registry.verified_bytes); there is no pickle anywhere. The ONNX backend needs
only
onnxruntime and numpy: nothing here imports torch unless the torch backend is asked for.
Both backends take uint8 pixels (N, H, W) and return float32 logits (N, n_classes): the ONNX
graph holds the preprocessing (tasks/export.py), the torch backend applies the same
`tasks.core.models.preprocess`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tasks.core import registry
from tasks.core.plugins import task_type

BACKENDS = ("onnx", "torch")


@dataclass(frozen=True)
class LoadedModel:
    version: str
    entry: dict[str, Any]  # the registry entry: metrics, data version, git revision, ...
    card: dict[str, Any]  # models/card.json of that version (hash-checked)
    backend: str
    # The exported graph: its inputs in order (images: uint8 (N, H, W)) -> its first output
    # (images: float32 logits (N, K)); see export/onnx.json of the task type for the others.
    run: Callable[..., np.ndarray]
    root: Path  # the registry it came from (a task type's extra files, e.g. a tokenizer)

    @property
    def task(self) -> str:
        return registry.task_of(self.entry)

    @property
    def labels(self) -> list[str]:
        return list(self.card["classes"])

    @property
    def input_spec(self) -> dict[str, Any]:
        """What a request must send, for GET /model: how an image is fitted to the model (size,
        mode, fit, resampling, background), window length, text limit."""
        config, prep = self.card["config"], self.card.get("preprocessing", {})
        if "fit" in prep:  # images: a request image of any size is fitted as clean fitted them
            keys = ("height", "width", "mode", "fit", "resample", "background")
            return {k: prep[k] for k in keys if k in prep}
        if "height" in config:  # images, a card from before clean.image: grey, that size only
            return {"height": config["height"], "width": config["width"], "mode": "L",
                    "fit": "none"}
        keys = ("window", "horizon", "max_len", "tokenizer")
        return {k: prep[k] for k in keys if k in prep and not isinstance(prep[k], dict | list)}


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
    feeds = [i.name for i in session.get_inputs()]
    # InferenceSession.run is thread-safe: requests share one session.
    return lambda *arrays: session.run(names, dict(zip(feeds, arrays, strict=True)))[0]


def _torch_runner(root: Path, version: str, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """The task type's PyTorch twin of its ONNX graph (the torch backend)."""
    import torch  # noqa: PLC0415 (optional backend)

    for name in ("card.json", "model.safetensors"):
        registry.verified_bytes(root, version, name)
    torch.set_num_threads(threads)
    task = registry.task_of(registry.entry(root, version))
    return task_type(task).torch_runner(root / "versions" / version)


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
    return LoadedModel(version, entry, card, backend, make(root, version, threads), root)


def load_champion(root: Path | str, backend: str = "onnx", threads: int = 1) -> LoadedModel:
    current = registry.champion(root)
    if current is None:
        raise registry.RegistryError(
            f"no champion in {root}: run the pipeline (`kiln run`) or `kiln promote --force`"
        )
    return load_version(root, current[0], backend, threads)
