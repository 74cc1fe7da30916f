"""Tokenizers of text classification (tasks/core/tokenizers.py): ids, specs, round trips."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

import numpy as np
import pytest

from tasks.core.tokenizers import (
    CLS,
    PAD,
    UNK,
    ByteTokenizer,
    CharTokenizer,
    TokenizerError,
    encode_texts,
    fit_tokenizer,
    tokenizer_files,
    tokenizer_from_spec,
)
from tasks.types.text_classification.minilm import package_dir


def _cfg(**kw: object) -> SimpleNamespace:
    return SimpleNamespace(**{"tokenizer": "char", "max_len": 8, "vocab_size": 3, **kw})


def test_char_keeps_the_most_frequent_characters_and_pads() -> None:
    tok = fit_tokenizer(_cfg(), ["aaab", "bbc", "d"])
    assert tok.chars == ["a", "b", "c"]  # a 3, b 3 (tie: code point), c 1, d 1 -> d cut
    assert tok.vocab_size == 6
    ids = tok.encode(["abd", "", "aaaaaaaaaaaa"])
    assert ids.dtype == np.int64 and ids.shape == (3, 8)
    assert ids[0].tolist() == [CLS, 3, 4, UNK, PAD, PAD, PAD, PAD]
    assert ids[1].tolist() == [CLS] + [PAD] * 7
    assert ids[2].tolist() == [CLS] + [3] * 7  # cut at max_len


def test_byte_tokenizer_is_utf8_plus_specials() -> None:
    ids = ByteTokenizer(6).encode(["é"])
    assert ids[0].tolist() == [CLS, 3 + 0xC3, 3 + 0xA9, PAD, PAD, PAD]
    assert ByteTokenizer(6).vocab_size == 259


def test_spec_round_trip_gives_the_same_ids() -> None:
    texts = ["Warum ist der Himmel blau?", "Why so serious?", "ñandú"]
    for tok in (fit_tokenizer(_cfg(vocab_size=20, max_len=16), texts), ByteTokenizer(16)):
        again = tokenizer_from_spec(tok.spec())
        assert np.array_equal(again.encode(texts), tok.encode(texts))


def test_encode_texts_normalises_like_clean() -> None:
    tok = ByteTokenizer(12)
    prep = {
        "text": {"nfkc": True, "strip_html": True, "collapse_whitespace": True, "lowercase": True}
    }
    assert np.array_equal(encode_texts(["  <b>AB</b>\n c "], prep, tok), tok.encode(["ab c"]))


def test_minilm_tokenizer_is_the_pretrained_wordpiece(tmp_path) -> None:
    tok = fit_tokenizer(_cfg(tokenizer="minilm", max_len=12), [], package_dir())
    ids = tok.encode(["Hello world", "x " * 50])
    assert ids.shape == (2, 12)
    assert ids[0, :4].tolist() == [101, 7592, 2088, 102]  # [CLS] hello world [SEP]
    assert ids[1, -1] == 102 and tok.vocab_size == 30522 and tok.pad_id == 0
    # the spec names the file and its hash; a different file is refused
    spec = tok.spec()
    (tmp_path / spec["file"]).write_bytes(tok.blob)
    again = tokenizer_from_spec(spec, tokenizer_files(spec, tmp_path))
    assert np.array_equal(again.encode(["Hello world"]), ids[:1])
    (tmp_path / spec["file"]).write_bytes(tok.blob.replace(b"hello", b"hallo"))
    with pytest.raises(TokenizerError, match="not the model's tokenizer"):
        tokenizer_from_spec(spec, tokenizer_files(spec, tmp_path))
    assert hashlib.sha256(tok.blob).hexdigest() == spec["sha256"]


def test_bad_specs_fail_naming_the_field() -> None:
    with pytest.raises(TokenizerError, match="max_len"):
        tokenizer_from_spec({"kind": "char", "chars": "ab", "max_len": 0})
    with pytest.raises(TokenizerError, match="kind 'words'"):
        tokenizer_from_spec({"kind": "words", "max_len": 8})
    with pytest.raises(TokenizerError, match="needs the model's file"):
        tokenizer_from_spec({"kind": "minilm", "max_len": 8, "file": "tokenizer.json"})
    with pytest.raises(TokenizerError, match="distinct single characters"):
        CharTokenizer(["a", "a"], 8)
