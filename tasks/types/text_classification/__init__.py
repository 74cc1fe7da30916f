"""Text classification: texts with a label -> the pretrained MiniLM fine-tuned (the default), a
Transformer encoder from scratch, or logistic regression on a bag of tokens (`train.model:
linear`) -> accuracy, macro-F1, per-class precision/recall and a confusion matrix; the ONNX graph
takes token ids, serving tokenises as training did.

`TASK` is the plug-in (pyproject.toml registers it in `kiln.task_types`).
"""

from tasks.core.columns import TaskColumns
from tasks.core.plugins import ModuleTaskType
from tasks.types.text_classification.params import TextClassificationParams

_STAGES = "tasks.types.text_classification.stages"

TASK = ModuleTaskType(
    name="text_classification",
    params=TextClassificationParams,
    columns=lambda params: TaskColumns(labels=True, text=params.clean.text),
    implementation={
        "clean": f"{_STAGES}:clean_stage",
        "train": f"{_STAGES}:train_stage",
        "evaluate": f"{_STAGES}:evaluate_stage",
        "export": f"{_STAGES}:export_stage",
        "test_metrics": f"{_STAGES}:test_metrics",
        "serving": "tasks.types.text_classification.serving:spec",
        "torch_runner": f"{_STAGES}:torch_runner",
    },
)
