"""Drift between data versions, run inside `python -m tasks.validate` (DVC stage `validate`).

The validate stage writes, beside `data/validated/items.parquet`, `profile.parquet`: per valid row
its url, content_hash and what its task type has of: normalised label (classification), mean
image intensity (images), text length in characters after clean's normalisation (`text_chars`,
text tasks) and parsed numeric columns (`<column>_number`, with the series' value column for
forecasting). The previous version is the `data/validated` that DVC recorded in `dvc.lock` for the
last successful `validate` (a failed run never updates dvc.lock), read from the DVC cache by the
md5 the lock names, so no second copy of the data is kept. No lock entry, or a cache without that
version, is "no previous version": the run says so and passes.

Checks (thresholds and warn|fail in `validate.drift`): label shares (PSI, classification), the
two-sample Kolmogorov-Smirnov statistic D of the mean image intensity (images), of the text length
(text) and of each numeric column (every task; forecasting's value column among them), row count
change, and share of rows whose content_hash the previous version did not have. A check the task
type has no data for is in the report as "not applicable".
"""

from __future__ import annotations

import configparser
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from scipy.stats import ks_2samp

from tasks.core.params import DriftCheck, DriftParams
from tasks.core.validate_derive import IMAGES, TaskColumns, number_column

log = logging.getLogger("kiln.validate")

PROFILE = "profile.parquet"
TEXT_CHARS = "text_chars"  # the profile's text length column, whatever the text column is called
VALIDATED = "data/validated"
# Shares below this are floored before PSI's log ratio: a class absent on one side would give an
# infinite PSI; 1e-4 (one row in 10,000) keeps one vanished class from dwarfing all others.
_PSI_FLOOR = 1e-4


def profile_of(
    checked: pd.DataFrame, numeric: list[str], task: TaskColumns = IMAGES
) -> pd.DataFrame:
    """The per-row figures drift compares, from validate's derived frame (valid rows only): url,
    content_hash, and what the task type has of label, image_mean, text_chars and numbers."""
    renamed = {"label_normalised": "label", task.text_chars: TEXT_CHARS}
    columns = ["url", "content_hash"]
    columns += ["label_normalised"] if task.has_labels else []
    columns += ["image_mean"] if task.has_images else []
    columns += [task.text_chars] if task.has_text else []
    columns += [number_column(c) for c in task.numeric(numeric)]
    out = pd.DataFrame(index=checked.index)
    for column in columns:
        out[column] = checked[column] if column in checked else None
    for column in ("url", "content_hash", "label_normalised"):
        if column in out:
            out[column] = out[column].map(lambda v: v if isinstance(v, str) else None)
    if task.has_text:  # lengths as floats: NaN, not None, where a row has no text
        out[task.text_chars] = pd.to_numeric(out[task.text_chars], errors="coerce").astype(float)
    return out.rename(columns=renamed).reset_index(drop=True)


def _cache_dir(project: Path) -> Path:
    """The local DVC cache: `cache.dir` of .dvc/config.local or .dvc/config, else .dvc/cache."""
    for name in ("config.local", "config"):
        config = configparser.ConfigParser()
        config.read(project / ".dvc" / name, encoding="utf-8")
        if config.has_option("cache", "dir"):
            # DVC resolves a relative cache dir against the .dvc directory.
            return (project / ".dvc" / config.get("cache", "dir")).resolve()
    return project / ".dvc" / "cache"


def previous_profile(project: Path) -> tuple[pd.DataFrame | None, str]:
    """(profile of the DVC-recorded data/validated, where it came from) or (None, why not)."""
    lock_file = project / "dvc.lock"
    if not lock_file.is_file():
        return None, "no previous version (no dvc.lock)"
    lock = yaml.safe_load(lock_file.read_text(encoding="utf-8")) or {}
    outs = ((lock.get("stages") or {}).get("validate") or {}).get("outs") or []
    md5 = next((o.get("md5") for o in outs if o.get("path") == VALIDATED), None)
    if not md5:
        return None, "no previous version (dvc.lock records no data/validated)"
    cache = _cache_dir(project) / "files" / "md5"  # DVC 3's local cache layout
    manifest = cache / md5[:2] / md5[2:]
    if not manifest.is_file():
        log.warning(
            "dvc.lock records data/validated %s but the DVC cache at %s lacks it", md5, cache
        )
        return None, f"no previous version (data/validated {md5} not in the local DVC cache)"
    entries = {e["relpath"]: e["md5"] for e in json.loads(manifest.read_text(encoding="utf-8"))}
    if PROFILE not in entries:
        return None, f"no previous version (data/validated {md5} has no {PROFILE})"
    path = cache / entries[PROFILE][:2] / entries[PROFILE][2:]
    return pd.read_parquet(path), f"data/validated {md5} (dvc.lock)"


def psi(previous: pd.Series, new: pd.Series) -> float:
    """Population stability index of two categorical samples."""
    p = previous.value_counts(normalize=True)
    q = new.value_counts(normalize=True)
    cats = p.index.union(q.index)
    p = np.maximum(p.reindex(cats, fill_value=0.0).to_numpy(), _PSI_FLOOR)
    q = np.maximum(q.reindex(cats, fill_value=0.0).to_numpy(), _PSI_FLOOR)
    return float(np.sum((q - p) * np.log(q / p)))


def _ks(previous: pd.Series, new: pd.Series) -> float | None:
    a, b = previous.dropna().to_numpy(float), new.dropna().to_numpy(float)
    return float(ks_2samp(a, b).statistic) if len(a) and len(b) else None


def _result(stat: float | None, check: DriftCheck, **extra: Any) -> dict[str, Any]:
    drifted = stat is not None and stat > check.threshold
    return {
        "statistic": None if stat is None else round(stat, 6),
        "threshold": check.threshold,
        "severity": check.severity,
        "drifted": drifted,
        "verdict": "drifted" if drifted else "ok" if stat is not None else "no data",
        **extra,
    }


def _mean(values: pd.Series) -> float | None:
    mean = values.mean()
    return None if pd.isna(mean) else round(float(mean), 4)


def _ks_check(
    previous: pd.DataFrame, new: pd.DataFrame, column: str, check: DriftCheck, **extra: Any
) -> dict[str, Any]:
    """KS D of `column` between the versions, with both means; a previous version without the
    column (profiled before it existed, or for another task type) is said, not compared."""
    if column not in previous:
        return _result(None, check, note=f"the previous version has no {column}")
    means = {"previous_mean": _mean(previous[column]), "new_mean": _mean(new[column])}
    return _result(_ks(previous[column], new[column]), check, **means, **extra)


def compare(
    previous: pd.DataFrame, new: pd.DataFrame, params: DriftParams, task: TaskColumns = IMAGES
) -> dict[str, Any]:
    """Every drift check of `task`'s type of `new` against `previous` (two profiles), by name."""
    checks = {}
    if task.has_labels:
        stat = psi(previous["label"], new["label"]) if "label" in previous else None
        checks["label_psi"] = _result(stat, params.label_psi)
    if task.has_images:
        checks["image_mean_ks"] = _ks_check(previous, new, "image_mean", params.image_mean_ks)
    if task.has_text:
        checks["text_length_ks"] = _ks_check(previous, new, TEXT_CHARS, params.text_length_ks)
    for column in (c for c in new.columns if c.endswith("_number")):
        if column in previous:
            name = f"numeric_ks:{column.removesuffix('_number')}"
            checks[name] = _result(_ks(previous[column], new[column]), params.numeric_ks)
    n_prev, n_new = len(previous), len(new)
    change = abs(n_new - n_prev) / n_prev if n_prev else None
    checks["row_count_change"] = _result(change, params.row_count_change)
    seen = set(previous["content_hash"].dropna())
    n_unseen = int((~new["content_hash"].isin(seen)).sum())
    checks["new_item_share"] = _result(
        n_unseen / n_new if n_new else None, params.new_item_share, n_new_items=n_unseen
    )
    return checks


def not_applicable(params: DriftParams, task: TaskColumns) -> dict[str, Any]:
    """The checks `task`'s type has no data for, each said so in the report."""
    lacks = {
        "label_psi": None if task.has_labels else "labels",
        "image_mean_ks": None if task.has_images else "images",
        "text_length_ks": None if task.has_text else "text",
    }
    return {
        name: {
            "statistic": None,
            "threshold": getattr(params, name).threshold,
            "severity": getattr(params, name).severity,
            "drifted": False,
            "verdict": "not applicable",
            "note": f"the task type's rows have no {what}",
        }
        for name, what in lacks.items()
        if what is not None
    }


def drift_report(
    project: Path, new: pd.DataFrame, params: DriftParams, task: TaskColumns = IMAGES
) -> dict[str, Any]:
    """reports/drift.json: status "no previous version" | "ok" | "warn" | "fail", and checks."""
    previous, source = previous_profile(project)
    if previous is None:
        log.info("drift: %s; nothing to compare, passes", source)
        return {"status": "no previous version", "previous": source, "n_new": len(new)}
    checks = {**compare(previous, new, params, task), **not_applicable(params, task)}
    drifted = {k: c for k, c in checks.items() if c["drifted"]}
    severities = {c["severity"] for c in drifted.values()}
    status = "fail" if "fail" in severities else "warn" if drifted else "ok"
    for name, c in drifted.items():
        log.warning("drift %s: %s > %s (%s)", name, c["statistic"], c["threshold"], c["severity"])
    return {
        "status": status,
        "previous": source,
        "n_previous": len(previous),
        "n_new": len(new),
        "checks": checks,
    }


def drift_failures(report: dict[str, Any]) -> list[str]:
    """Messages of the drifted checks whose severity is fail."""
    return [
        f"drift {name}: {c['statistic']} > threshold {c['threshold']}"
        for name, c in (report.get("checks") or {}).items()
        if c["drifted"] and c["severity"] == "fail"
    ]
