"""Stage times at 5,000, 20,000 and 50,000 items: `python -m benchmarks.scale [options]`.

For each kind of site (`crawlers.scale_sites`: 32x32 RGB digit images; texts labelled by the
Python package whose documentation they come from) and each size, the stages crawl, validate,
clean, train, evaluate and export run one after another in a fresh project directory, each as
its own process (`python -m tasks.<stage>`, as DVC runs it), against the site served by this
process on a free loopback port. The table gives each stage's wall time and peak memory (RSS of
the stage's process), and per stage the growth from the smallest to the largest size against
n log n: a stage passes when

    t(n_max) / t(n_min)  <=  (n_max log n_max) / (n_min log n_min)

(12.7 from 5,000 to 50,000 items). A stage's time includes its imports (torch, pandas, GX: a few
seconds at any size), which only flatters the larger sizes' ratio a little: at 5,000 items every
stage runs for many times its import time.

Params: images come from params.yaml (the digits demo) with clean.image set to 32x32 RGB; texts
from examples/jokes.params.yaml with the packages as classes and `train.model: linear` (the bag of
tokens: fine-tuning MiniLM on 35,000 texts takes hours on a CPU, and the from-scratch encoder
took 546 s for 2 epochs of 3,500 texts on this busy 2-core machine, ~90 min at 50,000).
Training runs a fixed `--epochs` (default 2, early stopping off) so that every size does the same
work per item; the crawl limits are raised to fit the site.

    --kinds images texts   which sites (default both)
    --sizes 5000 20000 50000
    --epochs N             training epochs at every size (default 2)
    --keep DIR             run in DIR/<kind>-<n> and keep the projects (default: a temporary dir)
    --json FILE            also write the measurements as JSON

Exit status 0 when every stage grows no faster than n log n, else 1. No network; the sites are
generated from scikit-learn's digits and the installed packages' docstrings.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
STAGES = ("crawl", "validate", "clean", "train", "evaluate", "export")
KINDS = ("images", "texts")


def project_params(kind: str, n: int, url: str, epochs: int) -> dict[str, Any]:
    """The params of a `kind` project of n items crawling `url` (see the module docstring)."""
    if kind == "images":
        raw = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
        raw["crawl"]["start_urls"] = [f"{url}/"]
        raw["validate"] |= {"image_width": 32, "image_height": 32}
        raw["clean"]["image"] |= {"height": 32, "width": 32, "mode": "RGB"}
    else:
        from crawlers.scale_sites import installed_packages  # noqa: PLC0415

        raw = yaml.safe_load((REPO / "examples/jokes.params.yaml").read_text(encoding="utf-8"))
        raw["crawl"]["start_urls"] = [f"{url}/jokes/"]
        raw["labels"]["classes"] = sorted(installed_packages())
        raw["train"]["model"] = "linear"
    raw["demo_site"]["sections"] = []
    # every page and image of the site: 2 per item plus the list pages
    raw["crawl"] |= {"max_pages": 3 * n + 1000, "max_files": 2 * n + 1000}
    raw["train"] |= {"epochs": epochs, "patience": epochs + 1}
    raw["evaluate"]["min_accuracy"] = 0.0  # timing, not quality: 2 epochs at 5,000 items
    raw["promote"]["floors"] = {}
    return raw


def run_stages(kind: str, n: int, work: Path, epochs: int) -> dict[str, dict[str, float]]:
    """{stage: {"s": wall seconds, "rss_mib": peak RSS}} of every stage on a fresh project."""
    from crawlers.scale_sites import start_scale_site  # noqa: PLC0415

    project = work / f"{kind}-{n}"
    shutil.rmtree(project, ignore_errors=True)
    project.mkdir(parents=True)
    shutil.copytree(REPO / "labels", project / "labels")
    started = time.monotonic()
    site = start_scale_site(kind, n)
    print(f"{kind} {n}: site built in {time.monotonic() - started:.0f} s", file=sys.stderr)
    raw = project_params(kind, n, site.url.rstrip("/"), epochs)
    (project / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1"}
    times = {}
    try:
        for stage in STAGES:
            log = project / f"{stage}.log"
            started = time.monotonic()
            with log.open("w", encoding="utf-8") as out:
                proc = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
                    [sys.executable, "-m", f"tasks.{stage}"],
                    cwd=project,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
                # wait4 gives this child's own peak RSS (KiB on Linux), not all children's
                _, status, usage = os.wait4(proc.pid, 0)
                proc.returncode = os.waitstatus_to_exitcode(status)
            seconds = time.monotonic() - started
            times[stage] = {"s": round(seconds, 2), "rss_mib": round(usage.ru_maxrss / 1024)}
            print(f"{kind} {n}: {stage} {seconds:.1f} s", file=sys.stderr)
            if proc.returncode != 0:
                tail = log.read_text(encoding="utf-8")[-3000:]
                raise RuntimeError(f"{kind} {n}: {stage} exited {proc.returncode}\n{tail}")
    finally:
        site.stop()
    times["items"] = _counts(project)
    return times


def _counts(project: Path) -> dict[str, int]:
    """Rows crawled and rows clean kept (reports/crawl.json, reports/clean.json)."""
    counts = {}
    for name, key in (("crawl", "items"), ("clean", "n_out")):
        path = project / "reports" / f"{name}.json"
        if path.exists():
            value = json.loads(path.read_text(encoding="utf-8")).get(key)
            if isinstance(value, int):
                counts[f"{name}_{key}"] = value
    return counts


def n_log_n_ratio(small: int, large: int) -> float:
    return large * math.log(large) / (small * math.log(small))


def growth(results: dict[int, dict[str, Any]]) -> dict[str, tuple[float, float, bool]]:
    """{stage: (time ratio largest/smallest size, n log n ratio, holds)}."""
    small, large = min(results), max(results)
    bound = n_log_n_ratio(small, large)
    out = {}
    for stage in STAGES:
        ratio = results[large][stage]["s"] / results[small][stage]["s"]
        out[stage] = (ratio, bound, ratio <= bound)
    return out


def table(kind: str, results: dict[int, dict[str, Any]]) -> str:
    sizes = sorted(results)
    head = f"| {kind} stage | " + " | ".join(f"{n:,} items" for n in sizes)
    head += " | growth | n log n | holds |" if len(sizes) > 1 else " |"
    lines = [head, "|---" * (len(sizes) + (4 if len(sizes) > 1 else 1)) + "|"]
    grown = growth(results) if len(sizes) > 1 else {}
    for stage in STAGES:
        cells = [
            f"{results[n][stage]['s']:.1f} s ({results[n][stage]['rss_mib']} MiB)" for n in sizes
        ]
        line = f"| {stage} | " + " | ".join(cells)
        if stage in grown:
            ratio, bound, holds = grown[stage]
            line += f" | {ratio:.2f}x | {bound:.2f}x | {'yes' if holds else 'NO'} |"
        else:
            line += " |"
        lines.append(line)
    total = [sum(results[n][s]["s"] for s in STAGES) for n in sizes]
    lines.append("| all stages | " + " | ".join(f"{t:.0f} s" for t in total) + " |")
    counts = [", ".join(f"{k} {v}" for k, v in results[n]["items"].items()) for n in sizes]
    lines.append("| rows | " + " | ".join(counts) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--sizes", nargs="+", type=int, default=[5000, 20000, 50000])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="run the projects here and keep them")
    parser.add_argument("--json", type=Path, help="write the measurements here too")
    args = parser.parse_args(argv)

    work = args.keep or Path(tempfile.mkdtemp(prefix="kiln-scale-"))
    measured: dict[str, dict[int, dict[str, Any]]] = {}
    try:
        for kind in args.kinds:
            measured[kind] = {}
            for n in sorted(args.sizes):
                measured[kind][n] = run_stages(kind, n, work, args.epochs)
                if args.keep is None:  # the projects of 50,000 items hold ~0.5 GB each
                    shutil.rmtree(work / f"{kind}-{n}", ignore_errors=True)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    for kind, results in measured.items():
        print(table(kind, results))
        print()
    if args.json:
        args.json.write_text(json.dumps(measured, indent=2), encoding="utf-8")
    holds = all(
        ok
        for results in measured.values()
        if len(results) > 1
        for *_, ok in growth(results).values()
    )
    return 0 if holds else 1


if __name__ == "__main__":
    raise SystemExit(main())
