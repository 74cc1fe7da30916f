"""The text clean stage (tasks/core/text_clean.py): normalise, reject, dedupe, labels, split."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from tasks.core.params import Params, parse_params
from tasks.core.text_clean import clean_texts, clean_texts_stage
from tasks.core.text_norm import normalise_text, text_key
from tests.project import REPO, merge_params


def _params(overrides: dict[str, Any] | None = None, example: str = "jokes.params.yaml") -> Params:
    raw = yaml.safe_load((REPO / "examples" / example).read_text())
    return parse_params(merge_params(raw, overrides or {}))


def _rows() -> pd.DataFrame:
    rows = [
        ("u01", "Warum  ist <b>der</b> Himmel blau?", "de"),
        ("u02", "Warum ist der Himmel blau?", "DE "),  # exact duplicate after normalising
        ("u03", "warum ist der himmel blau!", "de"),  # near duplicate (case, punctuation)
        ("u04", "Why did the chicken cross the road?", "en"),
        ("u05", "short", "en"),  # < min_chars 10
        ("u06", "Une blague très française, voilà.", "xx"),  # unknown label
        ("u07", None, "en"),  # no text
        ("u08", "Same text, two different labels.", "en"),
        ("u09", "Same text, two different labels.", "fr"),  # conflicting labels: both out
        ("u10", "¿Por qué los programadores confunden Halloween?", "es"),
        ("u11", "Ｆｕｌｌ－ｗｉｄｔｈ joke text here", "en"),  # NFKC
    ]
    frame = pd.DataFrame(rows, columns=["url", "text", "label"])
    frame["first_seen"] = "2026-01-01T00:00:00Z"
    return frame.sample(frac=1.0, random_state=1)  # input order must not matter


def test_clean_texts_accounts_for_every_row() -> None:
    params = _params()
    result = clean_texts(_rows(), params)
    items, rejects, report = result.items, result.rejects, result.report
    assert items["url"].tolist() == sorted(
        items["url"], key=lambda u: items.set_index("url").loc[u, "key"]
    )
    assert set(items["url"]) == {"u01", "u04", "u10", "u11"}
    why = {r["url"]: r for r in rejects}
    assert why["u02"]["reason"] == "duplicate" and why["u02"]["duplicate_of"] == "u01"
    assert why["u03"]["reason"] == "near duplicate" and why["u03"]["duplicate_of"] == "u01"
    assert why["u05"]["reason"].startswith("text too short")
    assert why["u06"]["reason"] == "unknown label 'xx'"
    assert why["u07"]["reason"].startswith("text missing")
    assert why["u08"]["reason"] == why["u09"]["reason"] == "conflicting labels"
    assert report["n_in"] == 11 == report["n_out"] + report["n_rejected"]
    assert report["n_duplicates"] == 1 and report["n_near_duplicates"] == 1
    ops = {op["op"]: op["rows"] for op in report["operations"]}
    assert ops["reject: text too short"] == 1 and ops["reject: unknown label 'xx'"] == 1
    row = items.set_index("url").loc["u01"]
    assert row["text"] == "Warum ist der Himmel blau?" and row["label"] == "de"
    assert row["label_index"] == params.labels.classes.index("de")
    assert row["key"] == text_key(row["text"])
    assert items.set_index("url").loc["u11", "text"] == "Full-width joke text here"
    assert set(items["split"]) <= {"train", "val", "test"}
    assert list(items.columns) == [
        "key",
        "url",
        "text",
        "split",
        "first_seen",
        "label",
        "label_index",
    ]


def test_clean_is_idempotent_and_deterministic() -> None:
    params = _params()
    once = clean_texts(_rows(), params).items
    twice = clean_texts(once.drop(columns=["label_index"]), params).items
    pd.testing.assert_frame_equal(once, twice)
    again = clean_texts(_rows().sample(frac=1.0, random_state=7), params).items
    pd.testing.assert_frame_equal(once, again)


def test_overrides_win_by_key_of_the_normalised_text() -> None:
    params = _params()
    key = text_key(normalise_text("Why did the chicken cross the road?", params.clean.text))
    items = clean_texts(_rows(), params, {key: "es"}).items.set_index("url")
    assert items.loc["u04", "label"] == "es"


def test_text_generation_has_no_labels() -> None:
    params = _params(example="jokes_generation.params.yaml")
    assert params.project.task == "text_generation" and not params.labels.classes
    result = clean_texts(_rows().drop(columns=["label"]), params)
    assert "label" not in result.items.columns
    # without labels the same text under two urls is one item, not a conflict
    assert "u08" in set(result.items["url"]) or "u09" in set(result.items["url"])
    assert result.report["n_in"] == result.report["n_out"] + result.report["n_rejected"]


def test_missing_text_column_fails_naming_it() -> None:
    with pytest.raises(ValueError, match=r"lack columns \['body'\]"):
        clean_texts(_rows(), _params({"clean": {"text": {"column": "body"}}}))


def test_stage_writes_every_output_byte_identically(tmp_path: Path) -> None:
    params = _params()
    (tmp_path / "data" / "validated").mkdir(parents=True)
    _rows().to_parquet(tmp_path / "data" / "validated" / "items.parquet")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert clean_texts_stage(params, classify=True) == 0
        first = (tmp_path / "data" / "clean" / "items.parquet").read_bytes()
        assert clean_texts_stage(params, classify=True) == 0
        assert (tmp_path / "data" / "clean" / "items.parquet").read_bytes() == first
    finally:
        os.chdir(cwd)
    report = json.loads((tmp_path / "reports" / "clean.json").read_text())
    assert report["n_out"] == 4 and report["n_rejected"] == 7
    quarantine = (tmp_path / "data" / "quarantine" / "clean.jsonl").read_text().splitlines()
    assert len(quarantine) == 7
    header = (tmp_path / "reports" / "label_issues.csv").read_text().splitlines()[0]
    assert header.startswith("key,url,label")
