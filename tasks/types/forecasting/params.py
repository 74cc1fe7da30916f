"""Forecasting's params: the series' columns, its windows and scaling, the LSTM/GRU, the
seasonal-naive baseline's period."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from tasks.core.params import CleanParams, EvaluateParams, Params, TrainParams, _Section


class SeriesCleanParams(_Section):
    """The time series of forecasting: one timestamped numeric value per row."""

    time_column: str = Field("time", description="The crawled field holding the timestamp.")
    value_column: str = Field("value", description="The crawled field holding the value.")
    fill: Literal["interpolate", "ffill", "drop"] = Field(
        "interpolate",
        description="Missing or unparseable values: linear interpolation in time, the last "
        "value carried forward, or the row dropped.",
    )


class SeriesCleanSection(CleanParams):
    series: SeriesCleanParams = Field(SeriesCleanParams(), description="The series' columns.")


class SeriesModelParams(_Section):
    """Windowing and scaling of forecasting; saved in the model card."""

    window: int = Field(52, ge=2, le=10_000, description="Past values the model sees.")
    horizon: int = Field(4, ge=1, le=1000, description="Future values it predicts.")
    scaling: Literal["standard", "minmax", "none"] = Field(
        "standard", description="Fitted on the train split only."
    )
    anchor: Literal["last", "none"] = Field(
        "last",
        description="last: each window relative to its own last value (the model learns changes, "
        "not levels; a trending series leaves the train span's range); none: absolute levels.",
    )


class ForecastTrainParams(TrainParams):
    model: Literal["lstm", "gru"] = Field("lstm", description="The recurrent network.")
    d_model: int = Field(64, ge=4, le=4096, description="Hidden units per RNN layer.")
    layers: int = Field(2, ge=1, le=48, description="Stacked RNN layers.")
    dropout: float = Field(
        0.2, ge=0.0, lt=1.0, description="Dropout between stacked layers (unused with one)."
    )
    series: SeriesModelParams = Field(SeriesModelParams(), description="Windows and scaling.")


class ForecastEvaluateParams(EvaluateParams):
    season_length: int = Field(
        52, ge=1, description="Period of the seasonal-naive baseline (52: weeks in a year)."
    )


class ForecastingParams(Params):
    HEADLINE_METRICS: ClassVar[tuple[str, ...]] = ("mae", "rmse", "mape")

    clean: SeriesCleanSection = SeriesCleanSection()
    train: ForecastTrainParams = ForecastTrainParams()
    evaluate: ForecastEvaluateParams = ForecastEvaluateParams()
