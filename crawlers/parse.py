"""Pure parsing of pages; the spider (`python -m crawlers.run`) fetches, this only reads text.

Tested offline against saved pages in tests/unit/test_parse_item.py. parsel (lxml) recovers from
malformed HTML the way browsers do, so a messy page gives an item or a reject, never a crash.

`PageParser` is built once per crawl from the `crawl` section: `parse_item` reads an item
(detail) page, `parse_list` the item blocks of a list page (each block an item of its own, or
the `from: list` fields of the detail page it links to), `report` what each selector matched
(for `kiln crawl --check URL`). Values are typed per field (`crawlers.fields`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

from parsel import Selector
from w3lib.encoding import html_to_unicode
from w3lib.html import strip_html5_whitespace
from w3lib.url import safe_url_string

from crawlers.fields import CompiledField, FieldResult, compile_fields, read_field, to_xpath
from crawlers.items import PageItem, PageReject
from tasks.core.params import FieldSelector, ItemListParams


@dataclass(frozen=True)
class ListEntry:
    """One item block of a list page."""

    url: str  # the detail page's URL, or `<list page>#item-<n>` for a self-contained block
    values: dict[str, Any]  # the fields read in the block
    detail: bool  # True: fetch `url` and read the detail fields there


def check_selectors(fields: Mapping[str, FieldSelector]) -> None:
    """Fail before crawling if a field's selector does not compile, naming the field."""
    compile_fields(fields)


def decode_page(body: bytes, content_type: str | None = None) -> str:
    """Bytes to text as Scrapy and browsers do: header charset, BOM, <meta charset>, sniffing.

    Bytes that are invalid in the chosen encoding become U+FFFD instead of raising.
    """
    _, text = html_to_unicode(content_type, body)
    return text


def as_selector(page: str | Selector) -> Selector:
    # type="html" always: parsel would parse a page starting with an `<?xml` prolog as XML.
    return page if isinstance(page, Selector) else Selector(text=page, type="html")


class PageParser:
    def __init__(
        self, fields: Mapping[str, FieldSelector], item_list: ItemListParams | None = None
    ) -> None:
        self.fields = compile_fields(fields)
        self.item_list = item_list
        if item_list is not None:
            where = "crawl.item_list"
            self._block = to_xpath(item_list.css, item_list.xpath, where)
            has_link = item_list.link_css is not None or item_list.link_xpath is not None
            self._link = (
                to_xpath(item_list.link_css, item_list.link_xpath, f"{where}.link")
                if has_link
                else None
            )

    def _read(
        self, page: Selector, url: str, fields: list[CompiledField]
    ) -> tuple[dict[str, Any], dict[str, str]]:
        values, problems = {}, {}
        for field in fields:
            result = read_field(page, field, url)
            values[field.name] = result.value
            if result.problem:
                problems[field.name] = result.problem
        return values, problems

    def _finish(
        self, url: str, values: dict[str, Any], problems: dict[str, str]
    ) -> PageItem | PageReject:
        """An item when every required field is there and every value converted, else a reject."""
        missing = sorted(
            f.name
            for f in self.fields
            if f.spec.required and values[f.name] is None and f.name not in problems
        )
        reasons = [f"missing required field(s): {', '.join(missing)}"] if missing else []
        reasons += problems.values()
        if reasons:
            return PageReject(url=url, reason="; ".join(reasons))
        return PageItem(url=url, fields={f.name: values[f.name] for f in self.fields})

    def parse_item(
        self, page: str | Selector, url: str, list_values: Mapping[str, Any] | None = None
    ) -> PageItem | PageReject:
        """An item page: its `from: detail` fields, plus `list_values` read on the list page."""
        detail = [f for f in self.fields if f.spec.from_ == "detail"]
        values, problems = self._read(as_selector(page), url, detail)
        for field in self.fields:
            if field.spec.from_ == "list":
                values[field.name] = (list_values or {}).get(field.name)
        result = self._finish(url, values, problems)
        if isinstance(result, PageItem):
            result.list_values = dict(list_values) if list_values is not None else None
        return result

    def parse_list(self, page: str | Selector, url: str) -> list[ListEntry | PageItem | PageReject]:
        """The item blocks of a list page, in page order ([] without `crawl.item_list`)."""
        if self.item_list is None:
            return []
        out: list[ListEntry | PageItem | PageReject] = []
        listed = [f for f in self.fields if f.spec.from_ == "list"]
        for n, block in enumerate(as_selector(page).xpath(self._block), start=1):
            if self._link is None:  # the block is the whole item
                item_url = f"{url}#item-{n}"
                item = self._finish(item_url, *self._read(block, url, self.fields))
                out.append(item)
                continue
            href = strip_html5_whitespace(block.xpath(self._link).get() or "")
            if not href:
                out.append(PageReject(url=f"{url}#item-{n}", reason="item block has no link"))
                continue
            values, problems = self._read(block, url, listed)
            # Escaped as Scrapy escapes a request's URL: the key of the page's values is then the
            # URL its response and its link extractor's link have.
            detail_url = safe_url_string(urljoin(url, href))
            if problems:
                out.append(PageReject(url=detail_url, reason="; ".join(problems.values())))
                continue
            out.append(ListEntry(url=detail_url, values=values, detail=True))
        return out

    def verdict(self, report: Mapping[str, FieldResult], url: str) -> PageItem | PageReject:
        """What the crawl makes of an item page whose fields read as `report` (`kiln crawl
        --check`): the same rule as every page the spider reads."""
        values = {name: result.value for name, result in report.items()}
        problems = {name: r.problem for name, r in report.items() if r.problem}
        return self._finish(url, values, problems)

    def report(self, page: str | Selector, url: str) -> dict[str, FieldResult]:
        """What each field's selector gives on this page, for `kiln crawl --check`."""
        sel = as_selector(page)
        scope = sel.xpath(self._block)[:1] if self.item_list is not None else []
        out = {}
        for field in self.fields:
            # A `from: list` field (or any field of a self-contained block) is read in the first
            # item block when the page has one.
            in_block = field.spec.from_ == "list" or (self.item_list and self._link is None)
            out[field.name] = read_field(scope[0] if in_block and scope else sel, field, url)
        return out


def extract_fields(html: str, fields: Mapping[str, FieldSelector]) -> dict[str, Any]:
    """Every field of one page, typed; a missing or whitespace-only value gives None."""
    parser = PageParser(fields)
    return parser._read(as_selector(html), "", parser.fields)[0]


def parse_item(html: str, url: str, fields: Mapping[str, FieldSelector]) -> PageItem | PageReject:
    """An item with every field (None when an optional one is missing), or a reject naming the
    required fields that are missing, in alphabetical order."""
    return PageParser(fields).parse_item(html, url)
