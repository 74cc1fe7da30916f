"""Offline tests of the pure page parser: `pytest tests/unit/test_parse_item.py`.

fixtures/pages/ holds item pages saved from the demo site (`build_site` with n_items=40,
per_page=10, n_duplicates=3, n_broken=2, bad_label_share=0.05, seed=0), its first list page and
its truncated broken page, plus hand-made pages: malformed HTML behind an `<?xml` prolog, an empty
body and an ISO-8859-1 page. Each gives an item or a reject, never an exception.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from crawlers.demo_site import build_site
from crawlers.items import PageItem, PageReject
from crawlers.parse import check_selectors, decode_page, parse_item
from tasks.params import DemoSiteParams, FieldSelector, load_params

PAGES = Path(__file__).parent / "fixtures" / "pages"
REPO = Path(__file__).resolve().parents[2]
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


def test_bad_selector_is_named_before_crawling() -> None:
    with pytest.raises(ValueError, match=r"crawl\.fields\.label\.css 'span\.label::nope'"):
        check_selectors({"label": FieldSelector(css="span.label::nope")})


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
