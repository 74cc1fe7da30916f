"""Forecasting: series cleaning, windows, scaling, training, evaluation, export and serving
(tasks/types/forecasting/: stages.py, data.py, report.py, export.py, serving.py), small synthetic
series."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import torch
import yaml
from pydantic import ValidationError
from sklearn.metrics import (
    mean_absolute_error,
    mean_absolute_percentage_error,
    root_mean_squared_error,
)

from serve.inputs import InputError
from tasks.core.baselines import naive_forecast, seasonal_naive_forecast
from tasks.core.dataset import DataError
from tasks.core.io import read_jsonl
from tasks.core.models import ModelError
from tasks.core.params import parse_params
from tasks.types.forecasting import report as forecasting_report
from tasks.types.forecasting import stages as forecasting
from tasks.types.forecasting.data import (
    _grid,
    clean_series,
    fit_scaling,
    infer_frequency,
    read_series,
    scale_inputs,
    unscale,
    windows,
)
from tasks.types.forecasting.params import SeriesCleanSection
from tasks.types.forecasting.serving import SPEC
from tests.project import REPO, merge_params

WEEKS = 260  # five years of weeks: train 182, val 39, test 39 at the default 15% shares


def weekly_rows(n: int = WEEKS, seed: int = 0) -> pd.DataFrame:
    """A CO2-like crawl: trend + yearly season + noise, ISO dates, values as the crawl types."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    values = 315 + 0.03 * t + 3 * np.sin(2 * np.pi * t / 52) + rng.normal(0, 0.2, n)
    weeks = pd.date_range("1960-01-02", periods=n, freq="7D")
    return pd.DataFrame(
        {
            "url": [f"http://site/co2/#item-{i:04d}" for i in range(n)],
            "week": [w.date().isoformat() for w in weeks],
            "co2_ppm": values.round(2),
        }
    )


def series_params(**clean: Any) -> SeriesCleanSection:
    return SeriesCleanSection.model_validate(
        merge_params({"series": {"time_column": "week", "value_column": "co2_ppm"}}, clean)
    )


def dirty_rows() -> pd.DataFrame:
    rows = weekly_rows().astype({"co2_ppm": object})
    rows.loc[10, "co2_ppm"] = None  # not measured
    rows.loc[11, "co2_ppm"] = " 316.5 "  # text, as a validated crawl may keep it
    rows.loc[12, "co2_ppm"] = "n/a"  # unparseable: missing
    extra = pd.DataFrame(
        {
            "url": [
                "http://site/dup-same",
                "http://site/dup-other",
                "http://site/bad-time",
                "http://site/off-grid",
            ],
            "week": [rows.loc[20, "week"], rows.loc[21, "week"], "not a date", "1960-01-05"],
            "co2_ppm": [rows.loc[20, "co2_ppm"], 999.0, 315.0, 315.0],
        }
    )
    gap = rows.drop(index=[30, 31, 32])  # three weeks missing from the crawl
    return pd.concat([gap, extra], ignore_index=True).sample(frac=1.0, random_state=0)


# ---------------------------------------------------------------------------------- clean


def test_clean_accounts_for_every_row_and_makes_a_regular_weekly_series() -> None:
    rows = dirty_rows()
    result = clean_series(rows, series_params())
    items, report = result.items, result.report
    assert list(items.columns) == ["time", "value", "filled", "split", "url"]
    assert items["time"].is_monotonic_increasing and items["time"].is_unique
    assert report["frequency"] == "7D"
    assert (items["time"].diff().dropna() == pd.Timedelta(days=7)).all()
    assert len(items) == WEEKS  # the 3 missing weeks are back, the extras gone
    assert report["n_inserted"] == 3
    # N1 by url: every input url is in the output or in the rejects, exactly once
    out_urls = set(items["url"].dropna())
    reject_urls = [r["url"] for r in result.rejects]
    assert out_urls.isdisjoint(reject_urls) and len(reject_urls) == len(set(reject_urls))
    assert out_urls | set(reject_urls) == set(rows["url"])
    assert report["n_in"] == report["n_out"] + report["n_rejected"] == len(rows)
    reasons = {r["url"]: r["reason"] for r in result.rejects}
    assert reasons["http://site/dup-same"] == "duplicate row"
    assert reasons["http://site/dup-other"].startswith("duplicate timestamp")
    assert "unparseable time" in reasons["http://site/bad-time"]
    assert "off the inferred 7D grid" in reasons["http://site/off-grid"]
    dup = next(r for r in result.rejects if r["url"] == "http://site/dup-other")
    assert dup["duplicate_of"] == "http://site/co2/#item-0021"
    by_url = items.set_index("url")
    assert by_url.loc["http://site/co2/#item-0011", "value"] == 316.5  # text parsed
    assert by_url.loc["http://site/co2/#item-0021", "value"] != 999.0  # the first url kept
    # filled: the 2 missing values and the 3 inserted weeks, interpolated between neighbours
    assert items["filled"].sum() == 5 and report["n_filled"] == 5
    filled = items[items["filled"]]
    assert filled["value"].notna().all()
    assert filled["url"].isna().sum() == 3
    v = items["value"].to_numpy()
    i = int(np.flatnonzero(items["url"] == "http://site/co2/#item-0012")[0])
    assert v[i] == pytest.approx((v[i - 1] + v[i + 1]) / 2, abs=1e-9)  # linear, equal steps


def test_clean_splits_by_time_train_then_val_then_test() -> None:
    items = clean_series(weekly_rows(), series_params()).items
    assert items["split"].tolist() == ["train"] * 182 + ["val"] * 39 + ["test"] * 39


def test_clean_of_clean_changes_nothing() -> None:
    once = clean_series(dirty_rows(), series_params())
    again = clean_series(
        once.items, series_params(series={"time_column": "time", "value_column": "value"})
    )
    pd.testing.assert_frame_equal(again.items, once.items)
    assert again.rejects == []
    assert again.report["n_inserted"] == 0 and again.report["n_filled"] == once.report["n_filled"]


def test_fill_drop_rejects_missing_values_and_inserts_nothing() -> None:
    result = clean_series(dirty_rows(), series_params(series={"fill": "drop"}))
    assert result.report["n_inserted"] == 0 and not result.items["filled"].any()
    reasons = [r["reason"] for r in result.rejects]
    assert reasons.count("missing value (clean.series.fill: drop)") == 2  # None and "n/a"
    assert result.report["n_in"] == result.report["n_out"] + result.report["n_rejected"]


def test_ffill_carries_the_last_value_forward() -> None:
    rows = weekly_rows().astype({"co2_ppm": object})
    rows.loc[50, "co2_ppm"] = None
    items = clean_series(rows, series_params(series={"fill": "ffill"})).items
    assert items["value"][50] == items["value"][49] and items["filled"][50]


def test_outliers_of_the_value_column_are_clipped_when_asked() -> None:
    rows = weekly_rows()
    rows.loc[100, "co2_ppm"] = 5000.0
    params = series_params(
        numeric_columns=["co2_ppm"],
        outliers={"co2_ppm": {"method": "iqr", "k": 3.0, "action": "clip"}},
    )
    result = clean_series(rows, params)
    assert result.items["value"].max() < 400
    assert any(op["op"] == "outliers" and op["rows"] == 1 for op in result.report["operations"])


def test_monthly_series_gets_month_starts() -> None:
    times = pd.DatetimeIndex(pd.date_range("2000-01-01", periods=30, freq="MS").delete([5, 6]))
    assert infer_frequency(times) == "MS"


@pytest.mark.parametrize(("freq", "expected"), [("QS", "3MS"), ("YS", "12MS"), ("QS-APR", "3MS")])
def test_quarters_and_years_are_steps_of_months(freq: str, expected: str) -> None:
    """A fixed "92D"/"365D" grid missed most quarters and years (issue 14's test sites: 198 of
    202 quarters of GDP, 300 of 307 years of sunspots rejected by clean)."""
    full = pd.date_range("1700-01-01" if freq == "YS" else "1959-01-01", periods=200, freq=freq)
    times = pd.DatetimeIndex(full.delete([7, 50]))  # gaps do not change the step
    frequency = infer_frequency(times)
    assert frequency == expected
    assert _grid(times, frequency).equals(full)


def test_missing_column_is_named() -> None:
    with pytest.raises(DataError, match="no column 'co2_ppm'"):
        clean_series(weekly_rows().drop(columns="co2_ppm"), series_params())


def test_scattered_times_are_refused_before_building_a_huge_grid() -> None:
    rows = weekly_rows(20)
    rows.loc[19, "week"] = "2400-01-01"
    with pytest.raises(DataError, match="too irregular"):
        clean_series(rows, series_params())


# -------------------------------------------------------------------- windows and scaling


def test_windows_pair_each_window_with_the_steps_after_it() -> None:
    x, y = windows(torch.arange(10.0), window=4, horizon=2)
    assert x.shape == (5, 4) and y.shape == (5, 2)
    assert x[0].tolist() == [0, 1, 2, 3] and y[0].tolist() == [4, 5]
    assert x[-1].tolist() == [4, 5, 6, 7] and y[-1].tolist() == [8, 9]
    assert windows(torch.arange(5.0), 4, 2)[0].shape == (0, 4)


@pytest.mark.parametrize("method", ["standard", "minmax", "none"])
def test_scaling_round_trips_and_uses_the_train_values_only(method: str) -> None:
    prep = {**fit_scaling(np.array([1.0, 2.0, 3.0, 6.0]), method), "anchor": "last"}
    if method == "standard":
        assert prep["mean"] == 3.0 and prep["std"] == pytest.approx(np.std([1, 2, 3, 6]))
    if method == "minmax":
        assert (prep["min"], prep["max"]) == (1.0, 6.0)
    x = torch.tensor([[300.0, 301.0, 302.0]])
    scaled, anchor = scale_inputs(x, prep)
    assert scaled[0, -1] == 0.0 and anchor.item() == 302.0
    assert unscale(scaled, anchor, prep)[0].tolist() == pytest.approx(x[0].tolist())


def test_constant_train_span_cannot_be_scaled() -> None:
    with pytest.raises(DataError, match="constant"):
        fit_scaling(np.full(10, 4.0), "standard")


# ------------------------------------------------------------------------- stages (in a project)


def project_params(**overrides: Any) -> dict[str, Any]:
    raw = yaml.safe_load((REPO / "examples" / "co2.params.yaml").read_text())
    tiny = {
        "train": {
            "epochs": 4,
            "patience": 4,
            "d_model": 8,
            "batch_size": 32,
            "device": "cpu",
            "series": {"window": 12, "horizon": 3},
        }
    }
    return merge_params(merge_params(raw, tiny), overrides)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project directory (cwd) with a validated crawl of a weekly series."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "validated").mkdir(parents=True)
    dirty_rows().astype({"co2_ppm": str}).to_parquet(tmp_path / "data/validated/items.parquet")
    return tmp_path


def run_stages(raw: dict[str, Any], *stages: str) -> list[int]:
    params = parse_params(raw)
    return [getattr(forecasting, f"{stage}_stage")(params) for stage in stages]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project where clean, train, evaluate and export ran once (read-only for the tests)."""
    root = tmp_path_factory.mktemp("forecasting")
    (root / "data" / "validated").mkdir(parents=True)
    dirty_rows().astype({"co2_ppm": str}).to_parquet(root / "data/validated/items.parquet")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        assert run_stages(project_params(), "clean", "train", "evaluate", "export") == [0] * 4
    return root


def test_stages_write_every_output_that_their_contracts_name(trained: Path) -> None:
    project, raw = trained, project_params()
    report = json.loads((project / "reports/clean.json").read_text())
    assert report["n_in"] == report["n_out"] + report["n_rejected"]
    assert len(read_jsonl(project / "data/quarantine/clean.jsonl")) == report["n_rejected"]
    assert (project / "reports/label_issues.csv").read_text().startswith("key,url,label")
    card = json.loads((project / "models/card.json").read_text())
    prep = card["preprocessing"]
    assert card["classes"] == [] and card["architecture"] == "lstm"
    assert (prep["window"], prep["horizon"], prep["frequency"], prep["scaling"]) == (
        12,
        3,
        "7D",
        "standard",
    )
    train_values = pd.read_parquet(project / "data/clean/items.parquet").query("split == 'train'")
    assert prep["mean"] == pytest.approx(train_values["value"].mean())  # train span only
    assert (project / "reports/train/metrics.json").exists()
    metrics = json.loads((project / "reports/metrics.json").read_text())
    assert metrics["n_test"] == 39 and len(metrics["mae_per_step"]) == 3
    assert metrics["rmse"] >= metrics["mae"] > 0
    assert set(metrics["baselines"]) == {"naive", "seasonal_naive"}
    for baseline in metrics["baselines"].values():
        assert baseline["mae"] > 0 and baseline["n_test"] == 39
        assert {"rmse", "mape", "mase", "description"} <= set(baseline)
    forecast_csv = pd.read_csv(project / "reports/evaluation/forecast.csv")
    assert list(forecast_csv.columns) == ["time", "actual", "forecast", "seasonal_naive", "naive"]
    # MASE: each MAE over the same scale, the train span's in-sample seasonal-naive MAE
    values = pd.read_parquet(project / "data/clean/items.parquet")
    train = values.loc[values["split"] == "train", "value"].to_numpy()
    scale = np.mean(np.abs(train[52:] - train[:-52]))
    assert metrics["mase"] == pytest.approx(metrics["mae"] / scale, rel=1e-4)
    naive = metrics["baselines"]["naive"]
    assert naive["mase"] == pytest.approx(naive["mae"] / scale, rel=1e-4)
    # naive: every step ahead is the last value known at the origin
    first_steps = (forecast_csv["naive"] - forecast_csv["actual"].shift(1)).dropna()
    assert np.abs(first_steps).max() < 1e-9
    assert len(forecast_csv) == 39
    errors = (forecast_csv["forecast"] - forecast_csv["actual"]).abs()
    assert errors.mean() == pytest.approx(metrics["mae_per_step"][0], abs=1e-5)
    assert (project / "reports/evaluation/plots/forecast.png").stat().st_size > 10_000
    assert sorted(p.name for p in (project / "reports/evaluation/plots").iterdir()) == [
        "forecast.png"  # no CSV: dvc.yaml's `plots:` draws a CSV there as a confusion matrix
    ]
    onnx_info = json.loads((project / "export/onnx.json").read_text())
    assert onnx_info["input"]["shape"] == ["batch", 12] and onnx_info["input"]["dtype"] == "float32"
    assert onnx_info["parity"]["max_abs_diff"] <= onnx_info["parity"]["atol"]
    got = forecasting.test_metrics(project / "models", project / "data/clean", parse_params(raw))
    assert got == {k: metrics[k] for k in ("mae", "rmse", "mape", "n_test")}


def test_onnx_and_torch_runner_agree_on_raw_values(trained: Path) -> None:
    project = trained
    session = ort.InferenceSession(str(project / "export/model.onnx"))
    window = np.linspace(315, 320, 12, dtype=np.float32)[None].repeat(3, 0)
    onnx_out = session.run(None, {"values": window})[0]
    torch_out = forecasting.torch_runner(project / "models")(window)
    assert onnx_out.shape == (3, 3) and np.abs(onnx_out - torch_out).max() < 1e-3
    assert 300 < onnx_out.min() and onnx_out.max() < 340  # ppm, not scaled units


def test_seasonal_naive_reaches_back_whole_seasons() -> None:
    values = np.arange(20.0)
    origins = np.array([9])  # last known step 9; steps 10, 11, 12 ahead with m = 2
    naive = seasonal_naive_forecast(values, origins, horizon=3, season=2)
    assert naive.tolist() == [[8.0, 9.0, 8.0]]
    assert naive_forecast(values, np.array([9, 4]), horizon=3).tolist() == [[9.0] * 3, [4.0] * 3]


def test_metrics_match_scikit_learn() -> None:
    rng = np.random.default_rng(1)
    actual, predicted = rng.uniform(300, 400, 50), rng.uniform(300, 400, 50)
    got = forecasting_report._errors(actual, predicted)
    assert got["mae"] == pytest.approx(mean_absolute_error(actual, predicted))
    assert got["rmse"] == pytest.approx(root_mean_squared_error(actual, predicted))
    assert got["mape"] == pytest.approx(100 * mean_absolute_percentage_error(actual, predicted))


def test_gru_trains_and_is_deterministic(project: Path) -> None:
    raw = project_params(train={"model": "gru", "epochs": 2})
    assert run_stages(raw, "clean", "train") == [0, 0]
    first = json.loads((project / "models/card.json").read_text())
    assert first["architecture"] == "gru" and first["epochs_run"] == 2
    assert first["best_val_loss"] < 1.0  # scaled units: it learned something
    assert run_stages(raw, "train") == [0]
    again = json.loads((project / "models/card.json").read_text())
    assert again["weights_sha256"] == first["weights_sha256"]  # CPU, same seed: same weights


@pytest.mark.parametrize(
    ("series", "message"),
    [
        ({"window": 300, "horizon": 4}, r"window \(300\) \+ train.series.horizon \(4\)"),
        ({"window": 12, "horizon": 300}, r"horizon \(300\) is longer than the whole series \(260"),
        ({"window": 12, "horizon": 175}, r"window \(12\) \+ train.series.horizon \(175\)"),
        ({"window": 4, "horizon": 60}, r"horizon \(60\) is longer than the val span"),
    ],
)
def test_too_long_window_or_horizon_fails_early_and_writes_no_model(
    project: Path, caplog: pytest.LogCaptureFixture, series: dict, message: str
) -> None:
    raw = project_params(train={"series": series})
    assert run_stages(raw, "clean", "train") == [0, 1]
    assert not (project / "models").exists() and not (project / ".kiln").exists()
    assert any(re.search(message, r.getMessage()) for r in caplog.records)


def test_model_for_another_frequency_is_refused(trained: Path) -> None:
    project = trained
    forecaster, _ = forecasting_report.load_forecaster(project / "models")
    forecaster.preprocessing["frequency"] = "1D"
    with pytest.raises(ModelError, match="preprocessing.frequency is '1D'"):
        forecasting_report.evaluate_forecaster(forecaster, read_series(project / "data/clean"), 52)


# ------------------------------------------------------------------------------------ serving


def loaded_model(window: int = 4, horizon: int = 2) -> SimpleNamespace:
    def run(values: np.ndarray) -> np.ndarray:  # a stand-in graph: the last value, repeated
        assert values.dtype == np.float32 and values.shape[1] == window
        return np.repeat(values[:, -1:], horizon, axis=1)

    card = {"preprocessing": {"window": window, "horizon": horizon}}
    return SimpleNamespace(card=card, version="v0007", run=run)


def request(body: dict[str, Any]) -> Any:
    return SPEC.request(8).model_validate_json(json.dumps(body))


def test_serve_forecasts_each_window() -> None:
    body = {"instances": [{"values": [1, 2, 3, 4.5]}, {"values": [5.0, 6, 7, 8]}]}
    response = SPEC.predict(request(body), loaded_model())
    assert response.model_dump() == {
        "task": "forecasting",
        "model_version": "v0007",
        "predictions": [{"forecast": [4.5, 4.5]}, {"forecast": [8.0, 8.0]}],
    }


def test_serve_names_a_window_of_the_wrong_length() -> None:
    body = {"instances": [{"values": [1, 2, 3, 4]}, {"values": [1, 2, 3]}]}
    with pytest.raises(InputError) as info:
        SPEC.predict(request(body), loaded_model())
    assert info.value.loc == ("body", "instances", 1, "values") and "exactly 4" in info.value.msg


@pytest.mark.parametrize(
    "raw",
    [
        '{"instances": [{"values": [1, NaN, 3, 4]}]}',
        '{"instances": [{"values": [1, Infinity, 3, 4]}]}',
        '{"instances": [{"values": [1, "2", 3, 4]}]}',
        '{"instances": [{"values": [1, 2, 3, 4], "extra": 1}]}',
        '{"instances": []}',
        '{"instances": [{"values": []}]}',
        '{"instances": [{"values": [1, 2, 3, 4]}], "model": "../etc"}',
    ],
)
def test_serve_rejects_bad_requests_with_the_field_path(raw: str) -> None:
    with pytest.raises(ValidationError) as info:
        SPEC.request(8).model_validate_json(raw)
    assert info.value.errors()[0]["loc"][0] in ("instances", "model")


def test_serve_refuses_more_than_max_batch() -> None:
    with pytest.raises(ValidationError):
        request({"instances": [{"values": [1.0]}] * 9})


def test_export_logs_its_progress_as_one_step(trained: Path, tmp_path: Path, caplog) -> None:
    import shutil  # noqa: PLC0415

    from tasks.core.progress import parse  # noqa: PLC0415

    for part in ("models", "data/clean"):  # a copy: `trained` is read-only for the tests
        shutil.copytree(trained / part, tmp_path / part)
    caplog.set_level("INFO")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        assert run_stages(project_params(), "export") == [0]
    lines = [line for r in caplog.records if (line := parse(r.getMessage())) is not None]
    export = [line for line in lines if line.what == "export.onnx"]
    assert (export[0].done, export[0].total, export[0].finished) == (0, 1, False)
    assert (export[-1].done, export[-1].finished) == (1, True)
