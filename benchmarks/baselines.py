"""Model vs best baseline for every example: `python -m benchmarks.baselines [options]`.

For each params file (params.yaml, the digits demo, and examples/*.params.yaml) the stages crawl,
validate, clean, train and evaluate run in a fresh directory against the demo site served by this
process on a free port, with the file's own params (the default model of each example), and the
table prints, per example, the model's `promote.metric` on the test split, the best of the
baselines the evaluate stage reported on the same split (reports/metrics.json `baselines`,
tasks/core/baselines.py), the gain and whether the model clears promote's baseline gate
(`promote.min_margin_over_baseline`, tasks/promote.py `baseline_gate`). Every baseline follows.

    --reports DIR ...   read finished runs instead (each DIR holds params.yaml and
                        reports/metrics.json, e.g. a project after `kiln run`); nothing runs
    --only NAME ...     only these examples (params, co2, jokes, jokes_generation, jokes_minilm)
    --with-minilm       include jokes_minilm: fine-tuning the pretrained MiniLM takes ~20 min on
                        a 2-core CPU, so it is left out by default
    --epochs N          train N epochs instead of the file's (a smoke test of this script: the
                        figures are then not the default model's)
    --keep DIR          run in DIR/<example> and keep the projects (default: a temporary dir)
    --json FILE         also write the rows as JSON

Exit status 0 when every default model printed beats its best baseline by the margin, else 1.
Needs the demo site's data (scikit-learn's digits, the jokes and CO2 sections); no network.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
STAGES = ("crawl", "validate", "clean", "train", "evaluate")
SLOW = {"jokes_minilm"}


def examples() -> dict[str, Path]:
    found = {"params": REPO / "params.yaml"}
    for path in sorted((REPO / "examples").glob("*.params.yaml")):
        found[path.name.removesuffix(".params.yaml")] = path
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _on_port(raw: dict[str, Any], port: int) -> dict[str, Any]:
    """The params with the demo site and the crawl's start URLs on `port`."""
    old = raw["demo_site"].get("port", 8765)
    raw["demo_site"]["port"] = port
    raw["crawl"]["start_urls"] = [
        re.sub(rf":{old}\b", f":{port}", url) for url in raw["crawl"]["start_urls"]
    ]
    return raw


def run_example(name: str, params_file: Path, work: Path, epochs: int | None) -> Path:
    """The stages of `params_file` in work/name; the project directory."""
    from crawlers.demo_site import start_demo_site  # noqa: PLC0415
    from tasks.core.params import parse_params  # noqa: PLC0415

    project = work / name
    shutil.rmtree(project, ignore_errors=True)
    project.mkdir(parents=True)
    shutil.copytree(REPO / "labels", project / "labels")
    raw = _on_port(yaml.safe_load(params_file.read_text(encoding="utf-8")), _free_port())
    if epochs is not None:
        raw["train"]["epochs"] = epochs
    (project / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1"}
    site = start_demo_site(parse_params(raw).demo_site)
    try:
        for stage in STAGES:
            started = time.monotonic()
            proc = subprocess.run(
                [sys.executable, "-m", f"tasks.{stage}"],
                cwd=project,
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            (project / f"{stage}.log").write_text(proc.stdout + proc.stderr, encoding="utf-8")
            print(f"  {name}: {stage} {time.monotonic() - started:.0f} s", file=sys.stderr)
            if proc.returncode != 0 or stage == "crawl" and not (project / "data/raw").exists():
                tail = (proc.stdout + proc.stderr)[-3000:]
                raise RuntimeError(f"{name}: {stage} exited {proc.returncode}\n{tail}")
    finally:
        site.stop()
    return project


def row(name: str, project: Path) -> dict[str, Any]:
    """Model vs best baseline on promote.metric, from project/params.yaml and its metrics.json."""
    from tasks.core.baselines import best_baseline  # noqa: PLC0415
    from tasks.core.params import parse_params  # noqa: PLC0415
    from tasks.promote import baseline_gate, baseline_headlines  # noqa: PLC0415

    params = parse_params(yaml.safe_load((project / "params.yaml").read_text(encoding="utf-8")))
    metrics = json.loads((project / "reports/metrics.json").read_text(encoding="utf-8"))
    task, metric = params.project.task, params.promote.metric
    baselines = baseline_headlines(metrics, task)
    gate = params.promote.model_copy(update={"baseline_gate": True})
    passes, reason = baseline_gate(gate, metrics, baselines)
    best = best_baseline(baselines, metric)
    return {
        "example": name,
        "task": task,
        "model": params.train.model,
        "metric": metric,
        "value": metrics[metric],
        "best_baseline": best and best[0],
        "baseline_value": best and best[1],
        "margin": params.promote.min_margin_over_baseline,
        "beats_baseline": passes,
        "reason": reason,
        "n_test": metrics["n_test"],
        "baselines": {
            n: {k: v for k, v in b.items() if k != "description"}
            for n, b in (metrics.get("baselines") or {}).items()
        },
    }


def table(rows: list[dict[str, Any]]) -> str:
    head = "| example | task | model | metric | model value | best baseline | value | beats |"
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        base = "-" if r["baseline_value"] is None else f"{r['baseline_value']:.4f}"
        lines.append(
            f"| {r['example']} | {r['task']} | {r['model']} | {r['metric']} | {r['value']:.4f} | "
            f"{r['best_baseline'] or '-'} | {base} | {'yes' if r['beats_baseline'] else 'NO'} |"
        )
    lines.append("")
    for r in rows:
        lines.append(f"{r['example']} (n_test {r['n_test']}): {r['reason']}")
        for name, b in r["baselines"].items():
            figures = ", ".join(
                f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in b.items()
            )
            lines.append(f"    {name}: {figures}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", nargs="+", type=Path, help="finished projects to read")
    parser.add_argument("--only", nargs="+", help="example names")
    parser.add_argument("--with-minilm", action="store_true", help="include jokes_minilm")
    parser.add_argument("--epochs", type=int, help="override train.epochs (smoke test)")
    parser.add_argument("--keep", type=Path, help="run the projects here and keep them")
    parser.add_argument("--json", type=Path, help="write the rows here too")
    args = parser.parse_args(argv)

    if args.reports:
        rows = [row(path.resolve().name, path) for path in args.reports]
    else:
        chosen = examples()
        if args.only:
            unknown = sorted(set(args.only) - set(chosen))
            if unknown:
                parser.error(f"no example {unknown}; known: {sorted(chosen)}")
            chosen = {k: v for k, v in chosen.items() if k in args.only}
        elif not args.with_minilm:
            for name in SLOW & set(chosen):
                print(f"{name}: skipped (~20 min on 2 CPU cores; --with-minilm)", file=sys.stderr)
                del chosen[name]
        work = args.keep or Path(tempfile.mkdtemp(prefix="kiln-baselines-"))
        rows = []
        try:
            for name, path in chosen.items():
                started = time.monotonic()
                rows.append(row(name, run_example(name, path, work, args.epochs)))
                print(f"  {name}: {time.monotonic() - started:.0f} s in all", file=sys.stderr)
        finally:
            if args.keep is None:
                shutil.rmtree(work, ignore_errors=True)
        if args.epochs is not None:
            print(f"train.epochs = {args.epochs} for every example: not the default models")
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return 0 if all(r["beats_baseline"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
