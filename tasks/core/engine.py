"""The one training loop, used by `python -m tasks.train` for every task type (and by benchmarks).

`fit(model, data, loss_fn, metric_fn, cfg, checkpoint_path)` trains any network on in-memory
tensors (`TaskData`, moved to the device once; a step is one index gather, no per-sample Python):
device choice (CUDA with bf16 autocast, else MPS where present, else CPU), AdamW or SGD, optional
gradient clipping, optional linear warmup + cosine decay, early stopping on a declared validation
metric, a checkpoint every epoch (`tasks.core.checkpoint`: safetensors + JSON, written on a
background
thread while the next epoch trains) with resume, fixed seeds and deterministic algorithms on CPU,
a per-epoch callback (DVCLive, test hooks), and per-step progress (`tasks.core.progress`: a tqdm
bar on a terminal, else a log line with count, rate and ETA at least every 10 s, one per epoch too).
Under torchrun (a process group joined, tasks.core.distributed) the same loop is data-parallel:
DDP, each rank its share of every global batch, rank 0's validation row and checkpoints.
The task lives only in `loss_fn(outputs, y) -> scalar` and `metric_fn(val_outputs, y_val) ->
{name: float}`; tasks/core/objectives.py has the ones for classification, regression and language
models.
Needs only torch and safetensors; tqdm is used when installed.
"""

from __future__ import annotations

import copy
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F  # noqa: N812 (the usual torch alias)
from torch import nn

from tasks.core import distributed
from tasks.core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from tasks.core.models import predict_logits
from tasks.core.objectives import LossFn, MetricFn
from tasks.core.progress import Progress
from tasks.core.sweep_trial import StopTraining, with_sweep_trial

logger = logging.getLogger("kiln.train")  # the engine runs inside the train stage


class TrainError(RuntimeError):
    """Training diverged or cannot resume; the message names the epoch, step or file."""


@dataclass(frozen=True)
class TaskData:
    x_train: torch.Tensor  # first dimension = samples; any dtype the model takes
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor

    def to(self, device: torch.device) -> TaskData:
        return TaskData(*(t.to(device) for t in vars(self).values()))  # no copy if already there


@dataclass(frozen=True)
class EngineConfig:
    epochs: int
    batch_size: int
    lr: float  # peak learning rate (after warmup)
    weight_decay: float = 0.0
    patience: int = 5  # epochs without improvement of `monitor` before stopping
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | mps
    optimizer: Literal["adamw", "sgd"] = "adamw"
    momentum: float = 0.9  # SGD only; the common default (torchvision's ResNet recipes)
    grad_clip: float = 0.0  # max global L2 norm of the gradients; 0 = off
    schedule: Literal["constant", "cosine"] = "constant"
    warmup_steps: int = 0  # linear warmup from 0 (cosine schedule only), optimizer steps
    monitor: str = "val_loss"  # a key of metric_fn's result, for early stopping and "best"
    mode: Literal["min", "max"] = "min"
    compile: bool = False  # torch.compile the training forward pass (worth it on a GPU)

    def __post_init__(self) -> None:  # params.py bounds these for the stage; this is for callers
        if min(self.epochs, self.batch_size, self.patience) < 1 or not self.lr > 0:
            raise TrainError(f"epochs, batch_size, patience must be >= 1 and lr > 0: {self}")
        if self.optimizer not in ("adamw", "sgd") or self.schedule not in ("constant", "cosine"):
            raise TrainError(f"unknown optimizer {self.optimizer!r} or schedule {self.schedule!r}")
        if self.mode not in ("min", "max") or self.device not in ("auto", "cpu", "cuda", "mps"):
            raise TrainError(f"unknown mode {self.mode!r} or device {self.device!r}")


@dataclass(frozen=True)
class EngineResult:
    model: nn.Module  # best weights, on CPU, eval mode
    epochs_run: int
    best_epoch: int  # 1-based
    best: dict[str, float]  # the history row of the best epoch
    history: list[dict[str, float]]  # one row per epoch: epoch, train_loss, then metric_fn's keys
    stopped_early: bool


def pick_device(name: str = "auto") -> torch.device:
    """auto: CUDA if present (bf16 autocast there), else Apple MPS if present, else the CPU."""
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if (name == "cuda" and not cuda) or (name == "mps" and not mps):
        raise TrainError(f"device {name!r} was asked for but is not available")
    if name == "auto":
        name = "cuda" if cuda else "mps" if mps else "cpu"
    return torch.device(name)


def lr_factor(cfg: EngineConfig, step: int, total_steps: int) -> float:
    """cfg.lr's multiplier at optimizer step `step` (0-based); a pure function: resume is exact."""
    if cfg.schedule == "constant":
        return 1.0
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def run_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int,
    generator: torch.Generator | None = None,
    order: torch.Tensor | None = None,
    loss_fn: LossFn = F.cross_entropy,
    grad_clip: float = 0.0,
    lr_at: Callable[[int], float] | None = None,
    progress: Progress | None = None,
) -> torch.Tensor:
    """One pass over (x, y) in the generator's random order, or over the indices `order` (this
    rank's share of the epoch); returns the per-step losses, on x's device.

    Losses stay on the device (no .item() per step: a GPU would sync every step); bf16 autocast
    on CUDA only. `lr_at(step)` (step within this epoch) sets the learning rate before each step;
    `progress` counts each step (on a GPU, steps queued: it never waits for the device).
    """
    model.train()
    if order is None:
        order = torch.randperm(len(x), generator=generator)
    perm = order.to(x.device)
    n_steps = math.ceil(len(perm) / batch_size)
    losses = torch.empty(n_steps, device=x.device)
    params = [p for p in model.parameters() if p.requires_grad] if grad_clip else []
    for step in range(n_steps):
        idx = perm[step * batch_size : (step + 1) * batch_size]
        if lr_at is not None:
            lr = lr_at(step)
            for group in optimizer.param_groups:
                group["lr"] = lr
        with torch.autocast(x.device.type, torch.bfloat16, enabled=x.device.type == "cuda"):
            loss = loss_fn(model(x[idx]), y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip:
            nn.utils.clip_grad_norm_(params, grad_clip, foreach=True)
        optimizer.step()
        losses[step] = loss.detach()
        if progress is not None:
            progress.update()
    return losses


def _optimizer(model: nn.Module, cfg: EngineConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


class _Snapshot:
    """Stands in for a model or optimizer in save_checkpoint: a frozen copy of its state_dict."""

    def __init__(self, state: dict[Any, Any]) -> None:
        self._state = state

    def state_dict(self) -> dict[Any, Any]:
        return self._state


def _copy(tensors: dict[Any, Any]) -> dict[Any, Any]:
    return {k: v.detach().to("cpu", copy=True) for k, v in tensors.items()}


class _Writer:
    """Writes each epoch's checkpoint on a background thread, overlapping the next epoch.

    The file I/O (4 fsyncs, 2 renames) was 13% of a 5-epoch LSTM fit on 2 shared CPU cores
    (491 vs 427 ms, median of 8 alternating runs). The state is copied before the thread starts,
    so what is written is exactly the epoch's end; an error is raised at the next save or at the
    end, and a newer checkpoint is never started before the older one is complete.
    """

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: Exception | None = None

    def save(self, path: Path, model: nn.Module, optimizer: Any, best: Any, state: Any) -> None:
        self.wait()
        opt = optimizer.state_dict()
        opt = {**opt, "state": {i: _copy(s) for i, s in opt["state"].items()}}
        args = (path, _Snapshot(_copy(model.state_dict())), _Snapshot(opt), best)
        self._thread = threading.Thread(target=self._run, args=(*args, copy.deepcopy(state)))
        self._thread.start()

    def _run(self, *args: Any) -> None:
        try:
            save_checkpoint(*args)
        except Exception as exc:  # any: re-raised in the training thread by wait()
            self._error = exc

    def wait(self, *, raise_error: bool = True) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        error, self._error = self._error, None
        if error is not None and raise_error:
            raise error


def _text(row: dict[str, float]) -> str:
    return ", ".join(f"{k.replace('_', ' ')} {v:.4f}" for k, v in row.items() if k != "epoch")


def fit(
    model: nn.Module,
    data: TaskData,
    loss_fn: LossFn,
    metric_fn: MetricFn,
    *,
    cfg: EngineConfig,
    checkpoint_path: Path | str,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> EngineResult:
    """Train `model` (freshly built: seed before building it), or resume from checkpoint_path.

    `on_epoch(row)` is called after each epoch's checkpoint; it may raise StopTraining. Inside a
    `kiln sweep` trial the trial's reporter (tasks.core.sweep_trial) is called too.

    Writes nothing but checkpoints. Deterministic on CPU: same model init, data and cfg, same
    weights, also across a kill and resume.
    """
    device = pick_device(cfg.device)
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    was_filling = torch.utils.deterministic.fill_uninitialized_memory
    torch.use_deterministic_algorithms(device.type == "cpu" or was_deterministic)
    # Deterministic mode also NaN-fills every torch.empty, a debugging aid that cost 10% of an
    # LSTM epoch (median of 15 rotated runs, 70.7 vs 77.4 ms on 2 CPU cores); kernels that
    # read memory they did not write would be caught by the determinism tests instead.
    torch.utils.deterministic.fill_uninitialized_memory = False
    on_epoch = with_sweep_trial(on_epoch)  # unchanged outside a sweep trial
    try:
        fns = (loss_fn, metric_fn)
        return _fit(model.to(device), data.to(device), fns, cfg, Path(checkpoint_path), on_epoch)
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
        torch.utils.deterministic.fill_uninitialized_memory = was_filling


def _epoch(
    cfg: EngineConfig,
    epoch: int,
    model: nn.Module,
    *,
    optimizer: Any,
    data: TaskData,
    fns: tuple,
    progress: Progress | None = None,
    evaluator: nn.Module | None = None,
) -> dict[str, float]:
    """Train one epoch (0-based index) and validate; returns the history row.

    `model` may be the torch.compile or DDP wrapper of the network (it shares the parameters);
    `evaluator` validates in its place when given."""
    loss_fn, metric_fn = fns
    rank, world = distributed.world()
    n = len(data.x_train)
    n_steps = math.ceil(n / cfg.batch_size)  # global steps; every rank takes as many
    # dropout: every random draw of an epoch depends on it; (seed + epoch) alone on one process,
    # another stream on each rank
    torch.manual_seed((cfg.seed + epoch) * world + rank)
    order = distributed.epoch_order(n, cfg.seed + epoch)  # batch order; this rank's share

    def lr_at(step: int) -> float:  # step within this epoch -> lr
        return cfg.lr * lr_factor(cfg, epoch * n_steps + step, cfg.epochs * n_steps)

    scheduled = lr_at if cfg.schedule != "constant" else None
    x, y = data.x_train, data.y_train
    kw = {"grad_clip": cfg.grad_clip, "lr_at": scheduled, "progress": progress}
    batch = cfg.batch_size // world  # per rank; params make the global batch divide evenly
    losses = run_epoch(model, optimizer, x, y, batch_size=batch, order=order, loss_fn=loss_fn, **kw)
    bad = (~torch.isfinite(losses)).nonzero()
    if len(bad):
        step = int(bad[0])
        raise TrainError(
            f"loss is {float(losses[step])} at epoch {epoch + 1} step {step + 1} "
            f"(global step {epoch * n_steps + step + 1}); lower train.lr?"
        )
    sizes = torch.full_like(losses, batch)
    sizes[-1] = len(order) - (n_steps - 1) * batch  # the last batch may be short
    # the mean over every rank's samples (with the sampler's few repeats on several ranks)
    sums = distributed.all_sum(torch.stack([(losses * sizes).sum(), sizes.sum()]))
    # validation on every rank, through the unwrapped network when DDP wraps it (its forward
    # would broadcast buffers); rank 0's row decides everywhere (same early stop, same best)
    val_model = model if evaluator is None else evaluator
    metrics = metric_fn(predict_logits(val_model, data.x_val), data.y_val)
    row = {"epoch": epoch + 1, "train_loss": float(sums[0] / sums[1]), **metrics}
    row = distributed.from_rank0(row)
    if cfg.monitor not in row:
        raise TrainError(f"monitor {cfg.monitor!r} is not among the metrics {sorted(row)}")
    if not math.isfinite(row[cfg.monitor]):
        raise TrainError(f"validation {cfg.monitor} is {row[cfg.monitor]} after epoch {epoch + 1}")
    return row


def _call(on_epoch: Callable[[dict[str, float]], None] | None, row: dict[str, float]) -> Any:
    """on_epoch(row); the reason of its StopTraining, rank 0's on every rank (all stop, or none),
    else None."""
    reason = None
    if on_epoch is not None:
        try:
            on_epoch(row)
        except StopTraining as stop:
            reason = str(stop)
    return distributed.from_rank0(reason)


def _resume(path: Path, model: nn.Module, optimizer: Any) -> tuple[dict[str, Any], Any]:
    """load_checkpoint on every rank (the same file), checked to be the same epoch everywhere."""
    try:
        state, best = load_checkpoint(path, model, optimizer)
    except CheckpointError as exc:
        raise TrainError(str(exc)) from None
    resumed = distributed.gather(state["epochs_run"])
    if len(set(resumed)) > 1:
        raise TrainError(
            f"the ranks found different checkpoints at {path} (epochs run, by rank: {resumed}); "
            "on several machines it must be on storage they share"
        )
    return state, best


def _fit(  # noqa: PLR0917 (private: fit's arguments, passed straight through)
    model: nn.Module,
    data: TaskData,
    fns: tuple[LossFn, MetricFn],
    cfg: EngineConfig,
    path: Path,
    on_epoch: Callable[[dict[str, float]], None] | None,
) -> EngineResult:
    optimizer = _optimizer(model, cfg)
    rank, world = distributed.world()
    state, best = _resume(path, model, optimizer)
    # DDP (several processes; it broadcasts rank 0's weights) and torch.compile wrap the same
    # parameters: training steps use the wrapper, checkpoints and the returned model the plain
    # module (state_dict keys without the wrappers' prefixes).
    trainer = distributed.wrap(model)
    trainer = torch.compile(trainer) if cfg.compile else trainer
    evaluator = model if world > 1 else None  # None: validate through `trainer`
    start = f"resuming after epoch {state['epochs_run']}" if best is not None else "fresh start"
    device = data.x_train.device
    ranks = f" x {world} processes" if world > 1 else ""
    logger.info(f"on {device}{ranks}: {len(data.x_train)} train, {len(data.x_val)} val; {start}")
    better = (lambda a, b: a < b) if cfg.mode == "min" else (lambda a, b: a > b)
    n_steps = math.ceil(len(data.x_train) / cfg.batch_size)
    started = time.perf_counter()
    bar = Progress(
        "train",
        cfg.epochs * n_steps,
        unit="steps",
        initial=state["epochs_run"] * n_steps,
        logger=logger,
        tty=False if rank else None,  # other ranks log warnings only: no bar, no lines
    )
    key, writer = f"best_{cfg.monitor}", _Writer()
    stopped = False  # by on_epoch's StopTraining
    try:
        while state["epochs_run"] < cfg.epochs and state["bad_epochs"] < cfg.patience:
            bar.set_detail(f"epoch {state['epochs_run'] + 1}/{cfg.epochs}")
            row = _epoch(
                cfg,
                state["epochs_run"],
                trainer,
                optimizer=optimizer,
                data=data,
                fns=fns,
                progress=bar,
                evaluator=evaluator,
            )
            if best is None or better(row[cfg.monitor], state[key]):
                best = _copy(model.state_dict())
                best_row = {f"best_{k}": v for k, v in row.items() if k != "epoch"}
                state.update(best_epoch=row["epoch"], bad_epochs=0, **best_row)
            else:
                state["bad_epochs"] += 1
            state["epochs_run"] = row["epoch"]
            state["history"].append(row)
            if rank == 0:  # the only rank that writes; the others hold the same state
                writer.save(path, model, optimizer, best, state)
            logger.info(f"epoch {row['epoch']}/{cfg.epochs}: {_text(row)}")
            reason = _call(on_epoch, row)
            if reason is not None:
                logger.info(f"stopped after epoch {row['epoch']}: {reason}")
                stopped = True
                break
        writer.wait()  # the last checkpoint is complete before fit returns
    except BaseException:
        bar.close(ok=False)
        writer.wait(raise_error=False)  # a resume must not race a half-written checkpoint
        raise
    finally:
        bar.close()
    stopped_early = stopped or state["bad_epochs"] >= cfg.patience
    best_row = state["history"][state["best_epoch"] - 1]
    logger.info(
        f"{'early stop' if stopped_early else 'train.epochs reached'} after epoch "
        f"{state['epochs_run']} ({time.perf_counter() - started:.1f} s this run); best epoch "
        f"{state['best_epoch']}: {_text(best_row)}"
    )
    model.load_state_dict(best)
    fields = state["epochs_run"], state["best_epoch"], best_row, state["history"], stopped_early
    return EngineResult(model.cpu().eval(), *fields)
