"""What every task type's train stage shares: the engine's settings from params, the checkpoint
key, the result of a run and its DVCLive logs (reports/train/)."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from tasks.core.engine import EngineConfig
from tasks.core.io import atomic_dir

if TYPE_CHECKING:
    from tasks.core.params import TrainParams

logger = logging.getLogger("kiln.train")

MAXIMISED = ("val_acc", "val_macro_f1")  # higher is better; the others are losses/errors
CHECKPOINT_FORMAT = 1  # bump when the checkpoint layout or the training loop changes meaning


@dataclass(frozen=True)
class TrainResult:
    """A finished run: the best model and its history (what `write_live` logs)."""

    model: nn.Module  # best weights, on CPU, eval mode
    config: dict[str, Any]
    preprocessing: dict[str, float]
    checkpoint_path: Path
    epochs_run: int
    best_epoch: int  # 1-based
    best_val_loss: float
    best_val_acc: float
    history: list[dict[str, float]]  # one row per epoch: epoch, train_loss, val_loss, val_acc


def checkpoint_key(
    cfg: TrainParams, data_version: str, classes: list[str] | tuple[str, ...]
) -> str:
    """The checkpoint directory's name: a hash of the train params and the data they train on,
    so a resumed run never continues another configuration's weights."""
    spec = {
        "format": CHECKPOINT_FORMAT,
        "train": cfg.checkpoint_dump(),
        "data_version": data_version,
        "classes": list(classes),
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def engine_config(cfg: TrainParams, device: torch.device) -> EngineConfig:
    """The engine's settings from params `train` (every task type trains through this)."""
    return EngineConfig(
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        patience=cfg.patience,
        seed=cfg.seed,
        device=device.type,
        optimizer=cfg.optimizer,
        grad_clip=cfg.grad_clip,
        schedule=cfg.schedule,
        warmup_steps=cfg.warmup_steps,
        monitor=cfg.monitor,
        mode="max" if cfg.monitor in MAXIMISED else "min",
        compile=cfg.compile,
    )


def write_live(result: Any, reports_dir: Path) -> None:
    """DVCLive logs of any task type: every metric of `result.history` per epoch, the best epoch's
    as the summary. `result` needs `history`, `best_epoch` and `epochs_run` (a TrainResult)."""
    try:
        from dvclive import Live  # noqa: PLC0415 (optional: the stage runs without it)
    except ImportError:
        logger.warning("dvclive is not installed: %s not written", reports_dir)
        return
    with atomic_dir(reports_dir) as tmp:  # DVCLive writes in place; the swap makes it atomic
        # dvcyaml=None, save_dvc_exp=False: never edit dvc.yaml or create experiments.
        live = Live(dir=str(tmp), dvcyaml=None, save_dvc_exp=False)
        for row in result.history:
            for name, value in sorted(row.items()):  # sorted: a resumed history is the same
                if name != "epoch":
                    live.log_metric(name.replace("_", "/", 1), value)  # val_loss -> val/loss
            live.next_step()
        best = result.history[result.best_epoch - 1]
        live.summary.update(
            best_epoch=result.best_epoch,
            epochs_run=result.epochs_run,
            **{f"best_{k}": v for k, v in sorted(best.items()) if k not in ("epoch", "train_loss")},
        )
        live.end()
