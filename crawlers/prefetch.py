"""List pages fetched ahead on a refresh, without changing what the crawl sees.

A catalogue's list pages form a chain ("next page" links): a crawl finds page n+1 only once page
n is parsed, so they are fetched one at a time, one round trip each. On a refresh the chain is
known from the last crawl (`.kiln/crawl-state.json`, `list_pages`), so the generic spider asks
for all of those pages at once (`prefetch_request`, at the start) and each answer is held here
until the crawl reaches that page the normal way: when a page this crawl parsed links to it, the
request for it (deduplicated, depth-limited and guarded like any other) is answered from the
hold instead of the network. So the output, `crawl.max_depth` and `crawl.max_pages` are exactly
those of a crawl without prefetching; a page that is no longer linked is fetched and thrown away.

* `ListPrefetchMiddleware` (downloader) holds the answers. A prefetch that is not a plain 200
  (an error, a redirect, a 4xx/5xx; prefetches are neither retried nor redirected) is no answer:
  the page is then requested normally, with retries and redirects. A page the crawl reaches
  before its prefetch left the scheduler is requested normally too, and the prefetch is dropped.
* `PrefetchAwareDownloaderStats` does not count an answer from the hold a second time;
  crawlers/limits.py counts, for `crawl.max_pages`, the pages the crawl reached (not the
  prefetches), as a crawl without prefetching would.

Measured on the refresh of an unchanged 1,000-page demo shop (42 list pages): see
benchmarks/crawl_throughput.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import scrapy
from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.downloadermiddlewares.stats import DownloaderStats
from scrapy.exceptions import IgnoreRequest, NotConfigured
from scrapy.http import Request, Response

logger = logging.getLogger(__name__)

PREFETCH = "kiln_prefetch"  # request meta: a speculative fetch of a list page
FROM_HOLD = "kiln_from_prefetch"  # request meta: answered from a prefetch, not the network
_DROPPED = "kiln_prefetch_dropped"  # request meta: a prefetch this middleware refused
PRIORITY = 100  # ahead of the item pages a refresh still has to check


def prefetch_request(url: str, callback: Any, errback: Any) -> scrapy.Request:
    """The speculative request for one list page the last crawl saw. Not deduplicated (the
    crawl's own request for the page must not be filtered as its duplicate), not retried, not
    redirected; its callback and errback should do nothing: the answer is used through the
    crawl's own request."""
    meta = {PREFETCH: True, "dont_retry": True, "dont_redirect": True}
    return scrapy.Request(url, callback=callback, errback=errback, meta=meta,
                          dont_filter=True, priority=PRIORITY)  # fmt: skip


class ListPrefetchMiddleware:
    def __init__(self, crawler: Crawler) -> None:
        self._answers: dict[str, asyncio.Future[Response | None]] = {}  # prefetches under way
        self._claimed: set[str] = set()  # reached before their prefetch started: not wanted
        self._stats = crawler.stats
        # How long the crawl's request waits for a prefetch under way; s. It is in the
        # downloader, so it ends within its download timeout unless its slot is busy.
        self._timeout_s = crawler.settings.getfloat("DOWNLOAD_TIMEOUT")
        crawler.signals.connect(self._closed, signal=signals.spider_closed)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ListPrefetchMiddleware:
        # Off unless the spider has list pages to fetch ahead: a first crawl then pays nothing
        # for it (on, every request goes through one more coroutine).
        ahead = Path(crawler.settings.get("KILN_PREFETCH_FILE") or "")
        if not ahead.is_file() or not json.loads(ahead.read_text(encoding="utf-8")):
            # NotConfigured without a message: Scrapy logs one it is given as a WARNING
            # ("Disabled ...", scrapy/middleware.py), and off is the normal first crawl.
            logger.debug("list prefetch off: no list pages to fetch ahead")
            raise NotConfigured
        return cls(crawler)

    async def process_request(self, request: Request) -> Response | None:
        url = request.url
        if request.meta.get(PREFETCH):
            if url in self._claimed or url in self._answers:  # reached already, or came back
                self._settle(url, None)  # (a middleware re-sent it): no answer from it then
                request.meta[_DROPPED] = True
                raise IgnoreRequest(f"prefetch of {url} no longer needed")
            self._answers[url] = asyncio.get_running_loop().create_future()
            return None  # download it
        answer = self._answers.get(url)  # kept until settled: _settle looks it up
        if answer is None:
            self._claimed.add(url)
            return None
        try:  # the prefetch is in the downloader; bounded all the same, the network is the fallback
            response = await asyncio.wait_for(asyncio.shield(answer), self._timeout_s)
        except TimeoutError:
            response = None
        if response is None:
            self._stats.inc_value("kiln/prefetch/unused")
            return None  # it failed: ask the network, with retries and redirects
        request.meta[FROM_HOLD] = True
        request.meta["dont_cache"] = True  # the prefetch already went through the HTTP cache
        self._stats.inc_value("kiln/prefetch/used")
        return response.replace(request=request, flags=[*response.flags, "prefetched"])

    def process_response(self, request: Request, response: Response) -> Response:
        if request.meta.get(PREFETCH):
            self._settle(request.url, response if response.status == 200 else None)
        return response

    def process_exception(self, request: Request, exception: Exception) -> None:
        if request.meta.get(PREFETCH) and not request.meta.get(_DROPPED):
            self._settle(request.url, None)

    def _settle(self, url: str, response: Response | None) -> None:
        answer = self._answers.get(url)
        if answer is None or answer.done():
            return
        self._stats.inc_value("kiln/prefetch/fetched" if response else "kiln/prefetch/failed")
        answer.set_result(response)

    def _closed(self) -> None:
        for answer in self._answers.values():  # nothing may wait for an answer after the end
            if not answer.done():
                answer.set_result(None)


class PrefetchAwareDownloaderStats(DownloaderStats):
    """Scrapy's downloader stats, without counting an answer from the hold twice."""

    def process_response(self, request: Request, response: Response) -> Response:
        if request.meta.get(FROM_HOLD):
            return response
        return super().process_response(request, response)
