"""Guards around a flow run: one run at a time per project, and the demo site when it is needed."""

from __future__ import annotations

import fcntl
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from logging import Logger, LoggerAdapter
from pathlib import Path
from urllib.parse import urlsplit

from tasks.core.params import Params


class RunInProgress(RuntimeError):
    """Another refresh-and-retrain run holds this project's lock."""


@contextmanager
def single_run_lock(project: Path) -> Iterator[None]:
    """Refuse a second concurrent run on the same project (no interleaved writes)."""
    lock_path = project / ".kiln" / "run.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            raise RunInProgress(
                f"another refresh-and-retrain run (pid {holder}) holds {lock_path}; "
                "wait for it to finish (a run that was killed holds it until its stage "
                "processes have stopped, within seconds)"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        # Every process of the run holds the lock: the stages inherit this descriptor (the flow
        # starts them with close_fds=False, flows/stage_guard.py), and flock's lock lasts while
        # any descriptor of it is open. A run killed with kill -9 thus keeps the project locked
        # until its last stage process has exited, never while an orphan still writes.
        os.set_inheritable(fh.fileno(), True)
        try:
            yield
        finally:
            fh.seek(0)
            fh.truncate()
            fcntl.flock(fh, fcntl.LOCK_UN)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):  # noqa: S310 (http URL from params)
            return True
    except urllib.error.HTTPError:
        return True  # it answered, even if with an error status
    except (urllib.error.URLError, OSError):
        return False


def points_at_demo_site(params: Params) -> bool:
    demo = params.demo_site
    if params.source.kind != "crawl" or params.crawl is None:
        return False  # a table, folder or packaged dataset: nothing is crawled
    for url in params.crawl.start_urls:
        parts = urlsplit(url)
        if parts.hostname in (demo.host, "localhost") and (parts.port or 80) == demo.port:
            return True
    return False


@contextmanager
def demo_site_if_needed(params: Params, logger: Logger | LoggerAdapter) -> Iterator[None]:
    """Serve the demo site for the duration of the run if params point at it and nothing answers."""
    demo_url = f"http://{params.demo_site.host}:{params.demo_site.port}/"
    if not points_at_demo_site(params) or _answers(demo_url):
        yield
        return
    from crawlers.demo_site import start_demo_site  # noqa: PLC0415 (only needed for the demo)

    server = start_demo_site(params.demo_site)
    logger.info("demo site started at %s", server.url)
    try:
        yield
    finally:
        server.stop()
        logger.info("demo site stopped")
