"""The crawl's fixed policy, offline: `pytest tests/unit/crawlers/test_crawl_policy.py`.

Retry-After parsing, the safety settings a custom spider cannot loosen, and the crawl schema's
checks (selectors, `from: list`, unknown keys with the closest name).
"""

from __future__ import annotations

from email.utils import formatdate
from pathlib import Path

import pytest
import yaml

from crawlers.middlewares import retry_after_s
from crawlers.settings import settings_for
from tasks.core.params import CrawlParams, ParamsError, parse_params
from tests.project import REPO


def _crawl(**changes: object) -> dict:
    raw = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    raw["crawl"].update(changes)
    return raw


def test_retry_after_seconds_and_http_date() -> None:
    assert retry_after_s(b"7") == 7.0
    assert retry_after_s(formatdate(1_000_030, usegmt=True).encode(), now=1_000_000) == 30.0
    assert retry_after_s(formatdate(999_000, usegmt=True).encode(), now=1_000_000) == 0.0
    assert retry_after_s(b"soon") is None and retry_after_s(None) is None


def test_custom_spider_settings_cannot_loosen_the_safety_policy(tmp_path: Path) -> None:
    cfg = parse_params(_crawl(max_response_bytes=2048)).crawl
    settings = settings_for(cfg, tmp_path, tmp_path / "cache")
    settings.setdict(  # what a spider's custom_settings would do ("spider" priority)
        {
            "TELNETCONSOLE_ENABLED": True,
            "REMOTE_CONTROL_ENABLED": True,
            "DOWNLOAD_MAXSIZE": 10**12,
            "ROBOTSTXT_OBEY": False,
            "DOWNLOADER_MIDDLEWARES": {"crawlers.middlewares.UrlGuardMiddleware": None},
            "EXTENSIONS": {"scrapy.extensions.remote_control.RemoteControl": 0},
            "DOWNLOAD_HANDLERS": {
                "file": "scrapy.core.downloader.handlers.file.FileDownloadHandler"
            },
        },
        priority="spider",
    )
    assert not settings.getbool("TELNETCONSOLE_ENABLED")
    assert not settings.getbool("REMOTE_CONTROL_ENABLED")
    assert settings.getint("DOWNLOAD_MAXSIZE") == 2048 and settings.getbool("ROBOTSTXT_OBEY")
    middlewares = settings.getwithbase("DOWNLOADER_MIDDLEWARES")
    assert middlewares["crawlers.middlewares.UrlGuardMiddleware"] == 40
    assert settings["HTTPCACHE_POLICY"].endswith("RFC2616Policy")
    # Removed, not only off: Scrapy does not even import them (crawlers/settings.py).
    assert (
        settings.getwithbase("EXTENSIONS")["scrapy.extensions.remote_control.RemoteControl"] is None
    )
    handlers = settings.getwithbase("DOWNLOAD_HANDLERS")
    assert {scheme for scheme, path in handlers.items() if path} == {"http", "https"}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"fields": {"a": {"css": "h1", "xpath": "//h1"}}, "image_field": None},
         "exactly one of `css` or `xpath`"),
        ({"fields": {"a": {"css": "h1", "from": "list"}}, "image_field": None},
         "`from: list` but item_list is not set"),
        ({"item_url_pattern": None}, "say which pages are items"),
        ({"fields": {"a": {"css": "h1", "regex": "("}}, "image_field": None}, "missing ), "),
        ({"fields": {"a": {"css": "h1", "type": "bool"}}, "image_field": None}, "'str', 'int'"),
        ({"item_list": {"css": "li", "link_cs": "a"}},
         "unknown key 'crawl.item_list.link_cs'; did you mean 'crawl.item_list.link_css'"),
        ({"follow": [{"css": "nav", "alow": ["x"]}]},
         "unknown key 'crawl.follow.0.alow'; did you mean 'crawl.follow.0.allow'"),
        ({"fields": {"a": {"css": "h1", "form": "list"}}, "image_field": None},
         "did you mean 'crawl.fields.a.from'"),
        ({"file_fields": ["manual"]}, "file_fields entry 'manual' is not one of fields"),
        ({"file_fields": ["image"]}, "other than image_field"),
        ({"fields": {"a": {"css": "a::attr(href)"}, "a_path": {"css": "h1"}},
          "image_field": None, "file_fields": ["a"]}, "a_path is a field already"),
        ({"revisit_after_s": -1}, "revisit_after_s"),
    ],
)  # fmt: skip
def test_crawl_schema_names_the_problem(changes: dict, message: str) -> None:
    with pytest.raises(ParamsError, match=None) as err:
        parse_params(_crawl(**changes))
    assert message in str(err.value)


def test_from_alias_round_trips_through_json() -> None:
    cfg = parse_params(_crawl(
        item_list={"css": "li", "link_css": "a::attr(href)"},
        fields={"a": {"css": "h1", "from": "list"}}, image_field=None,
    )).crawl  # fmt: skip
    again = CrawlParams.model_validate_json(cfg.model_dump_json(by_alias=True))
    assert again == cfg and again.fields["a"].from_ == "list"


@pytest.mark.parametrize("path", sorted((REPO / "examples").glob("*.params.yaml")), ids=str)
def test_example_params_files_are_valid(path: Path) -> None:
    """`kiln use` refuses an invalid file; the examples must stay valid as the schema grows."""
    params = parse_params(yaml.safe_load(path.read_text(encoding="utf-8")))
    if params.source.kind != "crawl":  # a file, folder or packaged dataset: nothing is crawled
        assert params.crawl is None
        return
    assert params.crawl.item_list is not None and params.crawl.image_field is None


def test_redirect_guard_checks_the_url_scrapy_would_follow(tmp_path: Path) -> None:
    from types import SimpleNamespace  # noqa: PLC0415

    from scrapy.exceptions import IgnoreRequest  # noqa: PLC0415
    from scrapy.http import Request, Response  # noqa: PLC0415

    from crawlers.middlewares import RedirectGuardMiddleware  # noqa: PLC0415

    cfg = parse_params(_crawl(allowed_domains=["127.0.0.1"])).crawl
    stats = SimpleNamespace(inc_value=lambda *a, **k: None)
    guard = RedirectGuardMiddleware(
        SimpleNamespace(settings=settings_for(cfg, tmp_path), stats=stats)
    )
    request = Request("http://127.0.0.1:8765/item/a")
    kept = Response(request.url, status=302, headers={"Location": "/item/café".encode()})
    assert guard.process_response(request, kept) is kept
    for location, target in [
        ("//evil.com/x", "http://evil.com/x"),
        ("http://evil.com/caf\u00e9", "http://evil.com/caf%C3%A9"),
    ]:
        moved = Response(request.url, status=301, headers={"Location": location.encode()})
        with pytest.raises(IgnoreRequest, match=f"redirect to {target} refused: host evil.com"):
            guard.process_response(request, moved)
