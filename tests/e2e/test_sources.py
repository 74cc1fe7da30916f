"""Every source kind beside the crawl runs from its example params to a served model, crawl-free.

For each of examples/table.params.yaml (text classification from a CSV file),
examples/folder.params.yaml (image classification from <root>/<class>/<file>) and
examples/package.params.yaml (forecasting from statsmodels' CO2 dataset), a fresh git + DVC
project gets the example's files (examples/sources/make_data.py) and the example with the settings
that keep a run short on 2 CPU cores (a one-epoch tiny model; the plumbing is under test, so no
floors and no baseline gate). `kiln run` then runs every stage of dvc.yaml with no demo site and
no network: the crawl stage reads the source into data/raw, the model is promoted and served, and
`dvc status` has nothing to do.

The table source then shows what DVC and the flow make of a source: a refresh of the unchanged
file re-reads it, finds data/raw byte-identical and skips every later stage; after a row of the
CSV changes, the crawl stage records a new data/raw (with the new file's bytes under
data/raw/sources/, which `dvc checkout` restores) and every stage after it runs again.
test_labelling_from_scratch: a folder of unlabelled images, `kiln label export` (all of them,
then the ones the champion is least sure of), labels written into labels/overrides.csv, and the
runs that train on them.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from flows.dvc_stages import stage_names
from serve.app import create_app
from serve.predict import best_guesses
from tasks.core.params import ServeParams
from tests.e2e.test_every_task_type import _kiln, _request, _said
from tests.project import REPO, dvc, flow_run_id, make_project, run, task_run_states

pytestmark = pytest.mark.e2e
STAGES = stage_names(REPO)
PLUMBING = {"evaluate": {"min_accuracy": 0.0}, "promote": {"baseline_gate": False, "floors": {
    "accuracy": 0.0, "macro_f1": 0.0}}}  # fmt: skip
EXAMPLES: dict[str, tuple[str, dict[str, Any]]] = {
    "table": ("examples/table.params.yaml", {"train": {
        "epochs": 1, "d_model": 16, "layers": 1, "heads": 2, "text": {"max_len": 64}}}),
    "folder": ("examples/folder.params.yaml", {"train": {"epochs": 2, "channels": 8}}),
    "package": ("examples/package.params.yaml", {"train": {"epochs": 1, "d_model": 8}}),
}  # fmt: skip


def _project(tmp_path: Path, kind: str) -> Path:
    example, tiny = EXAMPLES[kind]
    overrides = {**PLUMBING, **tiny}
    if kind == "package":  # forecasting: no accuracy; the example's mae floor is for 60 epochs
        overrides = {"promote": {"baseline_gate": False, "floors": {"mae": None}}, **tiny}
    project = make_project(tmp_path, overrides, base=example)
    run([sys.executable, str(REPO / "examples/sources/make_data.py"), str(project)], project)
    return project


def _serves(project: Path, task: str) -> None:
    with TestClient(create_app(project / "registry", ServeParams())) as client:
        answer = client.post("/predict", json={"instances": [_request(task, project)]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["task"] == task


def _full_run(project: Path, api: str) -> str:
    done = _kiln(project, api, "run")
    assert done.returncode == 0, _said(done)
    assert "demo site started" not in done.stdout + done.stderr
    assert not (project / ".kiln/crawl-state.json").exists()  # written by every crawl
    return flow_run_id(done.stdout)


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_source_runs_to_a_served_model(kind: str, tmp_path: Path, prefect_server) -> None:
    api = prefect_server.api_url
    project = _project(tmp_path, kind)
    params = yaml.safe_load((project / "params.yaml").read_text())
    assert params["crawl"] is None and params["source"]["kind"] == kind

    run_id = _full_run(project, api)
    assert task_run_states(api, run_id) == dict.fromkeys(STAGES, "Completed")
    report = json.loads((project / "reports/crawl.json").read_text())
    assert report["source"] == kind and report["items"] > 100, report
    raw = [json.loads(line) for line in (project / "data/raw/items.jsonl").open()]
    assert all({"url", "content_hash", "first_seen"} <= row.keys() for row in raw)
    promotion = json.loads((project / "reports/promotion.json").read_text())
    assert promotion["outcome"] == "promoted", promotion
    assert json.loads(dvc("status", "--json", cwd=project).stdout or "{}") == {}
    _serves(project, params["project"]["task"])

    if kind != "table":
        return
    # How sure the text champion is (what `kiln label export --least-sure` ranks texts by).
    version, guesses = best_guesses(["Warum programmieren Informatiker so gern im Dunkeln?",
                                     "x" * 10], project / "registry")  # fmt: skip
    assert version == "v0001" and all(g in ("cs", "de", "en") and 0 < p <= 1 for g, p in guesses)
    # A refresh of the unchanged file: data/raw byte-identical, every later stage skipped.
    items = (project / "data/raw/items.jsonl").read_bytes()
    run_id = _full_run(project, api)
    assert task_run_states(api, run_id) == {"crawl": "Completed",
                                            **dict.fromkeys(STAGES[1:], "Skipped")}  # fmt: skip
    assert (project / "data/raw/items.jsonl").read_bytes() == items

    # One row changed: a new data/raw recorded, and every stage after the crawl runs again.
    csv_path = project / "data/sources/jokes.csv"
    lines = csv_path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[1] = '"A changed joke, long enough to be kept by clean",en\n'
    csv_path.write_text("".join(lines), encoding="utf-8")
    digest = hashlib.sha256(csv_path.read_bytes()).hexdigest()
    run_id = _full_run(project, api)
    assert task_run_states(api, run_id) == dict.fromkeys(STAGES, "Completed")
    # DVC holds this data/raw, the CSV's bytes included: a checkout restores them as read.
    shutil.rmtree(project / "data/raw")
    dvc("checkout", "crawl", cwd=project)
    assert (project / f"data/raw/sources/{digest}.csv").read_bytes() == csv_path.read_bytes()
    changed = [json.loads(line) for line in (project / "data/raw/items.jsonl").open()]
    assert {r["url"] for r in changed} == {r["url"] for r in raw}
    assert [r for r in changed if r["text"].startswith("A changed joke")]
    assert json.loads(dvc("status", "--json", cwd=project).stdout or "{}") == {}


def _label(project: Path, review: Path, n: int | None = None) -> list[str]:
    """Fill `label` of the review file's rows (the first n) with each digit's true class, as a
    person would, and append them to labels/overrides.csv; returns their keys."""
    from sklearn.datasets import load_digits  # noqa: PLC0415

    target = load_digits().target
    with open(review, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))[:n]
    overrides = project / "labels/overrides.csv"
    with open(overrides, "a", newline="", encoding="utf-8") as fh:
        for row in rows:  # url: data/sources/unlabelled/<index in load_digits>.png
            fh.write(f"{row['key']},{target[int(Path(row['url']).stem)]}\n")
    return [row["key"] for row in rows]


def _waiting(project: Path) -> int:
    """Items clean set aside for want of a label."""
    rows = [json.loads(line) for line in (project / "data/quarantine/clean.jsonl").open()]
    return sum(r["reason"] == "unknown label None" for r in rows)


def test_labelling_from_scratch(tmp_path: Path, prefect_server) -> None:
    api = prefect_server.api_url
    project = make_project(tmp_path, {**PLUMBING, "train": {"epochs": 2, "channels": 8}},
                           base="examples/unlabelled.params.yaml")  # fmt: skip
    run([sys.executable, str(REPO / "examples/sources/make_data.py"), str(project),
         "--unlabelled", "150"], project)  # fmt: skip
    read = _kiln(project, api, "crawl")  # the crawl stage alone: the folder into data/raw
    assert read.returncode == 0, _said(read)

    # Every image is listed to label; a person labels 100 of them.
    review = project / "labels/to_review.csv"
    listed = _kiln(project, api, "label", "export")
    assert listed.returncode == 0 and "150 items to review" in listed.stdout, _said(listed)
    labelled = _label(project, review, 100)
    run(["git", "add", "labels/overrides.csv"], project)  # versioned with the project
    run(["git", "commit", "-qm", "100 labels"], project)

    # The next run trains on those labels; the other 50 wait in clean's quarantine.
    run_id = _full_run(project, api)
    assert task_run_states(api, run_id) == dict.fromkeys(STAGES, "Completed")
    assert _waiting(project) == 50
    assert json.loads((project / "reports/promotion.json").read_text())["outcome"] == "promoted"

    # Of the 50 still unlabelled, the 10 the champion is least sure of, least sure first.
    listed = _kiln(project, api, "label", "export", "--least-sure", "10")
    assert listed.returncode == 0 and "10 items to review" in listed.stdout, _said(listed)
    with open(review, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert not {r["key"] for r in rows} & set(labelled)
    sure = [float(r["reason"].rsplit("p=", 1)[1].rstrip(")")) for r in rows]
    assert all(r["reason"].startswith("unlabelled; champion v0001 guesses ") for r in rows)
    assert sure == sorted(sure), sure

    # Their labels are training labels on the next run: validate onwards runs, not the crawl.
    _label(project, review)
    run_id = _full_run(project, api)
    states = task_run_states(api, run_id)
    assert states["validate"] == states["train"] == "Completed", states
    assert _waiting(project) == 40
    assert json.loads(dvc("status", "--json", cwd=project).stdout or "{}") == {}
