"""Text classification stages (tasks/types/text_classification/stages.py) on real pyjokes.

A data/clean/items.parquet is made by the real clean stage from a validated table of English,
German and Spanish jokes; then train, evaluate and export run as `python -m tasks.<stage>` would
(in the test's working directory), with a tiny Transformer, and the MiniLM fine-tune is checked
on a few dozen texts (max_len 32, offline, CPU), with its save/load and ONNX round trips and the
pretrained encoder's sentence embeddings.
"""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
import pyjokes
import pytest
import torch
import torch.nn.functional as F  # noqa: N812 (the usual torch alias)
import yaml

from tasks.core import registry
from tasks.core.engine import EngineConfig, TaskData, fit
from tasks.core.models import load_model, predict_logits, save_model
from tasks.core.objectives import classification_metrics
from tasks.core.params import Params, ParamsError, parse_params
from tasks.core.tokenizers import MiniLMTokenizer, fit_tokenizer
from tasks.types.text_classification import stages as tc
from tasks.types.text_classification.minilm import (
    MiniLMError,
    config_from_pretrained,
    pretrained_classifier,
)
from tasks.types.text_classification.models import ARCHITECTURES
from tests.project import REPO, merge_params

LANGUAGES = ("de", "en", "es")
TINY = {
    "labels": {"classes": list(LANGUAGES)},
    "train": {
        "epochs": 15,
        "batch_size": 16,
        "lr": 0.003,
        "d_model": 32,
        "layers": 1,
        "heads": 2,
        "text": {"max_len": 64, "vocab_size": 80},
        "device": "cpu",
    },
    "export": {"parity_batch": 8},
}


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models: one thread. Two OpenMP threads on a busy 2-core machine spin-wait; a tiny
    epoch took 7 s instead of 0.1 s with 2 threads at load average 8 (same weights either way)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _params(overrides: dict[str, Any] | None = None) -> Params:
    raw = yaml.safe_load((REPO / "examples" / "jokes_transformer.params.yaml").read_text())
    return parse_params(merge_params(merge_params(raw, TINY), overrides or {}))


def _jokes(per_language: int) -> pd.DataFrame:
    rows = [
        (f"http://site/jokes/{lang}-{i:03d}", text, lang)
        for lang in LANGUAGES
        for i, text in enumerate(pyjokes.get_jokes(language=lang, category="all")[:per_language])
    ]
    return pd.DataFrame(rows, columns=["url", "text", "label"]).assign(first_seen="2026-01-01")


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    """A working directory with data/clean from the real clean stage (40 jokes a language)."""
    (tmp_path / "data" / "validated").mkdir(parents=True)
    _jokes(40).to_parquet(tmp_path / "data" / "validated" / "items.parquet")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert tc.clean_stage(_params()) == 0
        yield tmp_path
    finally:
        os.chdir(cwd)


def test_train_evaluate_export_tiny_transformer(project: Path) -> None:
    params = _params()
    assert tc.train_stage(params) == 0
    card = json.loads((project / "models" / "card.json").read_text())
    assert card["architecture"] == "transformer_encoder"
    assert card["preprocessing"]["tokenizer"]["kind"] == "char"
    assert card["preprocessing"]["text"] == params.clean.text.model_dump(mode="json")
    assert card["config"]["vocab_size"] == 3 + len(card["preprocessing"]["tokenizer"]["chars"])
    assert (project / "reports" / "train" / "metrics.json").is_file()

    assert tc.evaluate_stage(params) == 0
    metrics = json.loads((project / "reports" / "metrics.json").read_text())
    assert metrics["n_test"] > 0 and set(metrics["per_class"]) == set(LANGUAGES)
    assert metrics["accuracy"] > 1 / len(LANGUAGES), metrics  # chance is 1/3
    predictions = pd.read_csv(project / "reports" / "evaluation" / "plots" / "predictions.csv")
    assert list(predictions.columns) == ["actual", "predicted"]
    assert len(predictions) == metrics["n_test"]
    assert (project / "reports" / "evaluation" / "plots" / "confusion_matrix.png").is_file()
    baselines = metrics.pop("baselines")
    assert tc.test_metrics(project / "models", project / "data" / "clean", params) == metrics
    # beside the model: the majority class and TF-IDF + logistic regression on the same split
    assert set(baselines) == {"majority_class", "tfidf_logreg"}
    items = pd.read_parquet(project / "data" / "clean" / "items.parquet")
    train, test = (items.loc[items["split"] == s, "label"] for s in ("train", "test"))
    commonest = train.value_counts().sort_index(kind="stable").idxmax()
    assert baselines["majority_class"]["accuracy"] == pytest.approx((test == commonest).mean())
    assert baselines["tfidf_logreg"]["n_test"] == metrics["n_test"]
    assert baselines["tfidf_logreg"]["accuracy"] > 1 / len(LANGUAGES)  # words tell languages

    assert tc.export_stage(params) == 0
    info = json.loads((project / "export" / "onnx.json").read_text())
    assert info["input"] == {"name": "ids", "dtype": "int64", "shape": ["batch", 64]}
    assert info["parity"]["max_abs_diff"] <= params.export.atol
    assert info["weights_sha256"] == card["weights_sha256"]

    # serving's torch twin and the ONNX graph give the evaluate stage's predictions
    model, card = load_model(project / "models", ARCHITECTURES)
    tokenizer = tc.card_tokenizer(card, project / "models")
    ids = tc.encode_texts(
        ["Warum hat der Programmierer ...", "Why do programmers ..."],
        card["preprocessing"],
        tokenizer,
    )
    session = ort.InferenceSession(str(project / "export" / "model.onnx"))
    onnx_logits = session.run(["logits"], {"ids": ids})[0]
    np.testing.assert_allclose(onnx_logits, tc.torch_runner(project / "models")(ids), atol=1e-4)


def test_empty_class_fails_before_writing_models(project: Path, caplog) -> None:
    params = _params({"labels": {"classes": [*LANGUAGES, "fr"]}})
    assert tc.train_stage(params) == 1
    assert "['fr'] have no train rows" in caplog.text
    assert not (project / "models").exists()


def test_nan_loss_fails_naming_the_step(project: Path, caplog, monkeypatch) -> None:
    def poisoned_fit(model, data, loss_fn, metric_fn, **kw):  # type: ignore[no-untyped-def]
        return fit(model, data, lambda out, y: loss_fn(out, y) * float("nan"), metric_fn, **kw)

    monkeypatch.setattr(tc, "fit", poisoned_fit)
    assert tc.train_stage(_params()) == 1
    assert "loss is nan at epoch 1 step 1" in caplog.text
    assert not (project / "models").exists()


def test_card_tokenizer_that_does_not_fit_the_model_is_refused(project: Path, caplog) -> None:
    params = _params({"train": {"epochs": 1}})
    assert tc.train_stage(params) == 0
    card_path = project / "models" / "card.json"
    card = json.loads(card_path.read_text())
    card["preprocessing"]["tokenizer"] = {"kind": "byte", "max_len": 64}  # 259 ids, not ~80
    card_path.write_text(json.dumps(card))
    assert tc.evaluate_stage(params) == 1
    assert "does not fit config.vocab_size" in caplog.text
    assert not (project / "reports" / "metrics.json").exists()


def _minilm_data(tokenizer: MiniLMTokenizer) -> tuple[TaskData, int]:
    jokes = _jokes(14)  # 42 texts, 3 classes; every 3rd text of a language is validation
    val = np.arange(len(jokes)) % 3 == 0
    ids = torch.from_numpy(tokenizer.encode(jokes["text"].tolist()))
    y = torch.tensor([LANGUAGES.index(x) for x in jokes["label"]])
    return TaskData(ids[~val], y[~val], ids[val], y[val]), int(val.sum())


def test_minilm_fine_tunes_offline_saves_and_exports(tmp_path: Path, monkeypatch) -> None:
    """The pretrained encoder + a new head: one epoch on 28 texts lowers the validation loss
    and beats chance; saved as a Kiln model, it loads back (serving's torch backend) with the
    same logits; the ONNX graph of the loaded model (ids only, mask inside) matches PyTorch."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    params = _params(
        {
            "train": {
                "model": "minilm",
                "dropout": 0.1,
                "text": {"tokenizer": "minilm", "max_len": 32},
            }
        }
    )
    tokenizer = fit_tokenizer(params.train.text, [], tc.package_dir())
    torch.manual_seed(0)
    model, architecture, config = tc.build_classifier(params, tokenizer, len(LANGUAGES))
    assert architecture == "minilm"
    assert config == {  # the card's config: BertModel is rebuilt from it, without the package
        "n_classes": 3, "vocab_size": 30522, "hidden": 384, "layers": 6, "heads": 12,
        "intermediate": 1536, "max_positions": 512, "type_vocab_size": 2,
        "layer_norm_eps": 1e-12, "dropout": 0.1, "pad_id": 0,
    }  # fmt: skip
    data, n_val = _minilm_data(tokenizer)
    before = classification_metrics(predict_logits(model, data.x_val), data.y_val)
    cfg = EngineConfig(epochs=1, batch_size=8, lr=1e-4, device="cpu", seed=0)
    run = fit(
        model, data, F.cross_entropy, classification_metrics, cfg=cfg,
        checkpoint_path=tmp_path / "ckpt",
    )  # fmt: skip
    after = run.history[-1]
    assert after["val_loss"] < before["val_loss"], (before, after)
    assert after["val_acc"] > 1 / len(LANGUAGES), after
    assert math.isfinite(after["train_loss"])

    batch = tc.parity_batch(data.x_val.numpy(), tokenizer)
    card = {
        "architecture": architecture,
        "config": config,
        "classes": list(LANGUAGES),
        "preprocessing": {"tokenizer": tokenizer.spec()},
    }
    card = save_model(run.model, tmp_path / "models", card)
    want = predict_logits(run.model, torch.from_numpy(batch)).numpy()
    np.testing.assert_array_equal(tc.torch_runner(tmp_path / "models")(batch), want)

    loaded, card = load_model(tmp_path / "models", ARCHITECTURES)
    _, info = tc.export_text_model(loaded, card, batch, params.export)
    assert info["parity"]["n"] == n_val + 2
    assert info["parity"]["argmax_agree"] == n_val + 2
    assert info["parity"]["max_abs_diff"] <= params.export.atol


def test_minilm_refuses_a_tokenizer_of_another_vocabulary() -> None:
    with pytest.raises(ParamsError, match="tokenizer 'char' does not match train.model 'minilm'"):
        _params({"train": {"model": "minilm"}})  # the example's tokenizer is char
    with pytest.raises(MiniLMError, match=r"tokenizer \(vocabulary 259, pad id 0\) does not match"):
        config_from_pretrained(tc.package_dir(), 3, 0.1, tokenizer_vocab=259, pad_id=0)


def _pretrained_embedder(max_len: int) -> tuple[MiniLMTokenizer, torch.nn.Module]:
    """The pretrained MiniLM with its head replaced: ids -> mean-pooled sentence embeddings."""
    tokenizer = MiniLMTokenizer.from_file(tc.package_dir() / "tokenizer.json", max_len)
    model, _ = pretrained_classifier(2, 0.0, tokenizer.vocab_size, tokenizer.pad_id)
    model.classifier = torch.nn.Identity()  # the pooled embedding instead of logits
    return tokenizer, model


def test_pretrained_minilm_embeds_paraphrases_closer_than_unrelated_texts() -> None:
    """The package's weights are in place: a paraphrase is far nearer than an unrelated text."""
    tokenizer, model = _pretrained_embedder(24)
    texts = [
        "A man is playing a guitar.",
        "Someone plays the guitar.",
        "The stock market fell sharply on Monday.",
    ]
    vectors = predict_logits(model, torch.from_numpy(tokenizer.encode(texts)))
    cos = F.cosine_similarity(vectors[:, None], vectors[None, :], dim=-1)
    assert cos[0, 1] > 0.6 and cos[0, 2] < 0.2 and cos[1, 2] < 0.2, cos


def test_minilm_encoder_matches_sentence_transformers() -> None:
    """BertModel with the package's weights, the MiniLM tokenizer and Kiln's mean pool give the
    package's own sentence embeddings (sentence-transformers, loaded from the package's files)."""
    st = pytest.importorskip("sentence_transformers")
    texts = ["This is an offline sentence embedding", "Another text"]
    tokenizer, model = _pretrained_embedder(16)
    ours = predict_logits(model, torch.from_numpy(tokenizer.encode(texts)))
    reference = st.SentenceTransformer(str(tc.package_dir()), device="cpu", local_files_only=True)
    theirs = reference.encode(texts, convert_to_tensor=True, normalize_embeddings=False)
    cos = torch.nn.functional.cosine_similarity(ours, theirs.float(), dim=-1)
    assert cos.min() > 0.9999, cos


def test_minilm_onnx_graph_takes_any_batch_and_length() -> None:
    """transformers' attention and mask code, traced by the TorchScript exporter, keeps batch and
    sequence length dynamic: padded rows, an all-pad row and other lengths match PyTorch."""
    tokenizer, model = _pretrained_embedder(16)
    example = torch.from_numpy(tokenizer.encode(["A first text to trace", "and a second"]))
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer warnings
        torch.onnx.export(
            model.eval(), (example,), buffer, dynamo=False, opset_version=17,
            input_names=["ids"], output_names=["out"],
            dynamic_axes={"ids": {0: "batch", 1: "tokens"}, "out": {0: "batch"}},
        )  # fmt: skip
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    for max_len, texts in ((5, ["Hi"]), (40, ["Why did the chicken cross the road?", "", "x"])):
        ids = MiniLMTokenizer.from_file(tc.package_dir() / "tokenizer.json", max_len).encode(texts)
        ids = np.concatenate([ids, np.zeros((1, max_len), np.int64)])  # an all-pad row
        got = session.run(["out"], {"ids": ids})[0]
        want = predict_logits(model, torch.from_numpy(ids)).numpy()
        assert np.isfinite(got).all()
        np.testing.assert_allclose(got, want, atol=1e-4)


def test_text_stages_do_not_import_transformers() -> None:
    """transformers (seconds to import) is imported only when a MiniLM is built."""
    code = (
        "import sys; import tasks.types.text_classification.stages\n"
        "print('transformers' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False"]


def test_serving_a_text_model_does_not_import_torch(project: Path) -> None:
    """`kiln serve` on the ONNX backend: raw text in, the stage's classes out, no torch."""
    params = _params({"train": {"epochs": 2}})
    assert tc.train_stage(params) == 0 and tc.export_stage(params) == 0
    files = {p.name: p for d in ("models", "export") for p in (project / d).iterdir()}
    info = {"task": "text_classification", "metrics": {"accuracy": 0.5, "n_test": 1}}
    registry.add_version(project / "registry", files, info, reason="test")
    code = (
        "import sys; from fastapi.testclient import TestClient; from serve.app import create_app\n"
        "client = TestClient(create_app('registry'))\n"
        "r = client.post('/predict', json={'instances': [{'text': 'Warum?'}, {'text': ''}]})\n"
        "assert r.status_code == 200, r.text\n"
        "print(r.json()['predictions'][0]['label'], 'torch' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=project, env=env, capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    label, torch_imported = out.stdout.split()
    assert label in LANGUAGES and torch_imported == "False"
