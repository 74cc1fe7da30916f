"""The HTTP cache size limit: `pytest tests/unit/crawlers/test_httpcache_prune.py` (offline).

The cache is written and read by Scrapy's own FilesystemCacheStorage, so a pruned cache is
checked the way a crawl reads it. A crawl after pruning (revalidating what was kept, fetching
what was removed) is tests/integration/test_fault_server.py::test_crawl_after_pruning_the_cache.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from scrapy import Request
from scrapy.extensions.httpcache import FilesystemCacheStorage
from scrapy.http import HtmlResponse
from scrapy.settings import Settings
from scrapy.utils.request import RequestFingerprinter

from crawlers import httpcache_prune
from crawlers.httpcache_prune import PruneResult, prune_http_cache

HOUR = 3600.0  # seconds


def _storage(cache_dir: Path) -> tuple[FilesystemCacheStorage, SimpleNamespace]:
    # open_spider reads only the spider's name and its crawler's request fingerprinter.
    spider = SimpleNamespace(name="generic", crawler=SimpleNamespace(
        request_fingerprinter=RequestFingerprinter()))  # fmt: skip
    storage = FilesystemCacheStorage(Settings({"HTTPCACHE_DIR": str(cache_dir)}))
    storage.open_spider(spider)
    return storage, spider


def _store(cache_dir: Path, url: str, body: bytes, age_s: float) -> Path:
    """Store a response for `url` as Scrapy does; its files get mtime `age_s` seconds ago."""
    storage, spider = _storage(cache_dir)
    request = Request(url)
    storage.store_response(spider, request, HtmlResponse(url, body=body, headers={"ETag": '"e"'}))
    entry = Path(storage._get_request_path(spider, request))
    stamp = time.time() - age_s
    for path in entry.iterdir():
        os.utime(path, (stamp, stamp))
    return entry


def _cached(cache_dir: Path, url: str) -> bytes | None:
    storage, spider = _storage(cache_dir)
    response = storage.retrieve_response(spider, Request(url))
    return None if response is None else response.body


def _du(paths: list[Path]) -> int:
    """Disk usage of entry directories and their files, in bytes, as `du` counts it."""
    return sum(p.lstat().st_blocks * 512 for e in paths for p in [e, *e.iterdir()])


def test_removes_least_recently_stored_entries_until_under_the_limit(tmp_path: Path) -> None:
    urls = [f"http://127.0.0.1/item/{i}" for i in range(6)]
    entries = [_store(tmp_path, u, b"<p>%d</p>" % i * 200 * (i + 1), age_s=(6 - i) * HOUR)
               for i, u in enumerate(urls)]  # fmt: skip
    # A 304 makes Scrapy store the oldest entry again: now it is the most recently used.
    _store(tmp_path, urls[0], b"<p>0</p>" * 200, age_s=0)
    before, limit = _du(entries), _du([entries[0], entries[4], entries[5]])
    result = prune_http_cache(tmp_path, limit)
    assert result == PruneResult(entries_removed=3, bytes_before=before, bytes_after=limit)
    assert [_cached(tmp_path, u) is not None for u in urls] == [True, False, False, False, True,
                                                                True]  # fmt: skip
    assert _cached(tmp_path, urls[5]) == b"<p>5</p>" * 200 * 6  # a kept entry reads whole
    assert sorted(p.name for p in tmp_path.rglob("*.pruned")) == []


def test_under_the_limit_nothing_is_removed_and_zero_removes_all(tmp_path: Path) -> None:
    entries = [_store(tmp_path, f"http://127.0.0.1/p/{i}", b"x" * 5000, age_s=i) for i in range(3)]
    size = _du(entries)
    assert prune_http_cache(tmp_path, size) == PruneResult(0, size, size)
    assert prune_http_cache(tmp_path, 0) == PruneResult(3, size, 0)
    assert list((tmp_path / "generic").iterdir()) == []  # the empty <2 hex> directories too
    assert _cached(tmp_path, "http://127.0.0.1/p/0") is None
    entry = _store(tmp_path, "http://127.0.0.1/p/0", b"again", age_s=0)  # Scrapy stores anew
    assert _cached(tmp_path, "http://127.0.0.1/p/0") == b"again" and entry.is_dir()


def test_an_entry_is_renamed_aside_before_it_is_deleted(tmp_path: Path, monkeypatch) -> None:
    url = "http://127.0.0.1/item/a"
    entry = _store(tmp_path, url, b"<p>a</p>" * 100, age_s=HOUR)
    size = _du([entry])

    def crash(path: Path) -> None:  # the prune dies between the rename and the delete
        raise KeyboardInterrupt

    monkeypatch.setattr(httpcache_prune.shutil, "rmtree", crash)
    with pytest.raises(KeyboardInterrupt):
        prune_http_cache(tmp_path, 0)
    # Scrapy sees no entry (it would fail on a pickled_meta without its response files) ...
    assert not entry.exists() and _cached(tmp_path, url) is None
    aside = entry.with_name(entry.name + ".pruned")
    assert sorted(p.name for p in aside.iterdir()) == sorted(
        ["meta", "pickled_meta", "request_body", "request_headers", "response_body",
         "response_data", "response_headers"])  # fmt: skip
    monkeypatch.undo()
    # ... and the next prune deletes what the interrupted one left.
    assert prune_http_cache(tmp_path, 0) == PruneResult(0, size, 0)
    assert not aside.exists()


def test_leaves_what_is_not_a_cache_entry_alone(tmp_path: Path) -> None:
    entry = _store(tmp_path, "http://127.0.0.1/", b"home", age_s=0)
    # "0123" is hex but does not start with the name of its <2 hex> directory.
    foreign = [tmp_path / "NOTES", tmp_path / "generic/zz/not-a-key/f", entry.parent / "0123/f"]
    for path in foreign:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("mine")
    assert prune_http_cache(tmp_path, 0).entries_removed == 1
    assert all(p.read_text() == "mine" for p in foreign)


def test_no_cache_and_a_negative_limit(tmp_path: Path) -> None:
    assert prune_http_cache(tmp_path / "absent", 10) == PruneResult(0, 0, 0)
    with pytest.raises(ValueError, match="max_bytes must be >= 0"):
        prune_http_cache(tmp_path, -1)


def test_logs_one_line(tmp_path: Path, caplog) -> None:
    _store(tmp_path, "http://127.0.0.1/", b"home", age_s=0)
    with caplog.at_level("INFO", logger="crawlers.httpcache_prune"):
        prune_http_cache(tmp_path, 0)
    [record] = caplog.records
    assert "removed 1 of 1 entries" in record.getMessage()
