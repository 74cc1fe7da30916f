"""Image test sites: `python -m crawlers.image_sites VARIANT [--params params.yaml] [--port N]`.

The demo shop (`crawlers.demo_site`: same pages, labels, dirt and fields) with its real
handwritten digits (scikit-learn's, shipped with the package) drawn as small photos at other
sizes and in other modes, so the image pipeline is tested beyond the demo's 8x8 grey, and the
model with it:

| variant | images |
|---|---|
| `grey8` | the demo's own 8x8 grey PNGs, byte for byte |
| `grey28` | 28x28 grey photos, dark ink on a light background (a print on paper) |
| `rgb32` | 32x32 RGB photos: each digit in its own ink colour on its own background colour |
| `rgb64x48` | 64 wide x 48 high RGB photos, coloured the same way (the digit square, 21-41 px) |
| `rgba32` | 32x32 RGBA: a noisy ink colour on a transparent background (alpha = ink) |
| `mixed` | grey photos, sizes drawn per item from 8x8, 16x16, 28x28, 32x24 and 20x36 (w x h) |
| `photo28` | 28x28 grey photos: the digit 12-24 px high anywhere, own background, noise |

Every variant but `grey8` draws each digit the way `photo28` always has (`_photo`): a square of
a random side from 3/7 to 6/7 of the frame's shorter side (12-24 px in 28x28) at a random place,
bright ink on a darker background of its own level (RGB: its own ink and background colours),
plus Gaussian noise; a frame under 16 px (`mixed`'s 8x8) is filled by the digit, with its own
levels and noise. `grey28` is `photo28` mirrored (255 - level): dark ink on a light background,
as a print on paper. `photo28` keeps its bytes. Before, these variants upscaled each digit to fill
the frame, centred, which suits logistic regression on pixels (macro-F1 0.98-0.99 on `grey28` and
`rgb32`, leaving a CNN no room to beat it by promote's margin); photos of one kind of object do not
line up like that.

Colours, sizes and places are drawn per item from `demo_site.seed` and the item's index, never
from its label, so none tells the digit. Same params and variant, same bytes.
"""

from __future__ import annotations

import argparse
import io
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

from crawlers.demo_server import DemoSiteServer
from crawlers.demo_site import DemoSite, _digits, _png, build_site, start_demo_site
from tasks.core.params import DemoSiteParams, load_params

logger = logging.getLogger("kiln.image_sites")


@dataclass(frozen=True)
class ImageVariant:
    name: str
    sizes: tuple[tuple[int, int], ...]  # (width, height); one per item, drawn when several
    mode: str  # "L", "RGB" or "RGBA"
    dark_ink: bool = False  # dark ink on a light ground (a print on paper), not light on dark

    @property
    def shape(self) -> tuple[int, ...] | None:
        """The numpy shape of every image, or None when sizes are mixed."""
        if len(self.sizes) > 1:
            return None
        (w, h) = self.sizes[0]
        return (h, w) if self.mode == "L" else (h, w, len(self.mode))


VARIANTS = {
    v.name: v
    for v in (
        ImageVariant("grey8", ((8, 8),), "L"),
        ImageVariant("grey28", ((28, 28),), "L", dark_ink=True),
        ImageVariant("rgb32", ((32, 32),), "RGB"),
        ImageVariant("rgb64x48", ((64, 48),), "RGB"),
        ImageVariant("rgba32", ((32, 32),), "RGBA"),
        ImageVariant("mixed", ((8, 8), (16, 16), (28, 28), (32, 24), (20, 36)), "L"),
        ImageVariant("photo28", ((28, 28),), "L"),
    )
}


def _grey(i: int) -> Image.Image:
    """Digit i as the demo draws it: 8x8, ink levels 0..16 scaled to 0..255."""
    images, _ = _digits()
    return Image.fromarray((images[i].astype(np.uint16) * 255 // 16).astype(np.uint8))


def digit_image(variant: ImageVariant, i: int, seed: int = 0) -> Image.Image:
    """Digit i drawn as `variant` says (a PIL image of its mode): a small photo of it; `grey8`'s
    is the demo's own digit (the pixels of its PNG)."""
    if variant.name == "grey8":
        return _grey(i)
    rng = np.random.default_rng([seed, i])
    size = variant.sizes[int(rng.integers(len(variant.sizes)))]
    return _photo(_grey(i), size, variant.mode, rng, dark_ink=variant.dark_ink)


def digit_side(size: tuple[int, int]) -> tuple[int, int] | None:
    """The digit's side range in pixels (low, high) in a `size` = (width, height) frame: from 3/7
    to 6/7 of the frame's shorter side (12-24 in 28x28, 14-27 in 32x32, 21-41 in 64x48); None
    when that side is under 16 pixels: the digit then fills the frame."""
    short = min(size)
    if short < 16:
        return None
    return (short * 12 + 14) // 28, (short * 24 + 14) // 28


def _photo(
    grey: Image.Image, size: tuple[int, int], mode: str, rng: np.random.Generator,
    dark_ink: bool = False,
) -> Image.Image:
    """The digit as a small photo in a `size` frame: a square of a random side (`digit_side`) at
    a random place, bright ink on a darker background, both of random levels, plus Gaussian
    noise (std 12 levels). Grey (L): one ink and background level; RGB: an ink colour and a
    background colour, the noise per channel; RGBA: a noisy ink colour on nothing (alpha = ink
    coverage, 0 around the digit). `dark_ink`: the frame mirrored (255 - level), dark ink on
    a light background. Every draw comes from `rng` (the item's), in one order."""
    width, height = size
    side = digit_side(size)
    if side is None:  # too small to move about: fills the frame
        digit = grey.resize(size, Image.Resampling.BICUBIC) if grey.size != size else grey
        ink = np.asarray(digit, np.float64) / 255.0
    else:
        s = int(rng.integers(side[0], side[1] + 1))
        digit = np.asarray(grey.resize((s, s), Image.Resampling.BICUBIC), np.float64) / 255.0
        top, left = int(rng.integers(0, height - s + 1)), int(rng.integers(0, width - s + 1))
        ink = np.zeros((height, width))
        ink[top : top + s, left : left + s] = digit
    channels = 1 if mode == "L" else 3
    bg = rng.integers(0, 110, channels).astype(np.float64)
    fg = rng.integers(170, 256, channels).astype(np.float64)
    if mode == "L":
        frame = bg[0] + (fg[0] - bg[0]) * ink + rng.normal(0.0, 12.0, ink.shape)
    elif mode == "RGB":
        frame = bg + (fg - bg) * ink[..., None] + rng.normal(0.0, 12.0, ink.shape + (3,))
    else:  # RGBA: the background's draw is unused (no background), kept for one draw order
        rgb = fg + rng.normal(0.0, 12.0, ink.shape + (3,))
        frame = np.concatenate([rgb, 255.0 * ink[..., None]], axis=2)
    if dark_ink and mode != "RGBA":  # the same draws, mirrored: ink 0-85, background 146-255
        frame = 255.0 - frame
    return Image.fromarray(np.clip(np.rint(frame), 0, 255).astype(np.uint8))


def digit_png(variant: ImageVariant | str, i: int, seed: int = 0) -> bytes:
    """Digit i of `variant` as PNG bytes; `grey8` is the demo's own PNG."""
    variant = VARIANTS[variant] if isinstance(variant, str) else variant
    if variant.name == "grey8":
        images, _ = _digits()
        return _png(images[i])
    buf = io.BytesIO()
    digit_image(variant, i, seed).save(buf, format="PNG")
    return buf.getvalue()


def digit_label(i: int) -> int:
    return int(_digits()[1][i])


def png_source(variant: str, seed: int = 0) -> Callable[[int], bytes]:
    """Item index -> PNG bytes of `variant` (demo_site.build_site's `png`)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown image variant {variant!r}; known: {sorted(VARIANTS)}")
    return cache(lambda i: digit_png(VARIANTS[variant], i, seed))


def build_image_site(params: DemoSiteParams, variant: str) -> DemoSite:
    return build_site(params, png_source(variant, params.seed))


def start_image_site(
    params: DemoSiteParams, variant: str, port: int | None = None
) -> DemoSiteServer:
    return start_demo_site(params, port, png_source(variant, params.seed))


@contextmanager
def running_image_site(
    params: DemoSiteParams, variant: str, port: int | None = 0
) -> Iterator[tuple[str, DemoSiteServer]]:
    """`with running_image_site(p, "rgb32") as (url, server):` on a free port by default."""
    server = start_image_site(params, variant, port)
    try:
        yield server.url, server
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variant", choices=sorted(VARIANTS))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--port", type=int, default=None, help="default: demo_site.port")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    params = load_params(args.params).demo_site
    server = start_image_site(params, args.variant, args.port)
    server.serve_until_stopped(logger, f"{params.n_items} {args.variant} digits")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
