"""A text and a series test site crawled and validated as a new user would:
`python -m pytest tests/integration/test_test_sites.py`.

Real Scrapy over loopback (`python -m tasks.crawl`, then `python -m tasks.validate`, in a
temporary project) with the params of `examples/sites/`, against `crawlers.text_sites`' `docs`
and `crawlers.series_sites`' `elnino` on free ports; the expected values come from the sites'
own data (the standard library's docstrings, statsmodels' series).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from crawlers.series_sites import build_series_site, running_series_site, series
from crawlers.text_sites import SITES, build_text_site, running_text_site
from tasks.core.io import read_jsonl
from tasks.core.labels import normalise_label
from tasks.core.params import LabelParams

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
N_TEXTS = 120  # a sample of the docs board: a partial crawl


def _run(root: Path, stage: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", f"tasks.{stage}"], cwd=root,
        env={**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1"},
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]


def _project(root: Path, site: str, url: str, crawl: dict | None = None, **sections) -> Path:
    params = yaml.safe_load((REPO / "examples/sites" / f"{site}.params.yaml").read_text())
    params["crawl"].update(start_urls=[url], **(crawl or {}))
    for name, keys in sections.items():
        params.setdefault(name, {}).update(keys)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return root


def test_docs_site_crawls_to_its_texts_and_labels_and_validates(tmp_path: Path) -> None:
    built = build_text_site("docs")
    truth = {it.tid: it for it in built.items}
    with running_text_site("docs") as (url, _):
        root = _project(tmp_path, "docs", url, {"max_items": N_TEXTS, "allow_partial": True},
                        validate={"min_rows": 50})  # fmt: skip
        _run(root, "crawl")
    items = read_jsonl(root / "data/raw/items.jsonl")
    assert len(items) == N_TEXTS
    for row in items:
        item = truth[row["url"].rsplit("/", 1)[1].removesuffix("-dup")]
        assert row["label"] == item.label  # as printed on the list page, spaces included
        assert row["text"] == " ".join(item.text.split())  # the messy page, as plain text

    _run(root, "validate")
    valid = pd.read_parquet(root / "data/validated/items.parquet")
    quarantined = read_jsonl(root / "data/quarantine/validate.jsonl")
    labels = LabelParams(classes=SITES["docs"].classes)
    bad = [r for r in items if normalise_label(r["label"], labels) is None]
    assert len(valid) + len(quarantined) == N_TEXTS
    assert sorted(r["url"] for r in quarantined) == sorted(r["url"] for r in bad)


def test_elnino_table_crawls_to_its_months_and_validates(tmp_path: Path) -> None:
    built = build_series_site("elnino")
    with running_series_site("elnino") as (url, _):
        root = _project(tmp_path, "elnino", url)
        _run(root, "crawl")
    items = read_jsonl(root / "data/raw/items.jsonl")
    rejects = read_jsonl(root / "data/raw/rejects.jsonl")
    assert len(rejects) == len(built.missing) == 9  # the empty cells
    assert {r["reason"] for r in rejects} == {"missing required field(s): sst"}
    assert len(items) == len(built.rows) - len(built.missing)  # repeated rows included
    truth = dict(series("elnino"))
    for row in items:
        assert abs(row["sst"] - truth[row["month"][:7]]) <= 0.05
    report = json.loads((root / "reports/crawl.json").read_text(encoding="utf-8"))
    assert report["partial"] is False

    _run(root, "validate")
    valid = pd.read_parquet(root / "data/validated/items.parquet")
    assert len(valid) == len(items)
