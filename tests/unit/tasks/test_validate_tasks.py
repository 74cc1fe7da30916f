"""Validate and drift of text and series: `pytest tests/unit/tasks/test_validate_tasks.py`.

Rows are the demo site's real data, written as the crawl writes them (data/raw/items.jsonl):
pyjokes' jokes labelled by language (`crawlers.demo_sections.jokes`) and the Mauna Loa weekly CO2
record (`crawlers.demo_sections.co2_weeks`), with a few defects put in by hand. The stage runs
in-process (`validate.main()`) against a params.yaml written per task type; the previous version
for drift is committed by DVC itself (`record_validated`; the real `dvc repro` round trip is
tests/integration/test_drift.py).
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from crawlers.demo_sections import co2_weeks, jokes
from tasks import validate
from tasks.core.columns import TaskColumns
from tasks.core.drift import compare, drift_report, not_applicable, psi
from tasks.core.gx_suite import suite_specs
from tasks.core.io import read_jsonl
from tasks.core.params import Params, parse_params
from tasks.core.plugins import task_type
from tasks.core.text_norm import normalise_text, text_key
from tasks.validate import ValidationOutcome, validate_items
from tests.project import record_validated
from tests.raw_fixture import write_items

SITE = "http://127.0.0.1:8765"
FIRST_SEEN = "2026-01-01T00:00:00Z"
LANGUAGES = ["de", "en", "es", "fr"]
IN_SET = "expect_column_values_to_be_in_set"


def params_for(task: str, **sections: Any) -> dict[str, Any]:
    """A whole params dict for `task`, as a user would write it for the demo site."""
    fields = {
        "text_classification": {"label": {"css": "span.lang::text"}, "text": {"css": "p::text"}},
        "text_generation": {"text": {"css": "p::text"}},
        "forecasting": {"week": {"css": "td.week::text", "type": "date"},
                        "co2_ppm": {"css": "td.ppm::text", "type": "float", "required": False}},
    }[task]  # fmt: skip
    model = {"text_classification": "transformer", "text_generation": "char_transformer",
             "forecasting": "lstm"}[task]  # fmt: skip
    metric = {"text_classification": "macro_f1", "text_generation": "val_loss",
              "forecasting": "mae"}[task]  # fmt: skip
    raw = {
        "project": {"name": f"{task}-test", "task": task},
        "crawl": {"start_urls": [f"{SITE}/"], "allowed_domains": ["127.0.0.1"],
                  "allow_loopback": True, "item_url_pattern": "/item/", "fields": fields},
        "labels": {"classes": LANGUAGES if task == "text_classification" else []},
        "validate": {"required_columns": ["url", "content_hash", "first_seen"],
                     "non_null_columns": ["url", "content_hash"], "min_rows": 20,
                     "max_quarantine_share": 0.2},
        "train": {"model": model},
        "promote": {"metric": metric},
    }  # fmt: skip
    if task == "forecasting":  # a key of forecasting's clean section only
        raw["clean"] = {"series": {"time_column": "week", "value_column": "co2_ppm"}}
    for name, values in sections.items():
        raw[name] = {**raw.get(name, {}), **values}
    return raw


def _row(path: str, **fields: Any) -> dict[str, Any]:
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()
    return {"url": f"{SITE}/{path}", "content_hash": digest, "first_seen": FIRST_SEEN, **fields}


def joke_rows(n: int = 60, start: int = 0, labelled: bool = True) -> list[dict[str, Any]]:
    """`n` real jokes in LANGUAGES, as the jokes crawl writes them (text and label fields)."""
    chosen = [j for j in jokes() if j[1] in LANGUAGES][start : start + n]
    return [
        _row(f"jokes/{jid}", text=" ".join(text.split()), **({"label": lang} if labelled else {}))
        for jid, lang, text in chosen
    ]


def co2_rows(n: int = 60, start: int = 0) -> list[dict[str, Any]]:
    """`n` real weeks of the CO2 record from week `start`, null where not measured."""
    weeks = co2_weeks()[start : start + n]
    return [_row(f"co2/#item-{start + i}", week=w, co2_ppm=v) for i, (w, v) in enumerate(weeks)]


def columns_of(params: Params) -> TaskColumns:
    """What the rows of params' task type hold, as validate asks its plug-in."""
    return task_type(params.project.task).columns(params)


def _run(task: str, rows: list[dict], overrides: dict | None = None, **sections: Any):
    params = parse_params(params_for(task, **sections))
    frame = pd.DataFrame(rows, dtype=object)
    return validate_items(
        frame, Path("data/raw"), params.labels, params.validate_, overrides,
        task=columns_of(params),
    )  # fmt: skip


def reasons_by_url(outcome: ValidationOutcome) -> dict[str, str]:
    return {row["url"]: row["reason"] for row in outcome.quarantine}


def assert_accounted(outcome: ValidationOutcome, rows: list[dict]) -> None:
    valid, quarantined = list(outcome.valid["url"]), [r["url"] for r in outcome.quarantine]
    assert sorted(valid + quarantined) == sorted(r["url"] for r in rows)
    assert outcome.n_in == len(outcome.valid) + len(outcome.quarantine) == len(rows)


def test_text_classification_quarantines_bad_text_and_unknown_labels() -> None:
    rows = joke_rows()
    rows[0]["text"] = None
    rows[1]["text"] = " <p> <br> &nbsp;</p> "  # nothing left once normalised as clean does
    rows[2]["text"] = 42  # a flipped dtype
    rows[3]["label"] = "klingon"
    rows[4]["label"] = None
    rows[5]["label"] = " EN "  # case and spaces: still "en"
    rows[6]["label"] = "english"  # an alias
    outcome = _run("text_classification", rows, labels={"aliases": {"english": "en"}})
    assert outcome.success, outcome.failures
    assert reasons_by_url(outcome) == {
        rows[0]["url"]: "expect_column_values_to_not_be_null(text)",
        rows[1]["url"]: "expect_column_values_to_be_between(text_chars)",
        rows[2]["url"]: "expect_column_values_to_be_of_type(text)",
        rows[3]["url"]: f"{IN_SET}(label_normalised)",
        rows[4]["url"]: "expect_column_values_to_not_be_null(label)",
    }
    assert_accounted(outcome, rows)
    assert set(outcome.valid.columns) == set(rows[0])  # derived columns are never written
    assert list(outcome.profile.columns) == ["url", "content_hash", "label", "text_chars"]
    assert outcome.profile["label"].isin(LANGUAGES).all()
    # A quarantined row keeps its raw values, so a person can see what was wrong.
    assert next(r for r in outcome.quarantine if r["url"] == rows[3]["url"])["label"] == "klingon"


def test_text_defaults_apply_whatever_params_list() -> None:
    """label and text need not be in required/non_null_columns: the task type adds them."""
    params = parse_params(params_for("text_classification", clean={"text": {"column": "body"}}))
    names = [(s.expectation, s.kwargs.get("column")) for s in suite_specs(
        params.labels, params.validate_, columns_of(params))]  # fmt: skip
    for column in ("body", "label"):
        assert ("expect_column_to_exist", column) in names
        assert ("expect_column_values_to_be_of_type", column) in names
        assert ("expect_column_values_to_not_be_null", column) in names
    assert ("expect_column_values_to_be_between", "body_chars") in names
    assert (IN_SET, "label_normalised") in names
    assert not any(c and c.startswith("image_") for _, c in names)


def test_too_many_unknown_labels_fail_the_stage() -> None:
    rows = joke_rows()
    for row in rows[:15]:
        row["label"] = "n/a"
    outcome = _run("text_classification", rows)
    assert not outcome.success
    assert outcome.failures[0].startswith(
        f"{IN_SET}(label_normalised) failed on 15 of 60 rows (15 of 60 rows quarantined: 25% > "
    )


def test_text_overrides_are_keyed_by_the_normalised_text() -> None:
    rows = joke_rows()
    rows[0]["label"] = "klingon"
    rows[0]["text"] = "  <b>" + rows[0]["text"] + "</b> "  # markup and spaces: the same key
    params = parse_params(params_for("text_classification"))
    key = text_key(normalise_text(rows[0]["text"], params.clean.text))
    outcome = _run("text_classification", rows, overrides={key: "fr"})
    assert outcome.success and outcome.quarantine == []
    assert outcome.checked.loc[0, "label_normalised"] == "fr"
    assert outcome.profile.loc[0, "label"] == "fr"  # what drift compares
    assert outcome.valid.loc[0, "label"] == "klingon"  # raw columns; clean applies it again


def test_text_generation_needs_text_but_no_labels() -> None:
    rows = joke_rows(labelled=False)
    rows[0]["text"] = None
    rows[1]["text"] = ""
    outcome = _run("text_generation", rows)
    assert outcome.success, outcome.failures
    assert reasons_by_url(outcome) == {
        rows[0]["url"]: "expect_column_values_to_not_be_null(text)",
        rows[1]["url"]: "expect_column_values_to_be_between(text_chars)",
    }
    assert not any("label" in c.name for c in outcome.checks)
    assert list(outcome.profile.columns) == ["url", "content_hash", "text_chars"]
    assert_accounted(outcome, rows)


def test_forecasting_quarantines_bad_dates_and_values_but_keeps_nulls() -> None:
    rows = co2_rows()
    rows[10]["week"] = "not a date"
    rows[11]["week"] = "1958-13-45"
    rows[12]["week"] = None
    rows[13]["co2_ppm"] = "n/a"  # a non-numeric string
    rows[15]["co2_ppm"] = None  # missing: clean fills it
    outcome = _run("forecasting", rows)
    assert outcome.success, outcome.failures
    assert reasons_by_url(outcome) == {
        rows[10]["url"]: f"{IN_SET}(week_is_date)",
        rows[11]["url"]: f"{IN_SET}(week_is_date)",
        rows[12]["url"]: "expect_column_values_to_not_be_null(week)",
        rows[13]["url"]: f"{IN_SET}(co2_ppm_is_number)",
    }
    # 1958 has many unmeasured weeks: every null value is kept, for clean to fill.
    null_values = {r["url"] for r in rows[13:] + rows[:10] if r["co2_ppm"] is None}
    assert len(null_values) >= 10
    assert null_values <= set(outcome.valid["url"])
    assert_accounted(outcome, rows)
    # The float field is not held to the crawl's "every field is a string" check.
    assert "expect_column_values_to_be_of_type(co2_ppm)" not in {c.name for c in outcome.checks}
    assert list(outcome.profile.columns) == ["url", "content_hash", "co2_ppm_number"]
    assert outcome.profile["co2_ppm_number"].isna().sum() == len(null_values)
    assert outcome.profile["co2_ppm_number"].dropna().between(313, 320).all()


def test_series_values_crawled_as_text_are_numbers_too() -> None:
    """A value field without `type: float` is written as text; it parses, so it is kept."""
    rows = co2_rows()
    for row in rows:
        row["co2_ppm"] = None if row["co2_ppm"] is None else f" {row['co2_ppm']} "  # padded
    rows[20]["co2_ppm"] = "3l6.4"  # a typo: not a number
    outcome = _run("forecasting", rows)
    assert outcome.success, outcome.failures
    assert reasons_by_url(outcome) == {rows[20]["url"]: f"{IN_SET}(co2_ppm_is_number)"}
    assert outcome.profile["co2_ppm_number"].dropna().between(313, 320).all()


def test_a_column_mixing_types_fails_instead_of_crashing_the_parquet_writer() -> None:
    rows = co2_rows()
    rows[14]["co2_ppm"] = "316.5"  # a number, as text, among floats: parquet cannot hold both
    outcome = _run("forecasting", rows)
    assert not outcome.success
    assert outcome.failures == [
        "column co2_ppm mixes value types (number, str) in valid rows; "
        "the crawl must write one type per field"
    ]


def test_forecasting_dtype_flip_is_named() -> None:
    rows = co2_rows()
    for row in rows:
        row["week"] = int(row["week"].replace("-", ""))  # 19580329: a number, not a date
    outcome = _run("forecasting", rows)
    assert not outcome.success
    assert outcome.failures[0].startswith("expect_column_values_to_be_of_type(week) failed on 60")


def _main(root: Path, params: dict, rows: list[dict], monkeypatch: pytest.MonkeyPatch) -> int:
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    write_items(root / "data/raw", rows)
    monkeypatch.chdir(root)
    return validate.main()


def _report(root: Path, name: str) -> dict:
    return json.loads((root / "reports" / name).read_text())


def _stage_outputs(root: Path, n_valid: int, n_quarantined: int) -> pd.DataFrame:
    """Check what the stage wrote; returns the profile."""
    metrics = _report(root, "validate.json")
    assert (metrics["n_in"], metrics["n_valid"], metrics["n_quarantined"]) == (
        n_valid + n_quarantined, n_valid, n_quarantined)  # fmt: skip
    valid = pd.read_parquet(root / "data/validated/items.parquet")
    quarantine = read_jsonl(root / "data/quarantine/validate.jsonl")
    assert len(valid) == n_valid and len(quarantine) == n_quarantined
    raw = {r["url"] for r in read_jsonl(root / "data/raw/items.jsonl")}
    assert set(valid["url"]) | {r["url"] for r in quarantine} == raw
    assert (root / "reports/validation/index.html").is_file()
    assert _report(root, "validation/summary.json")["n_valid"] == n_valid
    return pd.read_parquet(root / "data/validated/profile.parquet")


def test_text_stage_first_run_then_shifted_crawl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    overrides_csv = tmp_path / "labels/overrides.csv"
    overrides_csv.parent.mkdir()
    rows = joke_rows(120)
    rows[0]["label"] = "??"  # fixed by hand in labels/overrides.csv, by the text's key
    rows[1]["text"] = None
    params = params_for("text_classification")
    key = text_key(normalise_text(rows[0]["text"], parse_params(params).clean.text))
    with overrides_csv.open("w", newline="") as fh:
        csv.writer(fh).writerows([("key", "label"), (key, "de")])
    assert _main(tmp_path, params, rows, monkeypatch) == 0
    profile = _stage_outputs(tmp_path, 119, 1)
    assert _report(tmp_path, "drift.json")["status"] == "no previous version"
    assert profile.set_index("url").loc[rows[0]["url"], "label"] == "de"

    # The site now serves the list page's 40-character teasers instead of the whole jokes.
    record_validated(tmp_path, profile)
    teasers = joke_rows(120)
    for row in teasers:
        row["text"] = row["text"][:40] + "…"
    assert _main(tmp_path, params, teasers, monkeypatch) == 0  # text_length_ks is warn
    drift = _report(tmp_path, "drift.json")
    assert drift["status"] == "warn"
    length = drift["checks"]["text_length_ks"]
    assert length["drifted"] and length["severity"] == "warn" and length["statistic"] > 0.5
    assert length["new_mean"] < length["previous_mean"] / 1.5
    assert drift["checks"]["label_psi"]["verdict"] == "ok"  # the same languages
    assert drift["checks"]["image_mean_ks"] == {
        "statistic": None, "threshold": 0.3, "severity": "fail", "drifted": False,
        "verdict": "not applicable", "note": "the task type's rows have no images",
    }  # fmt: skip
    assert _report(tmp_path, "validate.json")["warnings"] == [
        f"drift text_length_ks: {length['statistic']} > threshold 0.3"
    ]


def test_series_stage_first_run_then_shifted_crawl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    strict = {"drift": {"numeric_ks": {"threshold": 0.3, "severity": "fail"}}}
    params = params_for("forecasting", validate={**params_for("forecasting")["validate"], **strict})
    rows = co2_rows(500)
    rows[3]["co2_ppm"] = "broken sensor"
    assert _main(tmp_path, params, rows, monkeypatch) == 0
    profile = _stage_outputs(tmp_path, 499, 1)
    summary = {e["expectation"]: e for e in _report(tmp_path, "validation/summary.json")[
        "expectations"]}  # fmt: skip
    # The example shows the value as crawled, not the derived flag.
    assert summary[f"{IN_SET}(co2_ppm_is_number)"]["examples"] == [
        {"url": rows[3]["url"], "value": "broken sensor"}
    ]
    first = _report(tmp_path, "drift.json")
    assert first == {"status": "no previous version", "previous": first["previous"], "n_new": 499}
    validated = (tmp_path / "data/validated/items.parquet").read_bytes()

    # A later stretch of the record: CO2 rose by ~25 ppm, every value is above the old ones.
    record_validated(tmp_path, profile)
    assert _main(tmp_path, params, co2_rows(500, start=1500), monkeypatch) == 1
    drift = _report(tmp_path, "drift.json")
    assert drift["status"] == "fail"
    assert drift["checks"]["numeric_ks:co2_ppm"]["statistic"] == 1.0
    assert drift["checks"]["new_item_share"]["statistic"] == 1.0
    assert drift["checks"]["row_count_change"]["verdict"] == "ok"
    assert {n for n, c in drift["checks"].items() if c["verdict"] == "not applicable"} == {
        "label_psi", "image_mean_ks", "text_length_ks"}  # fmt: skip
    assert "drift numeric_ks:co2_ppm: 1.0 > threshold 0.3" in _report(
        tmp_path, "validate.json")["failures"]  # fmt: skip
    assert (tmp_path / "data/validated/items.parquet").read_bytes() == validated  # N2


def test_compare_runs_the_checks_of_the_task_type() -> None:
    params = parse_params(params_for("text_generation"))
    text = columns_of(params)
    assert text == TaskColumns(text=params.clean.text)  # texts, no labels
    previous = validate_items(
        pd.DataFrame(joke_rows(80, labelled=False), dtype=object), Path("data/raw"),
        params.labels, params.validate_, task=text,
    ).profile  # fmt: skip
    checks = compare(previous, previous, params.validate_.drift, text)
    assert set(checks) == {"text_length_ks", "row_count_change", "row_drop", "new_item_share"}
    assert not any(c["drifted"] for c in checks.values())
    assert set(not_applicable(params.validate_.drift, text)) == {"label_psi", "image_mean_ks"}
    assert psi(pd.Series(LANGUAGES), pd.Series(LANGUAGES)) == 0.0


def test_previous_version_of_another_task_type_is_said_not_compared(tmp_path: Path) -> None:
    """A profile recorded before text_chars existed (an image project switched to text)."""
    params: Params = parse_params(params_for("text_classification"))
    task = columns_of(params)
    new = _run("text_classification", joke_rows()).profile
    record_validated(tmp_path, new.drop(columns="text_chars"))
    report = drift_report(tmp_path, new, params.validate_.drift, task)
    assert report["checks"]["text_length_ks"]["verdict"] == "no data"
    assert report["checks"]["text_length_ks"]["note"] == "the previous version has no text_chars"
    assert report["status"] == "ok"


@pytest.mark.parametrize(
    ("task", "column"),
    [("text_classification", "label"), ("text_generation", "text"), ("forecasting", "week")],
)
def test_a_crawl_without_the_task_types_column_fails_naming_it(task: str, column: str) -> None:
    rows = co2_rows() if task == "forecasting" else joke_rows(labelled=task != "text_generation")
    for row in rows:
        del row[column]
    outcome = _run(task, rows)
    assert not outcome.success
    assert outcome.failures[0].startswith(
        f"expect_column_to_exist({column}) failed: column missing"
    )
    assert outcome.n_in == len(outcome.valid) + len(outcome.quarantine) == 60


def test_drift_csv_lists_checks_with_a_statistic() -> None:
    from tasks.validate import drift_csv  # noqa: PLC0415

    drift = {
        "checks": {
            "label_psi": {"statistic": 0.31, "threshold": 0.25, "drifted": True,
                          "verdict": "drifted"},
            "image_mean_ks": {"statistic": None, "threshold": 0.3, "drifted": False,
                              "verdict": "not applicable"},
            "row_count_change": {"statistic": 0.02, "threshold": 0.5, "drifted": False},
        }
    }
    assert drift_csv(drift).splitlines() == [
        "check,statistic,threshold,verdict",
        "label_psi,0.31,0.25,drifted",
        "row_count_change,0.02,0.5,ok",
    ]
    assert drift_csv({"status": "no previous version"}) == "check,statistic,threshold,verdict\n"
