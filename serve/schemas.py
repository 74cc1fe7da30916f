"""Request and response schemas of `POST /predict`, one pair per task type (`kiln serve`).

A task type is a `TaskSpec`: its request model (built for the server's batch limit, so OpenAPI at
/docs shows the real bounds), its response model and `predict` (validated request + the loaded model
-> the response: preprocessing, `loaded.run`, postprocessing). Image classification lives here;
every other task type has `serve/<task type>.py` with a `SPEC`, found by `task_spec`, and the app
serves the one the champion's registry entry names. Every model rejects unknown fields
(`extra="forbid"`) and wrong types (strict ints, no string to number coercion), so a bad request
fails with the path of the offending field.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from serve.images import decode_instance

# "champion", or a version name from the registry: never a path (no "/", no "..").
MODEL_NAME = r"^(champion|v[0-9]{4,9})$"
MAX_PNG_CHARS = 1 << 18  # base64 characters per image (192 KiB of PNG): far above 8x8 digits
MAX_SIDE = 4096  # pixels per row / rows per image, as validate's image_width/height bound

Pixel = Annotated[int, Field(ge=0, le=255, strict=True)]  # strict: no "7", 7.0, true or NaN


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ImageInstance(_Strict):
    """One grayscale image: exactly one of `png_base64` or `pixels`."""

    png_base64: str | None = Field(
        None,
        max_length=MAX_PNG_CHARS,
        description="A PNG file, base64-encoded (RFC 4648, no `data:` prefix); any PNG mode, "
        "converted to 8-bit grayscale as the clean stage does; must have the model's size.",
    )
    pixels: list[Annotated[list[Pixel], Field(max_length=MAX_SIDE)]] | None = Field(
        None,
        max_length=MAX_SIDE,
        description="Grayscale rows (height lists of width integers 0..255, 0 = black).",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> ImageInstance:
        if (self.png_base64 is None) == (self.pixels is None):
            raise ValueError("give exactly one of `png_base64` or `pixels`")
        return self


class _Request(_Strict):
    model: str = Field(
        "champion",
        pattern=MODEL_NAME,
        description="`champion` (the default), or a registry version such as `v0002`.",
    )


class ClassPrediction(_Strict):
    label: str = Field(description="The most probable class.")
    index: int = Field(description="Its index in `GET /model`'s `labels`.")
    probability: float = Field(description="Its softmax probability.")
    probabilities: list[float] = Field(description="Softmax over all labels, in label order.")


class ImageClassificationResponse(_Strict):
    task: Literal["image_classification"] = "image_classification"
    model_version: str = Field(description="The registry version that made the predictions.")
    predictions: list[ClassPrediction] = Field(description="One per instance, in order.")


def image_classification_request(max_batch: int) -> type[_Request]:
    class ImageClassificationRequest(_Request):
        """A batch of images (a single image is a batch of one)."""

        task: Literal["image_classification"] = "image_classification"
        instances: list[ImageInstance] = Field(
            min_length=1, max_length=max_batch, description=f"1 to {max_batch} images."
        )

    return ImageClassificationRequest


def decode_images(request: Any, height: int, width: int) -> np.ndarray:
    """uint8 (N, height, width); an InputError names `instances.<i>.<field>` on a bad image."""
    return np.stack(
        [decode_instance(inst, i, height, width) for i, inst in enumerate(request.instances)]
    )


def encode_classes(logits: np.ndarray, labels: list[str], version: str) -> BaseModel:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))  # stable softmax
    probs = shifted / shifted.sum(axis=1, keepdims=True)
    best = probs.argmax(axis=1)
    return ImageClassificationResponse(
        model_version=version,
        predictions=[
            ClassPrediction(
                label=labels[k], index=int(k), probability=float(p[k]), probabilities=p.tolist()
            )
            for k, p in zip(best, probs, strict=True)
        ],
    )


def _predict_images(request: Any, loaded: Any) -> BaseModel:
    pixels = decode_images(request, loaded.height, loaded.width)
    return encode_classes(loaded.run(pixels), loaded.labels, loaded.version)


@dataclass(frozen=True)
class TaskSpec:
    request: Callable[[int], type[BaseModel]]  # max_batch -> request model
    response: type[BaseModel]
    predict: Callable[[Any, Any], BaseModel]  # (validated request, serve.backends.LoadedModel)
    raw_image: bool = False  # also served as POST /predict/image with a raw PNG body


IMAGE_CLASSIFICATION = TaskSpec(
    image_classification_request,
    ImageClassificationResponse,
    _predict_images,
    raw_image=True,
)


def task_spec(task: str) -> TaskSpec:
    """The spec of `task`: image classification here, others from `serve/<task>.py` (SPEC)."""
    if task == "image_classification":
        return IMAGE_CLASSIFICATION
    try:
        module = importlib.import_module(f"serve.{task}")
    except ModuleNotFoundError:
        raise LookupError(f"no HTTP schema for task type {task!r}") from None
    return module.SPEC
