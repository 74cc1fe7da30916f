"""Text generation's params: a small decoder-only Transformer or LSTM and the samples evaluate
writes."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

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


# The LSTM's defaults where the file is silent: one wide layer with heavy dropout, as for small
# corpora. On the jokes board (66 KB of training text) they reached test perplexity 6.632 vs
# 6.865 for the Kneser-Ney 6-gram baseline; dropout 0.3 overfit (6.929), and the Transformer
# (d_model 128, 4 layers) lost at 8.26 (examples/jokes_generation.params.yaml, docs/models.md).
CHAR_LSTM_DEFAULTS = {
    "d_model": 384, "layers": 1, "dropout": 0.45, "epochs": 20, "patience": 3, "batch_size": 16,
    "lr": 3e-3, "weight_decay": 0.01, "schedule": "cosine", "warmup_steps": 50, "grad_clip": 1.0,
}  # fmt: skip


class GenerationTrainParams(TransformerTrainParams):
    model: Literal["char_lstm", "char_transformer"] = Field(
        "char_lstm",
        description="char_lstm (the default): an LSTM (d_model hidden units, `layers` layers; "
        "heads unused) with defaults of its own for the keys the file leaves out; "
        "char_transformer: a decoder-only character/byte-level Transformer (lost to the "
        "n-gram baseline on 66 KB of jokes: for larger corpora). See docs/models.md.",
    )

    @model_validator(mode="before")
    @classmethod
    def _char_lstm_defaults(cls, data: Any) -> Any:
        """CHAR_LSTM_DEFAULTS for the keys an LSTM file (or one silent about the model) leaves
        out; `kiln check --write` then writes them into the file."""
        if not isinstance(data, dict) or data.get("model", "char_lstm") != "char_lstm":
            return data
        return {**CHAR_LSTM_DEFAULTS, **data}


class TextGenerationParams(Params):
    HEADLINE_METRICS: ClassVar[tuple[str, ...]] = ("val_loss", "perplexity")

    clean: TextTaskCleanParams = TextTaskCleanParams()
    train: GenerationTrainParams = GenerationTrainParams()
    evaluate: GenerationEvaluateParams = GenerationEvaluateParams()
