"""Losses and validation metrics for the training engine (`tasks/core/engine.py`).

The only task-specific part of a training run is a loss the engine minimises and the validation
metrics it logs and may early-stop on (each dict has `val_loss`); each task type picks its pair
from these building blocks (classification: `F.cross_entropy` + `classification_metrics`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F  # noqa: N812 (the usual torch alias)

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
IGNORE_ID = -100  # text generation's targets not scored (tasks.types.text_generation.sampling)
MetricFn = Callable[[torch.Tensor, torch.Tensor], dict[str, float]]


def macro_f1(pred: torch.Tensor, y: torch.Tensor) -> float:
    """scikit-learn's `f1_score(y, pred, average="macro", zero_division=0)` (what evaluate reports
    on the test split), in torch: training needs no scikit-learn (a test trains without it). The
    mean over the classes present in y or pred of 2 TP / (2 TP + FP + FN)."""
    labels = torch.unique(torch.cat([y, pred]))
    hit, truth = pred[:, None] == labels, y[:, None] == labels  # (N, classes)
    tp = (hit & truth).sum(0)
    wrong = (hit ^ truth).sum(0)  # FP + FN
    return float((2 * tp / (2 * tp + wrong)).mean())  # > 0: each label is in y or pred


def classification_metrics(logits: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """logits (N, C), class indices y (N,): cross-entropy, accuracy and macro-F1 (the validation
    twin of the headline metric that `kiln sweep` chooses on)."""
    pred = logits.argmax(1)
    return {
        "val_loss": float(F.cross_entropy(logits, y)),
        "val_acc": float((pred == y).float().mean()),
        "val_macro_f1": macro_f1(pred, y),
    }


def regression_metrics(pred: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Forecasts vs targets, same shape (N, horizon): MSE (the loss), MAE and RMSE."""
    mse = F.mse_loss(pred.float(), y.float())
    return {
        "val_loss": float(mse),
        "val_mae": float((pred.float() - y.float()).abs().mean()),
        "val_rmse": float(mse.sqrt()),
    }


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy: logits (N, T, V), targets (N, T) token ids; the mean over the
    targets other than IGNORE_ID (-100: an id an earlier validation window already scored)."""
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_ID)


def lm_metrics(logits: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """Validation loss in nats per token and its perplexity."""
    loss = float(lm_loss(logits.float(), targets))
    return {"val_loss": loss, "val_ppl": math.exp(min(loss, 50.0))}  # cap: exp(50) ~ 5e21
