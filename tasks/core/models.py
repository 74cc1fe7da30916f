"""Model files, the same for every task type: weights + card, hash-checked, rebuilt without pickle.

A model on disk is two files and no code: `model.safetensors` (the weights) and `card.json` (plain
JSON: `architecture`, `config`, `classes`, `preprocessing`, ..., `weights_sha256`). `load_model`
rebuilds the network from the card's config, checks the weights' sha256 against the card before
parsing them and refuses a mismatch, so truncated, tampered or pickled files never become a model.
Needs only torch and safetensors.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from tasks.core.io import write_bytes, write_json
from tasks.core.progress import QUIET_S, Progress

WEIGHTS_FILE, CARD_FILE = "model.safetensors", "card.json"
EVAL_BATCH = 1024  # inputs per forward pass in predict_logits; bounds memory, not results


class ModelError(ValueError):
    """A model file, card or config is unusable; the message names the file or field."""


def check_config(config: object, positive: tuple[str, ...], dropout: float) -> None:
    """ModelError unless each field in `positive` is a positive int and dropout is in [0, 1)."""
    for name in positive:
        value = getattr(config, name)
        if not isinstance(value, int) or value < 1:
            raise ModelError(f"config.{name} must be a positive integer, got {value!r}")
    if not 0.0 <= dropout < 1.0:
        raise ModelError(f"config.dropout must be in [0, 1), got {dropout!r}")


# architecture name -> (config dataclass, nn.Module class): each task type has its own
Architectures = Mapping[str, tuple[type, type[nn.Module]]]


def build_model(
    architectures: Architectures, architecture: str, config: dict[str, Any]
) -> nn.Module:
    """A freshly initialised network (uses torch's global RNG: seed it first)."""
    if architecture not in architectures:
        raise ModelError(f"unknown architecture {architecture!r}; known: {sorted(architectures)}")
    config_cls, model_cls = architectures[architecture]
    known = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ModelError(f"unknown config field(s) {unknown} for {architecture!r}: {sorted(known)}")
    return model_cls(config_cls(**config))


@torch.inference_mode()
def predict_logits(
    model: nn.Module,
    x: torch.Tensor,
    *,
    what: str = "predict",
    logger: logging.Logger | None = None,
) -> torch.Tensor:
    """float32 logits of preprocessed x in eval mode, EVAL_BATCH inputs at a time.

    Over more than one batch its progress (`what`, in items) is logged if it runs longer than
    QUIET_S (tasks/core/progress.py): a pass over 20,000 texts through MiniLM is minutes, the
    demo's test split 20 ms and no line."""
    model.eval()
    starts = range(0, len(x), EVAL_BATCH)
    bar = (Progress(what, len(x), unit="items", logger=logger, quiet_s=QUIET_S)
           if len(starts) > 1 else nullcontext())  # fmt: skip
    chunks = []
    with bar, torch.autocast(x.device.type, torch.bfloat16, enabled=x.device.type == "cuda"):
        for i in starts:
            chunks.append(model(x[i : i + EVAL_BATCH]).float())
            if isinstance(bar, Progress):
                bar.update(len(chunks[-1]))
    return torch.cat(chunks)


def save_model(model: nn.Module, directory: Path | str, card: dict[str, Any]) -> dict[str, Any]:
    """Write weights and card into `directory`; returns the card with `weights_sha256` added."""
    directory = Path(directory)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    blob = save_safetensors(tensors)
    card = {**card, "weights_sha256": hashlib.sha256(blob).hexdigest()}
    write_bytes(directory / WEIGHTS_FILE, blob)
    write_json(directory / CARD_FILE, card)
    return card


def read_card(directory: Path | str) -> tuple[dict[str, Any], bytes]:
    """The card of the model in `directory` and its weights' bytes, checked against the card's
    sha256 before anything parses them; ModelError naming the file otherwise."""
    directory = Path(directory)
    card_path, weights_path = directory / CARD_FILE, directory / WEIGHTS_FILE
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
        blob = weights_path.read_bytes()
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot read model in {directory}: {exc}") from None
    if not isinstance(card, dict):
        raise ModelError(f"{card_path} must hold a JSON object, got {type(card).__name__}")
    for key in ("architecture", "config", "classes", "preprocessing", "weights_sha256"):
        if key not in card:
            raise ModelError(f"{card_path} lacks {key!r}")
    # Hash before parsing: a file that is not the one the card describes is never deserialised.
    actual = hashlib.sha256(blob).hexdigest()
    if actual != card["weights_sha256"]:
        raise ModelError(
            f"{weights_path} has sha256 {actual[:16]}… but {card_path} says weights_sha256 "
            f"{str(card['weights_sha256'])[:16]}…: truncated or tampered weights, refusing to load"
        )
    return card, blob


def load_model(
    directory: Path | str, architectures: Architectures
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model from `card.json` and load hash-checked weights; eval mode, on CPU.
    `architectures`: the task type's, which must hold the card's architecture."""
    card, blob = read_card(directory)
    card_path, weights_path = Path(directory) / CARD_FILE, Path(directory) / WEIGHTS_FILE
    try:
        tensors = load_safetensors(blob)
    except SafetensorError as exc:
        raise ModelError(f"{weights_path} is not a safetensors file ({exc}); refusing") from None
    architecture, config = card["architecture"], card["config"]
    if architecture in architectures:
        config_cls = architectures[architecture][0]
        missing = sorted({f.name for f in dataclasses.fields(config_cls)} - set(config))
        if missing:
            raise ModelError(f"{card_path} config lacks field(s) {missing}")
    model = build_model(architectures, architecture, config)
    _check_shapes(model, tensors, config, card_path)
    model.load_state_dict(tensors, strict=True)
    return model.eval(), card


def _check_shapes(
    model: nn.Module, tensors: dict[str, torch.Tensor], config: dict[str, Any], card_path: Path
) -> None:
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ModelError(
            f"weights do not fit architecture in {card_path}: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    wrong = [k for k in expected if expected[k].shape != tensors[k].shape]
    if not wrong:
        return
    implied = model.config_from_weights(tensors) if hasattr(model, "config_from_weights") else {}
    fields = [
        f"config.{k}={config[k]} but the weights have {v}"
        for k, v in implied.items()
        if config.get(k) != v
    ]
    shapes = "; ".join(
        f"{k}: weights {list(tensors[k].shape)}, card {list(expected[k].shape)}" for k in wrong[:3]
    )
    raise ModelError(f"{card_path} does not match the weights: {', '.join(fields)} ({shapes})")
