"""Images of every shape through the stage functions: `python -m pytest
tests/integration/test_image_shapes.py`.

For each test site of `crawlers.image_sites` (8x8 grey, 28x28 grey, 32x32 RGB, 64x48 RGB, 32x32
RGBA, mixed sizes), a project whose data/raw holds its real digits as the crawl writes them goes
through validate (the suite's size checks), clean (`clean.image` fits every image), train (two
tiny epochs), evaluate, export (ONNX, parity-checked) and a registry, then the served champion
(`kiln serve`'s app, ONNX Runtime) answers PNGs and pixel rows of the site's own size and of
another size. A served image gets exactly the logits ONNX Runtime gives for the pixels clean
stored for it: one fitting function for training and serving.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from crawlers.image_sites import VARIANTS, digit_image, digit_label, digit_png
from serve.app import create_app
from serve.inputs import encode_png
from tasks.core import registry
from tasks.core.io import write_parquet
from tasks.core.params import ServeParams, load_params
from tasks.core.plugins import task_type
from tasks.types.image_classification.clean import clean_stage
from tasks.types.image_classification.evaluate import evaluate_stage
from tasks.types.image_classification.export import export_stage
from tasks.types.image_classification.train import train_stage
from tests.project import merge_params
from tests.raw_fixture import write_params

pytestmark = pytest.mark.integration
N_ITEMS = 160
SITE = "http://127.0.0.1:8765"
TINY = {"epochs": 2, "patience": 2, "channels": 8, "batch_size": 32}
ANY_SIZE = {"image_width": None, "image_height": None, "min_image_side": 8, "max_image_side": 64}

# variant: (params overrides, the shape of one fitted image in data/clean)
MATRIX: dict[str, tuple[dict[str, Any], tuple[int, ...]]] = {
    "grey8": ({}, (8, 8)),  # params.yaml as shipped: 8x8 L, fit pad
    "grey28": (
        {"validate": ANY_SIZE, "clean": {"image": {"height": 28, "width": 28, "mode": "L"}}},
        (28, 28),
    ),
    "rgb32": (
        {"validate": ANY_SIZE, "clean": {"image": {"height": 32, "width": 32, "mode": "RGB"}}},
        (32, 32, 3),
    ),
    # size and mode left to clean: the most common size (all are 64 wide, 48 high), colour -> RGB
    "rgb64x48": (
        {"validate": ANY_SIZE, "clean": {"image": {"height": None, "width": None, "mode": "auto"}}},
        (48, 64, 3),
    ),
    "rgba32": (  # transparent background flattened onto black: light ink on black
        {
            "validate": ANY_SIZE,
            "clean": {"image": {"height": 32, "width": 32, "mode": "RGB", "background": [0, 0, 0]}},
        },
        (32, 32, 3),
    ),
    "mixed": (
        {
            "validate": ANY_SIZE,
            "clean": {"image": {"height": 24, "width": 24, "mode": "L", "fit": "pad"}},
        },
        (24, 24),
    ),
}


def _raw(root: Path, variant: str) -> pd.DataFrame:
    """data/raw of a crawl of the variant's site: images/<sha256>.png and one row per item."""
    images = root / "data" / "raw" / "images"
    images.mkdir(parents=True)
    rows = []
    for i in range(N_ITEMS):
        data = digit_png(variant, i)
        name = f"images/{hashlib.sha256(data).hexdigest()}.png"
        (root / "data" / "raw" / name).write_bytes(data)
        rows.append(
            {
                "url": f"{SITE}/item/digit-{i:04d}",
                "content_hash": hashlib.sha256(f"page {i}".encode()).hexdigest(),
                "first_seen": "2026-01-01T00:00:00Z",
                "label": str(digit_label(i)),
                "image_path": name,
                "ink": "0.5",
                "price": "1.00",
            }
        )
    return pd.DataFrame(rows, dtype=object)


def _validate(root: Path, raw: pd.DataFrame) -> None:
    """The validate stage's checks (tasks.validate.validate_items) -> data/validated."""
    from tasks.validate import validate_items  # noqa: PLC0415 (Great Expectations: ~4 s import)

    params = load_params(root / "params.yaml")
    columns = task_type(params.project.task).columns(params)
    outcome = validate_items(raw, root / "data" / "raw", params.labels, params.validate_,
                             task=columns)  # fmt: skip
    assert outcome.success, outcome.failures
    assert not outcome.quarantine, outcome.quarantine[:3]
    (root / "data" / "validated").mkdir(parents=True)
    write_parquet(outcome.valid, root / "data" / "validated" / "items.parquet")


def _stages(root: Path) -> None:
    cwd = Path.cwd()
    os.chdir(root)
    try:
        params = load_params()
        for stage in (clean_stage, train_stage, evaluate_stage, export_stage):
            assert stage(params) == 0, stage.__name__
    finally:
        os.chdir(cwd)


def _register(root: Path) -> Path:
    files = {"card.json": root / "models" / "card.json",
             "model.safetensors": root / "models" / "model.safetensors",
             "model.onnx": root / "export" / "model.onnx",
             "onnx.json": root / "export" / "onnx.json"}  # fmt: skip
    metrics = json.loads((root / "reports" / "metrics.json").read_text())
    info = {"task": "image_classification", "data_version": "test", "metrics": metrics,
            "git_rev": None}  # fmt: skip
    registry.add_version(root / "registry", files, info, reason="image shape matrix")
    return root / "registry"


def _rows(img: Image.Image) -> list:
    """A PIL image as request pixel rows: grey values, or [R, G, B(, A)] lists."""
    return np.asarray(img).tolist()


@pytest.mark.parametrize("variant", list(MATRIX))
def test_every_shape_trains_exports_and_serves(tmp_path: Path, variant: str) -> None:
    overrides, shape = MATRIX[variant]
    base = {"validate": {"min_rows": 50}, "train": TINY, "evaluate": {"min_accuracy": 0.0}}
    write_params(tmp_path, merge_params(base, overrides))
    raw = _raw(tmp_path, variant)
    _validate(tmp_path, raw)
    _stages(tmp_path)

    # clean stored the fitted images in one layout: (N, H, W) grey, (N, H, W, 3) RGB
    pixels = np.load(tmp_path / "data" / "clean" / "pixels.npy")
    assert pixels.dtype == np.uint8 and pixels.shape[1:] == shape
    prep = json.loads((tmp_path / "data" / "clean" / "preprocessing.json").read_text())
    card = json.loads((tmp_path / "models" / "card.json").read_text())
    assert {k: card["preprocessing"][k] for k in prep} == prep  # the card records the fit
    channels = 1 if len(shape) == 2 else 3
    assert (
        card["config"]["in_channels"] == channels and len(card["preprocessing"]["mean"]) == channels
    )
    assert (card["config"]["height"], card["config"]["width"]) == shape[:2]
    metrics = json.loads((tmp_path / "reports" / "metrics.json").read_text())
    assert math.isfinite(metrics["accuracy"]) and metrics["n_test"] > 0
    onnx_info = json.loads((tmp_path / "export" / "onnx.json").read_text())
    assert onnx_info["input"]["shape"] == ["batch", *shape]
    assert onnx_info["parity"]["max_abs_diff"] <= onnx_info["parity"]["atol"]

    # Served: a site image (PNG and pixel rows) gets the logits of the pixels clean stored for it.
    items = pd.read_parquet(tmp_path / "data" / "clean" / "items.parquet")
    index = int(items["url"].str.rsplit("-", n=1).str[1].astype(int).iloc[0])
    stored = pixels[0]
    session = ort.InferenceSession((tmp_path / "export" / "model.onnx").read_bytes())
    want = session.run(["logits"], {"pixels": stored[np.newaxis]})[0][0]
    want = np.exp(want - want.max()) / np.exp(want - want.max()).sum()
    site_image = digit_image(VARIANTS[variant], index)
    png = digit_png(variant, index)
    other_size = site_image.resize((site_image.width + 5, site_image.height + 3))
    with TestClient(create_app(_register(tmp_path), ServeParams(max_batch=8))) as client:
        instances = [{"png_base64": base64.b64encode(png).decode()}, {"pixels": _rows(site_image)},
                     {"png_base64": encode_png(np.asarray(other_size))}]  # fmt: skip
        response = client.post("/predict", json={"instances": instances})
        assert response.status_code == 200, response.text
        got = [p["probabilities"] for p in response.json()["predictions"]]
        np.testing.assert_allclose(got[0], want, atol=1e-6)
        np.testing.assert_allclose(got[1], want, atol=1e-6)
        assert len(got[2]) == 10  # another size: fitted, not refused
        described = client.get("/model").json()["input"]  # how a client's image will be fitted
        fit = ("height", "width", "mode", "fit", "resample", "background")
        assert {k: described[k] for k in fit} == {k: prep[k] for k in fit}
        body = client.post("/predict/image", content=png, headers={"content-type": "image/png"})
        assert body.status_code == 200, body.text
        np.testing.assert_allclose(body.json()["predictions"][0]["probabilities"], want, atol=1e-6)
