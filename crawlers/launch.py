"""Start the spider process for the crawl stage (`python -m tasks.crawl` calls `run_spider`).

The spider runs as `python -m crawlers.run` in a subprocess (Twisted's reactor cannot restart
inside one process) in a session of its own, its log streamed into ours. A first SIGINT/SIGTERM
of the stage becomes one SIGINT to the spider: Scrapy finishes the requests in flight and saves
its JOBDIR, so the crawl can resume. If the stage dies without a word (kill -9), the kernel sends
the spider SIGTERM (PR_SET_PDEATHSIG), the same graceful stop.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import crawlers

logger = logging.getLogger("kiln.crawl")

_SCRAPY_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ")  # ours has a time already
_SCRAPY_LEVEL = re.compile(r"^(\[[\w.]+\]) (DEBUG|INFO|WARNING|ERROR|CRITICAL): ")
_CODE_ROOT = Path(crawlers.__file__).resolve().parent.parent  # makes `crawlers` importable


def _forward(spider_log: logging.Logger, line: str) -> None:
    """Re-log one line of the spider's output at its own level, without its second timestamp."""
    text = _SCRAPY_TIME.sub("", line.rstrip())
    match = _SCRAPY_LEVEL.match(text)
    level = logging.getLevelName(match[2]) if match else logging.INFO
    spider_log.log(level, _SCRAPY_LEVEL.sub(r"\1 ", text))


def _die_with_parent() -> None:
    """In the spider process: SIGTERM (a graceful stop) when tasks.crawl dies, even by kill -9."""
    if sys.platform == "linux":
        import ctypes  # noqa: PLC0415 (Linux only)

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def run_spider(workdir: Path, cache_dir: Path | None, resume: bool) -> tuple[int, bool]:
    """Run crawlers.run on `workdir/crawl.json` into `workdir/spider`, streaming its log.

    Returns its exit status and whether we interrupted it.
    """
    config, out = workdir / "crawl.json", workdir / "spider"
    cmd = [sys.executable, "-m", "crawlers.run", "--config", str(config), "--out", str(out),
           "--jobdir", str(workdir / "jobdir")] + (["--resume"] if resume else [])  # fmt: skip
    if cache_dir is not None:
        cmd += ["--cache", str(cache_dir.resolve())]
    path = [str(_CODE_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join(path)}
    logger.info("%s the spider: %s", "resuming" if resume else "starting", " ".join(cmd))
    spider_log = logging.getLogger("kiln.crawl.spider")
    interrupted = False
    with subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
        env=env, start_new_session=True, preexec_fn=_die_with_parent,  # noqa: PLW1509
    ) as proc:  # fmt: skip
        # Its own session: a terminal's Ctrl+C reaches it once, through us, so Scrapy stops
        # gracefully (a second SIGINT would make it stop at once, losing the requests in flight).
        while True:
            try:
                for line in proc.stdout or ():
                    _forward(spider_log, line)
                break
            except (KeyboardInterrupt, SystemExit):
                if interrupted:  # a second interrupt: stop now
                    proc.kill()
                    raise
                interrupted = True
                logger.warning("interrupted: letting the spider save its state")
                proc.send_signal(signal.SIGINT)
    return proc.returncode, interrupted
