"""Drift between data versions, run inside `python -m tasks.validate` (DVC stage `validate`).

The validate stage writes, beside `data/validated/items.parquet`, `profile.parquet`: per valid row
its url, content_hash and what its task type has of: normalised label (classification), mean
image intensity (images), text length in characters after clean's normalisation (`text_chars`,
text tasks) and parsed numeric columns (`<column>_number`, with the series' value column for
forecasting). The previous version is the `data/validated` that DVC recorded in `dvc.lock` for the
last successful `validate` (a failed run never updates dvc.lock), read from the DVC cache by the
md5 the lock names, so no second copy of the data is kept. DVC's Python API reads it
(`previous_profile`: the stage loaded from dvc.yaml with its lock entry, the output's cache), with
no repository lock taken, since the lock is held while this stage runs. No lock entry, or a cache
without that version, is "no previous version": the run says so and passes.

Checks (thresholds and warn|fail in `validate.drift`): label shares (PSI, classification), the
two-sample Kolmogorov-Smirnov statistic D of the mean image intensity (images), of the text length
(text) and of each numeric column (every task; forecasting's value column among them), row count
change, and share of rows whose content_hash the previous version did not have. A check the task
type has no data for is in the report as "not applicable". `plot_drift` draws the checks for a
person (reports/validation/drift.png: each statistic beside its threshold).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp

from tasks.core.io import atomic_path
from tasks.core.params import DriftCheck, DriftParams
from tasks.core.validate_derive import IMAGES, TaskColumns, number_column

log = logging.getLogger("kiln.validate")

PROFILE = "profile.parquet"
# Drawn into reports/validation/ (an output of validate, hence on its task run in the Prefect UI)
DRIFT_PNG = "drift.png"
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


def previous_profile(project: Path) -> tuple[pd.DataFrame | None, str]:
    """(profile of the DVC-recorded data/validated, where it came from) or (None, why not).

    DVC's own reading of the project: the `validate` stage as dvc.yaml declares it, filled from
    its dvc.lock entry (`load_one`), then that output's hash looked up in the cache DVC would use
    for it (`Output.cache`: cache.dir from any DVC config level; DVC 2 hashes in the old layout).
    Only dvc.yaml (with params.yaml, its template variables) and dvc.lock are read, not the whole
    pipeline. The workspace's data/validated is never looked at: the running stage may be
    rewriting it, and it is dvc.lock that says what the last successful validate produced.

    No repository lock is taken, so this runs inside a stage while DVC's lock is held (Kiln's
    runner, flows/dvc_stages.py, holds it in another process for the whole stage): DVC takes the
    lock in its commands (repro, commit, status...), not in opening a Repo or loading a stage.
    The Repo is opened without git (`no_scm`): nothing here needs git, and without it opening the
    Repo neither reads the git repository nor adds DVC's entries to .gitignore.
    """
    if not (project / "dvc.lock").is_file():
        return None, "no previous version (no dvc.lock)"
    # A heavy import, paid only when there is a previous version to read.
    from dvc.repo import Repo  # noqa: PLC0415
    from dvc.scm import SCM  # noqa: PLC0415

    root = str(project.resolve())
    with Repo(root, scm=SCM(root, no_scm=True)) as repo:
        stage = repo.stage.load_one(str(Path(root) / "dvc.yaml"), "validate")
        out = next((o for o in stage.outs if o.def_path == VALIDATED), None)
        if out is None or not out.hash_info:
            return None, "no previous version (dvc.lock records no data/validated)"
        md5 = out.hash_info.value
        if not out.hash_info.isdir:  # dvc.yaml's data/validated is a directory; a file has none
            return None, f"no previous version (data/validated {md5} has no {PROFILE})"
        cache = out.cache
        manifest = out.get_obj()  # the .dir manifest from the cache, None if the cache lacks it
        entry = None if manifest is None else manifest.get((PROFILE,))
        if manifest is not None and entry is None:
            return None, f"no previous version (data/validated {md5} has no {PROFILE})"
        oid = None if entry is None else entry[1].value
        if oid is None or not cache.exists(oid):
            log.warning(
                "dvc.lock records data/validated %s but the DVC cache at %s lacks it",
                md5,
                cache.path,
            )
            return None, f"no previous version (data/validated {md5} not in the local DVC cache)"
        previous = pd.read_parquet(cache.oid_to_path(oid))
    return previous, f"data/validated {md5} (dvc.lock)"


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
    drop = max(0.0, (n_prev - n_new) / n_prev) if n_prev else None
    checks["row_drop"] = _result(drop, params.row_drop)
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
    # Not logged here: the validate stage says each drifted check once, a warn one as a warning
    # and a fail one in its "validation failed" line (tasks/validate.py).
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


# What each check's statistic measures, for the chart's labels (a numeric column's KS check is
# named `numeric_ks:<column>`).
_CHECK_LABELS = {
    "label_psi": "label shares (PSI)",
    "image_mean_ks": "mean image intensity (KS D)",
    "text_length_ks": "text length (KS D)",
    "row_count_change": "row count change (share)",
    "row_drop": "rows dropped (share)",
    "new_item_share": "new items (share of rows)",
}


def _check_label(name: str) -> str:
    if name.startswith("numeric_ks:"):
        return f"{name.removeprefix('numeric_ks:')} (KS D)"
    return _CHECK_LABELS.get(name, name)


def plot_drift(report: dict[str, Any], target: Path) -> bool:
    """The drift checks of `report` (drift_report's) as a PNG of horizontal bars: each check's
    statistic beside its threshold, drifted ones in red. False, and nothing written, when no check
    has a statistic (no previous version to compare with)."""
    checks = {n: c for n, c in (report.get("checks") or {}).items() if c["statistic"] is not None}
    if not checks:
        return False
    import matplotlib  # noqa: PLC0415 (a plotting library: only the validate stage pays the import)

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt  # noqa: PLC0415

    names = list(checks)[::-1]  # the first check on top
    stats = [checks[n]["statistic"] for n in names]
    thresholds = [checks[n]["threshold"] for n in names]
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(names) + 1.6), dpi=100)
    ax.barh(
        [_check_label(n) for n in names],
        stats,
        color=["tab:red" if checks[n]["drifted"] else "tab:blue" for n in names],
    )
    # each check's threshold: a black tick across its bar
    ax.scatter(thresholds, range(len(names)), marker="|", s=400, color="black", zorder=3)
    for i, name in enumerate(names):
        c = checks[name]
        ax.text(
            max(c["statistic"], c["threshold"]),
            i,
            f"  {c['statistic']:.3g} vs threshold {c['threshold']:g}: "
            + (f"drifted ({c['severity']})" if c["drifted"] else "ok"),
            va="center",
        )
    ax.set_xlim(0, max(stats + thresholds) * 1.8 or 1)  # room for the labels
    ax.set(
        xlabel="statistic (PSI, KS D or share: unitless; drifted above its threshold, the tick)",
        title=f"drift: {report['status']}, {report.get('n_new')} rows vs "
        f"{report.get('n_previous')} in the last recorded version",
    )
    fig.tight_layout()
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return True
