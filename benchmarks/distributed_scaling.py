"""Distributed training: `python -m benchmarks.distributed_scaling [NPROC] [EPOCHS]` (a benchmark).

Runs the training engine (`tasks.core.engine.fit`) under the real torchrun twice, on 1 process
and on NPROC (default: every GPU, else 2 CPU processes), with the same global batch, and prints
tokens/s, the speed-up and the final validation loss of each. On GPUs: NCCL, one GPU per process,
bf16 autocast (the engine's CUDA path); on the CPU: gloo.

The workload is the text_generation task type's `char_transformer` on a synthetic, learnable
stream (`_stream`: each of 64 symbols followed by one of 4 likely next ones), so the validation
loss falls towards 0.915 nats/token and both runs can be compared on it. bf16 rounding and
another reduction order on N GPUs make the two losses differ slightly; on the CPU they agree to
~1e-5 (tests/unit/tasks/core/test_distributed.py).

Needs only torch, numpy and safetensors (the GPU machine of benchmarks/gpu.sh has no pydantic).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import torch

from tasks.core import distributed
from tasks.core.engine import EngineConfig, TaskData, fit, pick_device
from tasks.core.models import build_model
from tasks.core.objectives import lm_loss, lm_metrics
from tasks.types.text_generation.models import ARCHITECTURES

MODULE = "benchmarks.distributed_scaling"


def _stream(n_tokens: int, vocab: int = 64, seed: int = 0) -> torch.Tensor:
    """Each symbol is the previous one plus 1, 2, 3 or 5 (70/15/10/5 %), modulo `vocab`: the
    best possible loss is that choice's entropy, 0.915 nats/token."""
    g = torch.Generator().manual_seed(seed)
    steps = torch.tensor([1, 2, 3, 5])
    probs = torch.tensor([0.70, 0.15, 0.10, 0.05])
    return steps[torch.multinomial(probs, n_tokens, True, generator=g)].cumsum(0) % vocab


def _workload(gpu: bool) -> tuple[dict[str, int], TaskData, EngineConfig]:
    # GPU: a model and batch that keep an H100 busy; CPU: seconds per epoch on 2 cores.
    block, d_model, layers, windows, batch = (
        (256, 384, 6, 16_384, 256) if gpu else (64, 64, 2, 1024, 64)
    )
    stream = _stream(windows * (block + 1) + 1)
    w = stream[: windows * (block + 1)].view(windows, block + 1)
    n_val = windows // 8
    data = TaskData(w[n_val:, :-1], w[n_val:, 1:], w[:n_val, :-1], w[:n_val, 1:])
    config = {
        "vocab_size": 64,
        "block_size": block,
        "d_model": d_model,
        "n_heads": 8 if gpu else 4,
        "n_layers": layers,
        "dropout": 0.0,
    }
    cfg = EngineConfig(epochs=3, batch_size=batch, lr=1e-3, patience=3)
    return config, data, cfg


def rank_main(out: Path, epochs: int) -> None:
    """One rank: fit, then rank 0 writes tokens/s and the history to `out`."""
    with distributed.process_group("auto"):
        gpu = torch.cuda.is_available()
        config, data, cfg = _workload(gpu)
        cfg = EngineConfig(**{**cfg.__dict__, "epochs": epochs, "patience": epochs})
        torch.manual_seed(0)
        model = build_model(ARCHITECTURES, "char_transformer", config)
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            result = fit(model, data, lm_loss, lm_metrics, cfg=cfg, checkpoint_path=Path(tmp) / "c")
            seconds = time.perf_counter() - start
        if distributed.is_rank0():
            tokens = data.x_train.numel() * epochs
            device = pick_device("auto")
            name = torch.cuda.get_device_name(0) if gpu else "cpu"
            report = {
                "tokens_per_s": tokens / seconds,
                "seconds": seconds,
                "device": f"{device} ({name})",
                "config": config,
                "batch_size": cfg.batch_size,
                "history": result.history,
            }
            out.write_text(json.dumps(report))


def _torchrun(nproc: int, out: Path, epochs: int) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        MODULE,
        "--rank",
        str(out),
        str(epochs),
    ]
    subprocess.run(cmd, check=True)
    return json.loads(out.read_text())


def main() -> int:
    gpus = torch.cuda.device_count()
    nproc = int(sys.argv[1]) if len(sys.argv) > 1 else (gpus if gpus >= 2 else 2)
    epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    if gpus and nproc > gpus:
        raise SystemExit(f"{nproc} processes asked for, {gpus} GPUs: NCCL needs one GPU each")
    backend = distributed.resolve_backend("auto")
    with tempfile.TemporaryDirectory() as tmp:
        runs = {n: _torchrun(n, Path(tmp) / f"{n}.json", epochs) for n in (1, nproc)}
    one = runs[1]
    print(f"\nchar_transformer {one['config']}, global batch {one['batch_size']}, {epochs} epochs")
    print(f"{backend} on {one['device']}")
    print(f"{'processes':>9} {'tokens/s':>12} {'speed-up':>8} {'val loss':>9} {'seconds':>8}")
    for n, run in runs.items():
        speedup = run["tokens_per_s"] / one["tokens_per_s"]
        loss, seconds = run["history"][-1]["val_loss"], run["seconds"]
        print(f"{n:>9} {run['tokens_per_s']:>12.0f} {speedup:>8.2f} {loss:>9.4f} {seconds:>8.1f}")
    gap = abs(runs[nproc]["history"][-1]["val_loss"] - one["history"][-1]["val_loss"])
    print(f"final val loss, {nproc} processes vs 1: |difference| {gap:.2e} nats/token")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--rank"]:
        rank_main(Path(sys.argv[2]), int(sys.argv[3]))
    else:
        raise SystemExit(main())
