"""An example of a hand-written spider: `crawl.spider: co2_table:Co2TableSpider` in params.yaml,
run by `python -m tasks.crawl` like the generic one (tests/integration/test_crawl_sections.py).

It reads the demo site's CO2 table (`/co2/`) the way the declarative `examples/co2.params.yaml`
does, to show the contract: yield dicts with a `url` and one key per field (or `PageItem` /
`PageReject`); Kiln adds the output format, the limits (crawlers/limits.py counts the pages and
downloads of any spider) and the safety settings (URL guard, robots.txt, size limits, retries),
which `custom_settings` cannot loosen.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import scrapy
from scrapy.http import Response

from crawlers.items import PageReject
from crawlers.spiders.generic import page_failure


class Co2TableSpider(scrapy.Spider):
    name = "co2_table"
    # Ignored on purpose: Kiln's guard and retry policy stay on (crawlers/settings.py _ENFORCED).
    custom_settings = {"DOWNLOADER_MIDDLEWARES": {"crawlers.middlewares.UrlGuardMiddleware": None}}

    async def start(self) -> Any:
        for url in self.start_urls:
            yield scrapy.Request(url, callback=self.parse, errback=self.failed)

    def parse(self, response: Response, **kwargs: Any) -> Iterator[Any]:
        for n, row in enumerate(response.css("table.series tr:not(:first-child)"), start=1):
            week, ppm = row.css("td.week::text").get(), row.css("td.ppm::text").get()
            url = f"{response.url}#item-{n}"
            if ppm is None:
                yield PageReject(url, "missing required field(s): co2_ppm", response.status)
                continue
            yield {"url": url, "week": week, "co2_ppm": float(ppm)}
        for href in response.css("nav.pagination a[rel=next]::attr(href)").getall():
            yield response.follow(href, callback=self.parse, errback=self.failed)
        # A request that opts out of Scrapy's offsite filter and asks for the cloud metadata
        # address: the URL guard refuses it before connecting.
        yield scrapy.Request(
            "http://169.254.169.254/latest/meta-data/",
            errback=self.failed,
            dont_filter=True,
            meta={"allow_offsite": True},
        )

    def failed(self, failure: Any) -> Iterator[PageReject]:
        yield from page_failure(self, failure)
