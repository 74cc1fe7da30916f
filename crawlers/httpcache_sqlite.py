"""The HTTP cache's storage: one SQLite file, `<HTTPCACHE_DIR>/httpcache.sqlite3`
(crawlers/settings.py sets `HTTPCACHE_STORAGE` to `SqliteCacheStorage`).

Scrapy's FilesystemCacheStorage writes 7 files in a directory of their own per response: on
ext4 (4 KiB blocks) a demo page of under 1 kB took 28 KiB of disk, so 20,000 responses filled the
512 MB default of `crawl.http_cache_max_mb` and a refresh re-downloaded what pruning dropped.
Scrapy's DbmCacheStorage is compact but stores pickles and never gives disk back after a delete.
Here each response is one row: the request fingerprint (Scrapy's, 20 bytes), the time it was
stored, the status and URL, and the raw header block followed by the body, zlib-compressed when
that is smaller (HTML and headers shrink to about a third; PNGs are stored as they are). Nothing
is pickled: a cache file, even a foreign one, is read as data only. The measured disk use is in
benchmarks/crawl_throughput.py (`--cache`).

* Pruning (crawlers/httpcache_prune.py) deletes whole rows, least recently stored first, and
  gives the pages back to the file system: the file is created with `auto_vacuum=INCREMENTAL`,
  and rows are numbered in the order they are stored, so the oldest rows share the same pages.
* A response stored again (a 304 revalidation) replaces its row and gets a new number: it is
  then the most recently stored, as a rewritten directory was for the filesystem storage.
* Writes are committed every `_COMMIT_EVERY` rows or `_COMMIT_S` seconds and when the spider
  closes, with SQLite's write-ahead log and `synchronous=NORMAL`: a crash loses at most the
  responses since the last commit, which the next crawl downloads again; the file is never left
  half-written. A file that is not a cache of this version is moved aside and a new one started.
* `HTTPCACHE_EXPIRATION_SECS` works as in Scrapy's storages (0: stored responses never expire
  by age; the RFC 2616 policy decides when to revalidate).

A response comes back with its URL, status, headers and body; `flags`, `protocol`,
`ip_address` and `certificate` are not kept (Kiln reads none of them from a cached answer).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
import zlib
from pathlib import Path
from typing import Any

from scrapy import Spider
from scrapy.http import Request, Response
from scrapy.settings import BaseSettings
from scrapy.utils.project import data_path
from scrapy.utils.response import response_from_dict
from w3lib.http import headers_dict_to_raw, headers_raw_to_dict

logger = logging.getLogger(__name__)

CACHE_FILE = "httpcache.sqlite3"
SCHEMA_VERSION = 1  # PRAGMA user_version of a cache file this module wrote
_COMMIT_EVERY = 500  # rows
_COMMIT_S = 2.0  # seconds
_ZLIB_LEVEL = 6
_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    id INTEGER PRIMARY KEY,   -- store order: pruning removes the lowest first
    fingerprint BLOB NOT NULL UNIQUE,
    stored_at REAL NOT NULL,  -- Unix time, s
    status INTEGER NOT NULL,
    url TEXT NOT NULL,
    header_len INTEGER NOT NULL,  -- the payload is the raw header block, then the body
    zipped INTEGER NOT NULL,      -- 1: the payload is zlib-compressed
    size INTEGER NOT NULL,        -- bytes of headers + body held, before compression
    payload BLOB NOT NULL
)
"""


def cache_file(cache_dir: Path) -> Path:
    return cache_dir / CACHE_FILE


def file_bytes(path: Path) -> int:
    """Disk usage of one file as `du` counts it (0 when absent)."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return 0
    blocks = getattr(st, "st_blocks", None)  # POSIX: 512-byte units whatever the block size
    return st.st_size if blocks is None else blocks * 512


def disk_bytes(path: Path, *, shm: bool = True) -> int:
    """Disk usage of a cache file with its write-ahead log and (`shm`) the 32 KiB shared-memory
    file that exists while a connection is open."""
    parts = [path, path.with_name(path.name + "-wal")]
    return sum(map(file_bytes, parts + [path.with_name(path.name + "-shm")] * shm))


def connect(path: Path) -> sqlite3.Connection:
    """The cache file at `path`, created (or recreated, when it is not one of this version)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return _open(path)
    except sqlite3.DatabaseError as exc:  # not a database, another version, corrupt
        aside = path.with_name(path.name + ".unreadable")
        logger.warning("HTTP cache %s unusable (%s): moved to %s, starting an empty one",
                       path, exc, aside)  # fmt: skip
        for suffix in ("", "-wal", "-shm"):
            part = path.with_name(path.name + suffix)
            if part.exists():
                os.replace(part, aside.with_name(aside.name + suffix))
        return _open(path)


def _open(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=30.0)
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if tables and version != SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"schema version {version}, expected {SCHEMA_VERSION}")
        if not tables:  # a new file: auto_vacuum must be set before the first table
            db.execute("PRAGMA auto_vacuum = INCREMENTAL")
            db.execute(_SCHEMA)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.commit()
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("SELECT count(*) FROM responses LIMIT 1").fetchone()  # readable at all?
    except BaseException:
        db.close()
        raise
    return db


class SqliteCacheStorage:
    """Scrapy's cache storage interface (open_spider, close_spider, retrieve_response,
    store_response) on one SQLite file."""

    def __init__(self, settings: BaseSettings) -> None:
        self.path = cache_file(Path(data_path(settings["HTTPCACHE_DIR"], createdir=True)))
        self.expiration_secs = settings.getint("HTTPCACHE_EXPIRATION_SECS")
        self._db: sqlite3.Connection | None = None
        self._pending = 0
        self._committed_at = 0.0

    def open_spider(self, spider: Spider) -> None:
        self._db = connect(self.path)
        self._fingerprinter = spider.crawler.request_fingerprinter
        self._committed_at = time.monotonic()
        logger.debug("HTTP cache in %s", self.path)

    def close_spider(self, spider: Spider) -> None:
        if self._db is not None:
            self._db.commit()
            self._db.close()
            self._db = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the HTTP cache is not open (open_spider opens it)")
        return self._db

    def retrieve_response(self, spider: Spider, request: Request) -> Response | None:
        key = self._fingerprinter.fingerprint(request)
        sql = ("SELECT stored_at, status, url, header_len, zipped, payload FROM responses "
               "WHERE fingerprint = ?")  # fmt: skip
        row = self._conn().execute(sql, (key,)).fetchone()
        if row is None:
            return None
        stored_at, status, url, header_len, zipped, payload = row
        if 0 < self.expiration_secs < time.time() - stored_at:
            return None
        data = zlib.decompress(payload) if zipped else payload
        request.meta["cache_timestamp"] = stored_at
        return response_from_dict({"url": url, "status": status, "body": data[header_len:],
                                   "headers": headers_raw_to_dict(data[:header_len])})  # fmt: skip

    def store_response(self, spider: Spider, request: Request, response: Response) -> None:
        db = self._conn()
        headers = headers_dict_to_raw(response.headers) or b""
        raw = headers + response.body
        packed = zlib.compress(raw, _ZLIB_LEVEL)
        zipped = len(packed) < len(raw)
        try:  # REPLACE deletes the old row and inserts a new one: a new, highest id
            db.execute(
                "INSERT OR REPLACE INTO responses (fingerprint, stored_at, status, url, "
                "header_len, zipped, size, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (self._fingerprinter.fingerprint(request), time.time(), response.status,
                 response.url, len(headers), int(zipped), len(raw), packed if zipped else raw),
            )  # fmt: skip
            self._pending += 1
            now = time.monotonic()
            if self._pending >= _COMMIT_EVERY or now - self._committed_at >= _COMMIT_S:
                db.commit()
                self._pending, self._committed_at = 0, now
        except sqlite3.Error as exc:  # a full disk, say: the crawl goes on, uncached
            spider.crawler.stats.inc_value("kiln/httpcache/store_error")
            logger.warning("HTTP cache: could not store %s: %s", response.url, exc)


def held_bytes(path: Path) -> dict[str, Any]:
    """Rows and the header + body bytes a cache file holds, and its disk usage."""
    if not path.is_file():
        return {"responses": 0, "held_bytes": 0, "disk_bytes": 0}
    db = connect(path)
    try:
        rows, held = db.execute("SELECT count(*), coalesce(sum(size), 0) FROM responses").fetchone()
    finally:
        db.close()
    return {"responses": rows, "held_bytes": held, "disk_bytes": disk_bytes(path)}
