"""Declarative crawls of the demo site's joke board and CO2 table, a hand-written spider, and
`kiln crawl --check`: `pytest tests/integration/test_crawl_sections.py`.

Real Scrapy over HTTP (`python -m tasks.crawl` in a temporary project) against the demo site on
a free loopback port; the expected values come from pyjokes and statsmodels themselves.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from crawlers.demo_sections import co2_weeks, jokes
from crawlers.demo_site import running_demo_site
from flows.cli import app
from tasks.core.io import read_jsonl
from tasks.core.params import DemoSiteParams

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SITE = DemoSiteParams(n_items=20, per_page=10, n_duplicates=0, n_broken=0, bad_label_share=0.0)


@pytest.fixture(scope="module")
def demo():
    with running_demo_site(SITE) as (url, server):
        yield url, server


def _crawl(root: Path, example: str, url: str, path: str, **crawl: object) -> Path:
    params = yaml.safe_load((REPO / "examples" / example).read_text(encoding="utf-8"))
    params["crawl"].update(start_urls=[url + path], **crawl)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "tasks.crawl"], cwd=root, env=env,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    return root / "data" / "raw"


def test_jokes_board_items_span_list_and_detail_pages(demo, tmp_path: Path) -> None:
    url, _ = demo
    sample = {"max_items": 40, "allow_partial": True}  # a sample of the board: a partial crawl
    raw = _crawl(tmp_path, "jokes.params.yaml", url, "jokes/", concurrency=4, **sample)
    items = read_jsonl(raw / "items.jsonl")
    assert len(items) == 40  # crawl.max_items
    truth = {jid: (lang, text) for jid, lang, text in jokes()}
    for row in items:
        lang, text = truth[row["joke_id"]]
        assert row["url"] == f"{url}jokes/{row['joke_id']}"
        assert row["label"] == lang  # the language, read on the list page
        assert row["text"] == " ".join(text.split())  # the messy detail page, as plain text
    assert not (raw / "images").exists()


def test_co2_table_rows_are_items_and_gaps_are_rejects(demo, tmp_path: Path) -> None:
    url, _ = demo
    raw = _crawl(tmp_path, "co2.params.yaml", url, "co2/")
    got = {(r["week"], r["co2_ppm"]) for r in read_jsonl(raw / "items.jsonl")}
    weeks = co2_weeks()
    assert got == {(w, round(v, 1)) for w, v in weeks if v is not None}
    rejects = read_jsonl(raw / "rejects.jsonl")
    assert len(rejects) == sum(v is None for _, v in weeks) == 59
    assert {r["reason"] for r in rejects} == {"missing required field(s): co2_ppm"}


def test_custom_spider_gets_the_same_output_and_safety(demo, tmp_path: Path) -> None:
    url, _ = demo
    raw = _crawl(tmp_path, "co2.params.yaml", url, "co2/", spider="co2_table:Co2TableSpider")
    items = read_jsonl(raw / "items.jsonl")
    assert len(items) == sum(v is not None for _, v in co2_weeks())
    assert set(items[0]) == {"url", "content_hash", "first_seen", "week", "co2_ppm"}
    report = json.loads((tmp_path / "reports" / "crawl.json").read_text(encoding="utf-8"))
    assert report["refused"] >= 1  # its metadata-address request, despite its custom_settings


def test_unknown_custom_spider_is_refused_before_crawling(tmp_path: Path) -> None:
    params = yaml.safe_load((REPO / "examples" / "co2.params.yaml").read_text(encoding="utf-8"))
    params["crawl"]["spider"] = "../evil:Spider"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "tasks.crawl"], cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert result.returncode == 2 and "is not 'module:Class'" in result.stderr


def test_kiln_crawl_check_shows_fields_and_empty_selectors(demo, tmp_path: Path) -> None:
    url, _ = demo
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text(encoding="utf-8"))
    runner = CliRunner()
    ok = runner.invoke(app, ["crawl", "-p", str(tmp_path), "--check", f"{url}item/digit-0003"])
    assert ok.exit_code == 0, ok.output
    assert "label" in ok.output and "selectors that matched nothing: none" in ok.output
    # the HTTP status first, then the verdict, then required fields before optional ones
    first, verdict = ok.output.splitlines()[:2]
    assert first.startswith(f"HTTP 200  {url}item/digit-0003"), ok.output
    assert verdict.startswith("kept: "), ok.output
    assert ok.output.index("required fields:") < ok.output.index("optional fields:")
    required = ok.output.split("required fields:")[1].split("optional fields:")[0]
    assert "  label  " in required and "  writer  " not in required  # writer is optional
    listing = runner.invoke(app, ["crawl", "-p", str(tmp_path), "--check", url])
    assert listing.exit_code == 1
    assert listing.output.splitlines()[1].startswith(
        "not an item page: its URL does not match crawl.item_url_pattern"), listing.output
    assert (
        "selectors that matched nothing: title, label, image, writer, ink, price" in listing.output
    )
    broken = runner.invoke(app, ["crawl", "-p", str(tmp_path), "--check",
                                 f"{url}item/digit-0003/../nope"])
    assert broken.exit_code == 1 and broken.output.startswith("HTTP 404"), broken.output
    assert broken.output.splitlines()[1].startswith("rejected: the answer is HTTP 404")
    refused = runner.invoke(app, ["crawl", "-p", str(tmp_path), "--check", f"{url}admin/"])
    assert refused.exit_code == 1 and "robots.txt" in refused.output


def test_kiln_use_switches_params_after_checking(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text(encoding="utf-8"))
    runner = CliRunner()
    bad = tmp_path / "bad.yaml"
    bad.write_text("crawl: {strat_urls: []}\n", encoding="utf-8")
    assert runner.invoke(app, ["use", str(bad), "-p", str(tmp_path)]).exit_code == 2
    assert (tmp_path / "params.yaml").read_text() == (REPO / "params.yaml").read_text()
    done = runner.invoke(
        app, ["use", str(REPO / "examples" / "jokes.params.yaml"), "-p", str(tmp_path)]
    )
    assert done.exit_code == 0, done.output
    assert "jokes-demo" in (tmp_path / "params.yaml").read_text()
    assert (tmp_path / "params.yaml.bak").read_text() == (REPO / "params.yaml").read_text()


def test_max_depth_and_xpath_follow_rules_bound_the_crawl(demo, tmp_path: Path) -> None:
    """Depth 1 from the home page: its 10 item links and page 2, but not page 2's items."""
    url, server = demo
    raw = _crawl(tmp_path, "../params.yaml", url, "", max_depth=1, follow_css=[],
                 follow=[{"xpath": "//nav[@class='pagination']", "deny": ["/admin/"]},
                         {"css": "ul.items"}])  # fmt: skip
    items = read_jsonl(raw / "items.jsonl")
    assert [r["url"] for r in items] == sorted(f"{url}item/digit-{i:04d}" for i in range(10))
    report = json.loads((tmp_path / "reports" / "crawl.json").read_text(encoding="utf-8"))
    assert report["robots_forbidden"] == 0  # /admin/ was denied by the rule, never requested
