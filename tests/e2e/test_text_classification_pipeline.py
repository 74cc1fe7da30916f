"""Text classification end to end (`pytest tests/e2e/test_text_classification_pipeline.py`).

examples/jokes_transformer.params.yaml in a fresh git + DVC project: a real crawl of the first 8
pages of the demo site's joke board (200 jokes: Czech, German, English), then `dvc repro` runs
validate, clean, train (a tiny character-level Transformer), evaluate, export and promote.
Checks the real outputs (the card's preprocessing, metrics above chance, ONNX parity, the
registry), then the served champion answers texts with the evaluate stage's predictions.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from fastapi.testclient import TestClient

from flows.dvc_stages import stage_names
from serve.app import create_app
from tasks.core.models import load_model, predict_logits
from tasks.core.params import ServeParams
from tasks.core.tokenizers import encode_texts, tokenizer_from_spec
from tasks.types.text_classification.models import ARCHITECTURES
from tests.project import REPO, crawl_and_record, dvc, free_port, make_project, run

pytestmark = pytest.mark.e2e
STAGES = stage_names(REPO)[1:]  # dvc.yaml's, after the crawl
LANGUAGES = ["cs", "de", "en"]  # jokes 1-200 of the board (sorted by language: 41 cs, 127 de)


def _overrides(port: int) -> dict:
    return {
        "demo_site": {"port": port},
        "crawl": {"start_urls": [f"http://127.0.0.1:{port}/jokes/"], "concurrency": 8,
                  "follow": [{"css": "nav.pagination", "allow": ["/jokes/page/[2-8]$"]}]},
        "labels": {"classes": LANGUAGES},
        "validate": {"min_rows": 100},
        "train": {"epochs": 12, "d_model": 32, "layers": 1, "heads": 2, "batch_size": 32,
                  "lr": 0.003, "text": {"max_len": 96, "vocab_size": 120}},
        "evaluate": {"min_accuracy": 0.5},
        "export": {"parity_batch": 16},
        # 12 epochs of a tiny Transformer do not beat TF-IDF + logistic regression on these
        # jokes (reports/metrics.json's baselines): the gate is off, the pipeline is under test
        "promote": {"floors": {"accuracy": 0.5, "macro_f1": 0.3}, "baseline_gate": False},
    }  # fmt: skip


def test_jokes_crawl_to_served_language_classifier(tmp_path: Path) -> None:
    port = free_port()
    project = make_project(tmp_path, _overrides(port),
                           base="examples/jokes_transformer.params.yaml")
    crawl_and_record(project)
    # one OpenMP thread: the tiny model is faster so than with two on a shared 2-core machine
    repro = run([sys.executable, "-m", "dvc", "repro"], project, extra_env={"OMP_NUM_THREADS": "1"})
    assert [s for s in STAGES if f"Running stage '{s}'" in repro.stdout] == STAGES, repro.stdout

    clean = json.loads((project / "reports" / "clean.json").read_text())
    assert clean["n_in"] == 200 == clean["n_out"] + clean["n_rejected"]
    assert set(clean["classes"]) == set(LANGUAGES)
    card = json.loads((project / "models" / "card.json").read_text())
    assert card["architecture"] == "transformer_encoder" and card["classes"] == LANGUAGES
    assert card["preprocessing"]["tokenizer"]["kind"] == "char"
    assert card["preprocessing"]["text"]["nfkc"] is True

    metrics = json.loads((project / "reports" / "metrics.json").read_text())
    items = pd.read_parquet(project / "data" / "clean" / "items.parquet")
    test = items[items["split"] == "test"]
    assert metrics["n_test"] == len(test) > 0
    assert metrics["accuracy"] > 0.5 and metrics["macro_f1"] > 0.3, metrics  # chance: 1/3
    predictions = pd.read_csv(project / "reports" / "evaluation" / "plots" / "predictions.csv")
    assert len(predictions) == len(test)
    info = json.loads((project / "export" / "onnx.json").read_text())
    assert info["parity"]["max_abs_diff"] <= 1e-4 and info["input"]["dtype"] == "int64"
    promotion = json.loads((project / "reports" / "promotion.json").read_text())
    assert promotion["outcome"] == "promoted" and promotion["champion_after"] == "v0001"
    assert json.loads(dvc("status", "--json", cwd=project).stdout or "{}") == {}

    _check_serving(project, test["text"].tolist()[:8])


def _check_serving(project: Path, texts: list[str]) -> None:
    """The served champion gives the evaluate stage's predictions for raw texts."""
    model, card = load_model(project / "models", ARCHITECTURES)
    tokenizer = tokenizer_from_spec(card["preprocessing"]["tokenizer"])
    want = predict_logits(
        model, torch.from_numpy(encode_texts(texts, card["preprocessing"], tokenizer))
    )
    with TestClient(create_app(project / "registry", ServeParams(max_batch=8))) as client:
        answer = client.post("/predict", json={"instances": [{"text": t} for t in texts]})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["task"] == "text_classification" and body["model_version"] == "v0001"
        got = [p["index"] for p in body["predictions"]]
        assert got == want.argmax(1).tolist()
        assert [p["label"] for p in body["predictions"]] == [LANGUAGES[k] for k in got]
        messy = client.post("/predict", json={"instances": [{"text": f"  <p>{texts[0]}</p> "}]})
        first, again = body["predictions"][0], messy.json()["predictions"][0]
        assert again["label"] == first["label"]  # normalised as clean did: the same ids
        np.testing.assert_allclose(again["probabilities"], first["probabilities"], atol=1e-6)
        too_many = client.post("/predict", json={"instances": [{"text": "x"}] * 9})
        assert too_many.status_code == 422
        wrong = client.post("/predict", json={"instances": [{"text": 7}]})
        assert wrong.status_code == 422 and "text" in json.dumps(wrong.json()["detail"])
        assert client.get("/model").json()["task"] == "text_classification"
