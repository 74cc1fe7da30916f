"""Text generation: texts -> a small decoder-only Transformer -> test loss, perplexity and sample
generations; the ONNX graph takes token ids and returns next-token logits.

`TASK` is the plug-in (pyproject.toml registers it in `kiln.task_types`).
"""

from tasks.core.columns import TaskColumns
from tasks.core.plugins import ModuleTaskType
from tasks.types.text_generation.params import TextGenerationParams

_STAGES = "tasks.types.text_generation.stages"

TASK = ModuleTaskType(
    name="text_generation",
    params=TextGenerationParams,
    columns=lambda params: TaskColumns(text=params.clean.text),
    implementation={
        "clean": f"{_STAGES}:clean_stage",
        "train": f"{_STAGES}:train_stage",
        "evaluate": f"{_STAGES}:evaluate_stage",
        "export": f"{_STAGES}:export_stage",
        "test_metrics": f"{_STAGES}:test_metrics",
        "serving": "tasks.types.text_generation.serving:spec",
        "torch_runner": f"{_STAGES}:torch_runner",
    },
)
