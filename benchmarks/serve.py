"""Serving overhead: `python benchmarks/serve.py [--pairs 5] [--requests 200] [--concurrency 2]`.

A (HTTP): `POST /predict` against a real `python -m serve` (uvicorn, ONNX Runtime backend) on a
free loopback port, from `--concurrency` client threads, each with its own keep-alive connection.
B (direct): the same threads calling `InferenceSession.run` on the same model (same thread
settings as the server: 1 intra-op thread) with the same uint8 batch, in this process.
Each round sends `--requests` requests (or stops at `--max-seconds`), single (1 image) and batched
(`--batch` images, raw pixel arrays), alternating A, B, A, B ...; the median of the pairs is
reported. The model is the default CNN (train.channels 32, 8x8 digits) with
random weights: the compute is the same as a trained one's. The issue sets no numeric target, so
each figure prints its ratio with "target: report".
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.core import registry  # noqa: E402
from tasks.core.io import write_bytes, write_json  # noqa: E402
from tasks.core.models import build_model, save_model  # noqa: E402
from tasks.core.params import ExportParams, TrainParams  # noqa: E402
from tasks.types.image_classification.export import export_model  # noqa: E402
from tasks.types.image_classification.models import ARCHITECTURES  # noqa: E402
from tests.project import REPO, free_port  # noqa: E402

# The default model of params.yaml: train.channels wide, on 8x8 digits.
CONFIG = {"in_channels": 1, "height": 8, "width": 8, "n_classes": 10,
          "channels": TrainParams().channels, "dropout": 0.0}


def model_files(root: Path) -> dict[str, Path]:
    """models/ + export/ files of a random-weight CNN, as the train and export stages write."""
    import torch  # noqa: PLC0415

    torch.manual_seed(0)
    model = build_model(ARCHITECTURES, "cnn", CONFIG)
    card = save_model(model, root / "models", {
        "architecture": "cnn", "config": CONFIG, "classes": [str(i) for i in range(10)],
        "preprocessing": {"scale": 1 / 255, "mean": 0.3, "std": 0.4}})
    pixels = np.random.default_rng(0).integers(0, 256, (16, 8, 8), dtype=np.uint8)
    blob, info = export_model(model, card, pixels, ExportParams(parity_batch=16))
    write_bytes(root / "export" / "model.onnx", blob)
    write_json(root / "export" / "onnx.json", info)
    return {"card.json": root / "models" / "card.json",
            "model.safetensors": root / "models" / "model.safetensors",
            "model.onnx": root / "export" / "model.onnx",
            "onnx.json": root / "export" / "onnx.json"}


def closed_loop(call: Callable[[], None], n: int, threads: int, max_s: float) -> dict:
    """`threads` workers calling `call` until n calls or max_s; requests/s and latency (ms)."""
    latencies: list[float] = []
    lock, count = threading.Lock(), [0]
    deadline = time.perf_counter() + max_s

    def work() -> None:
        while time.perf_counter() < deadline:
            with lock:
                if count[0] >= n:
                    return
                count[0] += 1
            t0 = time.perf_counter()
            call()
            with lock:
                latencies.append(time.perf_counter() - t0)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    wall = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {"rps": len(ms) / wall, "p50": float(np.percentile(ms, 50)),
            "p99": float(np.percentile(ms, 99)), "n": len(ms)}


def _http_call(url: str, body: dict, clients: threading.local) -> Callable[[], None]:
    def call() -> None:
        if not hasattr(clients, "c"):
            clients.c = httpx.Client(timeout=30)
        r = clients.c.post(url, json=body)
        if r.status_code != 200:
            raise RuntimeError(f"/predict answered {r.status_code}: {r.text[:200]}")
    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--requests", type=int, default=200, help="per round (batched: /4)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--max-seconds", type=float, default=10.0, help="per round")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kiln-serve-bench-"))
    files = model_files(work / "src")
    registry.add_version(work / "registry", files, {"task": "image_classification"},
                         reason="benchmark")
    session_options = ort.SessionOptions()
    session_options.intra_op_num_threads, session_options.inter_op_num_threads = 1, 1
    session = ort.InferenceSession(files["model.onnx"].read_bytes(), session_options,
                                   providers=["CPUExecutionProvider"])
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "serve", "--project", str(work), "--port",
                               str(port)], cwd=REPO, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/predict"
    rng = np.random.default_rng(0)
    try:
        for _ in range(300):
            try:
                httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        rows = []
        for label, size, n in (("single", 1, args.requests),
                               (f"batch of {args.batch}", args.batch, max(args.requests // 4, 5))):
            pixels = rng.integers(0, 256, (size, CONFIG["height"], CONFIG["width"]), np.uint8)
            body = {"instances": [{"pixels": p.tolist()} for p in pixels]}
            http = _http_call(url, body, threading.local())
            direct = lambda pixels=pixels: session.run(["logits"], {"pixels": pixels})  # noqa: E731
            closed_loop(http, 20, args.concurrency, args.max_seconds)  # warm-up both
            closed_loop(direct, 20, args.concurrency, args.max_seconds)
            pairs = [(closed_loop(http, n, args.concurrency, args.max_seconds),
                      closed_loop(direct, n, args.concurrency, args.max_seconds))
                     for _ in range(args.pairs)]
            rows.append((label, size, pairs))
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"concurrency {args.concurrency}, {args.pairs} pairs, medians; latency in ms")
    print(f"{'case':14} {'HTTP req/s':>10} {'p50':>7} {'p99':>7} {'ORT calls/s':>11} "
          f"{'p50':>7} {'p99':>7}")
    figures = []
    for label, size, pairs in rows:
        med = {f"{side}_{k}": statistics.median(p[i][k] for p in pairs)
               for i, side in enumerate(("http", "ort")) for k in ("rps", "p50", "p99")}
        print(f"{label:14} {med['http_rps']:10.1f} {med['http_p50']:7.2f} {med['http_p99']:7.2f} "
              f"{med['ort_rps']:11.1f} {med['ort_p50']:7.3f} {med['ort_p99']:7.3f}")
        ratio = statistics.median(p[0]["rps"] / p[1]["rps"] for p in pairs)
        figures.append(f"{label}: /predict throughput {ratio:.3f}x of direct ONNX Runtime "
                       f"({med['http_rps'] * size:.0f} vs {med['ort_rps'] * size:.0f} images/s),"
                       f" p50 {med['http_p50'] / med['ort_p50']:.1f}x, p99 "
                       f"{med['http_p99'] / med['ort_p99']:.1f}x its latency "
                       "(target: none set by the issue; reported)")
    print()
    for line in figures:
        print(line)


if __name__ == "__main__":
    main()
