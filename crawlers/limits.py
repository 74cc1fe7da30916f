"""What a crawl counts, and where it stops: `crawl.max_pages` and `crawl.max_files`.

Two counts, each with its own limit, under the names reports/crawl.json gives them:

* `pages` (Scrapy stat `kiln/pages`; `crawl.max_pages`): the answers to the spider's own
  requests, list and item pages, whatever their status (a 404 or a 500 after its retries
  counts), plus the pages that failed with no answer at all (a timeout, a refused connection, a
  redirect the URL guard refused, a body over the size limit: the spider's errback reports them
  with `PAGE_FAILED`). Not counted: robots.txt, a list page fetched ahead (crawlers/prefetch.py:
  the crawl's own request for it is), a retried attempt or a redirect (the final answer is), and
  the downloads of images and files.
* `files` (`kiln/files`; `crawl.max_files`): the answers to image and file downloads
  (`crawl.image_field`, `crawl.file_fields`; crawlers.pipelines marks their requests with
  `FILE_DOWNLOAD`), whatever their status.

An answer from the HTTP cache counts like one from the network. When a count reaches its limit
(or crawlers.pipelines reports `crawl.max_items` reached, `LIMIT_REACHED`) and more is waiting to
be fetched (a request in the scheduler), the spider is closed with the reason `kiln_max_pages`,
`kiln_max_files` or `kiln_max_items`; when nothing is waiting, it is closed when more turns up:
the next page or download that starts or is answered (from the HTTP cache, say) past max_pages
or max_files, or item past max_items, if one does. So a site that fits its limits exactly
finishes ("finished"), not partial. The requests in flight still finish, so a count can end a
little above its limit (by up to CONCURRENT_REQUESTS). `tasks.crawl` reports a crawl closed for
any reason but "finished" as partial. A resumed crawl counts on from the interrupted run's
figures (`KILN_COUNTS_BEFORE`, set by crawlers.run).

The same extension shows the two counts as they grow (tasks/core/progress.py):
`progress crawl.pages 380/1000 pages 12.40/s eta 50s limit crawl.max_pages`, the total being the
count's limit (so the ETA is a bound: a site may end before it), or `?` where there is none;
`crawl.files` from the first download on. A line when the spider opens, one at least every 10 s
(its heartbeat thread: a crawl waiting on a slow host says so too), one when it closes (with the
finish reason when the crawl did not reach its end); on a terminal, tqdm bars. A resumed crawl
counts on from the interrupted run's figures; its rate is this run's.

Scrapy's CloseSpider, used before, counted every response for CLOSESPIDER_PAGECOUNT, image
downloads and robots.txt included, while the report's `pages` did not: a crawl of a shop with
one image per item "stopped at max_pages=20000" after about 10,000 pages.
"""

from __future__ import annotations

import logging
from typing import Any

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.http import Request, Response
from scrapy.http.request import NO_CALLBACK
from scrapy.utils.defer import _schedule_coro

from crawlers.prefetch import PREFETCH
from crawlers.settings import crawl_params_from
from tasks.core.progress import Progress

logger = logging.getLogger(__name__)

PAGES = "kiln/pages"  # Scrapy stats; reports/crawl.json `pages` and `files`
FILES = "kiln/files"
FILE_DOWNLOAD = "kiln_file_download"  # request meta: an image or file download
PAGE_FAILED = object()  # signal(request): a page request failed with no answer at all
# signal(reason, more): a limit counted elsewhere (crawl.max_items) is reached; `more`: something
# was found beyond it (an item dropped)
LIMIT_REACHED = object()
# The reasons the crawl closes itself at a limit, and the param that set it.
LIMIT_REASONS = {"kiln_max_pages": "max_pages", "kiln_max_files": "max_files",
                 "kiln_max_items": "max_items"}  # fmt: skip


def counted_as(request: Request) -> str | None:
    """The count an answer to `request` goes to: PAGES, FILES or neither (None)."""
    if request.meta.get(FILE_DOWNLOAD):
        return FILES
    # NO_CALLBACK: an answer no spider callback reads (robots.txt, any other internal request)
    if request.callback is NO_CALLBACK or request.meta.get(PREFETCH):
        return None
    return PAGES


class CrawlLimits:
    """The extension that counts pages and files and closes the spider at the limits (its own,
    and crawl.max_items, which the writer counts)."""

    def __init__(self, crawler: Crawler) -> None:
        cfg = crawl_params_from(crawler.settings)
        self._crawler = crawler
        self._stats = crawler.stats
        before = crawler.settings.getdict("KILN_COUNTS_BEFORE")
        self._before = {stat: int(before.get(stat, 0)) for stat in (PAGES, FILES)}
        self._limits: dict[str, tuple[int | None, str]] = {
            PAGES: (cfg.max_pages, "kiln_max_pages"),
            FILES: (cfg.max_files, "kiln_max_files"),
        }
        self._reached: str | None = None  # the reason of the first limit reached
        self._closing = False
        self._open = False  # between spider_opened and spider_closed: the progress is shown
        self._progress: dict[str, Progress] = {}
        crawler.signals.connect(self._opened, signal=signals.spider_opened)
        crawler.signals.connect(self._closed, signal=signals.spider_closed)
        crawler.signals.connect(self._answered, signal=signals.response_received)
        crawler.signals.connect(self._failed, signal=PAGE_FAILED)
        crawler.signals.connect(self.limit_reached, signal=LIMIT_REACHED)
        crawler.signals.connect(self._starts, signal=signals.request_reached_downloader)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> CrawlLimits:
        return cls(crawler)

    def count(self, stat: str) -> int:
        """Count one more page or file; the limit is reached when that makes it."""
        self._stats.inc_value(stat)
        if self._open:
            self._show(stat).update()
        total = self._before[stat] + self._stats.get_value(stat, 0)
        limit, reason = self._limits[stat]
        if limit is not None and total >= limit:  # past it: there was more (a cache hit, say)
            self.limit_reached(reason, more=total > limit)
        return total

    def limit_reached(self, reason: str, more: bool = False) -> None:
        """Close the spider now if more is waiting to be fetched (or `more` was found beyond the
        limit, an item the writer dropped), else at the next page or download that starts."""
        if self._reached is None:
            self._reached = reason
            scheduler = getattr(self._crawler.engine, "scheduler", None)
            more = more or scheduler is None or scheduler.has_pending_requests()
            if not more:
                logger.info("crawl.%s reached with nothing left to fetch: the crawl stops if it "
                            "finds more", LIMIT_REASONS[reason])  # fmt: skip
        if more:
            self._close()

    def _close(self) -> None:
        if self._closing or self._reached is None:
            return
        self._closing = True
        param = LIMIT_REASONS[self._reached]
        figure = {"max_pages": PAGES, "max_files": FILES}.get(param)
        counted = (f" ({self._before[figure] + self._stats.get_value(figure, 0)} "
                   f"{figure.removeprefix('kiln/')})" if figure else "")  # fmt: skip
        logger.warning("crawl.%s reached%s with more to fetch: stopping the crawl; the requests "
                       "in flight finish", param, counted)  # fmt: skip
        _schedule_coro(self._crawler.engine.close_spider_async(reason=self._reached))

    # -- progress ------------------------------------------------------------------------------

    def _show(self, stat: str) -> Progress:
        """The progress of `stat` (started on first use: files at the first download)."""
        bar = self._progress.get(stat)
        if bar is None:
            name = stat.removeprefix("kiln/")
            limit = self._limits[stat][0]
            # the total is a limit, a bound: a site may well end before it
            detail = "" if limit is None else f"limit crawl.max_{name}"
            bar = Progress(f"crawl.{name}", limit, unit=name, initial=self._before[stat],
                           logger=logger, detail=detail)  # fmt: skip
            self._progress[stat] = bar
        return bar

    def _opened(self, spider: Any) -> None:
        self._open = True
        self._show(PAGES)

    def _closed(self, spider: Any, reason: str) -> None:
        """The end lines: `done` when the spider ran (to its end, or to a limit: the reason
        says so), `stopped` when it was interrupted."""
        self._open = False
        for bar in reversed(list(self._progress.values())):  # the files' bar, then the pages'
            if reason != "finished":
                bar.set_detail(f"finish_reason {reason}")
            bar.close(ok=reason != "shutdown")
        self._progress.clear()

    def _answered(self, response: Response, request: Request, spider: Any) -> None:
        stat = counted_as(request)
        if stat is not None:
            self.count(stat)

    def _failed(self, request: Request) -> None:
        if counted_as(request) == PAGES:
            self.count(PAGES)

    def _starts(self, request: Request, spider: Any) -> None:
        """A page starts after max_pages was reached, or a download after max_files: there was
        more to fetch. (Past max_items, an item the writer drops says so.)"""
        stat = counted_as(request)
        if stat is not None and self._reached == self._limits[stat][1]:
            self._close()


def page_failed(crawler: Crawler, request: Request) -> None:
    """Count a page request that failed with no answer at all (a spider's errback calls it)."""
    crawler.signals.send_catch_log(signal=PAGE_FAILED, request=request)
