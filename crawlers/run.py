"""Run the spider once: `python -m crawlers.run --params params.yaml --out DIR`
(or `--config crawl.json`, a dumped `crawl` section, which is how `tasks.crawl` calls it).

A separate process per crawl because Twisted's reactor cannot be restarted inside one process.
The spider is the generic one, or the class `crawl.spider` names ('module:Class', a module of
`crawlers.spiders`). Writes into DIR: `items.jsonl` and `rejects.jsonl` (unsorted, one line per
page), `images/<sha256>.<ext>`, and `stats.json` (Scrapy's stats). `--jobdir` keeps Scrapy's
pending requests there, so a crawl stopped by SIGINT/SIGTERM (Scrapy finishes the requests in
flight, then stops) continues with `--resume`, appending to DIR. `--cache` is the HTTP cache.
Exit status 0 when the spider ran to its end (whatever it found), 1 when it did not finish
(interrupted: finish_reason "shutdown"), 2 on a bad configuration.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import re
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import scrapy
from pydantic import ValidationError
from scrapy.crawler import CrawlerProcess

from crawlers.settings import settings_for
from crawlers.spiders.generic import GenericSpider
from crawlers.urlguard import check_crawl_config
from tasks.io import write_json
from tasks.params import CrawlParams, ParamsError, load_params

# Finish reasons of a spider that ran to its end; "shutdown" (Ctrl+C) and others are failures.
FINISHED = ("finished", "closespider_pagecount", "kiln_max_items")
_MODULE = re.compile(r"[a-z_][a-z0-9_]*")  # a module directly inside crawlers/spiders/


def _jsonable(stats: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in stats.items()}


# Scrapy's start-up chatter (enabled components, overridden settings: ~60 lines) is kept out of
# the stage's log; progress, warnings and errors stay. The stats go to stats.json.
_QUIET_LOGGERS = ("scrapy.addons", "scrapy.middleware", "scrapy.crawler")


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
    """Crawl in this process (once per process) and return Scrapy's stats."""
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = settings_for(cfg, out_dir, cache_dir)
    if jobdir is not None:
        settings.set("JOBDIR", str(jobdir), priority="cmdline")
    settings.set("KILN_RESUME", resume, priority="cmdline")
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
    write_json(out_dir / "stats.json", stats)
    return stats


def _load(args: argparse.Namespace) -> CrawlParams:
    if args.config:
        return CrawlParams.model_validate_json(args.config.read_text(encoding="utf-8"))
    return load_params(args.params).crawl


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
    if reason not in FINISHED:
        print(f"crawlers.run: the spider did not finish (finish_reason={reason})", file=sys.stderr)
        return 1
    print(json.dumps({k: stats.get(f"kiln/{k}", 0) for k in ("pages", "items", "rejects")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
