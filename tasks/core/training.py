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
from tasks.core.io import atomic_dir, atomic_path

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


# The training curves' PNG, beside DVCLive's logs: dvc.yaml declares it an output of train, so
# the flow shows it on train's task run in the Prefect UI (flows/stage_images.py).
CURVES_PNG = "training_curves.png"
# What each validation metric of a history row measures, and its unit, for the chart's axis.
METRIC_LABELS = {
    "val_acc": ("accuracy", "0-1"),
    "val_macro_f1": ("macro-F1", "0-1"),
    "val_ppl": ("perplexity", "per token"),
    "val_mae": ("MAE", "scaled series units"),
    "val_rmse": ("RMSE", "scaled series units"),
}


def _metrics_axis_label(names: list[str]) -> str:
    """e.g. "validation accuracy / macro-F1 (0-1)"; a metric Kiln does not know by its key."""
    labels = [METRIC_LABELS.get(n, (n, "")) for n in names]
    units = {unit for _, unit in labels}
    unit = f" ({units.pop()})" if len(units) == 1 and "" not in units else ""
    return "validation " + " / ".join(label for label, _ in labels) + unit


def write_live(result: Any, reports_dir: Path, monitor: str = "val_loss") -> None:
    """DVCLive logs of any task type: every metric of `result.history` per epoch, the best epoch's
    as the summary, and the curves as a PNG (CURVES_PNG). `result` needs `history`, `best_epoch`
    and `epochs_run` (a TrainResult); `monitor` is the metric that chose the best epoch
    (params `train.monitor`)."""
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
        plot_training_curves(result.history, result.best_epoch, monitor, tmp / CURVES_PNG)


def plot_training_curves(
    history: list[dict[str, float]], best_epoch: int, monitor: str, target: Path
) -> None:
    """The training curves as a PNG: train and validation loss per epoch on the left, the other
    validation metrics (the monitored one in bold) on the right, the best epoch marked."""
    if not history:
        raise ValueError("no epochs in the training history: nothing to draw")
    import matplotlib  # noqa: PLC0415 (a plotting library: only the train stage pays the import)

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt  # noqa: PLC0415
    from matplotlib.ticker import MaxNLocator  # noqa: PLC0415

    epochs = [row.get("epoch", i + 1) for i, row in enumerate(history)]
    losses = [k for k in ("train_loss", "val_loss") if k in history[0]]
    others = sorted(k for k in history[0] if k not in ("epoch", *losses))
    fig, axes = plt.subplots(
        1, 2 if others else 1, figsize=(11 if others else 6.5, 4), dpi=100, squeeze=False
    )
    panels = [(axes[0][0], losses, "loss (the training objective)")]
    if others:
        panels.append((axes[0][1], others, _metrics_axis_label(others)))
    for ax, names, ylabel in panels:
        for name in names:
            ax.plot(
                epochs,
                [row.get(name) for row in history],
                marker="o",
                ms=3,
                lw=2.2 if name == monitor else 1.2,
                label=f"{name} (monitored)" if name == monitor else name,
            )
        ax.axvline(best_epoch, color="gray", ls="--", lw=1, label=f"best epoch {best_epoch}")
        ax.set(xlabel="epoch", ylabel=ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(loc="best")
    best = history[best_epoch - 1].get(monitor)
    fig.suptitle(
        f"training: {len(history)} epochs, best epoch {best_epoch} by {monitor}"
        + (f" = {best:.4g}" if isinstance(best, int | float) else "")
    )
    fig.tight_layout()
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
