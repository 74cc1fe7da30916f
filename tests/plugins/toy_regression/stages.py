"""The toy task type's stages, built only from the core's building blocks."""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from serve.schemas import TaskSpec
from tasks.core.io import atomic_dir, write_json, write_jsonl, write_parquet
from tasks.core.models import load_model, save_model
from tasks.core.onnx_export import compare_logits, write_export
from tasks.core.paths import TRAIN_REPORTS
from tasks.core.splits import split_of
from tasks.core.training import write_live

log = logging.getLogger("kiln.toy")
CLEAN = Path("data/clean")


@dataclass(frozen=True)
class ConstantConfig:
    """Nothing to configure: the one weight is the mean."""


class Constant(nn.Module):
    def __init__(self, config: ConstantConfig) -> None:
        super().__init__()
        self.mean = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 0 + self.mean


ARCHITECTURES = {"constant": (ConstantConfig, Constant)}


def clean(params: Any) -> int:  # noqa: D103
    rows = pd.read_parquet("data/validated/items.parquet")
    values = pd.to_numeric(rows[params.train.value_column], errors="coerce")
    bad = values.isna()
    write_jsonl(
        Path("data/quarantine/clean.jsonl"),
        [{"url": u, "reason": "no value"} for u in rows.loc[bad, "url"]],
    )
    items = pd.DataFrame({"url": rows.loc[~bad, "url"], "value": values[~bad]})
    items["split"] = [split_of(u, params.clean) for u in items["url"]]
    with atomic_dir(CLEAN) as tmp:
        write_parquet(items.reset_index(drop=True), tmp / "items.parquet")
    write_json(Path("reports/clean.json"), {"n_in": len(rows), "n_out": int((~bad).sum())})
    Path("reports/label_issues.csv").write_text("key\n")
    return 0


def train(params: Any) -> int:
    items = pd.read_parquet(CLEAN / "items.parquet")
    model = Constant(ConstantConfig())
    with torch.no_grad():
        model.mean.fill_(float(items.loc[items["split"] == "train", "value"].mean()))
    card = {"architecture": "constant", "config": {}, "classes": [], "preprocessing": {}}
    with atomic_dir(Path("models")) as tmp:
        save_model(model, tmp, card)
    train_mae = float((items["value"] - float(model.mean.detach())).abs().mean())
    run = SimpleNamespace(history=[{"epoch": 1, "val_loss": train_mae}], best_epoch=1, epochs_run=1)
    write_live(run, TRAIN_REPORTS)  # reports/train/, as every task type writes it
    return 0


def test_metrics(model_dir: Path, clean_dir: Path, params: Any) -> dict[str, Any]:
    model, _ = load_model(model_dir, ARCHITECTURES)
    items = pd.read_parquet(clean_dir / "items.parquet")
    test = items.loc[items["split"] == "test", "value"].to_numpy()
    mae = float(np.abs(test - float(model.mean)).mean())
    return {"mae": round(mae, 6), "n_test": len(test)}


def evaluate(params: Any) -> int:
    metrics = test_metrics(Path("models"), CLEAN, params)
    write_json(Path("reports/metrics.json"), metrics)
    with atomic_dir(Path("reports/evaluation")) as tmp:
        write_json(tmp / "summary.json", metrics)
    log.info("test MAE %.3f on %d values", metrics["mae"], metrics["n_test"])
    return 0


def export(params: Any) -> int:
    model, card = load_model(Path("models"), ARCHITECTURES)
    buffer = io.BytesIO()
    torch.onnx.export(
        model,
        (torch.zeros(2, 1),),
        buffer,
        dynamo=False,
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "n"}, "y": {0: "n"}},
    )
    import onnxruntime as ort  # noqa: PLC0415

    x = np.ones((3, 1), np.float32)
    got = ort.InferenceSession(buffer.getvalue()).run(["y"], {"x": x})[0]
    parity = compare_logits(got, model(torch.from_numpy(x)).detach().numpy(), 1e-5)
    write_export(
        buffer.getvalue(),
        {
            "onnx_sha256": hashlib.sha256(buffer.getvalue()).hexdigest(),
            "weights_sha256": card["weights_sha256"],
            "output": {"name": "y"},
            "parity": parity,
        },
    )
    return 0


def serving() -> TaskSpec:
    raise LookupError("the toy task type is not served")


def torch_runner(version_dir: Path) -> Any:
    model, _ = load_model(version_dir, ARCHITECTURES)
    return lambda x: model(torch.from_numpy(x)).detach().numpy()
