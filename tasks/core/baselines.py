"""Simple baselines every evaluation reports beside the model, on the same train and test split.

A model is only worth promoting if it beats what a few lines of classical code get on the same
data, so each task type's evaluate stage writes `baselines` into reports/metrics.json: a mapping
of baseline name -> the same headline metrics as the model (plus `n_test` and a `description`),
and promote refuses a model that does not beat the best of them by `promote.
min_margin_over_baseline` (tasks/promote.py). This module holds the task-agnostic pieces:

* classification: `majority_class` (scikit-learn's DummyClassifier) and `logistic_regression`
  (scikit-learn, its C chosen on the val split) on any features; `tfidf_features` (scikit-learn's
  TfidfVectorizer) for texts, `downscale` (block means) for images;
* forecasting: `naive_forecast` (the last value), `seasonal_naive_forecast` (the value one season
  back) and `mase_scale` (the in-sample seasonal-naive MAE that MASE divides by);
* generation: `ngram_losses`, an interpolated Kneser-Ney n-gram language model over token ids.
  No maintained n-gram library is installed here (nltk, kenlm: neither is a dependency), so it is
  written below, vectorised with numpy;
* `best_baseline`, `HIGHER_IS_BETTER` and `baseline_lines` (the evaluate log, the run summary).

The fits log their progress (tasks/core/progress.py) when they run longer than QUIET_S:
`baselines.fit 2/3 fits` (the C grid, up to MAX_FIT_ROWS rows each) and `baselines.ngram`
(counting each order, scoring val per order, scoring test), so that an evaluation of 20,000 rows
is never silent for more than 10 s.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tasks.core.progress import QUIET_S, Progress

# Whether a higher value of a headline metric is better (promote's comparisons, floors and the
# baseline gate; which baseline is the best).
HIGHER_IS_BETTER = {
    "accuracy": True,
    "macro_f1": True,
    "mae": False,
    "rmse": False,
    "mape": False,
    "mase": False,
    "val_loss": False,
    "perplexity": False,
    "bits_per_byte": False,
}

# The C grid of the logistic regressions, each fitted on train and scored on val (accuracy); the
# most regularised of the best wins a tie. Scikit-learn's default C=1 is the middle one.
C_GRID = (0.1, 1.0, 10.0)
# At most this many train rows fit a logistic regression (a seeded sample beyond): lbfgs time grows
# with rows x features, and three fits (C_GRID) run per evaluation.
MAX_FIT_ROWS = 20_000
MAX_ORDER = 6  # the longest n-gram tried; the order is chosen on the val stream


# ------------------------------------------------------------------------------ classification
def majority_class(train_labels: np.ndarray, n_test: int) -> np.ndarray:
    """int64 (n_test,): the train split's most frequent class (the lowest index on a tie)."""
    from sklearn.dummy import DummyClassifier  # noqa: PLC0415 (sklearn: ~0.5 s to import)

    labels = np.asarray(train_labels, np.int64)
    dummy = DummyClassifier(strategy="most_frequent").fit(np.zeros((len(labels), 1)), labels)
    return dummy.predict(np.zeros((n_test, 1))).astype(np.int64)


@dataclass(frozen=True)
class Fitted:
    predicted: np.ndarray  # int64 (n_test,)
    c: float  # the C chosen on val
    n_fit: int  # train rows fitted


def _fit_rows(n: int) -> np.ndarray:
    if n <= MAX_FIT_ROWS:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, MAX_FIT_ROWS, replace=False))


def logistic_regression(  # noqa: PLR0917 (train, val and test features and labels)
    x_train: Any,
    y_train: np.ndarray,
    x_val: Any,
    y_val: np.ndarray,
    x_test: Any,
    *,
    grid: Sequence[float] = C_GRID,
) -> Fitted | None:
    """Scikit-learn's LogisticRegression fitted on train (dense or sparse features), C from
    `grid` by val accuracy (C=1 when val is empty); its test predictions. None when train holds
    fewer than two classes (nothing to discriminate)."""
    from sklearn.exceptions import ConvergenceWarning  # noqa: PLC0415
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415

    rows = _fit_rows(len(y_train))
    x_fit, y_fit = x_train[rows], np.asarray(y_train)[rows]
    if len(np.unique(y_fit)) < 2:
        return None

    from threadpoolctl import threadpool_limits  # noqa: PLC0415 (scikit-learn's dependency)

    def fit(c: float) -> Any:
        # one BLAS thread: two spin and thrash on busy cores (tasks/core/label_review.py measured
        # 20 s vs 4 s for this kind of fit at load ~13)
        with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
            # a C that wants more iterations is still a baseline
            warnings.simplefilter("ignore", ConvergenceWarning)
            return LogisticRegression(C=c, max_iter=500).fit(x_fit, y_fit)

    grid = grid if len(y_val) else (1.0,)
    with Progress("baselines.fit", len(grid), unit="fits", quiet_s=QUIET_S) as bar:
        bar.set_detail(f"{len(rows)} rows")
        fitted = {}
        for c in grid:
            fitted[c] = fit(c)
            bar.update()
    if len(y_val):
        scores = {c: float(np.mean(m.predict(x_val) == y_val)) for c, m in fitted.items()}
        best = max(scores.values())
        c = min(c for c, score in scores.items() if score == best)
    else:
        c = 1.0
    predicted = fitted[c].predict(x_test).astype(np.int64)
    return Fitted(predicted, c, len(rows))


def classification_baselines(  # noqa: PLR0917 (the three splits' labels and features)
    classes: Sequence[str],
    y_train: np.ndarray,
    y_val: np.ndarray,
    y_test: np.ndarray,
    features: tuple[Any, Any, Any] | None,
    classical: tuple[str, str],
) -> dict[str, dict[str, Any]]:
    """The baselines of a classifier: `majority_class` and a logistic regression on `features`
    (train, val, test; none without features), reported as `classical` = (name, what its
    features are); each with the model's headline metrics (accuracy, macro_f1; scikit-learn's)
    and n_test."""
    from tasks.core.classification import EvalResult  # noqa: PLC0415

    def scores(predicted: np.ndarray) -> dict[str, Any]:
        metrics = EvalResult(list(classes), np.asarray(y_test, np.int64), predicted).metrics()
        return {k: metrics[k] for k in ("accuracy", "macro_f1", "n_test")}

    majority = majority_class(y_train, len(y_test))
    baselines = {
        "majority_class": {
            **scores(majority),
            "description": f"always {classes[int(majority[0])]!r}, the train split's commonest"
            if len(majority)
            else "the train split's commonest class",
        }
    }
    fitted = (
        logistic_regression(features[0], y_train, features[1], y_val, features[2])
        if features
        else None
    )
    if fitted is not None:
        name, what = classical
        baselines[name] = {
            **scores(fitted.predicted),
            "description": f"logistic regression (C={fitted.c:g}, chosen on val) on {what}, "
            f"fitted on {fitted.n_fit} train rows",
        }
    return baselines


def tfidf_features(train: Sequence[str], *others: Sequence[str]) -> tuple[Any, ...] | None:
    """TF-IDF of word uni- and bigrams (sublinear tf), fitted on `train` only: (train, *others)
    as sparse matrices; None when the train texts hold no word of two characters or more."""
    from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: PLC0415

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    try:
        fitted = vectorizer.fit_transform(train)
    except ValueError:  # "empty vocabulary"
        return None
    return (fitted, *(vectorizer.transform(texts) for texts in others))


def downscale(pixels: np.ndarray, max_side: int = 16) -> np.ndarray:
    """float32 (N, h * w * channels) in 0..1: images (N, H, W) or (N, H, W, C) of uint8 shrunk
    by the smallest whole factor that brings each side to at most `max_side`, averaging blocks of
    pixels (the block edges at round(i * H / h)): 28x28 becomes 14x14, 64x48 16x16, 8x8 stays."""
    images = np.asarray(pixels, np.float32) / 255.0
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise ValueError(f"images must be (N, H, W) or (N, H, W, C), got {pixels.shape}")
    for axis in (1, 2):
        size = images.shape[axis]
        out = math.ceil(size / math.ceil(size / max_side))
        edges = np.round(np.arange(out) * size / out).astype(np.int64)
        sums = np.add.reduceat(images, edges, axis=axis)
        widths = np.diff(np.append(edges, size)).astype(np.float32)
        shape = [1, 1, 1, 1]
        shape[axis] = out
        images = sums / widths.reshape(shape)
    return images.reshape(len(images), -1)


# ---------------------------------------------------------------------------------- forecasting
def _steps(origins: np.ndarray, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(origins, np.int64)[:, None], np.arange(1, horizon + 1)[None, :]


def naive_forecast(values: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
    """(len(origins), horizon): every step from origin o is y[o], the last value known there."""
    origin, _ = _steps(origins, horizon)
    return np.repeat(np.asarray(values)[origin], horizon, axis=1)


def seasonal_naive_forecast(
    values: np.ndarray, origins: np.ndarray, horizon: int, season: int
) -> np.ndarray:
    """(len(origins), horizon): step k (1-based) from origin o is y[o + k - m * ceil(k / m)], the
    same season's last value known at the origin (m = `season`). ValueError when that reaches
    before the first value."""
    origin, k = _steps(origins, horizon)
    index = origin + k - season * np.ceil(k / season).astype(np.int64)
    if index.size and index.min() < 0:
        raise ValueError(f"a season of {season} steps reaches before the series' first step")
    return np.asarray(values)[index]


def mase_scale(train_values: np.ndarray, season: int) -> float | None:
    """The mean |y[t] - y[t - m]| over the train span (Hyndman & Koehler's MASE denominator,
    m = `season`, or 1 when the span is not longer than a season); None when it is 0 or the span
    has one value."""
    values = np.asarray(train_values, np.float64)
    m = season if len(values) > season else 1
    if len(values) <= m:
        return None
    scale = float(np.mean(np.abs(values[m:] - values[:-m])))
    return scale if scale > 0 else None


# ----------------------------------------------------------------------------------- generation
def _codes(stream: np.ndarray, order: int, base: int) -> np.ndarray:
    """int64 code of each n-gram of `order` ids of the stream (position i: ids i .. i+order-1)."""
    n = len(stream) - order + 1
    codes = np.zeros(max(n, 0), np.int64)
    for j in range(order):
        codes = codes * base + stream[j : j + n]
    return codes


def _lookup(keys: np.ndarray, table_keys: np.ndarray, table_values: np.ndarray) -> np.ndarray:
    """table_values at each of `keys` in the sorted `table_keys`, 0 where a key is absent."""
    if not len(table_keys):
        return np.zeros(len(keys), table_values.dtype)
    at = np.minimum(np.searchsorted(table_keys, keys), len(table_keys) - 1)
    return np.where(table_keys[at] == keys, table_values[at], 0)


def _discount(counts: np.ndarray) -> float:
    """Ney's absolute discount n1 / (n1 + 2 n2) from the count-of-counts; 0.75 without them."""
    n1, n2 = int(np.sum(counts == 1)), int(np.sum(counts == 2))
    return n1 / (n1 + 2 * n2) if n1 and n2 else 0.75


@dataclass(frozen=True)
class _Level:
    """One order k: the count of each k-gram (sorted codes), and per context of k-1 ids the
    total of its counts and how many distinct ids followed it; the discount of the order."""

    grams: np.ndarray
    counts: np.ndarray
    contexts: np.ndarray
    totals: np.ndarray
    followers: np.ndarray
    discount: float


def _level(grams: np.ndarray, counts: np.ndarray, base: int) -> _Level:
    contexts, first, followers = np.unique(grams // base, return_index=True, return_counts=True)
    totals = np.add.reduceat(counts, first) if len(first) else counts[:0]
    return _Level(grams, counts, contexts, totals, followers, _discount(counts))


@dataclass(frozen=True)
class _Tables:
    """Per order k (index k - 1): `raw` counts, for k as the model's highest order, and
    `continuation` counts (how many distinct ids came before the k-gram), for k below it."""

    raw: list[_Level]
    continuation: list[_Level]


def _tables(train: np.ndarray, max_order: int, base: int, bar: Progress | None = None) -> _Tables:
    raw, continuation = [], []
    for k in range(1, max_order + 1):
        raw.append(_level(*np.unique(_codes(train, k, base), return_counts=True), base))
        longer = np.unique(_codes(train, k + 1, base))  # distinct (k+1)-grams, by their k last
        continuation.append(_level(*np.unique(longer % base**k, return_counts=True), base))
        if bar is not None:
            bar.update()
    return _Tables(raw, continuation)


def _log_probs(tables: _Tables, stream: np.ndarray, order: int, vocab: int) -> np.ndarray:
    """Natural-log probability of each id of stream[1:] given the ids before it, under the
    interpolated Kneser-Ney model of `order` (raw counts at that order, continuation counts
    below; the unigram mixed with uniform over the `vocab` ids so that no id has probability
    0). Near the stream's start, a target with fewer ids before it uses the orders it can."""
    base, targets = vocab, stream[1:]

    def level(k: int) -> _Level:
        return (tables.raw if k == order else tables.continuation)[k - 1]

    unigram = level(1)
    total, d = float(unigram.counts.sum()), unigram.discount
    seen = _lookup(targets, unigram.grams, unigram.counts).astype(np.float64)
    prob = (np.maximum(seen - d, 0) + d * len(unigram.grams) / vocab) / total
    for k in range(2, order + 1):
        table = level(k)
        codes = _codes(stream, k, base)  # codes[i] ends at stream[i + k - 1] = targets[i + k - 2]
        at = slice(k - 2, None)
        count = _lookup(codes, table.grams, table.counts).astype(np.float64)
        context = codes // base
        c_total = _lookup(context, table.contexts, table.totals).astype(np.float64)
        c_followers = _lookup(context, table.contexts, table.followers).astype(np.float64)
        known = c_total > 0
        lower = prob[at]
        mixed = np.maximum(count - table.discount, 0) + table.discount * c_followers * lower
        prob[at] = np.where(known, mixed / np.where(known, c_total, 1.0), lower)
    return np.log(prob)


@dataclass(frozen=True)
class NgramResult:
    order: int  # chosen on val
    val_loss: dict[int, float]  # nats per id of the val stream, per order tried
    test_nats: float  # summed over the ids of the test stream after its first
    n_test: int
    unigram_test_nats: float  # order 1 on the test stream


def ngram_losses(
    train: np.ndarray, val: np.ndarray, test: np.ndarray, vocab: int, max_order: int = MAX_ORDER
) -> NgramResult:
    """Interpolated Kneser-Ney n-gram models of orders 1..max_order fitted on the `train` id
    stream; the order with the lowest loss on `val` (per id after its first) is scored on `test`.
    Every id after the first of each stream is predicted from the ids before it, as the language
    model of text generation predicts them. Ids lie in 0..vocab-1."""
    train, val, test = (np.asarray(s, np.int64) for s in (train, val, test))
    # n-gram codes are base-`vocab` numbers: keep vocab**max_order inside int64
    max_order = max(1, min(max_order, int(62 / math.log2(max(vocab, 2)))))
    max_order = min(max_order, max(1, len(train) - 1))
    orders = range(1, max_order + 1)
    # steps: count each order; score val with each order (when val has ids to predict); test
    steps = max_order + (max_order if len(val) > 1 else 0) + 1
    with Progress("baselines.ngram", steps, unit="steps", quiet_s=QUIET_S) as bar:
        bar.set_detail(f"{len(train)} train ids")
        tables = _tables(train, max_order, vocab, bar)
        val_loss = {}
        for k in orders if len(val) > 1 else ():
            val_loss[k] = float(-_log_probs(tables, val, k, vocab).mean())
            bar.update()
        # no val ids to choose on: a trigram, the usual choice for a few thousand ids or more
        order = min(val_loss, key=lambda k: (val_loss[k], k)) if val_loss else min(3, max_order)
        test_nats = float(-_log_probs(tables, test, order, vocab).sum())
        unigram_nats = float(-_log_probs(tables, test, 1, vocab).sum())
        bar.update()
    return NgramResult(
        order, {k: round(v, 6) for k, v in val_loss.items()}, test_nats, len(test) - 1, unigram_nats
    )


# ---------------------------------------------------------------------------------- reporting
def best_baseline(
    baselines: Mapping[str, Mapping[str, Any]], metric: str
) -> tuple[str, float] | None:
    """(name, value) of the baseline best on `metric` (HIGHER_IS_BETTER), among those that
    report it as a finite number; None when none does. The first listed wins a tie."""
    scored = [
        (name, float(b[metric]))
        for name, b in baselines.items()
        if isinstance(b.get(metric), int | float) and math.isfinite(b[metric])
    ]
    if not scored:
        return None
    sign = 1 if HIGHER_IS_BETTER[metric] else -1
    return max(scored, key=lambda item: sign * item[1])


def baseline_lines(
    model: Mapping[str, Any], baselines: Mapping[str, Mapping[str, Any]], metrics: Sequence[str]
) -> list[str]:
    """'baseline name: metric value, ...' per baseline, then per metric how the model compares
    with the best baseline; the evaluate stages log them."""
    lines = [
        f"baseline {name}: "
        + ", ".join(f"{m} {b[m]:.4f}" for m in metrics if isinstance(b.get(m), int | float))
        + (f" ({b['description']})" if b.get("description") else "")
        for name, b in baselines.items()
    ]
    for m in metrics:
        best = best_baseline(baselines, m)
        if best is None or not isinstance(model.get(m), int | float):
            continue
        higher = HIGHER_IS_BETTER[m]
        wins = model[m] > best[1] if higher else model[m] < best[1]
        lines.append(
            f"model {m} {model[m]:.4f} {'beats' if wins else 'does not beat'} the best "
            f"baseline {best[0]} ({best[1]:.4f})"
        )
    return lines
