"""Drift on a deliberately shifted second crawl, through a real `dvc repro` in a temporary repo.

`python -m pytest tests/integration/test_drift.py`. A first crawl (synthetic, real digits) goes
through validate, clean and train; a second crawl of darker images then fails `validate` on the
`image_mean_ks` drift check (severity fail): train does not run, the model, data/validated and
dvc.lock stay as they were. With that check set to `warn` the same crawl passes, reported as a
warning, and DVC records it as the new previous version.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from tests.project import dvc, make_project, write_params
from tests.raw_fixture import build_raw

pytestmark = pytest.mark.integration
TINY = {
    "validate": {"min_rows": 60, "max_quarantine_share": 0.1},
    "train": {"epochs": 2, "patience": 1, "channels": 4, "batch_size": 32},
    "evaluate": {"min_accuracy": 0.0},
}


def _crawl(project: Path, **shift: int) -> None:
    """Stand in for the crawl stage: write data/raw and record it as `kiln run` does."""
    shutil.rmtree(project / "data/raw", ignore_errors=True)
    rows = build_raw(project, 150, **shift)
    (project / "reports").mkdir(exist_ok=True)
    (project / "reports/crawl.json").write_text(json.dumps({"items": len(rows)}))
    dvc("commit", "--force", "crawl", cwd=project)


def _locked(project: Path, stage: str) -> list:
    return yaml.safe_load((project / "dvc.lock").read_text())["stages"][stage]["outs"]


def test_shifted_crawl_stops_or_warns_as_params_say(tmp_path: Path) -> None:
    project = make_project(tmp_path, TINY)
    _crawl(project)
    first = dvc("repro", "train", cwd=project)
    assert "Running stage 'train'" in first.stdout
    drift = json.loads((project / "reports/drift.json").read_text())
    assert drift["status"] == "no previous version"
    card = (project / "models/card.json").read_bytes()
    validated = (project / "data/validated/items.parquet").read_bytes()
    locked = _locked(project, "validate")

    _crawl(project, darken=3)  # the same digits, much darker: mean intensity drifts
    failed = dvc("repro", "train", cwd=project, check=False)
    assert failed.returncode != 0
    assert "drift image_mean_ks" in failed.stderr + failed.stdout
    assert "Running stage 'train'" not in failed.stdout
    drift = json.loads((project / "reports/drift.json").read_text())
    assert drift["status"] == "fail" and drift["checks"]["image_mean_ks"]["drifted"]
    assert drift["checks"]["new_item_share"]["statistic"] == 1.0
    assert (project / "models/card.json").read_bytes() == card  # the previous model stays
    assert (project / "data/validated/items.parquet").read_bytes() == validated
    assert _locked(project, "validate") == locked

    write_params(project, {"validate": {"drift": {"image_mean_ks": {"severity": "warn"}}}})
    warned = dvc("repro", "validate", cwd=project)
    assert "drift image_mean_ks" in warned.stderr + warned.stdout
    drift = json.loads((project / "reports/drift.json").read_text())
    assert drift["status"] == "warn"
    assert _locked(project, "validate") != locked  # the darker crawl is the new previous version
    again = dvc("repro", "-f", "validate", cwd=project)  # same data against itself: no drift
    assert json.loads((project / "reports/drift.json").read_text())["status"] == "ok", again.stdout
