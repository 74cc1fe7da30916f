"""The language models of text generation, ids (N, T) -> next-token logits (N, T, vocab_size):

* `char_transformer`: a decoder-only character/byte-level Transformer, causal attention
  (`F.scaled_dot_product_attention(is_causal=True)`).
* `char_lstm`: an embedding, an LSTM and a linear head (Karpathy's char-rnn), each window read
  from a zero state. On small corpora it learns faster and generalises better than the
  Transformer: on the jokes (66 KB) it beats the Kneser-Ney 6-gram where the Transformer does
  not (examples/jokes_generation.params.yaml).

Each config is a frozen dataclass saved as plain JSON in the model card.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812 (the usual torch alias)
from torch import nn

from tasks.core.models import ModelError, check_config


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
        check_config(self, names, self.dropout)
        if self.d_model % self.n_heads:
            raise ModelError(f"config.d_model {self.d_model} not divisible by n_heads")


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
            raise ModelError(f"input has {t} tokens, block_size is {self.config.block_size}")
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


@dataclass(frozen=True)
class CharLSTMConfig:
    vocab_size: int = 256  # bytes
    block_size: int = 128  # the window it trains on, and the context evaluate and serving give it
    d_model: int = 256  # embedding width and LSTM hidden size
    n_layers: int = 1
    dropout: float = 0.25  # on the embeddings, between LSTM layers and before the head

    def __post_init__(self) -> None:
        check_config(self, ("vocab_size", "block_size", "d_model", "n_layers"), self.dropout)


class CharLSTM(nn.Module):
    """Embedding -> LSTM (batch_first, zero initial state) -> linear head over the ids."""

    def __init__(self, config: CharLSTMConfig) -> None:
        super().__init__()
        self.config = config
        d = config.d_model
        self.tok = nn.Embedding(config.vocab_size, d)
        self.drop = nn.Dropout(config.dropout)
        between = config.dropout if config.n_layers > 1 else 0.0
        self.lstm = nn.LSTM(d, d, config.n_layers, batch_first=True, dropout=between)
        self.head = nn.Linear(d, config.vocab_size)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        t = ids.shape[1]
        if t > self.config.block_size:
            raise ModelError(f"input has {t} tokens, block_size is {self.config.block_size}")
        h, _ = self.lstm(self.drop(self.tok(ids)))
        return self.head(self.drop(h))


ARCHITECTURES: dict[str, tuple[type, type[nn.Module]]] = {
    "char_transformer": (CharTransformerConfig, CharTransformer),
    "char_lstm": (CharLSTMConfig, CharLSTM),
}
