"""Time-series forecasting's stages (`python -m tasks.<stage>` when project.task is forecasting).

    clean     data/validated/items.parquet -> data/clean/items.parquet (time, value, filled, split,
              url; one row per step, split by time), quarantine, reports/clean.json
              (tasks/types/forecasting/data.py does the work)
    train     LSTM or GRU (tasks/models_seq.py) on sliding windows `train.series.window` ->
              `train.series.horizon` of the scaled train span, through tasks.core.engine.fit; val
              windows
              take their inputs from the end of the train span. Each window is taken relative to
              its last value, then divided by the `train.series.scaling` scale (fitted on train
              only): the network learns changes, so a trend that leaves the train range (CO2)
              does not put the test span out of its reach. The card keeps scaling, anchor,
              window, horizon and frequency, so evaluation, export and serving apply exactly the
              same preprocessing.
    evaluate  rolling-origin forecasts over the test span (every test step is an origin; inputs
              are the actual values before it): MAE, RMSE, MAPE (percent) and MASE for the model
              and, under `baselines`, for naive (the last value) and seasonal naive (the value
              `evaluate.season_length` steps earlier), skill = 1 - MAE / seasonal-naive MAE, MAE
              per horizon step; reports/evaluation/forecast.csv + plots/forecast.png (first step)
              (tasks/types/forecasting/report.py does the work)
    export    ONNX: float32 raw values (batch, window) in the original unit -> forecast
              (batch, horizon) in the original unit, scaling inside the graph; parity with PyTorch
              on the test windows within export.atol before anything is written
              (tasks/types/forecasting/export.py does the work).

This module holds the stage shells (read params and inputs, call the core, write outputs, log),
the train core, `test_metrics` (for promote) and `torch_runner` (for serve/backends.py).

A window plus horizon longer than the train span, or a horizon longer than the val or test span,
fails before training with a message naming the params and the lengths; nothing is written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F  # noqa: N812 (the usual torch alias)
from torch import nn

from tasks.core.dataset import DataError
from tasks.core.distributed import is_rank0
from tasks.core.engine import TaskData, TrainError, fit, pick_device
from tasks.core.io import atomic_dir, write_json, write_jsonl, write_parquet
from tasks.core.label_review import ISSUE_COLUMNS, write_csv
from tasks.core.models import ModelError, build_model, save_model
from tasks.core.objectives import regression_metrics
from tasks.core.onnx_export import exporting, write_export
from tasks.core.paths import (
    CHECKPOINTS_DIR,
    CLEAN_DIR,
    CLEAN_QUARANTINE,
    CLEAN_REPORT,
    EXPORT_DIR,
    LABEL_ISSUES,
    MODELS_DIR,
    REPORTS_DIR,
    TRAIN_REPORTS,
    VALIDATED_ITEMS,
)
from tasks.core.training import engine_config, write_live
from tasks.types.forecasting.data import (
    Series,
    clean_series,
    fit_scaling,
    read_series,
    scale_inputs,
    scale_targets,
    windows,
)
from tasks.types.forecasting.export import export_forecaster
from tasks.types.forecasting.models import ARCHITECTURES
from tasks.types.forecasting.report import (
    evaluate_forecaster,
    forecast,
    load_forecaster,
    write_reports,
)

if TYPE_CHECKING:
    from tasks.core.params import Params

logger = logging.getLogger("kiln.forecasting")

CHECKPOINT_FORMAT = 1  # bump when the windows or the scaling change meaning
STAGE_ERRORS = (DataError, ModelError, TrainError, OSError)


# ---------------------------------------------------------------------------------------- clean
def clean_stage(params: Params) -> int:
    log = logging.getLogger("kiln.clean")
    try:
        rows = pd.read_parquet(VALIDATED_ITEMS)
        result = clean_series(rows, params.clean)
    except (DataError, OSError, ValueError) as exc:
        log.error("clean failed: %s", exc)
        return 1
    with atomic_dir(CLEAN_DIR) as tmp:
        write_parquet(result.items, tmp / "items.parquet")
    write_jsonl(CLEAN_QUARANTINE, result.rejects)
    write_csv(LABEL_ISSUES, [], ISSUE_COLUMNS)  # a series has no labels to review
    write_json(CLEAN_REPORT, result.report)
    r = result.report
    log.info(
        f"{r['n_in']} rows -> {r['n_rows']} steps of {r['frequency']} ({r['start']} to "
        f"{r['end']}): {r['n_rejected']} rejected, {r['n_inserted']} missing steps inserted, "
        f"{r['n_filled']} values filled; splits {r['splits']}"
    )
    return 0


# ---------------------------------------------------------------------------------------- train
def check_lengths(series: Series, window: int, horizon: int) -> None:
    """Fail early, naming the params, when the spans cannot hold one window + horizon."""
    if horizon >= len(series.values):
        raise DataError(
            f"train.series.horizon ({horizon}) is longer than the whole series "
            f"({len(series.values)} steps of {series.frequency}): nothing left to learn from"
        )
    if window + horizon > series.n_train:
        raise DataError(
            f"train.series.window ({window}) + train.series.horizon ({horizon}) = "
            f"{window + horizon} steps, but the train span has only {series.n_train} of the "
            f"series' {len(series.values)} steps: shorten the window or horizon, or crawl more"
        )
    for name, n in (("val", series.n_val), ("test", series.n_test)):
        if horizon > n:
            raise DataError(
                f"train.series.horizon ({horizon}) is longer than the {name} span ({n} steps of "
                f"{len(series.values)}): shorten the horizon or raise clean.{name}_share"
            )


def _span_windows(
    values: torch.Tensor, span: tuple[int, int], window: int, prep: dict[str, Any]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled (inputs (N, window, 1), targets (N, horizon)) of the windows whose targets lie in
    values[start:stop]; inputs may reach back before start (val starts right after train)."""
    start, stop = span
    x, y = windows(values[max(0, start - window) : stop], window, int(prep["horizon"]))
    x_scaled, anchor = scale_inputs(x, prep)
    y_scaled = scale_targets(y, anchor, prep)
    return x_scaled.unsqueeze(-1).float().contiguous(), y_scaled.float().contiguous()


@dataclass(frozen=True)
class ForecastTrainResult:
    model: nn.Module
    config: dict[str, Any]
    preprocessing: dict[str, Any]
    checkpoint_path: Path
    epochs_run: int
    best_epoch: int
    best: dict[str, float]
    history: list[dict[str, float]]


def train_forecaster(params: Params, series: Series, checkpoint_dir: Path) -> ForecastTrainResult:
    """Train (or resume) on the train windows; pure apart from checkpoints."""
    cfg = params.train
    window, horizon = cfg.series.window, cfg.series.horizon
    check_lengths(series, window, horizon)
    device = pick_device(cfg.device)
    prep = fit_scaling(series.values[: series.n_train], cfg.series.scaling)
    prep.update(
        anchor=cfg.series.anchor,
        window=window,
        horizon=horizon,
        frequency=series.frequency,
        value_column=params.clean.series.value_column,
        train_end=series.times[series.n_train - 1].isoformat(),
        series_end=series.times[-1].isoformat(),
    )
    values = torch.tensor(series.values)  # float64 until scaled: differences of ~350 ppm values
    n_fit = series.n_train + series.n_val
    x_train, y_train = _span_windows(values, (0, series.n_train), window, prep)
    x_val, y_val = _span_windows(values, (series.n_train, n_fit), window, prep)
    data = TaskData(x_train, y_train, x_val, y_val).to(device)
    dropout = cfg.dropout if cfg.layers > 1 else 0.0  # torch uses it between stacked layers only
    config = {
        "n_features": 1,
        "horizon": horizon,
        "hidden": cfg.d_model,
        "layers": cfg.layers,
        "dropout": dropout,
    }
    logger.info(
        f"{cfg.model}: window {window} -> horizon {horizon} steps of {prep['frequency']}, "
        f"{len(x_train)} train / {len(x_val)} val windows, {cfg.series.scaling} scaling "
        "relative to each window's last value"
    )

    torch.manual_seed(cfg.seed)
    model = build_model(ARCHITECTURES, cfg.model, config)
    spec = {
        "format": CHECKPOINT_FORMAT,
        "task": "forecasting",
        "train": cfg.checkpoint_dump(),
        "data_version": series.data_version,
    }
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    loss_fn, metric_fn = F.mse_loss, regression_metrics
    run = fit(
        model,
        data,
        loss_fn,
        metric_fn,
        cfg=engine_config(cfg, device),
        checkpoint_path=checkpoint_dir / key,
    )
    return ForecastTrainResult(
        run.model,
        config,
        prep,
        checkpoint_dir / key,
        run.epochs_run,
        run.best_epoch,
        run.best,
        run.history,
    )


def _write_live(result: ForecastTrainResult, monitor: str) -> None:
    """DVCLive logs of the run (history, best_epoch, epochs_run: as a TrainResult has them)."""

    write_live(result, TRAIN_REPORTS, monitor)  # history, best_epoch, epochs_run: as a TrainResult


def train_stage(params: Params) -> int:
    log = logging.getLogger("kiln.train")
    try:
        series = read_series(CLEAN_DIR)
        result = train_forecaster(params, series, CHECKPOINTS_DIR)
    except STAGE_ERRORS as exc:
        log.error("train failed: %s", exc)
        return 1
    if not is_rank0():  # under torchrun: rank 0 writes models/ and reports/, the others nothing
        return 0
    card = {
        "architecture": params.train.model,
        "config": result.config,
        "classes": [],
        "preprocessing": result.preprocessing,
        "data_version": series.data_version,
        "train_params": params.train.model_dump(mode="json"),
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "best_val_loss": result.best["val_loss"],
    }
    with atomic_dir(MODELS_DIR) as tmp:
        card = save_model(result.model, tmp, card)
    _write_live(result, params.train.monitor)
    shutil.rmtree(result.checkpoint_path, ignore_errors=True)
    log.info(
        f"wrote {MODELS_DIR} (weights sha256 {card['weights_sha256'][:12]}…), "
        f"best epoch {result.best_epoch}: val MAE {result.best['val_mae']:.4f} (scaled)"
    )
    return 0


# ------------------------------------------------------------------------------------- evaluate
def test_metrics(model_dir: Path, clean_dir: Path, params: Params) -> dict[str, Any]:
    """mae, rmse, mape (percent), n_test of the model in model_dir on clean_dir's test span."""
    forecaster, _card = load_forecaster(model_dir)
    result = evaluate_forecaster(forecaster, read_series(clean_dir), params.evaluate.season_length)
    return {k: v for k, v in result.metrics().items() if k in ("mae", "rmse", "mape", "n_test")}


def evaluate_stage(params: Params) -> int:
    log = logging.getLogger("kiln.evaluate")
    try:
        forecaster, card = load_forecaster(MODELS_DIR)
        result = evaluate_forecaster(
            forecaster, read_series(CLEAN_DIR), params.evaluate.season_length
        )
    except STAGE_ERRORS as exc:
        log.error("evaluate failed: %s", exc)
        return 1
    from tasks.core.baselines import baseline_lines  # noqa: PLC0415

    unit = card["preprocessing"].get("value_column", "value")
    write_reports(result, unit, REPORTS_DIR)
    m = result.metrics()
    mase = f", MASE {m['mase']:.4f}" if m["mase"] is not None else ""
    log.info(
        f"test MAE {m['mae']:.4f}, RMSE {m['rmse']:.4f}, MAPE {m['mape']:.3f}%{mase} on "
        f"{m['n_test']} steps; skill vs seasonal naive {m['skill_mae']}; wrote {REPORTS_DIR}/"
    )
    for line in baseline_lines(m, m["baselines"], ("mae", "rmse", "mape", "mase")):
        log.info(line)
    return 0


# --------------------------------------------------------------------------------------- export
def export_stage(params: Params) -> int:
    log = logging.getLogger("kiln.export")
    try:
        forecaster, card = load_forecaster(MODELS_DIR)
        series = read_series(CLEAN_DIR)
        with exporting(log):
            blob, info = export_forecaster(forecaster, card, series, params)
    except STAGE_ERRORS as exc:
        log.error("export failed: %s", exc)
        return 1
    write_export(blob, info, EXPORT_DIR)
    p = info["parity"]
    log.info(
        f"wrote {EXPORT_DIR}/model.onnx ({len(blob)} bytes); parity on {p['n']} windows: max "
        f"|forecast diff| {p['max_abs_diff']:.2e} ≤ {p['atol']:g}"
    )
    return 0


def torch_runner(version_dir: Path | str) -> Callable[[np.ndarray], np.ndarray]:
    """The PyTorch twin of model.onnx: float32 values (N, window) -> float32 (N, horizon)."""
    forecaster, _card = load_forecaster(version_dir)
    return lambda values: forecast(forecaster, np.asarray(values, np.float32)).astype(np.float32)
