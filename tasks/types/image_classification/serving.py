"""`POST /predict` for image classification (`kiln serve`): images in, classes out.

Request: `{"instances": [{"png_base64": "..."} | {"pixels": [[p, ...], ...]}], "model"?: ...}`,
a pixel `p` being a grey value 0..255 or a list of channel values ([R, G, B] or [R, G, B, A]);
`POST /predict/image` takes one raw PNG body. Every image, whatever its size and mode, is fitted
to the champion's input by `tasks.core.images.fit_image` with the card's `preprocessing` (size,
mode, fit, resampling, background), the function the clean stage fitted the training images with;
a model trained before `clean.image` existed (no fit in its card) takes grayscale images of its
exact size only (`GET /model` gives it), as then. Response: per image the most probable label,
its index and probability, and the softmax over all labels. The ONNX graph holds the
normalisation (export.py). No torch import.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, Field, PlainValidator, WithJsonSchema, model_validator

from serve.inputs import decode_instance, decode_png
from serve.schemas import ClassPrediction, Request, Strict, TaskSpec, class_predictions
from tasks.core.images import ImageFit

MAX_PNG_CHARS = 1 << 18  # base64 characters per image (192 KiB of PNG): far above 8x8 digits
MAX_SIDE = 4096  # pixels per row / rows per image, as validate's max_image_side bound

_VALUE = {"type": "integer", "minimum": 0, "maximum": 255}
_PIXEL_SCHEMA = {
    "anyOf": [_VALUE, {"type": "array", "items": _VALUE, "minItems": 1, "maxItems": 4}],
    "description": "A grey value, or the channel values [R, G, B] / [R, G, B, A].",
}


def _pixel(value: Any) -> int | list[int]:
    """Strict: no "7", 7.0, true or NaN; the error's loc is the pixel's own (no union member)."""

    def ok(v: Any) -> bool:
        return type(v) is int and 0 <= v <= 255

    if ok(value) or (type(value) is list and 1 <= len(value) <= 4 and all(map(ok, value))):
        return value
    raise ValueError("a pixel is an integer 0..255 or a list of 1, 3 or 4 of them (channels)")


Pixel = Annotated[Any, PlainValidator(_pixel), WithJsonSchema(_PIXEL_SCHEMA)]


class ImageInstance(Strict):
    """One image of any size and mode: exactly one of `png_base64` or `pixels`."""

    png_base64: str | None = Field(
        None,
        max_length=MAX_PNG_CHARS,
        description="A PNG file, base64-encoded (RFC 4648, no `data:` prefix); any PNG mode and "
        "size, fitted to the model's input as the clean stage did (GET /model).",
    )
    pixels: list[Annotated[list[Pixel], Field(max_length=MAX_SIDE)]] | None = Field(
        None,
        max_length=MAX_SIDE,
        description="Rows of pixels, each a grey value 0..255 (0 = black) or [R, G, B] / "
        "[R, G, B, A]; fitted to the model's input as a PNG is.",
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


def image_fit(card: dict[str, Any]) -> ImageFit:
    """How the model's images were fitted: the card's `preprocessing`; for a card from before
    `clean.image`, grayscale images of the config's exact size."""
    prep = card.get("preprocessing", {})
    if "fit" in prep:
        return ImageFit.from_json(prep)
    config = card["config"]
    return ImageFit(int(config["height"]), int(config["width"]), "L", "none")


def decode_images(request: Any, spec: ImageFit) -> np.ndarray:
    """uint8 (N, H, W) or (N, H, W, 3) as `spec` fits them; an InputError names
    `instances.<i>.<field>` on a bad image."""
    return np.stack(
        [decode_instance(inst, i, spec, MAX_SIDE) for i, inst in enumerate(request.instances)]
    )


def encode_classes(logits: np.ndarray, labels: list[str], version: str) -> BaseModel:
    return ImageClassificationResponse(
        model_version=version, predictions=class_predictions(logits, labels)
    )


def predict(request: Any, loaded: Any) -> BaseModel:
    pixels = decode_images(request, image_fit(loaded.card))
    return encode_classes(loaded.run(pixels), loaded.labels, loaded.version)


def predict_png(raw: bytes, loaded: Any) -> BaseModel:
    pixels = decode_png(raw, image_fit(loaded.card), ("body",), MAX_SIDE)
    return encode_classes(loaded.run(pixels[np.newaxis]), loaded.labels, loaded.version)


SPEC = TaskSpec(
    image_classification_request, ImageClassificationResponse, predict, predict_png=predict_png
)


def spec() -> TaskSpec:
    return SPEC
