"""Fitting images to the model's input: `python -m pytest tests/unit/tasks/core/test_images.py`.

`tasks.core.images.fit_image` is the one function clean and `kiln serve` fit every image with:
mode conversion (transparency flattened onto the background), then resize / pad / crop / none.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tasks.core.images import (
    ImageFit,
    ImageSizeError,
    fit_image,
    image_from_pixels,
    is_colour,
    to_mode,
)

RNG = np.random.default_rng(0)
GREY = RNG.integers(0, 256, (6, 10), dtype=np.uint8)  # 10 wide, 6 high
RGB = RNG.integers(0, 256, (6, 10, 3), dtype=np.uint8)


@pytest.mark.parametrize("fit", ["resize", "pad", "crop", "none"])
@pytest.mark.parametrize("pixels", [GREY, RGB], ids=["L", "RGB"])
def test_an_image_of_the_target_size_passes_through_unchanged(fit: str, pixels: np.ndarray) -> None:
    mode = "L" if pixels.ndim == 2 else "RGB"
    out = fit_image(Image.fromarray(pixels), ImageFit(6, 10, mode, fit))
    assert out.dtype == np.uint8 and np.array_equal(out, pixels)


def test_grey_conversion_is_pillows_as_clean_always_did() -> None:
    img = Image.fromarray(RGB)
    out = fit_image(img, ImageFit(6, 10, "L"))
    assert np.array_equal(out, np.asarray(img.convert("L")))
    assert fit_image(Image.fromarray(GREY), ImageFit(6, 10, "RGB")).shape == (6, 10, 3)


@pytest.mark.parametrize(
    ("fit", "shape"), [("resize", (12, 12)), ("pad", (12, 12)), ("crop", (12, 12))]
)
def test_every_fit_gives_the_target_shape(fit: str, shape: tuple[int, int]) -> None:
    for pixels in (GREY, RGB, GREY[:1, :1], np.zeros((40, 3), np.uint8)):
        out = fit_image(Image.fromarray(pixels), ImageFit(*shape, "RGB", fit))
        assert out.shape == (*shape, 3)


def test_pad_keeps_the_aspect_ratio_on_the_background() -> None:
    white = np.full((4, 8), 255, np.uint8)  # 8 wide, 4 high -> 8x8: 2 rows of padding each side
    out = fit_image(Image.fromarray(white), ImageFit(8, 8, "L", "pad", background=(10, 10, 10)))
    assert (out[2:6] == 255).all() and (out[:2] == 10).all() and (out[6:] == 10).all()
    colour = fit_image(Image.fromarray(white), ImageFit(8, 8, "RGB", "pad", background=(1, 2, 3)))
    assert colour[0, 0].tolist() == [1, 2, 3]


def test_crop_keeps_the_centre() -> None:
    pixels = np.zeros((4, 12), np.uint8)
    pixels[:, 4:8] = 200  # the middle third of a 12-wide image
    out = fit_image(Image.fromarray(pixels), ImageFit(4, 4, "L", "crop", "nearest"))
    assert (out == 200).all()


def test_fit_none_refuses_another_size() -> None:
    with pytest.raises(ImageSizeError, match="image is 10x6; the model takes 8x8"):
        fit_image(Image.fromarray(GREY), ImageFit(8, 8, "L", "none"))


def test_transparency_is_flattened_onto_the_background() -> None:
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = [200, 100, 50, 255]  # opaque
    rgba[1, 1] = [200, 100, 50, 0]  # fully transparent: the background shows
    out = fit_image(Image.fromarray(rgba), ImageFit(2, 2, "RGB", background=(9, 8, 7)))
    assert out[0, 0].tolist() == [200, 100, 50] and out[1, 1].tolist() == [9, 8, 7]
    palette = Image.fromarray(GREY).convert("P")
    palette.info["transparency"] = int(np.asarray(palette)[0, 0])
    assert to_mode(palette, "RGB", (1, 2, 3)).getpixel((0, 0)) == (1, 2, 3)


def test_colour_detection_and_pixels_to_image() -> None:
    assert not is_colour(Image.fromarray(GREY).convert("RGB"))
    assert is_colour(Image.fromarray(RGB))
    assert image_from_pixels(GREY[..., None]).mode == "L"
    assert image_from_pixels(np.zeros((2, 2, 4), np.uint8)).mode == "RGBA"
    with pytest.raises(ValueError, match=r"\(H, W\) or \(H, W, 1\|3\|4\)"):
        image_from_pixels(np.zeros((2, 2, 2), np.uint8))


def test_spec_json_round_trip_and_refusals() -> None:
    spec = ImageFit(28, 32, "RGB", "crop", "lanczos", (1, 2, 3))
    assert ImageFit.from_json(spec.to_json()) == spec and spec.shape == (28, 32, 3)
    with pytest.raises(ValueError, match="image mode 'RGBA'"):
        ImageFit(8, 8, "RGBA")
    with pytest.raises(ValueError, match="height must be a positive integer"):
        ImageFit(0, 8)
