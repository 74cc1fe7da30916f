"""Request and response schemas of `POST /predict`, one pair per task type (`kiln serve`).

A task type is a `TaskSpec`: its request model (built for the server's batch limit, so OpenAPI at
/docs shows the real bounds), its response model and `predict` (validated request + the loaded model
-> the response: preprocessing, `loaded.run`, postprocessing). Each task-type plug-in defines its
spec in its `serving` module from the shared parts here (Strict, Request, ClassPrediction); the
app serves the one the champion's registry entry names (`task_spec`). Every model rejects unknown
fields (`extra="forbid"`) and wrong types (strict ints, no string to number coercion), so a bad
request fails with the path of the offending field.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from tasks.core.plugins import task_type

# "champion", or a version name from the registry: never a path (no "/", no "..").
MODEL_NAME = r"^(champion|v[0-9]{4,9})$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Request(Strict):
    """The fields of every task type's request body."""

    model: str = Field(
        "champion",
        pattern=MODEL_NAME,
        description="`champion` (the default), or a registry version such as `v0002`.",
    )


class ClassPrediction(Strict):
    label: str = Field(description="The most probable class.")
    index: int = Field(description="Its index in `GET /model`'s `labels`.")
    probability: float = Field(description="Its softmax probability.")
    probabilities: list[float] = Field(description="Softmax over all labels, in label order.")


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of float logits (N, K), shifted for stability."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def class_predictions(logits: np.ndarray, labels: list[str]) -> list[ClassPrediction]:
    """One ClassPrediction per row of logits (N, K): the most probable label and the softmax."""
    probs = softmax(np.asarray(logits))
    return [
        ClassPrediction(
            label=labels[k], index=int(k), probability=float(p[k]), probabilities=p.tolist()
        )
        for k, p in zip(probs.argmax(axis=1), probs, strict=True)
    ]


@dataclass(frozen=True)
class TaskSpec:
    request: Callable[[int], type[BaseModel]]  # max_batch -> request model
    response: type[BaseModel]
    predict: Callable[[Any, Any], BaseModel]  # (validated request, serve.backends.LoadedModel)
    # Also served as POST /predict/image: one image as the raw PNG body -> the response.
    predict_png: Callable[[bytes, Any], BaseModel] | None = None


def task_spec(task: str) -> TaskSpec:
    """The serving spec of the task type `task` (LookupError if none is registered)."""
    return task_type(task).serving()
