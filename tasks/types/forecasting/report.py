"""The evaluate side of forecasting: run by `python -m tasks.evaluate` when project.task is
`forecasting` (stages.py evaluate_stage is the shell; this module is its pure core,
plus the Forecaster that export and serving run too).

* `Forecaster`: raw values (N, window) in the series' unit -> forecast (N, horizon) in the same
  unit, the card's scaling (tasks/types/forecasting/data.py) around the network; `load_forecaster`
  rebuilds it from a model directory and refuses a card that is not a forecaster's.
* `evaluate_forecaster`: rolling-origin forecasts over the test span (every test step is an
  origin; inputs are the actual values before it) and the seasonal-naive baseline (the value
  `evaluate.season_length` steps earlier).
* `ForecastEval.metrics`: MAE, RMSE, MAPE (percent) in the series' unit for the model and the
  baseline, skill = 1 - MAE / baseline MAE, MAE per horizon step.
* `write_reports`: reports/evaluation/forecast.csv + forecast.png (first horizon step) and
  reports/metrics.json.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from tasks.core.dataset import DataError
from tasks.core.io import atomic_dir, atomic_path, write_json
from tasks.core.models import ModelError, load_model
from tasks.types.forecasting.data import Series, scale_inputs, unscale
from tasks.types.forecasting.models import ARCHITECTURES

logger = logging.getLogger("kiln.forecasting")


# ---------------------------------------------------------------------------------------- model
class Forecaster(nn.Module):
    """Raw values (N, window) in the series' unit -> forecast (N, horizon) in the same unit: the
    card's scaling around the network, the one graph evaluate, export and serving run."""

    def __init__(self, model: nn.Module, preprocessing: dict[str, Any]) -> None:
        super().__init__()
        self.model, self.preprocessing = model, dict(preprocessing)

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        scaled, anchor = scale_inputs(values.to(torch.float32), self.preprocessing)
        return unscale(self.model(scaled.unsqueeze(-1)), anchor, self.preprocessing)


def load_forecaster(model_dir: Path | str) -> tuple[Forecaster, dict[str, Any]]:
    model, card = load_model(model_dir, ARCHITECTURES)
    prep, config = card["preprocessing"], card["config"]
    for key in ("window", "horizon", "shift", "scale", "frequency"):
        if key not in prep:
            raise ModelError(f"{model_dir}/card.json preprocessing lacks {key!r}: not a forecaster")
    if config.get("horizon") != prep["horizon"] or config.get("n_features") != 1:
        raise ModelError(
            f"{model_dir}/card.json config.horizon={config.get('horizon')}, "
            f"config.n_features={config.get('n_features')} but preprocessing.horizon="
            f"{prep['horizon']} with one feature"
        )
    return Forecaster(model, prep).eval(), card


@torch.inference_mode()
def forecast(forecaster: Forecaster, inputs: np.ndarray) -> np.ndarray:
    """float64 (N, horizon) forecasts of raw float inputs (N, window); float32 on the CPU, as
    the ONNX graph computes (no bf16 autocast: 350 ppm in bf16 is only good to 2 ppm)."""
    out = [
        forecaster(torch.from_numpy(inputs[i : i + 4096]).float())
        for i in range(0, len(inputs), 4096)
    ]
    return (
        torch.cat(out).double().numpy()
        if out
        else np.zeros((0, forecaster.preprocessing["horizon"]))
    )


# ------------------------------------------------------------------------------------- evaluate
def rolling_inputs(series: Series, window: int) -> np.ndarray:
    """float32 (n_test, window): the actual values before each test step (rolling origins)."""
    start = len(series.values) - series.n_test
    if start < window:
        raise DataError(f"the test span starts at step {start}, before one window ({window})")
    values = torch.tensor(series.values)
    return values[start - window : -1].unfold(0, window, 1).float().numpy()


def _errors(actual: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """MAE and RMSE in the series' unit, MAPE in percent (actual zeros left out of MAPE)."""
    error = predicted - actual
    nonzero = actual != 0
    mape = (
        float(np.mean(np.abs(error[nonzero]) / np.abs(actual[nonzero])) * 100)
        if nonzero.any()
        else math.nan
    )
    return {
        "mae": float(np.mean(np.abs(error))),
        "rmse": float(np.sqrt(np.mean(error**2))),
        "mape": mape,
    }


def _seasonal_naive(values: np.ndarray, origins: np.ndarray, horizon: int, m: int) -> np.ndarray:
    """(len(origins), horizon): step k (1-based) from origin o is y[o + k - m * ceil(k / m)], the
    same season's last value known at the origin."""
    k = np.arange(1, horizon + 1)
    index = origins[:, None] + k[None, :] - m * np.ceil(k / m).astype(int)[None, :]
    if index.min() < 0:
        raise DataError(f"evaluate.season_length {m} reaches before the series' first step")
    return values[index]


@dataclass(frozen=True)
class ForecastEval:
    times: pd.DatetimeIndex  # the test steps
    actual: np.ndarray  # (n_test,)
    forecasts: np.ndarray  # (n_test, horizon): from the origin at each test step
    baseline: np.ndarray  # (n_test, horizon)
    season_length: int

    def _pairs(self, predictions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(actual, predicted, step) for every forecast whose target lies in the test span."""
        n, horizon = predictions.shape
        origin, step = np.meshgrid(np.arange(n), np.arange(horizon), indexing="ij")
        inside = origin + step < n
        return self.actual[(origin + step)[inside]], predictions[inside], step[inside]

    def metrics(self) -> dict[str, Any]:
        actual, predicted, step = self._pairs(self.forecasts)
        _, naive, _ = self._pairs(self.baseline)
        model, base = _errors(actual, predicted), _errors(actual, naive)
        per_step = [
            float(np.mean(np.abs(predicted - actual)[step == k]))
            for k in range(self.forecasts.shape[1])
        ]
        rounded = {k: round(v, 6) for k, v in model.items()}
        return {
            **rounded,
            "n_test": len(self.actual),
            "n_forecasts": len(actual),  # (origin, step) pairs inside the test span
            "horizon": self.forecasts.shape[1],
            "mae_per_step": [round(v, 6) for v in per_step],
            "baseline": {
                "name": "seasonal_naive",
                "season_length": self.season_length,
                **{k: round(v, 6) for k, v in base.items()},
            },
            "skill_mae": round(1 - model["mae"] / base["mae"], 6) if base["mae"] else None,
        }


def evaluate_forecaster(forecaster: Forecaster, series: Series, season_length: int) -> ForecastEval:
    prep = forecaster.preprocessing
    if prep["frequency"] != series.frequency:
        raise ModelError(
            f"models/card.json preprocessing.frequency is {prep['frequency']!r} but data/clean "
            f"is a {series.frequency!r} series: retrain on this data"
        )
    window, horizon = int(prep["window"]), int(prep["horizon"])
    origins = np.arange(len(series.values) - series.n_test, len(series.values)) - 1
    return ForecastEval(
        series.times[-series.n_test :],
        series.values[-series.n_test :],
        forecast(forecaster, rolling_inputs(series, window)),
        _seasonal_naive(series.values, origins, horizon, season_length),
        season_length,
    )


def plot_forecast(result: ForecastEval, unit: str, target: Path) -> None:
    import matplotlib  # noqa: PLC0415 (optional: only for the PNG)

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt  # noqa: PLC0415

    m = result.metrics()
    fig, ax = plt.subplots(figsize=(11, 4.5), dpi=100)
    ax.plot(result.times, result.actual, color="black", lw=1.6, label="actual")
    ax.plot(
        result.times,
        result.forecasts[:, 0],
        color="tab:blue",
        lw=1.2,
        label=f"model, 1 step ahead (MAE {m['mae_per_step'][0]:.3g})",
    )
    ax.plot(
        result.times,
        result.baseline[:, 0],
        color="tab:orange",
        lw=1.0,
        ls="--",
        label=f"seasonal naive, {result.season_length} steps back (MAE {m['baseline']['mae']:.3g})",
    )
    ax.set(
        xlabel="time",
        ylabel=unit,
        title=f"test span: forecast vs actual ({m['n_test']} steps,"
        f" horizon {m['horizon']}; MAE over all steps {m['mae']:.3g} {unit})",
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    fig.autofmt_xdate()
    fig.tight_layout()
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def write_reports(result: ForecastEval, unit: str, reports_dir: Path) -> None:
    frame = pd.DataFrame(
        {
            "time": [
                t.date().isoformat() if t == t.normalize() else t.isoformat() for t in result.times
            ],
            "actual": result.actual,
            "forecast": np.round(result.forecasts[:, 0], 6),
            "seasonal_naive": result.baseline[:, 0],
        }
    )
    with atomic_dir(reports_dir / "evaluation") as tmp:
        frame.to_csv(tmp / "forecast.csv", index=False, lineterminator="\n")
        try:
            plot_forecast(result, unit, tmp / "forecast.png")
        except ImportError:
            logger.warning("matplotlib is not installed: forecast.png not written")
    write_json(reports_dir / "metrics.json", result.metrics())
