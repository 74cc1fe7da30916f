"""Which code runs each stage for each task type (`project.task` in params.yaml).

Image classification is implemented by the stage modules themselves (`tasks/clean.py`,
`tasks/train.py`, ...). Every other task type has one module, `tasks/kinds/<task type>.py`, that the
stage modules hand over to after reading params; it defines one function per stage:

    clean_stage(params) -> int       data/validated -> data/clean/, data/quarantine/clean.jsonl,
                                     reports/clean.json, reports/label_issues.csv
    train_stage(params) -> int       data/clean -> models/ (card.json + model.safetensors),
                                     reports/train/ (DVCLive)
    evaluate_stage(params) -> int    models/ + data/clean -> reports/metrics.json,
                                     reports/evaluation/ (plots, samples)
    export_stage(params) -> int      models/ -> export/model.onnx + export/onnx.json
    test_metrics(model_dir, params) -> dict   the headline metrics of the model in `model_dir` on
                                     the current data/clean test split (promote measures the
                                     champion with it; evaluate writes the same keys)

Each returns the process exit code (0 ok, 1 failed with a logged reason), like the stage mains.
The stage, the data contract and the DVC outputs stay the same whichever task type runs, so
`dvc repro`, the Prefect flow and the tests see one pipeline.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tasks.params import Params

STAGES = ("clean", "train", "evaluate", "export")
# The headline metric of each task type and whether higher is better (promote's comparisons).
HIGHER_IS_BETTER = {
    "accuracy": True,
    "macro_f1": True,
    "mae": False,
    "rmse": False,
    "mape": False,
    "val_loss": False,
    "perplexity": False,
}


def task_module(task: str) -> ModuleType | None:
    """`tasks.kinds.<task>` for every task type but images (None: the stage's own code)."""
    if task == "image_classification":
        return None
    return importlib.import_module(f"tasks.kinds.{task}")


def stage_for(params: Params, stage: str) -> Callable[[Params], int] | None:
    """The task type's implementation of `stage`, or None when the stage module does it itself."""
    module = task_module(params.project.task)
    return None if module is None else getattr(module, f"{stage}_stage")


def run_stage(params: Params, stage: str) -> int | None:
    """Run the task type's `stage` and return its exit code; None for image classification."""
    implementation = stage_for(params, stage)
    return None if implementation is None else implementation(params)


def test_metrics(task: str, model_dir: Any, params: Params) -> dict[str, Any]:
    module = task_module(task)
    if module is None:
        raise ValueError("image classification is measured by tasks.evaluate.evaluate_model")
    return module.test_metrics(model_dir, params)
