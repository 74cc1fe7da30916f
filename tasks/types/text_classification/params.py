"""Text classification's params: the pretrained MiniLM fine-tuned (the default), a Transformer
from scratch, or a linear model on a bag of tokens; the tokenizer follows the model unless named."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from tasks.core.params import (
    ClassificationParams,
    TextModelParams,
    TextTaskCleanParams,
    TransformerTrainParams,
)

Tokenizer = Literal["char", "byte", "minilm"]
# The tokenizer of `auto`, per train.model: MiniLM has only its own; the from-scratch
# Transformer reads characters; the linear model's bag of WordPiece tokens (words and their
# pieces, lower-cased) and their bigrams is the closest to TF-IDF of word 1-2-grams.
AUTO_TOKENIZER: dict[str, Tokenizer] = {
    "minilm": "minilm",
    "transformer": "char",
    "linear": "minilm",
}
MODEL_TOKENIZERS: dict[str, tuple[Tokenizer, ...]] = {
    "minilm": ("minilm",),
    "transformer": ("char", "byte"),
    "linear": ("char", "byte", "minilm"),
}


class TextClassificationTextParams(TextModelParams):
    tokenizer: Literal["auto", "char", "byte", "minilm"] = Field(  # type: ignore[assignment]
        "auto",
        description="auto: the model's own (minilm: minilm; transformer: char; linear: minilm); "
        "char: the train split's most frequent characters; byte: UTF-8 bytes (256 ids); minilm: "
        "the WordPiece vocabulary of the pretrained MiniLM (models minilm and linear).",
    )


class TextClassificationTrainParams(TransformerTrainParams):
    model: Literal["minilm", "transformer", "linear"] = Field(
        "minilm",
        description="minilm: the pretrained MiniLM fine-tuned (its own tokenizer); transformer: "
        "an encoder trained from scratch (d_model, layers, heads, dropout; larger data, or no "
        "pretrained model for the language); linear: logistic regression on the bag of tokens "
        "and hashed token bigrams (weight_decay is its L2 penalty; choose it when evaluate's "
        "TF-IDF baseline beats the others). See docs/models.md.",
    )
    text: TextClassificationTextParams = Field(
        TextClassificationTextParams(), description="Tokenisation."
    )

    @property
    def tokenizer(self) -> Tokenizer:
        """train.text.tokenizer with `auto` resolved for train.model."""
        chosen = self.text.tokenizer
        return AUTO_TOKENIZER[self.model] if chosen == "auto" else chosen

    def text_settings(self) -> TextModelParams:
        """train.text with the tokenizer resolved (what `fit_tokenizer` reads)."""
        return TextModelParams(**{**self.text.model_dump(), "tokenizer": self.tokenizer})

    @model_validator(mode="after")
    def _tokenizer_fits_model(self) -> TextClassificationTrainParams:
        fits = MODEL_TOKENIZERS[self.model]
        if self.tokenizer not in fits:
            need = (
                "the pretrained MiniLM needs its own tokenizer 'minilm', and only it"
                if self.model == "minilm"
                else f"train.model {self.model!r} takes {' or '.join(map(repr, fits))}"
            )
            raise ValueError(
                f"train.text.tokenizer {self.tokenizer!r} does not match train.model "
                f"{self.model!r}: {need}"
            )
        return self


class TextClassificationParams(ClassificationParams):
    clean: TextTaskCleanParams = TextTaskCleanParams()
    train: TextClassificationTrainParams = TextClassificationTrainParams()
