"""Bound the HTTP cache: `python -m crawlers.httpcache_prune .kiln/httpcache --max-mb 64`
(`python -m tasks.crawl` calls `prune_http_cache` after each crawl).

The cache is one SQLite file, `<cache_dir>/httpcache.sqlite3` (crawlers/httpcache_sqlite.py).
Its size is what it takes on disk, as `du` counts it: the file's blocks (`st_blocks`) with its
write-ahead log, not the bytes of the responses it holds. Whole responses are removed, least
recently stored first (`stored_at`, then the store order), and the freed pages are given back to
the file system (`PRAGMA incremental_vacuum`, then, when part-filled pages keep the file over the
limit, a `VACUUM` that rewrites it compact), until the file takes at most `max_bytes`.

* "Recently" is when the response was stored: Scrapy stores a response again after a 304
  revalidation, but not when it serves one that is still fresh (an image with `max-age` of a
  day), so such a response ages from when it was stored. Removing it costs one download more on
  the next crawl, never a wrong answer.
* Each round of deletes is one transaction: the crawl (the only other user, and never at the
  same time: the crawl stage prunes after its spider ended) sees a response whole or not at all.
* Entries of Scrapy's FilesystemCacheStorage, which Kiln used before (one directory per
  response, `<cache_dir>/<spider>/<2 hex digits>/<fingerprint>/`, ~28 KiB of disk for a 1 kB
  page), are never read again: the first prune deletes all of them and logs how much that freed.
  Anything else in `cache_dir` is left alone.
"""

from __future__ import annotations

import argparse
import logging
import re
import shutil
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path

from crawlers.httpcache_sqlite import cache_file, connect, disk_bytes, file_bytes

logger = logging.getLogger(__name__)

_KEY = re.compile(r"[0-9a-f]{4,}")  # a request fingerprint in hex (Scrapy's: SHA-1, 40 digits)
_LEGACY_FILES = {"meta", "pickled_meta", "response_headers", "response_body", "response_data",
                 "request_headers", "request_body"}  # fmt: skip
_ROW_OVERHEAD = 64  # bytes per row besides its payload and url: fingerprint, index, record


@dataclass(frozen=True)
class PruneResult:
    entries_removed: int  # responses removed (with the old filesystem storage's entries)
    bytes_before: int  # disk usage of the cache, in bytes (the old storage's entries included)
    bytes_after: int  # disk usage of what is kept, in bytes; <= max_bytes


def _legacy_entries(cache_dir: Path) -> list[Path]:
    """The entry directories of Scrapy's filesystem storage (with any `.pruned` ones an older
    Kiln's interrupted prune left)."""
    entries = []
    for spider in sorted(p for p in cache_dir.iterdir() if p.is_dir()):
        for prefix in sorted(p for p in spider.iterdir() if p.is_dir()):
            for path in sorted(p for p in prefix.iterdir() if p.is_dir()):
                key = path.name.removesuffix(".pruned")
                files = {f.name for f in path.iterdir()}
                if _KEY.fullmatch(key) and key[:2] == prefix.name and files <= _LEGACY_FILES:
                    entries.append(path)
    return entries


def _du(path: Path) -> int:
    return sum(file_bytes(p) for p in [path, *path.iterdir()])


def _remove_legacy(cache_dir: Path) -> tuple[int, int]:
    """Delete the filesystem storage's entries (and the directories they leave empty)."""
    entries = _legacy_entries(cache_dir)
    freed = 0
    for path in entries:
        freed += _du(path)
        shutil.rmtree(path)
        for parent in (path.parent, path.parent.parent):  # <2 hex>/, then <spider>/
            if not any(parent.iterdir()):
                freed += file_bytes(parent)
                parent.rmdir()
    if entries:
        logger.info(
            "http cache %s: deleted %d entries of Scrapy's filesystem storage, which Kiln no "
            "longer reads (%.1f MiB)", cache_dir, len(entries), freed / 2**20,
        )  # fmt: skip
    return len(entries), freed


def _shrink(db: sqlite3.Connection, path: Path, max_bytes: int) -> int:
    """Delete the least recently stored rows until the file takes at most `max_bytes`; the
    number of rows deleted."""
    removed = 0
    while (size := disk_bytes(path, shm=False)) > max_bytes:
        rows = db.execute("SELECT id, length(payload) + length(url) FROM responses "
                          "ORDER BY stored_at, id").fetchall()  # fmt: skip
        if not rows:
            break
        live = sum(n + _ROW_OVERHEAD for _, n in rows)
        # The file holds its rows plus page overhead and free space: free the same share of it,
        # at least one row.
        to_free, ids = (size - max_bytes) * live / size, []
        for row_id, n in rows:
            if ids and to_free <= 0:
                break
            ids.append(row_id)
            to_free -= n + _ROW_OVERHEAD
        with db:  # one transaction
            db.executemany("DELETE FROM responses WHERE id = ?", ((i,) for i in ids))
        removed += len(ids)
        _vacuum(db, "PRAGMA incremental_vacuum")  # the pages the deleted rows emptied
        if disk_bytes(path, shm=False) > max_bytes:
            _vacuum(db, "VACUUM")  # and those they left part-filled: the file rewritten compact
    return removed


def _vacuum(db: sqlite3.Connection, sql: str) -> None:
    db.execute(sql).fetchall()  # incremental_vacuum frees one page per step: run it through
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()  # into the file, the log emptied


def prune_http_cache(cache_dir: Path, max_bytes: int) -> PruneResult:
    """Remove whole responses from the HTTP cache in `cache_dir`, least recently stored first,
    until it takes at most `max_bytes` of disk. No cache: nothing to do."""
    if max_bytes < 0:
        raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
    if not cache_dir.is_dir():
        logger.info("http cache %s: absent, nothing to prune", cache_dir)
        return PruneResult(0, 0, 0)
    legacy, legacy_bytes = _remove_legacy(cache_dir)
    path = cache_file(cache_dir)
    if not path.is_file():
        return PruneResult(legacy, legacy_bytes, 0)
    before = disk_bytes(path)
    removed, total = 0, before
    if before > max_bytes:
        db = connect(path)
        try:
            total = db.execute("SELECT count(*) FROM responses").fetchone()[0]
            removed = _shrink(db, path, max_bytes)
        finally:
            db.close()
        if disk_bytes(path) > max_bytes:  # a limit below what an empty cache file takes
            for part in (path, *(path.with_name(path.name + s) for s in ("-wal", "-shm"))):
                part.unlink(missing_ok=True)  # the next crawl starts a new one
        logger.info(
            "http cache %s: removed %d of %d responses (least recently stored first), "
            "%.1f -> %.1f MiB of disk (limit %.1f MiB)",
            path, removed, total, before / 2**20, disk_bytes(path) / 2**20, max_bytes / 2**20,
        )  # fmt: skip
    else:
        logger.info("http cache %s: %.1f MiB of disk, within the limit of %.1f MiB",
                    path, before / 2**20, max_bytes / 2**20)  # fmt: skip
    return PruneResult(entries_removed=legacy + removed, bytes_before=legacy_bytes + before,
                       bytes_after=disk_bytes(path))  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cache_dir", type=Path, help="the HTTP cache, e.g. .kiln/httpcache")
    parser.add_argument("--max-mb", type=float, required=True, help="MiB of disk to keep")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.max_mb < 0:
        print(f"crawlers.httpcache_prune: --max-mb {args.max_mb} < 0", file=sys.stderr)
        return 2
    prune_http_cache(args.cache_dir, int(args.max_mb * 2**20))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
