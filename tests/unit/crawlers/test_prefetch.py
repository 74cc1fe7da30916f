"""What fetching list pages ahead (crawlers/prefetch.py) must not change in Scrapy's counting:
`pytest tests/unit/crawlers/test_prefetch.py`. The behaviour over HTTP is in
tests/integration/test_crawl_prefetch.py; that crawl.max_pages counts the pages the crawl reached,
not the prefetches, is in test_limits.py."""

from __future__ import annotations

from scrapy.http import HtmlResponse, Request
from scrapy.utils.test import get_crawler

from crawlers.prefetch import FROM_HOLD, PrefetchAwareDownloaderStats, prefetch_request


def _response(request: Request) -> HtmlResponse:
    return HtmlResponse(request.url, body=b"<html></html>", request=request)


def _prefetch(url: str) -> Request:
    return prefetch_request(url, callback=None, errback=None)


def test_an_answer_from_the_hold_is_not_counted_as_a_second_download() -> None:
    crawler = get_crawler()
    stats = PrefetchAwareDownloaderStats(crawler.stats)
    prefetch = _prefetch("http://x/2")
    stats.process_response(prefetch, _response(prefetch))  # the download itself: counted
    replay = Request("http://x/2", meta={FROM_HOLD: True})
    stats.process_response(replay, _response(replay))
    assert crawler.stats.get_value("downloader/response_count") == 1
    assert crawler.stats.get_value("downloader/response_bytes") > 0
