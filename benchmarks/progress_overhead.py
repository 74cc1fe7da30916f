"""Progress overhead: `python -m benchmarks.progress_overhead [PAIRS] [EPOCHS]` (a benchmark).

What per-step progress (tasks/core/progress.py, issue 14) costs training:

* per update: ns per `Progress.update()` in log mode (INFO to a file, the heartbeat thread
  running, as in a stage under DVC or Prefect) and on a terminal (tqdm, drawing to /dev/null),
  against an empty loop;
* epoch loop: `tasks.core.engine.run_epoch` with a live Progress (A: log mode, heartbeat
  thread, INFO to a file) against the same loop without one (B: progress=None), two copies of
  the same model, EPOCHS epochs per timing: where the per-step cost lands, without the
  checkpoint writes and validation that make whole fits noisy;
* whole fit: the demo's classifier (scikit-learn's 1797 8x8 digits, the demo site's images;
  params.yaml's train section: cnn, batch 64, 32 channels, AdamW) for EPOCHS epochs through
  `tasks.core.engine.fit` as it is now (A: a progress line every 10 s, kiln.train at INFO to a
  file) against the engine as committed before progress (B: `git show <REV>:tasks/core/engine.py`,
  one log line per epoch), same init, same data; and the same for a small text Transformer
  (512 byte strings of 64 tokens: shorter steps, so a larger share for a per-step cost).

Runs alternate A, B, A, B ... after one warm-up pair; each figure is the median of the per-pair
time ratios A/B. Target: training with progress takes at most 1% longer (ratio <= 1.01). On a
CPU shared with other jobs whole fits spread widely (checkpoint fsyncs, preempted threads); the
per-update cost and the epoch loop are the figures to trust there. REV is
the environment variable KILN_ENGINE_BEFORE (default: the last commit before progress, 128ff68).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import torch
import torch.nn.functional as F  # noqa: N812

from tasks.core import engine, progress
from tasks.core.models import build_model
from tasks.core.objectives import classification_metrics

REPO = Path(__file__).resolve().parents[1]
BEFORE = os.environ.get("KILN_ENGINE_BEFORE", "128ff68")
TARGET = 1.01


def _engine_before(tmp: Path) -> ModuleType:
    source = subprocess.run(
        ["git", "show", f"{BEFORE}:tasks/core/engine.py"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = tmp / "engine_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("engine_before", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["engine_before"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _per_update_ns(log_file: Path) -> dict[str, float]:
    n = 200_000
    log = logging.getLogger("bench.progress")
    results = {}
    start = time.perf_counter()
    for _ in range(n):
        pass
    empty = time.perf_counter() - start
    with open(os.devnull, "w") as devnull:
        for mode in ("log", "tqdm"):
            saved = sys.stderr
            sys.stderr = devnull if mode == "tqdm" else saved
            try:
                bar = progress.Progress("bench", n, logger=log, tty=mode == "tqdm")
                start = time.perf_counter()
                for _ in range(n):
                    bar.update()
                took = time.perf_counter() - start
                bar.close()
            finally:
                sys.stderr = saved
            results[mode] = (took - empty) / n * 1e9
    print(
        f"per update: log mode {results['log']:.0f} ns, tqdm {results['tqdm']:.0f} ns "
        f"(lines in {log_file})"
    )
    return results


def _digits() -> tuple[str, dict[str, object], engine.TaskData, dict]:
    from sklearn.datasets import load_digits  # noqa: PLC0415

    from tasks.types.image_classification.models import ARCHITECTURES  # noqa: PLC0415

    images, labels = load_digits(return_X_y=True)
    x = torch.tensor(images, dtype=torch.float32).reshape(-1, 1, 8, 8)
    x = (x / 16 - 0.3) / 0.37
    y = torch.tensor(labels)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[order], y[order]
    n_val = len(x) // 5
    config = {
        "in_channels": 1,
        "height": 8,
        "width": 8,
        "n_classes": 10,
        "channels": 32,
        "dropout": 0.2,
    }
    data = engine.TaskData(x[n_val:], y[n_val:], x[:n_val], y[:n_val])
    return "cnn", config, data, ARCHITECTURES


def _text() -> tuple[str, dict[str, object], engine.TaskData, dict]:
    from tasks.types.text_classification.models import ARCHITECTURES  # noqa: PLC0415

    g = torch.Generator().manual_seed(0)
    x, y = torch.randint(1, 256, (512, 64), generator=g), torch.randint(0, 4, (512,))
    config = {"max_len": 64, "n_classes": 4, "d_model": 64, "dropout": 0.1}
    data = engine.TaskData(x[:448], y[:448], x[448:], y[448:])
    return "transformer_encoder", config, data, ARCHITECTURES


def _pairs(
    name: str, a: Callable[[], object], b: Callable[[], object], pairs: int, what: str
) -> float:
    print(f"\n{name}: seconds per {what}")
    print(f"{'pair':>4} {'A':>8} {'B':>8} {'A/B':>6}")
    ratios = []
    for pair in range(pairs + 1):
        start = time.perf_counter()
        a()
        took_a = time.perf_counter() - start
        start = time.perf_counter()
        b()
        took_b = time.perf_counter() - start
        if pair == 0:
            continue  # warm-up
        ratios.append(took_a / took_b)
        print(f"{pair:>4} {took_a:>8.3f} {took_b:>8.3f} {ratios[-1]:>6.3f}")
    return statistics.median(ratios)


def _task(  # noqa: PLR0917 (one benchmark's settings)
    task: str,
    make: Callable[[], tuple],
    before: ModuleType,
    epochs: int,
    pairs: int,
    tmp: Path,
) -> list[tuple[str, float]]:
    arch, config, data, architectures = make()
    device = engine.pick_device("auto")
    data = data.to(device)
    cfg = engine.EngineConfig(
        epochs=epochs,
        batch_size=64,
        lr=3e-3,
        weight_decay=1e-4,
        patience=epochs,
        device=device.type,
    )
    steps = -(-len(data.x_train) // cfg.batch_size) * epochs
    print(f"\n{task}: {len(data.x_train)} train, {steps} steps per fit, device {device}")
    runs = iter(range(10_000))

    def fresh() -> torch.nn.Module:
        torch.manual_seed(0)
        return build_model(architectures, arch, config).to(device)

    def fit_with(module: ModuleType) -> None:
        module.fit(
            fresh(),
            data,
            F.cross_entropy,
            classification_metrics,
            cfg=cfg,
            checkpoint_path=tmp / task / str(next(runs)),
        )

    models = [fresh(), fresh()]
    opts = [torch.optim.AdamW(m.parameters(), cfg.lr) for m in models]

    def loop(i: int) -> None:  # 0: A, with a live Progress; 1: B, without
        bar = None
        if i == 0:
            bar = progress.Progress("train", steps, unit="steps", logger=engine.logger)
        torch.use_deterministic_algorithms(device.type == "cpu")  # as fit does
        for epoch in range(cfg.epochs):
            order = torch.Generator().manual_seed(epoch)
            engine.run_epoch(
                models[i],
                opts[i],
                data.x_train,
                data.y_train,
                batch_size=cfg.batch_size,
                generator=order,
                progress=bar,
            )
        torch.use_deterministic_algorithms(False)
        if bar is not None:
            bar.close()

    name = f"{task}, epoch loop"
    loop_ratio = _pairs(
        name, lambda: loop(0), lambda: loop(1), pairs, f"{epochs} epochs, A (progress) vs B (none)"
    )
    fit_ratio = _pairs(
        f"{task}, whole fit",
        lambda: fit_with(engine),
        lambda: fit_with(before),
        pairs,
        "fit, A (progress) vs B (before)",
    )
    return [(name, loop_ratio), (f"{task}, whole fit", fit_ratio)]


def main() -> int:
    pairs = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    print(
        f"torch threads {torch.get_num_threads()}, {pairs} pairs, {epochs} epochs, "
        f"before = {BEFORE}"
    )
    figures = []
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        log_file = tmp / "train.log"
        handler = logging.FileHandler(log_file)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        for name in ("kiln.train", "bench.progress"):
            logging.getLogger(name).addHandler(handler)
            logging.getLogger(name).setLevel(logging.INFO)
            logging.getLogger(name).propagate = False
        progress._on_terminal = lambda: False  # noqa: SLF001 (log mode, as under DVC/Prefect)
        _per_update_ns(log_file)
        before = _engine_before(tmp)
        for task, make in (("digits cnn", _digits), ("text transformer", _text)):
            figures += _task(task, make, before, epochs, pairs, tmp)
        lines = log_file.read_text().count(" progress ")
        print(f"\n{lines} progress lines logged in all (start and end of each run, every 10 s)")
    print()
    for task, ratio in figures:
        verdict = "holds" if ratio <= TARGET else "MISSED"
        print(f"{task}: time with progress / without: {ratio:.3f} (target <= {TARGET}): {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
