"""Pure parsing of item pages; the spider (`python -m crawlers.run`) fetches, this only reads text.

Tested offline against saved pages in tests/unit/test_parse_item.py. parsel (lxml) recovers from
malformed HTML the way browsers do, so a messy page gives an item or a reject, never a crash.
"""

from __future__ import annotations

from collections.abc import Mapping

from cssselect import SelectorError
from parsel import Selector
from w3lib.encoding import html_to_unicode

from crawlers.items import PageItem, PageReject
from tasks.params import FieldSelector


def check_selectors(fields: Mapping[str, FieldSelector]) -> None:
    """Fail before crawling if a field's CSS selector does not compile, naming the field."""
    probe = Selector(text="<html></html>", type="html")
    for name, spec in fields.items():
        try:
            probe.css(spec.css)
        except SelectorError as exc:
            raise ValueError(f"crawl.fields.{name}.css {spec.css!r} is not valid: {exc}") from exc


def decode_page(body: bytes, content_type: str | None = None) -> str:
    """Bytes to text as Scrapy and browsers do: header charset, BOM, <meta charset>, sniffing.

    Bytes that are invalid in the chosen encoding become U+FFFD instead of raising.
    """
    _, text = html_to_unicode(content_type, body)
    return text


def extract_fields(html: str, fields: Mapping[str, FieldSelector]) -> dict[str, str | None]:
    """The first match of each field's selector; missing or whitespace-only text gives None."""
    # type="html" always: parsel would parse a page starting with an `<?xml` prolog as XML.
    page = Selector(text=html, type="html")
    values: dict[str, str | None] = {}
    for name, spec in fields.items():
        value = page.css(spec.css).get()
        values[name] = value if value is not None and value.strip() else None
    return values


def parse_item(html: str, url: str, fields: Mapping[str, FieldSelector]) -> PageItem | PageReject:
    """An item with every field (raw text, None when an optional one is missing), or a reject
    naming the required fields that are missing, in alphabetical order."""
    values = extract_fields(html, fields)
    missing = sorted(
        name for name, spec in fields.items() if spec.required and values[name] is None
    )
    if missing:
        return PageReject(url=url, reason=f"missing required field(s): {', '.join(missing)}")
    return PageItem(url=url, fields=values)
