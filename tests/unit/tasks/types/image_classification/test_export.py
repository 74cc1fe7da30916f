"""Export stage: `python -m pytest tests/unit/tasks/types/image_classification/test_export.py`
(ONNX parity, refusals).

Parity tolerance: every logit of ONNX Runtime within `export.atol` (1e-4) of PyTorch's on the
fixed batch, and the same argmax everywhere; measured differences are ~1e-6 (float32 kernels).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from tasks.core.models import build_model, load_model, predict_logits
from tasks.core.onnx_export import ExportError
from tasks.core.params import ExportParams, load_params
from tasks.types.image_classification import export
from tasks.types.image_classification.data import read_clean
from tasks.types.image_classification.models import ARCHITECTURES, preprocess
from tests.clean_fixture import write_clean_fixture, write_trained_project

TINY = {"epochs": 2, "batch_size": 32, "channels": 4, "patience": 5}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_trained_project(tmp_path_factory.mktemp("export"), 200, TINY)


@pytest.fixture
def project(trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copytree(trained, tmp_path, dirs_exist_ok=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _export() -> int:
    """The export stage on params.yaml of the cwd, as `python -m tasks.export` runs it."""
    return export.export_stage(load_params())


def test_onnx_matches_pytorch_on_a_fixed_batch(project: Path) -> None:
    assert _export() == 0
    blob = (project / "export" / "model.onnx").read_bytes()
    info = json.loads((project / "export" / "onnx.json").read_text())
    model, card = load_model(project / "models", ARCHITECTURES)
    assert info["onnx_sha256"] == hashlib.sha256(blob).hexdigest()
    assert info["weights_sha256"] == card["weights_sha256"]
    assert info["parity"]["max_abs_diff"] <= info["parity"]["atol"] == 1e-4
    test = read_clean(project / "data" / "clean").split("test")
    batch = export.parity_batch(test.pixels, 64)
    assert len(batch) == info["parity"]["n"] == min(64, len(test.pixels)) + 3
    session = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    want = predict_logits(model, preprocess(torch.from_numpy(batch), card["preprocessing"]))
    for n in (1, 7, len(batch)):  # the batch dimension is dynamic
        got = session.run(["logits"], {"pixels": batch[:n]})[0]
        assert got.shape == (n, 10) and got.dtype == np.float32
        np.testing.assert_allclose(got, want[:n].numpy(), atol=1e-4, rtol=0)
        assert (got.argmax(1) == want[:n].numpy().argmax(1)).all()


def test_rerun_gives_byte_identical_files(project: Path) -> None:
    assert _export() == 0
    first = {f: (project / "export" / f).read_bytes() for f in ("model.onnx", "onnx.json")}
    assert _export() == 0  # same models/ and data: DVC sees the same export hash
    assert {f: (project / "export" / f).read_bytes() for f in first} == first


def test_a_graph_that_disagrees_fails_and_keeps_the_last_export(
    project: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert _export() == 0
    good = (project / "export" / "model.onnx").read_bytes()
    _, card = load_model(project / "models", ARCHITECTURES)
    torch.manual_seed(99)
    other = build_model(ARCHITECTURES, "cnn", card["config"])  # a graph of other weights
    real = export.to_onnx
    monkeypatch.setattr(export, "to_onnx", lambda _m, c, opset: real(other, c, opset))
    with caplog.at_level(logging.ERROR, logger="kiln.export"):
        assert _export() == 1
    assert "ONNX Runtime and PyTorch disagree" in caplog.text and "export.atol" in caplog.text
    assert (project / "export" / "model.onnx").read_bytes() == good


def test_nan_difference_is_a_failure(project: Path) -> None:
    model, card = load_model(project / "models", ARCHITECTURES)
    blob = export.to_onnx(model, card, 17)
    batch = np.zeros((2, 8, 8), np.uint8)
    with pytest.raises(ExportError):
        export.check_parity(
            blob,
            model,
            {**card, "preprocessing": {**card["preprocessing"], "std": 0.0}},
            batch,
            1e-4,
        )


def test_image_size_mismatch_names_the_config(project: Path) -> None:
    model, card = load_model(project / "models", ARCHITECTURES)
    shutil.rmtree(project / "data")
    write_clean_fixture(project, 200, upscale=2)
    pixels = read_clean(project / "data" / "clean").split("test").pixels
    with pytest.raises(ValueError, match=r"config.height=8, config.width=8 .* 16x16"):
        export.export_model(model, card, pixels, ExportParams())
