"""What fetching list pages ahead (crawlers/prefetch.py) must not change in Scrapy's counting:
`pytest tests/unit/crawlers/test_prefetch.py`. The behaviour over HTTP is in
tests/integration/test_crawl_prefetch.py."""

from __future__ import annotations

from scrapy.http import HtmlResponse, Request
from scrapy.utils.test import get_crawler

from crawlers.prefetch import (
    FROM_HOLD,
    PrefetchAwareCloseSpider,
    PrefetchAwareDownloaderStats,
    prefetch_request,
)


def _response(request: Request) -> HtmlResponse:
    return HtmlResponse(request.url, body=b"<html></html>", request=request)


def _prefetch(url: str) -> Request:
    return prefetch_request(url, callback=None, errback=None)


def test_max_pages_counts_the_pages_reached_not_the_prefetches() -> None:
    crawler = get_crawler(settings_dict={"CLOSESPIDER_PAGECOUNT": 3})
    extension = PrefetchAwareCloseSpider(crawler)
    for url in ("http://x/2", "http://x/3", "http://x/4"):  # fetched ahead: not counted
        request = _prefetch(url)
        extension.page_count(_response(request), request, None)
    request = Request("http://x/")
    extension.page_count(_response(request), request, None)
    assert extension.counter["pagecount"] == 1


def test_an_answer_from_the_hold_is_not_counted_as_a_second_download() -> None:
    crawler = get_crawler()
    stats = PrefetchAwareDownloaderStats(crawler.stats)
    prefetch = _prefetch("http://x/2")
    stats.process_response(prefetch, _response(prefetch))  # the download itself: counted
    replay = Request("http://x/2", meta={FROM_HOLD: True})
    stats.process_response(replay, _response(replay))
    assert crawler.stats.get_value("downloader/response_count") == 1
    assert crawler.stats.get_value("downloader/response_bytes") > 0
