"""Image test sites: `python -m crawlers.image_sites VARIANT [--params params.yaml] [--port N]`.

The demo shop (`crawlers.demo_site`: same pages, labels, dirt and fields) with its real
handwritten digits (scikit-learn's, shipped with the package) drawn at other sizes and in other
modes, so the image pipeline is tested beyond the demo's 8x8 grey:

| variant | images |
|---|---|
| `grey8` | the demo's own 8x8 grey PNGs, byte for byte |
| `grey28` | 28x28 grey (bicubic upscale) |
| `rgb32` | 32x32 RGB: each digit in its own ink colour on its own background colour |
| `rgb64x48` | 64 wide x 48 high RGB, colourised the same way (stretched: not square) |
| `rgba32` | 32x32 RGBA: coloured ink, transparent background (alpha = ink) |
| `mixed` | grey, sizes drawn per item from 8x8, 16x16, 28x28, 32x24 and 20x36 (w x h) |
| `photo28` | 28x28 grey photos: the digit 12-24 px high anywhere, own background, noise |

The others keep each digit centred at one size, which suits logistic regression on pixels (it
reaches macro-F1 0.98-0.99 on `grey28` and `rgb32`, leaving a CNN no room to beat it by promote's
margin); `photo28` moves and scales it, as photographs of one kind of object do.

Colours and sizes are drawn per item from `demo_site.seed` and the item's index, never from its
label, so neither tells the digit. Same params and variant, same bytes.
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
        ImageVariant("grey28", ((28, 28),), "L"),
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
    """Digit i drawn as `variant` says (a PIL image of its mode)."""
    rng = np.random.default_rng([seed, i])
    size = variant.sizes[int(rng.integers(len(variant.sizes)))]
    grey = _grey(i)
    if variant.name == "photo28":
        return _photo(grey, size, rng)
    if grey.size != size:
        grey = grey.resize(size, Image.Resampling.BICUBIC)
    if variant.mode == "L":
        return grey
    ink = np.asarray(grey, np.float64)[..., None] / 255.0
    fg = rng.integers(150, 256, 3).astype(np.float64)  # bright ink ...
    if variant.mode == "RGBA":  # ... on nothing: the ink's coverage is its alpha
        rgb = np.broadcast_to(fg, ink.shape[:2] + (3,))
        alpha = np.asarray(grey, np.uint8)[..., None]
        return Image.fromarray(np.concatenate([rgb.astype(np.uint8), alpha], axis=2))
    bg = rng.integers(0, 100, 3).astype(np.float64)  # ... on a dark background
    return Image.fromarray(np.rint(bg + (fg - bg) * ink).astype(np.uint8))


def _photo(grey: Image.Image, size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """The digit at a random size and place in a `size` frame, bright ink on a darker background
    of a random level, plus Gaussian noise (std 12 grey levels)."""
    side = int(rng.integers(12, 25))  # pixels
    digit = np.asarray(grey.resize((side, side), Image.Resampling.BICUBIC), np.float64) / 255.0
    width, height = size
    top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
    ink = np.zeros((height, width))
    ink[top : top + side, left : left + side] = digit
    bg, fg = float(rng.integers(0, 110)), float(rng.integers(170, 256))
    frame = bg + (fg - bg) * ink + rng.normal(0.0, 12.0, ink.shape)
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
