"""Run the stages of dvc.yaml through DVC, one stage at a time, under DVC's repository lock.

dvc.yaml is the pipeline: `stage_names` reads its stages in the order they are written, which is
the order the flow runs them. Nothing in flows/ keeps a copy of that list.

`run_stage` is the whole runner for one stage. It opens the project's DVC Repo and, holding DVC's
repository lock (`dvc.repo.lock_repo`) from the first look to the last write, it

1. asks DVC whether the stage is stale and why (`Repo.status`), unless dvc.lock has no entry for
   it ("first run": stale, nothing to ask); an up-to-date stage stops here and the flow shows its
   task run as "Skipped" with the reason;
2. runs the stage's `cmd` from dvc.yaml, streaming each output line into the caller's logger;
3. commits the stage (`Repo.commit(target, force=True)`, what `dvc repro` does after a command):
   its outputs go into the DVC cache and its entry into dvc.lock.

`dvc repro` itself releases the lock while a command runs. The runner does not: a `dvc repro`,
`dvc commit` or `dvc status` started by a user while a flow stage runs waits DVC's usual 3 s and
then fails with DVC's "Unable to acquire lock" error, instead of running or recording the same
stage beside the flow. `lock_repo` is re-entrant for the Repo that holds it, so the status and
commit calls inside it do not take the lock again.

A stage that fails raises `StageFailed` before its commit, so dvc.lock keeps that stage's last
recorded state; the stages before it committed themselves as they finished. A run killed between
a command and its commit leaves that stage stale, so the next run simply runs it again.

Frozen stages (`crawl`: `dvc repro` must never touch the network) are not asked about: the flow
runs them on purpose, since a refresh re-crawls, and commits them the same way.

One Repo per stage, not one per flow run: opening it costs a few hundredths of a second (the DVC
import itself is paid once per process), and nothing has to be shared between task runs.

Stage output: every stage logs `%(asctime)s %(levelname)s %(name)s: %(message)s` (the older
`%(asctime)s %(name)s %(levelname)s %(message)s` and Scrapy's `%(asctime)s [%(name)s]
%(levelname)s: %(message)s` are read too). Each such line is logged once, at its own level, without
its timestamp (the log record has one). Any other line (a traceback, a progress bar's last state)
is logged at INFO. A progress line (`tasks.core.progress`: `progress <what> <done>/<total> <unit>
<rate>/s eta <eta>`, at most one per loop every 10 s) is logged like any other and also handed,
parsed, to the caller's `on_progress` (flows/stage_progress.py turns it into the task run's
Prefect progress artifact).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from logging import Logger, LoggerAdapter
from pathlib import Path
from typing import Any

import yaml

from flows.stage_guard import PARENT_ENV
from tasks.core.progress import ProgressLine, parse

_TIMESTAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:[,.]\d+)? "  # Scrapy: no fraction
_LEVEL = r"(DEBUG|INFO|WARNING|ERROR|CRITICAL)"
_LEADING_TIMESTAMP = re.compile(f"^{_TIMESTAMP}")
# After the timestamp: "LEVEL name: ", "name LEVEL " or Scrapy's "[name] LEVEL: ".
_LOG_LINE = re.compile(rf"{_TIMESTAMP}(?:{_LEVEL} \S+:|\S+ {_LEVEL}\b|\[\S+\] {_LEVEL}:)")
# DVC's git hints ("To track the changes with git, run: ...") say nothing about the run and would
# repeat in every task run's log.
_DVC_HINTS = ("To track the changes with git", "git add dvc.lock", "To enable auto staging",
              "dvc config core.autostage", "Use `dvc push` to send")
FROZEN_REASON = "refresh: a frozen stage, which `dvc repro` never runs, runs on every flow run"
UP_TO_DATE_REASON = "up to date: deps, params and outputs unchanged"
# A stage dvc.lock has no entry for: DVC's status then lists every dep as modified and every
# output as deleted, which says nothing on a project's first run.
FIRST_RUN_REASON = "first run: dvc.lock records no earlier run of it"


class StageFailed(RuntimeError):
    """A stage's command exited non-zero (its output is in the log already)."""


@dataclass(frozen=True)
class StageOutcome:
    stage: str
    ran: bool
    reason: str  # why it ran, or why it was skipped


# libyaml's parser when PyYAML has it: dvc.yaml (6 kB) in 0.011 s instead of 0.036 s.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def pipeline(project: Path) -> dict[str, dict[str, Any]]:
    """dvc.yaml's stages by name, in the order they are written: the order they run in."""
    spec = yaml.load((project / "dvc.yaml").read_text(encoding="utf-8"), Loader=_YAML_LOADER)  # noqa: S506 (a safe loader)
    return spec["stages"]


def stage_names(project: Path) -> list[str]:
    return list(pipeline(project))


def is_frozen(spec: dict[str, Any]) -> bool:
    return bool(spec.get("frozen"))


def _target(stage: str, project: Path) -> str:
    """`<project>/dvc.yaml:<stage>`: DVC resolves a bare stage name against the working
    directory, not the Repo's root, so `kiln run --project P` from elsewhere checked and
    committed the stages of the dvc.yaml in the working directory instead (or none)."""
    return f"{project / 'dvc.yaml'}:{stage}"


def _describe(changes: list[Any]) -> str:
    """One line from DVC's status entry of a stage."""
    parts = []
    for change in changes:
        if isinstance(change, str):  # e.g. "changed command", "always changed"
            parts.append(change)
            continue
        for kind, paths in change.items():
            if not isinstance(paths, dict):
                parts.append(f"{kind}: {paths}")
                continue
            # At most 3 paths each: on a first run every dep and out is "changed".
            listed = [f"{p} {s}" for p, s in list(paths.items())[:3]]
            more = f" and {len(paths) - 3} more" if len(paths) > 3 else ""
            parts.append(f"{kind}: {', '.join(listed)}{more}")
    return "; ".join(parts)


def stale_reason(repo: Any, stage: str, project: Path) -> str | None:
    """Why DVC considers `stage` out of date, or None when it is up to date."""
    # A stage dvc.lock has no entry for is stale whatever DVC's status would list, so DVC is not
    # asked: its status of one stage (parsing dvc.yaml, dvc.lock and params, hashing the deps)
    # took 0.1-0.35 s a stage on a project's first run, ~1 s of the full demo's ~41 s run.
    if stage not in _recorded_stages(project):
        return FIRST_RUN_REASON
    # One target: at most one entry, keyed by the stage's address relative to the cwd.
    changes = next(iter(repo.status(targets=[_target(stage, project)]).values()), None)
    return _describe(changes) if changes else None


def _recorded_stages(project: Path) -> dict[str, Any]:
    lock = project / "dvc.lock"
    if not lock.exists():
        return {}
    recorded = yaml.load(lock.read_text(encoding="utf-8"), Loader=_YAML_LOADER)  # noqa: S506 (a safe loader)
    return (recorded or {}).get("stages") or {}


def _env() -> dict[str, str]:
    """Stages run with this interpreter's environment first on PATH (`python -m tasks.x`)."""
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
            "PYTHONUNBUFFERED": "1"}


def log_line(raw: str, logger: Logger | LoggerAdapter) -> None:
    """Log one line of a stage's output once: a log line at its own level without its
    timestamp, anything else at INFO; only the last state of a progress bar; no DVC git hints."""
    line = raw.rstrip().rsplit("\r", 1)[-1]
    if not line or line.lstrip().startswith(_DVC_HINTS):
        return
    match = _LOG_LINE.match(line)
    level = next((name for name in match.groups() if name), "INFO") if match else "INFO"
    logger.log(logging.getLevelName(level), _LEADING_TIMESTAMP.sub("", line))


OnProgress = Callable[[ProgressLine], None]


def _stream(
    stage: str,
    cmd: str,
    project: Path,
    logger: Logger | LoggerAdapter,
    on_progress: OnProgress | None = None,
) -> None:
    """Run `cmd` in a shell, as DVC does, logging each output line as it comes and handing each
    progress line to `on_progress`."""
    # Through flows.stage_guard, in a process group of its own: the stage dies with this process
    # however it dies, and holds the run lock (inherited: close_fds=False) until it has exited.
    # Bytes, split on "\n" only: a text pipe would turn each "\r" of a progress bar into a line.
    guarded = [sys.executable, "-m", "flows.stage_guard", cmd]
    proc = subprocess.Popen(guarded, cwd=project, env={**_env(), PARENT_ENV: str(os.getpid())},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, close_fds=False)
    try:
        for raw in proc.stdout or ():
            line = raw.decode("utf-8", errors="replace")
            log_line(line, logger)
            if on_progress is not None and (progress := parse(line)) is not None:
                on_progress(progress)
    except BaseException:  # Ctrl+C (or the flow cancelled): the stage stops as it would on it
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait()
        raise
    if proc.wait() != 0:
        raise StageFailed(f"stage {stage}: `{cmd}` exited with status {proc.returncode}; "
                          "its output is logged above")


@contextlib.contextmanager
def _dvc_info_off() -> Iterator[None]:
    """DVC logs "Updating lock file 'dvc.lock'" at INFO through its own stdout handler and again
    through the root logger; the runner's "committed" line says it once, in the task run's log."""
    dvc_logger = logging.getLogger("dvc")
    level = dvc_logger.level
    dvc_logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        dvc_logger.setLevel(level)


def run_stage(
    stage: str,
    project: Path,
    logger: Logger | LoggerAdapter,
    on_progress: OnProgress | None = None,
) -> StageOutcome:
    """Run `stage` if it is frozen or DVC says it is stale, and commit it; otherwise skip it.
    DVC's repository lock is held throughout (module docstring). `on_progress` gets each
    progress line of the stage's output, parsed."""
    from dvc.repo import Repo, lock_repo  # noqa: PLC0415 (a heavy import, paid only when a flow runs)

    started = time.perf_counter()
    spec = pipeline(project)[stage]
    command_s = 0.0
    with Repo(str(project)) as repo, lock_repo(repo):
        if is_frozen(spec):
            reason = FROZEN_REASON
            logger.info("%s is frozen for `dvc repro`; running it (a refresh)", stage)
        else:
            reason = stale_reason(repo, stage, project)
            checked = f"checked in {time.perf_counter() - started:.2f} s"
            if reason is None:
                logger.info("%s skipped: up to date, %s", stage, checked)
                return StageOutcome(stage, False, UP_TO_DATE_REASON)
            logger.info("%s is stale (%s), %s; running it", stage, reason, checked)
        command_started = time.perf_counter()
        _stream(stage, spec["cmd"], project, logger, on_progress)
        command_s = time.perf_counter() - command_started
        logger.info("%s: command %.1f s", stage, command_s)
        with _dvc_info_off():
            repo.commit(_target(stage, project), force=True)
    logger.info("%s: committed to dvc.lock and the DVC cache; DVC %.2f s (open, lock, status, "
                "commit)", stage, time.perf_counter() - started - command_s)
    return StageOutcome(stage, True, reason)
