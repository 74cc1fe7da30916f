"""`train.model: linear` for texts (tasks/types/text_classification/models.py LinearBagClassifier)
and the params that choose models and tokenizers: `python -m pytest
tests/unit/tasks/types/text_classification/test_linear.py`.

Logistic regression on the bag of tokens and hashed token bigrams: shapes and a card round trip,
padding ignored, linear in the counts; ONNX export with ONNX Runtime parity with the minilm, char
and byte tokenizers; train, evaluate and export stages on real pyjokes (three languages) with the
WordPiece and the char tokenizer; `auto` tokenizers resolved per model, and the validation
messages of a tokenizer that does not fit.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
import pyjokes
import pytest
import torch
import yaml

from tasks.core.models import ModelError, build_model, load_model
from tasks.core.params import ExportParams, Params, ParamsError, parse_params
from tasks.core.tokenizers import fit_tokenizer
from tasks.types.text_classification import stages as tc
from tasks.types.text_classification.minilm import package_dir
from tasks.types.text_classification.models import ARCHITECTURES
from tasks.types.text_classification.params import TextClassificationTrainParams
from tests.project import REPO, merge_params
from tests.unit.tasks.types.model_checks import check_shape_and_card_round_trip

LANGUAGES = ("de", "en", "es")
CONFIG = {"vocab_size": 50, "max_len": 12, "n_classes": 3, "bigram_buckets": 97}
LINEAR = {
    "labels": {"classes": list(LANGUAGES)},
    "train": {"model": "linear", "epochs": 15, "batch_size": 16, "lr": 0.003, "device": "cpu",
              "text": {"tokenizer": "auto", "max_len": 64}},
    "export": {"parity_batch": 8},
}  # fmt: skip


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _raw() -> dict[str, Any]:
    return yaml.safe_load((REPO / "examples" / "jokes.params.yaml").read_text())


def _params(overrides: dict[str, Any] | None = None) -> Params:
    return parse_params(merge_params(merge_params(_raw(), LINEAR), overrides or {}))


def _texts(per_language: int) -> list[tuple[str, str]]:
    return [
        (text, lang)
        for lang in LANGUAGES
        for text in pyjokes.get_jokes(language=lang, category="all")[:per_language]
    ]


def _random_weights(model: torch.nn.Module) -> torch.nn.Module:
    torch.manual_seed(1)
    for p in model.parameters():  # not the zero start: parity and padding would be trivial
        torch.nn.init.normal_(p)
    return model.eval()


def test_shapes_and_card_round_trip_without_pickle(tmp_path: Path) -> None:
    x = torch.randint(1, 50, (5, 12))
    x[1:, 7:] = 0  # padding
    check_shape_and_card_round_trip(
        ARCHITECTURES, "linear_bag", CONFIG, x=x, shape=(5, 3), directory=tmp_path
    )
    assert not build_model(ARCHITECTURES, "linear_bag", CONFIG)(x).any()  # zero start


def test_padding_is_ignored_and_the_logits_are_linear_in_the_counts() -> None:
    model = _random_weights(build_model(ARCHITECTURES, "linear_bag", CONFIG))
    ids = torch.tensor([[2, 7, 9, 0, 0, 0]])
    with torch.no_grad():
        short, padded = model(ids[:, :3]), model(ids)
        empty = model(torch.zeros(1, 12, dtype=torch.int64))
        w, v, b = model.unigram.weight, model.bigram.weight, model.bias
        pairs = [(2 * 1_000_003 + 7) % 97, (7 * 1_000_003 + 9) % 97]
        want = 16.0 * (b + (w[2] + w[7] + w[9] + v[pairs[0]] + v[pairs[1]]) / 3**0.5)
    torch.testing.assert_close(short, padded)
    torch.testing.assert_close(padded[0], want)
    torch.testing.assert_close(empty[0], 16.0 * b)  # an empty text: the bias alone, no NaN


def test_a_bad_config_and_too_long_an_input_are_named() -> None:
    with pytest.raises(ModelError, match="config.bigram_buckets must be a non-negative"):
        build_model(ARCHITECTURES, "linear_bag", {**CONFIG, "bigram_buckets": -1})
    with pytest.raises(ModelError, match="config.gain must be positive"):
        build_model(ARCHITECTURES, "linear_bag", {**CONFIG, "gain": 0.0})
    model = build_model(ARCHITECTURES, "linear_bag", CONFIG)
    with pytest.raises(ModelError, match="input has 13 tokens, config.max_len is 12"):
        model(torch.ones(1, 13, dtype=torch.int64))
    unigrams = build_model(ARCHITECTURES, "linear_bag", {**CONFIG, "bigram_buckets": 0})
    assert unigrams(torch.ones(2, 12, dtype=torch.int64)).shape == (2, 3)


@pytest.mark.parametrize("tokenizer", ["minilm", "char", "byte"])
def test_onnx_export_matches_pytorch_with_every_tokenizer(tokenizer: str) -> None:
    texts = [text for text, _ in _texts(6)]
    cfg = TextClassificationTrainParams(
        model="linear", text={"tokenizer": tokenizer, "max_len": 48}
    )
    tok = fit_tokenizer(
        cfg.text_settings(), texts, package_dir() if tokenizer == "minilm" else None
    )
    config = {"vocab_size": tok.vocab_size, "max_len": 48, "n_classes": 3, "pad_id": tok.pad_id}
    model = _random_weights(build_model(ARCHITECTURES, "linear_bag", config))
    card = {"preprocessing": {"tokenizer": tok.spec()}, "weights_sha256": "0" * 64,
            "classes": list(LANGUAGES)}  # fmt: skip
    batch = tc.parity_batch(tok.encode(texts), tok)
    blob, info = tc.export_text_model(model, card, batch, ExportParams())
    assert info["parity"]["argmax_agree"] == info["parity"]["n"] == len(texts) + 2
    assert info["input"] == {"name": "ids", "dtype": "int64", "shape": ["batch", 48]}
    session = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    got = session.run(["logits"], {"ids": batch[:1]})[0]  # another batch size than the export's
    np.testing.assert_allclose(got, model(torch.from_numpy(batch[:1])).detach(), atol=1e-4)


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    """A working directory with data/clean from the real clean stage (40 jokes a language)."""
    rows = [(f"http://site/jokes/{i:03d}", text, lang) for i, (text, lang) in enumerate(_texts(40))]
    frame = pd.DataFrame(rows, columns=["url", "text", "label"]).assign(first_seen="2026-01-01")
    (tmp_path / "data" / "validated").mkdir(parents=True)
    frame.to_parquet(tmp_path / "data" / "validated" / "items.parquet")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert tc.clean_stage(_params()) == 0
        yield tmp_path
    finally:
        os.chdir(cwd)


@pytest.mark.parametrize(("tokenizer", "kind"), [("auto", "minilm"), ("char", "char")])
def test_train_evaluate_export_linear(project: Path, tokenizer: str, kind: str) -> None:
    params = _params({"train": {"text": {"tokenizer": tokenizer}}})
    assert tc.train_stage(params) == 0
    card = json.loads((project / "models" / "card.json").read_text())
    assert card["architecture"] == "linear_bag"
    assert card["preprocessing"]["tokenizer"]["kind"] == kind
    assert card["train_params"]["model"] == "linear"
    assert card["train_params"]["text"]["tokenizer"] == tokenizer  # as params.yaml says
    assert ((project / "models" / "tokenizer.json").is_file()) == (kind == "minilm")

    assert tc.evaluate_stage(params) == 0
    metrics = json.loads((project / "reports" / "metrics.json").read_text())
    assert metrics["accuracy"] > 0.6, metrics  # chance is 1/3; words and letters tell languages
    assert set(metrics["baselines"]) == {"majority_class", "tfidf_logreg"}

    assert tc.export_stage(params) == 0
    info = json.loads((project / "export" / "onnx.json").read_text())
    assert info["parity"]["max_abs_diff"] <= params.export.atol
    model, card = load_model(project / "models", ARCHITECTURES)
    tokenizer_ = tc.card_tokenizer(card, project / "models")
    ids = tc.encode_texts(["Warum ...", "Why do ...", "¿Por qué ..."], card["preprocessing"],
                          tokenizer_)  # fmt: skip
    session = ort.InferenceSession(str(project / "export" / "model.onnx"))
    onnx_logits = session.run(["logits"], {"ids": ids})[0]
    np.testing.assert_allclose(onnx_logits, tc.torch_runner(project / "models")(ids), atol=1e-4)


def test_the_default_model_is_linear_and_auto_tokenizers_follow_the_model() -> None:
    assert TextClassificationTrainParams().model == "linear"
    assert TextClassificationTrainParams().text.tokenizer == "auto"
    resolved = {
        model: TextClassificationTrainParams(model=model).tokenizer
        for model in ("minilm", "transformer", "linear")
    }
    assert resolved == {"minilm": "minilm", "transformer": "char", "linear": "minilm"}
    linear = TextClassificationTrainParams(model="linear", text={"tokenizer": "byte"})
    assert linear.tokenizer == "byte" and linear.text_settings().tokenizer == "byte"
    # `kiln check --write` writes `auto`, and the written file parses to the same params
    raw = merge_params(_raw(), {"train": {"model": "minilm", "text": {"tokenizer": "auto"}}})
    written = parse_params(raw).model_dump(mode="json", by_alias=True)
    assert written["train"]["text"]["tokenizer"] == "auto"
    assert parse_params(written) == parse_params(raw)


@pytest.mark.parametrize(
    ("train", "message"),
    [
        ({"model": "minilm", "text": {"tokenizer": "char"}},
         "train.text.tokenizer 'char' does not match train.model 'minilm': the pretrained MiniLM "
         "needs its own tokenizer 'minilm', and only it"),
        ({"model": "transformer", "text": {"tokenizer": "minilm"}},
         "train.text.tokenizer 'minilm' does not match train.model 'transformer': train.model "
         "'transformer' takes 'char' or 'byte'"),
        ({"model": "logreg"}, "Input should be 'minilm', 'transformer' or 'linear'"),
        ({"model": "linear", "text": {"tokenizer": "words"}},
         "Input should be 'auto', 'char', 'byte' or 'minilm'"),
    ],
)  # fmt: skip
def test_a_tokenizer_that_does_not_fit_is_named(train: dict[str, Any], message: str) -> None:
    with pytest.raises(ParamsError) as caught:
        parse_params(merge_params(_raw(), {"train": train}))
    assert message in str(caught.value)


def test_minilm_gets_fine_tuning_defaults_where_the_file_is_silent() -> None:
    """The generic defaults (lr 3e-3, batch 64) left MiniLM at chance on the text test sites."""
    minilm = TextClassificationTrainParams(model="minilm")
    assert (minilm.lr, minilm.batch_size, minilm.schedule, minilm.text.max_len) == (
        5e-5, 16, "cosine", 64)  # fmt: skip
    mine = TextClassificationTrainParams(model="minilm", lr=1e-4, text={"max_len": 128})
    assert (mine.lr, mine.text.max_len, mine.batch_size) == (1e-4, 128, 16)
    assert TextClassificationTrainParams(model="transformer").lr == 3e-3  # the others: unchanged
    raw = merge_params(_raw(), {"train": {"model": "minilm", "text": {"tokenizer": "auto"}}})
    raw["train"].pop("lr", None)  # the file silent about lr
    written = parse_params(raw)
    assert written.train.lr == 5e-5  # what `kiln check --write` writes into the file
