"""Train overhead: `python -m benchmarks.train_overhead [PAIRS] [TASKS]` (a benchmark, not a test).

Samples/s of the training engine against a minimal plain-PyTorch loop over the same tensors, same
model (same init), same batch size. TASKS is a comma list of `image,forecasting,text,lm` (all by
default). image: the full digits fixture (1797 images, params.yaml's train section):

* epoch loop: `tasks.core.engine.run_epoch` (deterministic algorithms on, as on CPU)
  against the plain loop, one epoch each;
* whole stage: `tasks.train.train_model` for EPOCHS epochs against EPOCHS plain epochs each
  followed by a plain validation forward pass (the stage validates every epoch too), so what
  differs is the stage's own overhead: NaN check, best-weights copy, an atomic checkpoint per
  epoch, model setup. Samples counted are training samples on both sides.

forecasting (`lstm` on sine windows), text (`transformer_encoder` on random byte strings) and lm
(`char_transformer`, counted in tokens): `tasks.core.engine.fit` for EPOCHS epochs (checkpoint each
epoch, validation metrics) against EPOCHS plain epochs plus a plain validation forward pass. The
data are synthetic: only the shapes matter for speed (see `_SEQ_TASKS`).

Runs alternate A, B, A, B ... after one warm-up pair; each figure is the median of the per-pair
ratios. Prints a table per figure, then one line per figure with its target and whether it holds.
"""

from __future__ import annotations

import math
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

from tasks.core.engine import EngineConfig, TaskData, fit, pick_device, run_epoch
from tasks.core.models import build_model
from tasks.core.objectives import (
    LossFn,
    classification_metrics,
    lm_loss,
    lm_metrics,
    regression_metrics,
)
from tasks.types.forecasting.models import ARCHITECTURES as FORECAST_ARCHITECTURES
from tasks.types.image_classification.models import ARCHITECTURES as IMAGE_ARCHITECTURES
from tasks.types.image_classification.models import preprocess
from tasks.types.text_classification.models import ARCHITECTURES as TEXT_ARCHITECTURES
from tasks.types.text_generation.models import ARCHITECTURES as LM_ARCHITECTURES

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
    loss_fn: LossFn = F.cross_entropy,
) -> None:
    """The baseline: what anyone would write for in-memory tensors."""
    model.train()
    perm = torch.randperm(len(x), generator=generator).to(x.device)
    for i in range(0, len(x), batch_size):
        idx = perm[i : i + batch_size]
        with torch.autocast(x.device.type, torch.bfloat16, enabled=x.device.type == "cuda"):
            loss = loss_fn(model(x[idx]), y[idx])
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
    unit: str = "samples",
) -> float:
    print(f"\n{name}: {unit}/s, stage (A) vs plain (B)")
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


def _image(pairs: int) -> list[tuple[str, float]]:
    # Imported here: the sequence tasks run where only torch, numpy and safetensors are installed
    # (the GPU machine of benchmarks/gpu.sh has no pydantic or scikit-learn).
    from tasks.core.params import load_params  # noqa: PLC0415
    from tasks.types.image_classification.data import load_train_data  # noqa: PLC0415
    from tasks.types.image_classification.train import train_model  # noqa: PLC0415
    from tests.clean_fixture import CLASSES, REPO_PARAMS, write_clean_fixture  # noqa: PLC0415

    cfg = load_params(REPO_PARAMS).train
    cfg = cfg.model_copy(update={"epochs": EPOCHS, "patience": EPOCHS})
    with tempfile.TemporaryDirectory() as tmp:
        write_clean_fixture(tmp)
        data = load_train_data(Path(tmp) / "data" / "clean", CLASSES)
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
            model = build_model(IMAGE_ARCHITECTURES, cfg.model, config).to(device)
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
            f"image: device {device}, {len(x)} train images {tuple(x.shape[1:])}, "
            f"batch {cfg.batch_size}, channels {cfg.channels}"
        )
        loop = _pairs("epoch loop", len(x), stage_epoch, plain_one, pairs=pairs, device=device)
        name = f"whole stage, {EPOCHS} epochs"
        stage = _pairs(name, len(x) * EPOCHS, stage_run, plain_run, pairs=pairs, device=device)
    return [("image: epoch loop", loop), ("image: whole train stage", stage)]


def _synthetic(task: str) -> tuple[str, dict[str, object], TaskData, int]:
    """(architecture, config, data, units per sample) of a seeded synthetic task of that type."""
    g = torch.Generator().manual_seed(0)
    # Sizes: about a second per 5-epoch run on 2 shared CPU cores, so PAIRS=5 ends in minutes.
    if task == "forecasting":  # 1024 windows of 48 monthly-like steps (trend + season) -> 12
        t = torch.arange(1024 + 60, dtype=torch.float32)
        w = (torch.sin(2 * math.pi * t / 12) + 0.01 * t / 12).unfold(0, 60, 1)
        x, y, config = w[:, :48, None], w[:, 48:], {"horizon": 12, "hidden": 64}
        units = 1
    elif task == "text":  # 512 byte strings of 64 tokens, 4 classes
        x, y = torch.randint(1, 256, (512, 64), generator=g), torch.randint(0, 4, (512,))
        config, units = {"max_len": 64, "n_classes": 4, "d_model": 64, "dropout": 0.1}, 1
    else:  # lm: 256 windows of 64 bytes; counted in tokens
        w = torch.randint(0, 256, (256, 65), generator=g)
        x, y, config, units = w[:, :-1], w[:, 1:], {"block_size": 64, "d_model": 64}, 64
    arch = _SEQ_TASKS[task][0]
    n_val = len(x) // 8
    return arch, config, TaskData(x[:-n_val], y[:-n_val], x[-n_val:], y[-n_val:]), units


# task -> (architecture, its task type's architectures, loss, metrics); batch 64 for all: a
# common small-model default
_SEQ_TASKS = {
    "forecasting": ("lstm", FORECAST_ARCHITECTURES, F.mse_loss, regression_metrics),
    "text": ("transformer_encoder", TEXT_ARCHITECTURES, F.cross_entropy, classification_metrics),
    "lm": ("char_transformer", LM_ARCHITECTURES, lm_loss, lm_metrics),
}


def _seq(task: str, pairs: int, tmp: Path) -> list[tuple[str, float]]:
    arch, config, data, units = _synthetic(task)
    device = pick_device("auto")
    data = data.to(device)
    _, architectures, loss_fn, metric_fn = _SEQ_TASKS[task]
    cfg = EngineConfig(epochs=EPOCHS, batch_size=64, lr=1e-3, patience=EPOCHS, device=device.type)
    runs = iter(range(10_000))

    def fresh() -> torch.nn.Module:
        torch.manual_seed(0)
        return build_model(architectures, arch, config).to(device)

    def engine_run() -> None:  # a fresh checkpoint dir each time: never a resume
        fit(
            fresh(), data, loss_fn, metric_fn, cfg=cfg, checkpoint_path=tmp / task / str(next(runs))
        )

    def plain_run() -> None:
        model = fresh()
        opt = torch.optim.AdamW(model.parameters(), cfg.lr, weight_decay=cfg.weight_decay)
        for epoch in range(EPOCHS):
            order = torch.Generator().manual_seed(epoch)
            x, y = data.x_train, data.y_train
            plain_epoch(model, opt, x, y, batch_size=64, generator=order, loss_fn=loss_fn)
            model.eval()
            with torch.no_grad():
                loss_fn(model(data.x_val), data.y_val).item()

    n = len(data.x_train) * units * EPOCHS
    print(f"\n{task}: {arch} {config}, {len(data.x_train)} train {tuple(data.x_train.shape[1:])}")
    name, unit = f"{task} ({arch}), {EPOCHS} epochs", "tokens" if units > 1 else "samples"
    ratio = _pairs(name, n, engine_run, plain_run, pairs=pairs, device=device, unit=unit)
    return [(f"{task}: engine fit", ratio)]


def main() -> int:
    pairs = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    tasks = sys.argv[2].split(",") if len(sys.argv) > 2 else ["image", *_SEQ_TASKS]
    unknown = sorted(set(tasks) - {"image", *_SEQ_TASKS})
    if unknown:
        raise SystemExit(f"unknown task(s) {unknown}; known: image, {', '.join(_SEQ_TASKS)}")
    print(f"torch threads {torch.get_num_threads()}, {pairs} pairs, tasks {tasks}")
    figures = _image(pairs) if "image" in tasks else []
    with tempfile.TemporaryDirectory() as tmp:
        for task in (t for t in tasks if t != "image"):
            figures += _seq(task, pairs, Path(tmp))
    print()
    for name, ratio in figures:
        verdict = "holds" if ratio >= TARGET else "MISSED"
        print(
            f"{name} throughput vs plain PyTorch loop: {ratio:.3f}x (target >= {TARGET:.2f}x): "
            f"{verdict}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
