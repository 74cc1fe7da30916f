"""Image classification: images with a label -> a CNN (or `train.model: linear`, logistic
regression on downscaled pixels) -> accuracy, macro-F1, per-class precision/recall and a confusion
matrix; the ONNX graph takes uint8 pixels, preprocessing inside.

`TASK` is the plug-in (pyproject.toml registers it in `kiln.task_types`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tasks.core.plugins import ModuleTaskType
from tasks.types.image_classification.params import ImageParams

if TYPE_CHECKING:
    from tasks.core.columns import TaskColumns
    from tasks.core.params import Params

_HERE = "tasks.types.image_classification"


def _columns(_params: Params) -> TaskColumns:
    # Imported here: validate_derive imports pandas, PIL and tqdm, which this package's
    # __init__ must not (tasks.core.plugins: a serving host looks the plug-in up without them).
    from tasks.core.columns import TaskColumns  # noqa: PLC0415

    return TaskColumns(labels=True, images=True)


TASK = ModuleTaskType(
    name="image_classification",
    params=ImageParams,
    columns=_columns,
    implementation={
        "clean": f"{_HERE}.clean:clean_stage",
        "train": f"{_HERE}.train:train_stage",
        "evaluate": f"{_HERE}.evaluate:evaluate_stage",
        "export": f"{_HERE}.export:export_stage",
        "test_metrics": f"{_HERE}.evaluate:test_metrics",
        "serving": f"{_HERE}.serving:spec",
        "torch_runner": f"{_HERE}.evaluate:torch_runner",
    },
)
