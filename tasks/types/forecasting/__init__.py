"""Time-series forecasting: one timestamped value per row -> an LSTM or GRU on sliding windows ->
MAE, RMSE and MAPE against a seasonal-naive baseline; the ONNX graph takes raw values, scaling
inside.

`TASK` is the plug-in (pyproject.toml registers it in `kiln.task_types`).
"""

from tasks.core.columns import TaskColumns
from tasks.core.plugins import ModuleTaskType
from tasks.types.forecasting.params import ForecastingParams

_STAGES = "tasks.types.forecasting.stages"

TASK = ModuleTaskType(
    name="forecasting",
    params=ForecastingParams,
    columns=lambda params: TaskColumns(
        time_column=params.clean.series.time_column, value_column=params.clean.series.value_column
    ),
    implementation={
        "clean": f"{_STAGES}:clean_stage",
        "train": f"{_STAGES}:train_stage",
        "evaluate": f"{_STAGES}:evaluate_stage",
        "export": f"{_STAGES}:export_stage",
        "test_metrics": f"{_STAGES}:test_metrics",
        "serving": "tasks.types.forecasting.serving:spec",
        "torch_runner": f"{_STAGES}:torch_runner",
    },
)
