"""The generic, config-driven spider; it runs as `python -m crawlers.run` (a forked child
of `python -m tasks.crawl`), configured by the `crawl` section of params.yaml.

From every page it follows the links of the `follow_css` / `follow` rules (link areas, allow and
deny regexes). Item pages are those whose URL matches `item_url_pattern`, and the detail pages
that item blocks of a list page (`item_list`) link to; a block without a link is an item itself.
Parsing is the pure `crawlers.parse.PageParser`; the spider yields one `PageItem` or one
`PageReject` per item, plus a reject for every page that failed after its retries. Requests it
is not allowed to make (robots.txt, `crawlers.urlguard`) are skipped and counted. Pages and
downloads are counted, and the crawl stopped at its limits, by `crawlers.limits`. An item page
listed in the crawl stage's `carry.json` (checked within `crawl.revisit_after_s`, see
`crawlers.revisit`) is not requested: the spider names it in the page's `CarriedItem` and follows
the links it had last time.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import scrapy
from parsel import Selector
from scrapy.crawler import Crawler
from scrapy.exceptions import IgnoreRequest
from scrapy.http import HtmlResponse, Response, TextResponse
from scrapy.linkextractors import LinkExtractor
from scrapy.spidermiddlewares.httperror import HttpError
from twisted.python.failure import Failure
from w3lib.html import strip_html5_whitespace

from crawlers.items import CarriedItem, PageItem, PageReject, worth_retrying
from crawlers.limits import page_failed
from crawlers.parse import ListEntry, PageParser
from crawlers.prefetch import prefetch_request
from crawlers.revisit import LIST_PAGES_FILE, same_list_values, server_fresh_s
from crawlers.settings import crawl_params_from
from crawlers.urlguard import refusal_reason
from tasks.core.io import read_jsonl, write_json
from tasks.core.params import CrawlParams

logger = logging.getLogger(__name__)

_LIST_VALUES = "kiln_list_values"  # request meta: fields read on the list page that linked here


def link_extractors(cfg: CrawlParams) -> list[LinkExtractor]:
    """One extractor per follow rule. deny_extensions=[]: the rules decide, not URL suffixes."""
    extractors = []
    if cfg.follow_css:
        extractors.append(LinkExtractor(restrict_css=cfg.follow_css, deny_extensions=[]))
    for rule in cfg.follow:
        extractors.append(
            LinkExtractor(
                allow=rule.allow,
                deny=rule.deny,
                restrict_css=[rule.css] if rule.css else (),
                restrict_xpaths=[rule.xpath] if rule.xpath else (),
                deny_extensions=[],
            )
        )
    return extractors


def with_downloads(item: PageItem | PageReject, cfg: CrawlParams, status: int | None) -> Any:
    """Point an item at its image (`crawl.image_field`) and files (`crawl.file_fields`), as
    absolute URLs; a reject keeps `status`."""
    if isinstance(item, PageReject):
        return PageReject(item.url, item.reason, status, item.list_values)
    for name in cfg.file_fields:
        value = item.fields.get(name)
        values = value if isinstance(value, list) else [value]
        srcs = (strip_html5_whitespace(s) for s in values if isinstance(s, str))
        item.file_urls[name] = [urljoin(item.url, s) for s in srcs if s]
    if cfg.image_field is None:
        return item
    src = item.fields.get(cfg.image_field)
    src = strip_html5_whitespace(src) if isinstance(src, str) else ""
    if not src:  # an optional image field: no image, no item
        return PageReject(item.url, f"no {cfg.image_field} on the page", status)
    item.image_url = urljoin(item.url, src)  # an absolute src stays as it is
    return item


class GenericSpider(scrapy.Spider):
    name = "generic"

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> GenericSpider:
        spider = super().from_crawler(crawler, *args, **kwargs)
        spider.cfg = crawl_params_from(crawler.settings)
        spider.allowed_domains = list(spider.cfg.allowed_domains)  # Scrapy's offsite filter
        pattern = spider.cfg.item_url_pattern
        spider._item_url = re.compile(pattern) if pattern else None
        spider._parser = PageParser(spider.cfg.fields, spider.cfg.item_list)
        spider._links = link_extractors(spider.cfg)
        # The item pages the crawl stage offers to skip (crawlers.settings.settings_for names it)
        carry = Path(crawler.settings.get("KILN_CARRY_FILE") or "")
        spider._skippable = json.loads(carry.read_text(encoding="utf-8")) if carry.is_file() else {}
        spider._carried = set()
        # The list pages the last crawl parsed, fetched ahead (crawlers/prefetch.py)
        ahead = Path(crawler.settings.get("KILN_PREFETCH_FILE") or "")
        spider._prefetch = json.loads(ahead.read_text(encoding="utf-8")) if ahead.is_file() else []
        spider._list_pages = set()  # the list pages this crawl parsed, for the next one
        return spider

    async def start(self) -> AsyncIterator[scrapy.Request]:
        for url in self.cfg.start_urls:
            reason = refusal_reason(url, self.cfg)
            if reason:  # tasks.crawl checks first; this guards a direct `python -m crawlers.run`
                logger.error("start URL %s refused: %s", url, reason)
                self.crawler.stats.inc_value("kiln/refused")
                continue
            yield self._request(url)
        for url, list_values in self._failed_before():
            yield self._request(url, list_values).replace(dont_filter=True)
        starts = set(self.cfg.start_urls)
        ahead = [u for u in self._prefetch if u not in starts and not refusal_reason(u, self.cfg)]
        if ahead:
            logger.info("fetching ahead the %d list pages the last crawl saw", len(ahead))
        for url in ahead:
            yield prefetch_request(url, self._prefetched, self._prefetched)

    def _prefetched(self, _: Any) -> None:
        """A prefetch's own callback and errback: its answer is used, if the crawl reaches the
        page, through the crawl's request for it (crawlers/prefetch.py)."""

    def _failed_before(self) -> list[tuple[str, dict[str, Any] | None]]:
        """On a resume: the pages of the interrupted run that failed for want of an answer.

        A run killed mid-crawl takes the site's answers down with it as often as not (the demo
        site is served by the run itself; a network blip is as likely then as ever): its last
        requests fail and become rejects. Scrapy's JOBDIR holds the requests still to make, not
        those, so without this the resumed crawl would end without those pages and the pages
        they link to (7 of 300 items, all images in flight, when a run was killed 0.3 s in).
        """
        if not self.crawler.settings.getbool("KILN_RESUME"):
            return []
        out = Path(self.crawler.settings["KILN_OUT_DIR"])
        rejects, items = out / "rejects.jsonl", out / "items.jsonl"
        failed = {row["url"]: row.get("list_values") for row in read_jsonl(rejects)
                  if worth_retrying(row)} if rejects.is_file() else {}  # fmt: skip
        for row in read_jsonl(items) if items.is_file() else []:
            failed.pop(row["url"], None)  # it gave its item after all (fetched twice)
        if failed:
            logger.info("asking again for the %d pages that failed in the interrupted crawl",
                        len(failed))  # fmt: skip
        return list(failed.items())

    def closed(self, reason: str) -> None:
        """Record the list pages parsed (with those of the interrupted run this one resumes)."""
        out = Path(self.crawler.settings["KILN_OUT_DIR"]) / LIST_PAGES_FILE
        if self.crawler.settings.getbool("KILN_RESUME") and out.is_file():
            self._list_pages.update(json.loads(out.read_text(encoding="utf-8")))
        write_json(out, sorted(self._list_pages))

    def _request(self, url: str, list_values: dict[str, Any] | None = None) -> scrapy.Request:
        meta = {} if list_values is None else {_LIST_VALUES: list_values}
        return scrapy.Request(url, callback=self.parse, errback=self.on_error, meta=meta)

    def _allowed(self, url: str) -> bool:
        reason = refusal_reason(url, self.cfg)
        if reason:
            self.crawler.stats.inc_value("kiln/refused")
            logger.debug("not following %s: %s", url, reason)
        return reason is None

    def parse(self, response: Response, **kwargs: Any) -> Iterator[Any]:
        list_values = response.meta.get(_LIST_VALUES)
        is_item_page = list_values is not None or bool(
            self._item_url and self._item_url.search(response.url)
        )
        if not is_item_page and "redirect_urls" not in response.meta:
            self._list_pages.add(response.url)  # reached under its own URL: worth fetching ahead
        if not isinstance(response, TextResponse):
            if is_item_page:
                content_type = response.headers.get("Content-Type", b"").decode("latin-1")
                yield PageReject(response.url, f"not an HTML page ({content_type})", 200)
            return
        # One lxml parse per page: Scrapy's own selector serves the fields and the links.
        page = (
            response.selector
            if isinstance(response, HtmlResponse)
            else Selector(text=response.text, type="html")
        )
        details: dict[str, dict[str, Any]] = {}  # detail page URL -> fields read on this page
        for entry in self._parser.parse_list(page, response.url):
            if isinstance(entry, ListEntry):
                details.setdefault(entry.url, entry.values)
            else:
                yield with_downloads(entry, self.cfg, response.status)
        links = [link.url for extractor in self._links for link in extractor.extract_links(response)
                 if link.url not in details]  # fmt: skip
        if is_item_page:
            item = with_downloads(
                self._parser.parse_item(page, response.url, list_values), self.cfg, response.status
            )
            if isinstance(item, PageItem):  # what a refresh needs to skip this page next time
                item.links = [*details.items(), *((url, None) for url in links)]
                item.fresh_s = server_fresh_s(response.headers.get("Cache-Control"))
            yield item
        yield from self._follow_all(details, links)

    def _follow_all(self, details: dict[str, dict[str, Any]], links: list[str]) -> Iterator[Any]:
        """Requests for a page's item blocks' detail pages and its links, then one CarriedItem
        for those of them kept without a request."""
        carried: list[str] = []
        for url, values in details.items():
            if self._allowed(url):
                yield from self._follow(url, values, carried)
        for url in links:
            if self._allowed(url):
                yield from self._follow(url, None, carried)
        if carried:
            yield CarriedItem(tuple(carried))

    def _follow(
        self, url: str, list_values: dict[str, Any] | None, carried: list[str]
    ) -> Iterator[scrapy.Request]:
        """A request for `url`; or, for an item page the crawl stage said need not be checked
        again yet (crawlers/revisit.py), its url added to `carried`, and the same for the links
        it had."""
        pending = [(url, list_values)]
        while pending:
            url, list_values = pending.pop()
            kept = self._skippable.get(url)
            if kept is None or not same_list_values(kept["list_values"], list_values):
                yield self._request(url, list_values)
            elif url not in self._carried:
                self._carried.add(url)
                carried.append(url)
                pending += [(link, values) for link, values in kept["links"] if self._allowed(link)]

    def on_error(self, failure: Failure) -> Iterator[PageReject]:
        """A page that failed after its retries becomes a reject; skipped requests do not."""
        yield from page_failure(self, failure)


def page_failure(spider: scrapy.Spider, failure: Failure) -> Iterator[PageReject]:
    """The reject for a request that failed after its retries (None for a skipped one)."""
    request = failure.request
    retries = request.meta.get("retry_times", 0)
    if failure.check(HttpError):
        status = failure.value.response.status
        reason = f"HTTP {status} after {retries} retries"
    elif failure.check(IgnoreRequest) and "DOWNLOAD_MAXSIZE" in failure.getErrorMessage():
        status = None  # a compression bomb, stopped while decompressing
        reason = f"too large: {failure.getErrorMessage()}"
    elif failure.check(IgnoreRequest) and failure.getErrorMessage().startswith("redirect to"):
        status = None  # crawlers.middlewares.RedirectGuardMiddleware
        reason = failure.getErrorMessage()
    elif failure.check(IgnoreRequest):  # robots.txt or the URL guard; counted by them
        logger.debug("skipped %s: %s", request.url, failure.getErrorMessage())
        return
    else:
        status = None
        reason = f"{failure.type.__name__} after {retries} retries: {failure.getErrorMessage()}"
    if not failure.check(HttpError):  # an answer, an error status: counted when it came
        page_failed(spider.crawler, request)  # crawl.max_pages counts it (crawlers/limits.py)
    spider.crawler.stats.inc_value("kiln/failures")
    logger.warning("page failed: %s: %s", request.url, reason)
    yield PageReject(request.url, reason, status, request.meta.get(_LIST_VALUES))
