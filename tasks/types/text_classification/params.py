"""Text classification's params: a linear model on a bag of tokens (the default), the pretrained
MiniLM fine-tuned, or a Transformer from scratch; the tokenizer follows the model unless named,
and MiniLM gets fine-tuning defaults of its own."""

from __future__ import annotations

from typing import Any, Literal

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


# Fine-tuning a pretrained encoder wants a small step and batch (BERT's 2e-5..5e-5, 16-32); the
# generic defaults (lr 3e-3, batch 64) left MiniLM at chance on both text test sites (macro-F1
# 0.02 and 0.05 after 2 epochs). A key the file sets wins over these.
MINILM_DEFAULTS = {
    "lr": 5e-5, "batch_size": 16, "weight_decay": 0.01, "dropout": 0.1, "schedule": "cosine",
    "warmup_steps": 20, "epochs": 6, "patience": 2,
}  # fmt: skip
MINILM_MAX_LEN = 64  # word pieces incl. [CLS] and [SEP]: a step costs ~max_len on a CPU


class TextClassificationTrainParams(TransformerTrainParams):
    model: Literal["minilm", "transformer", "linear"] = Field(
        "linear",
        description="linear: logistic regression on the bag of tokens and hashed token bigrams "
        "(weight_decay is its L2 penalty; seconds to train, beat the TF-IDF baseline on every "
        "text site measured); minilm: the pretrained MiniLM fine-tuned (its own tokenizer and "
        "fine-tuning defaults; ~16 min an epoch of 1,500 texts on 2 CPU cores: for a GPU); "
        "transformer: an encoder trained from scratch (d_model, layers, heads, dropout; larger "
        "data, or no pretrained model for the language). See docs/models.md.",
    )
    text: TextClassificationTextParams = Field(
        TextClassificationTextParams(), description="Tokenisation."
    )

    @model_validator(mode="before")
    @classmethod
    def _minilm_defaults(cls, data: Any) -> Any:
        """MINILM_DEFAULTS (and a max_len of MINILM_MAX_LEN) for the keys a minilm file leaves
        out; `kiln check --write` then writes them into the file."""
        if not isinstance(data, dict) or data.get("model") != "minilm":
            return data
        text = data.get("text")
        if text is None or isinstance(text, dict) and "max_len" not in text:
            data = {**data, "text": {**(text or {}), "max_len": MINILM_MAX_LEN}}
        return {**MINILM_DEFAULTS, **data}

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
