"""Text generation's params: a small decoder-only Transformer or LSTM and the samples evaluate
writes."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from tasks.core.params import (
    EvaluateParams,
    Params,
    TextTaskCleanParams,
    TransformerTrainParams,
    _Section,
)


class GenerateParams(_Section):
    """Sample generations written with the text-generation report."""

    prompts: list[str] = Field(default_factory=lambda: [""], description="Each gets samples.")
    n_samples: int = Field(3, ge=1, le=100, description="Samples per prompt.")
    max_new_tokens: int = Field(120, ge=1, le=10_000, description="Tokens generated per sample.")
    temperature: float = Field(0.8, gt=0.0, le=10.0, description="Softmax temperature.")
    seed: int = Field(0, description="Sampling seed: same model, same samples.")


class GenerationEvaluateParams(EvaluateParams):
    generate: GenerateParams = Field(GenerateParams(), description="Sample generations.")


class GenerationTrainParams(TransformerTrainParams):
    model: Literal["char_transformer", "char_lstm"] = Field(
        "char_transformer",
        description="char_transformer: a decoder-only character/byte-level Transformer; "
        "char_lstm: an LSTM (d_model hidden units, `layers` layers; heads unused).",
    )


class TextGenerationParams(Params):
    HEADLINE_METRICS: ClassVar[tuple[str, ...]] = ("val_loss", "perplexity")

    clean: TextTaskCleanParams = TextTaskCleanParams()
    train: GenerationTrainParams = GenerationTrainParams()
    evaluate: GenerationEvaluateParams = GenerationEvaluateParams()
