"""Image classification: grayscale images with a label -> a CNN -> accuracy, macro-F1, per-class
precision/recall and a confusion matrix; the ONNX graph takes uint8 pixels, preprocessing inside.

`TASK` is the plug-in (pyproject.toml registers it in `kiln.task_types`).
"""

from tasks.core.plugins import ModuleTaskType
from tasks.core.validate_derive import TaskColumns
from tasks.types.image_classification.params import ImageParams

_HERE = "tasks.types.image_classification"

TASK = ModuleTaskType(
    name="image_classification",
    params=ImageParams,
    columns=lambda _params: TaskColumns(labels=True, images=True),
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
