"""The text classifiers: `transformer_encoder`, trained from scratch (token ids (N, T) int64 ->
logits (N, n_classes); ids equal to `pad_id` are masked out of attention and of the mean pool), and
`minilm`, the pretrained MiniLM fine-tuned (tasks/types/text_classification/minilm.py). Configs
are frozen dataclasses saved as plain JSON in the model card.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from tasks.core.models import ModelError, check_config
from tasks.types.text_classification.minilm import MiniLMClassifier, MiniLMConfig


@dataclass(frozen=True)
class TextClassifierConfig:
    vocab_size: int = 256  # byte-level by default: no vocabulary file to ship
    max_len: int = 256  # tokens; learned positions, longer inputs are refused
    n_classes: int = 2
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    dropout: float = 0.1
    pad_id: int = 0  # byte 0 never occurs in UTF-8 text

    def __post_init__(self) -> None:
        names = ("vocab_size", "max_len", "n_classes", "d_model", "n_heads", "n_layers")
        check_config(self, names, self.dropout)
        if self.d_model % self.n_heads:
            raise ModelError(f"config.d_model {self.d_model} not divisible by n_heads")


class TransformerClassifier(nn.Module):
    """Pre-LN Transformer encoder, masked mean pool over non-pad tokens, linear classifier."""

    def __init__(self, config: TextClassifierConfig) -> None:
        super().__init__()
        self.config = config
        d = config.d_model
        self.tok = nn.Embedding(config.vocab_size, d)
        self.pos = nn.Embedding(config.max_len, d)
        layer = nn.TransformerEncoderLayer(
            d, config.n_heads, 4 * d, config.dropout, batch_first=True, norm_first=True
        )
        # nested tensors are a fast path for inference only and warn with norm_first
        self.encoder = nn.TransformerEncoder(layer, config.n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, config.n_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        t = ids.shape[1]
        if t > self.config.max_len:
            raise ModelError(f"input has {t} tokens, config.max_len is {self.config.max_len}")
        pad = ids.eq(self.config.pad_id)
        pad = pad & ~pad.all(1, keepdim=True)  # an all-pad row attends to all: no NaN softmax
        h = self.tok(ids) + self.pos(torch.arange(t, device=ids.device))
        h = self.norm(self.encoder(h, src_key_padding_mask=pad))
        keep = (~pad).unsqueeze(-1).to(h.dtype)
        return self.head((h * keep).sum(1) / keep.sum(1).clamp(min=1.0))


ARCHITECTURES: dict[str, tuple[type, type[nn.Module]]] = {
    "transformer_encoder": (TextClassifierConfig, TransformerClassifier),
    "minilm": (MiniLMConfig, MiniLMClassifier),  # pretrained, fine-tuned
}
