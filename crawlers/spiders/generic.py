"""The generic, config-driven spider; it runs as `python -m crawlers.run` (a subprocess of
`python -m tasks.crawl`), configured by the `crawl` section of params.yaml.

It follows links inside the `follow_css` areas of every page, parses pages whose URL matches
`item_url_pattern` with the pure `crawlers.parse.parse_item`, and yields one `PageItem` or one
`PageReject` per item page, plus a reject for every page that failed after its retries.
Requests it is not allowed to make (robots.txt, `crawlers.urlguard`) are skipped and counted.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import scrapy
from scrapy.crawler import Crawler
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Response, TextResponse
from scrapy.linkextractors import LinkExtractor
from scrapy.spidermiddlewares.httperror import HttpError
from twisted.python.failure import Failure

from crawlers.items import PageItem, PageReject
from crawlers.parse import parse_item
from crawlers.settings import crawl_params_from
from crawlers.urlguard import refusal_reason

logger = logging.getLogger(__name__)


class GenericSpider(scrapy.Spider):
    name = "generic"

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> GenericSpider:
        spider = super().from_crawler(crawler, *args, **kwargs)
        spider.cfg = crawl_params_from(crawler.settings)
        spider.allowed_domains = list(spider.cfg.allowed_domains)  # Scrapy's offsite filter
        spider._item_url = re.compile(spider.cfg.item_url_pattern)
        # deny_extensions=[]: the link areas decide what is followed, not the URL's suffix.
        spider._links = LinkExtractor(restrict_css=spider.cfg.follow_css, deny_extensions=[])
        return spider

    async def start(self) -> AsyncIterator[scrapy.Request]:
        for url in self.cfg.start_urls:
            reason = refusal_reason(url, self.cfg)
            if reason:  # tasks.crawl checks first; this guards a direct `python -m crawlers.run`
                logger.error("start URL %s refused: %s", url, reason)
                self.crawler.stats.inc_value("kiln/refused")
                continue
            yield self._request(url)

    def _request(self, url: str) -> scrapy.Request:
        return scrapy.Request(url, callback=self.parse, errback=self.on_error)

    def parse(self, response: Response, **kwargs: Any) -> Iterator[Any]:
        self.crawler.stats.inc_value("kiln/pages")
        is_item_page = bool(self._item_url.search(response.url))
        if not isinstance(response, TextResponse):
            if is_item_page:
                content_type = response.headers.get("Content-Type", b"").decode("latin-1")
                yield PageReject(response.url, f"not an HTML page ({content_type})", 200)
            return
        if is_item_page:
            yield self._item(response)
        for link in self._links.extract_links(response):
            reason = refusal_reason(link.url, self.cfg)
            if reason:
                self.crawler.stats.inc_value("kiln/refused")
                logger.debug("not following %s: %s", link.url, reason)
                continue
            yield self._request(link.url)

    def _item(self, response: TextResponse) -> PageItem | PageReject:
        parsed = parse_item(response.text, response.url, self.cfg.fields)
        if isinstance(parsed, PageReject):
            return PageReject(parsed.url, parsed.reason, response.status)
        src = parsed.fields[self.cfg.image_field]
        if src is None:  # an optional image field: no image, no training example
            return PageReject(response.url, f"no {self.cfg.image_field} on the page", 200)
        parsed.image_url = response.urljoin(src)
        return parsed

    def on_error(self, failure: Failure) -> Iterator[PageReject]:
        """A page that failed after its retries becomes a reject; skipped requests do not."""
        request = failure.request
        retries = request.meta.get("retry_times", 0)
        if failure.check(HttpError):
            status = failure.value.response.status
            reason = f"HTTP {status} after {retries} retries"
        elif failure.check(IgnoreRequest):  # robots.txt or the URL guard; counted by them
            logger.debug("skipped %s: %s", request.url, failure.getErrorMessage())
            return
        else:
            status = None
            reason = f"{failure.type.__name__} after {retries} retries: {failure.getErrorMessage()}"
        self.crawler.stats.inc_value("kiln/pages")
        self.crawler.stats.inc_value("kiln/failures")
        logger.warning("page failed: %s: %s", request.url, reason)
        yield PageReject(request.url, reason, status)
