"""`POST /predict` for image classification (`kiln serve`): grayscale images in, classes out.

Request: `{"instances": [{"png_base64": "..."} | {"pixels": [[0..255, ...], ...]}], "model"?: ...}`
of the champion's image size (`GET /model`); `POST /predict/image` takes one raw PNG body.
Response: per image the most probable label, its index and probability, and the softmax over all
labels. The ONNX graph holds the preprocessing (export.py), so serving sends uint8 pixels as the
clean stage decoded them (serve/inputs.py). No torch import.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, Field, model_validator

from serve.inputs import decode_instance, decode_png
from serve.schemas import ClassPrediction, Request, Strict, TaskSpec, class_predictions

MAX_PNG_CHARS = 1 << 18  # base64 characters per image (192 KiB of PNG): far above 8x8 digits
MAX_SIDE = 4096  # pixels per row / rows per image, as validate's image_width/height bound

Pixel = Annotated[int, Field(ge=0, le=255, strict=True)]  # strict: no "7", 7.0, true or NaN


class ImageInstance(Strict):
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


class ImageClassificationResponse(Strict):
    task: Literal["image_classification"] = "image_classification"
    model_version: str = Field(description="The registry version that made the predictions.")
    predictions: list[ClassPrediction] = Field(description="One per instance, in order.")


def image_classification_request(max_batch: int) -> type[Request]:
    class ImageClassificationRequest(Request):
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
    return ImageClassificationResponse(
        model_version=version, predictions=class_predictions(logits, labels)
    )


def _size(loaded: Any) -> tuple[int, int]:
    config = loaded.card["config"]
    return int(config["height"]), int(config["width"])


def predict(request: Any, loaded: Any) -> BaseModel:
    pixels = decode_images(request, *_size(loaded))
    return encode_classes(loaded.run(pixels), loaded.labels, loaded.version)


def predict_png(raw: bytes, loaded: Any) -> BaseModel:
    pixels = decode_png(raw, *_size(loaded), ("body",))
    return encode_classes(loaded.run(pixels[np.newaxis]), loaded.labels, loaded.version)


SPEC = TaskSpec(
    image_classification_request, ImageClassificationResponse, predict, predict_png=predict_png
)


def spec() -> TaskSpec:
    return SPEC
