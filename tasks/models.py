"""Networks and model files, used by `python -m tasks.train` and `python -m tasks.evaluate`.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 (the usual torch alias)
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from tasks.io import write_bytes, write_json
from tasks.kinds.models_minilm import MiniLMClassifier, MiniLMConfig
from tasks.models_seq import SEQ_ARCHITECTURES

WEIGHTS_FILE, CARD_FILE = "model.safetensors", "card.json"
EVAL_BATCH = 1024  # images per forward pass in predict_logits; bounds memory, not results


class ModelError(ValueError):
    """A model file, card or config is unusable; the message names the file or field."""


@dataclass(frozen=True)
class CNNConfig:
    in_channels: int = 1  # 1: grayscale images (clean decodes to mode "L")
    height: int = 8  # pixels; sklearn digits are 8x8
    width: int = 8
    n_classes: int = 10
    channels: int = 32  # width of the first conv; 32 reaches ~98% val accuracy on digits
    dropout: float = 0.2  # before the classifier only

    def __post_init__(self) -> None:
        for name in ("in_channels", "height", "width", "n_classes", "channels"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ModelError(f"config.{name} must be a positive integer, got {value!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ModelError(f"config.dropout must be in [0, 1), got {self.dropout!r}")


class CNN(nn.Module):
    """Two conv blocks (c, then 2c channels), each halving the image, then a linear classifier.

    An adaptive 2x2 average pool before the classifier makes the weights independent of the image
    size, so one config works from 1x1 to large images; ceil-mode pooling keeps odd sizes whole.
    """

    def __init__(self, config: CNNConfig) -> None:
        super().__init__()
        self.config = config
        c = config.channels
        self.conv1 = nn.Conv2d(config.in_channels, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.conv3 = nn.Conv2d(c, 2 * c, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(2 * c)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(2 * c * 2 * 2, config.n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2, ceil_mode=True)
        x = F.max_pool2d(F.relu(self.bn3(self.conv3(x))), 2, ceil_mode=True)
        x = F.adaptive_avg_pool2d(x, 2).flatten(1)
        return self.head(self.dropout(x))

    @staticmethod
    def config_from_weights(tensors: dict[str, torch.Tensor]) -> dict[str, int]:
        """The config fields that the weight shapes determine (to name a card/weights mismatch)."""
        conv1, head = tensors["conv1.weight"].shape, tensors["head.weight"].shape
        return {"in_channels": conv1[1], "channels": conv1[0], "n_classes": head[0]}


ARCHITECTURES: dict[str, tuple[type, type[nn.Module]]] = {
    "cnn": (CNNConfig, CNN),
    **SEQ_ARCHITECTURES,  # lstm, gru, transformer_encoder, char_transformer
    "minilm": (MiniLMConfig, MiniLMClassifier),  # pretrained, fine-tuned (tasks/kinds/)
}


def build_model(architecture: str, config: dict[str, Any]) -> nn.Module:
    """A freshly initialised network (uses torch's global RNG: seed it first)."""
    if architecture not in ARCHITECTURES:
        raise ModelError(f"unknown architecture {architecture!r}; known: {sorted(ARCHITECTURES)}")
    config_cls, model_cls = ARCHITECTURES[architecture]
    known = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ModelError(f"unknown config field(s) {unknown} for {architecture!r}: {sorted(known)}")
    return model_cls(config_cls(**config))


def preprocess(pixels: torch.Tensor, preprocessing: dict[str, float]) -> torch.Tensor:
    """uint8 images (N, H, W) -> float32 (N, 1, H, W): `(pixels * scale - mean) / std`."""
    x = pixels.to(torch.float32) * preprocessing["scale"]
    return ((x - preprocessing["mean"]) / preprocessing["std"]).unsqueeze(1)


def pick_device(name: str = "auto") -> torch.device:
    """auto: the first CUDA device when present (bf16 autocast there), else the CPU."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ModelError("device 'cuda' was asked for but no CUDA device is available")
    return torch.device("cuda" if name != "cpu" and torch.cuda.is_available() else "cpu")


@torch.inference_mode()
def predict_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """float32 logits of preprocessed x in eval mode, EVAL_BATCH images at a time."""
    model.eval()
    with torch.autocast(x.device.type, torch.bfloat16, enabled=x.device.type == "cuda"):
        chunks = [model(x[i : i + EVAL_BATCH]).float() for i in range(0, len(x), EVAL_BATCH)]
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


def load_model(directory: Path | str) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model from `card.json` and load hash-checked weights; eval mode, on CPU."""
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
    try:
        tensors = load_safetensors(blob)
    except SafetensorError as exc:
        raise ModelError(f"{weights_path} is not a safetensors file ({exc}); refusing") from None
    architecture, config = card["architecture"], card["config"]
    if architecture in ARCHITECTURES:
        config_cls = ARCHITECTURES[architecture][0]
        missing = sorted({f.name for f in dataclasses.fields(config_cls)} - set(config))
        if missing:
            raise ModelError(f"{card_path} config lacks field(s) {missing}")
    model = build_model(architecture, config)
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
