"""Forecasting end to end: crawl the demo site's Mauna Loa CO2 table, then a real `dvc repro`
(validate -> clean -> train -> evaluate -> export -> promote) with examples/co2.params.yaml and a
small LSTM, and check the numbers each stage leaves behind."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.project import crawl_and_record, dvc, free_port, make_project

pytestmark = pytest.mark.e2e

WEEKS, UNMEASURED = 2284, 59  # statsmodels' co2 record: weeks 1958-03-29 .. 2001-12-29


def test_co2_crawl_to_forecast(tmp_path: Path) -> None:
    port = free_port()
    overrides = {
        "demo_site": {"port": port, "sections": ["co2"]},
        "crawl": {"start_urls": [f"http://127.0.0.1:{port}/co2/"]},
        # ~2 s of training on 2 cores; the e2e checks the plumbing and the direction of the numbers
        "train": {"epochs": 6, "patience": 6, "d_model": 16, "batch_size": 128, "device": "cpu"},
    }
    project = make_project(tmp_path, overrides, base="examples/co2.params.yaml")
    crawl_and_record(project)
    dvc("repro", cwd=project)

    clean = json.loads((project / "reports/clean.json").read_text())
    # the crawl rejects the 59 empty cells; clean puts those weeks back, interpolated
    assert (clean["n_in"], clean["n_rejected"], clean["n_inserted"]) == (WEEKS - UNMEASURED, 0, 59)
    assert clean["n_rows"] == WEEKS and clean["frequency"] == "7D"
    items = pd.read_parquet(project / "data/clean/items.parquet")
    assert items["time"].is_monotonic_increasing and items["filled"].sum() == UNMEASURED
    assert items["split"].iloc[-1] == "test" and items["split"].iloc[0] == "train"

    card = json.loads((project / "models/card.json").read_text())
    assert card["preprocessing"]["window"] == 52 and card["preprocessing"]["frequency"] == "7D"

    metrics = json.loads((project / "reports/metrics.json").read_text())
    baseline = metrics["baselines"]["seasonal_naive"]
    assert metrics["n_test"] == round(WEEKS * 0.15) == 343
    # seasonal naive misses the ~1.5 ppm/year rise: 1.70 ppm MAE over the 1995-2001 test span
    assert baseline["mae"] == pytest.approx(1.697, abs=0.01)
    # the LSTM forecasts changes from the last week, so even this small one beats it clearly
    assert metrics["mae"] < 0.75 * baseline["mae"], metrics
    assert 0 < metrics["mape"] < 0.3  # percent

    forecast = pd.read_csv(project / "reports/evaluation/forecast.csv")
    assert len(forecast) == 343 and forecast["actual"].between(355, 375).all()
    onnx_info = json.loads((project / "export/onnx.json").read_text())
    assert onnx_info["parity"]["max_abs_diff"] <= onnx_info["parity"]["atol"]
    assert json.loads(dvc("status", "--json", cwd=project).stdout or "{}") == {}
