"""`POST /predict` for forecasting models (`serve.schemas.task_spec("forecasting")`).

Request: `{"instances": [{"values": [float, ... exactly window of them]}], "model"?: "v0003"}`,
the last `window` values of the series in its own unit (ppm for CO2), oldest first. Response:
`{"model_version", "predictions": [{"forecast": [horizon floats]}]}`, the next `horizon` steps in
the same unit. Scaling lives inside the ONNX graph (tasks/types/forecasting/export.py), so serving
sends raw values and needs no constants; the window length comes from the champion's model card.
Numbers must be finite (JSON NaN/Infinity are refused); a wrong length is a 422 naming
`instances.<i>.values`. No torch import.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from serve.inputs import InputError
from serve.schemas import Request, Strict, TaskSpec

MAX_WINDOW = 10_000  # train.series.window's upper bound (tasks/core/params.py)

Value = Annotated[float, Field(strict=True, allow_inf_nan=False)]  # no "1.5", no NaN, no true


class SeriesInstance(Strict):
    values: list[Value] = Field(
        min_length=1,
        max_length=MAX_WINDOW,
        description="The last `window` values of the series (GET /model: input.window), oldest "
        "first, in the series' unit.",
    )


class Forecast(Strict):
    forecast: list[float] = Field(description="The next `horizon` values, in the series' unit.")


class ForecastingResponse(Strict):
    task: Literal["forecasting"] = "forecasting"
    model_version: str = Field(description="The registry version that made the forecasts.")
    predictions: list[Forecast] = Field(description="One per instance, in order.")


def forecasting_request(max_batch: int) -> type[Request]:
    class ForecastingRequest(Request):
        """A batch of windows (a single window is a batch of one)."""

        task: Literal["forecasting"] = "forecasting"
        instances: list[SeriesInstance] = Field(
            min_length=1, max_length=max_batch, description=f"1 to {max_batch} windows."
        )

    return ForecastingRequest


def window_of(card: dict[str, Any]) -> int:
    return int(card["preprocessing"]["window"])


def values_array(request: Any, window: int) -> np.ndarray:
    """float32 (N, window); an InputError names `instances.<i>.values` on a wrong length."""
    for i, instance in enumerate(request.instances):
        if len(instance.values) != window:
            raise InputError(
                ("body", "instances", i, "values"),
                f"{len(instance.values)} values; the model takes exactly {window} (its window)",
            )
    values = np.asarray([inst.values for inst in request.instances], dtype=np.float64)
    if not np.isfinite(values.astype(np.float32)).all():  # finite doubles beyond float32's range
        bad = int(np.flatnonzero(~np.isfinite(values.astype(np.float32)).all(axis=1))[0])
        raise InputError(("body", "instances", bad, "values"), "values beyond float32's range")
    return values.astype(np.float32)


def predict(request: Any, loaded: Any) -> ForecastingResponse:
    forecasts = loaded.run(values_array(request, window_of(loaded.card)))
    return ForecastingResponse(
        model_version=loaded.version,
        predictions=[Forecast(forecast=[float(v) for v in row]) for row in forecasts],
    )


SPEC = TaskSpec(forecasting_request, ForecastingResponse, predict)


def spec() -> TaskSpec:
    return SPEC
