"""The HTTP cache size limit: `pytest tests/unit/crawlers/test_httpcache_prune.py` (offline).

The cache is written and read by the crawl's own storage (crawlers/httpcache_sqlite.py), so a
pruned cache is checked the way a crawl reads it, and its size is the disk the file takes. A
crawl after pruning (revalidating what was kept, fetching what was removed) is
tests/integration/test_fault_server.py::test_crawl_after_pruning_the_cache.
"""

from __future__ import annotations

import os
import random
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import pytest
from scrapy import Request
from scrapy.extensions.httpcache import FilesystemCacheStorage
from scrapy.http import HtmlResponse
from scrapy.settings import Settings
from scrapy.utils.request import RequestFingerprinter

from crawlers.httpcache_prune import PruneResult, prune_http_cache
from crawlers.httpcache_sqlite import CACHE_FILE, SqliteCacheStorage, disk_bytes

HOUR = 3600.0  # seconds
KIB = 1024


def _spider() -> SimpleNamespace:
    return SimpleNamespace(name="generic", crawler=SimpleNamespace(
        request_fingerprinter=RequestFingerprinter()))  # fmt: skip


def _store(cache_dir: Path, pages: dict[str, bytes], age_s: float = 0.0) -> None:
    """Store a response per URL as a crawl does, stored `age_s` seconds ago."""
    storage, spider = SqliteCacheStorage(Settings({"HTTPCACHE_DIR": str(cache_dir)})), _spider()
    storage.open_spider(spider)
    for url, body in pages.items():
        storage.store_response(spider, Request(url), HtmlResponse(url, body=body))
    storage._conn().executemany("UPDATE responses SET stored_at = stored_at - ? WHERE url = ?",
                                [(age_s, url) for url in pages])  # fmt: skip
    storage.close_spider(spider)


def _cached(cache_dir: Path, url: str) -> bytes | None:
    storage, spider = SqliteCacheStorage(Settings({"HTTPCACHE_DIR": str(cache_dir)})), _spider()
    storage.open_spider(spider)
    try:
        response = storage.retrieve_response(spider, Request(url))
    finally:
        storage.close_spider(spider)
    return None if response is None else response.body


def _noise(n: int, seed: int) -> bytes:
    """`n` bytes zlib cannot shrink: each page takes its own size on disk."""
    return random.Random(seed).randbytes(n)  # noqa: S311 (test data)


def _size(cache_dir: Path) -> int:
    return disk_bytes(cache_dir / CACHE_FILE)


def test_removes_least_recently_stored_responses_until_under_the_limit(tmp_path: Path) -> None:
    urls = [f"http://127.0.0.1/item/{i}" for i in range(6)]
    for i, url in enumerate(urls):  # item/0 the oldest ... item/5 the newest
        _store(tmp_path, {url: _noise(40 * KIB, i)}, age_s=(6 - i) * HOUR)
    _store(tmp_path, {urls[0]: _noise(40 * KIB, 0)})  # a 304 stores item/0 again: now the newest
    before = _size(tmp_path)
    limit = before - 100 * KIB  # three 40 KiB pages have to go
    result = prune_http_cache(tmp_path, limit)
    assert result.entries_removed == 3 and result.bytes_before == before
    assert result.bytes_after == _size(tmp_path) <= limit
    assert result.bytes_after > limit - 80 * KIB  # not more than it had to
    assert [_cached(tmp_path, u) is not None for u in urls] == [True, False, False, False, True,
                                                                True]  # fmt: skip
    assert _cached(tmp_path, urls[5]) == _noise(40 * KIB, 5)  # a kept response reads whole


def test_small_pages_go_oldest_first_and_the_file_gives_the_disk_back(tmp_path: Path) -> None:
    pages = {f"http://127.0.0.1/item/{i}": b"<p>%d</p>" % i * 60 for i in range(3000)}
    urls = list(pages)
    for start in range(0, 3000, 500):  # stored in six batches, the first the oldest
        _store(tmp_path, {u: pages[u] for u in urls[start : start + 500]}, age_s=3000 - start)
    before = _size(tmp_path)
    result = prune_http_cache(tmp_path, before // 2)
    assert result.bytes_after == _size(tmp_path) <= before // 2
    with sqlite3.connect(tmp_path / CACHE_FILE) as db:
        left = {url for (url,) in db.execute("SELECT url FROM responses")}
    kept = [u in left for u in urls]
    first_kept = kept.index(True)
    assert not any(kept[:first_kept]) and all(kept[first_kept:])  # the oldest went, only them
    assert 1000 < first_kept < 2000 and result.entries_removed == first_kept


def test_under_the_limit_nothing_is_removed_and_zero_removes_all(tmp_path: Path) -> None:
    _store(tmp_path, {f"http://127.0.0.1/p/{i}": _noise(5000, i) for i in range(3)})
    size = _size(tmp_path)
    assert prune_http_cache(tmp_path, size) == PruneResult(0, size, size)
    assert prune_http_cache(tmp_path, 0) == PruneResult(3, size, 0)
    assert not (tmp_path / CACHE_FILE).exists()  # even an empty cache file is over 0 bytes
    assert _cached(tmp_path, "http://127.0.0.1/p/0") is None
    _store(tmp_path, {"http://127.0.0.1/p/0": b"again"})  # the next crawl starts a new file
    assert _cached(tmp_path, "http://127.0.0.1/p/0") == b"again"


def _legacy(cache_dir: Path, url: str) -> Path:
    """An entry of Scrapy's filesystem storage, which Kiln used before."""
    storage, spider = FilesystemCacheStorage(Settings({"HTTPCACHE_DIR": str(cache_dir)})), _spider()
    storage.open_spider(spider)
    request = Request(url)
    storage.store_response(spider, request, HtmlResponse(url, body=b"<p>old</p>"))
    return Path(storage._get_request_path(spider, request))


def test_the_old_filesystem_entries_are_deleted_and_nothing_else(tmp_path: Path) -> None:
    entries = [_legacy(tmp_path, f"http://127.0.0.1/old/{i}") for i in range(3)]
    aside = entries[2].rename(entries[2].with_name(entries[2].name + ".pruned"))  # an old prune's
    old_bytes = sum(disk_bytes(p, shm=False) for e in [*entries[:2], aside]
                    for p in [e, *e.iterdir()])  # fmt: skip
    _store(tmp_path, {"http://127.0.0.1/new": b"<p>new</p>"})
    # "0123" is hex but does not start with the name of its <2 hex> directory.
    foreign = [tmp_path / "NOTES", tmp_path / "generic/zz/not-a-key/f",
               entries[0].parent / "0123/f"]  # fmt: skip
    for path in foreign:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("mine")
    size = _size(tmp_path)
    result = prune_http_cache(tmp_path, 10 * 2**20)
    assert result.entries_removed == 3 and result.bytes_after == size
    assert size + old_bytes <= result.bytes_before  # with the directories they left empty
    assert not any(e.exists() for e in [*entries, aside])
    assert all(p.read_text() == "mine" for p in foreign)
    assert _cached(tmp_path, "http://127.0.0.1/new") == b"<p>new</p>"


def test_no_cache_and_a_negative_limit(tmp_path: Path) -> None:
    assert prune_http_cache(tmp_path / "absent", 10) == PruneResult(0, 0, 0)
    assert prune_http_cache(tmp_path, 10) == PruneResult(0, 0, 0)  # a directory, no file yet
    with pytest.raises(ValueError, match="max_bytes must be >= 0"):
        prune_http_cache(tmp_path, -1)


def test_logs_one_line(tmp_path: Path, caplog) -> None:
    _store(tmp_path, {"http://127.0.0.1/": b"home"})
    with caplog.at_level("INFO", logger="crawlers.httpcache_prune"):
        prune_http_cache(tmp_path, 0)
    [record] = caplog.records
    assert "removed 1 of 1 responses" in record.getMessage()


def test_the_command_line(tmp_path: Path) -> None:
    from crawlers.httpcache_prune import main  # noqa: PLC0415

    _store(tmp_path, {"http://127.0.0.1/": _noise(50 * KIB, 1)})
    assert main([str(tmp_path), "--max-mb", "0"]) == 0
    assert not (tmp_path / CACHE_FILE).exists()
    assert main([str(tmp_path), "--max-mb", "-1"]) == 2
    assert os.listdir(tmp_path) == []
