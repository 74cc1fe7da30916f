"""Kill `kiln run` anywhere, many times: `python -m tests.e2e.kill_anywhere [--runs 30] [--seed 0]`.

One project on a tiny demo site and a real Prefect server. After a first complete run, each round
changes `train.seed` (so every stage after the crawl has work to do), starts `kiln run`, kills it
with SIGKILL after a random delay (the process alone, or its whole process group), and checks:

* no process of the run is left once the stage guard's grace period is over (`survivors`);
* registry.json reads, its champion exists and every file of it matches its recorded sha256;
  dvc.lock reads and holds exactly the stages that had committed (`registry`, `dvc_lock`);
* the next `kiln run` completes, `dvc status` is then clean, and that run's crawl was whole: not
  partial and as many items as the first run's (the site never changes), so the champion was not
  trained on part of the site (`rerun`, `dvc_status`, `partial_crawl`, `incomplete_crawl`).

It prints the count of kills per stage and of each violation; exit status 1 if any. The suite
runs one round (tests/e2e/test_killed_run.py); the issue's figure is 30 rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml

from flows.prefect_server import start_server
from flows.stage_guard import GRACE_S
from tasks.core import registry
from tests.project import (
    env,
    free_port,
    make_project,
    merge_params,
    run,
    tiny_demo_overrides,
    write_params,
)

EXTRA = {"promote": {"floors": {"accuracy": 0.3, "macro_f1": 0.0}, "baseline_gate": False},
         "train": {"epochs": 8, "patience": 8}}  # fmt: skip
RUNNING = re.compile(r"(\w+) is (?:stale .*; running it|frozen)")
COMMITTED = re.compile(r"(\w+): committed to dvc.lock")


def processes_in(project: Path) -> list[str]:
    """'pid cmdline' of every live process whose working directory is the project."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if Path(os.readlink(proc / "cwd")) == project:
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
                found.append(f"{proc.name} {cmd}")
        except OSError:
            continue
    return found


def kiln_run(project: Path, api: str, log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "flows.cli", "run", "--project", str(project)], cwd=project,
            env={**env(), "PREFECT_API_URL": api}, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)  # fmt: skip


def registry_intact(project: Path) -> str | None:
    """Why the registry is not one complete version, or None."""
    root = project / registry.REGISTRY_DIR
    try:
        current = registry.champion(root)
        if current is None:
            return "no champion"
        for name in current[1]["files"]:
            registry.verified_bytes(root, current[0], name)
    except registry.RegistryError as exc:
        return str(exc)
    return None


def one_round(  # noqa: PLR0913, PLR0917 (the round's setting)
    project: Path, api: str, rng: random.Random, full_s: float, full_items: int, n: int
) -> dict:
    """Kill one run at a random point; the checks of the module docstring; what happened."""
    write_params(project, {"train": {"seed": n}})
    log = project.parent / f"round-{n}.log"
    delay = rng.uniform(0.5, full_s)
    mode = rng.choice(["process", "group"])
    proc = kiln_run(project, api, log)
    time.sleep(delay)
    finished = proc.poll() is not None
    if not finished:
        (os.kill if mode == "process" else os.killpg)(proc.pid, signal.SIGKILL)
    proc.wait()
    text = log.read_text(errors="replace")
    stages = RUNNING.findall(text)
    result = {"round": n, "delay_s": round(delay, 1), "mode": mode,
              "stage": "finished" if finished else (stages[-1] if stages else "start"),
              "violations": []}  # fmt: skip
    deadline = time.monotonic() + GRACE_S + 15
    while processes_in(project) and time.monotonic() < deadline:
        time.sleep(0.2)
    if processes_in(project):
        result["violations"].append(f"survivors: {processes_in(project)}")
    if (problem := registry_intact(project)) is not None:
        result["violations"].append(f"registry: {problem}")
    lock_file = project / "dvc.lock"
    try:
        locked = set(yaml.safe_load(lock_file.read_text())["stages"])
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        result["violations"].append(f"dvc_lock: unreadable ({exc})")
        locked = set()
    committed_before = set(COMMITTED.findall(text))
    if not committed_before <= locked:
        result["violations"].append(f"dvc_lock: {committed_before - locked} committed, missing")
    rerun = run([sys.executable, "-m", "flows.cli", "run", "--project", str(project)], project,
                check=False, extra_env={"PREFECT_API_URL": api})  # fmt: skip
    if rerun.returncode != 0:
        result["violations"].append(f"rerun: exit {rerun.returncode}: {rerun.stdout[-500:]}")
    status = run([sys.executable, "-m", "dvc", "status", "--json"], project, check=False)
    if json.loads(status.stdout or "{}"):
        result["violations"].append(f"dvc_status: {status.stdout[:300]}")
    crawl = json.loads((project / "reports" / "crawl.json").read_text())
    if crawl.get("partial"):
        result["violations"].append(f"partial_crawl: {crawl.get('partial_reason')}")
    if crawl.get("items") != full_items:  # the site never changes: every whole crawl finds all
        result["violations"].append(f"incomplete_crawl: {crawl.get('items')} of {full_items}")
    if (problem := registry_intact(project)) is not None:
        result["violations"].append(f"registry after the rerun: {problem}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="work here and keep it (default: a temp dir)")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)  # noqa: S311 (reproducible kill points, not security)
    work = args.keep or Path(tempfile.mkdtemp(prefix="kiln-kill-"))
    work.mkdir(parents=True, exist_ok=True)
    server = start_server(work / "prefect-home", free_port())
    try:
        project = make_project(work, merge_params(tiny_demo_overrides(free_port()), EXTRA))
        # The first run, then (for a series of rounds) one as a round's: a new seed, work from
        # train on. The suite's single round skips that second run (~55 s of CI).
        for seed in (0, -1) if args.runs > 1 else (0,):
            write_params(project, {"train": {"seed": seed}})
            started = time.monotonic()
            run([sys.executable, "-m", "flows.cli", "run", "--project", str(project)], project,
                extra_env={"PREFECT_API_URL": server.api_url})  # fmt: skip
        full_s = time.monotonic() - started  # a round's run: kills drawn from the first run's
        # time, which crawls and cleans for the first time, landed after the end in 13 of 30
        # (20 of 30 in a later series; none of 30 with a round's time)
        full_items = json.loads((project / "reports" / "crawl.json").read_text())["items"]
        print(f"a complete round's run: {full_s:.0f} s; kills land in 0.5..{full_s:.0f} s")
        results = []
        for n in range(1, args.runs + 1):
            results.append(one_round(project, server.api_url, rng, full_s, full_items, n))
            r = results[-1]
            print(f"round {n}: {r['mode']} kill at {r['delay_s']} s, in {r['stage']}: "
                  f"{'; '.join(r['violations']) or 'ok'}", flush=True)  # fmt: skip
    finally:
        server.stop()
    kinds = Counter(v.split(":")[0] for r in results for v in r["violations"])
    print(f"kills by stage: {dict(Counter(r['stage'] for r in results))}")
    print(f"kills by mode: {dict(Counter(r['mode'] for r in results))}")
    print(f"violations: {sum(kinds.values())} {dict(kinds)}")
    return 1 if kinds else 0


if __name__ == "__main__":
    raise SystemExit(main())
