"""Text classification's params: a Transformer from scratch or the pretrained MiniLM."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from tasks.core.params import ClassificationParams, TextTaskCleanParams, TransformerTrainParams


class TextClassificationTrainParams(TransformerTrainParams):
    model: Literal["transformer", "minilm"] = Field(
        "transformer",
        description="transformer: an encoder trained from scratch; minilm: the pretrained "
        "MiniLM fine-tuned (its own tokenizer).",
    )

    @model_validator(mode="after")
    def _tokenizer_fits_model(self) -> TextClassificationTrainParams:
        if (self.model == "minilm") != (self.text.tokenizer == "minilm"):
            raise ValueError(
                f"train.text.tokenizer {self.text.tokenizer!r} does not match train.model "
                f"{self.model!r}: the pretrained MiniLM needs its own tokenizer 'minilm', "
                "and only it"
            )
        return self


class TextClassificationParams(ClassificationParams):
    clean: TextTaskCleanParams = TextTaskCleanParams()
    train: TextClassificationTrainParams = TextClassificationTrainParams()
