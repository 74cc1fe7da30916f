"""The series of forecasting: cleaning, reading, scaling, windowing (tasks/types/forecasting/).

`clean_series(rows, params)` turns the validated crawl (one row per timestamp: the time and value
columns of `clean.series`, values possibly text or null) into a regular series:

* times parsed (unparseable -> rejected), values parsed (text, null, non-finite -> missing);
* rows sharing a timestamp: one is kept (a measured value first, then the first url), the others
  are rejected with `duplicate_of` ("duplicate row" when the value is equal too);
* the frequency is inferred from the most common step (7 days for the weekly CO2 record; month
  starts become "MS"); rows off that grid are rejected, missing steps are inserted (url null);
* outliers of the value column per `clean.outliers` (optional): clipped, or set missing and filled;
* missing values filled per `clean.series.fill` (interpolate in time, ffill; leading gaps take the
  first value) and marked `filled`, or, with `drop`, rejected (no steps inserted then);
* split by time: train first, then `clean.val_share`, then `clean.test_share` (a forecast is judged
  on the future, not on a hash-drawn sample of the past).

Scaling (`fit_scaling`, `scale`, `unscale`) is declared in `train.series.scaling`, fitted on the
train split only and saved in the model card; the ONNX graph carries the same arithmetic.
Needs numpy, pandas and torch (windows).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from tasks.core.clean_numeric import handle_outliers, parse
from tasks.core.dataset import DataError
from tasks.types.forecasting.params import SeriesCleanSection

SPLITS = ("train", "val", "test")
COLUMNS = ("time", "value", "filled", "split", "url")
# A grid over 10x more steps than timestamps (plus 1000) is not a series with gaps but scattered
# times; refusing it bounds memory (a wrong frequency once made 2.3 M steps from 2229 weeks).
MAX_GRID_FACTOR = 10


@dataclass
class SeriesCleanResult:
    items: pd.DataFrame  # COLUMNS, sorted by time, one row per step of the inferred frequency
    rejects: list[dict[str, Any]]  # url, reason (+ duplicate_of), sorted by url
    report: dict[str, Any]  # reports/clean.json


DAYS_PER_MONTH = 365.2425 / 12  # the Gregorian mean


def infer_frequency(times: pd.DatetimeIndex) -> str:
    """A pandas frequency string for sorted unique `times`: month starts "MS", quarter or year
    starts (or any whole number of months) "3MS", "12MS", ..., else a fixed step.

    The most common step wins, so a few gaps or stray rows do not change it. A step of months
    cannot be a fixed number of days: quarters are 90 to 92 days apart, years 365 or 366, and a
    fixed "92D" or "365D" grid missed 198 of 202 quarters of US GDP and 300 of 307 years of
    sunspots, which clean then rejected."""
    if len(times) < 2:
        raise DataError(f"a series needs at least 2 distinct timestamps, got {len(times)}")
    steps = pd.Series(np.diff(times.to_numpy())).value_counts()  # timedelta64, any unit
    step = pd.Timedelta(steps.index[0])
    if pd.Timedelta(days=28) <= step <= pd.Timedelta(days=366) and bool((times.day == 1).all()):
        months = round(step / pd.Timedelta(days=DAYS_PER_MONTH))
        return "MS" if months == 1 else f"{months}MS"
    if step % pd.Timedelta(days=1) == pd.Timedelta(0):
        return f"{step.days}D"  # "7D" rather than pandas' "168h"
    return pd.tseries.frequencies.to_offset(step).freqstr


def _grid(times: pd.DatetimeIndex, frequency: str) -> pd.DatetimeIndex:
    """Every step from the first to the last time; refuses a grid far larger than the data."""
    offset = pd.tseries.frequencies.to_offset(frequency)
    first = pd.Timestamp(times[0])
    span = (times[-1] - first) / (first + offset - first)  # steps, before building them
    if span > MAX_GRID_FACTOR * len(times) + 1000:
        raise DataError(
            f"the inferred frequency {frequency} would make {span:.0f} steps from {len(times)} "
            f"timestamps ({times[0]} to {times[-1]}): the times are too irregular for a series"
        )
    return pd.date_range(times[0], times[-1], freq=offset)


def _keep_one_per_time(frame: pd.DataFrame, rejects: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per timestamp: a measured value first, then the first url; others rejected."""
    order = frame.assign(_missing=frame["value"].isna()).sort_values(
        ["time", "_missing", "url"], na_position="last", kind="stable"
    )
    dup = order.duplicated("time", keep="first")
    kept = order[~dup].drop(columns="_missing")
    first = kept.set_index("time")
    for row in order[dup].itertuples():
        keeper = first.loc[row.time]
        same = (pd.isna(row.value) and pd.isna(keeper.value)) or row.value == keeper.value
        reason = "duplicate row" if same else f"duplicate timestamp (kept value {keeper.value})"
        rejects.append({"url": row.url, "reason": reason, "duplicate_of": keeper.url})
    return kept


def _fill(values: pd.Series, method: str) -> pd.Series:
    """Missing values filled: linear in time (interpolate) or carried forward (ffill); a leading
    gap has nothing before it and takes the first measured value."""
    if method == "interpolate":
        values = values.interpolate(method="time", limit_area="inside")
    return values.ffill().bfill()


def _split(n: int, params: SeriesCleanSection) -> np.ndarray:
    n_test, n_val = round(n * params.test_share), round(n * params.val_share)
    return np.array(["train"] * (n - n_val - n_test) + ["val"] * n_val + ["test"] * n_test)


def _outliers(
    values: np.ndarray, params: SeriesCleanSection, column: str
) -> tuple[np.ndarray, list]:
    """Clip, or mark missing (to be filled), the value column's outliers per `clean.outliers`."""
    rule = params.outliers[column]
    only = params.model_copy(update={"outliers": {column: rule}})
    columns = {column: values.copy()}
    dropped, ops = handle_outliers(columns, ~np.isnan(values), only)
    out = columns[column]
    out[list(dropped)] = np.nan  # "drop" keeps the time step: the value is filled instead
    return out, ops


def clean_series(rows: pd.DataFrame, params: SeriesCleanSection) -> SeriesCleanResult:
    """Pure: validated rows -> the regular series, its rejects and report."""
    series = params.series
    for column in ("url", series.time_column, series.value_column):
        if column not in rows.columns:
            raise DataError(
                f"data/validated/items.parquet has no column {column!r} (clean.series names "
                f"time_column {series.time_column!r}, value_column {series.value_column!r})"
            )
    frame = pd.DataFrame(
        {
            "time": pd.to_datetime(rows[series.time_column], errors="coerce", format="mixed"),
            "value": parse(rows[series.value_column].tolist()),
            # an earlier clean's `filled` (clean(clean(x)) == clean(x)): the value was not measured
            "filled": rows["filled"].astype(bool) if "filled" in rows else False,
            "url": rows["url"].astype(object).where(rows["url"].notna(), None),
        }
    )
    bad_time = frame["time"].isna()
    rejects: list[dict[str, Any]] = [
        {"url": url, "reason": f"unparseable time {raw!r} in {series.time_column}"}
        for url, raw in zip(frame["url"][bad_time], rows[series.time_column][bad_time], strict=True)
    ]
    frame = _keep_one_per_time(frame[~bad_time], rejects)
    n_duplicates = len(rejects) - int(bad_time.sum())
    times = pd.DatetimeIndex(frame["time"])
    frequency = infer_frequency(times)
    on_grid = times.isin(_grid(times, frequency))
    rejects += [
        {"url": url, "reason": f"timestamp off the inferred {frequency} grid"}
        for url in frame["url"][~on_grid]
    ]
    frame = frame[on_grid].set_index("time")
    ops: list[dict[str, Any]] = [
        {"op": "unparseable_time", "rows": int(bad_time.sum())},
        {"op": "duplicates", "rows": n_duplicates},
        {"op": "off_grid", "frequency": frequency, "rows": int((~on_grid).sum())},
    ]
    if series.value_column in params.outliers:
        values, outlier_ops = _outliers(
            frame["value"].to_numpy(np.float64), params, series.value_column
        )
        frame["value"] = values
        ops += outlier_ops
    frame, n_inserted, fill_ops = _regularise(frame, frequency, series.fill, rejects)
    ops += fill_ops
    if frame.empty:
        raise DataError(f"no measured value in column {series.value_column!r}: nothing to clean")
    items = frame.reset_index()
    items["split"] = _split(len(items), params)
    items = items[list(COLUMNS)].astype({"value": "float64", "filled": "bool"})
    items["url"] = items["url"].astype(object).where(items["url"].notna(), None)
    rejects.sort(key=lambda r: (str(r["url"]), r["reason"]))
    report = {
        "n_in": len(rows),
        "n_out": len(items) - n_inserted,  # output rows that came from an input row
        "n_rejected": len(rejects),
        "n_inserted": n_inserted,  # missing time steps added (url null, value filled)
        "n_rows": len(items),
        "n_duplicates": n_duplicates,
        "n_filled": int(items["filled"].sum()),
        "imputed": {"value": int(items["filled"].sum())},
        "frequency": frequency,
        "start": items["time"].iloc[0].isoformat(),
        "end": items["time"].iloc[-1].isoformat(),
        "splits": {s: int((items["split"] == s).sum()) for s in SPLITS},
        "operations": ops,
    }
    return SeriesCleanResult(items, rejects, report)


def _regularise(
    frame: pd.DataFrame, frequency: str, fill: str, rejects: list[dict[str, Any]]
) -> tuple[pd.DataFrame, int, list[dict[str, Any]]]:
    """(frame on the full grid with values filled, steps inserted, operations); with fill
    `drop`, rows without a value are rejected instead and no step is inserted."""
    missing = frame["value"].isna()
    if fill == "drop":
        rejects += [
            {"url": u, "reason": "missing value (clean.series.fill: drop)"}
            for u in frame["url"][missing]
        ]
        return frame[~missing], 0, [{"op": "missing", "strategy": fill, "rows": int(missing.sum())}]
    if missing.all():
        return frame.iloc[:0], 0, []
    grid = _grid(pd.DatetimeIndex(frame.index), frequency)
    n_inserted = len(grid) - len(frame)
    frame = frame.reindex(grid).rename_axis("time")
    was_missing = frame["value"].isna()
    frame["value"] = _fill(frame["value"], fill)
    frame["filled"] = frame["filled"].astype("boolean").fillna(False).astype(bool) | was_missing
    ops = [
        {"op": "missing_steps_inserted", "frequency": frequency, "rows": n_inserted},
        {"op": "missing", "strategy": fill, "rows": int(was_missing.sum())},
    ]
    return frame, n_inserted, ops


@dataclass(frozen=True)
class Series:
    times: pd.DatetimeIndex
    values: np.ndarray  # float64 (T,), original unit, no missing values
    n_train: int
    n_val: int
    n_test: int
    data_version: str  # sha256 of data/clean/items.parquet

    @property
    def frequency(self) -> str:
        return infer_frequency(self.times)


def read_series(clean_dir: Path | str) -> Series:
    """data/clean/items.parquet as a Series; the splits must be train, val, test in time order."""
    path = Path(clean_dir) / "items.parquet"
    try:
        items = pd.read_parquet(path, columns=["time", "value", "split"])
        blob = path.read_bytes()
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    split = items["split"].to_numpy()
    counts = [int((split == s).sum()) for s in SPLITS]
    expected = np.repeat(np.array(SPLITS), counts)
    if len(expected) != len(split) or not (expected == split).all():
        raise DataError(f"{path}: splits are not train, val, test in time order (run clean)")
    values = items["value"].to_numpy(np.float64)
    if not np.isfinite(values).all():
        raise DataError(f"{path}: column value has missing or non-finite values (run clean)")
    return Series(
        pd.DatetimeIndex(items["time"]), values, *counts, hashlib.sha256(blob).hexdigest()
    )


def fit_scaling(train: np.ndarray, method: str) -> dict[str, Any]:
    """{scaling, shift, scale, + mean/std or min/max}: scaled = (value - shift) / scale."""
    if method == "standard":
        mean, std = float(train.mean()), float(train.std())
        out = {"mean": mean, "std": std, "shift": mean, "scale": std}
    elif method == "minmax":
        low, high = float(train.min()), float(train.max())
        out = {"min": low, "max": high, "shift": low, "scale": high - low}
    else:
        out = {"shift": 0.0, "scale": 1.0}
    if not out["scale"] > 1e-12:
        raise DataError(
            f"the train split is constant ({train[0]!r}): {method} scaling divides by 0"
        )
    return {"scaling": method, **out}


def scale_inputs(values: torch.Tensor, prep: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw windows (N, window) -> (model inputs (N, window), anchor (N, 1) or a scalar).

    anchor "last": each window is taken relative to its own last value before scaling, and the
    forecast is added back to it, so the network learns changes, not levels: a trending series
    (CO2 rises ~1.5 ppm a year) reaches levels in the test span that the train span never had,
    and a level-trained LSTM was 1.7x worse than seasonal naive there (MAE 2.95 vs 1.70 ppm)."""
    anchor = values[:, -1:] if prep.get("anchor") == "last" else values.new_tensor(prep["shift"])
    return (values - anchor) / prep["scale"], anchor


def scale_targets(
    targets: torch.Tensor, anchor: torch.Tensor, prep: dict[str, Any]
) -> torch.Tensor:
    return (targets - anchor) / prep["scale"]


def unscale(outputs: torch.Tensor, anchor: torch.Tensor, prep: dict[str, Any]) -> torch.Tensor:
    """Network outputs (N, horizon) -> forecasts in the series' unit."""
    return outputs * prep["scale"] + anchor


def windows(values: torch.Tensor, window: int, horizon: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (window -> horizon) pair of a 1-D series: x (N, window), y (N, horizon); no copy."""
    if len(values) < window + horizon:
        return values.new_empty(0, window), values.new_empty(0, horizon)
    pairs = values.unfold(0, window + horizon, 1)  # (N, window + horizon) views
    return pairs[:, :window], pairs[:, window:]
