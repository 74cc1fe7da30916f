"""Which item pages a refresh may keep without a request (crawlers/revisit.py):
`pytest tests/unit/crawlers/test_revisit.py`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crawlers.revisit import (
    PageVisit,
    load_list_pages,
    load_state,
    same_list_values,
    save_state,
    server_fresh_s,
    skippable,
)
from tasks.core.params import load_params
from tasks.crawl import CrawlError, _kept_rows
from tests.project import REPO

CFG = load_params(REPO / "params.yaml").crawl
NOW = 1_800_000_000.0  # Unix time (s)


def _visit(checked_at: float = NOW - 60, fresh_s: float = 0.0, content_hash: str = "h1"):
    return PageVisit(checked_at=checked_at, fresh_s=fresh_s, content_hash=content_hash,
                     list_values={}, links=[["http://x/", None]])  # fmt: skip


@pytest.mark.parametrize(
    ("header", "seconds"),
    [(b"max-age=3600", 3600.0), (b"public, max-age=60", 60.0), (b"max-age=0", 0.0),
     (b"no-cache, max-age=60", 0.0), (b"no-store", 0.0), (None, 0.0), (b"max-age=soon", 0.0)],
)  # fmt: skip
def test_server_freshness_comes_from_max_age(header: bytes | None, seconds: float) -> None:
    assert server_fresh_s(header) == seconds


def test_a_page_is_kept_within_its_interval_only() -> None:
    rows = [{"url": f"http://x/item/{n}", "content_hash": "h1"} for n in "abcd"]
    visits = {
        "http://x/item/a": _visit(checked_at=NOW - 60),  # a minute ago
        "http://x/item/b": _visit(checked_at=NOW - 7200),  # two hours ago
        "http://x/item/c": _visit(checked_at=NOW - 7200, fresh_s=86400),  # server: a day
        "http://x/item/d": _visit(content_hash="h0"),  # data/raw is not what this visit saw
    }
    kept = skippable(visits, rows, revisit_after_s=3600, now=NOW)
    assert sorted(kept) == ["http://x/item/a", "http://x/item/c"]
    assert kept["http://x/item/a"] == {"list_values": {}, "links": [["http://x/", None]]}
    assert skippable(visits, rows, revisit_after_s=0, now=NOW).keys() == {
        "http://x/item/c"  # revisit 0: only the server's own promise counts
    }


def test_state_round_trips_and_other_params_or_a_bad_file_mean_none(tmp_path: Path) -> None:
    path = tmp_path / "crawl-state.json"
    visits = {"http://x/a": _visit()}
    save_state(path, CFG, visits)
    assert load_state(path, CFG) == visits
    policy_only = CFG.model_copy(update={"revisit_after_s": 60.0, "http_cache_max_mb": 1.0,
                                         "max_pages": 7, "max_files": 7, "max_items": 7,
                                         "allow_partial": True})  # fmt: skip
    assert load_state(path, policy_only) == visits  # when or how far to crawl changes no row
    assert load_state(path, CFG.model_copy(update={"user_agent": "other/1"})) == {}
    assert load_state(tmp_path / "missing.json", CFG) == {}
    path.write_text("{not json")
    assert load_state(path, CFG) == {}
    path.write_text(json.dumps({"version": 99, "config": "", "pages": {}}))
    assert load_state(path, CFG) == {}


def test_list_pages_round_trip_with_the_same_params_only(tmp_path: Path) -> None:
    path = tmp_path / "crawl-state.json"
    save_state(path, CFG, {}, ["http://x/page/2", "http://x/", "http://x/page/2"])
    assert load_list_pages(path, CFG) == ["http://x/", "http://x/page/2"]  # sorted, once each
    assert load_list_pages(path, CFG.model_copy(update={"user_agent": "other/1"})) == []
    state = json.loads(path.read_text())
    del state["list_pages"]  # written before list pages were recorded
    path.write_text(json.dumps(state))
    assert load_list_pages(path, CFG) == [] and load_state(path, CFG) == {}
    assert load_list_pages(tmp_path / "missing.json", CFG) == []


def test_list_values_compare_as_json_with_none_as_absent() -> None:
    assert same_list_values({"teaser": "a", "n": 1}, {"n": 1, "teaser": "a"})
    assert same_list_values({"teaser": None}, None)  # reached by a follow rule: no list values
    assert not same_list_values({"teaser": "a"}, {"teaser": "b"})
    assert not same_list_values({"teaser": "a"}, None)


def test_kept_rows_come_from_the_last_snapshot_and_need_a_row(tmp_path: Path) -> None:
    previous = [{"url": "http://x/a", "content_hash": "h1"}, {"url": "http://x/b"}]
    (tmp_path / "carried.jsonl").write_text('{"url": "http://x/a"}\n{"url": "http://x/b"}\n')
    # b was offered to the interrupted run of a resumed crawl, not to this one: still kept
    kept = _kept_rows(tmp_path, previous, {"http://x/a": {}}, fetched_urls=set())
    assert kept == previous
    assert _kept_rows(tmp_path, previous, {}, fetched_urls={"http://x/a"}) == previous[1:]
    (tmp_path / "carried.jsonl").write_text('{"url": "http://x/gone"}\n')
    with pytest.raises(CrawlError, match="no row to keep"):
        _kept_rows(tmp_path, previous, {}, fetched_urls=set())
