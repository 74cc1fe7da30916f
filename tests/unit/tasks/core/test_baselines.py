"""Baselines of every evaluation: `python -m pytest tests/unit/tasks/core/test_baselines.py`.

Majority class and logistic regression (scikit-learn) on known data, the downscaled pixels, the
naive forecasts and MASE by hand, and the Kneser-Ney n-gram model: a distribution over the whole
vocabulary whatever the context, that finds the structure of a stream.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from tasks.core import baselines as bl


def test_majority_class_accuracy_is_the_test_share_of_the_commonest_train_class() -> None:
    classes = ["cat", "dog", "eel"]
    y_train = np.array([0, 1, 1, 1, 2, 2])
    y_test = np.array([1, 1, 1, 0, 2, 2, 1, 0])  # "dog" is also the test's largest class: 4 of 8
    features = (np.zeros((6, 1)), np.zeros((0, 1)), np.zeros((8, 1)))
    got = bl.classification_baselines(
        classes, y_train, np.zeros(0, np.int64), y_test, features, ("logreg", "nothing")
    )
    majority = got["majority_class"]
    assert majority["accuracy"] == pytest.approx(np.bincount(y_test).max() / len(y_test)) == 0.5
    # macro-F1 over the classes that occur: dog's F1 is 2 * 0.5 * 1 / 1.5, the others 0
    assert majority["macro_f1"] == pytest.approx((2 / 3) / 3, abs=1e-6)
    assert majority["n_test"] == 8 and majority["description"].startswith("always 'dog'")
    # constant features cannot separate anything: the regression predicts one class too
    assert got["logreg"]["n_test"] == 8 and "C=1" in got["logreg"]["description"]


def test_majority_class_ties_go_to_the_lowest_class() -> None:
    assert bl.majority_class(np.array([2, 1, 2, 1]), 3).tolist() == [1, 1, 1]


def test_logistic_regression_separates_separable_classes_and_picks_c_on_val() -> None:
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [4.0, 4.0], [0.0, 4.0]])

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 3, n)
        return centres[y] + rng.normal(0, 0.5, (n, 2)), y

    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = draw(150), draw(50), draw(50)
    fitted = bl.logistic_regression(x_tr, y_tr, x_va, y_va, x_te)
    assert fitted is not None and fitted.c in bl.C_GRID and fitted.n_fit == 150
    assert np.mean(fitted.predicted == y_te) > 0.95
    one_class = bl.logistic_regression(x_tr, np.zeros(150, np.int64), x_va, y_va, x_te)
    assert one_class is None  # nothing to discriminate: no classical baseline


def test_tfidf_logistic_regression_reads_words() -> None:
    train = ["the cat sat", "a cat ran", "the dog barked", "a dog ran", "cat naps", "dog digs"]
    y = np.array([0, 0, 1, 1, 0, 1])
    features = bl.tfidf_features(train, ["my cat", "our dog"], ["cat sat", "dog barked"])
    assert features is not None and features[0].shape[0] == 6
    got = bl.classification_baselines(
        ["cat", "dog"], y, np.array([0, 1]), np.array([0, 1]), features, ("tfidf", "words")
    )
    assert got["tfidf"]["accuracy"] == 1.0
    assert bl.tfidf_features(["!", "?"], ["."]) is None  # no word at all: no classical baseline


def test_downscale_averages_blocks_and_keeps_small_images() -> None:
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)
    small = bl.downscale(grey, 16)
    assert small.shape == (3, 14 * 14) and small.dtype == np.float32
    by_hand = grey.reshape(3, 14, 2, 14, 2).mean(axis=(2, 4)) / 255
    np.testing.assert_allclose(small, by_hand.reshape(3, -1), atol=1e-6)
    digits = rng.integers(0, 256, (2, 8, 8), dtype=np.uint8)
    np.testing.assert_allclose(bl.downscale(digits, 16), digits.reshape(2, -1) / 255, atol=1e-6)
    rgb = rng.integers(0, 256, (2, 48, 64, 3), dtype=np.uint8)
    shrunk = bl.downscale(rgb, 16)
    assert shrunk.shape == (2, 16 * 16 * 3)
    assert shrunk.mean() == pytest.approx(rgb.mean() / 255, rel=1e-3)  # equal blocks: same mean


def test_naive_and_seasonal_naive_forecasts_and_the_mase_scale() -> None:
    values = np.array([1.0, 3.0, 2.0, 4.0, 3.0, 5.0, 4.0, 6.0])
    origins = np.array([3, 5])
    assert bl.naive_forecast(values, origins, 3).tolist() == [[4.0] * 3, [5.0] * 3]
    assert bl.seasonal_naive_forecast(values, origins, 3, 2).tolist() == [
        [2.0, 4.0, 2.0],
        [3.0, 5.0, 3.0],
    ]
    with pytest.raises(ValueError, match="before the series' first step"):
        bl.seasonal_naive_forecast(values, np.array([0]), 3, 2)
    # season 2: |2-1|, |4-3|, |3-2|, |5-4|, |4-3|, |6-5|: all 1
    assert bl.mase_scale(values, 2) == pytest.approx(1.0)
    assert bl.mase_scale(values[:3], 5) == pytest.approx(np.mean([2.0, 1.0]))  # short: m = 1
    assert bl.mase_scale(np.ones(10), 2) is None  # a flat train span: no scale


def _next_id_probabilities(tables: bl._Tables, context: list[int], order: int, vocab: int):
    return np.array(
        [np.exp(bl._log_probs(tables, np.array([*context, w]), order, vocab)[-1])
         for w in range(vocab)]
    )  # fmt: skip


def test_kneser_ney_is_a_distribution_over_every_id_in_any_context() -> None:
    rng = np.random.default_rng(0)
    vocab = 6
    train = rng.integers(0, vocab - 1, 400)  # id 5 never occurs in train
    tables = bl._tables(train, 4, vocab)
    for order in (1, 2, 3, 4):
        for context in ([0, 1, 2], [5, 5, 5], [3, 3, 3], [4]):
            probs = _next_id_probabilities(tables, context, order, vocab)
            assert probs.sum() == pytest.approx(1.0, abs=1e-9), (order, context)
            assert probs.min() > 0  # the unseen id too


def test_ngram_finds_the_structure_of_a_stream_and_chooses_its_order_on_val() -> None:
    rng = np.random.default_rng(1)
    # each id is (the id two back + 1) mod 7, with noise: a trigram sees it, a bigram cannot
    stream = [0, 3]
    for _ in range(3000):
        stream.append((stream[-2] + 1) % 7 if rng.random() < 0.9 else int(rng.integers(0, 7)))
    ids = np.array(stream)
    got = bl.ngram_losses(ids[:2000], ids[2000:2500], ids[2500:], vocab=7)
    assert got.order >= 3 and got.val_loss[3] < got.val_loss[2] - 0.5
    assert got.n_test == len(ids[2500:]) - 1
    assert got.test_nats / got.n_test < 0.7 < math.log(7) - 0.5 < got.unigram_test_nats / got.n_test


def test_best_baseline_follows_the_metric_direction() -> None:
    baselines = {
        "naive": {"mae": 0.8, "mape": 0.3},
        "seasonal_naive": {"mae": 1.7, "mape": math.nan},
        "majority_class": {"accuracy": 0.2},
    }
    assert bl.best_baseline(baselines, "mae") == ("naive", 0.8)
    assert bl.best_baseline(baselines, "mape") == ("naive", 0.3)  # NaN is never best
    assert bl.best_baseline(baselines, "accuracy") == ("majority_class", 0.2)
    assert bl.best_baseline(baselines, "perplexity") is None
    lines = bl.baseline_lines({"mae": 0.5}, baselines, ("mae",))
    assert lines[0] == "baseline naive: mae 0.8000"
    assert lines[-1] == "model mae 0.5000 beats the best baseline naive (0.8000)"


class _SteppingClock:
    """A fake clock that moves `step` seconds at each read: every fit or step looks slow."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def _progress_lines(caplog: pytest.LogCaptureFixture, what: str) -> list:
    from tasks.core.progress import parse  # noqa: PLC0415

    lines = [parse(r.getMessage()) for r in caplog.records]
    return [line for line in lines if line is not None and line.what == what]


@pytest.fixture
def slow(monkeypatch: pytest.MonkeyPatch) -> None:
    from tasks.core import progress  # noqa: PLC0415

    monkeypatch.setattr(progress, "CLOCK", _SteppingClock(6.0))
    monkeypatch.setattr(progress, "HEARTBEAT_S", 0)
    monkeypatch.setattr(progress, "_on_terminal", lambda: False)


def test_slow_fits_and_ngram_steps_log_their_progress(slow, caplog) -> None:
    caplog.set_level("INFO")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 3)), np.arange(60) % 2
    assert bl.logistic_regression(x, y, x[:10], y[:10], x[:5]) is not None
    fits = _progress_lines(caplog, "baselines.fit")
    assert fits and {(line.total, line.unit) for line in fits} == {(3, "fits")}
    assert fits[-1].finished and fits[-1].done == 3 and "60 rows" in fits[-1].detail

    stream = rng.integers(0, 5, 400)
    result = bl.ngram_losses(stream, stream[:100], stream[:50], vocab=5, max_order=3)
    steps = _progress_lines(caplog, "baselines.ngram")
    assert steps and {(line.total, line.unit) for line in steps} == {(3 + 3 + 1, "steps")}
    assert steps[-1].finished and steps[-1].done == 7
    assert len(result.val_loss) == 3


def test_quick_fits_log_nothing(caplog) -> None:
    caplog.set_level("INFO")
    x, y = np.eye(4)[np.arange(40) % 4], np.arange(40) % 4
    bl.logistic_regression(x, y, x, y, x)
    bl.ngram_losses(np.arange(50) % 5, np.arange(20) % 5, np.arange(20) % 5, vocab=5)
    assert [r.getMessage() for r in caplog.records if "progress " in r.getMessage()] == []
