"""Share of a full run spent outside stage code: `python benchmarks/flow_overhead.py [--pairs 5]`.

A (the flow): `kiln run` on a fresh project (every stage runs, through Prefect and DVC), against
a Prefect server that is already up, as it is for a scheduled run.
B (plain): every stage's `python -m tasks.<stage>` command, in dvc.yaml's order, run one after
the other on another fresh project, with the demo site already serving.
orchestration share = (A wall - B wall) / A wall, where B is the sum of stage compute. Runs
alternate A, B, A, B ... and the median pair is reported (PERFORMANCE.md). The demo is the tiny
one the end-to-end test uses unless --full is given.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crawlers.demo_site import start_demo_site  # noqa: E402
from flows.prefect_server import start_server  # noqa: E402
from tasks.params import load_params  # noqa: E402
from tests.project import REPO, free_port, make_project, run, tiny_demo_overrides  # noqa: E402

STAGES = tuple(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"])  # in run order
TARGET = 0.10  # PERFORMANCE.md: orchestration share of a full run ≤ 10%


def _overrides(full: bool, port: int) -> dict:
    if full:
        return {"demo_site": {"port": port}, "crawl": {"start_urls": [f"http://127.0.0.1:{port}/"]}}
    return tiny_demo_overrides(port)


def time_flow(root: Path, api_url: str, full: bool) -> float:
    project = make_project(root, _overrides(full, free_port()))
    start = time.perf_counter()
    run([sys.executable, "-m", "flows.cli", "run", "--project", str(project)], project,
        extra_env={"PREFECT_API_URL": api_url})
    return time.perf_counter() - start


def time_plain(root: Path, full: bool) -> float:
    project = make_project(root, _overrides(full, free_port()))
    site = start_demo_site(load_params(project / "params.yaml").demo_site)
    try:
        start = time.perf_counter()
        for stage in STAGES:
            run([sys.executable, "-m", f"tasks.{stage}"], project)
        return time.perf_counter() - start
    finally:
        site.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--full", action="store_true", help="the default 1797-item demo")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp) / "prefect", free_port())
        try:
            pairs = []
            for i in range(args.pairs):
                flow_s = time_flow(Path(tempfile.mkdtemp(dir=tmp)), server.api_url, args.full)
                plain_s = time_plain(Path(tempfile.mkdtemp(dir=tmp)), args.full)
                pairs.append((flow_s, plain_s))
                print(f"pair {i + 1}: flow {flow_s:6.1f} s  plain stages {plain_s:6.1f} s  "
                      f"share {(flow_s - plain_s) / flow_s:6.1%}", flush=True)
        finally:
            server.stop()
    shares = [(a - b) / a for a, b in pairs]
    flow_med = statistics.median(a for a, _ in pairs)
    plain_med = statistics.median(b for _, b in pairs)
    share = statistics.median(shares)
    print(f"\n| figure | value |\n|---|---|\n| flow wall (median) | {flow_med:.1f} s |\n"
          f"| plain stages wall (median) | {plain_med:.1f} s |\n"
          f"| orchestration share (median of {len(pairs)} pairs) | {share:.1%} |")
    print(f"orchestration share {share:.1%} target <= {TARGET:.0%}: "
          f"{'holds' if share <= TARGET else 'MISSED'}")


if __name__ == "__main__":
    main()
