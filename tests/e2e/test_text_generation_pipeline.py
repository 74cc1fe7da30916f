"""Text generation end to end: `python -m pytest tests/e2e/test_text_generation_pipeline.py`.

examples/jokes_generation.params.yaml in a fresh git + DVC project: a real crawl of the demo
site's joke board (200 jokes), then `dvc repro evaluate export` runs validate, clean, train (a
tiny byte-level Transformer, 3 epochs), evaluate and export. Checks the real outputs: the
tokenizer in the card, a test perplexity far below uniform bytes' 257, samples that a re-run
reproduces byte for byte, and an ONNX graph that matches PyTorch.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest

from flows.dvc_stages import stage_names
from tests.project import REPO, crawl_and_record, dvc, free_port, make_project, run

pytestmark = pytest.mark.e2e
STAGES = [s for s in stage_names(REPO)[1:] if s != "promote"]  # promote: not this test's


def _overrides(port: int) -> dict:
    return {
        "demo_site": {"port": port},
        "crawl": {"start_urls": [f"http://127.0.0.1:{port}/jokes/"], "max_items": 200,
                  "allow_partial": True, "concurrency": 8},  # 200 jokes: a partial crawl
        "validate": {"min_rows": 50},
        "train": {"epochs": 3, "d_model": 32, "layers": 1, "heads": 2, "dropout": 0.0,
                  "batch_size": 32, "lr": 0.01, "warmup_steps": 5, "text": {"max_len": 64}},
        "evaluate": {"generate": {"prompts": ["", "Why "], "n_samples": 2, "max_new_tokens": 60,
                                  "seed": 7}},
        "export": {"parity_batch": 8},
    }  # fmt: skip


def test_jokes_crawl_to_generator(tmp_path: Path) -> None:
    port = free_port()
    base = "examples/jokes_generation.params.yaml"
    project = make_project(tmp_path, _overrides(port), base=base)
    crawl_and_record(project)
    repro = dvc("repro", "evaluate", "export", cwd=project)  # promote: not this test's
    assert [s for s in STAGES if f"Running stage '{s}'" in repro.stdout] == STAGES, repro.stdout

    card = json.loads((project / "models" / "card.json").read_text())
    assert card["preprocessing"]["tokenizer"] == {"kind": "byte", "vocab_size": 257, "eot_id": 256}
    assert card["config"]["block_size"] == 64

    items = pd.read_parquet(project / "data" / "clean" / "items.parquet")
    test_texts = items.loc[items["split"] == "test", "text"].tolist()
    metrics = json.loads((project / "reports" / "metrics.json").read_text())
    assert metrics["n_test_texts"] == len(test_texts) > 0
    assert metrics["n_test"] == sum(len(t.encode()) for t in test_texts) + len(test_texts)
    assert math.isfinite(metrics["perplexity"]) and metrics["perplexity"] < 40, metrics
    assert metrics["val_loss"] == pytest.approx(math.log(metrics["perplexity"]), rel=1e-5)

    samples_path = project / "reports" / "evaluation" / "samples.json"
    samples = json.loads(samples_path.read_text())
    assert len(samples) == 4 and any(s["text"].strip() for s in samples)
    assert '## Prompt: "Why "' in (project / "reports/evaluation/samples.md").read_text()
    before = samples_path.read_bytes()
    run([sys.executable, "-m", "tasks.evaluate"], project)  # the same model and seed
    assert samples_path.read_bytes() == before
    status = dvc("status", "--json", "evaluate", "export", cwd=project).stdout
    assert json.loads(status or "{}") == {}

    info = json.loads((project / "export" / "onnx.json").read_text())
    assert info["parity"]["max_abs_diff"] <= 1e-4
    session = ort.InferenceSession(str(project / "export" / "model.onnx"))
    ids = np.asarray([[256, *b"Why did the"]], dtype=np.int64)
    logits = session.run(["logits"], {"ids": ids})[0]
    assert logits.shape == (1, ids.shape[1], 257) and np.isfinite(logits).all()
