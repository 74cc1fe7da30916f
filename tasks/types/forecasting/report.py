"""The evaluate side of forecasting: run by `python -m tasks.evaluate` when project.task is
`forecasting` (stages.py evaluate_stage is the shell; this module is its pure core,
plus the Forecaster that export and serving run too).

* `Forecaster`: raw values (N, window) in the series' unit -> forecast (N, horizon) in the same
  unit, the card's scaling (tasks/types/forecasting/data.py) around the network; `load_forecaster`
  rebuilds it from a model directory and refuses a card that is not a forecaster's.
* `evaluate_forecaster`: rolling-origin forecasts over the test span (every test step is an
  origin; inputs are the actual values before it) and, from the same origins, the baselines of
  `tasks.core.baselines`: naive (the last value known at the origin) and seasonal naive (the
  value `evaluate.season_length` steps earlier).
* `ForecastEval.metrics`: MAE, RMSE, MAPE (percent) in the series' unit and MASE (MAE over the
  train span's in-sample seasonal-naive MAE) for the model and, under `baselines`, for each
  baseline; skill = 1 - MAE / seasonal-naive MAE, MAE per horizon step.
* `write_reports`: reports/evaluation/forecast.csv + plots/forecast.png (first horizon step,
  both baselines beside the model) and reports/metrics.json.
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

from tasks.core.baselines import mase_scale, naive_forecast, seasonal_naive_forecast
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


@dataclass(frozen=True)
class ForecastEval:
    times: pd.DatetimeIndex  # the test steps
    actual: np.ndarray  # (n_test,)
    forecasts: np.ndarray  # (n_test, horizon): from the origin at each test step
    baseline: np.ndarray  # (n_test, horizon): seasonal naive, from the same origins
    season_length: int
    naive: np.ndarray | None = None  # (n_test, horizon): the last value at each origin
    mase_scale: float | None = None  # the train span's in-sample seasonal-naive MAE

    def _mase(self, mae: float) -> float | None:
        return round(mae / self.mase_scale, 6) if self.mase_scale else None

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
        n_test = len(self.actual)
        baselines = {}
        if self.naive is not None:
            last = _errors(actual, self._pairs(self.naive)[1])
            baselines["naive"] = {
                **{k: round(v, 6) for k, v in last.items()},
                "mase": self._mase(last["mae"]),
                "n_test": n_test,
                "description": "the last value known at the origin, for every step ahead",
            }
        baselines["seasonal_naive"] = {
            **{k: round(v, 6) for k, v in base.items()},
            "mase": self._mase(base["mae"]),
            "n_test": n_test,
            "season_length": self.season_length,
            "description": f"the value {self.season_length} steps (one season) before each "
            "step, the latest known at the origin",
        }
        return {
            **rounded,
            "mase": self._mase(model["mae"]),
            "n_test": n_test,
            "n_forecasts": len(actual),  # (origin, step) pairs inside the test span
            "horizon": self.forecasts.shape[1],
            "mae_per_step": [round(v, 6) for v in per_step],
            "baselines": baselines,
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
    try:
        seasonal = seasonal_naive_forecast(series.values, origins, horizon, season_length)
    except ValueError:
        raise DataError(
            f"evaluate.season_length {season_length} reaches before the series' first step"
        ) from None
    return ForecastEval(
        series.times[-series.n_test :],
        series.values[-series.n_test :],
        forecast(forecaster, rolling_inputs(series, window)),
        seasonal,
        season_length,
        naive_forecast(series.values, origins, horizon),
        mase_scale(series.values[: series.n_train], season_length),
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
        label=f"seasonal naive, {result.season_length} steps back "
        f"(MAE {m['baselines']['seasonal_naive']['mae']:.3g})",
    )
    if result.naive is not None:
        ax.plot(
            result.times,
            result.naive[:, 0],
            color="tab:green",
            lw=1.0,
            ls=":",
            label=f"naive, last value (MAE {m['baselines']['naive']['mae']:.3g})",
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
            **({"naive": result.naive[:, 0]} if result.naive is not None else {}),
        }
    )
    with atomic_dir(reports_dir / "evaluation") as tmp:
        frame.to_csv(tmp / "forecast.csv", index=False, lineterminator="\n")
        # EVALUATION_PLOTS, dvc.yaml's `plots:`, draws the PNG; the CSV is data beside it (a CSV
        # in plots/ would be drawn as a confusion matrix, the classifiers' chart)
        (tmp / "plots").mkdir()
        try:
            plot_forecast(result, unit, tmp / "plots" / "forecast.png")
        except ImportError:
            logger.warning("matplotlib is not installed: forecast.png not written")
    write_json(reports_dir / "metrics.json", result.metrics())
