"""The HTTP cache's SQLite storage (crawlers/httpcache_sqlite.py), offline:
`pytest tests/unit/crawlers/test_httpcache_sqlite.py`.

Responses round-trip whole through Scrapy's storage interface; the file holds the demo shop's
small pages in at most twice the bytes of their headers and bodies (Scrapy's filesystem storage:
~50 times, 28 KiB per page on ext4); a file it cannot use is moved aside, never a crash. A crawl
through it (refresh with 304s, pruning) is in the integration tests.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from scrapy import Request
from scrapy.http import HtmlResponse, Response
from scrapy.settings import Settings
from scrapy.utils.request import RequestFingerprinter

from crawlers.demo_site import build_site
from crawlers.httpcache_sqlite import CACHE_FILE, SqliteCacheStorage, disk_bytes, held_bytes
from tasks.core.params import DemoSiteParams

# What the demo server (http.server) sends besides a page's own headers
SERVER = {"Server": "BaseHTTP/0.6 Python/3.11.7", "Date": "Mon, 01 Jan 2024 00:00:00 GMT"}
HTML = {"Content-Type": "text/html; charset=utf-8", "ETag": '"e1"', "Cache-Control": "no-cache"}


def _spider() -> SimpleNamespace:
    # open_spider reads only the crawler's request fingerprinter (and stats on a failed store)
    return SimpleNamespace(name="generic", crawler=SimpleNamespace(
        request_fingerprinter=RequestFingerprinter(), stats=SimpleNamespace()))  # fmt: skip


def _open(cache_dir: Path, **settings: object) -> tuple[SqliteCacheStorage, SimpleNamespace]:
    storage = SqliteCacheStorage(Settings({"HTTPCACHE_DIR": str(cache_dir), **settings}))
    spider = _spider()
    storage.open_spider(spider)
    return storage, spider


def _rows(storage: SqliteCacheStorage) -> list[tuple]:
    """Its rows in store order, as its own connection sees them (before a commit too)."""
    return storage._conn().execute("SELECT id, url, zipped FROM responses ORDER BY id").fetchall()


def test_a_response_round_trips_whole(tmp_path: Path) -> None:
    storage, spider = _open(tmp_path)
    url = "http://127.0.0.1/item/a"
    headers = {**HTML, "Set-Cookie": ["a=1", "b=2"]}  # a header given twice stays twice
    body = "<h1>caf\u00e9</h1>".encode() * 50
    storage.store_response(spider, Request(url), HtmlResponse(url, status=203, headers=headers,
                                                              body=body))  # fmt: skip
    storage.close_spider(spider)
    storage, spider = _open(tmp_path)  # from the file, not from memory
    request = Request(url)
    got = storage.retrieve_response(spider, request)
    assert isinstance(got, HtmlResponse) and (got.url, got.status, got.body) == (url, 203, body)
    assert got.headers.getlist("Set-Cookie") == [b"a=1", b"b=2"]
    assert got.headers["ETag"] == b'"e1"' and got.text.startswith("<h1>caf\u00e9")
    assert abs(request.meta["cache_timestamp"] - time.time()) < 60
    assert storage.retrieve_response(spider, Request(url + "?other")) is None


def test_html_is_compressed_and_an_image_is_stored_as_it_is(tmp_path: Path) -> None:
    storage, spider = _open(tmp_path)
    png = bytes(range(256))  # no redundancy: zlib would only make it longer
    page = HtmlResponse("http://x/a", body=b"<p>a</p>" * 100, headers=HTML)
    storage.store_response(spider, Request("http://x/a"), page)
    storage.store_response(spider, Request("http://x/1.png"), Response("http://x/1.png", body=png))
    rows = [(url, zipped) for _, url, zipped in _rows(storage)]
    assert rows == [("http://x/a", 1), ("http://x/1.png", 0)]
    assert storage.retrieve_response(spider, Request("http://x/1.png")).body == png


def test_storing_again_replaces_the_row_and_makes_it_the_newest(tmp_path: Path) -> None:
    storage, spider = _open(tmp_path)
    for url in ("http://x/a", "http://x/b", "http://x/a"):  # a: revalidated (304) after b
        storage.store_response(spider, Request(url), HtmlResponse(url, body=url.encode()))
    assert [url for _, url, _ in _rows(storage)] == ["http://x/b", "http://x/a"]  # store order


def test_expiration_secs_as_in_scrapys_storages(tmp_path: Path) -> None:
    storage, spider = _open(tmp_path, HTTPCACHE_EXPIRATION_SECS=60)
    storage.store_response(spider, Request("http://x/a"), HtmlResponse("http://x/a", body=b"a"))
    assert storage.retrieve_response(spider, Request("http://x/a")) is not None
    storage._conn().execute("UPDATE responses SET stored_at = stored_at - 61")
    assert storage.retrieve_response(spider, Request("http://x/a")) is None


@pytest.mark.parametrize("content", [b"not a database at all" * 100, b"version"])
def test_a_file_it_cannot_use_is_moved_aside(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / CACHE_FILE
    if content == b"version":  # a cache file of another schema version
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE responses (x)")
            db.execute("PRAGMA user_version = 99")
    else:
        path.write_bytes(content)
    storage, spider = _open(tmp_path)
    storage.store_response(spider, Request("http://x/a"), HtmlResponse("http://x/a", body=b"a"))
    assert storage.retrieve_response(spider, Request("http://x/a")).body == b"a"
    assert (tmp_path / (CACHE_FILE + ".unreadable")).is_file()


def test_the_demo_shop_takes_at_most_twice_the_bytes_it_holds(tmp_path: Path) -> None:
    site = build_site(DemoSiteParams(n_items=1000, n_duplicates=0, n_broken=0, sections=[]))
    storage, spider = _open(tmp_path)
    for path, page in site.pages.items():  # item and list pages (~1 kB) and images (~100 B)
        url = f"http://127.0.0.1:8765{path}"
        headers = {**SERVER, "Content-Type": page.content_type, "ETag": page.etag,
                   "Content-Length": str(len(page.body)),
                   "Cache-Control": page.cache_control}  # fmt: skip
        storage.store_response(spider, Request(url), Response(url, headers=headers, body=page.body))
    storage.close_spider(spider)
    held = held_bytes(tmp_path / CACHE_FILE)
    assert held["responses"] == len(site.pages) > 2000
    assert held["disk_bytes"] == disk_bytes(tmp_path / CACHE_FILE) > 0
    assert held["disk_bytes"] <= 2 * held["held_bytes"], held  # the filesystem storage: ~54x
