"""Adding a task type is adding one package: a toy task type from tests/plugins/ is copied into a
project's tasks/types/ and registered in the `kiln.task_types` entry-point group (a dist-info on
PYTHONPATH, as `pip install` of a plug-in package would write), with no edit to the core, the
stage modules or dvc.yaml; then the crawl and a real `dvc repro` run it through every stage."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from crawlers.demo_site import start_demo_site
from tasks.core.params import DemoSiteParams
from tests.project import free_port, make_project, run

pytestmark = pytest.mark.e2e

PLUGIN = Path(__file__).resolve().parents[1] / "plugins" / "toy_regression"


def _register(site_dir: Path) -> None:
    """What installing a package that declares the entry point leaves on sys.path."""
    info = site_dir / "kiln_toy_regression-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: kiln-toy-regression\n"
                                   "Version: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[kiln.task_types]\ntoy_regression = tasks.types.toy_regression:TASK\n")


def test_a_task_type_added_as_a_package_runs_every_stage(tmp_path: Path) -> None:
    port = free_port()
    project = make_project(tmp_path, {"demo_site": {"port": port, "sections": ["co2"]}},
                           base="examples/co2.params.yaml")
    shutil.copytree(PLUGIN, project / "tasks/types/toy_regression")
    _register(tmp_path / "site")
    raw = yaml.safe_load((project / "params.yaml").read_text())
    raw["project"]["task"] = "toy_regression"
    raw["crawl"]["start_urls"] = [f"http://127.0.0.1:{port}/co2/"]
    del raw["clean"]["series"], raw["evaluate"]["season_length"]
    raw["train"] = {"model": "constant", "value_column": "co2_ppm"}
    # the toy reports no baselines (it predicts the train mean: a baseline itself)
    raw["promote"] = {"metric": "mae", "min_improvement": 0.0, "floors": {}, "baseline_gate": False}
    (project / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    env = {"PYTHONPATH": f"{tmp_path / 'site'}"}

    site = start_demo_site(DemoSiteParams(**raw["demo_site"]))
    try:
        run([sys.executable, "-m", "tasks.crawl"], project, extra_env=env)
    finally:
        site.stop()
    run([sys.executable, "-m", "dvc", "commit", "--force", "crawl"], project, extra_env=env)
    run([sys.executable, "-m", "dvc", "repro"], project, extra_env=env)

    clean = json.loads((project / "reports/clean.json").read_text())
    assert clean["n_out"] > 2000  # the weekly CO2 record, measured weeks only
    metrics = json.loads((project / "reports/metrics.json").read_text())
    assert metrics["n_test"] > 200 and 0 < metrics["mae"] < 30  # ppm off the train mean
    onnx_info = json.loads((project / "export/onnx.json").read_text())
    assert onnx_info["parity"]["max_abs_diff"] <= 1e-5
    promotion = json.loads((project / "reports/promotion.json").read_text())
    assert promotion["promoted"], promotion["reason"]
    dvc_yaml = (project / "dvc.yaml").read_text()
    assert "toy_regression" not in dvc_yaml  # found through ${project.task}, not an edit
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert any(d["path"] == "tasks/types/toy_regression" for d in lock["stages"]["train"]["deps"])
