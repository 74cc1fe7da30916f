"""Time to accuracy of the digits CNN: `python -m benchmarks.time_to_accuracy [TARGET] [RUNS]`.

Trains the demo's CNN (params.yaml's train section, written out below so that only torch, numpy
and safetensors are needed) on scikit-learn's 1797 handwritten digits with the training engine,
and reports the wall time from the first step until validation accuracy first reaches TARGET
(default 0.98), the epochs it took, training samples/s, and the test accuracy of the best epoch.
Each run starts from a fresh seed-0 model; the median of RUNS (default 5) is reported, after one
warm-up run (CUDA context, kernel choice). Used by benchmarks/gpu.sh; runs on CPU too.

Digits: sklearn's shipped `datasets/data/digits.csv.gz` (64 pixels 0..16 then the label), found
without importing sklearn, or the file named by KILN_DIGITS (benchmarks/gpu.sh copies it along
for a machine without scikit-learn). Split 70/15/15 by a seeded permutation.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from tasks.core.engine import EngineConfig, TaskData, fit, pick_device
from tasks.core.models import build_model, predict_logits
from tasks.core.objectives import classification_metrics
from tasks.types.image_classification.models import ARCHITECTURES, preprocess

# params.yaml's train section of the digits demo, early stopping included
CNN = {"in_channels": 1, "height": 8, "width": 8, "n_classes": 10, "channels": 32, "dropout": 0.2}
ENGINE = {"epochs": 40, "batch_size": 64, "lr": 3e-3, "weight_decay": 1e-4, "patience": 6}


def digits_file() -> Path:
    if os.environ.get("KILN_DIGITS"):
        return Path(os.environ["KILN_DIGITS"])
    spec = importlib.util.find_spec("sklearn")  # locates the package without importing it
    if spec is None or spec.origin is None:
        raise SystemExit("no digits: install scikit-learn or set KILN_DIGITS=path/digits.csv.gz")
    return Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"


def load_digits(device: torch.device) -> tuple[TaskData, torch.Tensor, torch.Tensor]:
    with gzip.open(digits_file(), "rt") as fh:
        raw = np.loadtxt(fh, delimiter=",")
    pixels = (raw[:, :-1].reshape(-1, 8, 8) * 255 // 16).astype(np.uint8)  # as the demo site
    labels = raw[:, -1].astype(np.int64)
    order = np.random.default_rng(0).permutation(len(labels))
    n_val = n_test = int(0.15 * len(labels))
    parts = np.split(order, [len(order) - n_val - n_test, len(order) - n_test])
    train = pixels[parts[0]].astype(np.float64) / 255
    prep = {"scale": 1 / 255, "mean": float(train.mean()), "std": float(train.std())}

    def tensors(idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        x = preprocess(torch.from_numpy(pixels[idx]).to(device), prep)
        return x, torch.from_numpy(labels[idx]).to(device)

    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = (tensors(p) for p in parts)
    return TaskData(x_tr, y_tr, x_va, y_va), x_te, y_te


def one_run(  # noqa: PLR0917 (a benchmark's one call site)
    data: TaskData,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    target: float,
    device: torch.device,
    checkpoints: Path,
) -> dict[str, float]:
    torch.manual_seed(0)
    model = build_model(ARCHITECTURES, "cnn", CNN)
    reached: dict[str, float] = {}
    start = time.perf_counter()

    def on_epoch(row: dict[str, float]) -> None:
        if "seconds" not in reached and row["val_acc"] >= target:
            if device.type == "cuda":
                torch.cuda.synchronize()
            reached.update(seconds=time.perf_counter() - start, epoch=row["epoch"])

    cfg = EngineConfig(**ENGINE, device=device.type)
    loss_fn, metric_fn = F.cross_entropy, classification_metrics
    run = fit(
        model, data, loss_fn, metric_fn, cfg=cfg, checkpoint_path=checkpoints, on_epoch=on_epoch
    )
    total = time.perf_counter() - start
    test_acc = float(
        (predict_logits(run.model.to(device), x_test).argmax(1) == y_test).float().mean()
    )
    return {
        "seconds": reached.get("seconds", float("nan")),
        "epoch": reached.get("epoch", float("nan")),
        "samples_per_s": len(data.x_train) * run.epochs_run / total,
        "test_acc": test_acc,
    }


def main() -> int:
    target = float(sys.argv[1]) if len(sys.argv) > 1 else 0.98
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    device = pick_device("auto")
    name = (
        torch.cuda.get_device_name(0)
        if device.type == "cuda"
        else f"{device} ({torch.get_num_threads()} threads)"
    )
    data, x_test, y_test = load_digits(device)
    print(f"digits CNN on {name}: {len(data.x_train)} train, val acc target {target}")
    print(f"{'run':>3} {'to target (s)':>13} {'epoch':>5} {'samples/s':>10} {'test acc':>8}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(runs + 1):
            row = one_run(data, x_test, y_test, target, device, Path(tmp) / str(i))
            if i == 0:
                continue  # warm-up
            rows.append(row)
            print(
                f"{i:>3} {row['seconds']:>13.2f} {row['epoch']:>5.0f} "
                f"{row['samples_per_s']:>10.0f} {row['test_acc']:>8.4f}"
            )
    median = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    print(
        f"median: {median['seconds']:.2f} s to val acc {target} (epoch {median['epoch']:.0f}), "
        f"{median['samples_per_s']:.0f} samples/s, test acc {median['test_acc']:.4f} on {name}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
