"""Text generation's tokenizer and sampler: the part of text generation that serving shares.

* `Tokenizer` (byte or char, rebuilt from models/card.json `preprocessing.tokenizer` by
  `from_spec`), `fit_tokenizer` (from the train split).
* `token_stream`, `train_blocks`, `scored_windows`, `blocks`: texts -> one id stream -> rows of
  ids, as train (`train_blocks`), validation and evaluate (`scored_windows`: sliding windows, each
  id scored once with at least max_len - stride ids of context) and export's parity check
  (`blocks`) cut them (changing what they mean needs a new
  `tasks.types.text_generation.stages.CHECKPOINT_FORMAT`).
* `prompt_ids`, `sample_token`, `generate`: a prompt normalised and encoded as training did, then
  continued by sampling over any `run(ids) -> logits`.

Plain python/numpy, no torch: `serving.py` uses it over either backend (ONNX Runtime
without torch installed, or PyTorch), and the evaluate stage samples through the same code.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np

from tasks.core.text_norm import normalise_text

if TYPE_CHECKING:
    from tasks.core.params import TextModelParams

# Overlapping train blocks: on the jokes (66 KB of train text, d_model 128, 4 layers, max_len 64),
# 4 offsets reached val loss 2.41 nats/token in 4 epochs where 1 offset needed 15 for 2.46.
TRAIN_OFFSETS = 4
# A target not scored (torch's cross_entropy ignore_index default). Also in tasks.core.objectives,
# not imported from there: that module imports torch, and this one runs in the torch-free server.
IGNORE_ID = -100
BYTE_EOT = 256  # byte tokenizer: ids 0..255 are the UTF-8 bytes, 256 ends a text
CHAR_EOT, CHAR_UNK = 0, 1  # char tokenizer: 0 ends a text, 1 any character not kept, 2.. chars


class TokenizerError(ValueError):
    """A tokenizer spec (models/card.json) is not one this code can rebuild."""


@dataclass(frozen=True)
class Tokenizer:
    """byte: UTF-8 bytes + end-of-text (257 ids, nothing to learn); char: the train split's most
    frequent characters + unknown + end-of-text (`train.text.vocab_size` ids at most)."""

    kind: str  # "byte" or "char"
    chars: tuple[str, ...] = ()  # char: id CHAR_UNK + 1 + i is chars[i]

    @property
    def eot_id(self) -> int:
        return BYTE_EOT if self.kind == "byte" else CHAR_EOT

    @property
    def vocab_size(self) -> int:
        return BYTE_EOT + 1 if self.kind == "byte" else CHAR_UNK + 1 + len(self.chars)

    def encode(self, text: str) -> list[int]:
        if self.kind == "byte":
            return list(text.encode("utf-8"))
        return [self._index.get(c, CHAR_UNK) for c in text]

    @cached_property
    def _index(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.chars, CHAR_UNK + 1)}

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids`; end-of-text ids are dropped, broken UTF-8 and unknowns become U+FFFD."""
        ids = [int(i) for i in ids if int(i) != self.eot_id]
        if self.kind == "byte":
            return bytes(ids).decode("utf-8", errors="replace")
        return "".join("\ufffd" if i == CHAR_UNK else self.chars[i - CHAR_UNK - 1] for i in ids)

    def spec(self) -> dict[str, Any]:
        """What models/card.json stores (`preprocessing.tokenizer`)."""
        spec: dict[str, Any] = {"kind": self.kind, "vocab_size": self.vocab_size}
        spec["eot_id"] = self.eot_id
        if self.kind == "char":
            spec.update(unk_id=CHAR_UNK, chars=list(self.chars))
        return spec

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Tokenizer:
        kind = spec.get("kind") if isinstance(spec, dict) else None
        if kind not in ("byte", "char"):
            raise TokenizerError(f"tokenizer kind {kind!r} is not 'byte' or 'char'")
        chars = spec.get("chars", [])
        if kind == "char" and not all(isinstance(c, str) and len(c) == 1 for c in chars):
            raise TokenizerError("tokenizer chars must be single characters")
        tokenizer = cls(kind, tuple(chars) if kind == "char" else ())
        if spec.get("vocab_size") != tokenizer.vocab_size or spec.get("eot_id") != tokenizer.eot_id:
            raise TokenizerError(
                f"tokenizer vocab_size {spec.get('vocab_size')} / eot_id {spec.get('eot_id')} "
                f"disagree with its {kind} vocabulary ({tokenizer.vocab_size} / {tokenizer.eot_id})"
            )
        return tokenizer


def fit_tokenizer(cfg: TextModelParams, train_texts: list[str]) -> Tokenizer:
    """`train.text.tokenizer` for the train split (char: its vocab_size - 2 commonest chars)."""
    if cfg.tokenizer == "byte":
        return Tokenizer("byte")
    if cfg.tokenizer != "char":
        raise TokenizerError(
            f"train.text.tokenizer {cfg.tokenizer!r}: text_generation takes byte or char"
        )
    counts = Counter(c for text in train_texts for c in text)
    ranked = sorted(counts, key=lambda c: (-counts[c], c))  # ties by code point: deterministic
    return Tokenizer("char", tuple(ranked[: cfg.vocab_size - CHAR_UNK - 1]))


def token_stream(texts: list[str], tokenizer: Tokenizer) -> np.ndarray:
    """int64 ids: end-of-text, then each text followed by end-of-text (a text starts after one,
    as a generation does)."""
    ids = [tokenizer.eot_id]
    for text in texts:
        ids += tokenizer.encode(text)
        ids.append(tokenizer.eot_id)
    return np.asarray(ids, dtype=np.int64)


def blocks(stream: np.ndarray, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(full, tail): rows of max_len + 1 ids starting every max_len ids (each id after the first
    is a target exactly once), and the shorter rest (one row, or none)."""
    n_full = (len(stream) - 1) // max_len
    starts = np.arange(n_full)[:, None] * max_len
    full = stream[starts + np.arange(max_len + 1)] if n_full else stream[:0].reshape(0, max_len + 1)
    rest = stream[n_full * max_len :]
    return full, (rest[None] if len(rest) > 1 else rest[:0].reshape(0, 0))


def eval_stride(max_len: int) -> int:
    """The stride of `scored_windows`: half the context, so each scored id sees at least
    max_len / 2 ids before it (3/4 max_len on average) at twice the cost of plain blocks."""
    return max(1, max_len // 2)


def scored_windows(
    stream: np.ndarray, max_len: int, stride: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(x, y): a sliding-window scoring of the stream ("Perplexity of fixed-length models",
    Hugging Face): windows of max_len inputs starting every `stride` ids (eval_stride), the last
    one ending at the stream's end; y holds each window's next ids, IGNORE_ID where an earlier
    window already scored that id. Every id after the first is a target exactly once, and each,
    after the first window's, with at least max_len - stride ids of context (plain `blocks` give
    the first target of each block none). A stream of at most max_len + 1 ids is one shorter row;
    one of fewer than 2 ids, no row."""
    stride = eval_stride(max_len) if stride is None else stride
    if not 1 <= stride <= max_len:
        raise ValueError(f"stride {stride} must be in 1..max_len ({max_len})")
    stream = np.asarray(stream, np.int64)
    n = len(stream)
    if n < 2:
        return stream[:0].reshape(0, 0), stream[:0].reshape(0, 0)
    if n <= max_len + 1:
        return stream[None, :-1].copy(), stream[None, 1:].copy()
    last = n - 1 - max_len  # the start of the window that ends at the stream's end
    starts = np.append(np.arange(0, last, stride), last)
    rows = stream[starts[:, None] + np.arange(max_len + 1)]
    x, y = rows[:, :-1].copy(), rows[:, 1:].copy()
    # row k's targets are the ids at starts[k] + 1..max_len; row k - 1 scored up to its end
    scored_before = np.concatenate([[0], starts[:-1] + max_len])
    y[starts[:, None] + np.arange(1, max_len + 1) <= scored_before[:, None]] = IGNORE_ID
    return x, y


def train_blocks(stream: np.ndarray, max_len: int) -> np.ndarray:
    """Rows of max_len + 1 ids starting every max_len // TRAIN_OFFSETS ids: an epoch shows each
    id at TRAIN_OFFSETS places in the context, not at one fixed place a small model memorises."""
    stride = max(1, max_len // TRAIN_OFFSETS)
    starts = np.arange(0, max(0, len(stream) - max_len), stride)
    return stream[starts[:, None] + np.arange(max_len + 1)].reshape(len(starts), max_len + 1)


def prompt_ids(prompt: str, card: dict[str, Any]) -> list[int]:
    """The ids a prompt continues from: end-of-text, then the prompt normalised as clean did
    (a trailing space survives: "Why did the " asks for the next word, not the end of one)."""
    prep = card["preprocessing"]
    tokenizer = Tokenizer.from_spec(prep["tokenizer"])
    text = normalise_text(prompt, SimpleNamespace(**prep["text"])) if prompt else ""
    if prep["text"].get("collapse_whitespace") and text and prompt[-1:].isspace():
        text += " "
    return [tokenizer.eot_id, *tokenizer.encode(text)]


def sample_token(logits: np.ndarray, temperature: float, rng: np.random.Generator) -> int:
    """One id from softmax(logits / temperature), float64, by inverting the CDF at one uniform."""
    z = logits.astype(np.float64) / temperature
    cdf = np.cumsum(np.exp(z - z.max()))
    return int(min(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"), len(cdf) - 1))


@dataclass(frozen=True)
class Generation:
    ids: list[int]  # the new ids, without the end-of-text that stopped it
    ended: bool  # True: the model ended the text; False: max_new_tokens was reached


def generate(  # noqa: PLR0913 (the sampling settings, each named at the call)
    run: Callable[[np.ndarray], np.ndarray],
    start: list[int],
    rngs: list[np.random.Generator],
    *,
    context: int,
    eot_id: int,
    max_new_tokens: int,
    temperature: float,
) -> list[Generation]:
    """One continuation of `start` per rng. `run`: int64 ids (n, t <= context) -> logits (n, t,
    vocab), an ONNX session or the PyTorch model; the unfinished rows run together each step."""
    seqs = [list(start) for _ in rngs]
    new: list[list[int]] = [[] for _ in rngs]
    ended = [False] * len(rngs)
    for _ in range(max_new_tokens):
        live = [i for i, done in enumerate(ended) if not done]
        if not live:
            break
        window = np.asarray([seqs[i][-context:] for i in live], dtype=np.int64)
        last = np.asarray(run(window))[:, -1]
        for row, i in enumerate(live):
            token = sample_token(last[row], temperature, rngs[i])
            if token == eot_id:
                ended[i] = True
            else:
                seqs[i].append(token)
                new[i].append(token)
    return [Generation(ids, done) for ids, done in zip(new, ended, strict=True)]
