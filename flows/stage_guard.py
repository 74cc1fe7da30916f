"""A stage's processes die with the run: `python -m flows.stage_guard CMD` runs one stage command.

The flow starts every stage command through this guard (flows/dvc_stages.py), in a process group
of its own, and the guard asks Linux to signal it when the flow's process dies
(`PR_SET_PDEATHSIG`), however it dies, `kill -9` included. Then it interrupts its whole group
(SIGINT, what Ctrl+C sends: the crawl saves its state for the next run to resume), waits up to
`GRACE_S` and kills what is left (SIGKILL). Without it, a killed `kiln run` left its stage
running: an orphaned spider kept writing into the crawl job that the next run resumed, and that
run trained on half a crawl.

The guard holds no state and imports only the standard library (it starts in ~20 ms). The run
lock (flows/run_guard.py) is inherited by the guard and every process under it, so no other run
starts on the project until the last of them has exited.

The spider is the one process outside the group (it starts a session of its own so that a
terminal's Ctrl+C reaches it once, through the crawl stage); it has its own death signal, tied
to the crawl stage (crawlers/launch.py).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time

PARENT_ENV = "KILN_RUN_PID"  # the pid of the flow process the guard must not outlive
GRACE_S = 20.0  # seconds between SIGINT and SIGKILL: the spider saves its state in ~1-3 s
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with(parent: int) -> None:
    """SIGTERM to this process when `parent` dies; exit now if it already has."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before prctl: nobody would send the signal
        sys.exit(128 + signal.SIGTERM)


def _stop_group(signum: int, frame: object) -> None:
    """The flow died: interrupt the stage, then kill whatever of it is still there."""
    os.killpg(0, signal.SIGINT)  # the guard ignores SIGINT
    deadline = time.monotonic() + GRACE_S
    while time.monotonic() < deadline:
        try:
            if os.waitpid(-1, os.WNOHANG) == (0, 0):
                time.sleep(0.1)
        except ChildProcessError:  # the stage's shell has exited
            break
    os.killpg(0, signal.SIGKILL)  # the guard too


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m flows.stage_guard 'COMMAND'", file=sys.stderr)
        return 2
    parent = int(os.environ.get(PARENT_ENV, os.getppid()))
    _die_with(parent)
    # close_fds=False: the run lock's descriptor (inheritable) stays open in the stage too
    stage = subprocess.Popen(argv[0], shell=True, close_fds=False)  # noqa: S602 (dvc.yaml's cmd)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # after the Popen: the stage keeps SIGINT
    signal.signal(signal.SIGTERM, _stop_group)
    status = stage.wait()
    return 128 - status if status < 0 else status  # killed by signal N: 128 + N, as a shell says


if __name__ == "__main__":
    raise SystemExit(main())
