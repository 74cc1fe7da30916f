"""Image decoding for `POST /predict` and `kiln predict FILE...`: bytes or rows -> uint8 pixels.

The same conversion as the clean stage (`PIL.Image.open(...).convert("L")`, uint8, no resizing),
so a served image reaches the model exactly as a training image did. The size is checked from the
PNG header before any pixel is decoded, so a huge or bomb image costs no memory.
"""

from __future__ import annotations

import base64
import binascii
import io
from typing import Any

import numpy as np
from PIL import Image

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_PIL_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


class InputError(ValueError):
    """A request value that passed the schema but is not a usable input; `loc` is its path."""

    def __init__(self, loc: tuple[str | int, ...], msg: str) -> None:
        super().__init__(f"{'.'.join(map(str, loc))}: {msg}")
        self.loc, self.msg = loc, msg


def decode_png(raw: bytes, height: int, width: int, loc: tuple[str | int, ...]) -> np.ndarray:
    """PNG bytes -> uint8 (height, width) grayscale, or InputError at `loc`."""
    if not raw.startswith(PNG_MAGIC):
        raise InputError(loc, "not a PNG file (no PNG signature)")
    try:
        with Image.open(io.BytesIO(raw), formats=["PNG"]) as img:
            if img.size != (width, height):
                raise InputError(
                    loc, f"image is {img.width}x{img.height}; the model takes {width}x{height}"
                )
            return np.asarray(img.convert("L"), dtype=np.uint8)
    except _PIL_ERRORS as exc:
        raise InputError(loc, f"unreadable PNG: {exc}") from None


def decode_instance(instance: Any, index: int, height: int, width: int) -> np.ndarray:
    """One validated `ImageInstance` -> uint8 (height, width)."""
    loc: tuple[str | int, ...] = ("body", "instances", index)
    if instance.png_base64 is not None:
        try:
            raw = base64.b64decode(instance.png_base64, validate=True)
        except binascii.Error as exc:
            raise InputError((*loc, "png_base64"), f"not base64: {exc}") from None
        return decode_png(raw, height, width, (*loc, "png_base64"))
    rows = instance.pixels
    if len(rows) != height:
        raise InputError((*loc, "pixels"), f"{len(rows)} rows; the model takes {height}")
    for r, row in enumerate(rows):
        if len(row) != width:
            raise InputError(
                (*loc, "pixels", r), f"{len(row)} values; the model takes {width} per row"
            )
    return np.asarray(rows, dtype=np.uint8)  # values already checked to be ints in 0..255


def encode_png(pixels: np.ndarray) -> str:
    """uint8 (H, W) -> base64 PNG text (for clients, tests and the benchmark)."""
    buffer = io.BytesIO()
    image = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8))  # 2-D uint8: mode L
    image.save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
