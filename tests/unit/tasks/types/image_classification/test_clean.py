"""Clean stage: `python -m pytest tests/unit/tasks/types/image_classification/test_clean.py`.

Accounting (every row kept or rejected with a reason), idempotence, byte-identical reruns, stable
splits and imputation on a synthetic crawl of real digits (tests/raw_fixture.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.core.io import read_jsonl
from tasks.core.params import LabelParams, load_params
from tasks.core.splits import split_of
from tasks.types.image_classification.clean import CleanResult, clean_items
from tasks.types.image_classification.params import ImageCleanParams
from tests.project import REPO
from tests.raw_fixture import Dirt, build_raw, write_params

LABELS = load_params(REPO / "params.yaml").labels
# fit none: the 16x16 image of MIXED is rejected, as before images were fitted (test_clean_images)
EXACT = {"height": 8, "width": 8, "mode": "L", "fit": "none"}
PARAMS = ImageCleanParams(
    numeric_columns=["ink", "price"], impute="mean", split_salt="kiln", image=EXACT
)
CONTRACT_COLUMNS = ["key", "url", "label", "label_index", "split", "ink", "price", "first_seen"]
MIXED = Dirt(
    duplicates=5,
    conflicting=2,
    alias_labels=5,
    unknown_labels=2,
    missing_images=1,
    broken_images=1,
    wrong_size_images=1,
    bad_numbers=3,
    null_numbers=2,
)


def clean(
    root: Path,
    n_items: int = 120,
    dirt: Dirt = MIXED,
    params: ImageCleanParams = PARAMS,
    labels: LabelParams = LABELS,
) -> tuple[CleanResult, list[dict]]:
    rows = build_raw(root, n_items, dirt)
    result = clean_items(pd.DataFrame(rows), root / "data/raw/images", labels, params)
    return result, rows


def test_mixed_rows_are_all_accounted_for_with_reasons(tmp_path: Path) -> None:
    result, rows = clean(tmp_path)
    report, rejects = result.report, result.rejects
    assert report["n_in"] == len(rows) == 127  # 120 items + 5 duplicates + 2 conflicting copies
    assert report["n_in"] == report["n_out"] + report["n_rejected"]
    assert Counter(r["url"] for r in rows) == Counter(result.items["url"]) + Counter(
        r["url"] for r in rejects
    )
    assert all(r["reason"] for r in rejects)
    reasons = Counter(r["reason"].split(":")[0] for r in rejects)
    assert reasons == {
        "duplicate": 5,
        "conflicting labels": 4,  # both copies of each conflicting pair
        "unknown label 'n/a'": 2,
        "image unreadable": 2,  # the missing file and the broken one
        "image size 16x16 is not 8x8 (clean.image.fit none)": 1,
    }
    kept = set(result.items["url"])
    for dup in (r for r in rejects if r["reason"] == "duplicate"):
        assert dup["duplicate_of"] in kept and dup["duplicate_of"] < dup["url"]
    assert report["n_duplicates"] == 5
    assert report["n_out"] == 113
    assert report["n_relabelled"] == 5  # "THREE" -> "3" etc.
    assert report["imputed"] == {"ink": 5, "price": 5}  # 3 unparseable + 2 null
    assert sum(report["splits"].values()) == report["n_out"]


def test_output_follows_the_contract(tmp_path: Path) -> None:
    result, _ = clean(tmp_path)
    items = result.items
    assert list(items.columns) == CONTRACT_COLUMNS
    assert items["key"].is_monotonic_increasing and items["key"].is_unique
    assert set(items["label"]) <= set(LABELS.classes)
    assert (items["label_index"] == [LABELS.classes.index(x) for x in items["label"]]).all()
    assert not items[["ink", "price"]].isna().any().any()
    assert result.pixels.dtype == np.uint8 and result.pixels.shape == (len(items), 8, 8)
    # Row i of pixels is the image whose sha256 is key i.
    first = tmp_path / "data/raw/images" / f"{items['key'][0]}.png"
    assert hashlib.sha256(first.read_bytes()).hexdigest() == items["key"][0]


def test_clean_is_idempotent(tmp_path: Path) -> None:
    once, _ = clean(tmp_path)
    # The cleaned rows, given back with their images (hash-named, so images/<key>.png).
    again_in = once.items.assign(image_path="images/" + once.items["key"] + ".png")
    twice = clean_items(again_in, tmp_path / "data/raw/images", LABELS, PARAMS)
    pd.testing.assert_frame_equal(twice.items, once.items)
    assert np.array_equal(twice.pixels, once.pixels)
    assert twice.rejects == []
    assert twice.report["n_relabelled"] == 0
    assert twice.report["imputed"] == {"ink": 0, "price": 0}


def test_input_order_does_not_matter(tmp_path: Path) -> None:
    once, rows = clean(tmp_path)
    shuffled = pd.DataFrame(rows).sample(frac=1.0, random_state=1)
    again = clean_items(shuffled, tmp_path / "data/raw/images", LABELS, PARAMS)
    pd.testing.assert_frame_equal(again.items, once.items)
    assert again.rejects == once.rejects


def test_split_is_stable_when_items_are_added(tmp_path: Path) -> None:
    small, _ = clean(tmp_path / "small", n_items=100, dirt=Dirt())
    big, _ = clean(tmp_path / "big", n_items=200, dirt=Dirt())
    before = dict(zip(small.items["key"], small.items["split"], strict=True))
    after = dict(zip(big.items["key"], big.items["split"], strict=True))
    assert before.items() <= after.items()
    # The shares hold on many keys; the salt draws a different split.
    keys = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(20_000)]
    shares = Counter(split_of(k, PARAMS) for k in keys)
    assert shares["test"] / len(keys) == pytest.approx(0.15, abs=0.01)
    assert shares["val"] / len(keys) == pytest.approx(0.15, abs=0.01)
    salted = PARAMS.model_copy(update={"split_salt": "other"})
    assert [split_of(k, salted) for k in keys[:200]] != [split_of(k, PARAMS) for k in keys[:200]]


@pytest.mark.parametrize(("impute", "fill"), [("mean", 2.5), ("median", 2.0), ("zero", 0.0)])
def test_imputation(tmp_path: Path, impute: str, fill: float) -> None:
    rows = build_raw(tmp_path, 6, Dirt())
    for row, ink in zip(rows, ["1", " 2 ", "4.5e0", "lots", None, "inf"], strict=True):
        row["ink"] = ink
    params = ImageCleanParams(numeric_columns=["ink", "weight"], impute=impute)
    result = clean_items(pd.DataFrame(rows), tmp_path / "data/raw/images", LABELS, params)
    ink_by_url = result.items.sort_values("url")["ink"].tolist()
    assert ink_by_url == [1.0, 2.0, 4.5, fill, fill, fill]  # "inf" is no measurement either
    assert result.report["imputed"] == {"ink": 3, "weight": 6}
    # A column with no value at all is filled with 0.0, and the report says so.
    assert result.report["entirely_missing"] == ["weight"]
    assert (result.items["weight"] == 0.0).all()


def _validated_project(root: Path) -> None:
    """A project dir whose data/validated holds the raw rows (as the validate stage writes)."""
    write_params(root)
    rows = build_raw(root, 150, MIXED)
    target = root / "data/validated/items.parquet"
    target.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), target)


def _run_stage(cwd: Path) -> dict[str, bytes]:
    proc = subprocess.run(
        [sys.executable, "-m", "tasks.clean"],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    outputs = [
        "data/clean/items.parquet",
        "data/clean/pixels.npy",
        "data/quarantine/clean.jsonl",
        "reports/clean.json",
    ]
    return {name: (cwd / name).read_bytes() for name in outputs}


def test_stage_reruns_are_byte_identical(tmp_path: Path) -> None:
    _validated_project(tmp_path)
    first = _run_stage(tmp_path)
    second = _run_stage(tmp_path)
    assert first == second
    items = pd.read_parquet(tmp_path / "data/clean/items.parquet")
    pixels = np.load(tmp_path / "data/clean/pixels.npy", allow_pickle=False)
    assert list(items.columns) == CONTRACT_COLUMNS
    assert pixels.shape == (len(items), 8, 8) and pixels.dtype == np.uint8
    assert pq.read_schema(tmp_path / "data/clean/items.parquet").metadata is None
    report = json.loads(first["reports/clean.json"])
    rejects = read_jsonl(tmp_path / "data/quarantine/clean.jsonl")
    assert report["n_in"] == 157 == report["n_out"] + len(rejects)
