"""Every registered task type runs from a minimal params.yaml written by hand.

Parametrised over `tasks.core.plugins.known_task_types()`, so a new task type is covered as
soon as it is registered. For each one, a fresh git + DVC project gets a params.yaml holding only
what a user must say: the project (name and task type), the crawl of the demo site's board for
that type, the facts of its data that Kiln cannot guess (the classes and label spellings of a
classifier, the columns of a series, the image size, the keys of `validate` that have no
default), and the settings that keep the run short on a 2-core CPU (a small demo site or a few
pages, a tiny model or the default one on short texts, one epoch; a one-epoch model is not
expected to beat the baselines its evaluation reports, so `promote.baseline_gate` is off). Then,
through the `kiln` command line and a real Prefect server:

1. `kiln run` refuses before any work: exit code 2, naming the keys dvc.yaml tracks that the
   file lacks (DVC refuses a stage whose params are not in the file, defaults or not), and
   nothing is written to data/, models/, reports/ or export/.
2. `kiln check --write` completes the file with every key and its default; the hand-written file
   is kept as params.yaml.bak and the new one loads beside dvc.yaml.
3. `kiln run` runs every stage of dvc.yaml: the flow run completes, reports/metrics.json holds
   the task type's headline metrics as finite numbers, and the same metrics of its baselines,
   export/model.onnx exists, the model is promoted to champion v0001, and `dvc status` has
   nothing to do; `dvc plots show` loads every plot dvc.yaml declares and draws the task type's
   charts (reports/evaluation/plots/).
4. The served champion (the app of `kiln serve`, ONNX Runtime) answers one real request in that
   task type's schema.
"""

from __future__ import annotations

import base64
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from fastapi.testclient import TestClient

from flows.dvc_stages import stage_names
from serve.app import create_app
from tasks.core.params import ServeParams, load_params, missing_keys, tracked_keys
from tasks.core.plugins import known_task_types, task_type
from tests.project import (
    REPO,
    dvc,
    flow_run_id,
    free_port,
    make_project,
    prefect_api,
    run,
    task_run_states,
)

pytestmark = pytest.mark.e2e
STAGES = stage_names(REPO)
DEMO = "127.0.0.1"
DIGITS = [str(d) for d in range(10)]
DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
# The joke board lists 25 jokes a page, sorted by language: pages 1-8 hold Czech, German, English.
JOKE_PAGES = {"css": "nav.pagination", "allow": ["/jokes/page/[2-8]$"]}
JOKE_BLOCKS = {"css": "article.joke", "link_css": "a.joke::attr(href)"}
JOKE_TEXT = {"css": "div.joke-body", "cleanup": ["html_text", "strip"]}
TINY_TRANSFORMER = {"epochs": 1, "d_model": 16, "layers": 1, "heads": 2, "text": {"max_len": 64}}
# Text classification's default model (linear, on WordPiece tokens): no architecture knobs, one
# epoch of short texts (the jokes are a sentence or two: 64 WordPiece tokens hold most).
DEFAULT_MODEL_SHORT = {"epochs": 1, "text": {"max_len": 64}}


def _crawl(port: int, path: str, **spec: Any) -> dict[str, Any]:
    """A crawl of the demo site (on loopback, hence allow_loopback) starting at `path`."""
    return {"start_urls": [f"http://{DEMO}:{port}{path}"], "allowed_domains": [DEMO],
            "allow_loopback": True, **spec}  # fmt: skip


def _image_classification(port: int) -> dict[str, Any]:
    return {
        "demo_site": {"port": port, "n_items": 100, "sections": []},  # the digits shop alone
        "crawl": _crawl(port, "/", follow_css=["nav.pagination a", "ul.items a.item"],
                        item_url_pattern="/item/[^/]+$", image_field="image",
                        fields={"label": {"css": "span.label::text"},
                                "image": {"css": "img.digit::attr(src)"}}),
        # a quarter of the shop's labels are words ("seven", " Seven ", "SEVEN")
        "labels": {"classes": DIGITS, "aliases": dict(zip(DIGIT_WORDS, DIGITS, strict=True))},
        "validate": {"required_columns": ["label", "image_path"],
                     "non_null_columns": ["label", "image_path"],
                     "image_width": 8, "image_height": 8, "min_rows": 50},
        "train": {"epochs": 1, "channels": 8},
    }  # fmt: skip


def _text_classification(port: int) -> dict[str, Any]:
    return {
        "demo_site": {"port": port, "sections": ["jokes"]},
        "crawl": _crawl(port, "/jokes/", follow=[JOKE_PAGES], item_list=JOKE_BLOCKS,
                        fields={"label": {"css": "span.lang::text", "from": "list"},
                                "text": JOKE_TEXT}),
        "labels": {"classes": ["cs", "de", "en"]},
        "validate": {"required_columns": [], "non_null_columns": [], "min_rows": 100},
        "train": DEFAULT_MODEL_SHORT,
    }  # fmt: skip


# Forecasting and text generation learn no classes and compare their own headline metrics, so
# their minimal files say nothing of `labels` or `promote.metric`: those are for the defaults.
def _forecasting(port: int) -> dict[str, Any]:
    return {
        "demo_site": {"port": port, "sections": ["co2"]},
        "crawl": _crawl(port, "/co2/", item_list={"css": "table.series tr:not(:first-child)"},
                        follow=[{"css": "nav.pagination", "allow": ["/co2/page/\\d+$"]}],
                        fields={"week": {"css": "td.week::text", "type": "date"},
                                "co2_ppm": {"css": "td.ppm::text", "type": "float"}}),
        "clean": {"series": {"time_column": "week", "value_column": "co2_ppm"}},
        "validate": {"required_columns": [], "non_null_columns": [], "min_rows": 1000},
        "train": {"epochs": 1, "d_model": 8, "layers": 1},
    }  # fmt: skip


def _text_generation(port: int) -> dict[str, Any]:
    return {
        "demo_site": {"port": port, "sections": ["jokes"]},
        "crawl": _crawl(port, "/jokes/", follow=[JOKE_PAGES], item_list=JOKE_BLOCKS,
                        fields={"text": JOKE_TEXT}),
        "validate": {"required_columns": [], "non_null_columns": [], "min_rows": 100},
        "train": TINY_TRANSFORMER,
        "evaluate": {"generate": {"n_samples": 1, "max_new_tokens": 20}},
    }  # fmt: skip


MINIMAL = {
    "image_classification": _image_classification,
    "text_classification": _text_classification,
    "forecasting": _forecasting,
    "text_generation": _text_generation,
}


def _minimal_params(task: str, port: int) -> dict[str, Any]:
    if task not in MINIMAL:
        pytest.fail(
            f"task type {task!r} is registered but has no minimal params.yaml here: add "
            "one to MINIMAL (its crawl of the demo site and the keys it truly needs)"
        )
    return {
        "project": {"name": f"every-{task}", "task": task},
        **MINIMAL[task](port),
        "promote": {"baseline_gate": False},  # one epoch: the plumbing is under test
    }


def _request(task: str, project: Path) -> dict[str, Any]:
    """One instance of a valid `POST /predict` body for the champion of `task`."""
    if task == "image_classification":
        png = next((project / "data" / "raw" / "images").glob("*.png")).read_bytes()
        return {"png_base64": base64.b64encode(png).decode()}
    if task == "text_classification":
        return {"text": "Warum programmieren Informatiker so gern im Dunkeln?"}
    if task == "forecasting":
        card = json.loads((project / "models" / "card.json").read_text())
        items = pd.read_parquet(project / "data" / "clean" / "items.parquet")
        window = int(card["preprocessing"]["window"])
        return {"values": [float(v) for v in items["value"].tail(window)]}  # clean's name
    if task == "text_generation":
        return {"prompt": "Why ", "max_new_tokens": 16, "seed": 0}
    raise AssertionError(f"no prediction request for task type {task!r}")


def _kiln(project: Path, api_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    # `python -m flows.cli` with cwd=project runs the project's copy of the code, as a user would.
    # One OpenMP thread: on a shared 2-core machine two spin-wait (under load, 40 epochs of the
    # linear text model took 235 s with two and 15 s with one).
    return run(
        [sys.executable, "-m", "flows.cli", *args, "--project", str(project)],
        project,
        check=False,
        extra_env={"PREFECT_API_URL": api_url, "OMP_NUM_THREADS": "1"},
    )


def _said(proc: subprocess.CompletedProcess[str]) -> str:
    return (
        f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n"
        f"{proc.stderr[-4000:]}"
    )


# The charts evaluate leaves in reports/evaluation/plots/, the folder dvc.yaml's `plots:` declares.
CHARTS = {
    "image_classification": ["confusion_matrix.png", "predictions.csv"],
    "text_classification": ["confusion_matrix.png", "predictions.csv"],
    "forecasting": ["forecast.png"],
    "text_generation": ["bits_per_byte.png"],
}


def _assert_plots_load(task: str, project: Path) -> None:
    """`dvc plots show` loads every plot dvc.yaml declares (none of another task type's files,
    which would be "failed to load") and draws this task type's charts."""
    shown = dvc("plots", "show", "--json", cwd=project)
    assert "failed to load" not in shown.stderr, shown.stderr
    plots = json.loads(shown.stdout)
    assert not plots.get("errors"), plots.get("errors")
    assert sorted(p for p in plots["data"] if p.startswith("reports/evaluation/")) == [
        f"reports/evaluation/plots/{name}" for name in CHARTS[task]
    ], list(plots["data"])
    assert "reports/validation/drift.csv" in plots["data"]
    assert any(p.startswith("reports/train/plots/metrics/") for p in plots["data"]), plots["data"]


@pytest.mark.parametrize("task", known_task_types())
def test_minimal_params_run_every_stage(task: str, tmp_path: Path, prefect_server) -> None:
    api = prefect_server.api_url
    project = make_project(tmp_path)
    minimal = _minimal_params(task, free_port())
    params_path = project / "params.yaml"
    params_path.write_text(yaml.safe_dump(minimal, sort_keys=False))

    # 1. Refused before any work, naming the keys dvc.yaml tracks that the file lacks.
    refused = _kiln(project, api, "run")
    assert refused.returncode == 2, _said(refused)
    if "params.yaml is invalid" in refused.stderr:
        pytest.fail(
            f"the schema refuses this minimal {task} file itself, so `kiln check --write` cannot "
            f"complete it:\n{refused.stderr}"
        )
    assert "lacks keys that dvc.yaml tracks" in refused.stderr, _said(refused)
    lacking = missing_keys(minimal, tracked_keys(project / "dvc.yaml"))
    assert lacking and all(key in refused.stderr for key in lacking), (lacking, _said(refused))
    for output in ("data", "models", "reports", "export"):
        assert not (project / output).exists(), output

    # 2. `kiln check --write` completes it; the hand-written file is kept.
    checked = _kiln(project, api, "check", "--write")
    assert checked.returncode == 0, _said(checked)
    assert yaml.safe_load((project / "params.yaml.bak").read_text()) == minimal
    completed = yaml.safe_load(params_path.read_text())
    assert not missing_keys(completed, tracked_keys(project / "dvc.yaml"))
    params = load_params(params_path)  # beside dvc.yaml: every tracked key is there
    assert params.project.task == task and params.train.epochs == minimal["train"]["epochs"]

    # 3. Every stage runs; metrics, export, registry and DVC agree.
    done = _kiln(project, api, "run")
    assert done.returncode == 0, _said(done)
    run_id = flow_run_id(done.stdout)
    assert prefect_api(api, f"/flow_runs/{run_id}")["state"]["type"] == "COMPLETED"
    assert task_run_states(api, run_id) == dict.fromkeys(STAGES, "Completed")
    metrics = json.loads((project / "reports" / "metrics.json").read_text())
    headline = task_type(task).headline_metrics
    assert headline and all(math.isfinite(float(metrics[m])) for m in headline), metrics
    baselines = metrics["baselines"]  # beside the model, on the same test split
    assert len(baselines) >= 2, baselines
    for baseline in baselines.values():
        assert all(math.isfinite(float(baseline[m])) for m in headline), baselines
        assert baseline["n_test"] == metrics["n_test"]
    assert (project / "export" / "model.onnx").is_file()
    promotion = json.loads((project / "reports" / "promotion.json").read_text())
    assert promotion["outcome"] == "promoted", promotion
    reason = promotion["reason"]
    assert "vs best baseline" in reason and "(baseline gate off)" in reason
    assert json.loads((project / "registry" / "registry.json").read_text())["champion"] == "v0001"
    assert json.loads(dvc("status", "--json", cwd=project).stdout or "{}") == {}
    _assert_plots_load(task, project)

    # 4. One real prediction from the served champion.
    with TestClient(create_app(project / "registry", ServeParams())) as client:
        answer = client.post("/predict", json={"instances": [_request(task, project)]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["task"] == task
