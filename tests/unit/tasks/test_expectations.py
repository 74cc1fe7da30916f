"""Expectations declared in params: `python -m pytest tests/unit/tasks/test_expectations.py`.

Names and arguments are checked against the installed Great Expectations when params load; a
declared expectation runs in the real GX suite with its severity; the run's summary.json (what
the flow's markdown artifact shows) names failed expectations, row counts and example rows.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import pytest

from tasks import validate
from tasks.core.params import ParamsError, load_params
from tasks.validate import validate_items
from tests.raw_fixture import Dirt, build_raw, write_params

LIMITS = {"min_rows": 100, "max_quarantine_share": 0.05, "numeric_columns": ["ink", "price"]}
# The fixture's ink is 0.20 + (i % 50) / 100: 0.20..0.69, so 0.60..0.69 is 10 of every 50 rows.
INK_BELOW_06 = {
    "expectation": "expect_column_values_to_be_between",
    "kwargs": {"column": "ink_number", "min_value": 0.0, "max_value": 0.595},
}


def _params(root: Path, *declared: dict):
    return load_params(write_params(root, {"validate": {**LIMITS, "expectations": list(declared)}}))


@pytest.mark.parametrize(
    ("declared", "message"),
    [
        pytest.param(
            {"expectation": "expect_column_values_to_be_betwen", "kwargs": {"column": "x"}},
            "unknown expectation 'expect_column_values_to_be_betwen'; "
            "did you mean 'expect_column_values_to_be_between'?",
            id="name-typo",
        ),
        pytest.param(
            {"expectation": "expect_column_values_to_be_between", "kwargs": {"colum": "ink"}},
            "expect_column_values_to_be_between has no argument 'colum'; did you mean 'column'?",
            id="argument-typo",
        ),
        pytest.param(
            {"expectation": "expect_column_values_to_be_between", "kwargs": {"column": "ink"}},
            "min_value and max_value cannot both be None",
            id="gx-rejects-values",
        ),
        pytest.param(
            {**INK_BELOW_06, "severity": "error"},
            "'validate.expectations.0.severity'",
            id="bad-severity",
        ),
    ],
)
def test_declared_expectations_are_checked_when_params_load(
    tmp_path: Path, declared: dict, message: str
) -> None:
    with pytest.raises(ParamsError, match="validate.expectations.0") as info:
        _params(tmp_path, declared)
    assert message in str(info.value)


def _run(root: Path, *declared: dict, n_items: int = 200):
    params = _params(root, *declared)
    rows = build_raw(root, n_items, Dirt())
    df = pd.DataFrame(rows, dtype=object)
    return validate_items(df, root / "data/raw", params.labels, params.validate_)


def test_warn_expectation_is_reported_not_quarantined(tmp_path: Path) -> None:
    outcome = _run(tmp_path, {**INK_BELOW_06, "severity": "warn"})
    assert outcome.success, outcome.failures
    assert outcome.quarantine == []
    name = "expect_column_values_to_be_between(ink_number)"
    assert outcome.warnings == [f"{name} failed on 40 of 200 rows"]
    assert outcome.failed_rows == {name: 40}


def test_fail_expectation_quarantines_its_rows(tmp_path: Path) -> None:
    # 40 of 200 rows (20%) is over max_quarantine_share 5%: the stage fails, naming it.
    outcome = _run(tmp_path, {**INK_BELOW_06, "severity": "fail"})
    assert not outcome.success
    name = "expect_column_values_to_be_between(ink_number)"
    assert f"{name} failed on 40 of 200 rows (40 of 200 rows quarantined" in outcome.failures[0]
    assert {r["reason"] for r in outcome.quarantine} == {name}
    assert all(float(r["ink"]) >= 0.6 for r in outcome.quarantine)


def test_declared_expectation_that_raises_fails_even_as_warn(tmp_path: Path) -> None:
    typo = {
        "expectation": "expect_column_mean_to_be_between",
        "kwargs": {"column": "inkk_number", "min_value": 0.0},  # no such column: GX raises
        "severity": "warn",
    }
    outcome = _run(tmp_path, typo)
    assert not outcome.success
    assert outcome.failures[0].startswith("expect_column_mean_to_be_between(inkk_number) raised")


def test_summary_names_failures_with_examples(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _params(tmp_path, {**INK_BELOW_06, "severity": "warn"})
    build_raw(tmp_path, 200, Dirt(unknown_labels=3))
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.WARNING, logger="kiln.validate"):
        assert validate.main() == 0
    assert "expect_column_values_to_be_between(ink_number) failed on 40 of 200 rows" in caplog.text
    summary = json.loads((tmp_path / "reports/validation/summary.json").read_text())
    assert summary["data_docs"] == "reports/validation/index.html"
    assert (tmp_path / summary["data_docs"]).is_file()
    by_name = {e["expectation"]: e for e in summary["expectations"]}
    in_set = by_name["expect_column_values_to_be_in_set(label_normalised)"]
    assert (in_set["success"], in_set["failed_rows"], in_set["severity"]) == (False, 3, "fail")
    assert [e["value"] for e in in_set["examples"]] == ["n/a"] * 3
    assert all(e["url"].startswith("http://") for e in in_set["examples"])
    ink = by_name["expect_column_values_to_be_between(ink_number)"]
    assert (ink["failed_rows"], ink["severity"], len(ink["examples"])) == (40, "warn", 3)
    assert all(e["value"] >= 0.6 for e in ink["examples"])
    assert by_name["expect_column_values_to_be_unique(url)"]["success"] is True
    drift = json.loads((tmp_path / "reports/drift.json").read_text())
    assert drift["status"] == "no previous version"
    profile = pd.read_parquet(tmp_path / "data/validated/profile.parquet")
    assert len(profile) == 197 and profile["image_mean"].between(0, 255).all()

    # The flow's markdown artifacts read these files (flows/summary.py).
    from flows.summary import drift_markdown, validation_markdown  # noqa: PLC0415 (Prefect)

    markdown = validation_markdown(tmp_path)
    assert "**passed**: 197 of 200 rows valid, 3 quarantined" in markdown
    # an http link (the Prefect UI opens no file:// one), where `kiln data-docs` serves them
    assert ("Data Docs: [http://127.0.0.1:8766/](http://127.0.0.1:8766/) (`kiln data-docs` "
            "serves reports/validation/index.html there)") in markdown
    # a list, which the Prefect UI wraps (tests/integration/test_prefect_ui.py), not a table
    assert "* **expect_column_values_to_be_in_set(label_normalised)** (fail): 3 rows\n" in markdown
    assert markdown.count(": 'n/a'\n") == 3 and "\n  * http://" in markdown
    assert "* **expect_column_values_to_be_between(ink_number)** (warn): 40 rows\n" in markdown
    assert "|" not in markdown
    assert "**no previous version**" in drift_markdown(tmp_path)
