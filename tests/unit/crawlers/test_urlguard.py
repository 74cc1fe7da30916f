"""Which URLs the crawler refuses, offline: `pytest tests/unit/crawlers/test_urlguard.py`."""

from __future__ import annotations

import pytest

from crawlers.urlguard import refusal_reason
from tasks.core.params import CrawlParams, FieldSelector


def _cfg(allowed: list[str], allow_loopback: bool = False, private: bool = False) -> CrawlParams:
    return CrawlParams(
        start_urls=["http://example.com/"],
        allowed_domains=allowed,
        allow_loopback=allow_loopback,
        allow_private=private,
        follow_css=["a"],
        item_url_pattern="/item/",
        fields={"image": FieldSelector(css="img::attr(src)")},
        image_field="image",
    )


@pytest.mark.parametrize(
    ("url", "allowed", "loopback", "reason"),
    [
        ("file:///etc/passwd", ["example.com"], False, "scheme file:// is not http"),
        ("ftp://example.com/x", ["example.com"], False, "scheme ftp:// is not http"),
        ("data:text/html,hi", ["example.com"], False, "scheme data:// is not http"),
        ("//example.com/", ["example.com"], False, "scheme (none) is not http"),
        ("http://evil.com/", ["example.com"], False, "not in crawl.allowed_domains"),
        ("http://example.com.evil.com/", ["example.com"], False, "not in crawl.allowed_domains"),
        ("http://127.0.0.1:8765/", ["127.0.0.1"], False, "loopback"),
        ("http://localhost/", ["localhost"], False, "loopback"),
        ("http://[::1]/", ["::1"], False, "loopback"),
        ("http://[::ffff:127.0.0.1]/", ["::ffff:127.0.0.1"], False, "loopback"),
        ("http://169.254.169.254/latest/meta-data/", ["169.254.169.254"], True, "link-local"),
        ("http://0.0.0.0/", ["0.0.0.0"], True, "unspecified"),  # noqa: S104 (a URL, not a bind)
        ("http://example.com:99999/", ["example.com"], False, "malformed URL"),
        ("http://10.0.0.5/", ["10.0.0.5"], True, "private address"),
        ("http://192.168.1.1/", ["192.168.1.1"], True, "private address"),
        ("http://[fd00::1]/", ["fd00::1"], True, "private address"),
        # special-purpose ranges and IPv4 inside IPv6 (issue 15)
        ("http://100.64.0.1/", ["100.64.0.1"], True, "special-purpose"),
        ("http://198.51.100.7/", ["198.51.100.7"], True, "private address"),  # documentation
        ("http://[2002:a9fe:a9fe::1]/", ["2002:a9fe:a9fe::1"], True, "link-local address"),
        ("http://[2002:7f00:1::]/", ["2002:7f00:1::"], False, "false), embedded in 2002"),
        ("http://[64:ff9b::a9fe:a9fe]/", ["64:ff9b::a9fe:a9fe"], True, "link-local"),
    ],
)
def test_refused(url: str, allowed: list[str], loopback: bool, reason: str) -> None:
    assert reason in (refusal_reason(url, _cfg(allowed, loopback), resolve=False) or "")


@pytest.mark.parametrize(
    ("url", "allowed", "loopback"),
    [
        ("https://example.com/item/1", ["example.com"], False),
        ("http://shop.example.com/", ["example.com"], False),
        ("http://EXAMPLE.com./", ["example.com"], False),
        ("http://127.0.0.1:8765/page/2", ["127.0.0.1"], True),
        ("http://localhost:8765/", ["localhost"], True),
    ],
)
def test_allowed(url: str, allowed: list[str], loopback: bool) -> None:
    assert refusal_reason(url, _cfg(allowed, loopback), resolve=False) is None


def test_private_addresses_only_when_allowed() -> None:
    assert refusal_reason("http://10.0.0.5/", _cfg(["10.0.0.5"], private=True)) is None


def test_the_resolver_checks_the_address_it_hands_to_the_connection() -> None:
    """GuardedResolver (Scrapy's TWISTED_DNS_RESOLVER here): the name's one lookup is what is
    checked and what Scrapy connects to, so a DNS answer that changes between two lookups cannot
    slip by."""
    from twisted.internet.error import DNSLookupError  # noqa: PLC0415

    from crawlers.urlguard import GuardedResolver  # noqa: PLC0415

    resolver = GuardedResolver.__new__(GuardedResolver)  # no reactor needed for the check
    resolver.cfg = _cfg(["example.com"])
    assert resolver.checked("93.184.215.14", "example.com") == "93.184.215.14"
    for ip, reason in [
        ("169.254.169.254", "link-local"),
        ("127.0.0.1", "loopback"),
        ("100.64.0.9", "special-purpose"),
    ]:
        with pytest.raises(DNSLookupError, match=f"example.com resolved to {ip}: .*{reason}"):
            resolver.checked(ip, "example.com")


def test_scrapy_uses_the_guarded_resolver(tmp_path) -> None:
    from crawlers.settings import settings_for  # noqa: PLC0415

    settings = settings_for(_cfg(["example.com"]), tmp_path)
    assert settings["TWISTED_DNS_RESOLVER"] == "crawlers.urlguard.GuardedResolver"
