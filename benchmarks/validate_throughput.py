"""Validation of 1M rows, GX vs vectorised pandas: `python benchmarks/validate_throughput.py`.

A (Kiln): `RawItemsSuite.run` - the validate stage's real Great Expectations 1.x suite (the
image-classification defaults: 5 columns exist, 5 of type str, 4 not null, url unique, 4 value
sets, row count), result_format COMPLETE so every failing row index comes back, as the stage
needs them for the quarantine.
B (baseline): the same checks as vectorised pandas on the same frame, also returning the failing
row indexes of every row-level check.
Both run on one in-memory frame of `--rows` rows (object columns, as the stage builds them from
the crawl; 1% unknown labels, 0.5% null labels) with the derived columns already computed: image
decoding is the same work in both and is not what is compared. GX's import and context set-up
are paid once, before timing, as the stage pays them once per run. Runs alternate A, B, A, B ...
(`--pairs`, default 5) and the medians are reported.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.core.gx_suite import RawItemsSuite  # noqa: E402
from tasks.core.params import load_params  # noqa: E402

TARGET = 3.0  # the target: validation of 1M rows <= 3x the vectorised pandas checks' time
REPO = Path(__file__).resolve().parents[1]


def make_frame(n: int, classes: list[str], seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    labels = np.array(classes, dtype=object)[rng.integers(0, len(classes), n)]
    labels[rng.random(n) < 0.01] = "n/a"
    labels[rng.random(n) < 0.005] = None
    urls = np.array([f"http://127.0.0.1:8765/item/{i:07d}" for i in range(n)], dtype=object)
    hashes = np.array([f"{i:064x}" for i in range(n)], dtype=object)
    return pd.DataFrame(
        {
            "url": urls,
            "content_hash": hashes,
            "first_seen": np.full(n, "2026-01-01T00:00:00Z", dtype=object),
            "label": labels,
            "image_path": np.array([f"images/{h}.png" for h in hashes], dtype=object),
            "label_normalised": labels,
            "image_readable": np.full(n, True, dtype=object),
            "image_width": np.full(n, 8, dtype=object),
            "image_height": np.full(n, 8, dtype=object),
        }
    )


def pandas_checks(df: pd.DataFrame, params, labels) -> dict[str, np.ndarray | bool]:
    """The suite's checks, vectorised; row-level ones give the failing row positions."""
    out: dict[str, np.ndarray | bool] = {}
    for c in params.required_columns:
        out[f"exists({c})"] = c in df.columns
    for c in params.required_columns:
        col = df[c]
        notnull = col.notna().to_numpy()
        is_str = col.map(lambda v: isinstance(v, str)).to_numpy(dtype=bool)
        out[f"type({c})"] = np.flatnonzero(notnull & ~is_str)
    for c in params.non_null_columns:
        out[f"not_null({c})"] = np.flatnonzero(df[c].isna().to_numpy())
    url = df["url"]
    out["unique(url)"] = np.flatnonzero((url.duplicated(keep=False) & url.notna()).to_numpy())
    for column, allowed in (
        ("label_normalised", list(labels.classes)),
        ("image_readable", [True]),
        ("image_width", [params.image_width]),
        ("image_height", [params.image_height]),
    ):
        col = df[column]
        out[f"in_set({column})"] = np.flatnonzero((col.notna() & ~col.isin(allowed)).to_numpy())
    out["row_count"] = len(df) >= params.min_rows
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--pairs", type=int, default=5)
    args = parser.parse_args()
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    params = load_params(REPO / "params.yaml")
    labels, vparams = params.labels, params.validate_
    frame = make_frame(args.rows, list(labels.classes))
    suite = RawItemsSuite(labels, vparams)  # context set-up: once, outside the timing

    gx_times, pd_times = [], []
    for pair in range(args.pairs):
        start = time.perf_counter()
        checks = suite.run(frame, f"bench_{pair}")
        gx_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        baseline = pandas_checks(frame, vparams, labels)
        pd_times.append(time.perf_counter() - start)
        # Same answers: the failing rows of every row-level check agree.
        gx_rows = {c.name: sorted(c.rows or []) for c in checks if c.rows}
        bad = sorted(set(baseline["not_null(label)"]) | set(baseline["in_set(label_normalised)"]))
        assert sorted({i for r in gx_rows.values() for i in r}) == bad, "GX and pandas disagree"
        print(f"pair {pair + 1}: GX {gx_times[-1]:.2f} s, pandas {pd_times[-1]:.2f} s", flush=True)

    gx, base = statistics.median(gx_times), statistics.median(pd_times)
    ratio = gx / base
    print()
    print(f"| figure ({args.rows:,} rows, median of {args.pairs} A,B pairs) | value |")
    print("|---|---|")
    print(f"| GX suite (A) | {gx:.2f} s ({args.rows / gx:,.0f} rows/s) |")
    print(f"| vectorised pandas checks (B) | {base:.2f} s ({args.rows / base:,.0f} rows/s) |")
    print(f"| A / B | {ratio:.2f}x |")
    print()
    verdict = "holds" if ratio <= TARGET else "MISSED"
    print(f"validation time / pandas time: {ratio:.2f}x (target <= {TARGET:.0f}x): {verdict}")


if __name__ == "__main__":
    main()
