"""Reading one declared field out of a parsed page: used by `crawlers.parse` (which the spider,
`python -m crawlers.run`, and `kiln crawl --check URL` call). Pure; tested in
tests/unit/test_parse_item.py.

A field's selector (CSS is translated to XPath once, by parsel's own translator, so `::text` and
`::attr(x)` work) gives every match; then, in this order: `html_text` turns matched markup into
text through BeautifulSoup (lxml's tree builder: it copes with unclosed tags and stray `</p>`),
`strip` collapses whitespace, `regex` keeps its first group (or the whole match), whitespace-only
values are dropped, and the `type` converts: str (first match, as written), int, float, date
(ISO YYYY-MM-DD), url (absolute against the page), list (every match); `join` joins every match
with a space before converting.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urljoin

from cssselect import SelectorError
from lxml import etree
from parsel import Selector
from parsel.csstranslator import HTMLTranslator

from tasks.params import FieldSelector

_TRANSLATOR = HTMLTranslator()
_NUMBER_NOISE = re.compile(r"[,_\s\u00a0]")  # thousands separators people write: 1,234 / 1 234


@dataclass(frozen=True)
class CompiledField:
    name: str
    spec: FieldSelector
    xpath: str  # the selector as XPath (CSS translated once)
    regex: re.Pattern[str] | None


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


def compile_fields(fields: Mapping[str, FieldSelector]) -> list[CompiledField]:
    """Compile every field once per crawl; ValueError names the first bad selector."""
    return [
        CompiledField(
            name=name,
            spec=spec,
            xpath=to_xpath(spec.css, spec.xpath, f"crawl.fields.{name}"),
            regex=re.compile(spec.regex) if spec.regex else None,
        )
        for name, spec in fields.items()
    ]


def _html_text(markup: str) -> str:
    # Imported on first use: only the `html_text` cleanup needs it, and importing bs4 (with
    # soupsieve) cost ~45 ms of every crawl stage's start (python -X importtime).
    from bs4 import BeautifulSoup  # noqa: PLC0415

    return BeautifulSoup(markup, "lxml").get_text(" ")


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
        return urljoin(base_url, value.strip())
    return value


def read_field(page: Selector, field: CompiledField, base_url: str) -> FieldResult:
    """One field of a page (or of an item block on a list page)."""
    spec = field.spec
    raw = page.xpath(field.xpath).getall()
    values = raw
    if "html_text" in spec.cleanup:
        values = [_html_text(v) for v in values]
    if "strip" in spec.cleanup:
        values = [" ".join(v.split()) for v in values]
    if field.regex is not None:
        found = (field.regex.search(v) for v in values)
        values = [m.group(1) if m.re.groups else m.group(0) for m in found if m]
    values = [v for v in values if v.strip()]
    if not values:
        return FieldResult(None, len(raw))
    if spec.type == "list":
        return FieldResult(values, len(raw))
    text = " ".join(values) if "join" in spec.cleanup else values[0]
    try:
        return FieldResult(_convert(text, spec.type, spec.date_format, base_url), len(raw))
    except ValueError:
        shown = text if len(text) <= 60 else text[:57] + "..."
        return FieldResult(None, len(raw), f"{field.name}: {shown!r} is not a {spec.type}")
