"""Drift on a deliberately shifted second crawl, through a real `dvc repro` in a temporary repo.

`python -m pytest tests/integration/test_drift.py`.

* Images: a first crawl (synthetic, real digits) goes through validate, clean and train; a second
  crawl of darker images then fails `validate` on the `image_mean_ks` drift check (severity fail):
  train does not run, the model, data/validated and dvc.lock stay as they were. With that check
  set to `warn` the same crawl passes, reported as a warning, and DVC records it as the new
  previous version.
* Text and series: real Scrapy crawls of the demo site's joke board and CO2 table
  (`python -m tasks.crawl`, recorded with `dvc commit crawl` as `kiln run` does), validated by
  `dvc repro validate`; the second crawl reads the board's 40-character teasers instead of the
  jokes (`text_length_ks`, warn: passes and becomes the previous version), or a later stretch of
  the CO2 record (`numeric_ks` on the value column, set to fail: the stage fails, nothing moves).
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from crawlers.demo_site import running_demo_site
from tasks.core.io import read_jsonl
from tasks.core.params import DemoSiteParams, complete, parse_params
from tests.project import dvc, make_project, run, write_params
from tests.raw_fixture import build_raw

pytestmark = pytest.mark.integration
TINY = {
    "validate": {"min_rows": 60, "max_quarantine_share": 0.1},
    "train": {"epochs": 2, "patience": 1, "channels": 4, "batch_size": 32},
    "evaluate": {"min_accuracy": 0.0},
}


def _crawl(project: Path, **shift: int) -> None:
    """Stand in for the crawl stage: write data/raw and record it as `kiln run` does."""
    shutil.rmtree(project / "data/raw", ignore_errors=True)
    rows = build_raw(project, 150, **shift)
    (project / "reports").mkdir(exist_ok=True)
    (project / "reports/crawl.json").write_text(json.dumps({"items": len(rows)}))
    dvc("commit", "--force", "crawl", cwd=project)


def _locked(project: Path, stage: str) -> list:
    return yaml.safe_load((project / "dvc.lock").read_text())["stages"][stage]["outs"]


def test_shifted_crawl_stops_or_warns_as_params_say(tmp_path: Path) -> None:
    project = make_project(tmp_path, TINY)
    _crawl(project)
    first = dvc("repro", "train", cwd=project)
    assert "Running stage 'train'" in first.stdout
    drift = json.loads((project / "reports/drift.json").read_text())
    assert drift["status"] == "no previous version"
    card = (project / "models/card.json").read_bytes()
    validated = (project / "data/validated/items.parquet").read_bytes()
    locked = _locked(project, "validate")

    _crawl(project, darken=3)  # the same digits, much darker: mean intensity drifts
    failed = dvc("repro", "train", cwd=project, check=False)
    assert failed.returncode != 0
    assert "drift image_mean_ks" in failed.stderr + failed.stdout
    assert "Running stage 'train'" not in failed.stdout
    drift = json.loads((project / "reports/drift.json").read_text())
    assert drift["status"] == "fail" and drift["checks"]["image_mean_ks"]["drifted"]
    assert drift["checks"]["new_item_share"]["statistic"] == 1.0
    assert (project / "models/card.json").read_bytes() == card  # the previous model stays
    assert (project / "data/validated/items.parquet").read_bytes() == validated
    assert _locked(project, "validate") == locked

    write_params(project, {"validate": {"drift": {"image_mean_ks": {"severity": "warn"}}}})
    warned = dvc("repro", "validate", cwd=project)
    assert "drift image_mean_ks" in warned.stderr + warned.stdout
    drift = json.loads((project / "reports/drift.json").read_text())
    assert drift["status"] == "warn"
    assert _locked(project, "validate") != locked  # the darker crawl is the new previous version
    again = dvc("repro", "-f", "validate", cwd=project)  # same data against itself: no drift
    assert json.loads((project / "reports/drift.json").read_text())["status"] == "ok", again.stdout


SITE = DemoSiteParams(n_items=20, per_page=10, n_duplicates=0, n_broken=0, bad_label_share=0.0)
LANGUAGES = ["cs", "de", "en", "es", "eu", "fr", "gl", "hu", "it", "lt", "pl", "ru", "sv"]
JOKE_PAGES = {  # the whole joke from its page, or the board's teaser (`text[:40]…`) in the block
    "jokes": {
        "item_list": {"css": "article.joke", "link_css": "a.joke::attr(href)"},
        "fields": {
            "label": {"css": "span.lang::text", "from": "list"},
            "text": {"css": "div.joke-body", "cleanup": ["html_text", "strip"]},
        },
    },
    "teasers": {
        "item_list": {"css": "article.joke"},
        "fields": {"label": {"css": "span.lang::text"}, "text": {"css": "a.joke::text"}},
    },
}


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    with running_demo_site(SITE) as (url, _):
        yield url


def _site_project(root: Path, params: dict[str, Any]) -> Path:
    project = make_project(root)
    # Every key dvc.yaml tracks must be in the file, as `kiln check --write` writes it.
    (project / "params.yaml").write_text(
        yaml.safe_dump(complete(parse_params(params)), sort_keys=False)
    )
    return project


def _real_crawl(project: Path, crawl: dict[str, Any]) -> list[dict]:
    """Crawl the demo site with `crawl` (the whole section) and record data/raw as `kiln run`
    does."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    (project / "params.yaml").write_text(
        yaml.safe_dump(complete(parse_params({**params, "crawl": crawl})), sort_keys=False)
    )
    run([sys.executable, "-m", "tasks.crawl"], project)
    dvc("commit", "--force", "crawl", cwd=project)
    return read_jsonl(project / "data/raw/items.jsonl")


def _crawl_section(url: str, start: str, allow: str, **more: Any) -> dict[str, Any]:
    return {
        "start_urls": [url + start], "allowed_domains": ["127.0.0.1"], "allow_loopback": True,
        "follow": [{"css": "nav.pagination", "allow": [allow]}], "concurrency": 8, **more,
    }  # fmt: skip


def _validate_section(min_rows: int, **more: Any) -> dict[str, Any]:
    return {
        "required_columns": ["url", "content_hash", "first_seen"],
        "non_null_columns": ["url", "content_hash"], "min_rows": min_rows, **more,
    }  # fmt: skip


def _jokes(url: str, pages: str) -> dict[str, Any]:
    """Board pages 1-4 (100 jokes): the same jokes whichever way they are read."""
    return _crawl_section(url, "jokes/", "/jokes/page/[2-4]$", **JOKE_PAGES[pages])


def test_teasers_instead_of_jokes_drift_in_text_length(tmp_path: Path, site: str) -> None:
    project = _site_project(tmp_path, {
        "project": {"name": "jokes", "task": "text_classification"},
        "crawl": _jokes(site, "jokes"),
        "labels": {"classes": LANGUAGES},
        "validate": _validate_section(50),
        "train": {"model": "transformer"},
    })  # fmt: skip
    rows = _real_crawl(project, _jokes(site, "jokes"))
    dvc("repro", "validate", cwd=project)
    assert json.loads((project / "reports/drift.json").read_text())["status"] == (
        "no previous version"
    )
    metrics = json.loads((project / "reports/validate.json").read_text())
    assert (metrics["n_in"], metrics["n_valid"], metrics["success"]) == (len(rows), 100, True)
    locked = _locked(project, "validate")

    _real_crawl(project, _jokes(site, "teasers"))
    warned = dvc("repro", "validate", cwd=project)
    assert "drift text_length_ks" in warned.stderr + warned.stdout
    drift = json.loads((project / "reports/drift.json").read_text())
    length = drift["checks"]["text_length_ks"]
    assert drift["status"] == "warn" and length["drifted"] and length["statistic"] > 0.8
    # 40 characters and the ellipsis, which clean's NFKC (and so text_chars) spells "..."
    assert length["new_mean"] <= 43 < length["previous_mean"]
    assert drift["checks"]["image_mean_ks"]["verdict"] == "not applicable"
    assert not drift["checks"]["label_psi"]["drifted"]  # the same board, the same languages
    assert _locked(project, "validate") != locked  # the teasers are the new previous version


def _co2(url: str, start: str, allow: str) -> dict[str, Any]:
    return _crawl_section(
        url, start, allow,
        item_list={"css": "table.series tr:not(:first-child)"},
        fields={"week": {"css": "td.week::text", "type": "date"},
                "co2_ppm": {"css": "td.ppm::text", "type": "float", "required": False}},
    )  # fmt: skip


def test_later_co2_record_fails_on_value_drift(tmp_path: Path, site: str) -> None:
    first = _co2(site, "co2/", "/co2/page/([2-9]|10)$")  # pages 1-10: 1958-1977
    later = _co2(site, "co2/page/14", "/co2/page/(1[4-9]|2[0-3])$")  # pages 14-23: 1983-2001
    strict = {"numeric_ks": {"threshold": 0.3, "severity": "fail"}}
    project = _site_project(tmp_path, {
        "project": {"name": "co2", "task": "forecasting"},
        "crawl": first,
        "labels": {"classes": []},
        "validate": _validate_section(500, drift=strict),
        "clean": {"series": {"time_column": "week", "value_column": "co2_ppm"}},
        "train": {"model": "lstm"},
        "promote": {"metric": "mae"},
    })  # fmt: skip
    rows = _real_crawl(project, first)
    assert len(rows) == 1000 and any(r["co2_ppm"] is None for r in rows)  # unmeasured weeks
    dvc("repro", "validate", cwd=project)
    metrics = json.loads((project / "reports/validate.json").read_text())
    assert (metrics["n_valid"], metrics["n_quarantined"]) == (1000, 0)  # nulls are clean's job
    assert json.loads((project / "reports/drift.json").read_text())["status"] == (
        "no previous version"
    )
    validated = (project / "data/validated/items.parquet").read_bytes()
    locked = _locked(project, "validate")

    _real_crawl(project, later)
    failed = dvc("repro", "validate", cwd=project, check=False)
    assert failed.returncode != 0
    assert "drift numeric_ks:co2_ppm" in failed.stderr + failed.stdout
    drift = json.loads((project / "reports/drift.json").read_text())
    assert drift["status"] == "fail" and drift["checks"]["numeric_ks:co2_ppm"]["statistic"] == 1.0
    assert {n for n, c in drift["checks"].items() if c["verdict"] == "not applicable"} == {
        "label_psi", "image_mean_ks", "text_length_ks"}  # fmt: skip
    assert (project / "data/validated/items.parquet").read_bytes() == validated
    assert _locked(project, "validate") == locked
