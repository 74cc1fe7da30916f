"""Image classification's params: the model (cnn or linear) and the CNN's knobs, the image sizes
validate accepts, how clean fits every image to the model's input (`clean.image`), near
duplicates."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from tasks.core.params import (
    ClassificationParams,
    CleanParams,
    NearDuplicateParams,
    TrainParams,
    ValidateParams,
    _Section,
)

MAX_SIDE = 4096  # pixels per side, the most validate, clean and serving accept


class ImageValidateParams(ValidateParams):
    image_width: int | None = Field(
        None,
        ge=1,
        le=MAX_SIDE,
        description="Exact width every image must have; null: any width from min_image_side to "
        "max_image_side (clean.image fits it).",
    )
    image_height: int | None = Field(
        None, ge=1, le=MAX_SIDE, description="Exact height, as image_width."
    )
    min_image_side: int = Field(
        1, ge=1, le=MAX_SIDE, description="Smallest width or height accepted, in pixels."
    )
    max_image_side: int = Field(
        MAX_SIDE, ge=1, le=MAX_SIDE, description="Largest width or height accepted, in pixels."
    )

    @model_validator(mode="after")
    def _range(self) -> ImageValidateParams:
        if self.min_image_side > self.max_image_side:
            raise ValueError(
                f"validate.min_image_side {self.min_image_side} is above max_image_side "
                f"{self.max_image_side}"
            )
        return self


class ImagePreprocessParams(_Section):
    """How clean fits every image to the model's input; recorded in data/clean and the model
    card, and applied by `kiln serve` to every request image (tasks/core/images.py)."""

    height: int | None = Field(
        None,
        ge=1,
        le=MAX_SIDE,
        description="Target height in pixels; null: the most common height x width of the images.",
    )
    width: int | None = Field(
        None, ge=1, le=MAX_SIDE, description="Target width in pixels; null: as height."
    )
    mode: Literal["auto", "L", "RGB"] = Field(
        "auto",
        description="L: grayscale (1 channel); RGB: colour (3); auto: RGB if any image has "
        "colour, else L. Transparency (RGBA) is flattened onto `background`.",
    )
    fit: Literal["pad", "resize", "crop", "none"] = Field(
        "pad",
        description="Images of another size: pad (scale to fit, keep the aspect ratio, pad with "
        "`background`), resize (stretch), crop (scale to cover, keep the centre), none (reject).",
    )
    resample: Literal["nearest", "box", "bilinear", "hamming", "bicubic", "lanczos"] = Field(
        "bilinear", description="Pillow's resampling filter for pad, resize and crop."
    )
    background: tuple[int, int, int] = Field(
        (0, 0, 0), description="RGB 0..255 behind transparent pixels and in the padding."
    )
    normalise: Literal["dataset", "unit"] = Field(
        "dataset",
        description="dataset: (x/255 - mean) / std with each channel's mean and std over the "
        "train split; unit: x/255. Inside the model (and its ONNX graph).",
    )

    @model_validator(mode="after")
    def _both_or_neither(self) -> ImagePreprocessParams:
        if (self.height is None) != (self.width is None):
            raise ValueError("clean.image: give both height and width, or neither")
        if any(not 0 <= v <= 255 for v in self.background):
            raise ValueError(f"clean.image.background: 3 values in 0..255, got {self.background}")
        return self


class ImageCleanParams(CleanParams):
    image: ImagePreprocessParams = Field(
        ImagePreprocessParams(), description="How every image is fitted to the model's input."
    )
    near_duplicates: NearDuplicateParams = Field(
        NearDuplicateParams(), description="Near-duplicate images (perceptual hash)."
    )


class ImageTrainParams(TrainParams):
    model: Literal["cnn", "linear"] = Field(
        "cnn",
        description="cnn: the convolutional network (models.py); linear: logistic regression on "
        "the image averaged down to at most 16 px a side (evaluate's classical baseline as a "
        "model that exports and serves like the CNN; weight_decay is its L2 penalty). See "
        "docs/models.md.",
    )
    # 32 reaches ~98% val accuracy on the 8x8 digits; the width doubles in the second block.
    channels: int = Field(32, ge=1, le=1024, description="cnn: width of the first conv layer.")
    dropout: float = Field(0.2, ge=0.0, lt=1.0, description="cnn: dropout before the classifier.")


class ImageParams(ClassificationParams):
    validate_: ImageValidateParams = Field(alias="validate")
    clean: ImageCleanParams = ImageCleanParams()
    train: ImageTrainParams = ImageTrainParams()

    @model_validator(mode="after")
    def _sizes_agree(self) -> ImageParams:
        """With fit none, images must already have clean.image's size: validate may not ask for
        another exact size."""
        image, check = self.clean.image, self.validate_
        if image.fit != "none" or image.height is None:
            return self
        for side, want in (("width", image.width), ("height", image.height)):
            exact = getattr(check, f"image_{side}")
            if exact is not None and exact != want:
                raise ValueError(
                    f"validate.image_{side} {exact} but clean.image.{side} {want} with "
                    "clean.image.fit none: no image could pass both"
                )
        return self
