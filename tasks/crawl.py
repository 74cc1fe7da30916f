"""Crawl stage: `python -m tasks.crawl` (DVC stage `crawl`; frozen, the refresh flow runs it).

Runs the generic spider in a subprocess (`python -m crawlers.run`: Twisted's reactor cannot
restart inside one process; its log is streamed here), then writes `data/raw/` atomically and
`reports/crawl.json` (docs/contracts.md). Rows are sorted and keep the `first_seen` of the
previous snapshot while their (url, content_hash) is unchanged, so crawling an unchanged site
again gives a byte-identical `data/raw/`.

Exit status: 0 ok; 1 the crawl failed (spider process failed or was interrupted, zero items);
2 it must not start (params.yaml invalid, a start URL refused, a bad selector). On any failure
the previous `data/raw/` and `reports/crawl.json` stay as they were.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import crawlers
from crawlers.urlguard import check_crawl_config
from tasks.io import atomic_dir, read_jsonl, write_json, write_jsonl
from tasks.params import CrawlParams, ParamsError, load_params

logger = logging.getLogger("kiln.crawl")

RAW_DIR = Path("data/raw")
REPORT_PATH = Path("reports/crawl.json")
WORK_DIR = Path(".kiln")  # the spider's scratch output lives here, beside data/, not in /tmp
_ROW_KEYS = ("url", "content_hash", "first_seen", "image_url", "image_path")
_IMAGE_PATH = re.compile(r"images/([0-9a-f]{64})\.(png|jpg|gif|webp)")
_SCRAPY_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ")  # ours has a time already
_SCRAPY_LEVEL = re.compile(r"^(\[[\w.]+\]) (DEBUG|INFO|WARNING|ERROR|CRITICAL): ")
_CODE_ROOT = Path(crawlers.__file__).resolve().parent.parent  # makes `crawlers` importable


class CrawlConfigError(ValueError):
    """The crawl must not start: the message names the setting."""


class CrawlError(RuntimeError):
    """The crawl ran but its result must not replace data/raw."""


@dataclass(frozen=True)
class CrawlResult:
    items: list[dict[str, Any]]  # rows of data/raw/items.jsonl, sorted by url
    rejects: list[dict[str, Any]]  # rows of data/raw/rejects.jsonl, sorted by url
    images: dict[str, Path]  # image_path (relative to data/raw) -> the downloaded file
    stats: dict[str, float]  # reports/crawl.json


def _forward(spider_log: logging.Logger, line: str) -> None:
    """Re-log one line of the spider's output at its own level, without its second timestamp."""
    text = _SCRAPY_TIME.sub("", line.rstrip())
    match = _SCRAPY_LEVEL.match(text)
    level = logging.getLevelName(match[2]) if match else logging.INFO
    spider_log.log(level, _SCRAPY_LEVEL.sub(r"\1 ", text))


def _run_spider(cfg: CrawlParams, workdir: Path, out: Path) -> None:
    config = workdir / "crawl.json"
    config.write_text(cfg.model_dump_json(), encoding="utf-8")
    cmd = [sys.executable, "-m", "crawlers.run", "--config", str(config), "--out", str(out)]
    path = [str(_CODE_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path), "PYTHONUNBUFFERED": "1"}
    logger.info("starting the spider: %s", " ".join(cmd))
    spider_log = logging.getLogger("kiln.crawl.spider")
    with subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", env=env
    ) as proc:
        try:
            for line in proc.stdout or ():
                _forward(spider_log, line)
        except (KeyboardInterrupt, SystemExit):
            proc.kill()  # its output is scratch, discarded with the work directory
            raise
    if proc.returncode == 2:
        raise CrawlConfigError("the spider refused its configuration (see its log above)")
    if proc.returncode != 0:
        raise CrawlError(f"the spider process exited with status {proc.returncode}")


def _content_hash(fields: dict[str, str | None], image: bytes) -> str:
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True, ensure_ascii=False).encode())
    digest.update(image)
    return digest.hexdigest()


def _item_rows(
    spider_items: list[dict[str, Any]], out: Path, previous: list[dict[str, Any]], stamp: str
) -> list[dict[str, Any]]:
    first_seen = {
        (r["url"], r["content_hash"]): r["first_seen"]
        for r in previous
        if {"url", "content_hash", "first_seen"} <= r.keys()
    }
    rows: dict[str, dict[str, Any]] = {}
    for item in spider_items:
        match = _IMAGE_PATH.fullmatch(item["image_path"] or "")
        image = (out / item["image_path"]).read_bytes() if match else b""
        if not match or hashlib.sha256(image).hexdigest() != match.group(1):
            raise CrawlError(f"image of {item['url']} is missing or misnamed: {item['image_path']}")
        url, content_hash = item["url"], _content_hash(item["fields"], image)
        row = {
            **item["fields"],
            "url": url,
            "content_hash": content_hash,
            "first_seen": first_seen.get((url, content_hash), stamp),
            "image_url": item["image_url"],
            "image_path": item["image_path"],
        }
        if url in rows:  # two requests redirected to one page: keep one, deterministically
            logger.warning("%s was crawled twice; keeping one copy", url)
            row = min(rows[url], row, key=lambda r: r["content_hash"])
        rows[url] = row
    return [rows[url] for url in sorted(rows)]


def _report(spider: dict[str, Any], n_items: int, n_rejects: int, duration_s: float) -> dict:
    pages = spider.get("kiln/pages", 0)
    return {
        "pages": pages,
        "items": n_items,
        "rejects": n_rejects,
        "failures": spider.get("kiln/failures", 0),
        "retries": spider.get("retry/count", 0),
        "bytes": spider.get("downloader/response_bytes", 0),
        "duration_s": round(duration_s, 3),
        "pages_per_s": round(pages / duration_s, 1) if duration_s > 0 else 0.0,
        "refused": spider.get("kiln/refused", 0),
        "robots_forbidden": spider.get("robotstxt/forbidden", 0),
    }


def crawl_site(
    cfg: CrawlParams,
    previous_items: list[dict[str, Any]],
    workdir: Path,
    now: datetime | None = None,
) -> CrawlResult:
    """Crawl per `cfg` into `workdir` and assemble the rows of data/raw (nothing written there).

    `previous_items` are the rows of the last data/raw/items.jsonl ([] if none): their
    `first_seen` is kept for unchanged (url, content_hash). Raises CrawlConfigError before
    crawling, CrawlError when the crawl failed or found no item.
    """
    clash = sorted(set(cfg.fields) & set(_ROW_KEYS))
    if clash:
        raise CrawlConfigError(f"crawl.fields may not be named {clash}: those are row keys")
    try:
        check_crawl_config(cfg)
    except ValueError as exc:
        raise CrawlConfigError(str(exc)) from exc
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    out = workdir / "spider"
    started = time.monotonic()
    _run_spider(cfg, workdir, out)
    duration_s = time.monotonic() - started
    spider = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    items = _item_rows(read_jsonl(out / "items.jsonl"), out, previous_items, stamp)
    rejects = sorted(read_jsonl(out / "rejects.jsonl"), key=lambda r: (r["url"], r["reason"]))
    stats = _report(spider, len(items), len(rejects), duration_s)
    if spider.get("finish_reason") == "closespider_pagecount":
        logger.warning(
            "stopped at crawl.max_pages=%d responses: the snapshot may be partial", cfg.max_pages
        )
    if not items:
        unreachable = spider.get("kiln/robots_unreachable", 0)
        raise CrawlError(
            f"zero items from {stats['pages']} pages ({stats['rejects']} rejects, "
            f"{stats['failures']} failures, {stats['robots_forbidden']} forbidden by robots.txt"
            + (", robots.txt unreachable so the host was skipped" if unreachable else "")
            + f", {stats['refused']} refused URLs)"
        )
    images = {row["image_path"]: out / row["image_path"] for row in items}
    return CrawlResult(items=items, rejects=rejects, images=images, stats=stats)


def write_raw(result: CrawlResult, raw_dir: Path = RAW_DIR) -> None:
    """Swap in a new data/raw in one rename (tasks.io.atomic_dir)."""
    with atomic_dir(raw_dir) as tmp:
        write_jsonl(tmp / "items.jsonl", result.items)
        write_jsonl(tmp / "rejects.jsonl", result.rejects)
        (tmp / "images").mkdir()
        for rel, src in sorted(result.images.items()):
            shutil.copyfile(src, tmp / rel)


def _previous_items(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    try:
        return read_jsonl(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CrawlError(f"{path} is not valid JSON lines ({exc}); move it away") from exc


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds: stops the spider, removes the scratch dir


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        params = load_params()
        previous = _previous_items(RAW_DIR / "items.jsonl")
        WORK_DIR.mkdir(exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="crawl-", dir=WORK_DIR) as workdir:
            result = crawl_site(params.crawl, previous, Path(workdir))
            write_raw(result)
        write_json(REPORT_PATH, result.stats)
    except (ParamsError, CrawlConfigError) as exc:
        logger.error("crawl refused to start: %s", exc)
        return 2
    except CrawlError as exc:
        logger.error("crawl failed: %s; data/raw left as it was", exc)
        return 1
    s = result.stats
    logger.info(
        "crawl done: %d items, %d rejects (%d failures, %d retries) from %d pages in %.1f s -> %s",
        s["items"], s["rejects"], s["failures"], s["retries"], s["pages"], s["duration_s"], RAW_DIR,
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
