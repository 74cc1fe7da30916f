"""Offline tests of the pure page parser: `pytest tests/unit/crawlers/test_parse_item.py`.

fixtures/pages/ holds item pages saved from the demo site (`build_site` with n_items=40,
per_page=10, n_duplicates=3, n_broken=2, bad_label_share=0.05, seed=0), its first list page and
its truncated broken page, plus hand-made pages: malformed HTML behind an `<?xml` prolog, an empty
body and an ISO-8859-1 page. Each gives an item or a reject, never an exception.
"""

from __future__ import annotations

import html
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crawlers.demo_site import build_site
from crawlers.items import PageItem, PageReject
from crawlers.parse import ListEntry, PageParser, check_selectors, decode_page, parse_item
from tasks.core.params import DemoSiteParams, FieldSelector, ItemListParams, load_params
from tests.project import REPO

PAGES = Path(__file__).parent / "fixtures" / "pages"
FIELDS = load_params(REPO / "params.yaml").crawl.fields  # the selectors the demo crawl uses
URL = "http://127.0.0.1:8765/item/x"


def _parse(name: str) -> PageItem | PageReject:
    return parse_item(decode_page((PAGES / name).read_bytes(), "text/html"), URL, FIELDS)


def test_full_item_page_gives_every_field_raw() -> None:
    item = _parse("item_full.html")
    assert isinstance(item, PageItem)
    assert item.url == URL
    assert item.fields == {
        "title": "Handwritten digit #0002",
        "label": "2",
        "image": "/img/digit-0002.png",
        "writer": "writer-21",
        "ink": "0.3359",
        "price": "9.41",
    }


def test_missing_optional_field_is_none() -> None:
    item = _parse("item_missing_price.html")
    assert isinstance(item, PageItem)
    assert item.fields["price"] is None
    assert item.fields["label"] == "0"


def test_labels_are_kept_as_written() -> None:
    spelled, bad = _parse("item_spelled_label.html"), _parse("item_bad_label.html")
    assert isinstance(spelled, PageItem) and isinstance(bad, PageItem)
    assert spelled.fields["label"] == " Four "  # normalising labels is clean's job
    assert bad.fields["label"] == "unknown"  # quarantining it is validate's job


@pytest.mark.parametrize(
    ("name", "missing"),
    [
        ("broken_truncated.html", "image, label"),
        ("list_page.html", "image, label, title"),
        ("empty.html", "image, label, title"),
    ],
)
def test_missing_required_fields_reject_the_page_with_reason(name: str, missing: str) -> None:
    reject = _parse(name)
    assert reject == PageReject(url=URL, reason=f"missing required field(s): {missing}")


def test_malformed_html_behind_xml_prolog_still_parses() -> None:
    item = _parse("malformed.html")
    assert isinstance(item, PageItem)
    assert item.fields["label"] == "3"
    assert item.fields["image"] == "/img/digit-0099.png"
    assert item.fields["ink"] == "0.3101"
    assert item.fields["price"] is None  # an empty <dd> is a missing value


def test_latin1_page_decodes_by_its_meta_charset() -> None:
    item = _parse("latin1.html")
    assert isinstance(item, PageItem)
    assert item.fields["writer"] == "Zoë Brontë"
    assert item.fields["label"] == "deux"


def test_wrong_charset_header_gives_replacement_chars_not_a_crash() -> None:
    text = decode_page((PAGES / "latin1.html").read_bytes(), "text/html; charset=utf-8")
    item = parse_item(text, URL, FIELDS)
    assert isinstance(item, PageItem)
    assert item.fields["writer"] == "Zo\ufffd Bront\ufffd"


def test_whitespace_only_value_is_missing() -> None:
    fields = {"label": FieldSelector(css="span.label::text", required=False)}
    item = parse_item('<span class="label">  \n </span>', URL, fields)
    assert isinstance(item, PageItem) and item.fields == {"label": None}


def test_bad_selector_is_named_when_params_load() -> None:
    """Refused by the params schema (`kiln check`), before any crawl; check_selectors, the crawl's
    own check, names it too for a selector built without the schema."""
    with pytest.raises(ValueError, match=r"CSS selector 'span\.label::nope' is not valid"):
        FieldSelector(css="span.label::nope")
    unchecked = FieldSelector.model_construct(css="span.label::nope", xpath=None)
    with pytest.raises(ValueError, match=r"crawl\.fields\.label\.css 'span\.label::nope'"):
        check_selectors({"label": unchecked})


def test_params_selectors_match_every_demo_page() -> None:
    """The markup of build_site() and the selectors of params.yaml agree."""
    site = build_site(DemoSiteParams(n_items=40, per_page=10, n_duplicates=3, n_broken=2))
    good = set(site.good_item_paths)
    for path in site.item_paths:
        page = site.pages[path]
        result = parse_item(page.body.decode(), path, FIELDS)
        if path in good:
            assert isinstance(result, PageItem), (path, result)
            assert result.fields["image"] == f"/img/{path.removeprefix('/item/')}.png"
        else:  # broken: a 500 or a truncated page
            assert isinstance(result, PageReject) or page.status == 500


# --- declarative fields: XPath, regex, types, cleanup, list + detail pages ----------------------

MESSY = """<html><body><h1> Mauna  Loa </h1>
<table><tr><td class="d">1958-03-29</td><td class="v">316.1</td><td class="n">1,204</td></tr>
<tr><td class="d">1958-04-05</td><td class="v">n/a</td></tr></table>
<div class="post"><p>Why <b>do</b> programmers<p>prefer dark mode?</div>
<a class="more" href="/more?x=1">more</a><span class="tag">py</span><span class="tag">fun</span>
<p class="price">Price: EUR 12.50 incl.</p></body></html>"""


def _field(**spec: object) -> dict[str, FieldSelector]:
    return {"f": FieldSelector(**spec)}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"xpath": "//h1/text()"}, " Mauna  Loa "),
        ({"xpath": "//h1/text()", "cleanup": ["strip"]}, "Mauna Loa"),
        ({"css": "td.v::text", "type": "float"}, 316.1),
        ({"css": "td.n::text", "type": "int"}, 1204),
        ({"css": "td.d::text", "type": "date"}, "1958-03-29"),
        ({"css": "a.more::attr(href)", "type": "url"}, "http://127.0.0.1:8765/more?x=1"),
        ({"css": "span.tag::text", "type": "list"}, ["py", "fun"]),
        ({"css": "span.tag::text", "cleanup": ["join"]}, "py fun"),
        ({"css": "p.price::text", "regex": r"EUR ([\d.]+)", "type": "float"}, 12.5),
        (
            {"css": "div.post", "cleanup": ["html_text", "strip"]},
            "Why do programmers prefer dark mode?",
        ),
        ({"css": "td.d::text", "type": "date", "date_format": "%Y-%m-%d"}, "1958-03-29"),
    ],
)
def test_field_types_regex_and_cleanup(spec: dict, expected: object) -> None:
    item = parse_item(MESSY, URL, _field(**spec))
    assert isinstance(item, PageItem) and item.fields == {"f": expected}


def test_unconvertible_value_rejects_the_page_naming_field_and_value() -> None:
    reject = parse_item(
        MESSY, URL, {"v": FieldSelector(css="tr:nth-child(2) td.v::text", type="float")}
    )
    assert reject == PageReject(url=URL, reason="v: 'n/a' is not a float")


def test_bad_xpath_is_named_when_params_load() -> None:
    with pytest.raises(ValueError, match=r"XPath '//span\[' is not valid"):
        FieldSelector(xpath="//span[")
    unchecked = FieldSelector.model_construct(css=None, xpath="//span[")
    with pytest.raises(ValueError, match=r"crawl\.fields\.label\.xpath '//span\[' is not valid"):
        check_selectors({"label": unchecked})


def test_a_field_needs_exactly_one_selector() -> None:
    with pytest.raises(ValueError, match="exactly one of `css` or `xpath`"):
        FieldSelector(css="a", xpath="//a")


def test_item_spans_list_page_and_detail_page() -> None:
    """`from: list` fields are read in the item's block; the rest on the detail page."""
    site = build_site(DemoSiteParams(n_items=40, per_page=10, n_duplicates=3, n_broken=2))
    item_list = ItemListParams(css="ul.items li", link_css="a.item::attr(href)")
    fields = {
        "sku": FieldSelector(css="a.item::text", **{"from": "list"}),
        "label": FieldSelector(css="span.label::text"),
    }
    parser = PageParser(fields, item_list)
    entries = parser.parse_list(site.pages["/"].body.decode(), "http://h/")
    assert [e.url for e in entries] == ["http://h" + p for p in site.item_paths[:10]]
    first = entries[0]
    assert isinstance(first, ListEntry) and first.values == {"sku": "digit-0000"}
    item = parser.parse_item(site.pages["/item/digit-0000"].body.decode(), first.url, first.values)
    assert isinstance(item, PageItem)
    assert item.fields == {"sku": "digit-0000", "label": site.items[0].label}
    orphan = parser.parse_item(site.pages["/item/digit-0000"].body.decode(), first.url)
    assert orphan == PageReject(first.url, "missing required field(s): sku")


def test_self_contained_blocks_are_items_and_bad_rows_rejects() -> None:
    parser = PageParser(
        {"date": FieldSelector(css="td.d::text", type="date"),
         "co2": FieldSelector(css="td.v::text", type="float")},
        ItemListParams(css="table tr"),
    )  # fmt: skip
    out = parser.parse_list(MESSY, "http://h/p/1")
    assert out == [
        PageItem(url="http://h/p/1#item-1", fields={"date": "1958-03-29", "co2": 316.1}),
        PageReject(url="http://h/p/1#item-2", reason="co2: 'n/a' is not a float"),
    ]


def test_report_says_which_selectors_matched_nothing() -> None:
    parser = PageParser(
        {"title": FieldSelector(css="h1::text"), "nope": FieldSelector(css="h2.nope::text")}
    )
    report = parser.report(MESSY, URL)
    assert report["title"].n_matches == 1 and report["title"].value == " Mauna  Loa "
    assert report["nope"].n_matches == 0 and report["nope"].value is None


def test_giant_text_node_gives_an_item_not_a_crash() -> None:
    """lxml refuses text nodes over 10 MB unless told otherwise; parsel's huge_tree is on."""
    giant = "x" * (24 * 1024 * 1024)  # 24 MiB in one text node
    page = f'<h1 class="title">t</h1><p class="blob">{giant}</p><span class="label">7</span>'
    fields = {
        "label": FieldSelector(css="span.label::text"),
        "blob": FieldSelector(css="p.blob::text", regex="^(x{5})"),
    }
    item = parse_item(page, URL, fields)
    assert isinstance(item, PageItem) and item.fields == {"label": "7", "blob": "xxxxx"}


@pytest.mark.parametrize(
    ("markup", "expected"),
    [
        ("<div>AT&amp;T &lt;b&gt; caf&eacute; &#233;</div>", "AT&T <b> café é"),
        # Each string is joined by a space: a comment inside a word splits it.
        ("<div>a<!-- <b>hidden</b> -->b<script>x = '<p>';</script><style>p{}</style></div>", "a b"),
        ("<div>unclosed <i>italic <b>bold</div> tail", "unclosed italic bold"),
        ("<div>x < y and 3<4</div>", "x < y and 3<4"),
        ("<div><template>t</template>line<br>two</div>", "line two"),
    ],
)
def test_html_text_reads_messy_markup_as_text(markup: str, expected: str) -> None:
    fields = {"f": FieldSelector(css="div", cleanup=["html_text", "strip"])}
    assert parse_item(markup, URL, fields) == PageItem(url=URL, fields={"f": expected})


def test_regex_group_that_took_no_part_is_a_missing_value() -> None:
    fields = {"f": FieldSelector(css="h1::text", regex=r"(Kilauea)?\s*Mauna", required=False)}
    assert parse_item(MESSY, URL, fields) == PageItem(url=URL, fields={"f": None})


def test_url_field_is_made_absolute_without_the_whitespace_around_it() -> None:
    fields = {"f": FieldSelector(css="a::attr(href)", type="url")}
    item = parse_item('<a href="\n  ../img/a b.png \t">x</a>', "http://h/p/1", fields)
    assert item == PageItem(url="http://h/p/1", fields={"f": "http://h/img/a b.png"})


def test_detail_link_is_escaped_as_scrapy_requests_it() -> None:
    """The detail page's values are keyed by the URL its request and its response will have."""
    parser = PageParser(
        {"sku": FieldSelector(css="a::text", **{"from": "list"})},
        ItemListParams(css="li", link_css="a::attr(href)"),
    )
    page = '<ul><li><a href=" /item/café 1?q=ü\n">c</a></li><li><a href=" ">none</a></li></ul>'
    assert parser.parse_list(page, "http://h/") == [
        ListEntry(url="http://h/item/caf%C3%A9%201?q=%C3%BC", values={"sku": "c"}, detail=True),
        PageReject(url="http://h/#item-2", reason="item block has no link"),
    ]


_tags = st.sampled_from(["div", "span", "p", "h1", "a", "img", "dd", "dt", "table", "td", "br"])
_html = st.recursive(
    st.text(max_size=20).map(html.escape),
    lambda inner: st.builds(
        lambda tag, cls, body: f'<{tag} class="{cls}">{body}</{tag}>',
        _tags, st.sampled_from(["label", "title", "digit", "x"]),
        st.lists(inner, max_size=3).map("".join),
    ),
    max_leaves=15,
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(page=_html | st.text(max_size=200), spec=st.sampled_from([
    {"css": "span.label::text"}, {"css": "h1.title::text", "type": "int"},
    {"xpath": "//img/@src", "type": "url"}, {"css": "div", "cleanup": ["html_text", "strip"]},
    {"css": "span::text", "type": "list"}, {"css": "p::text", "type": "date"},
    {"css": "td::text", "regex": r"(\d+)", "type": "float"},
]))  # fmt: skip
def test_any_markup_gives_an_item_or_a_reject(page: str, spec: dict) -> None:
    """Property-based (issue 15): hypothesis-generated markup through every field type and
    cleanup; an item or a reject with a reason, never an exception."""
    result = parse_item(page, URL, {"f": FieldSelector(**spec, required=False)})
    assert isinstance(result, PageItem | PageReject)
    result = parse_item(page, URL, {"f": FieldSelector(**spec)})
    assert isinstance(result, PageItem) or result.reason
