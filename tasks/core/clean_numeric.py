"""Numeric columns of `python -m tasks.clean`: parsing, missing values and outliers, per params.

Per column of `clean.numeric_columns`: values are parsed to float (unparseable or infinite is
missing); `clean.missing[column]` fills them (mean, median, mode, constant) or drops the row, and
columns without a rule use `clean.impute`; then `clean.outliers[column]` clips or drops values
outside the IQR or robust z-score bounds. Every operation returns a record of what it did and to
how many rows, for `reports/clean.json`.

Idempotence (clean(clean(x)) == clean(x)): a filled value is no longer missing; clipping keeps the
quartiles and the median/MAD, so the bounds do not move; dropping repeats until no row is outside
the bounds of the rows left (at most `_MAX_ROUNDS`), so a second pass finds nothing to drop.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tasks.core.params import CleanParams, MissingRule, OutlierRule

_MAX_ROUNDS = 20  # drop rounds; IQR drop on real data settles in 2-3 (each round trims tails)
_MAD_TO_SIGMA = 1.4826  # MAD x 1.4826 estimates the standard deviation of normal data


def parse(values: list[Any]) -> np.ndarray:
    """float64 values; NaN where missing, unparseable or infinite."""
    text = pd.Series([v.strip() if isinstance(v, str) else v for v in values], dtype=object)
    numbers = np.array(pd.to_numeric(text, errors="coerce"), dtype=np.float64)  # a copy
    numbers[~np.isfinite(numbers)] = np.nan  # "inf" parses, but is not a measurement
    return numbers


def _rule(column: str, params: CleanParams) -> MissingRule:
    if column in params.missing:
        return params.missing[column]
    if params.impute == "zero":
        return MissingRule(strategy="constant", value=0.0)
    return MissingRule(strategy=params.impute)


def _fill_value(present: np.ndarray, rule: MissingRule) -> float:
    if rule.strategy == "constant":
        return float(rule.value)
    if len(present) == 0:
        return 0.0  # no value at all: nothing to average; the report names the column
    if rule.strategy == "mean":
        return float(np.mean(present))
    if rule.strategy == "median":
        return float(np.median(present))
    values, counts = np.unique(present, return_counts=True)
    return float(values[np.argmax(counts)])  # mode; ties: the smallest value (np.unique sorts)


def handle_missing(
    column: str, numbers: np.ndarray, params: CleanParams
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(values, rows to drop, operation record) for one column's missing values."""
    rule = _rule(column, params)
    missing = np.isnan(numbers)
    op: dict[str, Any] = {"op": "missing", "column": column, "strategy": rule.strategy}
    if rule.strategy == "drop":
        return numbers, missing, {**op, "rows": int(missing.sum())}
    fill = _fill_value(numbers[~missing], rule)
    filled = np.where(missing, fill, numbers)
    op.update(value=fill, rows=int(missing.sum()))
    if len(numbers) and missing.all():
        op["entirely_missing"] = True  # no value at all (mean/median/mode: filled with 0.0)
    return filled, np.zeros(len(numbers), bool), op


def _bounds(values: np.ndarray, rule: OutlierRule) -> tuple[float, float]:
    if rule.method == "iqr":
        q1, q3 = np.percentile(values, [25, 75])
        return float(q1 - rule.k * (q3 - q1)), float(q3 + rule.k * (q3 - q1))
    median = float(np.median(values))
    spread = _MAD_TO_SIGMA * float(np.median(np.abs(values - median)))
    return median - rule.k * spread, median + rule.k * spread


def handle_outliers(
    columns: dict[str, np.ndarray], keep: np.ndarray, params: CleanParams
) -> tuple[dict[int, str], list[dict[str, Any]]]:
    """({row: reason} dropped, operation records); clips `columns` in place.

    Drops first, over all `drop` columns together until no kept row is outside the bounds of the
    kept rows; then clips with the bounds of the rows left. Bounds come from the rows in `keep`.
    """
    dropped: dict[int, str] = {}
    rules = params.outliers
    for _ in range(_MAX_ROUNDS):
        new = 0
        for column in (c for c, r in rules.items() if r.action == "drop"):
            left = keep & ~np.isin(np.arange(len(keep)), list(dropped))
            if not left.any():
                break
            lo, hi = _bounds(columns[column][left], rules[column])
            for i in np.flatnonzero(left & ((columns[column] < lo) | (columns[column] > hi))):
                dropped[int(i)] = f"outlier {column} outside [{lo:.6g}, {hi:.6g}]"
                new += 1
        if not new:
            break
    else:
        raise RuntimeError(f"outliers: still dropping rows after {_MAX_ROUNDS} rounds")
    left = keep & ~np.isin(np.arange(len(keep)), list(dropped))
    ops = []
    for column, rule in rules.items():
        op = {"op": "outliers", "column": column, "method": rule.method, "k": rule.k}
        lo, hi = _bounds(columns[column][left], rule) if left.any() else (np.nan, np.nan)
        op.update(action=rule.action, bounds=[round(lo, 6), round(hi, 6)])
        if rule.action == "drop":
            ops.append(
                {**op, "rows": sum(r.startswith(f"outlier {column} ") for r in dropped.values())}
            )
            continue
        outside = left & ((columns[column] < lo) | (columns[column] > hi))
        columns[column] = np.where(outside, np.clip(columns[column], lo, hi), columns[column])
        ops.append({**op, "rows": int(outside.sum())})
    return dropped, ops


def clean_numeric(
    rows: list[dict[str, Any]], params: CleanParams
) -> tuple[dict[str, np.ndarray], dict[int, str], list[dict[str, Any]]]:
    """({column: values}, {row position: reason} to reject, operation records) for `rows`."""
    columns: dict[str, np.ndarray] = {}
    rejected: dict[int, str] = {}
    ops = []
    for column in params.numeric_columns:
        values, drop, op = handle_missing(column, parse([r.get(column) for r in rows]), params)
        ops.append(op)
        for i in np.flatnonzero(drop):
            rejected.setdefault(int(i), f"missing {column}")
        columns[column] = values
    keep = ~np.isin(np.arange(len(rows)), list(rejected))
    dropped, outlier_ops = handle_outliers(columns, keep, params)
    return columns, {**rejected, **dropped}, ops + outlier_ops
