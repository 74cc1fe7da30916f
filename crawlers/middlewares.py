"""Downloader middlewares of the Kiln crawler (`python -m crawlers.run`; enabled in settings.py).

* `UrlGuardMiddleware` refuses every request that `crawlers.urlguard` refuses, before connecting.
* `StrictRobotsTxtMiddleware` is Scrapy's robots.txt middleware with RFC 9309's rule for an
  unreachable robots.txt: when it answers 5xx/429 (after retries) or cannot be fetched at all,
  the whole host is treated as disallowed. Scrapy's own middleware fails open (crawls everything).
"""

from __future__ import annotations

import logging

from scrapy.crawler import Crawler
from scrapy.downloadermiddlewares.robotstxt import RobotsTxtMiddleware
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Request, Response
from scrapy.utils.misc import build_from_crawler

from crawlers.settings import crawl_params_from
from crawlers.urlguard import refusal_reason

logger = logging.getLogger(__name__)

_DISALLOW_ALL = b"User-agent: *\nDisallow: /\n"


class UrlGuardMiddleware:
    def __init__(self, crawler: Crawler) -> None:
        self._cfg = crawl_params_from(crawler.settings)
        self._stats = crawler.stats

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> UrlGuardMiddleware:
        return cls(crawler)

    def process_request(self, request: Request) -> None:
        reason = refusal_reason(request.url, self._cfg)
        if reason:
            self._stats.inc_value("kiln/refused")
            logger.warning("refused %s: %s", request.url, reason)
            raise IgnoreRequest(f"refused: {reason}")


class StrictRobotsTxtMiddleware(RobotsTxtMiddleware):
    # Overrides two hooks of Scrapy 2.19's RobotsTxtMiddleware (private API; scrapy is pinned).

    async def _parse_robots(self, response: Response, netloc: str, request: Request) -> None:
        if response.status >= 500 or response.status == 429:
            logger.warning(
                "robots.txt of %s answered HTTP %d: skipping the whole host (RFC 9309)",
                netloc,
                response.status,
            )
            self._stats.inc_value("kiln/robots_unreachable")
            response = response.replace(body=_DISALLOW_ALL)
        await super()._parse_robots(response, netloc, request)

    def _robots_error(self, exc: Exception, netloc: str) -> None:
        if isinstance(exc, IgnoreRequest):  # refused by the guard: its pages are refused too
            super()._robots_error(exc, netloc)
            return
        logger.warning("robots.txt of %s failed (%s): skipping the whole host", netloc, exc)
        self._stats.inc_value("kiln/robots_unreachable")
        waiting = self._parsers[netloc]
        parser = build_from_crawler(self._parserimpl, self.crawler, _DISALLOW_ALL)
        self._parsers[netloc] = parser
        waiting.callback(parser)
