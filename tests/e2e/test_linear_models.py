"""`train.model: linear` end to end (`pytest tests/e2e/test_linear_models.py`).

For one image and one text project, a fresh git + DVC project crawls the demo site for real, then
`dvc repro` runs validate, clean, train (the linear model), evaluate, export (ONNX, parity
checked) and promote; the promoted champion answers one real `POST /predict` through the app of
`kiln serve` (ONNX Runtime), with the same prediction as the PyTorch model of models/.

* images: the digits shop (params.yaml with `tests.project.tiny_demo_overrides`): logistic
  regression on the 8x8 pixels.
* texts: the first 8 pages of the joke board (examples/jokes.params.yaml, 200 jokes in Czech,
  German and English): logistic regression on the bag of WordPiece tokens and their bigrams
  (train.text.tokenizer `auto`, minilm's vocabulary; tokenizer.json travels with the version).

Unlike the one-epoch plumbing tests, the baseline gate stays on where the linear model can pass
it honestly (texts: it is the TF-IDF baseline's own kind of model); the digits' classical
baseline is the same logistic regression, so there the gate is off and the floors check sense.
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from flows.dvc_stages import stage_names
from serve.app import create_app
from tasks.core.models import load_model, predict_logits
from tasks.core.params import ServeParams
from tasks.core.tokenizers import encode_texts
from tests.project import (
    REPO,
    crawl_and_record,
    dvc,
    free_port,
    make_project,
    merge_params,
    run,
    tiny_demo_overrides,
)

pytestmark = pytest.mark.e2e
STAGES = stage_names(REPO)[1:]  # dvc.yaml's, after the crawl
LANGUAGES = ["cs", "de", "en"]


def _image(port: int) -> dict[str, Any]:
    overrides = merge_params(
        tiny_demo_overrides(port),
        {
            "demo_site": {"sections": []},  # the digits shop alone
            "train": {"model": "linear", "epochs": 30, "patience": 5, "lr": 0.01},
            "evaluate": {"min_accuracy": 0.5},
            "promote": {"floors": {"accuracy": 0.5}, "baseline_gate": False},
        },
    )
    overrides["train"].pop("channels")  # a CNN knob: the linear model has none to set
    return overrides


def _text(port: int) -> dict[str, Any]:
    return {
        "demo_site": {"port": port},
        "crawl": {"start_urls": [f"http://127.0.0.1:{port}/jokes/"], "concurrency": 8,
                  "follow": [{"css": "nav.pagination", "allow": ["/jokes/page/[2-8]$"]}]},
        "labels": {"classes": LANGUAGES},
        "validate": {"min_rows": 100},
        "train": {"model": "linear", "epochs": 40, "patience": 8, "batch_size": 32,
                  "text": {"tokenizer": "auto", "max_len": 96}},
        "evaluate": {"min_accuracy": 0.6},
        "export": {"parity_batch": 16},
        "promote": {"floors": {"accuracy": 0.6}, "min_margin_over_baseline": 0.0},
    }  # fmt: skip


def _pipeline(tmp_path: Path, overrides: dict[str, Any], base: str) -> Path:
    project = make_project(tmp_path, overrides, base=base)
    crawl_and_record(project)
    repro = run([sys.executable, "-m", "dvc", "repro"], project, extra_env={"OMP_NUM_THREADS": "1"})
    assert [s for s in STAGES if f"Running stage '{s}'" in repro.stdout] == STAGES, repro.stdout
    info = json.loads((project / "export" / "onnx.json").read_text())
    assert info["parity"]["max_abs_diff"] <= 1e-4, info["parity"]
    promotion = json.loads((project / "reports" / "promotion.json").read_text())
    assert promotion["outcome"] == "promoted" and promotion["champion_after"] == "v0001", promotion
    assert json.loads(dvc("status", "--json", cwd=project).stdout or "{}") == {}
    return project


def _predict(project: Path, instance: dict[str, Any]) -> dict[str, Any]:
    with TestClient(create_app(project / "registry", ServeParams())) as client:
        answer = client.post("/predict", json={"instances": [instance]})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model_version"] == "v0001"
    return body


def test_linear_image_classifier_crawl_to_served(tmp_path: Path) -> None:
    from tasks.types.image_classification.models import ARCHITECTURES, preprocess  # noqa: PLC0415

    project = _pipeline(tmp_path, _image(free_port()), "params.yaml")
    card = json.loads((project / "models" / "card.json").read_text())
    assert card["architecture"] == "linear" and card["config"]["max_side"] == 16
    metrics = json.loads((project / "reports" / "metrics.json").read_text())
    assert metrics["accuracy"] > 0.5, metrics  # chance: 0.1

    pixels = np.load(project / "data" / "clean" / "pixels.npy")[:1]
    body = _predict(project, {"pixels": pixels[0].tolist()})
    assert body["task"] == "image_classification"
    model, card = load_model(project / "models", ARCHITECTURES)
    want = predict_logits(model, preprocess(torch.from_numpy(pixels), card["preprocessing"]))
    assert body["predictions"][0]["index"] == int(want.argmax(1)[0])
    png = next((project / "data" / "raw" / "images").glob("*.png")).read_bytes()
    assert _predict(project, {"png_base64": base64.b64encode(png).decode()})["predictions"]


def test_linear_text_classifier_crawl_to_served(tmp_path: Path) -> None:
    from tasks.types.text_classification.models import ARCHITECTURES  # noqa: PLC0415
    from tasks.types.text_classification.stages import card_tokenizer  # noqa: PLC0415

    project = _pipeline(tmp_path, _text(free_port()), "examples/jokes.params.yaml")
    card = json.loads((project / "models" / "card.json").read_text())
    assert card["architecture"] == "linear_bag" and card["classes"] == LANGUAGES
    assert card["preprocessing"]["tokenizer"]["kind"] == "minilm"
    metrics = json.loads((project / "reports" / "metrics.json").read_text())
    assert metrics["accuracy"] > 0.6, metrics  # chance: 1/3
    promotion = json.loads((project / "reports" / "promotion.json").read_text())
    assert "vs best baseline" in promotion["reason"]

    text = "Warum programmieren Informatiker so gern im Dunkeln?"
    body = _predict(project, {"text": text})
    assert body["task"] == "text_classification"
    model, card = load_model(project / "models", ARCHITECTURES)
    ids = encode_texts([text], card["preprocessing"], card_tokenizer(card, project / "models"))
    want = predict_logits(model, torch.from_numpy(ids))
    assert body["predictions"][0]["index"] == int(want.argmax(1)[0])
