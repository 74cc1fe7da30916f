"""Reading one declared field out of a parsed page: used by `crawlers.parse` (which the spider,
`python -m crawlers.run`, and `kiln crawl --check URL` call). Pure; tested in
tests/unit/test_parse_item.py.

A field's selector (CSS is translated to XPath once, by parsel's own translator, so `::text` and
`::attr(x)` work) gives every match. The rest is the processor chain of Scrapy's item loaders
(itemloaders), built once per field when the crawl starts:

* per value (`MapCompose`; a step that gives None drops the value), in this order: `html_text`
  turns matched markup into text with BeautifulSoup (messy HTML: comments, scripts, styles and
  templates left out, strings joined by a space, entities decoded), `strip` collapses
  whitespace, `regex` keeps its first group (or the whole match), and a whitespace-only value
  is dropped;
* then the values become one (`TakeFirst`: the first match, as written), a list (`Identity`:
  every match, type `list`) or one text (`Join`: every match joined by a space, cleanup `join`);
* and the `type` converts it: str, int, float (thousands separators allowed), date (ISO
  YYYY-MM-DD), url (absolute against the page, after stripping the whitespace HTML allows
  around a URL, as Scrapy's link extractor does).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any
from urllib.parse import urljoin

from cssselect import SelectorError
from itemloaders.processors import Identity, Join, MapCompose, TakeFirst
from lxml import etree
from parsel import Selector
from parsel.csstranslator import HTMLTranslator
from w3lib.html import strip_html5_whitespace

from tasks.core.params import FieldSelector

_TRANSLATOR = HTMLTranslator()
_NUMBER_NOISE = re.compile(r"[,_\s\u00a0]")  # thousands separators people write: 1,234 / 1 234


@dataclass(frozen=True)
class CompiledField:
    name: str
    spec: FieldSelector
    xpath: str  # the selector as XPath (CSS translated once)
    values: MapCompose  # the per-value chain: html_text, strip, regex, drop whitespace-only
    pick: Callable[[list[str]], Any]  # TakeFirst, Join or Identity (type `list`)


@dataclass(frozen=True)
class FieldResult:
    value: Any  # str | int | float | list[str] | None
    n_matches: int  # raw selector matches, before regex/cleanup: 0 means "matched nothing"
    problem: str | None = None  # a value that could not be converted to the field's type


def to_xpath(css: str | None, xpath: str | None, where: str) -> str:
    """The XPath of a CSS-or-XPath selector; ValueError naming `where` when it does not compile."""
    try:
        path = _TRANSLATOR.css_to_xpath(css) if css is not None else str(xpath)
        etree.XPath(path)
    except (SelectorError, etree.XPathSyntaxError) as exc:
        kind, text = ("css", css) if css is not None else ("xpath", xpath)
        raise ValueError(f"{where}.{kind} {text!r} is not valid: {exc}") from exc
    return path


def html_text(markup: str) -> str:
    """The text of an HTML fragment as BeautifulSoup reads it (lxml's tree builder copes with
    unclosed tags and stray `</p>`): the strings between tags joined by a space, entities decoded,
    without comments, scripts, styles and templates."""
    # Imported on first use: only the `html_text` cleanup needs it, and importing bs4 (with
    # soupsieve) cost ~45 ms of every crawl stage's start (python -X importtime).
    from bs4 import BeautifulSoup  # noqa: PLC0415

    return BeautifulSoup(markup, "lxml").get_text(" ")


def _collapse_whitespace(value: str) -> str:
    # No w3lib or itemloaders function collapses runs of whitespace inside a value
    # (strip_html5_whitespace trims the ends only), and str.split also splits on U+00A0.
    return " ".join(value.split())


def _regex_group(regex: re.Pattern[str], value: str) -> str | None:
    # re.search, not parsel's Selector.re_first / extract_regex: those find every match (slow on
    # a giant text node), take a group named `extract` first and decode entities in what they
    # keep, which would change values that are already text.
    found = regex.search(value)
    return None if found is None else found.group(1 if regex.groups else 0)


def _non_blank(value: str) -> str | None:
    return value if value.strip() else None  # None: MapCompose drops the value


def _value_chain(spec: FieldSelector) -> MapCompose:
    steps: list[Callable[[str], str | None]] = []
    if "html_text" in spec.cleanup:
        steps.append(html_text)
    if "strip" in spec.cleanup:
        steps.append(_collapse_whitespace)
    if spec.regex:
        steps.append(partial(_regex_group, re.compile(spec.regex)))
    return MapCompose(*steps, _non_blank)


def _pick(spec: FieldSelector) -> Callable[[list[str]], Any]:
    if spec.type == "list":
        return Identity()
    return Join(" ") if "join" in spec.cleanup else TakeFirst()


def compile_fields(fields: Mapping[str, FieldSelector]) -> list[CompiledField]:
    """Compile every field once per crawl; ValueError names the first bad selector."""
    return [
        CompiledField(
            name=name,
            spec=spec,
            xpath=to_xpath(spec.css, spec.xpath, f"crawl.fields.{name}"),
            values=_value_chain(spec),
            pick=_pick(spec),
        )
        for name, spec in fields.items()
    ]


def _convert(value: str, kind: str, date_format: str | None, base_url: str) -> Any:
    if kind == "int":
        return int(_NUMBER_NOISE.sub("", value))
    if kind == "float":
        return float(_NUMBER_NOISE.sub("", value))
    if kind == "date":
        text = value.strip()
        parsed = (
            datetime.strptime(text, date_format) if date_format else datetime.fromisoformat(text)
        )
        return parsed.date().isoformat()
    if kind == "url":
        return urljoin(base_url, strip_html5_whitespace(value))
    return value


def read_field(page: Selector, field: CompiledField, base_url: str) -> FieldResult:
    """One field of a page (or of an item block on a list page)."""
    spec = field.spec
    raw = page.xpath(field.xpath).getall()
    values = field.values(raw)
    if not values:
        return FieldResult(None, len(raw))
    text = field.pick(values)
    if spec.type == "list":
        return FieldResult(text, len(raw))
    try:
        return FieldResult(_convert(text, spec.type, spec.date_format, base_url), len(raw))
    except ValueError:
        shown = text if len(text) <= 60 else text[:57] + "..."
        return FieldResult(None, len(raw), f"{field.name}: {shown!r} is not a {spec.type}")
