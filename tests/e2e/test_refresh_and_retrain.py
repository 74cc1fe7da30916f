"""The whole flow, as a user runs it (`kiln run`), on a tiny demo site and a real Prefect server.

One project goes through three runs: a first full run; a refresh of the unchanged site (crawl
re-runs, finds byte-identical data, every later stage is skipped); and a refresh after the site
turned dirty (the flow fails at validate, train never runs, the previous model stays).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

from flows.dvc_plots import TEMPLATE
from flows.dvc_stages import stage_names
from tests.chromium import CHROMIUM, evaluate
from tests.project import (
    REPO,
    dvc,
    flow_run_id,
    free_port,
    make_project,
    prefect_api,
    run,
    task_run,
    task_run_states,
    tiny_demo_overrides,
    write_params,
)

pytestmark = pytest.mark.e2e
STAGES = stage_names(REPO)  # crawl first
# The tiny model clears these floors (evaluate.min_accuracy is 0.3 too), so run 1 promotes. It
# does not beat the logistic regression on the pixels (the baselines of reports/metrics.json):
# this test is of the flow, so the baseline gate is off.
FLOORS = {"promote": {"floors": {"accuracy": 0.3, "macro_f1": 0.0}, "baseline_gate": False}}


def _kiln_run(project: Path, api_url: str, check: bool = True,  # noqa: ANN202
              cwd: Path | None = None):
    # `python -m flows.cli` with cwd=project runs the project's copy of the code, as a user would.
    return run([sys.executable, "-m", "flows.cli", "run", "--project", str(project)],
               cwd or project, check=check, extra_env={"PREFECT_API_URL": api_url})


def _lock_hash(project: Path, stage: str) -> str:
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    return lock["stages"][stage]["outs"][0]["md5"]


def _assert_recorded_only_the_crawl(project: Path, old_raw_hash: str) -> None:
    """DVC recorded what succeeded (the dirty crawl) and nothing after it: validate is stale."""
    assert _lock_hash(project, "crawl") != old_raw_hash
    stale = json.loads(dvc("status", "--json", cwd=project).stdout or "{}")
    assert "validate" in stale and "crawl" not in stale, stale


def _assert_committed_as_they_ran(project: Path, log: str) -> None:
    """Each stage committed itself as it finished; the DVC cache holds what they wrote."""
    for stage in STAGES:
        assert f"{stage}: committed to dvc.lock and the DVC cache" in log, stage
    items = (project / "data" / "raw" / "items.jsonl").read_bytes()
    shutil.rmtree(project / "data" / "raw")
    dvc("checkout", "crawl", cwd=project)
    assert (project / "data" / "raw" / "items.jsonl").read_bytes() == items


# On the task run page: click the Artifacts tab, then wait for the image artifact's card.
_ARTIFACTS_TAB = """(() => {
  const tab = [...document.querySelectorAll('li')].find(e => e.textContent.trim() === 'Artifacts');
  if (tab && !window.kilnClicked) { tab.click(); window.kilnClicked = true; }
  return document.body.innerText.includes('evaluate-confusion-matrix');
})()"""
# On the artifact's page: the widths of the decoded data: images (0 for one that failed to load).
_IMAGE_WIDTHS = """(() => {
  const images = [...document.images].filter(i => i.src.startsWith('data:image/png'));
  return images.length > 0 && images.every(i => i.complete) && images.map(i => i.naturalWidth);
})()"""


def _task_artifacts(api: str, task_run_id: str, kind: str) -> list[dict]:
    return prefect_api(api, "/artifacts/filter", {"artifacts": {
        "task_run_id": {"any_": [task_run_id]}, "type": {"any_": [kind]}}})


def _assert_images_of_evaluate_in_the_ui(server, run_id: str, project: Path,  # noqa: ANN001
                                         profile: Path) -> None:
    """The confusion matrix evaluate drew is an image artifact of evaluate's task run
    (flows/stage_images.py): listed on the task run's Artifacts tab, drawn on its own page; so is
    train's training_curves.png on train's. The per-class metrics are a table of evaluate's."""
    evaluate_run = task_run(server.api_url, run_id, "evaluate")
    images = _task_artifacts(server.api_url, evaluate_run["id"], "image")
    assert [a["key"] for a in images] == ["evaluate-confusion-matrix"], images
    curves = _task_artifacts(server.api_url, task_run(server.api_url, run_id, "train")["id"],
                             "image")
    assert [a["key"] for a in curves] == ["train-training-curves"], curves
    table = _task_artifacts(server.api_url, evaluate_run["id"], "table")
    assert [a["key"] for a in table] == ["evaluate-per-class"], table
    per_class = json.loads((project / "reports" / "metrics.json").read_text())["per_class"]
    assert json.loads(table[0]["data"]) == [{"class": name, **figures}
                                            for name, figures in per_class.items()]
    if CHROMIUM is None:
        return  # the browser half needs Debian's chromium (tests/chromium.py)
    tab = evaluate(f"{server.ui_url}/runs/task-run/{evaluate_run['id']}", _ARTIFACTS_TAB,
                   profile)
    assert tab is True
    for artifact, png_path in ((images[0], "evaluation/plots/confusion_matrix.png"),
                               (curves[0], "train/training_curves.png")):
        widths = evaluate(f"{server.ui_url}/artifacts/artifact/{artifact['id']}", _IMAGE_WIDTHS,
                          profile)
        with Image.open(project / "reports" / png_path) as png:
            assert widths == [png.width], widths  # decoded: its natural width is the file's


def _assert_console(result, first_run: bool) -> None:  # noqa: ANN001 (CompletedProcess)
    """No line of `kiln run`'s log says the same as another (timestamps aside: each stage's lines
    carry its name, DVC's "Updating lock file 'dvc.lock'" comes once); a first run says so
    instead of listing every dep as modified; the end says what ran and what was skipped."""
    lines = [line.split(" ", 2)[-1] for line in result.stderr.splitlines() if line.strip()]
    repeated = {line: n for line in set(lines) if (n := lines.count(line)) > 1}
    assert not repeated, repeated
    if first_run:
        assert "validate is stale (first run: dvc.lock records no earlier run of it)" in \
            result.stderr
        assert "modified" not in result.stderr and "deleted" not in result.stderr
        assert f"Stages run: {', '.join(STAGES)}\n" in result.stdout
        assert "Nothing retrained" not in result.stdout
        return
    for stage in STAGES[1:]:
        assert f"prefect.task_runs[{stage}] {stage} skipped: up to date" in result.stderr
    assert f"skipped, up to date: {', '.join(STAGES[1:])}\nNothing retrained" in result.stdout


def _assert_validate_ran_once_with_its_log(api: str, run_id: str) -> None:
    """Bad data does not get better by retrying: one attempt; the stage's own log is in its run."""
    validate_run = task_run(api, run_id, "validate")
    assert validate_run["run_count"] == 1
    logs = prefect_api(api, "/logs/filter",
                       {"logs": {"task_run_id": {"any_": [validate_run["id"]]}}})
    assert any("kiln.validate" in log["message"] for log in logs)


def test_run_refresh_and_dirty_refresh(tmp_path: Path, prefect_server) -> None:  # noqa: PLR0915 (one scenario of three runs)
    api = prefect_server.api_url
    project = make_project(tmp_path, {**tiny_demo_overrides(free_port()), **FLOORS})

    # 1. First run: every stage runs; metrics, DVC state, Prefect states and artifacts agree.
    first = _kiln_run(project, api)
    run_id = flow_run_id(first.stdout)
    flow_run = prefect_api(api, f"/flow_runs/{run_id}")
    assert flow_run["state"]["type"] == "COMPLETED"
    assert task_run_states(api, run_id) == dict.fromkeys(STAGES, "Completed")
    # The project's tags are the flow run's only: a tagged task run costs a concurrency check
    task_runs = prefect_api(api, "/task_runs/filter", {"flow_runs": {"id": {"any_": [run_id]}}})
    assert any(t.startswith("kiln-project:") for t in flow_run["tags"]), flow_run["tags"]
    assert [r["tags"] for r in task_runs] == [[]] * len(STAGES)
    metrics = json.loads((project / "reports" / "metrics.json").read_text())
    assert metrics["accuracy"] > 0.3, metrics
    assert f"accuracy={metrics['accuracy']:.4f}" in first.stdout
    assert json.loads(dvc("status", "--json", cwd=project).stdout or "{}") == {}
    _assert_committed_as_they_ran(project, first.stderr)
    artifacts = prefect_api(api, "/artifacts/filter",
                            {"artifacts": {"flow_run_id": {"any_": [run_id]}}})
    by_key = {a["key"]: a for a in artifacts}
    # validation/drift: their content is checked in tests/unit/tasks/test_expectations.py
    assert {"metrics", "run-summary", "validation", "drift"} <= set(by_key)
    summary = by_key["run-summary"]["data"]
    clean_report = json.loads((project / "reports" / "clean.json").read_text())
    assert f"| trained on | {clean_report['splits']['train']} |" in summary
    assert "| quarantined by validate |" in summary
    promotion = json.loads((project / "reports" / "promotion.json").read_text())
    assert promotion["outcome"] == "promoted" and promotion["champion_after"] == "v0001"
    assert f"**Promotion:** {promotion['reason']}" in summary
    assert promotion["reason"] in by_key["promotion"]["data"]
    assert (project / "export" / "model.onnx").exists()
    registry_json = (project / "registry" / "registry.json").read_bytes()
    assert json.loads(registry_json)["champion"] == "v0001"
    assert f"Promotion: {promotion['reason']}\nChampion: v0001" in first.stdout
    card = (project / "models" / "card.json").read_bytes()
    raw_hash = _lock_hash(project, "crawl")
    _assert_console(first, first_run=True)
    _assert_images_of_evaluate_in_the_ui(prefect_server, run_id, project, tmp_path / "chromium")

    # 2. Refresh of the unchanged site: byte-identical crawl, later stages skipped with a reason.
    # Run from outside the project: DVC must check the project's stages, not the cwd's.
    second = _kiln_run(project, api, cwd=tmp_path)
    states = task_run_states(api, flow_run_id(second.stdout))
    assert states == {"crawl": "Completed", **dict.fromkeys(STAGES[1:], "Skipped")}
    assert _lock_hash(project, "crawl") == raw_hash
    assert (project / "models" / "card.json").read_bytes() == card
    assert (project / "registry" / "registry.json").read_bytes() == registry_json
    _assert_console(second, first_run=False)
    # The end says what this run did: the first run's promotion is not repeated as if new.
    when = json.loads(registry_json)["history"][-1]["at"].replace("T", " ").replace("Z", " UTC")
    since = f"v0001 (promoted {when}, unchanged by this run"
    assert "Promotion:" not in second.stdout, second.stdout
    assert f"\nChampion: {since}; `kiln models list`)\n" in second.stdout, second.stdout
    artifacts = prefect_api(api, "/artifacts/filter",
                            {"artifacts": {"flow_run_id": {"any_": [flow_run_id(second.stdout)]}}})
    summary = {a["key"]: a for a in artifacts}["run-summary"]["data"]
    assert f"**Champion:** {since})" in summary and "**Promotion:**" not in summary, summary

    # 3. The site turns dirty: the flow fails at validate and the previous model stays.
    write_params(project, {"demo_site": {"bad_label_share": 0.6}})
    third = _kiln_run(project, api, check=False)
    assert third.returncode == 1, third.stdout + third.stderr
    run_id = flow_run_id(third.stdout)
    assert prefect_api(api, f"/flow_runs/{run_id}")["state"]["type"] == "FAILED"
    states = task_run_states(api, run_id)
    assert states["crawl"] == "Completed"
    assert states["validate"] == "Failed"
    assert "train" not in states and "evaluate" not in states and "promote" not in states
    assert "expect_column_values_to_be_in_set" in third.stdout + third.stderr
    assert (project / "models" / "card.json").read_bytes() == card
    assert (project / "registry" / "registry.json").read_bytes() == registry_json  # champion
    _assert_recorded_only_the_crawl(project, raw_hash)
    _assert_validate_ran_once_with_its_log(api, run_id)


def test_params_typo_fails_before_any_work(tmp_path: Path, prefect_server) -> None:
    project = make_project(tmp_path, {"train": {"epoch": 3}})
    result = _kiln_run(project, prefect_server.api_url, check=False)
    assert result.returncode == 2
    assert "unknown key 'train.epoch'; did you mean 'train.epochs'?" in result.stderr
    assert not (project / "data").exists()
    # not even the run lock or a Prefect home: only the plots template make_project put there
    assert [p.name for p in (project / ".kiln").iterdir()] == [TEMPLATE.name]
