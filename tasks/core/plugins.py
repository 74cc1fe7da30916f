"""Task types are plug-ins: what one task type is, and how the core finds one by name.

A task type (image classification, forecasting, ...) is one package that exports one object
implementing `TaskType`, registered under its name in the `kiln.task_types` entry-point group.
pyproject.toml registers the four that ship with Kiln; another package (or a test) registers its
own the same way, with no edit to the core or the stages:

    [project.entry-points."kiln.task_types"]
    image_classification = "tasks.types.image_classification:TASK"

`project.task` in params.yaml names the plug-in. The stage modules (`python -m tasks.<stage>`)
load params, look the plug-in up with `task_type(name)` and call its method for the stage; nothing
outside a plug-in branches on the task type. Entry points are the packaging standard for this
(pytest, Prefect and DVC find their plug-ins the same way), so a registration survives into the
stage subprocesses that DVC starts, which a registry filled at import time would not.

A plug-in package's `__init__` must import neither torch nor pandas: `kiln serve` on the ONNX
backend and `kiln check` look plug-ins up on hosts and in processes that do not train.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np

    from serve.schemas import TaskSpec
    from tasks.core.params import Params
    from tasks.core.validate_derive import TaskColumns

ENTRY_POINT_GROUP = "kiln.task_types"


class UnknownTaskType(LookupError):
    """project.task names no registered task type; the message lists the known ones."""


class TaskType(Protocol):
    """One task type. Each stage method returns the stage's exit code (0 ok, 1 failed with the
    reason logged) and reads and writes the same paths whatever the task type, so dvc.yaml, the
    flow and the tests see one pipeline:

        clean      data/validated -> data/clean/, data/quarantine/clean.jsonl, reports/clean.json,
                   reports/label_issues.csv
        train      data/clean -> models/ (card.json + model.safetensors), reports/train/ (DVCLive)
        evaluate   models/ + data/clean -> reports/metrics.json, reports/evaluation/
        export     models/ -> export/model.onnx + export/onnx.json
    """

    name: str  # the `project.task` value, equal to its entry-point name
    params: type[Params]  # its params model: sections of its own, e.g. `train.series`
    headline_metrics: tuple[str, ...]  # test metrics promote can compare (promote.metric)

    def columns(self, params: Params) -> TaskColumns:
        """The crawled columns its rows hold: the checks, derived columns and drift of validate."""
        ...

    def clean(self, params: Params) -> int: ...

    def train(self, params: Params) -> int: ...

    def evaluate(self, params: Params) -> int: ...

    def export(self, params: Params) -> int: ...

    def test_metrics(self, model_dir: Path, clean_dir: Path, params: Params) -> dict[str, Any]:
        """Headline metrics (and n_test) of the model in `model_dir` on the test split of
        `clean_dir` (data/clean): promote measures the champion with it; evaluate reports the
        same keys."""
        ...

    def serving(self) -> TaskSpec:
        """`POST /predict`'s request and response models and the predict function (no torch)."""
        ...

    def torch_runner(self, version_dir: Path) -> Callable[..., np.ndarray]:
        """The PyTorch twin of the exported ONNX graph (`kiln serve --backend torch`)."""
        ...


@functools.cache
def task_type(name: str) -> TaskType:
    """The registered task type called `name`; UnknownTaskType naming the known ones if none."""
    found = entry_points(group=ENTRY_POINT_GROUP, name=name)
    if not found:
        raise UnknownTaskType(
            f"project.task {name!r} is not a registered task type; known: {known_task_types()}"
        )
    plugin = next(iter(found)).load()
    if getattr(plugin, "name", None) != name:
        raise UnknownTaskType(
            f"entry point {name!r} of {ENTRY_POINT_GROUP} loads a task type named "
            f"{getattr(plugin, 'name', None)!r}: the two must agree"
        )
    return plugin


def known_task_types() -> list[str]:
    return sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})


@dataclass(frozen=True)
class ModuleTaskType:
    """A TaskType whose methods are functions of its own modules, each imported on first call
    (`implementation`: method name -> "module:function"), so looking the plug-in up imports
    neither torch nor pandas. The four built-in task types are built with it; a plug-in may as
    well implement TaskType as a class of its own."""

    name: str
    params: type[Params]
    columns: Callable[[Params], TaskColumns]
    implementation: Mapping[str, str]

    @property
    def headline_metrics(self) -> tuple[str, ...]:
        return self.params.HEADLINE_METRICS

    def _function(self, method: str) -> Callable[..., Any]:
        module, _, function = self.implementation[method].partition(":")
        return getattr(importlib.import_module(module), function)

    def clean(self, params: Params) -> int:
        return self._function("clean")(params)

    def train(self, params: Params) -> int:
        return self._function("train")(params)

    def evaluate(self, params: Params) -> int:
        return self._function("evaluate")(params)

    def export(self, params: Params) -> int:
        return self._function("export")(params)

    def test_metrics(self, model_dir: Path, clean_dir: Path, params: Params) -> dict[str, Any]:
        return self._function("test_metrics")(model_dir, clean_dir, params)

    def serving(self) -> TaskSpec:
        return self._function("serving")()

    def torch_runner(self, version_dir: Path) -> Callable[..., np.ndarray]:
        return self._function("torch_runner")(version_dir)
