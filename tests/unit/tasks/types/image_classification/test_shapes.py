"""Images of any shape in the image task type's pieces: `python -m pytest
tests/unit/tasks/types/image_classification/test_shapes.py`.

The CNN's pool computes `adaptive_avg_pool2d(x, 2)` and exports to ONNX at every size (28x28 once
crashed the exporter); normalisation per channel; data/clean with and without preprocessing.json;
params; the validate suite's size checks; request decoding of grey and colour pixel rows.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812 (the usual torch alias)

from serve.inputs import InputError, decode_instance, encode_png
from tasks.core.dataset import DataError
from tasks.core.gx_suite import default_specs
from tasks.core.images import ImageFit
from tasks.core.models import build_model, save_model
from tasks.core.params import ExportParams, ParamsError, load_params, parse_params
from tasks.types.image_classification.data import read_clean
from tasks.types.image_classification.export import export_model
from tasks.types.image_classification.models import ARCHITECTURES, avg_pool_2x2, preprocess
from tasks.types.image_classification.serving import image_fit
from tasks.types.image_classification.train import _preprocessing
from tests.clean_fixture import write_clean_fixture
from tests.project import REPO, merge_params

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("h", [1, 2, 3, 4, 7, 9])
@pytest.mark.parametrize("w", [1, 2, 5, 6, 12])
def test_the_pool_is_adaptive_average_pooling_to_2x2(h: int, w: int) -> None:
    x = torch.randn(2, 3, h, w)
    torch.testing.assert_close(avg_pool_2x2(x, (h, w)), F.adaptive_avg_pool2d(x, 2))


def _card(config: dict, prep: dict, tmp_path: Path) -> tuple[torch.nn.Module, dict]:
    torch.manual_seed(0)
    model = build_model(ARCHITECTURES, "cnn", config).eval()
    card = {"architecture": "cnn", "config": config, "classes": [str(i) for i in range(3)],
            "preprocessing": prep}  # fmt: skip
    return model, save_model(model, tmp_path, card)


@pytest.mark.parametrize(
    ("height", "width", "channels"), [(28, 28, 1), (5, 7, 1), (48, 64, 3), (1, 1, 3), (31, 17, 3)]
)
def test_the_cnn_exports_at_every_size_with_parity(
    tmp_path: Path, height: int, width: int, channels: int
) -> None:
    config = {"in_channels": channels, "height": height, "width": width, "n_classes": 3,
              "channels": 4, "dropout": 0.0}  # fmt: skip
    fit = ImageFit(height, width, "L" if channels == 1 else "RGB").to_json()
    prep = {**fit, "normalise": "dataset", "scale": 1 / 255, "mean": [0.4] * channels,
            "std": [0.3] * channels}  # fmt: skip
    model, card = _card(config, prep, tmp_path)
    shape = (height, width) if channels == 1 else (height, width, channels)
    test = RNG.integers(0, 256, (5, *shape), dtype=np.uint8)
    _, info = export_model(model, card, test, ExportParams(parity_batch=5))
    assert info["input"]["shape"] == ["batch", *shape]
    assert info["parity"]["argmax_agree"] == info["parity"]["n"] == 8
    assert info["preprocessing"] == prep


def test_grey_preprocessing_is_what_it_was() -> None:
    pixels = torch.from_numpy(RNG.integers(0, 256, (4, 8, 8), dtype=np.uint8))
    old = ((pixels.to(torch.float32) / 255 - 0.3) / 0.4).unsqueeze(1)
    for mean, std in ((0.3, 0.4), ([0.3], [0.4])):  # a card before clean.image; one of now
        got = preprocess(pixels, {"scale": 1 / 255, "mean": mean, "std": std})
        torch.testing.assert_close(got, old, rtol=0, atol=1e-6)


def test_normalisation_is_per_channel_over_the_train_split() -> None:
    pixels = np.zeros((2, 4, 4, 3), np.uint8)
    pixels[0, ..., 0], pixels[1, ..., 0] = 0, 255  # red: half 0, half 255
    pixels[..., 1] = 51  # green constant (0.2): centred, its std taken as 1
    image = {**ImageFit(4, 4, "RGB").to_json(), "normalise": "dataset"}
    prep = _preprocessing(pixels, image)
    assert prep["mean"] == pytest.approx([0.5, 0.2, 0.0]) and prep["std"] == [0.5, 1.0, 1.0]
    assert prep["fit"] == "pad" and prep["height"] == 4
    with pytest.raises(DataError, match="all the same value"):
        _preprocessing(np.full((2, 4, 4, 3), 7, np.uint8), image)
    unit = _preprocessing(pixels, {**image, "normalise": "unit"})
    assert unit["mean"] == [0.0] * 3 and unit["std"] == [1.0] * 3
    x = preprocess(torch.from_numpy(pixels), prep)
    assert x.shape == (2, 3, 4, 4)
    torch.testing.assert_close(x[:, 0, 0, 0], torch.tensor([-1.0, 1.0]))


def test_data_clean_with_and_without_preprocessing_json(tmp_path: Path) -> None:
    clean_dir = write_clean_fixture(tmp_path, 30)  # no preprocessing.json: as clean wrote before
    legacy = read_clean(clean_dir)
    assert legacy.preprocessing["fit"] == "none" and legacy.preprocessing["mode"] == "L"
    assert (legacy.preprocessing["height"], legacy.preprocessing["width"]) == (8, 8)
    version = legacy.data_version
    prep = {**ImageFit(8, 8, "L", "pad").to_json(), "normalise": "unit"}
    (clean_dir / "preprocessing.json").write_text(json.dumps(prep))
    again = read_clean(clean_dir)
    assert again.preprocessing == prep and again.data_version != version
    (clean_dir / "preprocessing.json").write_text(json.dumps({**prep, "mode": "RGB"}))
    with pytest.raises(DataError, match=r"must be uint8 \(N, 8, 8, 3\)"):
        read_clean(clean_dir)


def test_serving_fits_as_the_card_says() -> None:
    legacy = {"config": {"height": 8, "width": 8}, "preprocessing": {"scale": 1, "mean": 0.3}}
    assert image_fit(legacy) == ImageFit(8, 8, "L", "none")  # exact size, as before
    spec = ImageFit(4, 4, "RGB", "resize", "nearest")
    assert image_fit({"config": {}, "preprocessing": {**spec.to_json(), "mean": [0]}}) == spec
    rgb = RNG.integers(0, 256, (2, 2, 3), dtype=np.uint8)
    want = np.kron(rgb, np.ones((2, 2, 1), np.uint8))  # nearest upscale x2
    for instance in ({"pixels": rgb.tolist(), "png_base64": None},
                     {"pixels": None, "png_base64": encode_png(rgb)}):  # fmt: skip
        got = decode_instance(SimpleNamespace(**instance), 0, spec, 64)
        assert np.array_equal(got, want)
    rgba = [[[1, 2, 3, 255], [1, 2, 3, 0]]]  # one row: opaque, then transparent (-> black)
    got = decode_instance(SimpleNamespace(pixels=rgba, png_base64=None), 0, spec, 64)
    assert got[0, 0].tolist() == [1, 2, 3] and got[0, -1].tolist() == [0, 0, 0]


@pytest.mark.parametrize(
    ("rows", "loc", "message"),
    [
        ([[0, 0], [0]], ("pixels", 1), "1 values; row 0 has 2"),
        ([[0, [1, 2, 3]]], ("pixels", 0, 1), "differs from pixel 0,0"),
        ([[[1, 2]]], ("pixels", 0, 0), "2 channels"),
        ([[0] * 65], ("png_base64",), "at most 64 pixels a side"),
    ],
)
def test_bad_pixel_rows_name_their_place(rows: list, loc: tuple, message: str) -> None:
    spec = ImageFit(4, 4, "L")
    instance = SimpleNamespace(pixels=rows, png_base64=None)
    if loc == ("png_base64",):
        instance = SimpleNamespace(pixels=None, png_base64=encode_png(np.zeros((1, 65), np.uint8)))
    with pytest.raises(InputError) as caught:
        decode_instance(instance, 3, spec, 64)
    assert caught.value.loc == ("body", "instances", 3, *loc) and message in caught.value.msg


def _raw() -> dict:
    import yaml  # noqa: PLC0415

    return yaml.safe_load((REPO / "params.yaml").read_text())


def test_params_and_the_suite_size_checks() -> None:
    shipped = load_params(REPO / "params.yaml")
    names = [(s.expectation, s.kwargs.get("column")) for s in default_specs(
        shipped.labels, shipped.validate_)]  # fmt: skip
    assert ("expect_column_values_to_be_in_set", "image_width") in names  # the demo: exactly 8
    free = parse_params(merge_params(_raw(), {"validate": {"image_width": None,
                                                            "image_height": None,
                                                            "min_image_side": 4}}))  # fmt: skip
    between = [s.kwargs for s in default_specs(free.labels, free.validate_)
               if s.expectation == "expect_column_values_to_be_between"]  # fmt: skip
    assert {"column": "image_width", "min_value": 4, "max_value": 4096} in between
    assert {"column": "image_height", "min_value": 4, "max_value": 4096} in between
    with pytest.raises(ParamsError, match="give both height and width, or neither"):
        parse_params(merge_params(_raw(), {"clean": {"image": {"width": None}}}))
    with pytest.raises(ParamsError, match="clean.image.mode"):
        parse_params(merge_params(_raw(), {"clean": {"image": {"mode": "CMYK"}}}))


def test_validate_quarantines_sizes_outside_the_range(tmp_path: Path) -> None:
    """Any size in min_image_side..max_image_side passes (clean fits it); others are quarantined,
    named by the check."""
    import pandas as pd  # noqa: PLC0415

    from tasks.validate import validate_items  # noqa: PLC0415 (Great Expectations: ~4 s import)
    from tests.raw_fixture import Dirt, build_raw  # noqa: PLC0415

    rows = build_raw(tmp_path, 60, Dirt(wrong_size_images=1))  # one 16x16 among 8x8 digits
    params = parse_params(merge_params(_raw(), {"validate": {
        "image_width": None, "image_height": None, "min_image_side": 8, "max_image_side": 16,
        "min_rows": 10}}))  # fmt: skip
    both = validate_items(pd.DataFrame(rows), tmp_path / "data/raw", params.labels,
                          params.validate_)  # fmt: skip
    assert both.success and not both.quarantine  # 8x8 and 16x16: mixed sizes are fine
    small = params.validate_.model_copy(update={"max_image_side": 12})
    one_out = validate_items(pd.DataFrame(rows), tmp_path / "data/raw", params.labels, small)
    assert [r["reason"] for r in one_out.quarantine] == [
        "expect_column_values_to_be_between(image_width); "
        "expect_column_values_to_be_between(image_height)"
    ]
