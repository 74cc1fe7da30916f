"""Bound the HTTP cache: `python -m crawlers.httpcache_prune .kiln/httpcache --max-mb 64`
(`python -m tasks.crawl` calls `prune_http_cache` after each successful crawl).

The cache is Scrapy's FilesystemCacheStorage (crawlers/settings.py): one directory per request,
`<cache_dir>/<spider name>/<first 2 hex digits>/<request fingerprint in hex>/`, holding `meta`,
`pickled_meta`, `response_headers`, `response_body`, `response_data`, `request_headers` and
`request_body` (Scrapy 2.19; checked on a cache made by a crawl of the demo site). Whole entries
are removed, least recently stored first, until the entries take at most `max_bytes`.

* "Recently" is the entry's newest file mtime: Scrapy rewrites an entry when it stores a
  response, a 304 revalidation included, but not when it serves one that is still fresh (an
  image with `max-age` of a day), so such an entry ages from when it was stored. Removing it
  costs one download more on the next crawl, never a wrong answer.
* Bytes are disk usage (`st_blocks`, what `du` counts), not file lengths: the demo site's entry
  holds 1.4 kB in 7 files but takes 28 KiB on ext4 (4 KiB blocks, the directory included; `du`).
* An entry is renamed aside (`<fingerprint>.pruned`, one atomic rename in the same directory)
  before it is deleted, so Scrapy sees a whole entry or none: it reads `pickled_meta` first and
  then the response files, and a half-deleted entry would fail the crawl. A `.pruned` left by an
  interrupted prune is deleted by the next one. Anything else in the cache is left alone.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

_KEY = re.compile(r"[0-9a-f]{4,}")  # a request fingerprint in hex (Scrapy's: SHA-1, 40 digits)
_ASIDE = ".pruned"  # suffix of an entry renamed aside, about to be deleted


@dataclass(frozen=True)
class PruneResult:
    entries_removed: int
    bytes_before: int  # disk usage of the entries (and of leftover `.pruned` ones), in bytes
    bytes_after: int  # disk usage of the entries kept, in bytes; <= max_bytes


@dataclass(frozen=True)
class _Entry:
    path: Path
    bytes: int  # disk usage
    used: float  # newest mtime of its files, seconds since the epoch


def _disk_bytes(st: os.stat_result) -> int:
    blocks = getattr(st, "st_blocks", None)  # POSIX; 512-byte units whatever the block size
    return st.st_size if blocks is None else blocks * 512


def _entry(path: Path) -> _Entry:
    # One scandir and one stat per file: the cache of a 1000-item crawl has 2042 entries of 7
    # files, and pathlib's is_file + lstat twice per file made this 0.9 s of a 4.9 s refresh.
    with os.scandir(path) as it:
        stats = [e.stat(follow_symlinks=False) for e in it if e.is_file(follow_symlinks=False)]
    own = path.lstat()
    newest = max((st.st_mtime for st in stats), default=own.st_mtime)
    return _Entry(path, _disk_bytes(own) + sum(_disk_bytes(st) for st in stats), newest)


def _entry_dirs(cache_dir: Path) -> tuple[list[Path], list[Path]]:
    """Entry directories, and entries a previous prune renamed aside but did not delete."""
    entries, aside = [], []
    for spider in sorted(p for p in cache_dir.iterdir() if p.is_dir()):
        for prefix in sorted(p for p in spider.iterdir() if p.is_dir()):
            for path in sorted(p for p in prefix.iterdir() if p.is_dir()):
                key = path.name.removesuffix(_ASIDE)
                if not (_KEY.fullmatch(key) and key[:2] == prefix.name):
                    continue  # not Scrapy's; not ours to delete
                (aside if path.name.endswith(_ASIDE) else entries).append(path)
    return entries, aside


def _remove(path: Path) -> None:
    """Delete one entry: first renamed aside (atomic), so it is never seen half there."""
    aside = path if path.name.endswith(_ASIDE) else path.rename(path.with_name(path.name + _ASIDE))
    shutil.rmtree(aside)
    prefix = aside.parent
    if not any(prefix.iterdir()):  # Scrapy makes the <2 hex> directory again when it needs it
        prefix.rmdir()


def prune_http_cache(cache_dir: Path, max_bytes: int) -> PruneResult:
    """Remove whole entries of Scrapy's filesystem HTTP cache in `cache_dir`, least recently
    stored first, until they take at most `max_bytes` of disk. No cache: nothing to do."""
    if max_bytes < 0:
        raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
    if not cache_dir.is_dir():
        logger.info("http cache %s: absent, nothing to prune", cache_dir)
        return PruneResult(0, 0, 0)
    paths, leftovers = _entry_dirs(cache_dir)
    entries = sorted((_entry(p) for p in paths), key=lambda e: (e.used, str(e.path)))
    before = sum(e.bytes for e in entries) + sum(_entry(p).bytes for p in leftovers)
    for path in leftovers:
        _remove(path)
    total, removed = sum(e.bytes for e in entries), 0
    for entry in entries:
        if total <= max_bytes:
            break
        _remove(entry.path)
        total -= entry.bytes
        removed += 1
    logger.info(
        "http cache %s: removed %d of %d entries (least recently stored first)%s, "
        "%.1f -> %.1f MiB of disk (limit %.1f MiB)",
        cache_dir, removed, len(entries),
        f" and {len(leftovers)} left by an interrupted prune" if leftovers else "",
        before / 2**20, total / 2**20, max_bytes / 2**20,
    )  # fmt: skip
    return PruneResult(entries_removed=removed, bytes_before=before, bytes_after=total)


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
