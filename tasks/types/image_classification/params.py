"""Image classification's params: the CNN's knobs, the expected image size, near duplicates."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tasks.core.params import (
    ClassificationParams,
    CleanParams,
    NearDuplicateParams,
    TrainParams,
    ValidateParams,
)


class ImageValidateParams(ValidateParams):
    image_width: int = Field(ge=1, le=4096, description="Expected image width in pixels.")
    image_height: int = Field(ge=1, le=4096, description="Expected image height in pixels.")


class ImageCleanParams(CleanParams):
    near_duplicates: NearDuplicateParams = Field(
        NearDuplicateParams(), description="Near-duplicate images (perceptual hash)."
    )


class ImageTrainParams(TrainParams):
    model: Literal["cnn"] = Field("cnn", description="Architecture: the CNN (models.py).")
    # 32 reaches ~98% val accuracy on the 8x8 digits; the width doubles in the second block.
    channels: int = Field(32, ge=1, le=1024, description="Width of the first conv layer.")
    dropout: float = Field(0.2, ge=0.0, lt=1.0, description="Dropout before the classifier.")


class ImageParams(ClassificationParams):
    validate_: ImageValidateParams = Field(alias="validate")
    clean: ImageCleanParams = ImageCleanParams()
    train: ImageTrainParams = ImageTrainParams()
