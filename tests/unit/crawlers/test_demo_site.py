"""Tests of the demo shop: `pytest tests/unit/crawlers/test_demo_site.py`.

The site must be deterministic (same params, same bytes), carry exactly the dirt its params
declare, and serve it on loopback with request recording and fault injection.
"""

from __future__ import annotations

import http.client
import io
import urllib.error
import urllib.request

import numpy as np
import pytest
from parsel import Selector
from PIL import Image
from sklearn.datasets import load_digits

from crawlers.demo_server import DROP
from crawlers.demo_site import ROBOTS_TXT, build_site, running_demo_site
from tasks.core.params import DemoSiteParams

SMALL = DemoSiteParams(n_items=40, per_page=10, n_duplicates=3, n_broken=2, bad_label_share=0.1)
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@pytest.fixture(scope="module")
def site():
    return build_site(SMALL)


def _label(site, path: str) -> str:
    return Selector(text=site.pages[path].body.decode(), type="html").css("span.label::text").get()


def test_same_params_give_the_same_bytes(site) -> None:
    again = build_site(SMALL)
    assert again.pages == site.pages
    other = build_site(SMALL.model_copy(update={"seed": 1}))
    assert other.items != site.items  # the seed moves the dirt


def test_every_item_is_listed_once_across_the_pages(site) -> None:
    listed = []
    for n in range(1, 6):  # 43 listed items, 10 per page
        page = Selector(text=site.pages["/" if n == 1 else f"/page/{n}"].body.decode())
        listed += page.css("ul.items a.item::attr(href)").getall()
        assert page.css("nav.pagination a[rel=next]") or n == 5
    assert listed == site.item_paths
    assert len(listed) == SMALL.n_items + SMALL.n_duplicates
    assert "/page/6" not in site.pages


def test_broken_pages_as_declared(site) -> None:
    broken = [it for it in site.items if it.broken]
    assert len(broken) == SMALL.n_broken
    assert {it.broken for it in broken} == {"500", "html"}
    for it in broken:
        page = site.pages[f"/item/{it.sku}"]
        if it.broken == "500":
            assert page.status == 500
        else:
            assert page.status == 200 and b'class="label"' not in page.body
            assert b"<img" not in page.body
    assert len(site.good_item_paths) == SMALL.n_items - SMALL.n_broken + SMALL.n_duplicates


def test_duplicates_share_image_bytes_and_label(site) -> None:
    dups = [it for it in site.items if it.duplicate]
    assert len(dups) == SMALL.n_duplicates
    for it in dups:
        assert site.pages[f"/img/{it.sku}-dup.png"] == site.pages[f"/img/{it.sku}.png"]
        assert _label(site, f"/item/{it.sku}-dup") == _label(site, f"/item/{it.sku}")


def test_label_spellings_and_bad_labels(site) -> None:
    labels = [_label(site, f"/item/{it.sku}") for it in site.items if not it.broken]
    bad = [lab for lab in labels if lab.strip().lower() not in WORDS and not lab.isdigit()]
    assert len(bad) == round(SMALL.bad_label_share * SMALL.n_items)
    spelled = [lab for lab in labels if lab.strip().lower() in WORDS]
    assert spelled and any(lab != lab.strip() for lab in spelled)


def test_some_optional_values_are_missing(site) -> None:
    items = [it for it in site.items if not it.broken]
    assert any(it.writer is None or it.ink is None or it.price is None for it in items)
    page = site.pages["/item/digit-0000"].body.decode()  # seed 0: digit 0 has no price
    assert '<dd class="price"></dd>' in page


def test_images_are_the_sklearn_digits(site) -> None:
    digits = load_digits()
    for i in (0, 17, 39):
        image = Image.open(io.BytesIO(site.pages[f"/img/digit-{i:04d}.png"].body))
        assert (image.format, image.mode, image.size) == ("PNG", "L", (8, 8))
        expected = digits.images[i].astype(np.uint16) * 255 // 16
        assert np.array_equal(np.asarray(image), expected)
        assert site.items[i].digit == digits.target[i]


def test_robots_txt_disallows_admin_which_the_home_page_links(site) -> None:
    assert site.pages["/robots.txt"].body.decode() == ROBOTS_TXT
    assert "Disallow: /admin/" in ROBOTS_TXT
    home = Selector(text=site.pages["/"].body.decode())
    assert "/admin/" in home.css("nav.pagination a::attr(href)").getall()


def test_too_much_dirt_is_refused() -> None:
    with pytest.raises(ValueError, match="exceed n_items"):
        build_site(DemoSiteParams(n_items=20, n_duplicates=19, n_broken=2))


def test_server_serves_records_and_injects_faults() -> None:
    with running_demo_site(SMALL) as (url, server):
        assert url.startswith("http://127.0.0.1:") and url.endswith("/")
        with urllib.request.urlopen(url + "robots.txt") as resp:
            assert resp.read().decode() == ROBOTS_TXT
        server.fail_next("/item/digit-0001", [503])
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(url + "item/digit-0001")
        assert err.value.code == 503
        with urllib.request.urlopen(url + "item/digit-0001") as resp:
            assert b'class="label"' in resp.read()
        server.fail_next("/img/digit-0001.png", [DROP])
        with pytest.raises(http.client.IncompleteRead):
            urllib.request.urlopen(url + "img/digit-0001.png").read()
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(url + "no/such/page")
        assert server.requested("/item/") == ["/item/digit-0001"] * 2
        assert server.requests[0] == "/robots.txt"


def test_jokes_board_lists_every_pyjokes_joke_labelled_by_language(site) -> None:
    import pyjokes  # noqa: PLC0415

    languages = sorted(pyjokes.LANGUAGE_VALUES)
    n_jokes = sum(len(pyjokes.get_jokes(language=lang, category="all")) for lang in languages)
    listed = []
    n = 1
    while (path := "/jokes/" if n == 1 else f"/jokes/page/{n}") in site.pages:
        page = Selector(text=site.pages[path].body.decode())
        for block in page.css("article.joke"):
            listed.append((block.css("span.lang::text").get(), block.css("a::attr(href)").get()))
        n += 1
    assert len(listed) == n_jokes and {lang for lang, _ in listed} == set(languages)
    lang, href = listed[0]
    detail = Selector(text=site.pages[href].body.decode())
    assert detail.css("h1.joke-id::text").get() == f"Joke {href.rsplit('/', 1)[1]}"
    text = " ".join(" ".join(detail.css("div.joke-body ::text").getall()).split())
    assert text == " ".join(pyjokes.get_jokes(language=lang, category="all")[0].split())


def test_co2_table_is_the_statsmodels_record(site) -> None:
    from statsmodels.datasets import co2  # noqa: PLC0415

    series = co2.load_pandas().data["co2"]
    rows = []
    n = 1
    while (path := "/co2/" if n == 1 else f"/co2/page/{n}") in site.pages:
        page = Selector(text=site.pages[path].body.decode())
        rows += [(r.css("td.week::text").get(), r.css("td.ppm::text").get())
                 for r in page.css("table.series tr")[1:]]  # fmt: skip
        n += 1
    assert len(rows) == len(series) == 2284
    assert rows[0] == ("1958-03-29", "316.1")
    assert sum(ppm is None for _, ppm in rows) == int(series.isna().sum()) == 59
