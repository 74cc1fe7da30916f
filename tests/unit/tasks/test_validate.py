"""Validate stage: `python -m pytest tests/unit/tasks/test_validate.py`.

Each failure mode of the validate stage (missing column, nulls, unknown labels, too few rows...)
on a synthetic crawl of real digits (tests/raw_fixture.py). Great Expectations takes about 3 s
to import, paid once: this module imports it at collection, and `main()` runs in-process except
in the two subprocess tests.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tasks import validate
from tasks.core.gx_suite import RawItemsSuite, _raised
from tasks.core.io import read_jsonl
from tasks.core.params import Params, load_params
from tasks.core.validate_derive import _image_facts
from tasks.validate import ValidationOutcome, validate_items
from tests.project import REPO, record_validated
from tests.raw_fixture import Dirt, build_raw, write_items, write_params

LIMITS = {"validate": {"min_rows": 100, "max_quarantine_share": 0.05}}
NAME_IN_SET = "expect_column_values_to_be_in_set(label_normalised)"
NO_DIRT = Dirt()


@pytest.fixture(scope="module")
def params(tmp_path_factory: pytest.TempPathFactory) -> Params:
    return load_params(write_params(tmp_path_factory.mktemp("params"), LIMITS))


def check(
    root: Path, params: Params, n_items: int = 200, dirt: Dirt = NO_DIRT
) -> ValidationOutcome:
    rows = build_raw(root, n_items, dirt)
    df = pd.DataFrame(rows, dtype=object)
    return validate_items(df, root / "data" / "raw", params.labels, params.validate_)


def assert_accounted(outcome: ValidationOutcome, rows: list[dict]) -> None:
    valid, quarantined = set(outcome.valid["url"]), {r["url"] for r in outcome.quarantine}
    assert not valid & quarantined
    assert valid | quarantined == {r["url"] for r in rows}
    assert outcome.n_in == len(outcome.valid) + len(outcome.quarantine) == len(rows)


def test_clean_crawl_passes(tmp_path: Path, params: Params) -> None:
    outcome = check(tmp_path, params, dirt=Dirt(alias_labels=20))  # aliases are fine
    assert outcome.success, outcome.failures
    assert outcome.metrics == {
        "n_in": 200,
        "n_valid": 200,
        "n_quarantined": 0,
        "quarantine_share": 0.0,
        "success": True,
        "failed_rows": {},
        "failures": [],
        "warnings": [],
    }
    raw_columns = set(read_jsonl(tmp_path / "data/raw/items.jsonl")[0])
    assert set(outcome.valid.columns) == raw_columns  # derived columns are never written


def test_a_few_bad_rows_are_quarantined_with_reasons(tmp_path: Path, params: Params) -> None:
    dirt = Dirt(
        unknown_labels=2, null_labels=1, missing_images=1, broken_images=1, wrong_size_images=1
    )
    outcome = check(tmp_path, params, dirt=dirt)
    assert outcome.success, outcome.failures  # 6 of 200 = 3% <= 5%
    reasons = {row["reason"] for row in outcome.quarantine}
    assert reasons == {
        NAME_IN_SET,
        "expect_column_values_to_not_be_null(label)",
        "expect_column_values_to_be_in_set(image_readable)",
        "expect_column_values_to_be_in_set(image_width); "
        "expect_column_values_to_be_in_set(image_height)",
    }
    assert outcome.failed_rows[NAME_IN_SET] == 2
    assert len(outcome.quarantine) == 6
    assert_accounted(outcome, read_jsonl(tmp_path / "data/raw/items.jsonl"))
    # A quarantined row keeps its raw columns, so a person can see what was wrong.
    unknown = [r for r in outcome.quarantine if r["reason"] == NAME_IN_SET]
    assert {r["label"] for r in unknown} == {"n/a"}


@pytest.mark.parametrize(
    ("n_items", "dirt", "expected"),
    [
        pytest.param(
            200,
            Dirt(drop_columns=("label",)),
            "expect_column_to_exist(label) failed: column missing",
            id="missing-column",
        ),
        pytest.param(
            200,
            Dirt(numeric_labels=True),
            "expect_column_values_to_be_of_type(label) failed on 200 of 200 rows",
            id="label-numeric",
        ),
        pytest.param(
            200,
            Dirt(int_image_paths=True),
            "expect_column_values_to_be_of_type(image_path) failed on 200 of 200 rows",
            id="image-path-ints",
        ),
        pytest.param(
            200,
            Dirt(null_labels=100),
            "expect_column_values_to_not_be_null(label) failed on 100 of 200 rows "
            "(100 of 200 rows quarantined: 50% > max_quarantine_share 5%)",
            id="half-nulls",
        ),
        pytest.param(
            200,
            Dirt(unknown_labels=20),
            f"{NAME_IN_SET} failed on 20 of 200 rows "
            "(20 of 200 rows quarantined: 10% > max_quarantine_share 5%)",
            id="unknown-labels",
        ),
        pytest.param(
            50,
            Dirt(),
            "expect_table_row_count_to_be_between failed: 50 rows < min_rows 100",
            id="too-few-rows",
        ),
        pytest.param(
            104,  # 5 bad rows are 4.8%, under the share, but leave 99 < min_rows
            Dirt(unknown_labels=5),
            "after quarantine: expect_table_row_count_to_be_between failed: 99 rows < min_rows 100",
            id="too-few-after-quarantine",
        ),
    ],
)
def test_bad_crawl_fails_naming_expectation_and_count(
    tmp_path: Path, params: Params, n_items: int, dirt: Dirt, expected: str
) -> None:
    outcome = check(tmp_path, params, n_items, dirt)
    assert not outcome.success
    assert any(expected in failure for failure in outcome.failures), outcome.failures
    assert outcome.metrics["success"] is False
    assert outcome.n_in == len(outcome.valid) + len(outcome.quarantine)


def test_empty_crawl_fails(tmp_path: Path, params: Params) -> None:
    outcome = validate_items(pd.DataFrame([]), tmp_path, params.labels, params.validate_)
    assert not outcome.success
    assert "expect_table_row_count_to_be_between failed: 0 rows < min_rows 100" in outcome.failures
    assert "expect_column_to_exist(url) failed: column missing" in outcome.failures[0]


def test_an_expectation_that_raised_is_a_failure(tmp_path: Path, params: Params) -> None:
    rows = build_raw(tmp_path, 120)
    checked = validate._with_derived(
        pd.DataFrame(rows, dtype=object), tmp_path / "data/raw", params.labels
    )
    # No expect_column_to_exist guards a derived column: its raise is the only signal.
    checks = RawItemsSuite(params.labels, params.validate_).run(
        checked.drop(columns="image_width"), "test"
    )
    raised = [c for c in checks if c.raised]
    assert [c.name for c in raised] == ["expect_column_values_to_be_in_set(image_width)"]
    assert raised[0].failed and not raised[0].row_level
    ((check, message),) = validate._table_failures(checks, params.validate_)
    assert check is raised[0]
    assert message.startswith("expect_column_values_to_be_in_set(image_width) raised: ")


def test_gx_exception_info_in_both_shapes() -> None:
    flat = {"raised_exception": True, "exception_message": "boom", "exception_traceback": "..."}
    assert _raised(flat) == "boom"
    assert _raised({"MetricConfigurationID(...)": flat, "another metric": flat}) == "boom"
    assert _raised({"raised_exception": False, "exception_message": None}) is None
    assert _raised(None) is None


def test_images_outside_data_raw_are_never_opened(tmp_path: Path) -> None:
    raw = tmp_path / "data/raw"
    raw.mkdir(parents=True)
    (tmp_path / "secret.png").write_bytes(b"")
    for path in ("../../secret.png", str(tmp_path / "secret.png"), "a\x00b", 7, None):
        assert _image_facts(raw.resolve(), path) == (False, None, None, None)


def _project(root: Path, n_items: int, dirt: Dirt) -> Path:
    write_params(root, LIMITS)
    build_raw(root, n_items, dirt)
    last_good = root / "data/validated/items.parquet"
    last_good.parent.mkdir(parents=True)
    last_good.write_bytes(b"last good parquet")  # N2: a failed run must leave this alone
    return last_good


def test_main_failure_keeps_last_good_and_writes_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    last_good = _project(tmp_path, 200, Dirt(unknown_labels=30))
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.ERROR, logger="kiln.validate"):
        assert validate.main() == 1
    assert f"validation failed: {NAME_IN_SET} failed on 30 of 200 rows" in caplog.text
    assert last_good.read_bytes() == b"last good parquet"
    assert not (tmp_path / "data/quarantine/validate.jsonl").exists()
    metrics = json.loads((tmp_path / "reports/validate.json").read_text())
    assert metrics["success"] is False
    assert metrics["failed_rows"] == {NAME_IN_SET: 30}
    index = (tmp_path / "reports/validation/index.html").read_text()
    assert "raw_items" in index  # the GX Data Docs index lists the suite's runs


def test_main_logs_each_drifted_check_once(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    params: Params,
) -> None:
    """A crawl of other items than the recorded one: new_item_share drifts (a warn check), said
    in one line, not once by the drift check and again by the stage."""
    record_validated(tmp_path, check(tmp_path / "before", params).profile)
    write_params(tmp_path, LIMITS)
    build_raw(tmp_path, 200, start=200)  # digits 200-399: every item is new
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.INFO, logger="kiln.validate"):
        assert validate.main() == 0
    drift = json.loads((tmp_path / "reports/drift.json").read_text())
    drifted = [name for name, c in drift["checks"].items() if c["drifted"]]
    assert "new_item_share" in drifted, drift
    for name in drifted:
        said = [r for r in caplog.records if f"drift {name}:" in r.getMessage()]
        assert len(said) == 1, [r.getMessage() for r in said]
    said = [r.getMessage() for r in caplog.records if "drift new_item_share:" in r.getMessage()]
    statistic = drift["checks"]["new_item_share"]["statistic"]
    assert said == [f"drift new_item_share: {statistic} > threshold 0.5"]


def _run_stage(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tasks.validate"],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_stage_subprocess_passes_and_writes_outputs(tmp_path: Path) -> None:
    _project(tmp_path, 200, Dirt(unknown_labels=3, duplicates=4))
    proc = _run_stage(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    valid = pd.read_parquet(tmp_path / "data/validated/items.parquet")
    quarantined = read_jsonl(tmp_path / "data/quarantine/validate.jsonl")
    assert len(valid) == 201 and len(quarantined) == 3  # duplicates are clean's job
    assert all(row["reason"] == NAME_IN_SET for row in quarantined)
    metrics = json.loads((tmp_path / "reports/validate.json").read_text())
    assert (metrics["n_in"], metrics["n_valid"], metrics["n_quarantined"]) == (204, 201, 3)
    assert (tmp_path / "reports/validation/index.html").is_file()


def test_stage_subprocess_fails_loudly(tmp_path: Path) -> None:
    last_good = _project(tmp_path, 200, Dirt())
    write_items(tmp_path / "data/raw", [])  # the crawl found nothing
    proc = _run_stage(tmp_path)
    assert proc.returncode == 1
    assert "validation failed: expect_column_to_exist(url) failed" in proc.stderr
    assert "0 rows < min_rows 100" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert last_good.read_bytes() == b"last good parquet"
    assert (tmp_path / "reports/validation/index.html").is_file()
