"""The generated sites of the scale benchmark: any size, every item distinct, same bytes again."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image

from benchmarks.scale import growth, n_log_n_ratio
from crawlers import scale_sites
from crawlers.demo_site import _digits


def test_image_site_has_every_item_page_and_distinct_32x32_rgb_pictures() -> None:
    n = 2000  # past the 1,797 digits: items 1797.. reuse digits 0.. in new poses and colours
    pages = scale_sites.image_pages(n)
    images = [p for path, p in pages.items() if path.startswith("/img/")]
    items = [p for p in pages if p.startswith("/item/")]
    assert len(images) == len(items) == n
    listed = re.findall(
        rb'href="(/item/[^"]+)"',
        b"".join(pages[p].body for p in pages if p == "/" or p.startswith("/page/")),
    )
    assert sorted(p.decode() for p in listed) == sorted(items)
    first, again = scale_sites.scale_image(5), scale_sites.scale_image(5 + 1797)  # same digit
    pixels = [np.asarray(Image.open(io.BytesIO(b))) for b in (first, again)]
    assert pixels[0].shape == (32, 32, 3)
    assert np.abs(pixels[0].astype(int) - pixels[1].astype(int)).mean() > 10  # not a copy
    assert len({p.body for p in images}) == n
    assert scale_sites.image_pages(n)["/img/digit-01999.png"].body == images[-1].body


def test_image_labels_are_the_digits_as_the_demo_spells_them() -> None:
    pages = scale_sites.image_pages(40)
    _, targets = _digits()
    words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    for i in range(40):
        body = pages[f"/item/digit-{i:05d}"].body.decode()
        label = re.search(r'<span class="label">([^<]*)</span>', body)[1].strip().lower()
        assert label in {str(targets[i]), words[targets[i]]}


@pytest.fixture
def two_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scale_sites, "TEXT_PACKAGES", ("numpy", "scrapy"))


@pytest.mark.usefixtures("two_packages")
def test_texts_are_distinct_balanced_and_labelled_by_package() -> None:
    n = 2 * len(scale_sites.package_paragraphs("scrapy")) + 50  # scrapy runs out: joined pairs
    texts = scale_sites.scale_texts(n)
    assert len({t for _, t in texts}) == n
    labels = [p for p, _ in texts]
    assert labels.count("numpy") == labels.count("scrapy") == n // 2
    assert all(len(t) >= scale_sites.MIN_PARAGRAPH for _, t in texts)
    assert scale_sites.scale_texts(n) == texts


@pytest.mark.usefixtures("two_packages")
def test_text_board_uses_the_jokes_board_markup() -> None:
    pages = scale_sites.text_pages(60)
    board = pages["/jokes/"].body.decode()
    assert board.count('<article class="joke') == 25
    assert 'href="/jokes/page/2"' in board
    body = pages["/jokes/numpy-00000"].body.decode()
    assert '<h1 class="joke-id">Joke numpy-00000</h1>' in body and "joke-body" in body


def test_growth_compares_the_largest_with_the_smallest_size_against_n_log_n() -> None:
    assert n_log_n_ratio(5000, 50000) == pytest.approx(12.7, abs=0.05)
    times = {
        stage: {"s": 1.0} for stage in ("crawl", "validate", "clean", "train", "evaluate", "export")
    }
    slow = {**times, "clean": {"s": 20.0}}
    result = growth({5000: times, 50000: slow})
    assert result["clean"][2] is False
    assert result["train"] == (1.0, pytest.approx(12.7, abs=0.05), True)
