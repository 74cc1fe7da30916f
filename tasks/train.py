"""Train stage: `python -m tasks.train` (DVC stage `train`: data/clean -> models/, reports/train/).

Trains the CNN of `tasks.models` on the train split, validates each epoch, stops early on val
loss and keeps the best weights. Every epoch writes a checkpoint (safetensors + JSON, no pickle) to
`.kiln/checkpoints/<key>/`, key = hash of (train params, data version); a re-run after a kill
resumes from it and, on CPU, ends with the same weights as an uninterrupted run. models/ is
written (one directory swap) only after training succeeded.

Environment: KILN_TRAIN_EPOCH_SLEEP_S (tests only) sleeps that many seconds after each epoch's
checkpoint, so a test can kill the process mid-run. Needs only torch, numpy, pandas, pyarrow and
safetensors to import and train; tqdm and dvclive are used when installed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (the usual torch alias)
from torch import nn

from tasks.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from tasks.dataset import DataError, Split, TrainData, load_train_data
from tasks.io import atomic_dir
from tasks.models import (
    ModelError,
    build_model,
    pick_device,
    predict_logits,
    preprocess,
    save_model,
)

if TYPE_CHECKING:
    from tasks.params import TrainParams

logger = logging.getLogger("kiln.train")

CLEAN_DIR, MODELS_DIR = Path("data/clean"), Path("models")
REPORTS_DIR, CHECKPOINTS_DIR = Path("reports/train"), Path(".kiln/checkpoints")
CHECKPOINT_FORMAT = 1  # bump when the checkpoint layout or the training loop changes meaning
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class TrainError(RuntimeError):
    """Training diverged or cannot resume; the message names the epoch, step or file."""


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


def run_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """One pass over (x, y) in the generator's order; returns the per-step losses, on x's device.

    Losses stay on the device (no .item() per step: a GPU would sync every step); bf16 autocast
    on CUDA only.
    """
    model.train()
    perm = torch.randperm(len(x), generator=generator).to(x.device)
    n_steps = math.ceil(len(x) / batch_size)
    losses = torch.empty(n_steps, device=x.device)
    for step in range(n_steps):
        idx = perm[step * batch_size : (step + 1) * batch_size]
        with torch.autocast(x.device.type, torch.bfloat16, enabled=x.device.type == "cuda"):
            loss = F.cross_entropy(model(x[idx]), y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses[step] = loss.detach()
    return losses


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


def _progress(total: int, initial: int) -> Any:
    """A tqdm bar on a terminal; None (one log line per epoch instead) in logs or without tqdm."""
    if not sys.stderr.isatty():
        return None  # DVC and Prefect capture stderr: carriage-return bars would garble it
    try:
        from tqdm import tqdm  # noqa: PLC0415 (optional: the stage runs without it)
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, desc="train", unit="epoch", leave=False)


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
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(device.type == "cpu" or was_deterministic)
    try:
        return _train(cfg, data, Path(checkpoint_dir) / checkpoint_key(cfg, data), device, on_epoch)
    finally:
        torch.use_deterministic_algorithms(was_deterministic)


def _tensors(split: Split, prep: dict[str, float], device: torch.device) -> tuple[Any, Any]:
    pixels, labels = torch.from_numpy(split.pixels), torch.from_numpy(split.labels)
    return preprocess(pixels.to(device), prep), labels.to(device)  # uint8 travels: 4x fewer bytes


def _epoch(
    cfg: TrainParams, epoch: int, model: nn.Module, optimizer: Any, tensors: tuple[Any, ...]
) -> dict[str, float]:
    """Train one epoch (0-based index) and validate; returns the history row."""
    x, y, x_val, y_val = tensors
    torch.manual_seed(cfg.seed + epoch)  # dropout: every random draw of an epoch depends on it
    order = torch.Generator().manual_seed(cfg.seed + epoch)  # batch order
    losses = run_epoch(model, optimizer, x, y, batch_size=cfg.batch_size, generator=order)
    bad = (~torch.isfinite(losses)).nonzero()
    if len(bad):
        step = int(bad[0])
        raise TrainError(
            f"loss is {float(losses[step])} at epoch {epoch + 1} step {step + 1} "
            f"(global step {epoch * len(losses) + step + 1}); lower train.lr?"
        )
    sizes = torch.full_like(losses, cfg.batch_size)
    sizes[-1] = len(x) - (len(losses) - 1) * cfg.batch_size  # the last batch may be short
    logits = predict_logits(model, x_val)
    row = {
        "epoch": epoch + 1,
        "train_loss": float((losses * sizes).sum() / len(x)),
        "val_loss": float(F.cross_entropy(logits, y_val)),
        "val_acc": float((logits.argmax(1) == y_val).float().mean()),
    }
    if not math.isfinite(row["val_loss"]):
        raise TrainError(f"validation loss is {row['val_loss']} after epoch {epoch + 1}")
    return row


def _train(
    cfg: TrainParams,
    data: TrainData,
    path: Path,
    device: torch.device,
    on_epoch: Callable[[dict[str, float]], None] | None,
) -> TrainResult:
    prep = _preprocessing(data.train.pixels)
    tensors = (*_tensors(data.train, prep, device), *_tensors(data.val, prep, device))
    height, width = data.train.pixels.shape[1:]
    config = {
        "in_channels": 1,
        "height": int(height),
        "width": int(width),
        "n_classes": len(data.classes),
        "channels": cfg.channels,
        "dropout": cfg.dropout,
    }
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    try:
        state, best = load_checkpoint(path, model, optimizer)
    except CheckpointError as exc:
        raise TrainError(str(exc)) from None
    start = f"resuming after epoch {state['epochs_run']}" if best is not None else "fresh start"
    logger.info(
        f"{cfg.model} on {device}: {len(data.train.labels)} train, {len(data.val.labels)} val, "
        f"{width}x{height} images, {len(data.classes)} classes; {start}"
    )
    bar, started = _progress(cfg.epochs, state["epochs_run"]), time.perf_counter()
    while state["epochs_run"] < cfg.epochs and state["bad_epochs"] < cfg.patience:
        row = _epoch(cfg, state["epochs_run"], model, optimizer, tensors)
        if best is None or row["val_loss"] < state["best_val_loss"]:
            best = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            state.update(
                best_epoch=row["epoch"],
                best_val_loss=row["val_loss"],
                best_val_acc=row["val_acc"],
                bad_epochs=0,
            )
        else:
            state["bad_epochs"] += 1
        state["epochs_run"] = row["epoch"]
        state["history"].append(row)
        save_checkpoint(path, model, optimizer, best, state)
        text = ", ".join(f"{k.replace('_', ' ')} {v:.4f}" for k, v in row.items() if k != "epoch")
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(text)
        else:
            logger.info(f"epoch {row['epoch']}/{cfg.epochs}: {text}")
        if on_epoch is not None:
            on_epoch(row)
    if bar is not None:
        bar.close()
    stop = "early stop" if state["bad_epochs"] >= cfg.patience else "train.epochs reached"
    logger.info(
        f"{stop} after epoch {state['epochs_run']} "
        f"({time.perf_counter() - started:.1f} s this run); best epoch "
        f"{state['best_epoch']}: val loss {state['best_val_loss']:.4f}, "
        f"val acc {state['best_val_acc']:.4f}"
    )
    model.load_state_dict(best)
    fields = ("epochs_run", "best_epoch", "best_val_loss", "best_val_acc", "history")
    return TrainResult(model.cpu().eval(), config, prep, path, **{k: state[k] for k in fields})


def _write_live(result: TrainResult, reports_dir: Path) -> None:
    try:
        from dvclive import Live  # noqa: PLC0415 (optional: the stage runs without it)
    except ImportError:
        logger.warning("dvclive is not installed: %s not written", reports_dir)
        return
    with atomic_dir(reports_dir) as tmp:  # DVCLive writes in place; the swap makes it atomic
        # dvcyaml=None, save_dvc_exp=False: never edit dvc.yaml or create experiments.
        live = Live(dir=str(tmp), dvcyaml=None, save_dvc_exp=False)
        for row in result.history:
            for name in ("train_loss", "val_loss", "val_acc"):
                live.log_metric(name.replace("_", "/", 1), row[name])
            live.next_step()
        live.summary.update(
            best_epoch=result.best_epoch,
            best_val_loss=result.best_val_loss,
            best_val_acc=result.best_val_acc,
            epochs_run=result.epochs_run,
        )
        live.end()


def main() -> int:
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    from tasks.params import ParamsError, load_params  # noqa: PLC0415 (pydantic only for the CLI)

    sleep_s = float(os.environ.get("KILN_TRAIN_EPOCH_SLEEP_S", "0"))
    try:
        params = load_params()
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
