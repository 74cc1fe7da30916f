"""Image classification's evaluate stage: models/ + data/clean -> reports/.

Loads the hash-checked model of models/, predicts the test split of data/clean and writes
reports/metrics.json (accuracy, macro_f1, n_test, per_class) and reports/evaluation/plots/
(predictions.csv for DVC's confusion template, confusion_matrix.png), each atomically, through
`tasks.core.classification`. Beside the model's metrics, metrics.json holds `baselines` on the
same splits (`tasks.core.baselines`): the majority class and a logistic regression on the
pixels downscaled to at most 16 per side. Exits non-zero, after writing them, if accuracy is below
`evaluate.min_accuracy`; a model that does not fit the data (image size, classes) fails before
anything is written.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from tasks.core.classification import EvalResult, write_reports
from tasks.core.dataset import DataError, check_labels
from tasks.core.engine import pick_device
from tasks.core.models import ModelError, load_model, predict_logits
from tasks.core.paths import CLEAN_DIR, MODELS_DIR, REPORTS_DIR
from tasks.types.image_classification.data import CleanData, Split, read_clean
from tasks.types.image_classification.models import ARCHITECTURES, preprocess

if TYPE_CHECKING:
    from tasks.types.image_classification.params import ImageParams

logger = logging.getLogger("kiln.evaluate")
BASELINE_SIDE = 16  # the logistic-regression baseline sees at most 16 x 16 pixels per channel


def evaluate_model(model: nn.Module, card: dict[str, Any], data: Split) -> EvalResult:
    """Predict `data` (the test split) with `model` as `card` describes it; pure, writes nothing."""
    config, classes = card["config"], list(card["classes"])
    height, width = data.pixels.shape[1:3]  # (N, H, W) grayscale or (N, H, W, C)
    channels = 1 if data.pixels.ndim == 3 else data.pixels.shape[3]
    if (config["height"], config["width"], config["in_channels"]) != (height, width, channels):
        raise ModelError(
            f"models/card.json config.height={config['height']}, config.width={config['width']}, "
            f"config.in_channels={config['in_channels']} but the test images are {height}x{width} "
            f"with {channels} channel(s)"
        )
    if config["n_classes"] != len(classes):
        raise ModelError(
            f"models/card.json config.n_classes={config['n_classes']} but card "
            f"classes has {len(classes)} names"
        )
    if not len(data.labels):
        raise DataError("data/clean has no test rows")
    if data.labels.min() < 0 or data.labels.max() >= len(classes):
        raise ModelError(
            f"models/card.json classes has {len(classes)} names but test label_index spans "
            f"{data.labels.min()}..{data.labels.max()}"
        )
    device = pick_device("auto")
    x = preprocess(torch.from_numpy(data.pixels).to(device), card["preprocessing"])
    predicted = predict_logits(model.to(device), x, what="evaluate.test").argmax(1).cpu().numpy()
    return EvalResult(classes, data.labels, predicted)


def test_metrics(model_dir: Path, clean_dir: Path, params: ImageParams) -> dict[str, Any]:  # noqa: ARG001
    """The metrics of the model in `model_dir` on the test split of `clean_dir`."""
    model, card = load_model(model_dir, ARCHITECTURES)
    clean = read_clean(clean_dir)
    check_labels(clean.items, card["classes"], f"{model_dir} classes")
    return evaluate_model(model, card, clean.split("test")).metrics()


def image_baselines(classes: list[str], clean: CleanData) -> dict[str, dict[str, Any]]:
    """The baselines of reports/metrics.json on the splits of `clean` (data/clean as evaluate
    reads it): the majority class and a logistic regression on downscaled pixels."""
    from tasks.core.baselines import classification_baselines, downscale  # noqa: PLC0415

    splits = [clean.split(name) for name in ("train", "val", "test")]
    features = tuple(downscale(split.pixels, BASELINE_SIDE) for split in splits)
    height, width = splits[0].pixels.shape[1:3]
    n_features = features[0].shape[1]
    return classification_baselines(
        classes,
        *(split.labels for split in splits),
        features=features,  # type: ignore[arg-type]
        classical=(
            "logreg_pixels",
            f"{n_features} block means of the {height}x{width} pixels",
        ),
    )


def evaluate_stage(params: ImageParams) -> int:
    """models/ + data/clean -> reports/; the exit code (1 below evaluate.min_accuracy too)."""
    from tasks.core.baselines import baseline_lines  # noqa: PLC0415

    try:
        bound = params.evaluate.min_accuracy
        model, card = load_model(MODELS_DIR, ARCHITECTURES)
        clean = read_clean(CLEAN_DIR)
        check_labels(clean.items, card["classes"], "models/card.json classes")
        result = evaluate_model(model, card, clean.split("test"))
        baselines = image_baselines(list(card["classes"]), clean)
    except (DataError, ModelError) as exc:
        logger.error("evaluate failed: %s", exc)
        return 1
    write_reports(result, REPORTS_DIR, baselines)
    metrics = result.metrics()
    logger.info(
        f"test accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f} "
        f"on {result.n_test} images; wrote {REPORTS_DIR}/"
    )
    for line in baseline_lines(metrics, baselines, ("accuracy", "macro_f1")):
        logger.info(line)
    if result.accuracy < bound:
        logger.error(f"test accuracy {result.accuracy:.4f} is below evaluate.min_accuracy {bound}")
        return 1
    return 0


def torch_runner(version_dir: Path) -> Callable[[np.ndarray], np.ndarray]:
    """uint8 pixels (N, H, W) -> float32 logits, as the ONNX graph computes them."""
    model, card = load_model(version_dir, ARCHITECTURES)  # checks weights against the card

    def run(pixels: np.ndarray) -> np.ndarray:
        x = preprocess(torch.from_numpy(pixels), card["preprocessing"])
        return predict_logits(model, x).numpy()

    return run
