"""`tasks.core.training`: the training-curve PNG train writes beside DVCLive's logs."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from tasks.core.training import (
    CURVES_PNG,
    _metrics_axis_label,
    plot_training_curves,
    write_live,
)

HISTORY = [
    {"epoch": 1, "train_loss": 2.1, "val_loss": 1.9, "val_acc": 0.41},
    {"epoch": 2, "train_loss": 1.2, "val_loss": 1.1, "val_acc": 0.72},
    {"epoch": 3, "train_loss": 0.7, "val_loss": 1.2, "val_acc": 0.70},
]


def test_two_panels_when_there_are_validation_metrics(tmp_path: Path) -> None:
    target = tmp_path / "curves.png"
    plot_training_curves(HISTORY, best_epoch=2, monitor="val_acc", target=target)
    with Image.open(target) as png:
        png.load()  # decodes the whole image
        assert png.format == "PNG" and png.size == (1100, 400)  # 11 x 4 in at 100 dpi


def test_one_panel_for_a_loss_only_history(tmp_path: Path) -> None:
    target = tmp_path / "curves.png"
    plot_training_curves(
        [{"epoch": 1, "val_loss": 0.5}], best_epoch=1, monitor="val_loss", target=target
    )
    with Image.open(target) as png:
        png.load()
        assert png.size == (650, 400)


def test_write_live_writes_the_png_beside_the_logs(tmp_path: Path) -> None:
    run = SimpleNamespace(history=HISTORY, best_epoch=2, epochs_run=3)
    write_live(run, tmp_path / "train", monitor="val_acc")
    assert (tmp_path / "train" / "metrics.json").is_file()
    with Image.open(tmp_path / "train" / CURVES_PNG) as png:
        png.load()
        assert png.size == (1100, 400)


def test_an_empty_history_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no epochs"):
        plot_training_curves([], best_epoch=1, monitor="val_loss", target=tmp_path / "x.png")


def test_the_metrics_axis_names_each_metric_and_a_shared_unit() -> None:
    both = "validation accuracy / macro-F1 (0-1)"
    assert _metrics_axis_label(["val_acc", "val_macro_f1"]) == both
    assert _metrics_axis_label(["val_ppl"]) == "validation perplexity (per token)"
    assert _metrics_axis_label(["val_acc", "val_r2"]) == "validation accuracy / val_r2"
