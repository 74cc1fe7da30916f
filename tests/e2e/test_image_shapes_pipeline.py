"""A real crawl of a 32x32 RGB shop through `kiln run` to a served champion: `python -m pytest
tests/e2e/test_image_shapes_pipeline.py`.

The shipped params.yaml (the 8x8 grey demo) with what a user of another site changes: the crawl's
start URL, validate's size range instead of the demo's exact 8x8, and `clean.image` (32x32 RGB).
The site is `crawlers.image_sites`' rgb32 variant of the demo shop, served by the test on a free
port (the flow finds it answering and starts no demo site of its own). Every stage runs under a
real Prefect server; the champion takes (N, 32, 32, 3) uint8 pixels and `kiln serve`'s app
answers the site's own PNGs, pixel rows of [R, G, B] and a PNG of another size.
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from crawlers.image_sites import running_image_site
from serve.app import create_app
from serve.inputs import encode_png
from tasks.core.params import DemoSiteParams, ServeParams
from tests.project import (
    flow_run_id,
    free_port,
    make_project,
    merge_params,
    prefect_api,
    run,
    tiny_demo_overrides,
)

pytestmark = pytest.mark.e2e
IMAGE = {
    "validate": {"image_width": None, "image_height": None, "min_image_side": 16,
                 "max_image_side": 64},
    "clean": {"image": {"height": 32, "width": 32, "mode": "RGB", "fit": "pad"}},
    "train": {"epochs": 6, "patience": 3},
    "evaluate": {"min_accuracy": 0.0},
    # six epochs on ~100 images: the plumbing is under test, not the model (the matrix of
    # tests/integration/test_image_shapes.py and benchmarks measure accuracy)
    "promote": {"floors": {"accuracy": 0.0, "macro_f1": 0.0}, "baseline_gate": False},
}  # fmt: skip


def test_rgb_site_crawls_trains_exports_and_serves(tmp_path: Path, prefect_server) -> None:
    port = free_port()
    overrides = merge_params(tiny_demo_overrides(port), IMAGE)
    overrides["demo_site"]["sections"] = []
    site = DemoSiteParams(**overrides["demo_site"])
    project = make_project(tmp_path, overrides)
    with running_image_site(site, "rgb32", port):
        done = run(
            [sys.executable, "-m", "flows.cli", "run", "--project", str(project)],
            project,
            check=False,
            extra_env={"PREFECT_API_URL": prefect_server.api_url},
        )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run_id = flow_run_id(done.stdout)
    assert prefect_api(prefect_server.api_url, f"/flow_runs/{run_id}")["state"]["type"] == (
        "COMPLETED")  # fmt: skip

    raw_pngs = sorted((project / "data" / "raw" / "images").glob("*.png"))
    with Image.open(raw_pngs[0]) as img:
        assert (img.mode, img.size) == ("RGB", (32, 32))  # what the site served
    assert np.load(project / "data" / "clean" / "pixels.npy").shape[1:] == (32, 32, 3)
    card = json.loads((project / "models" / "card.json").read_text())
    assert card["config"]["in_channels"] == 3 and card["preprocessing"]["mode"] == "RGB"
    assert (card["preprocessing"]["height"], card["preprocessing"]["width"]) == (32, 32)
    onnx_info = json.loads((project / "export" / "onnx.json").read_text())
    assert onnx_info["input"]["shape"] == ["batch", 32, 32, 3]
    promotion = json.loads((project / "reports" / "promotion.json").read_text())
    assert promotion["outcome"] == "promoted", promotion

    png = raw_pngs[0].read_bytes()
    with Image.open(raw_pngs[0]) as img:
        rows = np.asarray(img.convert("RGB")).tolist()
        bigger = np.asarray(img.convert("RGB").resize((48, 40)))
    with TestClient(create_app(project / "registry", ServeParams())) as client:
        instances = [{"png_base64": base64.b64encode(png).decode()}, {"pixels": rows},
                     {"png_base64": encode_png(bigger)}]  # fmt: skip
        answer = client.post("/predict", json={"instances": instances})
        assert answer.status_code == 200, answer.text
        predictions = answer.json()["predictions"]
        assert predictions[0] == predictions[1]  # the PNG and its pixel rows: one input
        assert answer.json()["model_version"] == "v0001" and len(predictions) == 3
        raw = client.post("/predict/image", content=png, headers={"content-type": "image/png"})
        assert raw.status_code == 200 and raw.json()["predictions"][0] == predictions[0]
