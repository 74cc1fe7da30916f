"""Forecasting models: `python -m pytest tests/unit/tasks/types/forecasting/test_models.py`.

LSTM and GRU forecasters: shapes, a card round trip without pickle, a bad config named, and a
sine wave learnt through the engine on CPU (a few seconds each).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F  # noqa: N812 (the usual torch alias)

from tasks.core.models import ModelError, build_model
from tasks.core.objectives import regression_metrics
from tasks.types.forecasting.models import ARCHITECTURES
from tests.unit.tasks.types.model_checks import check_shape_and_card_round_trip, split, train

RNN = {"n_features": 2, "horizon": 3, "hidden": 8, "layers": 2, "dropout": 0.1}
CASES = {  # architecture: (config, example input, output shape)
    "lstm": (RNN, torch.randn(5, 11, 2), (5, 3)),
    "gru": (RNN, torch.randn(5, 7, 2), (5, 3)),
}


@pytest.mark.parametrize("architecture", sorted(CASES))
def test_shapes_and_card_round_trip_without_pickle(architecture: str, tmp_path: Path) -> None:
    config, x, shape = CASES[architecture]
    check_shape_and_card_round_trip(
        ARCHITECTURES, architecture, config, x=x, shape=shape, directory=tmp_path
    )


def test_bad_configs_are_named() -> None:
    with pytest.raises(ModelError, match="config.horizon must be a positive integer"):
        build_model(ARCHITECTURES, "lstm", {**RNN, "horizon": 0})


@pytest.mark.parametrize("architecture", ["lstm", "gru"])
def test_forecaster_learns_a_sine_wave(architecture: str, tmp_path: Path) -> None:
    t = torch.arange(600, dtype=torch.float32)
    series = torch.sin(2 * math.pi * t / 16)  # period 16 steps, variance 0.5
    windows = series.unfold(0, 20 + 4, 1)  # 20 steps in, 4 out
    x, y = windows[:, :20, None], windows[:, 20:]
    config = {"n_features": 1, "horizon": 4, "hidden": 16, "layers": 1, "dropout": 0.0}
    data = split(x, y, 100)
    result = train(
        ARCHITECTURES, architecture, config,
        objective=(F.mse_loss, regression_metrics), data=data, path=tmp_path, epochs=5,
    )  # fmt: skip
    first = result.history[0]["val_loss"]
    assert result.best["val_loss"] < 0.02 < first, result.history  # mean predictor: 0.5
