"""The image test sites: `python -m pytest tests/unit/crawlers/test_image_sites.py`.

The demo shop is byte-identical by default; each variant of `crawlers.image_sites` serves the same
pages with its digits at its size and mode, the same bytes on every build.
"""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
from PIL import Image

from crawlers.demo_site import build_site
from crawlers.image_sites import VARIANTS, build_image_site, digit_image, digit_label, digit_png
from tasks.core.params import DemoSiteParams

PARAMS = DemoSiteParams(n_items=60, sections=[])
# sha256 over every page (path, body, type, status) of the 60-digit shop, as built before the
# image variants existed (commit 128ff68): the demo must not change.
DEMO_PAGES_SHA256 = "87d8bc73a3d5e8b90ff6b01b050e936fefa09636fd9f2b0ea0a0f4c9b357dd54"


def _pages_sha256(pages: dict) -> str:
    digest = hashlib.sha256()
    for path in sorted(pages):
        page = pages[path]
        digest.update(
            path.encode() + b"\0" + page.body + b"\0" + page.content_type.encode() + b"\0"
            + str(page.status).encode()
        )  # fmt: skip
    return digest.hexdigest()


def test_the_demo_and_its_grey8_variant_are_the_demo_byte_for_byte() -> None:
    assert _pages_sha256(build_site(PARAMS).pages) == DEMO_PAGES_SHA256
    assert _pages_sha256(build_image_site(PARAMS, "grey8").pages) == DEMO_PAGES_SHA256


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_each_variant_serves_its_size_and_mode(name: str) -> None:
    variant = VARIANTS[name]
    site = build_image_site(PARAMS, name)
    demo = build_site(PARAMS)
    assert site.pages.keys() == demo.pages.keys()
    assert site.pages["/item/digit-0003"].body == demo.pages["/item/digit-0003"].body
    sizes = set()
    for i in range(40):
        with Image.open(io.BytesIO(site.pages[f"/img/digit-{i:04d}.png"].body)) as img:
            assert img.mode == variant.mode
            sizes.add(img.size)
    assert sizes == set(variant.sizes)  # every size drawn (40 items, at most 5 sizes)
    again = build_image_site(PARAMS, name)
    assert _pages_sha256(again.pages) == _pages_sha256(site.pages)


def test_colours_do_not_tell_the_digit() -> None:
    """Ink colour is drawn per item: items of one digit differ, items of two digits overlap."""
    colours: dict[int, list] = {}
    for i in range(200):
        with Image.open(io.BytesIO(digit_png("rgb32", i))) as img:
            pixels = np.asarray(img).reshape(-1, 3)
        colours.setdefault(digit_label(i), []).append(pixels.max(axis=0))
    spreads = [np.std(np.array(c), axis=0).mean() for c in colours.values()]
    assert min(spreads) > 15  # grey levels: many colours within each digit
    means = np.array([np.mean(c, axis=0) for c in colours.values()])
    assert np.ptp(means, axis=0).max() < 40  # and about the same colours across digits


# sha256 over the PNGs of items 0-199 of photo28 (seed 0), as drawn before the other variants
# became photos too (commit ce3592c): photo28 keeps its bytes.
PHOTO28_SHA256 = "d960ac16a05780d641562cc35d894418f446541223e3b8d5759d4e03102f734b"


def _ink(png: bytes, dark_ink: bool = False) -> np.ndarray:
    """Where the ink is, as a float array: grey level (its complement for dark ink), mean of
    RGB, or alpha (RGBA)."""
    with Image.open(io.BytesIO(png)) as img:
        pixels = np.asarray(img, np.float64)
    if img.mode == "RGBA":
        return pixels[..., 3]
    level = pixels.mean(axis=2) if pixels.ndim == 3 else pixels
    return 255.0 - level if dark_ink else level


def test_photo28_keeps_its_bytes_and_grey28_is_its_print_on_paper() -> None:
    digest = hashlib.sha256()
    for i in range(200):
        digest.update(digit_png("photo28", i))
    assert digest.hexdigest() == PHOTO28_SHA256
    for i in range(20):  # the same draws, the levels mirrored: dark ink on a light ground
        grey28, photo28 = (np.asarray(digit_image(VARIANTS[v], i), np.int16)
                           for v in ("grey28", "photo28"))
        assert np.abs(grey28 - (255 - photo28)).max() <= 1  # rounding and clipping


@pytest.mark.parametrize("name", sorted(set(VARIANTS) - {"grey8"}))
def test_each_photo_variant_moves_and_scales_each_digit(name: str) -> None:
    """The ink's box differs from item to item (place and size), as in photos: the centred
    upscales these variants were before gave one or two boxes. Frames under 16 px (mixed's 8x8)
    are filled by the digit and left out."""
    boxes = set()
    moved = 0
    for i in range(40):
        ink = _ink(digit_png(name, i), VARIANTS[name].dark_ink)
        if min(ink.shape) < 16:
            continue
        moved += 1
        rows, cols = np.nonzero(ink > (ink.min() + ink.max()) / 2)
        boxes.add((ink.shape, rows.min() // 4, cols.min() // 4, (rows.max() - rows.min()) // 4))
    assert moved >= 25 and len(boxes) > 15  # of 40


@pytest.mark.parametrize("name", sorted(set(VARIANTS) - {"grey8"}))
def test_each_photo_variant_has_its_own_background_and_noise(name: str) -> None:
    """Background levels differ from item to item (RGBA: none, alpha 0), and no two pixels of
    the background are all alike (noise), so a pixel's value alone does not tell ink from
    ground."""
    corners, noisy = [], 0
    for i in range(40):
        with Image.open(io.BytesIO(digit_png(name, i))) as img:
            pixels = np.asarray(img, np.float64)
        pixels = pixels[..., None] if pixels.ndim == 2 else pixels
        corner = pixels[:3, :3].reshape(-1, pixels.shape[2])  # mostly background
        corners.append(np.median(corner, axis=0))
        noisy += int(corner.std(axis=0).max() > 2)
    corners = np.array(corners)
    if name.startswith("rgba"):
        assert (corners[:, 3] == 0).mean() > 0.8  # transparent ground
        assert noisy > 10  # the ink's colour is noisy (under alpha 0 where no ink)
    else:
        assert noisy > 30  # noise (clipped at black on the darkest grounds)
        assert corners[:, :3].std(axis=0).min() > 15  # its own level per item


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_digit_image_is_the_served_png(name: str) -> None:
    """`digit_image` (what tests send as pixel rows) holds the pixels of the PNG the site serves."""
    for i in range(5):
        with Image.open(io.BytesIO(digit_png(name, i))) as img:
            assert np.array_equal(np.asarray(img), np.asarray(digit_image(VARIANTS[name], i)))
