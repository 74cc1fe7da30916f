"""The image classifiers, uint8 images (N, H, W) grayscale or (N, H, W, 3) RGB, preprocessed to
float32 (N, C, H, W) -> logits (N, n_classes): `cnn`, a small convolutional network, and `linear`,
logistic regression on the image averaged down to at most 16 pixels a side (the classical model of
evaluate's baselines, trained by the same loop and exported, promoted and served like the CNN).
Configs are frozen dataclasses saved as plain JSON in the model card.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 (the usual torch alias)
from torch import nn

from tasks.core.models import ModelError


@dataclass(frozen=True)
class CNNConfig:
    in_channels: int = 1  # 1: grayscale (clean.image.mode "L"), 3: RGB
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

    A 2x2 adaptive average pool before the classifier makes the weights independent of the image
    size, so one config works from 1x1 to large images; ceil-mode pooling keeps odd sizes whole.
    The pool is `avg_pool_2x2`, which computes exactly what `adaptive_avg_pool2d(x, 2)` does with
    a plain average pool, so the ONNX export works at every size (the exporter refuses an
    adaptive pool whose output size does not divide the input's, e.g. 7x7 after 28x28 images).
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
        x = avg_pool_2x2(x, self._pooled_size(x)).flatten(1)
        return self.head(self.dropout(x))

    def _pooled_size(self, x: torch.Tensor) -> tuple[int, int]:
        """(h, w) of the map reaching the pool. Traced for ONNX, the size is the config's (the
        export's example has it), as Python ints: a traced `x.shape` holds tensors."""
        if torch.jit.is_tracing():
            return _halved(self.config.height), _halved(self.config.width)
        return int(x.shape[-2]), int(x.shape[-1])

    @staticmethod
    def config_from_weights(tensors: dict[str, torch.Tensor]) -> dict[str, int]:
        """The config fields that the weight shapes determine (to name a card/weights mismatch)."""
        conv1, head = tensors["conv1.weight"].shape, tensors["head.weight"].shape
        return {"in_channels": conv1[1], "channels": conv1[0], "n_classes": head[0]}


def _halved(side: int) -> int:
    """A side after the CNN's two ceil-mode 2x2 max pools."""
    once = (side + 1) // 2
    return (once + 1) // 2


def avg_pool_2x2(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """`F.adaptive_avg_pool2d(x, 2)` for a map of `size` (h, w), as a fixed average pool.

    Adaptive pooling to 2 puts bin i over [floor(i*s/2), ceil((i+1)*s/2)): both bins are
    ceil(s/2) wide and start floor(s/2) apart. A side of 1 gives two copies of its one value.
    """
    (h, w) = size
    kernel, stride = (-(-h // 2), -(-w // 2)), (max(h // 2, 1), max(w // 2, 1))
    x = F.avg_pool2d(x, kernel, stride)
    return x.expand(-1, -1, 2, 2) if 1 in (h, w) else x


@dataclass(frozen=True)
class LinearConfig:
    in_channels: int = 1
    height: int = 8
    width: int = 8
    n_classes: int = 10
    max_side: int = 16  # the image is averaged down to at most this many pixels a side

    def __post_init__(self) -> None:
        for name in ("in_channels", "height", "width", "n_classes", "max_side"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ModelError(f"config.{name} must be a positive integer, got {value!r}")

    @property
    def factors(self) -> tuple[int, int]:
        """The average pool's kernel (= stride) per side: the smallest whole factor bringing
        the side to at most max_side (28 -> 2, 64 -> 4, 8 -> 1), as `tasks.core.baselines`."""
        return (math.ceil(self.height / self.max_side), math.ceil(self.width / self.max_side))

    @property
    def pooled(self) -> tuple[int, int]:
        """(h, w) after the pool: ceil(side / factor), a partial block at an odd edge."""
        (fh, fw) = self.factors
        return (math.ceil(self.height / fh), math.ceil(self.width / fw))


class LinearClassifier(nn.Module):
    """Multinomial logistic regression on downscaled pixels: a fixed average pool (kernel and
    stride the config's factors, ceil mode, so a partial block at an odd edge averages only its
    own pixels), flatten, one linear layer. Trained with cross-entropy, the weight decay of
    train params playing the L2 penalty; the weights start at zero, as logistic regression."""

    def __init__(self, config: LinearConfig) -> None:
        super().__init__()
        self.config = config
        (h, w) = config.pooled
        self.head = nn.Linear(config.in_channels * h * w, config.n_classes)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel = self.config.factors
        if kernel != (1, 1):
            x = F.avg_pool2d(x, kernel, kernel, ceil_mode=True)
        return self.head(x.flatten(1))

    @staticmethod
    def config_from_weights(tensors: dict[str, torch.Tensor]) -> dict[str, int]:
        """The config field that the weight shapes determine (to name a card/weights mismatch)."""
        return {"n_classes": tensors["head.weight"].shape[0]}


ARCHITECTURES: dict[str, tuple[type, type[nn.Module]]] = {
    "cnn": (CNNConfig, CNN),
    "linear": (LinearConfig, LinearClassifier),  # logistic regression on downscaled pixels
}


def preprocess(pixels: torch.Tensor, preprocessing: dict[str, Any]) -> torch.Tensor:
    """uint8 images (N, H, W) or (N, H, W, C) -> float32 (N, C, H, W):
    `(pixels * scale - mean) / std`, mean and std one number or one per channel."""
    mean, std = normalisation(preprocessing, pixels.device)
    return normalise(pixels, preprocessing["scale"], mean, std)


def normalisation(preprocessing: dict[str, Any], device: Any = None) -> tuple[Any, Any]:
    """The card's mean and std as float32 tensors (0-d, or one value per channel)."""
    return tuple(
        torch.as_tensor(preprocessing[k], dtype=torch.float32, device=device)
        for k in ("mean", "std")
    )


def normalise(
    pixels: torch.Tensor, scale: float, mean: torch.Tensor, std: torch.Tensor
) -> torch.Tensor:
    """`preprocess` with the tensors of `normalisation` (the ONNX graph holds them as buffers)."""
    x = pixels.to(torch.float32) * scale
    if x.ndim == 3:
        x = x.unsqueeze(-1)  # grayscale: one channel
    return ((x - mean) / std).permute(0, 3, 1, 2)
