"""A toy task type, added by tests/e2e/test_extension.py as a user would add one: this package
copied to tasks/types/toy_regression/ and registered in the `kiln.task_types` entry-point group.
It learns one number, the mean of a series' train values, and reports MAE against it."""

from typing import ClassVar, Literal

from pydantic import Field

from tasks.core.params import Params, TrainParams
from tasks.core.plugins import ModuleTaskType
from tasks.core.validate_derive import TaskColumns


class ToyTrainParams(TrainParams):
    model: Literal["constant"] = Field("constant", description="Predicts the train mean.")
    value_column: str = Field("value", description="The crawled field holding the value.")


class ToyParams(Params):
    HEADLINE_METRICS: ClassVar[tuple[str, ...]] = ("mae",)

    train: ToyTrainParams = ToyTrainParams()


_STAGES = "tasks.types.toy_regression.stages"

TASK = ModuleTaskType(
    name="toy_regression",
    params=ToyParams,
    # the crawled CO2 table: a week and a float value per row (validate checks both)
    columns=lambda params: TaskColumns(time_column="week", value_column=params.train.value_column),
    implementation={
        name: f"{_STAGES}:{name}"
        for name in ("clean", "train", "evaluate", "export", "test_metrics", "serving",
                     "torch_runner")
    },
)
