"""Training engine: `python -m pytest tests/unit/tasks/core/test_engine.py` (determinism, resume,
stopping, per-step progress).

A 2-layer MLP on 256 synthetic points keeps every fit well under a second on one CPU core; the
image stage's own determinism and kill/resume tests are in
tests/unit/tasks/types/image_classification/test_train.py.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F  # noqa: N812 (the usual torch alias)
from torch import nn

from tasks.core import engine, progress
from tasks.core.engine import EngineConfig, TaskData, TrainError, fit, lr_factor
from tasks.core.objectives import classification_metrics
from tasks.core.progress import ProgressLine, parse

CFG = EngineConfig(epochs=4, batch_size=32, lr=1e-2, patience=4)
LOSS, METRICS = F.cross_entropy, classification_metrics


class _Stop(Exception):
    """Raised from on_epoch to simulate a kill after a checkpoint."""


def _data() -> TaskData:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(320, 8, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()  # a linearly separable 2-class task
    return TaskData(x[:256], y[:256], x[256:], y[256:])


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 2))


def _fit(cfg: EngineConfig, path: Path, seed: int = 0, **kw: object) -> engine.EngineResult:
    return fit(_model(seed), _data(), LOSS, METRICS, cfg=cfg, checkpoint_path=path, **kw)


def _same(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize(
    "cfg",
    [
        CFG,
        EngineConfig(**{**CFG.__dict__, "optimizer": "sgd", "lr": 0.1, "grad_clip": 0.5}),
        EngineConfig(**{**CFG.__dict__, "schedule": "cosine", "warmup_steps": 5, "lr": 5e-2}),
    ],
    ids=["adamw", "sgd-clip", "cosine"],
)
def test_deterministic_learns_and_kill_resume_equals_uninterrupted(
    cfg: EngineConfig, tmp_path: Path
) -> None:
    reference = _fit(cfg, tmp_path / "ref")
    assert _same(_fit(cfg, tmp_path / "again").model, reference.model)
    assert not _same(_fit(cfg, tmp_path / "seed1", seed=1).model, reference.model)
    assert reference.best["val_acc"] >= 0.85, reference.history

    def kill_after_2(row: dict[str, float]) -> None:
        if row["epoch"] == 2:
            raise _Stop

    with pytest.raises(_Stop):
        _fit(cfg, tmp_path / "ck", on_epoch=kill_after_2)
    resumed = _fit(cfg, tmp_path / "ck")
    assert _same(resumed.model, reference.model) and resumed.history == reference.history


def test_early_stopping_on_a_declared_metric_to_maximise(tmp_path: Path) -> None:
    scores = iter([0.5, 0.7, 0.6, 0.65, 0.9])  # best at epoch 2, then 2 epochs without gain

    def metric(_logits: torch.Tensor, _y: torch.Tensor) -> dict[str, float]:
        return {"val_loss": 1.0, "val_score": next(scores)}

    cfg = EngineConfig(
        epochs=5, batch_size=64, lr=1e-3, patience=2, monitor="val_score", mode="max"
    )
    result = fit(_model(), _data(), LOSS, metric, cfg=cfg, checkpoint_path=tmp_path / "ck")
    assert (result.epochs_run, result.best_epoch, result.stopped_early) == (4, 2, True)
    assert result.best["val_score"] == 0.7


def test_unknown_monitor_and_nan_loss_are_named(tmp_path: Path) -> None:
    cfg = EngineConfig(epochs=1, batch_size=64, lr=1e-3, monitor="val_f1")
    with pytest.raises(TrainError, match=r"monitor 'val_f1' is not among the metrics"):
        fit(_model(), _data(), LOSS, METRICS, cfg=cfg, checkpoint_path=tmp_path / "a")

    def nan_after_3(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        nan_after_3.calls += 1  # type: ignore[attr-defined]
        return LOSS(out, y) * (math.nan if nan_after_3.calls > 3 else 1.0)  # type: ignore[attr-defined]

    nan_after_3.calls = 0  # type: ignore[attr-defined]
    with pytest.raises(TrainError, match=r"loss is nan at epoch 1 step 4 \(global step 4\)"):
        fit(_model(), _data(), nan_after_3, METRICS, cfg=CFG, checkpoint_path=tmp_path / "b")


def test_bad_config_and_missing_device_are_named() -> None:
    with pytest.raises(TrainError, match="optimizer 'adam'"):
        EngineConfig(epochs=1, batch_size=1, lr=1.0, optimizer="adam")  # type: ignore[arg-type]
    with pytest.raises(TrainError, match="lr > 0"):
        EngineConfig(epochs=1, batch_size=1, lr=0.0)
    if not torch.cuda.is_available():
        with pytest.raises(TrainError, match="device 'cuda' was asked for"):
            engine.pick_device("cuda")
    assert engine.pick_device("cpu").type == "cpu"


def test_warmup_then_cosine_schedule() -> None:
    cfg = EngineConfig(epochs=1, batch_size=1, lr=1.0, schedule="cosine", warmup_steps=10)
    factors = [lr_factor(cfg, step, 110) for step in range(110)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert factors[60] == pytest.approx(0.5) and factors[-1] < 1e-3
    assert all(a >= b for a, b in zip(factors[9:], factors[10:], strict=False))
    assert lr_factor(CFG, 5, 10) == 1.0


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _Logged(logging.Handler):
    """kiln.train's records: each progress line with the (fake) time it was logged at."""

    def __init__(self, clock: _Clock | None = None) -> None:
        super().__init__()
        self.clock = clock
        self.progress: list[tuple[float, ProgressLine]] = []
        self.other: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        line = parse(record.getMessage())
        if line is None:
            self.other.append(record.getMessage())
        else:
            self.progress.append((self.clock() if self.clock else time.monotonic(), line))


@pytest.fixture
def train_log(monkeypatch: pytest.MonkeyPatch) -> _Logged:
    monkeypatch.setattr(progress, "_on_terminal", lambda: False)  # log lines, not a tqdm bar
    log = logging.getLogger("kiln.train")
    handler = _Logged()
    log.addHandler(handler)
    level = log.level
    log.setLevel(logging.INFO)
    yield handler
    log.removeHandler(handler)
    log.setLevel(level)


def test_progress_per_step_with_rate_and_eta_every_10_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, train_log: _Logged
) -> None:
    clock = _Clock()
    train_log.clock = clock
    monkeypatch.setattr(progress, "CLOCK", clock)
    monkeypatch.setattr(progress, "HEARTBEAT_S", 0)  # the update-driven lines only; fake time

    def slow_step(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        clock.now += 3.0  # a fake 3 s training step
        return LOSS(out, y)

    cfg = EngineConfig(epochs=2, batch_size=32, lr=1e-2, patience=2)  # 8 steps an epoch
    fit(_model(), _data(), slow_step, METRICS, cfg=cfg, checkpoint_path=tmp_path / "ck")
    times = [t for t, _ in train_log.progress]
    lines = [line for _, line in train_log.progress]
    assert lines[0] == ProgressLine("train", 0, 16, "steps", 0.0, None, "")
    assert [line.done for line in lines] == [0, 4, 8, 12, 16, 16]  # a line every 4 steps (12 s)
    details = [line.detail for line in lines[1:-1]]
    assert details == ["epoch 1/2", "epoch 1/2", "epoch 2/2", "epoch 2/2"]
    # at most one line per 10 s, and never more than 10 s plus one step without one
    assert all(10 <= b - a <= 10 + 3 for a, b in zip(times, times[1:-1], strict=False))
    assert (lines[1].rate, lines[1].eta_s) == (0.33, 36)  # 12 steps left at 1/3 step per s
    assert lines[-1].finished and lines[-1].detail == "done in 48.0s epoch 2/2"
    assert [m.split(":")[0] for m in train_log.other if m.startswith("epoch")] == [
        "epoch 1/2",
        "epoch 2/2",
    ]

    # a resumed run counts from where it stopped, its rate from its own steps
    def kill_after_1(row: dict[str, float]) -> None:
        raise _Stop

    train_log.progress.clear()
    with pytest.raises(_Stop):
        fit(
            _model(),
            _data(),
            slow_step,
            METRICS,
            cfg=cfg,
            checkpoint_path=tmp_path / "r",
            on_epoch=kill_after_1,
        )
    assert train_log.progress[-1][1].detail.startswith("stopped after 24.0s")
    train_log.progress.clear()
    fit(_model(), _data(), slow_step, METRICS, cfg=cfg, checkpoint_path=tmp_path / "r")
    start, end = train_log.progress[0][1], train_log.progress[-1][1]
    assert (start.done, end.done, end.rate) == (8, 16, 0.33)


def test_a_slow_validation_is_not_silent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, train_log: _Logged
) -> None:
    monkeypatch.setattr(progress, "EVERY_S", 0.05)  # real time, scaled down 200 times
    monkeypatch.setattr(progress, "HEARTBEAT_S", 0.01)

    def slow_metrics(logits: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        time.sleep(0.5)  # no step counted for 10 times EVERY_S
        return METRICS(logits, y)

    cfg = EngineConfig(epochs=1, batch_size=64, lr=1e-2, patience=1)
    fit(_model(), _data(), LOSS, slow_metrics, cfg=cfg, checkpoint_path=tmp_path / "ck")
    during = [line for _, line in train_log.progress if line.done == 4 and not line.finished]
    assert len(during) >= 3, train_log.progress
    times = [t for t, _ in train_log.progress]
    assert max(b - a for a, b in zip(times, times[1:], strict=False)) < 0.35  # slack: a busy CPU
