"""What the classification task types share in evaluate: metrics from the test predictions
(scikit-learn), the confusion-matrix PNG and reports/ (metrics.json, evaluation/predictions.csv
for DVC's confusion template)."""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

from tasks.core.io import atomic_dir, atomic_path, write_json

logger = logging.getLogger("kiln.evaluate")


@dataclass(frozen=True)
class EvalResult:
    classes: list[str]
    actual: np.ndarray  # int64 (N,) class indices
    predicted: np.ndarray

    @property
    def n_test(self) -> int:
        return len(self.actual)

    @property
    def confusion(self) -> np.ndarray:
        """int64 (K, K): rows actual, columns predicted."""
        return confusion_matrix(self.actual, self.predicted, labels=range(len(self.classes)))

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.actual == self.predicted))

    def metrics(self) -> dict[str, Any]:
        """metrics.json: per-class precision/recall/F1 and support; macro-F1 over the classes that
        occur in the actual or predicted labels (scikit-learn's convention)."""
        labels = range(len(self.classes))
        precision, recall, f1, support = precision_recall_fscore_support(
            self.actual, self.predicted, labels=labels, zero_division=0
        )
        per_class = {
            name: {
                "precision": round(float(p), 6),
                "recall": round(float(r), 6),
                "f1": round(float(f), 6),
                "support": int(s),
            }
            for name, p, r, f, s in zip(self.classes, precision, recall, f1, support, strict=True)
        }
        macro_f1 = f1_score(self.actual, self.predicted, average="macro", zero_division=0)
        return {
            "accuracy": round(self.accuracy, 6),
            "macro_f1": round(float(macro_f1), 6),
            "n_test": self.n_test,
            "per_class": per_class,
        }


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


def write_reports(
    result: EvalResult, reports_dir: Path, baselines: dict[str, Any] | None = None
) -> None:
    """reports_dir/metrics.json (with `baselines` beside the model's metrics when given,
    tasks/core/baselines.py) and reports_dir/evaluation/plots/ (predictions.csv, confusion PNG)."""
    metrics = result.metrics()
    if baselines is not None:
        metrics["baselines"] = baselines
    write_json(reports_dir / "metrics.json", metrics)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["actual", "predicted"])
    names = np.asarray(result.classes, dtype=object)
    writer.writerows(zip(names[result.actual], names[result.predicted], strict=True))
    with atomic_dir(reports_dir / "evaluation") as tmp:  # one swap: the plots of one model
        plots = tmp / "plots"  # EVALUATION_PLOTS, dvc.yaml's `plots:`: both files are charts
        plots.mkdir()
        (plots / "predictions.csv").write_text(out.getvalue(), encoding="utf-8")
        try:
            plot_confusion(result, plots / "confusion_matrix.png")
        except ImportError:
            logger.warning("matplotlib is not installed: confusion_matrix.png not written")
