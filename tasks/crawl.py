"""Crawl stage: `python -m tasks.crawl` (DVC stage `crawl`; frozen, the refresh flow runs it).

Runs the generic spider in a forked child process (`crawlers.launch`: Twisted's reactor cannot
restart inside one process; its log is streamed here), then writes `data/raw/` atomically and
`reports/crawl.json` (docs/contracts.md). Rows are sorted and keep the `first_seen` of the
previous snapshot while their (url, content_hash) is unchanged, so crawling an unchanged site
again gives a byte-identical `data/raw/`.

The spider works in `.kiln/crawl-job/`, with Scrapy's JOBDIR there: SIGINT/SIGTERM stops it
gracefully (requests in flight finish, pending ones are saved) and the next run with the same
`crawl` params resumes where it stopped, and asks again for the pages that failed for want of an
answer (a run killed with the site it serves, crawlers/spiders/generic.py); a crawl killed
before it could save its state, or other params, start afresh. The HTTP cache in
`.kiln/httpcache/` (`crawl.http_cache`, pruned to `crawl.http_cache_max_mb` after each crawl)
makes a refresh send conditional requests only, and item pages checked within
`crawl.revisit_after_s` are not requested at all (`crawlers/revisit.py`, `.kiln/crawl-state.json`).

A crawl that did not reach its end (stopped at `crawl.max_pages`, `crawl.max_files` or
`crawl.max_items`, or closed for any reason but "finished", crawlers/limits.py) is partial:
`reports/crawl.json` says `partial: true` and why (`partial_reason`). It replaces data/raw only
when `crawl.allow_partial` is true. Otherwise the stage refuses it, here, in the stage that would
record it, so that neither the flow nor `dvc repro` can train on it: data/raw and
reports/crawl.json stay as they were (so every later stage stays up to date), its report goes to
`reports/crawl_partial.json`, and the stage exits with status 3 and a message naming the limit.

With `source.kind` other than `crawl` the stage reads that source instead (tasks/core/sources.py)
into the same data/raw layout; nothing is crawled.

Exit status: 0 ok; 1 the crawl failed (spider process failed, zero items); 2 it must not start
(params.yaml invalid, a start URL refused, a bad selector); 3 the crawl is partial and
`crawl.allow_partial` is false; 130 interrupted (resumable). On any failure the previous
`data/raw/` and `reports/crawl.json` stay as they were.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import signal
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from crawlers import revisit
from crawlers.httpcache_prune import prune_http_cache
from crawlers.launch import run_spider
from crawlers.limits import LIMIT_REASONS
from crawlers.revisit import PageVisit
from crawlers.urlguard import check_crawl_config
from tasks.core.io import atomic_dir, read_jsonl, write_json, write_jsonl
from tasks.core.params import CrawlParams, ParamsError, load_params
from tasks.core.paths import CRAWL_PARTIAL_REPORT, CRAWL_REPORT, RAW_DIR, WORK_DIR
from tasks.core.stage import setup_logging

logger = logging.getLogger("kiln.crawl")

JOB_DIR = WORK_DIR / "crawl-job"  # an unfinished crawl: its output so far and Scrapy's JOBDIR
CACHE_DIR = WORK_DIR / "httpcache"
STATE_PATH = WORK_DIR / "crawl-state.json"  # when each item page was checked (crawlers/revisit.py)
_ROW_KEYS = ("url", "content_hash", "first_seen", "image_url", "image_path")
_IMAGE_PATH = re.compile(r"images/([0-9a-f]{64})\.(png|jpg|gif|webp)")
_FILE_PATH = re.compile(r"files/([0-9a-f]{64})\.(pdf|zip|gz|png|jpg|gif|webp|bin)")
EXIT_PARTIAL = 3  # the crawl is partial and crawl.allow_partial is false
_COUNTED = {"max_pages": "pages", "max_files": "files", "max_items": "items"}  # limit -> figure


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
    files: dict[str, Path]  # path in data/raw (images/..., files/...) -> the downloaded file
    stats: dict[str, float]  # reports/crawl.json
    visits: dict[str, PageVisit]  # .kiln/crawl-state.json once data/raw is written
    list_pages: list[str]  # the list pages parsed: fetched ahead next time (crawlers/prefetch.py)


def _run_spider(workdir: Path, cache_dir: Path | None, resume: bool) -> Path:
    returncode, interrupted = run_spider(workdir, cache_dir, resume)
    if interrupted:
        raise CrawlInterrupted("interrupted; run the crawl again to resume it")
    if returncode == 2:
        raise CrawlConfigError("the spider refused its configuration (see its log above)")
    if returncode != 0:
        raise CrawlError(f"the spider process exited with status {returncode}")
    return workdir / "spider"


def _content_hash(fields: dict[str, Any], image: bytes, files: list[bytes]) -> str:
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True, ensure_ascii=False).encode())
    digest.update(image)
    for data in files:  # crawl.file_fields in order; none: the same hash as before they existed
        digest.update(hashlib.sha256(data).digest())
    return digest.hexdigest()


def _checked(out: Path, rel: str | None, pattern: re.Pattern[str], url: str) -> bytes:
    """The bytes of a downloaded file, after checking it is there under its own hash."""
    match = pattern.fullmatch(rel or "")
    data = (out / rel).read_bytes() if match and (out / rel).is_file() else b""
    if not match or hashlib.sha256(data).hexdigest() != match.group(1):
        raise CrawlError(f"download of {url} is missing or misnamed: {rel}")
    return data


def _item_rows(
    spider_items: list[dict[str, Any]],
    out: Path,
    previous: list[dict[str, Any]],
    stamp: str,
    cfg: CrawlParams,
) -> list[dict[str, Any]]:
    first_seen = {
        (r["url"], r["content_hash"]): r["first_seen"]
        for r in previous
        if {"url", "content_hash", "first_seen"} <= r.keys()
    }
    with_images = cfg.image_field is not None
    rows: dict[str, dict[str, Any]] = {}
    for item in spider_items:
        url = item["url"]
        image = _checked(out, item["image_path"], _IMAGE_PATH, url) if with_images else b""
        paths = {name: item.get("file_paths", {}).get(name, []) for name in cfg.file_fields}
        files = [_checked(out, rel, _FILE_PATH, url) for name in cfg.file_fields
                 for rel in paths[name]]  # fmt: skip
        content_hash = _content_hash(item["fields"], image, files)
        row = {
            **item["fields"],
            "url": url,
            "content_hash": content_hash,
            "first_seen": first_seen.get((url, content_hash), stamp),
        }
        if with_images:
            row |= {"image_url": item["image_url"], "image_path": item["image_path"]}
        for name, rels in paths.items():  # a list field gets a list, any other one path or None
            one = rels[0] if rels else None
            row[f"{name}_path"] = rels if cfg.fields[name].type == "list" else one
        if url in rows:  # redirected to one page, or fetched again by a resumed crawl: keep one
            logger.info("%s was crawled twice; keeping one copy", url)
            row = min(rows[url], row, key=lambda r: r["content_hash"])
        rows[url] = row
    return [rows[url] for url in sorted(rows)]


def downloaded_paths(row: dict[str, Any], cfg: CrawlParams) -> list[str]:
    """Every file of data/raw a row points at: its image, then its crawl.file_fields files."""
    paths = [row["image_path"]] if cfg.image_field is not None else []
    for name in cfg.file_fields:
        value = row.get(f"{name}_path")
        paths += value if isinstance(value, list) else [value] if value else []
    return paths


def partial_reason(
    finish_reason: str | None, report: dict[str, Any], cfg: CrawlParams
) -> str | None:
    """Why a crawl with this Scrapy finish reason is partial (None: it reached its end)."""
    if finish_reason == "finished":
        return None
    param = LIMIT_REASONS.get(finish_reason or "")
    if param is None:
        return f"the spider closed before the end of the site (finish_reason={finish_reason})"
    what = _COUNTED[param]
    return f"stopped at crawl.{param}={getattr(cfg, param)} ({report[what]} {what})"


def _report(spider: dict[str, Any], n_items: int, n_rejects: int, duration_s: float,
            cfg: CrawlParams) -> dict:  # fmt: skip
    pages = spider.get("kiln/pages", 0)
    elapsed = float(spider.get("elapsed_time_seconds") or duration_s)
    report = {
        "pages": pages,  # what crawl.max_pages counts (crawlers/limits.py)
        "files": spider.get("kiln/files", 0),  # what crawl.max_files counts
        "items": n_items,
        "rejects": n_rejects,
        "failures": spider.get("kiln/failures", 0),
        "retries": spider.get("retry/count", 0),
        "bytes": spider.get("downloader/response_bytes", 0),
        "duration_s": round(duration_s, 3),
        # Over the spider's own running time, summed over an interrupted run and its resumption
        # (crawlers.run adds them up; duration_s is this run's only).
        "pages_per_s": round(pages / elapsed, 1) if elapsed > 0 else 0.0,
        "refused": spider.get("kiln/refused", 0),
        "robots_forbidden": spider.get("robotstxt/forbidden", 0),
        "robots_unreachable": spider.get("kiln/robots_unreachable", 0),
        "not_modified": spider.get("httpcache/revalidate", 0),  # 304: stored copy reused
        "from_cache": spider.get("httpcache/hit", 0),  # served without a new download
        "kept": spider.get("kiln/carried", 0),  # item pages not requested (revisit_after_s)
        "fetched_ahead": spider.get("kiln/prefetch/used", 0),  # list pages (crawlers/prefetch.py)
        "finish_reason": spider.get("finish_reason"),
    }
    reason = partial_reason(report["finish_reason"], report, cfg)
    return report | {"partial": reason is not None, "partial_reason": reason}


def crawl_site(
    cfg: CrawlParams,
    previous_items: list[dict[str, Any]],
    workdir: Path,
    now: datetime | None = None,
    *,
    cache_dir: Path | None = None,
    resume: bool = False,
    visits: dict[str, PageVisit] | None = None,
    list_pages: list[str] | None = None,
    raw_dir: Path = RAW_DIR,
) -> CrawlResult:
    """Crawl per `cfg` into `workdir` and assemble the rows of data/raw (nothing written there).

    `previous_items` are the rows of the last data/raw/items.jsonl ([] if none): their
    `first_seen` is kept for unchanged (url, content_hash). `resume` continues the crawl that
    `workdir` holds. `visits` (.kiln/crawl-state.json) say which item pages were checked
    recently enough (`crawl.revisit_after_s`) that their rows in `previous_items`, and their
    files in `raw_dir`, are kept without a request; `list_pages` (from the same file) are
    fetched ahead, all at once, instead of one after the other (crawlers/prefetch.py). Raises
    CrawlConfigError before crawling, CrawlError when the crawl failed or found no item
    (CrawlInterrupted when stopped by a signal).
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
    complete = [  # a kept row's files are copied from raw_dir: they must all be there
        row
        for row in previous_items
        if all((raw_dir / rel).is_file() for rel in downloaded_paths(row, cfg))
    ]
    skippable = revisit.skippable(visits or {}, complete, cfg.revisit_after_s, now.timestamp())
    (workdir / "spider").mkdir(exist_ok=True)
    write_json(workdir / "spider" / revisit.CARRY_FILE, skippable)
    write_json(workdir / "spider" / revisit.PREFETCH_FILE, list_pages or [])
    if skippable:
        logger.info("%d item pages were checked recently enough to keep without a request "
                    "(crawl.revisit_after_s=%g)", len(skippable), cfg.revisit_after_s)  # fmt: skip
    started = time.monotonic()
    out = _run_spider(workdir, cache_dir, resume)
    duration_s = time.monotonic() - started
    spider = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    fetched = read_jsonl(out / "items.jsonl")
    items = _item_rows(fetched, out, previous_items, stamp, cfg)
    kept = _kept_rows(out, previous_items, skippable, {row["url"] for row in items})
    items = sorted(items + kept, key=lambda row: row["url"])
    rejects = _final_rejects(read_jsonl(out / "rejects.jsonl"), {row["url"] for row in items})
    stats = _report(spider, len(items), len(rejects), duration_s, cfg)
    if not items:
        unreachable = spider.get("kiln/robots_unreachable", 0)
        raise CrawlError(
            f"zero items from {stats['pages']} pages ({stats['rejects']} rejects, "
            f"{stats['failures']} failures, {stats['robots_forbidden']} forbidden by robots.txt"
            + (", robots.txt unreachable so the host was skipped" if unreachable else "")
            + f", {stats['refused']} refused URLs"
            + (f"; {stats['partial_reason']}" if stats["partial"] else "")
            + ")"
        )
    kept_urls = {row["url"] for row in kept}
    files = {rel: (raw_dir if row["url"] in kept_urls else out) / rel
             for row in items for rel in downloaded_paths(row, cfg)}  # fmt: skip
    visits_now = _visits(cfg, fetched, items, now.timestamp())
    visits_now |= {  # not checked this time: their last check stands
        row["url"]: visits[row["url"]] for row in kept if visits and row["url"] in visits
    }
    parsed = out / revisit.LIST_PAGES_FILE  # absent when a custom spider crawled
    parsed_pages = json.loads(parsed.read_text(encoding="utf-8")) if parsed.is_file() else []
    return CrawlResult(items=items, rejects=rejects, files=files, stats=stats,
                       visits=visits_now, list_pages=parsed_pages)  # fmt: skip


def _final_rejects(
    spider_rejects: list[dict[str, Any]], item_urls: set[str]
) -> list[dict[str, Any]]:
    """One reject per page that gave no item: its last, in the order they came. A resumed crawl
    asks again for the pages that failed in the run it resumes (crawlers/spiders/generic.py):
    an answer replaces the earlier failure."""
    last = {row["url"]: row for row in spider_rejects if row["url"] not in item_urls}
    drop = ("list_values",)  # the spider's, for asking again; not part of data/raw
    rows = ({k: v for k, v in row.items() if k not in drop} for row in last.values())
    return sorted(rows, key=lambda r: r["url"])


def _kept_rows(
    out: Path,
    previous: list[dict[str, Any]],
    skippable: dict[str, Any],
    fetched_urls: set[str],
) -> list[dict[str, Any]]:
    """The rows of the last data/raw for the item pages the spider did not request."""
    path = out / revisit.CARRIED_FILE
    carried = {row["url"] for row in read_jsonl(path)} if path.exists() else set()
    # A resumed crawl's carried.jsonl also holds what the interrupted run was offered a moment
    # earlier; a page must at least have a row to keep.
    unknown = sorted(carried - skippable.keys() - {row["url"] for row in previous})
    if unknown:
        raise CrawlError(f"the spider kept {len(unknown)} pages with no row to keep: {unknown[:3]}")
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
    """Swap in a new data/raw in one rename (tasks.core.io.atomic_dir)."""
    with atomic_dir(raw_dir) as tmp:
        write_jsonl(tmp / "items.jsonl", result.items)
        write_jsonl(tmp / "rejects.jsonl", result.rejects)
        for rel, src in sorted(result.files.items()):
            (tmp / rel).parent.mkdir(exist_ok=True)  # images/ or files/
            _link_or_copy(src, tmp / rel)


def _link_or_copy(src: Path, dst: Path) -> None:
    """A hard link where the filesystem allows one, else a copy. Safe because nothing writes to
    these files again: each is named after its bytes, the spider's output directory is deleted
    after the crawl and data/raw's is replaced whole. 1,000 images of the demo shop: 0.03 s
    linked against 0.19 s copied, which was 10% of the refresh of an unchanged site."""
    try:
        os.link(src, dst)
    except OSError:  # another filesystem, or one without hard links
        shutil.copyfile(src, dst)


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
    """An interrupted crawl of the same `crawl` params is waiting in `job`, stopped cleanly."""
    config = job / "crawl.json"
    if not (
        (job / "jobdir").is_dir()
        and config.is_file()
        and config.read_text(encoding="utf-8") == cfg.model_dump_json(by_alias=True)
    ):
        return False
    if not (job / "spider" / "stats.json").is_file():  # crawlers/run.py: written on a clean stop
        logger.warning("the interrupted crawl in %s was killed before it could save its state; "
                       "crawling afresh", job)  # fmt: skip
        return False
    return True


def partial_message(stats: dict[str, Any], cfg: CrawlParams) -> str:
    """What a partial crawl means for the run and how to get a whole one (the stage's log)."""
    reason = stats["partial_reason"]
    param = LIMIT_REASONS.get(stats["finish_reason"] or "")
    if cfg.allow_partial:
        return (
            f"the crawl is partial: {reason}; data/raw holds the {stats['items']} items it "
            "found before it stopped, and the stages after it use them (crawl.allow_partial: true)"
        )
    fix = (
        f"raise crawl.{param} in params.yaml to crawl the whole site"
        if param
        else "find out why the spider closed early and crawl again"
    )
    return (
        f"the crawl is partial: {reason}, so its {stats['items']} items were not kept "
        "(crawl.allow_partial: false); data/raw and every stage after it are left as they "
        f"were, its report is {CRAWL_PARTIAL_REPORT}. To go on: {fix}, or set "
        "crawl.allow_partial: true to train on a partial crawl"
    )


def main() -> int:
    setup_logging()
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    # SIGINT stops the crawl gracefully even when it came in ignored: a shell starts a background
    # job (`cmd &`, CI scripts, cron wrappers) with SIGINT ignored, and Python then never raises
    # KeyboardInterrupt, so `kill -INT` did nothing and the crawl ran to its end.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    CRAWL_PARTIAL_REPORT.unlink(missing_ok=True)  # it describes the last crawl only
    try:
        params = load_params()
        if params.source.kind != "crawl":  # a table, a folder or a packaged dataset
            from tasks.core import sources  # noqa: PLC0415 (pandas/Pillow only for those)

            return sources.main(params.source)
        cfg = params.crawl
        if cfg is None:  # params refuse source.kind crawl without it; a type checker cannot know
            raise CrawlConfigError("params.yaml has no crawl section")
        previous = _previous_items(RAW_DIR / "items.jsonl")
        resume = _can_resume(JOB_DIR, cfg)
        if not resume:
            shutil.rmtree(JOB_DIR, ignore_errors=True)
        JOB_DIR.mkdir(parents=True, exist_ok=True)
        cache = CACHE_DIR if cfg.http_cache else None
        visits, ahead = revisit.load(STATE_PATH, cfg)
        result = crawl_site(cfg, previous, JOB_DIR, cache_dir=cache, resume=resume, visits=visits,
                            list_pages=ahead)  # fmt: skip
        kept = not result.stats["partial"] or cfg.allow_partial
        if kept:
            write_raw(result)
            write_json(CRAWL_REPORT, result.stats)
            revisit.save_state(STATE_PATH, cfg, result.visits, result.list_pages)  # after data/raw
        else:
            write_json(CRAWL_PARTIAL_REPORT, result.stats)
        if cache is not None:
            prune_http_cache(cache, int(cfg.http_cache_max_mb * 2**20))
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
        "crawl %s: %d items (%d kept without a request), %d rejects (%d failures, %d retries) "
        "from %d pages and %d files in %.1f s%s", "done" if kept else "refused", s["items"],
        s["kept"], s["rejects"], s["failures"], s["retries"], s["pages"], s["files"],
        s["duration_s"], f" -> {RAW_DIR}" if kept else "",
    )  # fmt: skip
    if s["partial"]:
        (logger.warning if kept else logger.error)(partial_message(s, cfg))
    return 0 if kept else EXIT_PARTIAL


if __name__ == "__main__":
    raise SystemExit(main())
