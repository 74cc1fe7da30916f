"""The image classifier: `cnn`, uint8 grayscale images preprocessed to float32 (N, 1, H, W) ->
logits (N, n_classes). Its config is a frozen dataclass saved as plain JSON in the model card.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812 (the usual torch alias)
from torch import nn

from tasks.core.models import ModelError


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


ARCHITECTURES: dict[str, tuple[type, type[nn.Module]]] = {"cnn": (CNNConfig, CNN)}


def preprocess(pixels: torch.Tensor, preprocessing: dict[str, float]) -> torch.Tensor:
    """uint8 images (N, H, W) -> float32 (N, 1, H, W): `(pixels * scale - mean) / std`."""
    x = pixels.to(torch.float32) * preprocessing["scale"]
    return ((x - preprocessing["mean"]) / preprocessing["std"]).unsqueeze(1)
