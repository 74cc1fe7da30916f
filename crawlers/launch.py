"""Start the spider for the crawl stage (`python -m tasks.crawl` calls `run_spider`).

The spider runs in a forked child of the stage (`crawlers.run.main`, as `python -m crawlers.run`
would run it): Twisted's reactor cannot restart inside one process, and a child keeps the
stage's own state clean. A fork rather than a new interpreter because the child then starts
with Scrapy already imported: a second interpreter importing Scrapy, pydantic and the spider
cost 0.48 s of every crawl (the refresh of an unchanged 1,000-page site took 1.9-2.2 s in all).
The stage is single-threaded when it forks (no server, no reactor, no event loop), which is what
makes a fork without exec safe.

The child is in a session of its own, its output streamed into our log through a pipe. A first
SIGINT/SIGTERM of the stage becomes one SIGINT to the spider: Scrapy finishes the requests in
flight and saves its JOBDIR, so the crawl can resume. If the stage dies without a word
(kill -9), the kernel sends the spider SIGTERM (PR_SET_PDEATHSIG), the same graceful stop.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
import traceback
from pathlib import Path

from crawlers import run as spider_run  # imported before the fork: the child starts with it

logger = logging.getLogger("kiln.crawl")

_SCRAPY_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ")  # ours has a time already
_SCRAPY_LEVEL = re.compile(r"^(\[[\w.]+\]) (DEBUG|INFO|WARNING|ERROR|CRITICAL): ")


def _forward(spider_log: logging.Logger, line: str) -> None:
    """Re-log one line of the spider's output at its own level, without its second timestamp."""
    text = _SCRAPY_TIME.sub("", line.rstrip())
    match = _SCRAPY_LEVEL.match(text)
    level = logging.getLevelName(match[2]) if match else logging.INFO
    spider_log.log(level, _SCRAPY_LEVEL.sub(r"\1 ", text))


def _die_with_parent(parent: int) -> None:
    """In the spider process: SIGTERM (a graceful stop) when tasks.crawl dies, even by kill -9."""
    if sys.platform == "linux":
        import ctypes  # noqa: PLC0415 (Linux only)

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before prctl: nobody will send the signal
        os.kill(os.getpid(), signal.SIGTERM)


def _spider_child(argv: list[str], parent: int, output: int) -> None:
    """The forked child: run the spider with its output on `output`; never returns."""
    status = 1
    try:
        os.setsid()  # a terminal's Ctrl+C reaches the spider once, through the stage
        _die_with_parent(parent)
        os.dup2(output, 1)
        os.dup2(output, 2)
        os.close(output)
        sys.stdout.reconfigure(line_buffering=True)  # each log line as it comes
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Scrapy installs its own
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        for handler in logging.root.handlers[:]:  # the stage's; Scrapy installs its own
            logging.root.removeHandler(handler)
        status = spider_run.main(argv)
    except BaseException:  # noqa: BLE001 (anything: the stage reads the status and the log)
        traceback.print_exc()
    finally:
        spider_run.exit_now(status)


def run_spider(workdir: Path, cache_dir: Path | None, resume: bool) -> tuple[int, bool]:
    """Run the spider on `workdir/crawl.json` into `workdir/spider`, streaming its log.

    Returns its exit status (negative: killed by that signal) and whether we interrupted it.
    """
    argv = ["--config", str(workdir / "crawl.json"), "--out", str(workdir / "spider"),
            "--jobdir", str(workdir / "jobdir")] + (["--resume"] if resume else [])  # fmt: skip
    if cache_dir is not None:
        argv += ["--cache", str(cache_dir.resolve())]
    logger.info("%s the spider: crawlers.run %s", "resuming" if resume else "starting",
                " ".join(argv))  # fmt: skip
    spider_log = logging.getLogger("kiln.crawl.spider")
    sys.stdout.flush()  # nothing buffered here may be written twice, by the child too
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        _spider_child(argv, parent, write_end)
    os.close(write_end)
    interrupted = False
    with open(read_end, encoding="utf-8", errors="replace") as output:
        while True:
            try:
                for line in output:
                    _forward(spider_log, line)
                _, wait_status = os.waitpid(pid, 0)
                break
            except (KeyboardInterrupt, SystemExit):
                if interrupted:  # a second interrupt: stop now
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    raise
                interrupted = True
                logger.warning("interrupted: letting the spider save its state")
                os.kill(pid, signal.SIGINT)
    return os.waitstatus_to_exitcode(wait_status), interrupted
