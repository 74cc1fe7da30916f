"""Label fixing for `python -m tasks.clean`: manual overrides and likely wrong labels.

* Overrides: `labels.overrides` (default `labels/overrides.csv`, git-versioned next to
  params.yaml and a DVC dependency of validate and clean), columns `key,label`: the item whose
  image has that sha256 gets that label (a class or an alias) in validate and clean, whatever the
  crawl said. `kiln label export` writes the items that need a human look in the same format.
* Review (confident learning, the `cleanlab` library): out-of-fold class probabilities from a
  logistic regression on the pixels (scikit-learn's `cross_val_predict`, stratified folds, fixed
  seed) go to `cleanlab.filter.find_label_issues` with `filter_by="confident_learning"`: a row is
  a likely label error when the model's top class is not its given label and the probability of
  some other class reaches that class's threshold (its mean self-confidence: the mean probability
  the model gives the class on rows labelled with it); `clean.label_review.filter_by` picks
  another of cleanlab's rules. Flagged rows go to `reports/label_issues.csv` (`suggested` is the
  model's top class); `clean.label_review.action` reports, drops or relabels them (to that class).
  Drop and relabel repeat the review on the result until nothing is flagged, so cleaning the
  output again changes nothing.
"""

from __future__ import annotations

import csv
import logging
import warnings
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from tasks.core.labels import normalise_label
from tasks.core.params import LabelParams, LabelReviewParams
from tasks.core.progress import track

_LOG = logging.getLogger("kiln.clean")
ISSUE_COLUMNS = ["key", "url", "label", "suggested", "p_label", "threshold", "reason"]


class OverridesError(ValueError):
    """The overrides file is malformed or names a label that is not a class."""


def key_of_image_path(image_path: object) -> str | None:
    """The item key (sha256 of the image bytes) from the crawl's `images/<sha256>.<ext>`."""
    if not isinstance(image_path, str):
        return None
    stem = PurePosixPath(image_path).stem
    return stem if len(stem) == 64 and all(c in "0123456789abcdef" for c in stem) else None


def read_overrides(path: Path, labels: LabelParams) -> dict[str, str]:
    """{key: canonical class} from the overrides CSV; a missing file means no overrides."""
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None:
            return {}  # an empty file
        if not {"key", "label"} <= set(reader.fieldnames):
            raise OverridesError(f"{path}: columns must be key,label; got {reader.fieldnames}")
        out = {}
        for line, row in enumerate(reader, start=2):
            label = normalise_label(row["label"] or None, labels)
            if label is None:
                raise OverridesError(f"{path}:{line}: label {row['label']!r} is not a class")
            out[row["key"].strip()] = label
    return out


# `clean.label_review.filter_by` (default "confident_learning") flags the off-diagonal rows of
# cleanlab's confident joint: the per-class-threshold rule above, with the thresholds
# `cleanlab.count.get_confident_thresholds` reports (the `threshold` column).
# Measured with scikit-learn's digits (pixels 0..255 as the demo site serves them), labels flipped
# to a random other digit (numpy default_rng(0)), 5 folds, against the hand-written rule this
# module had before (top class != label and p(label) < 0.2 x threshold):
#   1797 rows, 10 flipped: before 9 of 10 found + 25 correct rows flagged; now 7 of 10 + 1.
#   300 rows, 6 flipped: before 6 of 6 + 1; now 4 of 6 + 0.
#   The 300-row test fixture through clean (6 labels set to (true + 1) % 10): report before
#   6 of 6 + 3, now 3 of 6 + 0; drop/relabel (repeated rounds) before 6 of 6 + 4, now 5 of 6 + 1.
#   Time at 1797 rows: 2.3-4.5 s either way on a busy 2-core machine, all in cross_val_predict;
#   cleanlab's filter and thresholds take 4-10 ms, importing cleanlab 0.06 s after sklearn.
# Confident learning flags only rows the model confidently puts in another class: the flips it
# missed had p(top class) 0.50-0.79, under that class's threshold (0.74-0.91). In relabel mode
# that trade is the right one (the old rule would have relabelled 25 correct rows to fix 9);
# "prune_by_noise_rate" flagged the same rows here, "predicted_neq_given" is the high-recall rule.


def out_of_fold_proba(x: np.ndarray, y: np.ndarray, seen: np.ndarray, folds: int) -> np.ndarray:
    """(len(x), len(seen)) probabilities of each row from a logistic regression that did not see
    it: scikit-learn's cross_val_predict(method="predict_proba") on stratified folds, written as
    its loop so the progress lines count the folds (one fit each, the whole cost).

    One BLAS thread: OpenBLAS's worker threads spin while they wait, and on 2 cores shared with
    other processes they thrash. Measured on the 5,000 32x32 RGB images of crawlers.scale_sites
    (192 features after the 8x8 downscale), load average ~13: this stage's label review took
    199 s with OpenBLAS's default 2 threads and 21 s with 1; on 420 random rows x 768 features,
    20 s vs 4 s. A problem this small gains nothing from a second thread on an idle machine."""
    from sklearn.base import clone  # noqa: PLC0415
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415
    from sklearn.model_selection import StratifiedKFold  # noqa: PLC0415
    from threadpoolctl import threadpool_limits  # noqa: PLC0415 (scikit-learn's own dependency)

    model = LogisticRegression(max_iter=2000)  # lbfgs: deterministic for the same input
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
    proba = np.zeros((len(x), len(seen)))
    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
        warnings.simplefilter("ignore", category=UserWarning)  # a class thinner than the folds
        splits = list(cv.split(x, y))
        for train, test in track(splits, "clean.label_review", unit="folds", logger=_LOG):
            fitted = clone(model).fit(x[train], y[train])
            # a fold's model knows the classes of its train rows: their columns of `seen`
            proba[np.ix_(test, np.searchsorted(seen, fitted.classes_))] = fitted.predict_proba(
                x[test]
            )
    return proba


def find_label_issues(
    pixels: np.ndarray, label_index: np.ndarray, classes: list[str], params: LabelReviewParams
) -> tuple[pd.DataFrame, str | None]:
    """(row, suggested index, p_label, threshold) of likely errors, or why none were looked for."""
    from cleanlab.count import get_confident_thresholds  # noqa: PLC0415 (imports sklearn: 2 s)
    from cleanlab.filter import find_label_issues as cleanlab_issues  # noqa: PLC0415

    empty = pd.DataFrame(columns=["row", "suggested", "p_label", "threshold"])
    if not params.enabled:
        return empty, "label review disabled"
    counts = np.bincount(label_index, minlength=len(classes))
    present = counts[counts > 0]
    folds = min(params.folds, int(present.min()) if len(present) else 0)
    if len(label_index) < params.min_rows or len(present) < 2 or folds < 2:
        return empty, f"too few rows for label review ({len(label_index)}, {folds} folds)"
    x = pixels.reshape(len(pixels), -1).astype(np.float64) / 255.0
    seen = np.unique(label_index)  # proba's columns are the classes present, in order
    proba = out_of_fold_proba(x, label_index, seen, folds)
    col = np.searchsorted(seen, label_index)  # cleanlab wants labels 0..K-1 of proba's columns
    flagged = cleanlab_issues(col, proba, filter_by=params.filter_by, n_jobs=1)
    p_label = proba[np.arange(len(x)), col]
    threshold = get_confident_thresholds(col, proba)[col]
    rows = np.flatnonzero(flagged)
    issues = pd.DataFrame(
        {
            "row": rows,
            "suggested": seen[proba[rows].argmax(axis=1)],  # never the given label (cleanlab)
            "p_label": p_label[rows].round(4),
            "threshold": threshold[rows].round(4),
        }
    )
    return issues, None


def issue_records(
    issues: pd.DataFrame, survivors: list[dict[str, Any]], classes: list[str]
) -> list[dict[str, Any]]:
    """Rows of reports/label_issues.csv, sorted by key."""
    out = []
    for r in issues.itertuples(index=False):
        item = survivors[int(r.row)]
        out.append(
            {
                "key": item["key"],
                "url": item["url"],
                "label": item["label"],
                "suggested": classes[int(r.suggested)],
                "p_label": float(r.p_label),
                "threshold": float(r.threshold),
                "reason": "suspected label error",
            }
        )
    return sorted(out, key=lambda row: row["key"])


MAX_REVIEW_ROUNDS = 10  # drop/relabel converge in 2-3 rounds on the digits demo (tests/unit)


def review_labels(
    survivors: list[dict], labels: LabelParams, review: LabelReviewParams, rejects: list[dict]
) -> tuple[list[dict], list[dict[str, Any]], dict[str, Any]]:
    """(survivors after `review.action`, rows of the review file, operation record).

    `drop` and `relabel` change the rows the model is fitted on, so the review repeats on the
    result until it flags nothing (a fixed point): cleaning the output again then changes
    nothing (clean(clean(x)) == clean(x)). `report` looks once and changes no row.
    """
    if not survivors:
        return survivors, [], {"op": "label_review", "skipped": "no rows", "rows": 0}
    all_issues: list[dict[str, Any]] = []
    op: dict[str, Any] = {"op": "label_review", "action": review.action}
    for round_no in range(1, MAX_REVIEW_ROUNDS + 1):
        index = np.array([labels.classes.index(s["label"]) for s in survivors], dtype=np.int64)
        found, skipped = find_label_issues(
            np.stack([s["pixels"] for s in survivors]), index, list(labels.classes), review
        )
        issues = issue_records(found, survivors, list(labels.classes))
        if round_no > 1:
            issues = [{**i, "reason": f"{i['reason']} (review round {round_no})"} for i in issues]
        all_issues += issues
        op["rounds"] = round_no
        if skipped:
            op["skipped"] = skipped
            break
        if not issues or review.action == "report":
            break
        survivors = _act(survivors, {i["key"]: i["suggested"] for i in issues}, review, rejects)
    else:
        op["not_converged"] = f"still flagging rows after {MAX_REVIEW_ROUNDS} rounds"
    all_issues.sort(key=lambda row: row["key"])
    return survivors, all_issues, {**op, "rows": len(all_issues)}


def _act(
    survivors: list[dict], flagged: dict[str, str], review: LabelReviewParams, rejects: list[dict]
) -> list[dict]:
    """Drop the flagged rows (into rejects) or give them the model's class."""
    if review.action == "drop":
        rejects.extend(
            {"url": s["url"], "reason": f"suspected label error (model: {flagged[s['key']]})"}
            for s in survivors
            if s["key"] in flagged
        )
        return [s for s in survivors if s["key"] not in flagged]
    return [{**s, "label": flagged.get(s["key"], s["label"])} for s in survivors]


def write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    """Write `rows` as CSV atomically (tasks.core.io), columns in the given order."""
    from tasks.core.io import write_text  # noqa: PLC0415

    frame = pd.DataFrame(rows, columns=columns)
    write_text(path, frame.to_csv(index=False, lineterminator="\n"))
