"""`train.model: linear` for images (tasks/types/image_classification/models.py LinearClassifier):
`python -m pytest tests/unit/tasks/types/image_classification/test_linear.py`.

Logistic regression on the image averaged down to at most 16 px a side: the pool's factor is the
baseline's (tasks.core.baselines.downscale), shapes and a card round trip, ONNX export with ONNX
Runtime parity at 8x8 grey, 28x28 grey, 32x32 RGB, 64x48 RGB (both ways round) and odd sizes, a
synthetic task learnt through the engine, the train, evaluate and export stages on the digits
upscaled to 32x32, the card's config and the params.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F  # noqa: N812 (the usual torch alias)

from tasks.core.baselines import downscale
from tasks.core.images import ImageFit
from tasks.core.models import ModelError, build_model, save_model
from tasks.core.objectives import classification_metrics
from tasks.core.params import ExportParams, ParamsError, load_params, parse_params
from tasks.types.image_classification.evaluate import evaluate_stage, torch_runner
from tasks.types.image_classification.export import export_model, export_stage
from tasks.types.image_classification.models import ARCHITECTURES, LinearConfig
from tasks.types.image_classification.params import ImageTrainParams
from tasks.types.image_classification.train import model_config, train_stage
from tests.clean_fixture import write_project
from tests.project import REPO, merge_params
from tests.unit.tasks.types.model_checks import check_shape_and_card_round_trip, split, train

RNG = np.random.default_rng(0)
SIZES = [(8, 8, 1), (28, 28, 1), (32, 32, 3), (48, 64, 3), (64, 48, 3), (17, 33, 3), (5, 40, 1)]


@pytest.mark.parametrize(
    ("height", "width", "factors", "pooled"),
    [(8, 8, (1, 1), (8, 8)), (28, 28, (2, 2), (14, 14)), (32, 32, (2, 2), (16, 16)),
     (48, 64, (3, 4), (16, 16)), (17, 33, (2, 3), (9, 11)), (1, 1, (1, 1), (1, 1))],
)  # fmt: skip
def test_the_pool_factor_is_the_baselines(
    height: int, width: int, factors: tuple[int, int], pooled: tuple[int, int]
) -> None:
    config = LinearConfig(height=height, width=width)
    assert (config.factors, config.pooled) == (factors, pooled)
    x = torch.zeros(1, 1, height, width)
    assert downscale(np.zeros((1, height, width), np.uint8)).shape[1] == pooled[0] * pooled[1]
    model = build_model(ARCHITECTURES, "linear", {"height": height, "width": width})
    assert model(x).shape == (1, 10)


@pytest.mark.parametrize(("height", "width"), [(28, 28), (48, 64), (32, 32)])
def test_whole_blocks_average_as_the_baseline_does(height: int, width: int) -> None:
    """Where the factor divides the side, the pool is the baseline's block mean exactly."""
    pixels = RNG.integers(0, 256, (3, height, width, 3), dtype=np.uint8)
    x = torch.from_numpy(pixels).float().div(255).permute(0, 3, 1, 2)
    kernel = LinearConfig(height=height, width=width).factors
    pooled = F.avg_pool2d(x, kernel, kernel, ceil_mode=True).permute(0, 2, 3, 1).flatten(1)
    np.testing.assert_allclose(pooled.numpy(), downscale(pixels), atol=1e-6)


def test_shapes_card_round_trip_and_zero_start(tmp_path: Path) -> None:
    config = {"in_channels": 3, "height": 28, "width": 20, "n_classes": 4}
    x = torch.randn(5, 3, 28, 20)
    check_shape_and_card_round_trip(
        ARCHITECTURES, "linear", config, x=x, shape=(5, 4), directory=tmp_path
    )
    model = build_model(ARCHITECTURES, "linear", config)
    assert model.head.in_features == 3 * 14 * 10
    assert not model(x).any()  # zero weights: every class equally likely, as logistic regression


def test_a_bad_config_is_named() -> None:
    with pytest.raises(ModelError, match="config.max_side must be a positive integer"):
        build_model(ARCHITECTURES, "linear", {"max_side": 0})
    with pytest.raises(ModelError, match=r"unknown config field\(s\) \['channels'\]"):
        build_model(ARCHITECTURES, "linear", {"channels": 8})


@pytest.mark.parametrize(("height", "width", "channels"), SIZES)
def test_exports_at_every_size_with_parity(
    tmp_path: Path, height: int, width: int, channels: int
) -> None:
    config = {"in_channels": channels, "height": height, "width": width, "n_classes": 3}
    torch.manual_seed(0)
    model = build_model(ARCHITECTURES, "linear", config).eval()
    for p in model.parameters():  # not the zero start: the parity would be trivial
        torch.nn.init.normal_(p, std=0.1)
    fit = ImageFit(height, width, "L" if channels == 1 else "RGB").to_json()
    prep = {**fit, "normalise": "dataset", "scale": 1 / 255, "mean": [0.4] * channels,
            "std": [0.3] * channels}  # fmt: skip
    card = {"architecture": "linear", "config": config, "classes": ["a", "b", "c"],
            "preprocessing": prep}  # fmt: skip
    card = save_model(model, tmp_path, card)
    shape = (height, width) if channels == 1 else (height, width, channels)
    test = RNG.integers(0, 256, (6, *shape), dtype=np.uint8)
    blob, info = export_model(model, card, test, ExportParams(parity_batch=6))
    assert info["input"]["shape"] == ["batch", *shape]
    assert info["parity"]["argmax_agree"] == info["parity"]["n"] == 9
    assert info["parity"]["max_abs_diff"] <= 1e-4
    assert len(blob) < 64 * 1024  # a linear layer on at most 16x16 px: a few KB


def test_learns_through_the_engine(tmp_path: Path) -> None:
    """Two classes told apart by which half of a 28x28 image is brighter."""
    torch.manual_seed(0)
    y = torch.randint(0, 2, (240,))
    x = torch.rand(240, 1, 28, 28) * 0.5
    x[y == 0, :, :, :14] += 0.5
    x[y == 1, :, :, 14:] += 0.5
    config = {"in_channels": 1, "height": 28, "width": 28, "n_classes": 2}
    run = train(
        ARCHITECTURES,
        "linear",
        config,
        objective=(F.cross_entropy, classification_metrics),
        data=split(x, y, 60),
        path=tmp_path,
        epochs=6,
    )
    assert run.best["val_acc"] > 0.95, run.history


def test_the_cards_config_has_no_cnn_knobs() -> None:
    pixels = np.zeros((4, 28, 20, 3), np.uint8)
    linear = model_config(ImageTrainParams(model="linear"), pixels, 5)
    assert linear == {"in_channels": 3, "height": 28, "width": 20, "n_classes": 5, "max_side": 16}
    cnn = model_config(ImageTrainParams(), pixels[..., 0], 5)
    assert cnn == {"in_channels": 1, "height": 28, "width": 20, "n_classes": 5, "channels": 32,
                   "dropout": 0.2}  # fmt: skip


def test_params_take_linear_and_name_the_models() -> None:
    raw = load_params(REPO / "params.yaml").model_dump(mode="json", by_alias=True)
    assert parse_params(merge_params(raw, {"train": {"model": "linear"}})).train.model == "linear"
    with pytest.raises(ParamsError, match="Input should be 'cnn' or 'linear'"):
        parse_params(merge_params(raw, {"train": {"model": "logreg"}}))


def test_train_evaluate_export_on_digits_at_32x32(tmp_path: Path, monkeypatch) -> None:
    train_params = {"model": "linear", "epochs": 20, "batch_size": 32, "lr": 0.01, "device": "cpu"}
    project = write_project(tmp_path, 400, upscale=4, train=train_params,
                            validate={"image_width": 32, "image_height": 32})  # fmt: skip
    monkeypatch.chdir(project)
    params = load_params()
    assert train_stage(params) == 0
    card = json.loads((project / "models" / "card.json").read_text())
    assert card["architecture"] == "linear"
    assert card["config"] == {"in_channels": 1, "height": 32, "width": 32, "n_classes": 10,
                              "max_side": 16}  # fmt: skip
    assert evaluate_stage(params) == 0
    metrics = json.loads((project / "reports" / "metrics.json").read_text())
    assert metrics["accuracy"] > 0.8, metrics  # logistic regression on digits: ~0.9 and more
    assert export_stage(params) == 0
    info = json.loads((project / "export" / "onnx.json").read_text())
    assert info["input"]["shape"] == ["batch", 32, 32]
    assert info["parity"]["max_abs_diff"] <= params.export.atol
    pixels = np.load(project / "data" / "clean" / "pixels.npy")[:4]
    session = ort.InferenceSession(str(project / "export" / "model.onnx"))
    onnx_logits = session.run(["logits"], {"pixels": pixels})[0]
    np.testing.assert_allclose(onnx_logits, torch_runner(project / "models")(pixels), atol=1e-4)
