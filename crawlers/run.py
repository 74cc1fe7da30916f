"""Run the generic spider once: `python -m crawlers.run --params params.yaml --out DIR`
(or `--config crawl.json`, a dumped `crawl` section, which is how `tasks.crawl` calls it).

A separate process per crawl because Twisted's reactor cannot be restarted inside one process.
Writes into DIR: `items.jsonl` and `rejects.jsonl` (unsorted, one line per page),
`images/<sha256>.<ext>`, and `stats.json` (Scrapy's stats). Exit status 0 when the spider ran
to its end (whatever it found), 1 when it did not finish, 2 on a bad configuration.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from scrapy.crawler import CrawlerProcess

from crawlers.settings import settings_for
from crawlers.spiders.generic import GenericSpider
from crawlers.urlguard import check_crawl_config
from tasks.io import write_json
from tasks.params import CrawlParams, ParamsError, load_params

# Finish reasons of a spider that ran to its end; "shutdown" (Ctrl+C) and others are failures.
FINISHED = ("finished", "closespider_pagecount")


def _jsonable(stats: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in stats.items()}


# Scrapy's start-up chatter (enabled components, overridden settings: ~60 lines) is kept out of
# the stage's log; progress, warnings and errors stay. The stats go to stats.json.
_QUIET_LOGGERS = ("scrapy.addons", "scrapy.middleware", "scrapy.crawler")


def run_spider(cfg: CrawlParams, out_dir: Path) -> dict[str, Any]:
    """Crawl in this process (once per process) and return Scrapy's stats."""
    out_dir.mkdir(parents=True, exist_ok=True)
    process = CrawlerProcess(settings_for(cfg, out_dir))  # (re)configures logging
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    # Its error for an unreachable robots.txt is a 40-line traceback; StrictRobotsTxtMiddleware
    # logs one line saying so instead.
    logging.getLogger("scrapy.downloadermiddlewares.robotstxt").setLevel(logging.CRITICAL)
    crawler = process.create_crawler(GenericSpider)
    process.crawl(crawler)
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
    args = parser.parse_args(argv)
    try:
        cfg = _load(args)
        check_crawl_config(cfg)
    except (OSError, ParamsError, ValidationError, ValueError) as exc:
        print(f"crawlers.run: {exc}", file=sys.stderr)
        return 2
    stats = run_spider(cfg, args.out)
    reason = stats.get("finish_reason")
    if reason not in FINISHED:
        print(f"crawlers.run: the spider did not finish (finish_reason={reason})", file=sys.stderr)
        return 1
    print(json.dumps({k: stats.get(f"kiln/{k}", 0) for k in ("pages", "items", "rejects")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
