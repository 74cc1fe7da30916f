"""What the crawl counts and where it stops (crawlers/limits.py), offline:
`pytest tests/unit/crawlers/test_limits.py`.

Pages and files are counted apart, each against its own limit, under the names
reports/crawl.json gives them. A real crawl stopped at `crawl.max_pages` is
tests/integration/test_crawl_partial.py.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from scrapy.http import HtmlResponse, Request, Response
from scrapy.http.request import NO_CALLBACK
from scrapy.utils.test import get_crawler

from crawlers import limits
from crawlers.items import PageItem
from crawlers.limits import FILE_DOWNLOAD, FILES, PAGES, CrawlLimits, counted_as, page_failed
from crawlers.pipelines import HashedImagesPipeline
from crawlers.prefetch import FROM_HOLD, prefetch_request
from crawlers.settings import settings_for
from tasks.core.params import CrawlParams, parse_params
from tests.project import REPO


def _cfg(**changes: Any) -> CrawlParams:
    raw = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    raw["crawl"].update(changes)
    return parse_params(raw).crawl


@pytest.fixture
def closed(monkeypatch) -> list[str]:
    """The reasons the extension closed the spider with, in order."""
    reasons: list[str] = []
    monkeypatch.setattr(limits, "_schedule_coro", reasons.append)
    return reasons


def _limits(cfg: CrawlParams, before: dict[str, int] | None = None,
            pending: bool = True) -> tuple[CrawlLimits, Any]:  # fmt: skip
    """The extension on a crawler whose scheduler holds requests (`pending`) or none."""
    crawler = get_crawler(settings_dict={"KILN_CRAWL_JSON": cfg.model_dump_json(by_alias=True),
                                         "KILN_COUNTS_BEFORE": before or {}})  # fmt: skip
    scheduler = SimpleNamespace(has_pending_requests=lambda: pending)
    crawler.engine = SimpleNamespace(close_spider_async=lambda reason: reason, scheduler=scheduler)
    return CrawlLimits.from_crawler(crawler), crawler


def _starts(crawler: Any, request: Request) -> None:
    crawler.signals.send_catch_log(signal=limits.signals.request_reached_downloader,
                                   request=request, spider=None)  # fmt: skip


def _answer(crawler: Any, request: Request) -> None:
    response: Response = HtmlResponse(request.url, body=b"<html></html>", request=request)
    crawler.signals.send_catch_log(signal=limits.signals.response_received, response=response,
                                   request=request, spider=None)  # fmt: skip


def _page(url: str = "http://x/") -> Request:
    return Request(url)


def _image(url: str = "http://x/img.png") -> Request:
    return Request(url, callback=NO_CALLBACK, meta={FILE_DOWNLOAD: True})


def test_what_counts_as_a_page_and_as_a_file() -> None:
    assert counted_as(_page()) == PAGES
    assert counted_as(Request("http://x/2", meta={FROM_HOLD: True})) == PAGES  # reached: counts
    assert counted_as(_image()) == FILES
    assert counted_as(prefetch_request("http://x/2", None, None)) is None  # fetched ahead only
    robots = Request("http://x/robots.txt", callback=NO_CALLBACK,
                     meta={"dont_obey_robotstxt": True})  # fmt: skip
    assert counted_as(robots) is None


def test_image_downloads_do_not_count_towards_max_pages(closed: list[str]) -> None:
    _, crawler = _limits(_cfg(max_pages=3))
    for i in range(10):  # ten images of earlier pages: no page counted
        _answer(crawler, _image(f"http://x/{i}.png"))
    for url in ("http://x/2", "http://x/3", "http://x/4"):  # fetched ahead: not counted
        _answer(crawler, prefetch_request(url, None, None))
    _answer(crawler, Request("http://x/robots.txt", callback=NO_CALLBACK))
    _answer(crawler, _page("http://x/"))
    _answer(crawler, _page("http://x/2"))
    assert closed == []
    _answer(crawler, _page("http://x/3"))
    assert closed == ["kiln_max_pages"]
    _answer(crawler, _page("http://x/4"))  # in flight when it closed: counted, not closed again
    assert crawler.stats.get_value(PAGES) == 4 and crawler.stats.get_value(FILES) == 10
    assert closed == ["kiln_max_pages"]


def test_max_files_counts_downloads_only(closed: list[str]) -> None:
    _, crawler = _limits(_cfg(max_pages=100, max_files=2))
    _answer(crawler, _page())
    _answer(crawler, _image("http://x/a.png"))
    assert closed == []
    _answer(crawler, _image("http://x/b.png"))
    assert closed == ["kiln_max_files"]
    assert (crawler.stats.get_value(PAGES), crawler.stats.get_value(FILES)) == (1, 2)


def test_no_file_limit_by_default(closed: list[str]) -> None:
    _, crawler = _limits(_cfg(max_pages=5))
    for i in range(50):
        _answer(crawler, _image(f"http://x/{i}.png"))
    assert closed == [] and crawler.stats.get_value(FILES) == 50


def test_a_page_that_failed_without_an_answer_counts(closed: list[str]) -> None:
    _, crawler = _limits(_cfg(max_pages=2))
    page_failed(crawler, _page("http://x/timeout"))
    page_failed(crawler, _image())  # not a page: a failed download is the pipeline's reject
    assert crawler.stats.get_value(PAGES) == 1 and closed == []
    _answer(crawler, _page())
    assert closed == ["kiln_max_pages"]


def test_a_resumed_crawl_counts_on_from_the_interrupted_run(closed: list[str]) -> None:
    _, crawler = _limits(_cfg(max_pages=5), before={PAGES: 4, FILES: 100})
    _answer(crawler, _page())
    assert closed == ["kiln_max_pages"]
    assert crawler.stats.get_value(PAGES) == 1  # this run's; crawlers.run adds the earlier ones


def test_the_images_pipeline_marks_its_downloads_as_files() -> None:
    item = PageItem(url="http://x/item/1", fields={}, image_url="http://x/1.png",
                    file_urls={"manual": ["http://x/1.pdf", "http://x/2.pdf"]})  # fmt: skip
    pipeline = object.__new__(HashedImagesPipeline)  # get_media_requests reads nothing else
    requests = pipeline.get_media_requests(item, None)
    assert [r.url for r in requests] == ["http://x/1.png", "http://x/1.pdf", "http://x/2.pdf"]
    assert {counted_as(r) for r in requests} == {FILES}


def test_the_limits_replace_scrapys_closespider(tmp_path) -> None:
    settings = settings_for(_cfg(), tmp_path, tmp_path / "cache")
    extensions = settings.getwithbase("EXTENSIONS")
    assert extensions["crawlers.limits.CrawlLimits"] == 0
    assert extensions["scrapy.extensions.closespider.CloseSpider"] is None  # counted images
    assert settings["HTTPCACHE_STORAGE"] == "crawlers.httpcache_sqlite.SqliteCacheStorage"


def test_a_site_that_fits_the_limit_exactly_is_not_cut(closed: list[str]) -> None:
    _, crawler = _limits(_cfg(max_pages=2), pending=False)  # nothing waits in the scheduler
    _answer(crawler, _page("http://x/"))
    _answer(crawler, _page("http://x/2"))  # the limit, and the last page of the site
    _starts(crawler, _image("http://x/2.png"))  # its image: a download, not a page
    _answer(crawler, _image("http://x/2.png"))
    assert closed == []  # the crawl finishes on its own: "finished", a whole crawl
    _starts(crawler, _page("http://x/3"))  # but the last page linked to one more
    assert closed == ["kiln_max_pages"]


def test_an_item_dropped_past_max_items_closes_the_spider(closed: list[str]) -> None:
    extension, crawler = _limits(_cfg(max_items=5), pending=False)
    crawler.signals.send_catch_log(signal=limits.LIMIT_REACHED, reason="kiln_max_items",
                                   more=False)  # fmt: skip
    _starts(crawler, _page("http://x/9"))  # a page after max_items: it may hold no item
    assert closed == []
    crawler.signals.send_catch_log(signal=limits.LIMIT_REACHED, reason="kiln_max_items",
                                   more=True)  # fmt: skip
    assert closed == ["kiln_max_items"]


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    from tasks.core import progress  # noqa: PLC0415

    fake = _Clock()
    monkeypatch.setattr(progress, "CLOCK", fake)
    monkeypatch.setattr(progress, "HEARTBEAT_S", 0)
    monkeypatch.setattr(progress, "_on_terminal", lambda: False)
    return fake


def _progress(caplog: pytest.LogCaptureFixture) -> list[Any]:
    from tasks.core.progress import parse  # noqa: PLC0415

    lines = [parse(r.getMessage()) for r in caplog.records if r.name == "crawlers.limits"]
    return [line for line in lines if line is not None]


def _opened(extension: CrawlLimits) -> None:
    """spider_opened, to the extension alone (Scrapy's own receivers want a reactor)."""
    extension._opened(None)  # noqa: SLF001


def _closed(extension: CrawlLimits, reason: str) -> None:
    extension._closed(None, reason)  # noqa: SLF001


def test_pages_and_files_show_count_rate_and_eta_against_their_limits(closed, clock, caplog):
    caplog.set_level("INFO")
    ext, crawler = _limits(_cfg(max_pages=50), before={PAGES: 10, FILES: 4})  # no max_files
    _opened(ext)
    for i in range(30):  # 2 pages a second (a resumed crawl: 10 pages before this run)
        clock.now += 0.5
        _answer(crawler, _page(f"http://x/{i}"))
        if i % 3 == 0:
            _answer(crawler, _image(f"http://x/{i}.png"))
    _closed(ext, "kiln_max_pages")
    lines = _progress(caplog)
    pages = [line for line in lines if line.what == "crawl.pages"]
    files = [line for line in lines if line.what == "crawl.files"]
    assert [(p.done, p.total, p.unit) for p in pages] == [
        (10, 50, "pages"),  # the spider opens
        (30, 50, "pages"),  # 10 s later
        (40, 50, "pages"),  # the spider closes
    ]
    assert pages[1].rate == 2.0 and pages[1].eta_s == 10  # 20 pages left at 2 a second
    # the total is a bound, not a forecast: every line says so
    assert {p.detail for p in pages[:-1]} == {"limit crawl.max_pages"}
    assert pages[-1].finished and pages[-1].detail == "done in 15.0s finish_reason kiln_max_pages"
    # files from the first download on, of no limit: total and ETA unknown
    assert files[0].done == 4 and files[0].total is None and files[0].eta_s is None
    assert files[-1].finished and files[-1].done == 14 and files[-1].unit == "files"


def test_an_interrupted_crawl_is_stopped_and_a_whole_one_done(closed, clock, caplog) -> None:
    caplog.set_level("INFO")
    ext, crawler = _limits(_cfg(max_pages=10_000))
    _opened(ext)
    clock.now += 3
    _answer(crawler, _page())
    _closed(ext, "shutdown")
    *_, end = _progress(caplog)
    assert (end.total, end.finished) == (10_000, False)
    assert end.detail == "stopped after 3.0s finish_reason shutdown"
    caplog.clear()
    _opened(ext)
    _answer(crawler, _page())
    _closed(ext, "finished")
    *_, end = _progress(caplog)
    assert end.finished and end.detail == "done in 0.0s limit crawl.max_pages"
