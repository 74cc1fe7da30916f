"""Model vs best baseline for every example: `python -m benchmarks.baselines [options]`.

For each params file (params.yaml, the digits demo, examples/*.params.yaml, and the test sites'
examples/sites/*.params.yaml) the stages crawl, validate, clean, train and evaluate run in a fresh
directory against the site served by this process on a free port (the demo site; for a test site
its own: `crawlers.text_sites`, `crawlers.series_sites`, `crawlers.image_sites`), with the file's
own params (the default model of each example), and the table prints, per example, the model's
`promote.metric` on the test split, the best of the baselines the evaluate stage reported on the
same split (reports/metrics.json `baselines`, tasks/core/baselines.py), the gain and whether the
model clears promote's baseline gate (`promote.min_margin_over_baseline`, tasks/promote.py
`baseline_gate`). Every baseline follows.

    --reports DIR ...   read finished runs instead (each DIR holds params.yaml and
                        reports/metrics.json, e.g. a project after `kiln run`); nothing runs
    --only NAME ...     only these examples (params, co2, jokes, jokes_generation, jokes_minilm,
                        jokes_transformer; folder, package, table, read from files
                        examples/sources/make_data.py writes into the project; and the test
                        sites: docs, apis, elnino, sunspots, gdp, grey28, rgb32, rgb64x48, mixed,
                        photo28); `examples` or `sites` stand for either group. `unlabelled` is
                        left out: nothing to compare until a person labels its images
    --skip NAME ...     all but these
    --with-minilm       include jokes_minilm: fine-tuning the pretrained MiniLM takes ~20 min on
                        a 2-core CPU, so it is left out by default
    --epochs N          train N epochs instead of the file's (a smoke test of this script: the
                        figures are then not the default model's)
    --keep DIR          run in DIR/<example> and keep the projects (default: a temporary dir)
    --json FILE         also write the rows as JSON

A stage that fails makes its example's row FAILED with the stage and the error's last line; the
others still run. Exit status 0 when every default model printed beats its best baseline by the
margin, else 1. An example whose file picks another model than its task type's default on
purpose (`jokes_transformer`, `jokes_minilm`: to show where that model stands) is marked
"(chosen)" and printed, but not counted. Needs the sites' data (scikit-learn's digits, pyjokes,
statsmodels, the sources of the standard library and of the installed libraries); no network.
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
SOURCE_DIGITS_PER_CLASS = 150  # of scikit-learn's ~180 a class; 200 others stay unlabelled
# Examples with nothing to compare until a person acts: left out, with the reason.
NOT_MEASURED = {
    "unlabelled": "its images have no labels until `kiln label import` gives them some",
}


def examples() -> dict[str, Path]:
    """Example name -> params file: params.yaml, examples/*, then the test sites."""
    found = {"params": REPO / "params.yaml"}
    for folder in ("examples", "examples/sites"):
        for path in sorted((REPO / folder).glob("*.params.yaml")):
            found[path.name.removesuffix(".params.yaml")] = path
    return found


def is_site(path: Path) -> bool:
    return path.parent.name == "sites"


def start_site(name: str, params_file: Path, raw: dict[str, Any], port: int) -> Any:
    """The site `params_file` crawls, served on `port`: a test site by its name, else the demo."""
    from crawlers import image_sites, series_sites, text_sites  # noqa: PLC0415
    from crawlers.demo_site import start_demo_site  # noqa: PLC0415
    from tasks.core.params import parse_params  # noqa: PLC0415

    demo = parse_params(raw).demo_site
    if not is_site(params_file):
        return start_demo_site(demo, port)
    if name in text_sites.SITES:
        return text_sites.start_text_site(name, demo.host, port, demo.seed)
    if name in series_sites.SITES:
        return series_sites.start_series_site(name, demo.host, port, demo.seed)
    if name in image_sites.VARIANTS:
        return image_sites.start_image_site(demo, name, port)
    raise ValueError(f"{params_file}: no test site named {name!r}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _on_port(raw: dict[str, Any], port: int) -> dict[str, Any]:
    """The params with the crawl's start URLs (and the demo site, if it serves them) on `port`."""
    old = re.search(r":(\d+)/", raw["crawl"]["start_urls"][0])
    old = int(old.group(1)) if old else raw.get("demo_site", {}).get("port", 8765)
    raw.setdefault("demo_site", {})["port"] = port
    raw["crawl"]["start_urls"] = [
        re.sub(rf":{old}\b", f":{port}", url) for url in raw["crawl"]["start_urls"]
    ]
    return raw


class StageFailed(RuntimeError):
    def __init__(self, stage: str, code: int, log: str) -> None:
        lines = [ln for ln in log.splitlines() if ln.strip()]
        errors = [ln for ln in lines if " ERROR " in ln or "Error" in ln]
        self.stage, self.last = stage, (errors or lines or ["(no output)"])[-1].strip()
        super().__init__(f"{stage} exited {code}: {self.last}")


def failed_row(name: str, params_file: Path, exc: StageFailed) -> dict[str, Any]:
    raw = yaml.safe_load(params_file.read_text(encoding="utf-8"))
    return {"example": name, "task": raw["project"]["task"], "model": "-", "failed": str(exc)}


def run_example(name: str, params_file: Path, work: Path, epochs: int | None) -> Path:
    """The stages of `params_file` in work/name; the project directory."""
    project = work / name
    shutil.rmtree(project, ignore_errors=True)
    project.mkdir(parents=True)
    shutil.copytree(REPO / "labels", project / "labels")
    port = _free_port()
    raw = yaml.safe_load(params_file.read_text(encoding="utf-8"))
    # `crawl: null`: the crawl stage reads the file's `source` (files the project writes)
    sourced = not raw.get("crawl")
    raw = raw if sourced else _on_port(raw, port)
    if epochs is not None:
        raw.setdefault("train", {})["epochs"] = epochs
    (project / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1"}
    if sourced:
        # 150 digits a class, not make_data's 30: at 30 the folder example's test split holds 52
        # images, where one image is 0.019 of macro-F1, more than promote's 0.01 margin
        subprocess.run([sys.executable, str(REPO / "examples/sources/make_data.py"), str(project),
                        "--per-class", str(SOURCE_DIGITS_PER_CLASS)],
                       env=env, check=True, capture_output=True)
    site = None if sourced else start_site(name, params_file, raw, port)
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
                raise StageFailed(stage, proc.returncode, proc.stdout + proc.stderr)
    finally:
        if site is not None:
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
        "warning": clean_warning(project),
        "task": task,
        "model": params.train.model,
        # the task type's default (what a params file silent about train.model trains), or a
        # model the file chose on purpose (jokes_transformer, jokes_minilm)
        "default_model": params.train.model == type(params.train).model_fields["model"].default,
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


def clean_warning(project: Path) -> str | None:
    """A warning when clean rejected most of what was crawled: the figures are then not the
    site's (a series whose dates are off the inferred grid, say)."""
    path = project / "reports/clean.json"
    report = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    n_in, n_out = report.get("n_in"), report.get("n_rejected")
    if not n_in or not n_out or n_out / n_in <= 0.5:
        return None
    ops = ", ".join(
        f"{op['op']} {op['rows']}" + (f" ({op['frequency']})" if "frequency" in op else "")
        for op in report.get("operations", [])
        if op.get("rows")
    )
    return f"clean rejected {n_out} of {n_in} rows: {ops}"


def table(rows: list[dict[str, Any]]) -> str:
    head = "| example | task | model | metric | model value | best baseline | value | beats |"
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "failed" in r:
            lines.append(f"| {r['example']} | {r['task']} | - | - | FAILED | - | - | NO |")
            continue
        base = "-" if r["baseline_value"] is None else f"{r['baseline_value']:.4f}"
        model = r["model"] if r.get("default_model", True) else f"{r['model']} (chosen)"
        lines.append(
            f"| {r['example']} | {r['task']} | {model} | {r['metric']} | {r['value']:.4f} | "
            f"{r['best_baseline'] or '-'} | {base} | {'yes' if r['beats_baseline'] else 'NO'}"
            f"{' (see warning)' if r.get('warning') else ''} |"
        )
    lines.append("")
    for r in rows:
        if "failed" in r:
            lines.append(f"{r['example']}: FAILED, {r['failed']}")
            continue
        lines.append(f"{r['example']} (n_test {r['n_test']}): {r['reason']}")
        if r.get("warning"):
            lines.append(f"    WARNING: {r['warning']}")
        for name, b in r["baselines"].items():
            figures = ", ".join(
                f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in b.items()
            )
            lines.append(f"    {name}: {figures}")
    return "\n".join(lines)


def select(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, Path]:
    """The examples --only, --skip and --with-minilm ask for, less those NOT_MEASURED."""
    chosen = examples()
    groups = {
        "examples": {k for k, v in chosen.items() if not is_site(v)},
        "sites": {k for k, v in chosen.items() if is_site(v)},
    }
    wanted = {n for name in args.only or [] for n in groups.get(name, {name})}
    unknown = sorted((wanted | set(args.skip)) - set(chosen))
    if unknown:
        parser.error(f"no example {unknown}; known: {sorted(chosen)}")
    if args.only:
        chosen = {k: v for k, v in chosen.items() if k in wanted}
    chosen = {k: v for k, v in chosen.items() if k not in args.skip}
    for name in NOT_MEASURED.keys() & chosen.keys():
        print(f"{name}: not measured ({NOT_MEASURED[name]})", file=sys.stderr)
        del chosen[name]
    if not args.only and not args.with_minilm:
        for name in SLOW & set(chosen):
            print(f"{name}: skipped (~20 min on 2 CPU cores; --with-minilm)", file=sys.stderr)
            del chosen[name]
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", nargs="+", type=Path, help="finished projects to read")
    parser.add_argument("--only", nargs="+", help="example names")
    parser.add_argument("--skip", nargs="+", default=[], help="example names to leave out")
    parser.add_argument("--with-minilm", action="store_true", help="include jokes_minilm")
    parser.add_argument("--epochs", type=int, help="override train.epochs (smoke test)")
    parser.add_argument("--keep", type=Path, help="run the projects here and keep them")
    parser.add_argument("--json", type=Path, help="write the rows here too")
    args = parser.parse_args(argv)

    if args.reports:
        rows = [row(path.resolve().name, path) for path in args.reports]
    else:
        chosen = select(args, parser)
        work = args.keep or Path(tempfile.mkdtemp(prefix="kiln-baselines-"))
        rows = []
        try:
            for name, path in chosen.items():
                started = time.monotonic()
                try:
                    rows.append(row(name, run_example(name, path, work, args.epochs)))
                except StageFailed as exc:
                    rows.append(failed_row(name, path, exc))
                rows[-1]["wall_s"] = round(time.monotonic() - started)
                print(f"  {name}: {rows[-1]['wall_s']} s in all", file=sys.stderr)
        finally:
            if args.keep is None:
                shutil.rmtree(work, ignore_errors=True)
        if args.epochs is not None:
            print(f"train.epochs = {args.epochs} for every example: not the default models")
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    # The target is the default models'; a model a file chose on purpose is printed, not counted.
    counted = [r for r in rows if "failed" in r or r.get("default_model", True)]
    return 0 if all(r.get("beats_baseline") for r in counted) else 1


if __name__ == "__main__":
    raise SystemExit(main())
