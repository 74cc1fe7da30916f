"""Image classification's train stage: data/clean -> models/, reports/train/.

Trains `train.model` of `models.py` (the CNN, or `linear`: logistic regression on downscaled
pixels) on the train split with the one training loop of
`tasks.core.engine`: validates each epoch, stops early on val loss and keeps the best weights. Every
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

import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (the usual torch alias)

from tasks.core.dataset import DataError
from tasks.core.distributed import is_rank0
from tasks.core.engine import TaskData, TrainError, fit, pick_device
from tasks.core.io import atomic_dir
from tasks.core.models import ModelError, build_model, save_model
from tasks.core.objectives import classification_metrics
from tasks.core.paths import CHECKPOINTS_DIR, CLEAN_DIR, MODELS_DIR, TRAIN_REPORTS
from tasks.core.training import TrainResult, checkpoint_key, engine_config, write_live
from tasks.types.image_classification.data import Split, TrainData, load_train_data
from tasks.types.image_classification.models import ARCHITECTURES, LinearConfig, preprocess

if TYPE_CHECKING:
    from tasks.core.params import TrainParams
    from tasks.types.image_classification.params import ImageParams

logger = logging.getLogger("kiln.train")


def _preprocessing(pixels: np.ndarray, image: dict[str, Any]) -> dict[str, Any]:
    """The card's `preprocessing`: how clean fitted the images (`image`, data/clean's
    preprocessing.json) and the normalisation `models.preprocess` applies, one mean and std per
    channel: over the train split (normalise `dataset`) or 0 and 1 (`unit`)."""
    channels = 1 if pixels.ndim == 3 else pixels.shape[3]
    if image["normalise"] == "unit":
        return {**image, "scale": 1.0 / 255.0, "mean": [0.0] * channels, "std": [1.0] * channels}
    # [0, 1]; mean/std of the train split only, per channel
    scaled = pixels.reshape(*pixels.shape[:3], channels).astype(np.float64) / 255.0
    mean, std = scaled.mean(axis=(0, 1, 2)), scaled.std(axis=(0, 1, 2))
    if std.max() < 1e-6:
        raise DataError("train images are all the same value: nothing to learn, cannot normalise")
    std = np.where(std < 1e-6, 1.0, std)  # a constant channel (no blue at all): only centred
    return {**image, "scale": 1.0 / 255.0, "mean": mean.tolist(), "std": std.tolist()}


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
    prep = _preprocessing(data.train.pixels, data.preprocessing)
    tensors = TaskData(*_tensors(data.train, prep, device), *_tensors(data.val, prep, device))
    height, width = data.train.pixels.shape[1:3]
    config = model_config(cfg, data.train.pixels, len(data.classes))
    logger.info(
        f"{cfg.model}: {width}x{height} {prep['mode']} images ({prep['fit']}), "
        f"{len(data.classes)} classes, data version {data.data_version[:12]}"
    )
    torch.manual_seed(cfg.seed)
    model = build_model(ARCHITECTURES, cfg.model, config)
    engine_cfg = engine_config(cfg, device)
    path = Path(checkpoint_dir) / checkpoint_key(cfg, data.data_version, data.classes)
    run = fit(
        model,
        tensors,
        F.cross_entropy,
        classification_metrics,
        cfg=engine_cfg,
        checkpoint_path=path,
        on_epoch=on_epoch,
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


def model_config(cfg: TrainParams, pixels: np.ndarray, n_classes: int) -> dict[str, Any]:
    """The card's config of train.model for train images `pixels` (N, H, W[, C])."""
    height, width = pixels.shape[1:3]
    shape = {
        "in_channels": 1 if pixels.ndim == 3 else int(pixels.shape[3]),
        "height": int(height),
        "width": int(width),
        "n_classes": n_classes,
    }
    if cfg.model == "linear":  # logistic regression: no width, no dropout
        return {**shape, "max_side": LinearConfig.max_side}
    return {**shape, "channels": cfg.channels, "dropout": cfg.dropout}


def _tensors(split: Split, prep: dict[str, Any], device: torch.device) -> tuple[Any, Any]:
    pixels, labels = torch.from_numpy(split.pixels), torch.from_numpy(split.labels)
    return preprocess(pixels.to(device), prep), labels.to(device)  # uint8 travels: 4x fewer bytes


def train_stage(params: ImageParams) -> int:
    """data/clean -> models/ and reports/train/; the exit code."""
    sleep_s = float(os.environ.get("KILN_TRAIN_EPOCH_SLEEP_S", "0"))
    try:
        data = load_train_data(CLEAN_DIR, params.labels.classes)
        result = train_model(
            params.train,
            data,
            CHECKPOINTS_DIR,
            on_epoch=(lambda _row: time.sleep(sleep_s)) if sleep_s else None,
        )
    except (DataError, TrainError, ModelError) as exc:
        logger.error("train failed: %s", exc)
        return 1
    if not is_rank0():  # under torchrun: rank 0 writes models/ and reports/, the others nothing
        return 0
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
    write_live(result, TRAIN_REPORTS, params.train.monitor)
    shutil.rmtree(result.checkpoint_path, ignore_errors=True)  # done: the next run starts fresh
    logger.info(
        "wrote %s (weights sha256 %s…) and %s",
        MODELS_DIR,
        card["weights_sha256"][:12],
        TRAIN_REPORTS,
    )
    return 0
