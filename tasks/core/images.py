"""Reading images, shared by the validate and clean stages and by `kiln serve`: what reading an
image can raise, and `fit_image`, the one function that turns an image of any size and mode into
the model's input.

`fit_image(img, spec)` -> uint8 pixels as `numpy.asarray` gives them for a PIL image: (H, W) for
mode "L", (H, W, 3) for "RGB". The clean stage stacks them into data/clean/pixels.npy
((N, H, W) or (N, H, W, 3)); `kiln serve` decodes every request image (PNG or pixel rows) with the
same function, so a served image reaches the model exactly as a training image did.

1. Mode: the image is converted to `spec.mode`. Transparency (RGBA, LA, a palette or tRNS
   transparency) is first flattened onto `spec.background`; an image without transparency is
   converted directly (Pillow's `convert`, ITU-R 601-2 luma for "L").
2. Fit to `spec.height` x `spec.width` with `spec.resample`:
   * `resize`: stretched to the size (the aspect ratio may change);
   * `pad`: scaled to fit inside the size keeping the aspect ratio, centred on `background`;
   * `crop`: scaled to cover the size keeping the aspect ratio, the centre cut out;
   * `none`: no resampling; an image of another size raises `ImageSizeError`.
   An image that already has the size is never resampled, whatever the fit: its pixels pass
   through unchanged.

Needs only Pillow and numpy (a serving host has them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image

# Pillow raises OSError (UnidentifiedImageError is one) for missing or undecodable files,
# SyntaxError from some format plugins on corrupt chunks, DecompressionBombError for huge ones.
IMAGE_ERRORS = (OSError, SyntaxError, Image.DecompressionBombError)

MODES = ("L", "RGB")  # the model's input: 1 or 3 channels
FITS = ("resize", "pad", "crop", "none")
RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "box": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
    "hamming": Image.Resampling.HAMMING,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
_TRANSPARENT_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


class ImageSizeError(ValueError):
    """An image that fit `none` cannot use: it does not have the model's size."""


@dataclass(frozen=True)
class ImageFit:
    """How any image becomes the model's input: size, mode, fit, resampling, background.

    Recorded in data/clean/preprocessing.json and in the model card (`preprocessing`)."""

    height: int
    width: int
    mode: str = "L"
    fit: str = "pad"
    resample: str = "bilinear"
    background: tuple[int, int, int] = (0, 0, 0)  # RGB; flattened transparency and padding

    def __post_init__(self) -> None:
        if self.mode not in MODES or self.fit not in FITS or self.resample not in RESAMPLE:
            raise ValueError(
                f"image mode {self.mode!r}, fit {self.fit!r}, resample {self.resample!r}: "
                f"expected one of {MODES}, {FITS}, {tuple(RESAMPLE)}"
            )
        for name in ("height", "width"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"image {name} must be a positive integer, got {value!r}")
        if len(self.background) != 3 or not all(0 <= int(v) <= 255 for v in self.background):
            raise ValueError(f"background must be 3 values in 0..255, got {self.background!r}")
        object.__setattr__(self, "background", tuple(int(v) for v in self.background))

    @property
    def channels(self) -> int:
        return 1 if self.mode == "L" else 3

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of one fitted image: (H, W) or (H, W, 3)."""
        return (self.height, self.width) if self.channels == 1 else (self.height, self.width, 3)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["background"] = list(self.background)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ImageFit:
        keys = ("height", "width", "mode", "fit", "resample", "background")
        return cls(**{k: (tuple(data[k]) if k == "background" else data[k]) for k in keys})


def has_transparency(img: Image.Image) -> bool:
    return img.mode in _TRANSPARENT_MODES or "transparency" in img.info


def to_mode(img: Image.Image, mode: str, background: Iterable[int] = (0, 0, 0)) -> Image.Image:
    """`img` in `mode` ("L" or "RGB"), transparency flattened onto `background` (RGB)."""
    if has_transparency(img):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*tuple(background), 255))
        img = Image.alpha_composite(canvas, rgba)
    return img if img.mode == mode else img.convert(mode)


def _scaled(size: tuple[int, int], factor: float) -> tuple[int, int]:
    return max(1, round(size[0] * factor)), max(1, round(size[1] * factor))


def _fill(mode: str, background: tuple[int, int, int]) -> Any:
    """The padding colour in `mode`: the background as `to_mode` would convert it."""
    return Image.new("RGB", (1, 1), background).convert(mode).getpixel((0, 0))


def fit_image(img: Image.Image, spec: ImageFit) -> np.ndarray:
    """uint8 pixels of `img` converted and fitted as `spec` says (module docstring)."""
    img = to_mode(img, spec.mode, spec.background)
    target = (spec.width, spec.height)  # Pillow's sizes are (width, height)
    if img.size != target:
        if spec.fit == "none":
            raise ImageSizeError(
                f"image is {img.width}x{img.height}; the model takes {spec.width}x{spec.height}"
            )
        img = _fitted(img, spec, target)
    return np.asarray(img, dtype=np.uint8)


def _fitted(img: Image.Image, spec: ImageFit, target: tuple[int, int]) -> Image.Image:
    resample = RESAMPLE[spec.resample]
    if spec.fit == "resize":
        return img.resize(target, resample)
    w, h = img.size
    if spec.fit == "pad":
        inner = _scaled(img.size, min(target[0] / w, target[1] / h))
        inner = (min(inner[0], target[0]), min(inner[1], target[1]))
        canvas = Image.new(spec.mode, target, _fill(spec.mode, spec.background))
        scaled = img if inner == img.size else img.resize(inner, resample)
        canvas.paste(scaled, ((target[0] - inner[0]) // 2, (target[1] - inner[1]) // 2))
        return canvas
    cover = _scaled(img.size, max(target[0] / w, target[1] / h))  # crop
    cover = (max(cover[0], target[0]), max(cover[1], target[1]))
    scaled = img if cover == img.size else img.resize(cover, resample)
    left, top = (cover[0] - target[0]) // 2, (cover[1] - target[1]) // 2
    return scaled.crop((left, top, left + target[0], top + target[1]))


def image_from_pixels(pixels: np.ndarray) -> Image.Image:
    """A PIL image of uint8 pixels (H, W) grey, (H, W, 1) grey, (H, W, 3) RGB or (H, W, 4) RGBA."""
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    if not (pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] in (3, 4))):
        raise ValueError(f"pixels of shape {pixels.shape}: expected (H, W) or (H, W, 1|3|4)")
    return Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8))  # L, RGB or RGBA


def is_colour(img: Image.Image, background: Iterable[int] = (0, 0, 0)) -> bool:
    """Whether `img` (any mode) has a pixel whose red, green and blue differ once flattened."""
    if img.mode in ("1", "L", "I", "I;16", "F", "LA", "La"):
        return False
    rgb = np.asarray(to_mode(img, "RGB", background))
    return bool((rgb[..., 0] != rgb[..., 1]).any() or (rgb[..., 1] != rgb[..., 2]).any())
