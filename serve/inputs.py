"""Image decoding for `POST /predict` and `kiln predict FILE...`: bytes or rows -> a PIL image.

`open_png` checks the PNG signature and, from the header before any pixel is decoded, that each
side is at most `max_side` pixels, so a huge or bomb image costs no memory; `image_of_rows` turns
pixel rows (grey values, or [R, G, B] / [R, G, B, A] lists) into an image. The task type then fits
the image to its model's input with `tasks.core.images.fit_image`, the clean stage's own function,
so a served image reaches the model exactly as a training image did.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
from PIL import Image

from tasks.core.images import ImageFit, ImageSizeError, fit_image, image_from_pixels

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_PIL_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)
Loc = tuple[str | int, ...]


class InputError(ValueError):
    """A request value that passed the schema but is not a usable input; `loc` is its path."""

    def __init__(self, loc: tuple[str | int, ...], msg: str) -> None:
        super().__init__(f"{'.'.join(map(str, loc))}: {msg}")
        self.loc, self.msg = loc, msg


def open_png(raw: bytes, loc: Loc, max_side: int) -> Image.Image:
    """PNG bytes -> a decoded PIL image, or InputError at `loc`."""
    if not raw.startswith(PNG_MAGIC):
        raise InputError(loc, "not a PNG file (no PNG signature)")
    try:
        with Image.open(io.BytesIO(raw), formats=["PNG"]) as img:
            if max(img.size) > max_side:
                raise InputError(
                    loc, f"image is {img.width}x{img.height}; at most {max_side} pixels a side"
                )
            img.load()
            return img.copy()
    except _PIL_ERRORS as exc:
        raise InputError(loc, f"unreadable PNG: {exc}") from None


def image_of_rows(rows: list[list[Any]], loc: Loc) -> Image.Image:
    """Rows of grey values or of channel lists (all of one length: 1, 3 or 4) -> a PIL image
    (L, RGB or RGBA); the values were checked to be ints in 0..255 by the schema."""
    width = len(rows[0]) if rows else 0
    if width == 0:
        raise InputError(loc, "no pixels")
    for r, row in enumerate(rows):
        if len(row) != width:
            raise InputError((*loc, r), f"{len(row)} values; row 0 has {width}")
    first = rows[0][0]
    depth = len(first) if isinstance(first, list) else 0
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            if (len(value) if isinstance(value, list) else 0) != depth:
                want = f"lists of {depth} channel values" if depth else "grey values"
                raise InputError((*loc, r, c), f"pixel {r},{c} differs from pixel 0,0: {want}")
    if depth not in (0, 1, 3, 4):
        raise InputError((*loc, 0, 0), f"{depth} channels; 1 (grey), 3 (RGB) or 4 (RGBA)")
    return image_from_pixels(np.asarray(rows, dtype=np.uint8))


def fit(img: Image.Image, spec: ImageFit, loc: Loc) -> np.ndarray:
    """`fit_image(img, spec)`, its refusal (fit none, another size) an InputError at `loc`."""
    try:
        return fit_image(img, spec)
    except ImageSizeError as exc:
        raise InputError(loc, str(exc)) from None


def decode_png(raw: bytes, spec: ImageFit, loc: Loc, max_side: int) -> np.ndarray:
    """PNG bytes -> the model's uint8 input (H, W) or (H, W, 3), or InputError at `loc`."""
    return fit(open_png(raw, loc, max_side), spec, loc)


def decode_instance(instance: Any, index: int, spec: ImageFit, max_side: int) -> np.ndarray:
    """One validated `ImageInstance` (png_base64 or pixels) -> the model's uint8 input."""
    loc: Loc = ("body", "instances", index)
    if instance.png_base64 is not None:
        try:
            raw = base64.b64decode(instance.png_base64, validate=True)
        except ValueError as exc:  # binascii.Error, or non-ASCII text ("only ASCII characters")
            raise InputError((*loc, "png_base64"), f"not base64: {exc}") from None
        return decode_png(raw, spec, (*loc, "png_base64"), max_side)
    return fit(image_of_rows(instance.pixels, (*loc, "pixels")), spec, (*loc, "pixels"))


def encode_png(pixels: np.ndarray) -> str:
    """uint8 (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA -> base64 PNG text (for clients, tests
    and the benchmark)."""
    buffer = io.BytesIO()
    image_from_pixels(np.asarray(pixels)).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
