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
    assert list(exported[0]) == ["key", "label", "suggested", "given", "item", "url", "reason"]
    assert all(r["label"] == "" for r in exported)  # the answer: nothing pre-filled
    assert all(r["suggested"] for r in exported if r["reason"] == "suspected label error")
    assert all((tmp_path / r["item"]).is_file() and r["key"] in r["item"] for r in exported)
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
    answers = {r["key"]: truth.get(r["url"]) or truth[r["url"].replace("conflict", "0")]
               for r in exported if r["url"] in truth}
    filled = [{**r, "label": answers.get(r["key"], "")} for r in exported]
    _write_review(tmp_path / "labels/to_review.csv", filled)
    imported = CliRunner().invoke(app, ["label", "import", "labels/to_review.csv",
                                        "--project", str(tmp_path)])
    assert imported.exit_code == 0, imported.output
    assert f"{len(answers)} added, 0 changed" in imported.output
    overrides = list(csv.DictReader(open(tmp_path / "labels/overrides.csv")))  # noqa: SIM115
    assert {r["key"]: r["label"] for r in overrides} == answers
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


def _write_review(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_import_refuses_unknown_keys_and_classes_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_params(tmp_path, {"validate": {"min_rows": 50}})
    build_raw(tmp_path, 60, Dirt())
    monkeypatch.chdir(tmp_path)
    raw = [json.loads(line) for line in open(tmp_path / "data/raw/items.jsonl")]  # noqa: SIM115
    key = raw[0]["image_path"].split("/")[-1].split(".")[0]
    (tmp_path / "labels").mkdir(exist_ok=True)
    overrides = tmp_path / "labels/overrides.csv"
    overrides.write_text(f"key,label\n{key},3\n")
    review = tmp_path / "review.csv"
    _write_review(review, [{"key": key, "label": "7"}, {"key": "f" * 64, "label": "1"},
                           {"key": key.upper(), "label": ""}, {"key": key, "label": "cat"}])
    result = CliRunner().invoke(app, ["label", "import", str(review), "--project", str(tmp_path)])
    assert result.exit_code == 2
    assert "nothing imported, 2 bad row(s)" in result.output
    assert f"line 3: key '{'f' * 64}' is no item of the last crawl" in result.output
    assert "line 5: label 'cat' is not a class (classes: 0, 1, 2" in result.output
    assert overrides.read_text() == f"key,label\n{key},3\n"  # untouched
    _write_review(review, [{"key": key, "label": "7"}])
    result = CliRunner().invoke(app, ["label", "import", str(review), "--project", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "0 added, 1 changed, 0 already there" in result.output
    assert overrides.read_text() == f"key,label\n{key},7\n"
