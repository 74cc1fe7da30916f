"""Manual labelling round trip: `python -m pytest tests/unit/flows/test_label_export.py`.

validate and clean run in-process on a synthetic crawl with wrong, unknown and conflicting labels;
`kiln label export` lists those items in the overrides format; a person's answers (here the true
digits) go into labels/overrides.csv, and the next clean applies them.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from flows.cli import app
from tasks import validate
from tasks.core.io import read_jsonl
from tasks.core.stage import run_stage
from tests.raw_fixture import Dirt, _digits, build_raw, write_params

DIRT = Dirt(wrong_labels=4, unknown_labels=2, conflicting=1)


def test_export_then_override_fixes_labels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_params(tmp_path, {"validate": {"min_rows": 50}})
    rows = build_raw(tmp_path, 200, DIRT)
    monkeypatch.chdir(tmp_path)
    assert validate.main() == 0
    assert run_stage("clean") == 0
    assert len(read_jsonl(tmp_path / "data/quarantine/validate.jsonl")) == 2
    issues = list(csv.DictReader(open(tmp_path / "reports/label_issues.csv")))  # noqa: SIM115
    assert len(issues) >= 4

    result = CliRunner().invoke(app, ["label", "export", "--project", str(tmp_path)])
    assert result.exit_code == 0, result.output
    exported = list(csv.DictReader(open(tmp_path / "labels/to_review.csv")))  # noqa: SIM115
    assert list(exported[0]) == ["key", "label", "url", "reason", "given"]
    reasons = {r["reason"] for r in exported}
    assert reasons == {"suspected label error", "missing or unknown label", "conflicting labels"}
    by_reason = {k: [r for r in exported if r["reason"] == k] for k in reasons}
    assert len(by_reason["missing or unknown label"]) == 2
    assert len(by_reason["conflicting labels"]) == 1  # one key, two urls
    assert f"{len(exported)} items to review" in result.output
    assert all(r["label"] == "" for r in by_reason["missing or unknown label"])

    # A person answers with the true digit of every listed item.
    targets = _digits()[1]
    truth = {
        r["url"]: str(targets[int(r["url"].rsplit("/", 1)[1])])
        for r in rows
        if "/item/0" in r["url"]
    }
    answers = [
        f"{r['key']},{truth.get(r['url']) or truth[r['url'].replace('conflict', '0')]}"
        for r in exported
        if r["url"] in truth
    ]
    (tmp_path / "labels").mkdir(exist_ok=True)
    (tmp_path / "labels/overrides.csv").write_text("key,label\n" + "\n".join(answers) + "\n")
    before = json.loads((tmp_path / "reports/clean.json").read_text())
    assert validate.main() == 0
    assert read_jsonl(tmp_path / "data/quarantine/validate.jsonl") == []
    assert run_stage("clean") == 0
    after = json.loads((tmp_path / "reports/clean.json").read_text())
    overrides_op = next(o for o in after["operations"] if o["op"] == "label_overrides")
    # Every answer is applied (the conflicting pair shares one key, so one answer, two rows).
    assert overrides_op["rows"] == len(answers) + 1
    items = pd.read_parquet(tmp_path / "data/clean/items.parquet")
    fixed = dict(zip(items["url"], items["label"], strict=True))
    assert all(fixed[u] == t for u, t in truth.items() if u in fixed)
    # The 2 unlabelled items pass validate now, and the conflicting pair is one item again.
    assert after["n_out"] == before["n_out"] + 3
