"""Evaluate stage: `python -m pytest tests/unit/tasks/types/image_classification/test_evaluate.py`
(reports, bound, mismatches)."""

from __future__ import annotations

import csv
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from tasks.core import io
from tasks.core.classification import EvalResult
from tasks.core.models import CARD_FILE, ModelError, load_model
from tasks.core.params import load_params
from tasks.types.image_classification.data import read_clean
from tasks.types.image_classification.evaluate import evaluate_model, evaluate_stage
from tasks.types.image_classification.models import ARCHITECTURES
from tests.clean_fixture import (
    CLASSES,
    write_clean_fixture,
    write_params,
    write_trained_project,
)

# Three epochs of a 4-channel CNN on 200 digits: better than chance (0.1) but far from perfect, so
# both sides of evaluate.min_accuracy can be tested with one model.
TINY = {"epochs": 3, "batch_size": 32, "channels": 4, "patience": 5}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_trained_project(tmp_path_factory.mktemp("trained"), 200, TINY)


@pytest.fixture
def project(trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copytree(trained, tmp_path, dirs_exist_ok=True)
    write_params(tmp_path, evaluate={"min_accuracy": 0.0})
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _metrics(project: Path) -> dict:
    return json.loads((project / "reports" / "metrics.json").read_text())


def _evaluate() -> int:
    """The evaluate stage on params.yaml of the cwd, as `python -m tasks.evaluate` runs it."""
    return evaluate_stage(load_params())


def test_writes_three_sane_reports(project: Path) -> None:
    assert _evaluate() == 0
    metrics = _metrics(project)
    with open(project / "reports" / "evaluation" / "plots" / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    clean = read_clean(project / "data" / "clean")
    test = clean.items[clean.items["split"] == "test"]
    assert metrics["n_test"] == len(rows) == len(test) > 0
    assert [r["actual"] for r in rows] == test["label"].tolist()
    actual, predicted = [r["actual"] for r in rows], [r["predicted"] for r in rows]
    assert 0.2 < metrics["accuracy"] < 0.99
    assert metrics["accuracy"] == pytest.approx(np.mean(np.array(actual) == predicted), abs=1e-6)
    assert 0.0 < metrics["macro_f1"] <= 1.0
    assert set(metrics) == {"accuracy", "macro_f1", "n_test", "per_class", "baselines"}
    assert sorted(metrics["per_class"]) == CLASSES
    for name in CLASSES:
        got = metrics["per_class"][name]
        assert set(got) == {"precision", "recall", "f1", "support"}
        assert all(0.0 <= got[k] <= 1.0 for k in ("precision", "recall", "f1"))
        assert got["support"] == actual.count(name)
        hits = sum(a == p == name for a, p in zip(actual, predicted, strict=True))
        if got["support"]:
            assert got["recall"] == pytest.approx(hits / got["support"], abs=1e-6)
    png = (project / "reports" / "evaluation" / "plots" / "confusion_matrix.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


def test_baselines_on_the_same_split_beside_the_model(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="kiln.evaluate"):
        assert _evaluate() == 0
    baselines = _metrics(project)["baselines"]
    assert set(baselines) == {"majority_class", "logreg_pixels"}
    clean = read_clean(project / "data" / "clean")
    train = clean.items.loc[clean.items["split"] == "train", "label"]
    test = clean.items.loc[clean.items["split"] == "test", "label"]
    commonest = train.value_counts().sort_index(kind="stable").idxmax()  # first on a tie
    majority = baselines["majority_class"]
    assert majority["accuracy"] == pytest.approx((test == commonest).mean(), abs=1e-6)
    assert majority["n_test"] == len(test) and repr(commonest) in majority["description"]
    # 8x8 digits: a linear model on the raw pixels is far above chance
    logreg = baselines["logreg_pixels"]
    assert logreg["accuracy"] > 0.7 and logreg["n_test"] == len(test)
    assert "64 block means of the 8x8 pixels" in logreg["description"]
    assert "chosen on val" in logreg["description"]
    assert "baseline logreg_pixels: accuracy" in caplog.text
    assert "the best baseline logreg_pixels" in caplog.text


def test_below_min_accuracy_fails_naming_value_and_bound(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_params(project, evaluate={"min_accuracy": 0.99})
    with caplog.at_level(logging.ERROR, logger="kiln.evaluate"):
        assert _evaluate() == 1
    accuracy = _metrics(project)["accuracy"]  # still written, for the record
    assert accuracy < 0.99
    assert f"test accuracy {accuracy:.4f} is below evaluate.min_accuracy 0.99" in caplog.text


def test_image_size_mismatch_names_the_config_and_writes_nothing(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shutil.rmtree(project / "data")
    write_clean_fixture(project, 200, upscale=2)  # 16x16 images for an 8x8 model
    with caplog.at_level(logging.ERROR, logger="kiln.evaluate"):
        assert _evaluate() == 1
    assert "config.height=8, config.width=8" in caplog.text and "16x16" in caplog.text
    assert not (project / "reports" / "metrics.json").exists()


def test_class_mismatch_names_the_card_and_writes_nothing(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    card_path = project / "models" / CARD_FILE
    card = json.loads(card_path.read_text())
    card_path.write_text(json.dumps({**card, "classes": list("abcdefghij")}))
    with caplog.at_level(logging.ERROR, logger="kiln.evaluate"):
        assert _evaluate() == 1
    assert "models/card.json classes" in caplog.text
    assert not (project / "reports" / "metrics.json").exists()


def test_truncated_weights_fail_before_any_report(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    weights = project / "models" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with caplog.at_level(logging.ERROR, logger="kiln.evaluate"):
        assert _evaluate() == 1
    assert "truncated or tampered" in caplog.text
    assert not (project / "reports" / "metrics.json").exists()


def test_evaluate_model_rejects_wrong_image_size(project: Path) -> None:
    model, card = load_model(project / "models", ARCHITECTURES)
    clean = read_clean(project / "data" / "clean")
    test = clean.split("test")
    wrong = type(test)(test.pixels[:, :4, :], test.labels)
    with pytest.raises(ModelError, match="config.height=8"):
        evaluate_model(model, card, wrong)


def test_killed_metrics_write_leaves_the_old_file(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = '{"accuracy": 0.5}\n'
    (project / "reports").mkdir(exist_ok=True)
    (project / "reports" / "metrics.json").write_text(old)
    real = Path.write_bytes

    def dies_halfway(self: Path, data: bytes) -> int:  # a kill in the middle of the write
        real(self, data[: len(data) // 2])
        raise KeyboardInterrupt

    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(io.Path, "write_bytes", dies_halfway)
        _evaluate()
    assert (project / "reports" / "metrics.json").read_text() == old
    assert not list((project / "reports").glob(".metrics.json.*"))  # no temp file left behind
    assert _evaluate() == 0 and _metrics(project)["n_test"] > 0


def test_metrics_of_a_known_small_case() -> None:
    """3 classes, 6 test items; the numbers worked out by hand. Class "c" never occurs: it gets
    zeros (no warning) and, as in scikit-learn, does not count in macro-F1."""
    result = EvalResult(["a", "b", "c"], np.array([0, 0, 0, 1, 1, 1]), np.array([0, 0, 1, 1, 1, 0]))
    assert result.n_test == 6 and result.accuracy == pytest.approx(4 / 6)
    assert result.confusion.tolist() == [[2, 1, 0], [1, 2, 0], [0, 0, 0]]
    metrics = result.metrics()
    assert metrics == {
        "accuracy": 0.666667,
        "macro_f1": 0.666667,  # (2/3 + 2/3) / 2: classes a and b only
        "n_test": 6,
        "per_class": {
            "a": {"precision": 0.666667, "recall": 0.666667, "f1": 0.666667, "support": 3},
            "b": {"precision": 0.666667, "recall": 0.666667, "f1": 0.666667, "support": 3},
            "c": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0},
        },
    }
