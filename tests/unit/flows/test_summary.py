"""The run summary shows the model beside its baselines: `python -m pytest
tests/unit/flows/test_summary.py`."""

from __future__ import annotations

import json
from pathlib import Path

from flows.dvc_stages import UP_TO_DATE_REASON, StageOutcome
from flows.summary import (
    baseline_rows,
    baselines_markdown,
    champion_lines,
    headline_metrics,
    per_class_rows,
    summary_markdown,
    validation_markdown,
)
from tasks.core import registry


def _metrics(project: Path, metrics: dict) -> None:
    (project / "reports").mkdir(parents=True, exist_ok=True)
    (project / "reports" / "metrics.json").write_text(json.dumps(metrics))


def test_the_summary_tables_the_model_and_each_baseline_best_in_bold(tmp_path: Path) -> None:
    _metrics(tmp_path, {
        "accuracy": 0.93, "macro_f1": 0.912, "n_test": 270, "per_class": {},
        "baselines": {
            "majority_class": {"accuracy": 0.1, "macro_f1": 0.02, "n_test": 270,
                               "description": "always '1'"},
            "logreg_pixels": {"accuracy": 0.95, "macro_f1": 0.94, "n_test": 270},
        },
    })  # fmt: skip
    assert baseline_rows(tmp_path) == [
        {"name": "model", "accuracy": 0.93, "macro_f1": 0.912},
        {"name": "majority_class", "accuracy": 0.1, "macro_f1": 0.02},
        {"name": "logreg_pixels", "accuracy": 0.95, "macro_f1": 0.94},
    ]
    markdown = summary_markdown(tmp_path, [], None)
    assert "| model vs baselines | accuracy | macro_f1 |" in markdown
    assert "| model | 0.9300 | 0.9120 |" in markdown
    assert "| logreg_pixels | **0.9500** | **0.9400** |" in markdown
    assert "| majority_class | 0.1000 | 0.0200 |" in markdown
    assert "baselines" not in headline_metrics(tmp_path)  # the metric table keeps to numbers


def test_lower_is_better_baselines_and_none_reported(tmp_path: Path) -> None:
    _metrics(tmp_path, {
        "mae": 0.6, "rmse": 0.8, "mape": 0.2, "mase": 0.5, "n_test": 343,
        "baselines": {"naive": {"mae": 0.75, "rmse": 0.9, "mape": 0.21, "mase": None},
                      "seasonal_naive": {"mae": 1.7, "rmse": 1.9, "mape": 0.46, "mase": 1.4}},
    })  # fmt: skip
    lines = baselines_markdown(tmp_path)
    assert "| naive | **0.7500** | **0.9000** | **0.2100** | - |" in lines
    assert "| seasonal_naive | 1.7000 | 1.9000 | 0.4600 | **1.4000** |" in lines
    _metrics(tmp_path, {"mae": 0.6, "n_test": 343})
    assert baselines_markdown(tmp_path) == [] and baseline_rows(tmp_path) == []


def test_the_summary_says_when_nothing_retrained(tmp_path: Path) -> None:
    _metrics(tmp_path, {"accuracy": 0.9, "macro_f1": 0.9})
    ran = [StageOutcome("crawl", True, "refresh"), StageOutcome("train", True, "first run")]
    assert "Nothing retrained" not in summary_markdown(tmp_path, ran, None)
    skipped = [ran[0], StageOutcome("train", False, UP_TO_DATE_REASON)]
    markdown = summary_markdown(tmp_path, skipped, None)
    assert "**Nothing retrained:** train was up to date" in markdown


def test_the_end_says_what_this_run_did_to_the_champion(tmp_path: Path) -> None:
    """promote's decision only when promote ran: a promotion.json left by an earlier run is not
    news; the champion then says since when, and that this run left it alone."""
    skipped = [StageOutcome("train", False, UP_TO_DATE_REASON),
               StageOutcome("promote", False, UP_TO_DATE_REASON)]  # fmt: skip
    assert champion_lines(tmp_path, skipped) == ["Champion: none yet (unchanged by this run)"]
    (tmp_path / "model.bin").write_bytes(b"weights")
    root = tmp_path / registry.REGISTRY_DIR
    for _ in range(2):
        registry.add_version(root, {"model.bin": tmp_path / "model.bin"}, {}, reason="better")
    reason = "macro-F1 0.99 vs best baseline 0.97, +0.02 >= margin 0.01: promoted as v0002"
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "promotion.json").write_text(json.dumps({"reason": reason}))
    ran = [StageOutcome("train", True, "first run"), StageOutcome("promote", True, "first run")]
    assert champion_lines(tmp_path, ran, note="`kiln models list`") == [
        f"Promotion: {reason}",
        "Champion: v0002 (`kiln models list`)",
    ]
    at = registry.read_registry(root)["history"][-1]["at"]  # 2026-12-07T02:11:03Z
    when = f"{at[:10]} {at[11:19]} UTC"
    assert champion_lines(tmp_path, skipped, note="`kiln models list`") == [
        f"Champion: v0002 (promoted {when}, unchanged by this run; `kiln models list`)"
    ]
    markdown = summary_markdown(tmp_path, skipped, "validate failed")
    assert f"**Champion:** v0002 (promoted {when}, unchanged by this run)\n" in markdown
    assert reason not in markdown and "Promotion" not in markdown
    assert f"**Promotion:** {reason}\n\n**Champion:** v0002\n" in summary_markdown(
        tmp_path, ran, None
    )
    registry.rollback(root, "v0001")
    at = registry.read_registry(root)["history"][-1]["at"]
    assert champion_lines(tmp_path, skipped) == [
        f"Champion: v0001 (restored by `kiln models rollback` {at[:10]} {at[11:19]} UTC, "
        "unchanged by this run)"
    ]


def test_each_stage_with_its_whole_reason_in_a_list(tmp_path: Path) -> None:
    reason = "changed deps: data/raw modified, tasks/core modified and 2 more"
    outcomes = [StageOutcome("validate", True, reason), StageOutcome("train", False, "up to date")]
    markdown = summary_markdown(tmp_path, outcomes, None)
    assert f"* **validate** ran: {reason}\n* **train** skipped: up to date\n" in markdown


def test_per_class_rows_of_a_classifier_only() -> None:
    figures = {"precision": 0.5, "recall": 1.0, "f1": 0.666667, "support": 3}
    metrics = {"accuracy": 0.9, "per_class": {"cat": figures, "dog": {**figures, "support": 4}}}
    assert per_class_rows(metrics) == [
        {"class": "cat", "precision": 0.5, "recall": 1.0, "f1": 0.666667, "support": 3},
        {"class": "dog", "precision": 0.5, "recall": 1.0, "f1": 0.666667, "support": 4},
    ]
    assert per_class_rows({"mae": 0.3}) == []


def test_validation_lists_failed_expectations_or_says_all_passed(tmp_path: Path) -> None:
    passed = {
        "expectation": "expect_column_values_to_be_unique(url)",
        "severity": "fail",
        "success": True,
        "raised": None,
        "failed_rows": 0,
        "examples": [],
    }
    raised = {**passed, "expectation": "expect_column_mean_to_be_between(inkk)", "success": False,
              "raised": "column inkk | not found"}  # fmt: skip
    summary = {"success": True, "n_in": 3, "n_valid": 3, "n_quarantined": 0,
               "quarantine_share": 0.0, "data_docs": "reports/validation/index.html",
               "expectations": [passed, passed]}  # fmt: skip
    (tmp_path / "reports" / "validation").mkdir(parents=True)
    path = tmp_path / "reports" / "validation" / "summary.json"
    path.write_text(json.dumps(summary))
    assert validation_markdown(tmp_path).endswith("\n\nAll 2 expectations passed.\n")
    rows = {**passed, "expectation": "expect_table_row_count_to_be_between", "success": False,
            "observed": 2}  # fmt: skip
    path.write_text(json.dumps({**summary, "expectations": [passed, raised, rows]}))
    assert validation_markdown(tmp_path).endswith(
        "\n* **expect_column_mean_to_be_between(inkk)** (fail): raised: column inkk \\| not found\n"
        "* **expect_table_row_count_to_be_between** (fail): failed, observed 2\n"
    )
