"""Run the stages of dvc.yaml through DVC, so DVC owns "is this stage up to date".

The flow never calls stage code directly. For each stage it asks DVC whether the stage is stale
(and why) and runs the stage's `cmd` from dvc.yaml with its output streamed into the caller's
logger. Each stage that ran is committed (`dvc commit`, what `dvc repro` does after each command)
on a background thread while the next stage's command runs, so hashing its outputs and copying
them into the DVC cache (data/raw: 1834 images, ~1 s) is off the flow's critical path. At the end
of the run (also after a failure) `record` commits what the background commits did not: the last
stage that ran, and any whose background commit failed. On the full demo that final commit took
1.05-1.29 s as one `dvc commit --with-deps` of all 7 stages; it now commits one stage. Outside a
flow run `record` commits every stage up to `through` in one `dvc commit --with-deps`.
Committing a stage before the next one has run is safe because a stage's status compares its
deps with its own dvc.lock entry, not with its upstream stage's; a run killed before a stage's
commit leaves that stage stale, so it simply runs again.
DVC is used through its Python API in this process: a `dvc` command costs ~2.5 s of start-up
(measured on 2 busy cores), which two calls per stage would pay ten times per run. A flow run
opens ONE Repo (`dvc_session`), as `dvc repro` does, on a background thread while the crawl runs;
see `dvc_session` for why that is correct and what it saves.
The frozen `crawl` stage (`dvc repro` must never touch the network) is always run: a refresh
re-crawls on purpose.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from logging import Logger, LoggerAdapter
from pathlib import Path

import yaml

STAGES = ("crawl", "validate", "clean", "train", "evaluate", "export", "promote")
# Stage log lines carry their own timestamp; the task run's log record has one already.
_LEADING_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[,.]\d+ ")
# DVC's git hints after each stage ("To track the changes with git, run: ...") say nothing about
# the run and would repeat in every task run's log.
_DVC_HINTS = ("To track the changes with git", "git add dvc.lock", "To enable auto staging",
              "dvc config core.autostage", "Use `dvc push` to send")


class StageFailed(RuntimeError):
    """A stage exited non-zero; the message carries the stage's last output lines."""


@dataclass(frozen=True)
class StageOutcome:
    stage: str
    ran: bool
    reason: str  # why it ran, or why it was skipped


def _env() -> dict[str, str]:
    """Stages run with this interpreter's environment first on PATH (`python -m tasks.x`)."""
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
            "PYTHONUNBUFFERED": "1"}


@dataclass
class _Session:
    project: Path
    repo: object = None  # dvc.repo.Repo once opened
    warm_ups: dict[str, threading.Thread] = field(default_factory=dict)  # started, by name
    ran: list[str] = field(default_factory=list)  # stages that ran in this flow run, in order
    committed: set[str] = field(default_factory=set)  # of those, the ones committed already


_SESSIONS: dict[Path, _Session] = {}  # project -> the flow run in progress there


@contextlib.contextmanager
def dvc_session(project: Path) -> Iterator[None]:
    """One DVC Repo for every status check and the final commit of a flow run, warmed up in
    the background while stage subprocesses run.

    One Repo is correct because every `Repo.status` and `Repo.commit` runs under
    `dvc.repo.lock_repo`, which drops the Repo's cached index, config, ignore rules and file
    systems before and after the call (`Repo._reset`), so each call sees the outputs the stage
    before it wrote; `dvc repro` uses one Repo the same way. It saves `Repo()` on every call but
    the first (0.03-0.05 s each on 2 busy cores, 10 calls of each kind).

    The warm-ups run while this process only waits on a stage subprocess and pay for what the
    first status check and the commit would otherwise pay for on the flow's critical path:
    `run_crawl` opens the Repo (importing DVC) while the crawl starts up (its subprocess needs
    ~1.5 s to send the first request), and the first stage command after it imports what only
    the commit needs (networkx, 0.3 s, for the stage graph). Neither reads the data a stage is
    writing. `_repo` waits for them before it hands the Repo out. Measured on 2 busy cores
    (load 1.5-2.4), 4 runs each, medians: first status check 0.89 s cold, 0.40 s warmed; the tiny
    demo's crawl 6.19 s without the warm-up beside it, 6.14 s with it.
    """
    session = _Session(project)
    _SESSIONS[project] = session
    try:
        yield
    finally:
        del _SESSIONS[project]
        for thread in session.warm_ups.values():
            thread.join()
        if session.repo is not None:
            session.repo.close()


def _open_repo(project: Path):  # noqa: ANN202 (dvc.repo.Repo, imported lazily)
    from dvc.repo import Repo  # noqa: PLC0415 (a heavy import, paid only when a flow runs)

    return Repo(str(project))


def _warm_status(session: _Session) -> None:
    """Open the run's Repo and import what its first `status` imports (dvc 3.67: ruamel)."""
    try:
        session.repo = _open_repo(session.project)
    except Exception:  # noqa: BLE001 (`_repo` opens it again on the main thread and raises there)
        return
    with contextlib.suppress(ImportError):  # fewer modules warmed if DVC moves them; no error
        import dvc.rwlock  # noqa: F401, PLC0415
        import ruamel.yaml  # noqa: F401, PLC0415


def _warm_commit(_session: _Session) -> None:
    """Import what `commit --with-deps` imports on first use: ~300 modules, networkx most."""
    with contextlib.suppress(ImportError):
        import dulwich.index  # noqa: F401, PLC0415
        import dvc.repo.graph  # noqa: F401, PLC0415
        import dvc.repo.index  # noqa: F401, PLC0415
        import dvc_data.hashfile.status  # noqa: F401, PLC0415
        import networkx  # noqa: F401, PLC0415


def _start_warm_up(project: Path, warm_up: Callable[[_Session], None],
                   name: str | None = None) -> None:
    """Run `warm_up` on a background thread, once per flow run and `name` (its own name by
    default; a retried stage starts none)."""
    session = _SESSIONS.get(project)
    name = name or warm_up.__name__
    if session is None or name in session.warm_ups:
        return
    thread = threading.Thread(target=warm_up, args=(session,), daemon=True, name=f"kiln-dvc{name}")
    session.warm_ups[name] = thread
    thread.start()


def _stage_ran(stage: str, project: Path) -> None:
    session = _SESSIONS.get(project)
    if session is not None:
        session.ran.append(stage)


def _start_commit_of_last_stage(project: Path, logger: Logger | LoggerAdapter) -> None:
    """Commit the stage that ran before this one on a background thread, while this stage's
    command runs (once per stage: `_start_warm_up` starts one thread per name). `_repo` waits for
    it before the next status check or `record` use the Repo, so the Repo is never used by two
    threads at once; this stage's status check has just opened it."""
    session = _SESSIONS.get(project)
    if session is None or not session.ran:
        return
    stage = session.ran[-1]

    def commit(session: _Session) -> None:
        started = time.perf_counter()
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # "Updating lock file" (see record)
                session.repo.commit(_target(stage, session.project), force=True)
            session.committed.add(stage)
        except Exception as exc:  # noqa: BLE001 (`record` commits it again and raises there)
            logger.warning("background commit of %s failed (%s); the final commit retries it",
                           stage, exc)
            return
        logger.info("recorded %s in dvc.lock and the DVC cache in %.2f s, beside this stage",
                    stage, time.perf_counter() - started)

    _start_warm_up(project, commit, name=f"commit-{stage}")


@contextlib.contextmanager
def _repo(project: Path) -> Iterator:
    """The flow run's Repo (`dvc_session`), or a fresh one closed after use outside a run."""
    session = _SESSIONS.get(project)
    if session is None:
        with _open_repo(project) as repo:
            yield repo
        return
    for thread in session.warm_ups.values():
        thread.join()  # done by then: each takes under a second, beside a stage of seconds
    if session.repo is None:  # no warm-up, or it failed: open it here, where errors are raised
        session.repo = _open_repo(project)
    yield session.repo


def _target(stage: str, project: Path) -> str:
    """`<project>/dvc.yaml:<stage>`: DVC resolves a bare stage name against the working
    directory, not the Repo's root, so `kiln run --project P` from elsewhere checked and
    committed the stages of the dvc.yaml in the working directory instead (or none)."""
    return f"{project / 'dvc.yaml'}:{stage}"


def stale_reason(stage: str, project: Path) -> str | None:
    """Why DVC considers `stage` out of date, or None when it is up to date."""
    with _repo(project) as repo:
        # One target: at most one entry, keyed by the stage's address relative to the cwd.
        changes = next(iter(repo.status(targets=[_target(stage, project)]).values()), None)
    if not changes:
        return None
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


def record(through: str, project: Path, logger: Logger | LoggerAdapter) -> None:
    """`dvc commit --with-deps through`: dvc.lock and the cache take every stage up to `through`.

    Call it with the last stage that succeeded: each stage before it either ran or was up to date
    (re-recording an up-to-date stage changes nothing).
    """
    started = time.perf_counter()
    session = _SESSIONS.get(project)
    # DVC prints "Updating lock file 'dvc.lock'" to stdout, which is the CLI's result channel.
    with _repo(project) as repo, contextlib.redirect_stdout(io.StringIO()):
        if session is None:
            committed = repo.commit(_target(through, project), with_deps=True, force=True)
        else:  # after _repo: every background commit has finished
            todo = [stage for stage in session.ran if stage not in session.committed]
            committed = [repo.commit(_target(stage, project), force=True) for stage in todo]
            session.committed.update(todo)
    what = f"{len(committed)} stages (through {through})" if session is None else (
        ", ".join(todo) or "nothing new")
    logger.info("recorded %s in dvc.lock and the DVC cache in %.2f s", what,
                time.perf_counter() - started)


def _stream(cmd: list[str] | str, project: Path, logger: Logger | LoggerAdapter,
            shell: bool = False) -> None:
    """Run `cmd`, logging each output line as it comes; raise StageFailed on non-zero exit."""
    proc = subprocess.Popen(cmd, cwd=project, env=_env(), shell=shell,  # noqa: S602 (cmd from dvc.yaml)
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            bufsize=1)
    tail: list[str] = []
    for raw in proc.stdout or ():
        line = raw.rstrip().rsplit("\r", 1)[-1]  # keep only the last state of a progress bar
        line = _LEADING_TIMESTAMP.sub("", line)
        if line and not line.lstrip().startswith(_DVC_HINTS):
            logger.info(line)
            tail = [*tail[-19:], line]
    if proc.wait() != 0:
        raise StageFailed(f"exit status {proc.returncode}:\n" + "\n".join(tail))


# libyaml's parser when PyYAML has it: dvc.yaml (6 kB) in 0.011 s instead of 0.036 s (pure Python),
# paid once per stage.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def stage_cmd(stage: str, project: Path) -> str:
    spec = yaml.load((project / "dvc.yaml").read_text(encoding="utf-8"), Loader=_YAML_LOADER)  # noqa: S506 (a safe loader)
    return spec["stages"][stage]["cmd"]


def _run(stage: str, project: Path, logger: Logger | LoggerAdapter) -> None:
    started = time.perf_counter()
    _stream(stage_cmd(stage, project), project, logger, shell=True)  # noqa: S604 (dvc.yaml cmd, as dvc runs it)
    logger.info("%s: command %.1f s", stage, time.perf_counter() - started)


def run_crawl(project: Path, logger: Logger | LoggerAdapter) -> StageOutcome:
    """Re-crawl on purpose (the stage is frozen for `dvc repro`); `record` keeps the snapshot."""
    _start_warm_up(project, _warm_status)  # while the crawl starts up; see dvc_session
    _run("crawl", project, logger)
    _stage_ran("crawl", project)
    return StageOutcome("crawl", True, "refresh: the site is re-crawled on every run")


def run_stage(stage: str, project: Path, logger: Logger | LoggerAdapter) -> StageOutcome:
    """Run `stage` if DVC says it is stale (`record` commits it later); otherwise skip it."""
    started = time.perf_counter()
    reason = stale_reason(stage, project)
    checked = f"checked by DVC (status) in {time.perf_counter() - started:.2f} s"
    if reason is None:
        logger.info("%s is up to date, %s", stage, checked)
        return StageOutcome(stage, False, "up to date: deps, params and outputs unchanged")
    logger.info("%s is stale (%s), %s; running it", stage, reason, checked)
    _start_warm_up(project, _warm_commit)  # while the stage runs; see dvc_session
    _start_commit_of_last_stage(project, logger)
    _run(stage, project, logger)
    _stage_ran(stage, project)
    return StageOutcome(stage, True, reason)
