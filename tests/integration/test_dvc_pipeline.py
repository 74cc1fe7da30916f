"""A real `dvc repro` in a temporary git + DVC repository, from a real crawl of the demo site."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from flows.dvc_stages import stage_names
from tasks.core.params import load_params
from tests.chromium import needs_chromium, render
from tests.project import (
    REPO,
    crawl_and_record,
    dvc,
    free_port,
    make_project,
    tiny_demo_overrides,
    write_params,
)

pytestmark = pytest.mark.integration
ALL_STAGES = stage_names(REPO)  # dvc.yaml's order: the frozen crawl, then the rest
AFTER_CRAWL = ALL_STAGES[1:]


def _stale_stages(project: Path) -> set[str]:
    status = json.loads(dvc("status", "--json", cwd=project).stdout or "{}")
    return set(status)


def _ran(stdout: str) -> list[str]:
    return [s for s in ALL_STAGES if f"Running stage '{s}'" in stdout]


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose crawl snapshot is recorded and whose pipeline `dvc repro` ran once."""
    port = free_port()
    project = make_project(tmp_path_factory.mktemp("dvc"), tiny_demo_overrides(port))
    crawl_and_record(project)
    first = dvc("repro", cwd=project)
    assert _ran(first.stdout) == AFTER_CRAWL, first.stdout  # the frozen crawl is never re-run
    return project


def test_repro_right_after_a_run_does_nothing(reproduced: Path) -> None:
    again = dvc("repro", cwd=reproduced)
    assert _ran(again.stdout) == []
    assert "up to date" in again.stdout
    assert _stale_stages(reproduced) == set()


def test_checkout_restores_deleted_outputs(reproduced: Path) -> None:
    metrics_before = (reproduced / "reports" / "metrics.json").read_bytes()
    card_before = (reproduced / "models" / "card.json").read_bytes()
    for name in ("data/clean", "models", "reports"):
        shutil.rmtree(reproduced / name)
    dvc("checkout", cwd=reproduced)
    assert (reproduced / "reports" / "metrics.json").read_bytes() == metrics_before
    assert (reproduced / "models" / "card.json").read_bytes() == card_before
    assert (reproduced / "data" / "clean" / "pixels.npy").exists()
    assert _stale_stages(reproduced) == set()


def test_metrics_and_plots_show(reproduced: Path) -> None:
    shown = json.loads(dvc("metrics", "show", "--json", cwd=reproduced).stdout)
    metrics = shown[""]["data"]["reports/metrics.json"]["data"]
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert "macro_f1" in metrics
    out_dir = reproduced / "plots-html"
    shown = dvc("plots", "show", "-o", str(out_dir), cwd=reproduced)
    assert "failed to load" not in shown.stderr, shown.stderr  # dvc.yaml declares what exists
    html = (out_dir / "index.html").read_text()
    assert "reports/evaluation/plots/predictions.csv" in html
    assert "reports/evaluation/plots/confusion_matrix.png" in html
    # the page of .dvc/config's template (flows/dvc_plots.py): Vega inline, no CDN
    assert "cdn.jsdelivr" not in html and "window.vegaEmbed" in html


@needs_chromium
def test_plots_page_draws_offline(reproduced: Path, tmp_path: Path) -> None:
    """`dvc plots show`'s page draws its Vega plots with nothing but the file itself (Chromium
    reaches no other host: tests/chromium.py)."""
    out_dir = tmp_path / "plots-html"
    dvc("plots", "show", "-o", str(out_dir), cwd=reproduced)
    plots = re.findall(r"vegaEmbed\('#(\w+)'", (out_dir / "index.html").read_text())
    dom = render((out_dir / "index.html").as_uri(), tmp_path / "chromium")
    # vega-embed replaces each plot's script with its chart: an SVG, sized once Vega has run
    drawn = dict(re.findall(r'<div id="(\w+)" class="vega-embed.*?<svg [^>]*class="marks" '
                            r'width="(\d+)"', dom, flags=re.DOTALL))
    assert set(drawn) == set(plots), (plots, dom[-3000:])
    assert int(drawn["reports_evaluation_plots_predictions_csv"]) > 0  # the confusion matrix
    assert any(int(drawn[p]) > 0 for p in plots if p.startswith("reports_train_plots_metrics"))


def test_changing_epochs_reruns_only_train_and_the_stages_after_it(reproduced: Path) -> None:
    epochs = load_params(reproduced / "params.yaml").train.epochs
    write_params(reproduced, {"train": {"epochs": epochs + 1}})
    # DVC reports evaluate stale only once train has changed models/, so only train shows here.
    assert _stale_stages(reproduced) == {"train"}
    result = dvc("repro", cwd=reproduced)
    assert _ran(result.stdout) == ALL_STAGES[ALL_STAGES.index("train"):]
    assert _stale_stages(reproduced) == set()
