"""Evaluate stage: `python -m tasks.evaluate` (DVC stage `evaluate`: models/ -> reports/).

Loads the hash-checked model of models/, predicts the test split of data/clean and writes
reports/metrics.json (accuracy, macro_f1, n_test, per_class) and reports/evaluation/
(predictions.csv for DVC's confusion template, confusion_matrix.png), each atomically. Other task
types hand over to `tasks/kinds/<task type>.py` (tasks/task_types.py). Exits non-zero, after writing
them, if accuracy is below `evaluate.min_accuracy`; a model that does not fit the data (image size,
classes) fails before anything is written. Metrics are plain numpy over the confusion matrix
(checked against scikit-learn in tests/unit/test_evaluate.py), so the stage needs only torch, numpy,
pandas, pyarrow and safetensors; matplotlib draws the PNG when installed.
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tasks.dataset import DataError, Split, check_labels, read_clean
from tasks.io import atomic_dir, atomic_path, write_json
from tasks.models import ModelError, load_model, pick_device, predict_logits, preprocess

logger = logging.getLogger("kiln.evaluate")

CLEAN_DIR, MODELS_DIR, REPORTS_DIR = Path("data/clean"), Path("models"), Path("reports")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@dataclass(frozen=True)
class EvalResult:
    classes: list[str]
    confusion: np.ndarray  # int64 (K, K): rows actual, columns predicted
    actual: np.ndarray  # int64 (N,) class indices
    predicted: np.ndarray

    @property
    def n_test(self) -> int:
        return len(self.actual)

    @property
    def accuracy(self) -> float:
        return float(np.trace(self.confusion) / self.n_test)

    def metrics(self) -> dict[str, Any]:
        """metrics.json: per-class precision/recall/F1; macro-F1 over the classes that occur in
        actual or predicted labels (scikit-learn's `f1_score(average="macro")` convention)."""
        tp = np.diag(self.confusion).astype(np.float64)
        support, n_pred = self.confusion.sum(axis=1), self.confusion.sum(axis=0)
        precision = np.divide(tp, n_pred, out=np.zeros_like(tp), where=n_pred > 0)
        recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
        denom = precision + recall
        f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
        present = (support > 0) | (n_pred > 0)
        per_class = {
            name: {
                "precision": round(float(p), 6),
                "recall": round(float(r), 6),
                "f1": round(float(f), 6),
                "support": int(s),
            }
            for name, p, r, f, s in zip(self.classes, precision, recall, f1, support, strict=True)
        }
        return {
            "accuracy": round(self.accuracy, 6),
            "macro_f1": round(float(f1[present].mean()), 6),
            "n_test": self.n_test,
            "per_class": per_class,
        }


def evaluate_model(model: nn.Module, card: dict[str, Any], data: Split) -> EvalResult:
    """Predict `data` (the test split) with `model` as `card` describes it; pure, writes nothing."""
    config, classes = card["config"], list(card["classes"])
    height, width = data.pixels.shape[1:]
    if (config["height"], config["width"]) != (height, width) or config["in_channels"] != 1:
        raise ModelError(
            f"models/card.json config.height={config['height']}, config.width={config['width']}, "
            f"config.in_channels={config['in_channels']} but the test images are {height}x{width} "
            "grayscale (1 channel)"
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
    predicted = predict_logits(model.to(device), x).argmax(1).cpu().numpy()
    k = len(classes)
    confusion = np.bincount(data.labels * k + predicted, minlength=k * k).reshape(k, k)
    return EvalResult(classes, confusion, data.labels, predicted)


def plot_confusion(result: EvalResult, target: Path) -> None:
    """Confusion matrix PNG: class names on both axes, the count in each cell."""
    import matplotlib  # noqa: PLC0415 (optional: only for the PNG)

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt  # noqa: PLC0415

    k = len(result.classes)
    side = max(4.0, 0.6 * k + 2)  # inches: ~0.6 in per class keeps 3-digit counts legible
    fig, ax = plt.subplots(figsize=(side, side), dpi=100)
    ax.imshow(result.confusion, cmap="Blues")
    ax.set(xticks=range(k), yticks=range(k), xlabel="predicted", ylabel="actual")
    ax.set_xticklabels(result.classes, rotation=45 if max(map(len, result.classes)) > 3 else 0)
    ax.set_yticklabels(result.classes)
    ax.set_title(f"confusion matrix, test accuracy {result.accuracy:.3f} (n={result.n_test})")
    dark = result.confusion.max() / 2
    for (i, j), count in np.ndenumerate(result.confusion):
        color = "white" if count > dark else "black"
        ax.text(j, i, str(count), ha="center", va="center", color=color, fontsize=9)
    fig.tight_layout()
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def write_reports(result: EvalResult, reports_dir: Path) -> None:
    """reports_dir/metrics.json and reports_dir/evaluation/ (predictions.csv, confusion PNG)."""
    write_json(reports_dir / "metrics.json", result.metrics())
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["actual", "predicted"])
    names = np.asarray(result.classes, dtype=object)
    writer.writerows(zip(names[result.actual], names[result.predicted], strict=True))
    with atomic_dir(reports_dir / "evaluation") as tmp:  # one swap: the plots of one model
        (tmp / "predictions.csv").write_text(out.getvalue(), encoding="utf-8")
        try:
            plot_confusion(result, tmp / "confusion_matrix.png")
        except ImportError:
            logger.warning("matplotlib is not installed: confusion_matrix.png not written")


def main() -> int:
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    from tasks.params import ParamsError, load_params  # noqa: PLC0415 (pydantic only for the CLI)
    from tasks.task_types import run_stage  # noqa: PLC0415

    try:
        params = load_params()
    except ParamsError as exc:
        logger.error("evaluate failed: %s", exc)
        return 1
    if (code := run_stage(params, "evaluate")) is not None:  # other task types
        return code
    try:
        bound = params.evaluate.min_accuracy
        model, card = load_model(MODELS_DIR)
        clean = read_clean(CLEAN_DIR)
        check_labels(clean.items, card["classes"], "models/card.json classes")
        result = evaluate_model(model, card, clean.split("test"))
    except (ParamsError, DataError, ModelError) as exc:
        logger.error("evaluate failed: %s", exc)
        return 1
    write_reports(result, REPORTS_DIR)
    metrics = result.metrics()
    logger.info(
        f"test accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f} "
        f"on {result.n_test} images; wrote {REPORTS_DIR}/"
    )
    if result.accuracy < bound:
        logger.error(f"test accuracy {result.accuracy:.4f} is below evaluate.min_accuracy {bound}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
