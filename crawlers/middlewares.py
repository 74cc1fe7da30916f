"""Downloader middlewares of the Kiln crawler (`python -m crawlers.run`; enabled in settings.py).

* `UrlGuardMiddleware` refuses every request that `crawlers.urlguard` refuses, before connecting.
* `StrictRobotsTxtMiddleware` is Scrapy's robots.txt middleware with RFC 9309's rule for an
  unreachable robots.txt: when it answers 5xx/429 (after retries) or cannot be fetched at all,
  the whole host is treated as disallowed. Scrapy's own middleware fails open (crawls everything).
* `BackoffRetryMiddleware` is Scrapy's retry middleware, waiting before each retry: the server's
  `Retry-After` (seconds or an HTTP date, capped by `crawl.max_retry_after_s`) or else
  `crawl.retry_backoff_s` doubled per retry. The wait does not hold a download slot.
"""

from __future__ import annotations

import logging
import time
from email.utils import parsedate_to_datetime
from urllib.parse import urljoin

from scrapy.crawler import Crawler
from scrapy.downloadermiddlewares.retry import RetryMiddleware
from scrapy.downloadermiddlewares.robotstxt import RobotsTxtMiddleware
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Request, Response
from scrapy.settings import BaseSettings
from scrapy.utils.asyncio import sleep
from scrapy.utils.misc import build_from_crawler
from scrapy.utils.response import response_status_message
from w3lib.url import safe_url_string

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
        if request.url.endswith("/robots.txt"):
            # Always asked afresh: a stored copy would hide a 5xx, and a 5xx means "skip the
            # host" (StrictRobotsTxtMiddleware), whereas the HTTP cache serves stale on 5xx.
            request.meta["dont_cache"] = True
        reason = refusal_reason(request.url, self._cfg)
        if reason:
            self._stats.inc_value("kiln/refused")
            logger.warning("refused %s: %s", request.url, reason)
            raise IgnoreRequest(f"refused: {reason}")


class RedirectGuardMiddleware(UrlGuardMiddleware):
    """Sees a 3xx before Scrapy's redirect middleware (650 > 600: responses run high to low) and
    refuses a Location the guard refuses, naming it, so the page becomes a reject with a reason
    instead of a silently dropped redirect."""

    def process_request(self, request: Request) -> None:
        return None

    def process_response(self, request: Request, response: Response) -> Response:
        location = response.headers.get("Location")
        if 300 <= response.status < 400 and location:
            # The URL Scrapy's redirect middleware will request (it escapes Location the same way)
            target = urljoin(request.url, safe_url_string(location))
            reason = refusal_reason(target, self._cfg)
            if reason:
                self._stats.inc_value("kiln/refused")
                logger.warning("refused redirect %s -> %s: %s", request.url, target, reason)
                raise IgnoreRequest(f"redirect to {target} refused: {reason}")
        return response


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


def retry_after_s(value: bytes | None, now: float | None = None) -> float | None:
    """Seconds a `Retry-After` header asks for (RFC 9110 10.2.3), None when absent or unreadable."""
    if not value:
        return None
    text = value.decode("latin-1").strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


class BackoffRetryMiddleware(RetryMiddleware):
    def __init__(self, settings: BaseSettings) -> None:
        super().__init__(settings)
        self._backoff_s = settings.getfloat("KILN_RETRY_BACKOFF_S")
        self._cap_s = settings.getfloat("KILN_MAX_RETRY_AFTER_S")

    def _delay(self, request: Request, response: Response | None) -> float:
        asked = retry_after_s(response.headers.get("Retry-After")) if response else None
        if asked is not None:
            return min(asked, self._cap_s)
        return self._backoff_s * 2 ** request.meta.get("retry_times", 0)

    async def _wait_then(self, request: Request, retry: Request | None, response: Response | None):
        if retry is not None:
            delay = self._delay(request, response)
            self.crawler.stats.inc_value("kiln/backoff_s", round(delay, 3))
            await sleep(delay)
        return retry

    async def process_response(self, request: Request, response: Response) -> Request | Response:
        if request.meta.get("dont_retry", False) or response.status not in self.retry_http_codes:
            return response
        retry = self._retry(request, response_status_message(response.status))
        return await self._wait_then(request, retry, response) or response

    async def process_exception(self, request: Request, exception: Exception) -> Request | None:
        if request.meta.get("dont_retry", False) or not isinstance(
            exception, self.exceptions_to_retry
        ):
            return None
        return await self._wait_then(request, self._retry(request, exception), None)
