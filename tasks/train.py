"""Train stage: `python -m tasks.train` (DVC stage `train`: data/clean -> models/, reports/train/).

Trains the CNN of `tasks.models` on the train split with the one training loop of
`tasks.engine`: validates each epoch, stops early on val loss and keeps the best weights. Every
epoch writes a checkpoint (safetensors + JSON, no pickle) to `.kiln/checkpoints/<key>/`, key = hash
of (train params, data version); a re-run after a kill resumes from it and, on CPU, ends with the
same weights as an uninterrupted run. models/ is written (one directory swap) only after training
succeeded.

Environment: KILN_TRAIN_EPOCH_SLEEP_S (tests only) sleeps that many seconds after each epoch
(while its checkpoint is written in the background), so a test can kill the process mid-run.
Needs only torch, numpy, pandas, pyarrow and safetensors to import and train; tqdm and dvclive are
used when installed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from tasks.dataset import DataError, Split, TrainData, load_train_data
from tasks.engine import EngineConfig, TaskData, TrainError, fit, pick_device
from tasks.io import atomic_dir
from tasks.models import ModelError, build_model, preprocess, save_model
from tasks.objectives import OBJECTIVES

if TYPE_CHECKING:
    from tasks.params import TrainParams

logger = logging.getLogger("kiln.train")

CLEAN_DIR, MODELS_DIR = Path("data/clean"), Path("models")
REPORTS_DIR, CHECKPOINTS_DIR = Path("reports/train"), Path(".kiln/checkpoints")
MAXIMISED = ("val_acc",)  # validation metrics where higher is better; the others are losses/errors
CHECKPOINT_FORMAT = 1  # bump when the checkpoint layout or the training loop changes meaning
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@dataclass(frozen=True)
class TrainResult:
    model: nn.Module  # best weights, on CPU, eval mode
    config: dict[str, Any]
    preprocessing: dict[str, float]
    checkpoint_path: Path
    epochs_run: int
    best_epoch: int  # 1-based
    best_val_loss: float
    best_val_acc: float
    history: list[dict[str, float]]  # one row per epoch: epoch, train_loss, val_loss, val_acc


def checkpoint_key(cfg: TrainParams, data: TrainData) -> str:
    spec = {
        "format": CHECKPOINT_FORMAT,
        "train": cfg.model_dump(mode="json"),
        "data_version": data.data_version,
        "classes": list(data.classes),
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def _preprocessing(pixels: np.ndarray) -> dict[str, float]:
    scaled = pixels.astype(np.float64) / 255.0  # [0, 1]; mean/std of the train split only
    std = float(scaled.std())
    if std < 1e-6:
        raise DataError("train images are all the same value: nothing to learn, cannot normalise")
    return {"scale": 1.0 / 255.0, "mean": float(scaled.mean()), "std": std}


def train_model(
    cfg: TrainParams,
    data: TrainData,
    checkpoint_dir: Path | str,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train, or resume from `checkpoint_dir/<key>`; returns the best model.

    Writes nothing but checkpoints. Deterministic on CPU: same params and data, same weights.
    """
    device = pick_device(cfg.device)
    prep = _preprocessing(data.train.pixels)
    tensors = TaskData(*_tensors(data.train, prep, device), *_tensors(data.val, prep, device))
    height, width = data.train.pixels.shape[1:]
    config = {
        "in_channels": 1,
        "height": int(height),
        "width": int(width),
        "n_classes": len(data.classes),
        "channels": cfg.channels,
        "dropout": cfg.dropout,
    }
    logger.info(
        f"{cfg.model}: {width}x{height} images, {len(data.classes)} classes, data version "
        f"{data.data_version[:12]}"
    )
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, config)
    engine_cfg = engine_config(cfg, device)
    path = Path(checkpoint_dir) / checkpoint_key(cfg, data)
    loss_fn, metric_fn = OBJECTIVES["image_classification"]
    run = fit(
        model, tensors, loss_fn, metric_fn, cfg=engine_cfg, checkpoint_path=path, on_epoch=on_epoch
    )
    return TrainResult(
        run.model,
        config,
        prep,
        path,
        epochs_run=run.epochs_run,
        best_epoch=run.best_epoch,
        best_val_loss=run.best["val_loss"],
        best_val_acc=run.best["val_acc"],
        history=run.history,
    )


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


def _tensors(split: Split, prep: dict[str, float], device: torch.device) -> tuple[Any, Any]:
    pixels, labels = torch.from_numpy(split.pixels), torch.from_numpy(split.labels)
    return preprocess(pixels.to(device), prep), labels.to(device)  # uint8 travels: 4x fewer bytes


def _write_live(result: Any, reports_dir: Path) -> None:
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


def main() -> int:
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    from tasks.params import ParamsError, load_params  # noqa: PLC0415 (pydantic only for the CLI)
    from tasks.task_types import run_stage  # noqa: PLC0415

    sleep_s = float(os.environ.get("KILN_TRAIN_EPOCH_SLEEP_S", "0"))
    try:
        params = load_params()
    except ParamsError as exc:
        logger.error("train failed: %s", exc)
        return 1
    if (code := run_stage(params, "train")) is not None:  # other task types
        return code
    try:
        data = load_train_data(CLEAN_DIR, params.labels.classes)
        result = train_model(
            params.train,
            data,
            CHECKPOINTS_DIR,
            on_epoch=(lambda _row: time.sleep(sleep_s)) if sleep_s else None,
        )
    except (ParamsError, DataError, TrainError, ModelError) as exc:
        logger.error("train failed: %s", exc)
        return 1
    card = {
        "architecture": params.train.model,
        "config": result.config,
        "classes": list(data.classes),
        "preprocessing": result.preprocessing,
        "data_version": data.data_version,
        "train_params": params.train.model_dump(mode="json"),
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "best_val_loss": result.best_val_loss,
    }
    with atomic_dir(MODELS_DIR) as tmp:
        card = save_model(result.model, tmp, card)
    _write_live(result, REPORTS_DIR)
    shutil.rmtree(result.checkpoint_path, ignore_errors=True)  # done: the next run starts fresh
    logger.info(
        "wrote %s (weights sha256 %s…) and %s", MODELS_DIR, card["weights_sha256"][:12], REPORTS_DIR
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
