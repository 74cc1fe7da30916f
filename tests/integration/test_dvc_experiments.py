"""`dvc exp run -S` and `dvc exp show` on the demo, its params.yaml as shipped (flow mappings and
comments kept): a committed project, then one experiment that changes two train params."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.core.params import load_params
from tests.project import crawl_and_record, dvc, free_port, make_project, run, tiny_demo_overrides

pytestmark = pytest.mark.integration


def committed_demo(root: Path) -> Path:
    """The tiny demo as a user has it after a first run and a commit: the crawl recorded, the
    pipeline reproduced, dvc.lock in git."""
    port = free_port()
    project = make_project(root, tiny_demo_overrides(port), verbatim=True)
    crawl_and_record(project)
    dvc("repro", cwd=project)
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "first run"], project)
    return project


def test_exp_run_set_param_and_exp_show(tmp_path: Path) -> None:
    project = committed_demo(tmp_path)
    assert "# Kiln: the whole job" in (project / "params.yaml").read_text()  # as shipped
    ran = dvc("exp", "run", "-n", "lr01", "-S", "train.epochs=3", "-S", "train.lr=0.01",
              cwd=project)
    assert "Running stage 'train'" in ran.stdout
    assert "Running stage 'clean'" not in ran.stdout  # only what the params change reruns
    params = load_params(project / "params.yaml")  # the stages read DVC's rewrite
    assert (params.train.epochs, params.train.lr) == (3, 0.01)

    shown = json.loads(dvc("exp", "show", "--json", cwd=project).stdout)
    experiments = {e["name"]: e for base in shown for e in
                   (r for exp in base.get("experiments") or [] for r in exp["revs"])}
    data = experiments["lr01"]["data"]
    train = data["params"]["params.yaml"]["data"]["train"]
    assert (train["epochs"], train["lr"]) == (3, 0.01)
    metrics = data["metrics"]["reports/metrics.json"]["data"]
    assert 0.0 <= metrics["macro_f1"] <= 1.0
