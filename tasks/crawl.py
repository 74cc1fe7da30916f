"""Crawl stage: `python -m tasks.crawl` (DVC stage `crawl`; frozen, the refresh flow runs it).

Runs the generic spider in a subprocess (`python -m crawlers.run`: Twisted's reactor cannot
restart inside one process; its log is streamed here), then writes `data/raw/` atomically and
`reports/crawl.json` (docs/contracts.md). Rows are sorted and keep the `first_seen` of the
previous snapshot while their (url, content_hash) is unchanged, so crawling an unchanged site
again gives a byte-identical `data/raw/`.

The spider works in `.kiln/crawl-job/`, with Scrapy's JOBDIR there: SIGINT/SIGTERM stops it
gracefully (requests in flight finish, pending ones are saved) and the next run with the same
`crawl` params resumes where it stopped; other params start afresh. The HTTP cache in
`.kiln/httpcache/` (`crawl.http_cache`) makes a refresh send conditional requests only.

Exit status: 0 ok; 1 the crawl failed (spider process failed, zero items); 2 it must not start
(params.yaml invalid, a start URL refused, a bad selector); 130 interrupted (resumable). On any
failure the previous `data/raw/` and `reports/crawl.json` stay as they were.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import signal
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from crawlers import revisit
from crawlers.launch import run_spider
from crawlers.revisit import PageVisit
from crawlers.urlguard import check_crawl_config
from tasks.io import atomic_dir, read_jsonl, write_json, write_jsonl
from tasks.params import CrawlParams, ParamsError, load_params

logger = logging.getLogger("kiln.crawl")

RAW_DIR = Path("data/raw")
REPORT_PATH = Path("reports/crawl.json")
WORK_DIR = Path(".kiln")  # the spider's scratch output lives here, beside data/, not in /tmp
JOB_DIR = WORK_DIR / "crawl-job"  # an unfinished crawl: its output so far and Scrapy's JOBDIR
CACHE_DIR = WORK_DIR / "httpcache"
STATE_PATH = WORK_DIR / "crawl-state.json"  # when each item page was checked (crawlers/revisit.py)
_ROW_KEYS = ("url", "content_hash", "first_seen", "image_url", "image_path")
_IMAGE_PATH = re.compile(r"images/([0-9a-f]{64})\.(png|jpg|gif|webp)")


class CrawlConfigError(ValueError):
    """The crawl must not start: the message names the setting."""


class CrawlError(RuntimeError):
    """The crawl ran but its result must not replace data/raw."""


class CrawlInterrupted(CrawlError):
    """SIGINT/SIGTERM stopped the crawl; the job directory lets the next run resume it."""


@dataclass(frozen=True)
class CrawlResult:
    items: list[dict[str, Any]]  # rows of data/raw/items.jsonl, sorted by url
    rejects: list[dict[str, Any]]  # rows of data/raw/rejects.jsonl, sorted by url
    images: dict[str, Path]  # image_path (relative to data/raw) -> the downloaded file
    stats: dict[str, float]  # reports/crawl.json
    visits: dict[str, PageVisit]  # .kiln/crawl-state.json once data/raw is written


def _run_spider(workdir: Path, cache_dir: Path | None, resume: bool) -> Path:
    returncode, interrupted = run_spider(workdir, cache_dir, resume)
    if interrupted:
        raise CrawlInterrupted("interrupted; run the crawl again to resume it")
    if returncode == 2:
        raise CrawlConfigError("the spider refused its configuration (see its log above)")
    if returncode != 0:
        raise CrawlError(f"the spider process exited with status {returncode}")
    return workdir / "spider"


def _content_hash(fields: dict[str, Any], image: bytes) -> str:
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True, ensure_ascii=False).encode())
    digest.update(image)
    return digest.hexdigest()


def _item_rows(
    spider_items: list[dict[str, Any]],
    out: Path,
    previous: list[dict[str, Any]],
    stamp: str,
    with_images: bool = True,
) -> list[dict[str, Any]]:
    first_seen = {
        (r["url"], r["content_hash"]): r["first_seen"]
        for r in previous
        if {"url", "content_hash", "first_seen"} <= r.keys()
    }
    rows: dict[str, dict[str, Any]] = {}
    for item in spider_items:
        image = b""
        if with_images:
            match = _IMAGE_PATH.fullmatch(item["image_path"] or "")
            image = (out / item["image_path"]).read_bytes() if match else b""
            if not match or hashlib.sha256(image).hexdigest() != match.group(1):
                raise CrawlError(f"image of {item['url']} is missing or misnamed: "
                                 f"{item['image_path']}")  # fmt: skip
        url, content_hash = item["url"], _content_hash(item["fields"], image)
        row = {
            **item["fields"],
            "url": url,
            "content_hash": content_hash,
            "first_seen": first_seen.get((url, content_hash), stamp),
        }
        if with_images:
            row |= {"image_url": item["image_url"], "image_path": item["image_path"]}
        if url in rows:  # redirected to one page, or fetched again by a resumed crawl: keep one
            logger.info("%s was crawled twice; keeping one copy", url)
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
        "robots_unreachable": spider.get("kiln/robots_unreachable", 0),
        "not_modified": spider.get("httpcache/revalidate", 0),  # 304: stored copy reused
        "from_cache": spider.get("httpcache/hit", 0),  # served without a new download
        "kept": spider.get("kiln/carried", 0),  # item pages not requested (revisit_after_s)
    }


def crawl_site(
    cfg: CrawlParams,
    previous_items: list[dict[str, Any]],
    workdir: Path,
    now: datetime | None = None,
    *,
    cache_dir: Path | None = None,
    resume: bool = False,
    visits: dict[str, PageVisit] | None = None,
    raw_dir: Path = RAW_DIR,
) -> CrawlResult:
    """Crawl per `cfg` into `workdir` and assemble the rows of data/raw (nothing written there).

    `previous_items` are the rows of the last data/raw/items.jsonl ([] if none): their
    `first_seen` is kept for unchanged (url, content_hash). `resume` continues the crawl that
    `workdir` holds. `visits` (.kiln/crawl-state.json) say which item pages were checked
    recently enough (`crawl.revisit_after_s`) that their rows in `previous_items`, and their
    images in `raw_dir`, are kept without a request. Raises CrawlConfigError before crawling,
    CrawlError when the crawl failed or found no item (CrawlInterrupted when stopped by a signal).
    """
    clash = sorted(set(cfg.fields) & set(_ROW_KEYS))
    if clash:
        raise CrawlConfigError(f"crawl.fields may not be named {clash}: those are row keys")
    try:
        check_crawl_config(cfg)
    except ValueError as exc:
        raise CrawlConfigError(str(exc)) from exc
    now = now or datetime.now(UTC)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    (workdir / "crawl.json").write_text(cfg.model_dump_json(by_alias=True), encoding="utf-8")
    skippable = revisit.skippable(
        visits or {}, previous_items, cfg.revisit_after_s, now.timestamp(), raw_dir
    )
    (workdir / "spider").mkdir(exist_ok=True)
    write_json(workdir / "spider" / revisit.CARRY_FILE, skippable)
    if skippable:
        logger.info("%d item pages were checked recently enough to keep without a request "
                    "(crawl.revisit_after_s=%g)", len(skippable), cfg.revisit_after_s)  # fmt: skip
    started = time.monotonic()
    out = _run_spider(workdir, cache_dir, resume)
    duration_s = time.monotonic() - started
    spider = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    with_images = cfg.image_field is not None
    fetched = read_jsonl(out / "items.jsonl")
    items = _item_rows(fetched, out, previous_items, stamp, with_images)
    kept = _kept_rows(out, previous_items, skippable, {row["url"] for row in items})
    items = sorted(items + kept, key=lambda row: row["url"])
    unique = {json.dumps(r, sort_keys=True): r for r in read_jsonl(out / "rejects.jsonl")}
    rejects = sorted(unique.values(), key=lambda r: (r["url"], r["reason"]))
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
    images = {row["image_path"]: out / row["image_path"] for row in items if with_images}
    images |= {row["image_path"]: raw_dir / row["image_path"] for row in kept if with_images}
    visits_now = _visits(cfg, fetched, items, now.timestamp())
    visits_now |= {row["url"]: visits[row["url"]] for row in kept if visits}  # not checked: as was
    return CrawlResult(items=items, rejects=rejects, images=images, stats=stats,
                       visits=visits_now)  # fmt: skip


def _kept_rows(
    out: Path,
    previous: list[dict[str, Any]],
    skippable: dict[str, Any],
    fetched_urls: set[str],
) -> list[dict[str, Any]]:
    """The rows of the last data/raw for the item pages the spider did not request."""
    path = out / revisit.CARRIED_FILE
    carried = {row["url"] for row in read_jsonl(path)} if path.exists() else set()
    unknown = sorted(carried - skippable.keys())
    if unknown:  # the spider may skip only what it was offered
        raise CrawlError(f"the spider kept {len(unknown)} pages it was not offered: {unknown[:3]}")
    return [row for row in previous if row["url"] in carried - fetched_urls]


def _visits(
    cfg: CrawlParams, fetched: list[dict[str, Any]], rows: list[dict[str, Any]], now: float
) -> dict[str, PageVisit]:
    """A visit for every item page the spider fetched that gave a row of data/raw."""
    by_url = {row["url"]: row for row in rows}
    listed = [name for name, spec in cfg.fields.items() if spec.from_ == "list"]
    visits = {}
    for item in fetched:
        row = by_url.get(item["url"])
        if item.get("links") is None or row is None:  # a block of a list page, not a page
            continue
        visits[item["url"]] = PageVisit(
            checked_at=now,
            fresh_s=item["fresh_s"],
            content_hash=row["content_hash"],
            list_values={name: row[name] for name in listed},
            links=item["links"],
        )
    return visits


def write_raw(result: CrawlResult, raw_dir: Path = RAW_DIR) -> None:
    """Swap in a new data/raw in one rename (tasks.io.atomic_dir)."""
    with atomic_dir(raw_dir) as tmp:
        write_jsonl(tmp / "items.jsonl", result.items)
        write_jsonl(tmp / "rejects.jsonl", result.rejects)
        if not result.images:
            return
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
    raise SystemExit(128 + signum)  # unwinds into _run_spider, which stops the spider gracefully


def _can_resume(job: Path, cfg: CrawlParams) -> bool:
    """An interrupted crawl of the same `crawl` params is waiting in `job`."""
    config = job / "crawl.json"
    return (
        (job / "jobdir").is_dir()
        and config.is_file()
        and config.read_text(encoding="utf-8") == cfg.model_dump_json(by_alias=True)
    )


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        params = load_params()
        cfg = params.crawl
        previous = _previous_items(RAW_DIR / "items.jsonl")
        resume = _can_resume(JOB_DIR, cfg)
        if not resume:
            shutil.rmtree(JOB_DIR, ignore_errors=True)
        JOB_DIR.mkdir(parents=True, exist_ok=True)
        cache = CACHE_DIR if cfg.http_cache else None
        visits = revisit.load_state(STATE_PATH, cfg)
        result = crawl_site(cfg, previous, JOB_DIR, cache_dir=cache, resume=resume, visits=visits)
        write_raw(result)
        write_json(REPORT_PATH, result.stats)
        revisit.save_state(STATE_PATH, cfg, result.visits)  # after data/raw: it describes it
    except CrawlInterrupted as exc:
        logger.warning("crawl %s; data/raw left as it was", exc)
        return 130
    except (ParamsError, CrawlConfigError) as exc:
        logger.error("crawl refused to start: %s", exc)
        shutil.rmtree(JOB_DIR, ignore_errors=True)
        return 2
    except CrawlError as exc:
        logger.error("crawl failed: %s; data/raw left as it was", exc)
        shutil.rmtree(JOB_DIR, ignore_errors=True)
        return 1
    shutil.rmtree(JOB_DIR, ignore_errors=True)  # done: the next crawl starts afresh
    s = result.stats
    logger.info(
        "crawl done: %d items (%d kept without a request), %d rejects (%d failures, %d retries) "
        "from %d pages in %.1f s -> %s", s["items"], s["kept"], s["rejects"], s["failures"],
        s["retries"], s["pages"], s["duration_s"], RAW_DIR,
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
