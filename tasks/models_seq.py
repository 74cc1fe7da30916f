"""Sequence networks, registered in `tasks.models.build_model` and trained by `tasks.engine.fit`.

Each architecture has a small frozen config dataclass next to its module (nanoGPT style), saved as
plain JSON in the model card, so `tasks.models.load_model` rebuilds it without pickle:

* `lstm`, `gru`: forecaster, float (N, window, n_features) -> (N, horizon) next values of
  feature 0 (the target); any window length.
* `transformer_encoder`: text classifier trained from scratch, token ids (N, T) int64 -> logits
  (N, n_classes); ids equal to `pad_id` are masked out of attention and of the mean pool.
* `char_transformer`: decoder-only character/byte-level language model, ids (N, T) -> next-token
  logits (N, T, vocab_size), causal attention (`F.scaled_dot_product_attention(is_causal=True)`).
Needs only torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812 (the usual torch alias)
from torch import nn


def _error(message: str) -> ValueError:
    """A tasks.models.ModelError (imported late: tasks.models imports this module)."""
    from tasks.models import ModelError  # noqa: PLC0415

    return ModelError(message)


def _check(config: object, positive: tuple[str, ...], dropout: float) -> None:
    for name in positive:
        value = getattr(config, name)
        if not isinstance(value, int) or value < 1:
            raise _error(f"config.{name} must be a positive integer, got {value!r}")
    if not 0.0 <= dropout < 1.0:
        raise _error(f"config.dropout must be in [0, 1), got {dropout!r}")


@dataclass(frozen=True)
class RNNConfig:
    n_features: int = 1  # inputs per time step; feature 0 is the forecast target
    horizon: int = 1  # future steps predicted at once (direct multi-step: no error feedback)
    hidden: int = 64  # 64 units fit a seasonal monthly series (CO2) with ~17k parameters
    layers: int = 1
    dropout: float = 0.0  # between stacked layers only (torch ignores it for 1 layer)

    def __post_init__(self) -> None:
        _check(self, ("n_features", "horizon", "hidden", "layers"), self.dropout)


class _RNNForecaster(nn.Module):
    cell: type[nn.LSTM] | type[nn.GRU]

    def __init__(self, config: RNNConfig) -> None:
        super().__init__()
        self.config = config
        self.rnn = self.cell(
            config.n_features,
            config.hidden,
            num_layers=config.layers,
            dropout=config.dropout if config.layers > 1 else 0.0,
            batch_first=True,
        )
        self.head = nn.Linear(config.hidden, config.horizon)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(out[:, -1])  # the last step's state summarises the window


class LSTMForecaster(_RNNForecaster):
    cell = nn.LSTM


class GRUForecaster(_RNNForecaster):
    cell = nn.GRU


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
        _check(self, names, self.dropout)
        if self.d_model % self.n_heads:
            raise _error(f"config.d_model {self.d_model} not divisible by n_heads")


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
            raise _error(f"input has {t} tokens, config.max_len is {self.config.max_len}")
        pad = ids.eq(self.config.pad_id)
        pad = pad & ~pad.all(1, keepdim=True)  # an all-pad row attends to all: no NaN softmax
        h = self.tok(ids) + self.pos(torch.arange(t, device=ids.device))
        h = self.norm(self.encoder(h, src_key_padding_mask=pad))
        keep = (~pad).unsqueeze(-1).to(h.dtype)
        return self.head((h * keep).sum(1) / keep.sum(1).clamp(min=1.0))


@dataclass(frozen=True)
class CharTransformerConfig:
    vocab_size: int = 256  # bytes
    block_size: int = 128  # context length in tokens (nanoGPT shakespeare_char uses 256)
    d_model: int = 128
    n_heads: int = 4
    n_layers: int = 4
    dropout: float = 0.0  # nanoGPT: 0 for pretraining-size data, 0.2 for tiny corpora

    def __post_init__(self) -> None:
        names = ("vocab_size", "block_size", "d_model", "n_heads", "n_layers")
        _check(self, names, self.dropout)
        if self.d_model % self.n_heads:
            raise _error(f"config.d_model {self.d_model} not divisible by n_heads")


class _Block(nn.Module):
    def __init__(self, config: CharTransformerConfig) -> None:
        super().__init__()
        d, self.n_heads, self.dropout = config.d_model, config.n_heads, config.dropout
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(
            nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d), nn.Dropout(config.dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(n, t, 3, self.n_heads, d // self.n_heads).unbind(2)
        q, k, v = (z.transpose(1, 2) for z in (q, k, v))  # (N, heads, T, head_dim)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(n, t, d))
        return x + self.mlp(self.ln2(x))


class CharTransformer(nn.Module):
    """nanoGPT's GPT, minus weight tying (safetensors refuses tensors that share memory)."""

    def __init__(self, config: CharTransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.tok = nn.Embedding(config.vocab_size, config.d_model)
        self.pos = nn.Embedding(config.block_size, config.d_model)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(_Block(config) for _ in range(config.n_layers))
        self.ln_f = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        t = ids.shape[1]
        if t > self.config.block_size:
            raise _error(f"input has {t} tokens, block_size is {self.config.block_size}")
        x = self.drop(self.tok(ids) + self.pos(torch.arange(t, device=ids.device)))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))

    @torch.inference_mode()
    def generate(
        self,
        ids: torch.Tensor,
        new_tokens: int,
        *,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Append `new_tokens` sampled tokens to ids (N, T); temperature 0 = greedy."""
        self.eval()
        for _ in range(new_tokens):
            logits = self(ids[:, -self.config.block_size :])[:, -1].float()
            if temperature == 0:
                nxt = logits.argmax(-1, keepdim=True)
            else:
                probs = F.softmax(logits / temperature, -1)
                nxt = torch.multinomial(probs, 1, generator=generator)
            ids = torch.cat([ids, nxt], 1)
        return ids


# name -> (config class, model class), merged into tasks.models.ARCHITECTURES
SEQ_ARCHITECTURES: dict[str, tuple[type, type[nn.Module]]] = {
    "lstm": (RNNConfig, LSTMForecaster),
    "gru": (RNNConfig, GRUForecaster),
    "transformer_encoder": (TextClassifierConfig, TransformerClassifier),
    "char_transformer": (CharTransformerConfig, CharTransformer),
}
