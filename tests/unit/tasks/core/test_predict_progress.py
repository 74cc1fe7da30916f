"""predict_logits' progress (tasks/core/models.py): a long pass over many batches logs count, rate
and ETA of the items; a short one (the demo's 20 ms) and a single batch log nothing."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from tasks.core import models, progress


class _Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


class _SlowIdentity(nn.Module):
    """Each forward pass takes `seconds` of the fake clock."""

    def __init__(self, clock: _Clock, seconds: float) -> None:
        super().__init__()
        self.clock, self.seconds = clock, seconds

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.clock.now += self.seconds
        return x * 2


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    fake = _Clock()
    monkeypatch.setattr(progress, "CLOCK", fake)
    monkeypatch.setattr(progress, "HEARTBEAT_S", 0)
    monkeypatch.setattr(progress, "_on_terminal", lambda: False)
    monkeypatch.setattr(models, "EVAL_BATCH", 10)
    return fake


def _lines(caplog: pytest.LogCaptureFixture) -> list[progress.ProgressLine]:
    return [line for r in caplog.records if (line := progress.parse(r.getMessage())) is not None]


def test_a_long_pass_logs_its_items(clock: _Clock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    x = torch.arange(95, dtype=torch.float32).reshape(95, 1)
    got = models.predict_logits(_SlowIdentity(clock, 3.0), x, what="evaluate.test")
    assert torch.equal(got, x * 2)
    lines = _lines(caplog)
    assert [(line.what, line.done, line.total, line.unit) for line in lines] == [
        ("evaluate.test", 10, 95, "items"),  # the first line after QUIET_S (one batch: 3 s)
        ("evaluate.test", 50, 95, "items"),  # 10 s or more later (a batch: 3 s)
        ("evaluate.test", 90, 95, "items"),
        ("evaluate.test", 95, 95, "items"),
    ]
    assert lines[1].rate == pytest.approx(50 / 15, abs=0.01)
    assert lines[-1].finished and lines[-1].detail == "done in 30.0s"


def test_a_short_pass_or_one_batch_logs_nothing(clock, caplog) -> None:
    caplog.set_level(logging.INFO)
    x = torch.ones(95, 1)
    models.predict_logits(_SlowIdentity(clock, 0.002), x)  # 10 batches, 20 ms
    models.predict_logits(_SlowIdentity(clock, 30.0), x[:10])  # one batch: nothing to count
    assert _lines(caplog) == []
