"""Train-stage overhead: `python -m benchmarks.train_overhead [PAIRS]` (PERFORMANCE.md; not a test).

Samples/s of the train stage against a minimal plain-PyTorch loop over the same tensors, same model
(same init), same batch size, on the full digits fixture (1797 images, params.yaml's train section):

* epoch loop: `tasks.train.run_epoch` (deterministic algorithms on, as the stage runs it on CPU)
  against the plain loop, one epoch each;
* whole stage: `tasks.train.train_model` for EPOCHS epochs against EPOCHS plain epochs each
  followed by a plain validation forward pass (the stage validates every epoch too), so what
  differs is the stage's own overhead: NaN check, best-weights copy, an atomic checkpoint per
  epoch, model setup. Samples counted are training samples on both sides.

Runs alternate A, B, A, B ... after one warm-up pair; each figure is the median of the per-pair
ratios. Prints a table per figure, then one line per figure with its target and whether it holds.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # the stage's progress bar would garble the table

import torch
import torch.nn.functional as F  # noqa: N812

from tasks.models import build_model, pick_device, preprocess
from tasks.params import load_params
from tasks.train import TrainData, load_train_data, run_epoch, train_model
from tests.clean_fixture import CLASSES, REPO_PARAMS, write_clean_fixture

EPOCHS = 5  # per whole-stage run: enough that per-run setup is part of, not all of, the time
TARGET = 0.90


def plain_epoch(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int,
    generator: torch.Generator,
) -> None:
    """The baseline: what anyone would write for in-memory tensors."""
    model.train()
    perm = torch.randperm(len(x), generator=generator).to(x.device)
    for i in range(0, len(x), batch_size):
        idx = perm[i : i + batch_size]
        with torch.autocast(x.device.type, torch.bfloat16, enabled=x.device.type == "cuda"):
            loss = F.cross_entropy(model(x[idx]), y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def _timed(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def _pairs(
    name: str,
    n_samples: int,
    a: Callable[[], object],
    b: Callable[[], object],
    *,
    pairs: int,
    device: torch.device,
) -> float:
    print(f"\n{name}: samples/s, stage (A) vs plain (B)")
    print(f"{'pair':>4} {'A stage':>10} {'B plain':>10} {'A/B':>6}")
    ratios = []
    for pair in range(pairs + 1):
        speed_a = n_samples / _timed(a, device)
        speed_b = n_samples / _timed(b, device)
        if pair == 0:
            continue  # warm-up: allocator, kernel choice, page cache
        ratios.append(speed_a / speed_b)
        print(f"{pair:>4} {speed_a:>10.0f} {speed_b:>10.0f} {ratios[-1]:>6.3f}")
    return statistics.median(ratios)


def main() -> int:
    pairs = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    cfg = load_params(REPO_PARAMS).train
    cfg = cfg.model_copy(update={"epochs": EPOCHS, "patience": EPOCHS})
    with tempfile.TemporaryDirectory() as tmp:
        write_clean_fixture(tmp)
        data: TrainData = load_train_data(Path(tmp) / "data" / "clean", CLASSES)
        device = pick_device(cfg.device)
        prep = {"scale": 1 / 255, "mean": 0.3, "std": 0.37}  # values do not change the speed
        x = preprocess(torch.from_numpy(data.train.pixels).to(device), prep)
        y = torch.from_numpy(data.train.labels).to(device)
        x_val = preprocess(torch.from_numpy(data.val.pixels).to(device), prep)
        y_val = torch.from_numpy(data.val.labels).to(device)
        config = {
            "in_channels": 1,
            "height": x.shape[2],
            "width": x.shape[3],
            "n_classes": len(CLASSES),
            "channels": cfg.channels,
            "dropout": cfg.dropout,
        }

        def fresh() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
            torch.manual_seed(cfg.seed)
            model = build_model(cfg.model, config).to(device)
            return model, torch.optim.AdamW(
                model.parameters(), cfg.lr, weight_decay=cfg.weight_decay
            )

        (model_a, opt_a), (model_b, opt_b) = fresh(), fresh()

        def stage_epoch() -> None:
            torch.use_deterministic_algorithms(device.type == "cpu")
            order = torch.Generator().manual_seed(0)
            run_epoch(model_a, opt_a, x, y, batch_size=cfg.batch_size, generator=order)
            torch.use_deterministic_algorithms(False)

        def plain_one() -> None:
            order = torch.Generator().manual_seed(0)
            plain_epoch(model_b, opt_b, x, y, batch_size=cfg.batch_size, generator=order)

        runs = iter(range(10_000))

        def stage_run() -> None:  # a fresh checkpoint dir each time: never a resume
            train_model(cfg, data, Path(tmp) / "checkpoints" / str(next(runs)))

        def plain_run() -> None:
            model, opt = fresh()
            for epoch in range(EPOCHS):
                order = torch.Generator().manual_seed(epoch)
                plain_epoch(model, opt, x, y, batch_size=cfg.batch_size, generator=order)
                model.eval()
                with torch.no_grad():
                    F.cross_entropy(model(x_val), y_val).item()

        print(
            f"device {device}, {len(x)} train images {tuple(x.shape[1:])}, batch {cfg.batch_size}, "
            f"channels {cfg.channels}, torch threads {torch.get_num_threads()}, {pairs} pairs"
        )
        loop = _pairs("epoch loop", len(x), stage_epoch, plain_one, pairs=pairs, device=device)
        name = f"whole stage, {EPOCHS} epochs"
        stage = _pairs(name, len(x) * EPOCHS, stage_run, plain_run, pairs=pairs, device=device)
    print()
    for name, ratio in (("epoch loop", loop), ("whole train stage", stage)):
        verdict = "holds" if ratio >= TARGET else "MISSED"
        print(
            f"{name} throughput vs plain PyTorch loop: {ratio:.3f}x (target >= {TARGET:.2f}x): "
            f"{verdict}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
