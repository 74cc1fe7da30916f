"""Run the spider once: `python -m crawlers.run --params params.yaml --out DIR`
(or `--config crawl.json`, a dumped `crawl` section, which is how `tasks.crawl` calls it).

A separate process per crawl because Twisted's reactor cannot be restarted inside one process.
The spider is the generic one, or the class `crawl.spider` names ('module:Class', a module of
`crawlers.spiders`). Writes into DIR: `items.jsonl` and `rejects.jsonl` (unsorted, one line per
page), `images/<sha256>.<ext>`, and `stats.json` (Scrapy's stats). `--jobdir` keeps Scrapy's
pending requests there, so a crawl stopped by SIGINT/SIGTERM (Scrapy finishes the requests in
flight, then stops) continues with `--resume`, appending to DIR; stats.json then covers the
whole crawl, every run of it (see `add_previous_stats`). `--cache` is the HTTP cache.
Exit status 0 when the spider ran (whatever it found, and whether it reached its end or was
closed at a limit: stats.json's `finish_reason` says which), 1 when it was interrupted
(finish_reason "shutdown"), 2 on a bad configuration.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import re
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import scrapy
from pydantic import ValidationError
from scrapy.crawler import CrawlerProcess

from crawlers.limits import FILES, PAGES
from crawlers.settings import settings_for
from crawlers.spiders.generic import GenericSpider
from crawlers.urlguard import check_crawl_config
from tasks.core.io import write_json
from tasks.core.params import CrawlParams, ParamsError, load_params

# The finish reason of a spider that was stopped (Ctrl+C, SIGTERM) before its end: the crawl is
# unfinished and the JOBDIR lets it resume. Any other reason is a crawl that ran: "finished" when it
# reached its end, a limit's (crawlers/limits.py) or another close reason when it is partial.
INTERRUPTED = "shutdown"
_MODULE = re.compile(r"[a-z_][a-z0-9_]*")  # a module directly inside crawlers/spiders/
logger = logging.getLogger(__name__)

# How add_previous_stats combines the stats of two runs of one crawl; every other number is a
# count and is summed, every other string (finish_reason, finish_time) is the last run's.
_FIRST_RUN = ("start_time",)
_LARGEST = ("memusage/max", "memusage/startup", "request_depth_max")  # bytes, bytes, links
_PER_MINUTE = {  # Scrapy's LogStats rates: recomputed over the summed elapsed_time_seconds
    "responses_per_minute": "response_received_count",
    "items_per_minute": "item_scraped_count",
}


def _jsonable(stats: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in stats.items()}


# Scrapy's start-up chatter (enabled components, overridden settings: ~60 lines) is kept out of
# the stage's log; progress, warnings and errors stay. The stats go to stats.json.
_QUIET_LOGGERS = ("scrapy.addons", "scrapy.middleware", "scrapy.crawler")


def add_previous_stats(previous: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """The stats of a crawl resumed after `previous` (an earlier run's stats.json, itself
    cumulative when that run was a resume too) whose last run gave `current`.

    Counts are summed, so `kiln/pages` counts the pages of every run and each page once (a
    resumed crawl does not fetch a page again). `elapsed_time_seconds` is summed too: the time
    spent crawling, not the time between runs. `start_time` is the first run's, `finish_time`
    and `finish_reason` the last one's; memory and depth maxima are the larger; the per-minute
    rates are recomputed over the summed elapsed time.
    """
    merged = dict(previous) | current
    for key, value in current.items():
        before = previous.get(key)
        if key in _FIRST_RUN and before is not None:
            merged[key] = before
        elif _is_number(value) and _is_number(before) and key not in _PER_MINUTE:
            merged[key] = max(before, value) if key in _LARGEST else before + value
    minutes = merged.get("elapsed_time_seconds", 0) / 60
    for key, count in _PER_MINUTE.items():
        if key in merged and minutes > 0:
            merged[key] = round(merged.get(count, 0) / minutes, 1)
    return merged


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _previous_stats(out_dir: Path) -> dict[str, Any]:
    """The stats.json of the interrupted run that `--resume` continues ({} if it wrote none)."""
    path = out_dir / "stats.json"
    if not path.exists():  # stopped before it could write them (a second Ctrl+C, kill -9)
        logger.warning("no %s from the interrupted run: the stats cover this run only", path)
        return {}
    try:
        stats = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} of the interrupted run is not JSON ({exc})") from exc
    if not isinstance(stats, dict):
        raise ValueError(f"{path} of the interrupted run is not a JSON object")
    return stats


def spider_class(cfg: CrawlParams) -> type[scrapy.Spider]:
    """The generic spider, or `crawl.spider`; ValueError names a bad one."""
    if cfg.spider is None:
        return GenericSpider
    module, _, name = cfg.spider.partition(":")
    if not _MODULE.fullmatch(module) or not name.isidentifier():
        raise ValueError(f"crawl.spider {cfg.spider!r} is not 'module:Class' of crawlers/spiders/")
    try:
        cls = getattr(importlib.import_module(f"crawlers.spiders.{module}"), name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"crawl.spider {cfg.spider!r} cannot be loaded: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, scrapy.Spider)):
        raise ValueError(f"crawl.spider {cfg.spider!r} is not a scrapy.Spider subclass")
    return cls


def run_spider(
    cfg: CrawlParams,
    out_dir: Path,
    *,
    cache_dir: Path | None = None,
    jobdir: Path | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Crawl in this process (once per process) and return Scrapy's stats (with `resume`, the
    whole crawl's: the previous run's stats.json in `out_dir` added, see add_previous_stats)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    previous = _previous_stats(out_dir) if resume else {}  # before this run overwrites them
    # stats.json is written once the spider has closed, its JOBDIR saved: the sign that the
    # crawl may be resumed (tasks.crawl). Gone while it runs: a spider killed outright leaves a
    # JOBDIR whose pending requests were never saved, and a crawl resumed from it would miss them.
    (out_dir / "stats.json").unlink(missing_ok=True)
    settings = settings_for(cfg, out_dir, cache_dir)
    if jobdir is not None:
        settings.set("JOBDIR", str(jobdir), priority="cmdline")
    settings.set("KILN_RESUME", resume, priority="cmdline")
    # The limits count on from the interrupted run's pages and files (crawlers/limits.py).
    before = {k: v for k, v in previous.items() if k in (PAGES, FILES) and _is_number(v)}
    settings.set("KILN_COUNTS_BEFORE", before, priority="cmdline")
    process = CrawlerProcess(settings)  # (re)configures logging
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    # Its error for an unreachable robots.txt is a 40-line traceback; StrictRobotsTxtMiddleware
    # logs one line saying so instead.
    logging.getLogger("scrapy.downloadermiddlewares.robotstxt").setLevel(logging.CRITICAL)
    cls = spider_class(cfg)
    crawler = process.create_crawler(cls)
    if cls is GenericSpider:
        process.crawl(crawler)
    else:  # a custom spider starts from crawl.start_urls and stays in crawl.allowed_domains
        kwargs = {"start_urls": cfg.start_urls, "allowed_domains": cfg.allowed_domains}
        process.crawl(crawler, **{k: v for k, v in kwargs.items() if not hasattr(cls, k)})
    process.start()
    stats = _jsonable(crawler.stats.get_stats())
    if previous:
        stats = add_previous_stats(previous, stats)
    write_json(out_dir / "stats.json", stats)
    return stats


def _load(args: argparse.Namespace) -> CrawlParams:
    if args.config:
        return CrawlParams.model_validate_json(args.config.read_text(encoding="utf-8"))
    cfg = load_params(args.params).crawl
    if cfg is None:
        raise ParamsError(f"{args.params} has no crawl section (its source is not a crawl)")
    return cfg


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--params", type=Path, default=Path("params.yaml"))
    source.add_argument("--config", type=Path, help="a JSON dump of the crawl section")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--cache", type=Path, help="HTTP cache directory (crawl.http_cache)")
    parser.add_argument("--jobdir", type=Path, help="Scrapy JOBDIR: pending requests")
    parser.add_argument("--resume", action="store_true", help="continue the crawl in --jobdir")
    args = parser.parse_args(argv)
    try:
        cfg = _load(args)
        check_crawl_config(cfg)
        spider_class(cfg)
    except (OSError, ParamsError, ValidationError, ValueError) as exc:
        print(f"crawlers.run: {exc}", file=sys.stderr)
        return 2
    cache = args.cache if cfg.http_cache else None
    stats = run_spider(cfg, args.out, cache_dir=cache, jobdir=args.jobdir, resume=args.resume)
    reason = stats.get("finish_reason")
    if reason in (None, INTERRUPTED):
        print(f"crawlers.run: the spider did not finish (finish_reason={reason})", file=sys.stderr)
        return 1
    counts = {k: stats.get(f"kiln/{k}", 0) for k in ("pages", "files", "items", "rejects")}
    print(json.dumps({**counts, "finish_reason": reason}))
    return 0


def exit_now(status: int) -> None:
    """End the process with `status` once the spider's output is flushed, skipping the
    interpreter's tear-down of Scrapy's, Twisted's and lxml's objects: by then everything is
    written and closed (items, rejects, carried, stats.json, the JOBDIR), and the tear-down took
    ~0.6 s of every crawl (3 runs each of a crawl that finds nothing: 3.79-4.30 s before,
    3.41-3.58 s with os._exit)."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    exit_now(main())
