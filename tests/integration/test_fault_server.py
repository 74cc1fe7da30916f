"""The crawl stage against a fault-injecting server on loopback:
`pytest tests/integration/test_fault_server.py`.

`crawlers.demo_server` serves hand-made pages (compression bomb, slow page, redirects to
forbidden places, 429 with Retry-After) next to a small demo shop; `python -m tasks.crawl` runs
as DVC runs it. Covers the crawl faults: size limits after decompression, timeouts,
redirects refused before connecting, Retry-After, refresh by conditional requests (304), a
refresh after the HTTP cache was pruned, an interrupted crawl that resumes to the same result
with each page fetched once, and a killed crawl that leaves data/raw as it was.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest
import yaml

from crawlers.demo_server import DemoSiteServer, Page
from crawlers.demo_site import build_site
from crawlers.httpcache_prune import prune_http_cache
from crawlers.httpcache_sqlite import CACHE_FILE, disk_bytes
from tasks.core.io import read_jsonl
from tasks.core.params import DemoSiteParams
from tests.project import free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SMALL = DemoSiteParams(n_items=20, per_page=10, n_duplicates=0, n_broken=0, sections=[])
HTML = "text/html; charset=utf-8"
BOMB = gzip.compress(b"<p>" + b"0" * (64 * 1024 * 1024), compresslevel=9)  # 64 MiB -> ~64 kB


def _pages() -> dict[str, Page]:
    pages = dict(build_site(SMALL).pages)
    pages["/item/bomb"] = Page(BOMB, HTML, headers=(("Content-Encoding", "gzip"),))
    pages["/item/slow"] = Page(b"<h1>late</h1>", HTML, delay_s=3.0)
    label = '<h1 class="title">t</h1><img class="digit" src="/img/digit-0001.png">'
    pages["/item/empty"] = Page(b"", HTML)  # an empty 200
    pages["/item/latin1-as-utf8"] = Page(  # the header lies about the charset
        f'{label}<span class="label">dr\u00e9i</span>'.encode("latin-1"), HTML
    )
    pages["/item/giant"] = Page(  # one 20 MiB text node, then the fields
        f'<p>{"x" * (20 * 1024 * 1024)}</p>{label}<span class="label">1</span>'.encode(), HTML
    )
    for name, target in [("file", "file:///etc/passwd"), ("meta", "http://169.254.169.254/x"),
                         ("out", "http://example.com/item/x")]:  # fmt: skip
        pages[f"/item/go-{name}"] = Page(b"", HTML, status=302, headers=(("Location", target),))
    return pages


@pytest.fixture(scope="module")
def server():
    with DemoSiteServer(_pages(), "127.0.0.1", 0) as srv:
        yield srv


def _project(root: Path, **crawl: object) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params["crawl"].update(crawl)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return root


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _start(project: Path, sigint_ignored: bool = False) -> subprocess.Popen[str]:
    """The crawl stage in a subprocess; `sigint_ignored`: started as a shell's background job
    is (`cmd &` in a script starts it with SIGINT ignored)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "tasks.crawl"], cwd=project, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_ignore_sigint if sigint_ignored else None)  # noqa: PLW1509


def _crawl(project: Path, expect: int = 0) -> dict:
    proc = _start(project)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == expect, err[-4000:]
    return json.loads((project / "reports" / "crawl.json").read_text()) if expect == 0 else {}


def _rejects(project: Path) -> dict[str, str]:
    return {r["url"]: r["reason"] for r in read_jsonl(project / "data/raw/rejects.jsonl")}


def test_bomb_slow_page_and_forbidden_redirects(server, tmp_path: Path) -> None:
    url = server.url
    starts = [f"{url}item/{p}" for p in ("digit-0001", "bomb", "slow", "go-file", "go-meta",
                                         "go-out")]  # fmt: skip
    project = _project(tmp_path, start_urls=starts, max_response_bytes=1024 * 1024,
                       download_timeout_s=0.5, retries=1, retry_backoff_s=0.05)  # fmt: skip
    report = _crawl(project)
    rejects = _rejects(project)
    assert "too large" in rejects[f"{url}item/bomb"] and "DOWNLOAD_MAXSIZE" in rejects[
        f"{url}item/bomb"]  # fmt: skip
    assert rejects[f"{url}item/slow"].startswith("DownloadTimeoutError after 1 retries")
    assert report["items"] == 1 and report["refused"] >= 3  # three redirect targets refused
    for name, why in [("file", "scheme file://"), ("meta", "host 169.254.169.254"),
                      ("out", "host example.com is not in crawl.allowed_domains")]:  # fmt: skip
        assert rejects[f"{url}item/go-{name}"].startswith("redirect to") and why in rejects[
            f"{url}item/go-{name}"]  # fmt: skip
    assert not [p for p in server.requests if "etc/passwd" in p or p.startswith("/x")]


def test_empty_mislabelled_and_giant_pages_give_items_or_rejects(server, tmp_path: Path) -> None:
    url = server.url
    starts = [f"{url}item/{p}" for p in ("empty", "latin1-as-utf8", "giant")]
    project = _project(tmp_path, start_urls=starts)
    report = _crawl(project)
    items = {r["url"]: r for r in read_jsonl(project / "data/raw/items.jsonl")}
    assert items[f"{url}item/latin1-as-utf8"]["label"] == "dr\ufffdi"  # replaced, not a crash
    assert items[f"{url}item/giant"]["label"] == "1"
    assert _rejects(project) == {
        f"{url}item/empty": "missing required field(s): image, label, title"
    }
    assert report["items"] == 2 and report["failures"] == 0


def test_429_waits_for_retry_after_then_gives_the_item(server, tmp_path: Path) -> None:
    url = server.url
    busy = Page(b"slow down", HTML, status=429, headers=(("Retry-After", "1"),))
    server.fail_next("/item/digit-0002", [busy])
    project = _project(tmp_path, start_urls=[f"{url}item/digit-0002"], retry_backoff_s=0.0)
    started = time.monotonic()
    report = _crawl(project)
    assert report["items"] == 1 and report["retries"] == 1
    assert time.monotonic() - started >= 1.0  # the server's Retry-After, not the 0 s backoff


def test_refresh_revalidates_pages_and_skips_fresh_images(server, tmp_path: Path) -> None:
    url = server.url
    project = _project(tmp_path, start_urls=[url])
    _crawl(project)
    before = (project / "data/raw/items.jsonl").read_bytes()
    mark = len(server.statuses)
    report = _crawl(project)
    again = server.statuses[mark:]
    item_pages = [s for p, s in again if p.startswith("/item/")]
    assert len(item_pages) == SMALL.n_items and set(item_pages) == {304}  # nothing changed
    assert not [p for p, _ in again if p.startswith("/img/")]  # fresh in the cache for a day
    assert report["not_modified"] >= SMALL.n_items
    assert (project / "data/raw/items.jsonl").read_bytes() == before


def _cached_paths(cache: Path) -> list[str]:
    """URL paths the HTTP cache holds a response for, least recently stored first (the order
    crawlers/httpcache_prune.py removes them in)."""
    with closing(sqlite3.connect(cache / CACHE_FILE)) as db:
        rows = db.execute("SELECT url FROM responses ORDER BY stored_at, id").fetchall()
    return [_path(url) for (url,) in rows]


def test_crawl_after_pruning_the_cache(server, tmp_path: Path) -> None:
    project = _project(tmp_path, start_urls=[server.url])
    _crawl(project)
    before = (project / "data/raw/items.jsonl").read_bytes()
    cache = project / ".kiln/httpcache"
    old = [f"/item/digit-{i:04d}" for i in range(10)]  # made the least recently stored
    with closing(sqlite3.connect(cache / CACHE_FILE)) as db, db:
        db.executemany("UPDATE responses SET stored_at = stored_at - 3600 WHERE url = ?",
                       [(server.url + p[1:],) for p in old])  # fmt: skip
    stored = _cached_paths(cache)
    assert set(stored[:10]) == set(old)
    total = disk_bytes(cache / CACHE_FILE)
    result = prune_http_cache(cache, total - 1)  # a little over the limit: a few pages go
    assert 1 <= result.entries_removed <= len(old) and result.bytes_before == total
    assert result.bytes_after == disk_bytes(cache / CACHE_FILE) < total
    pruned = stored[: result.entries_removed]  # the oldest: some of the ten
    assert _cached_paths(cache) == stored[result.entries_removed :]
    mark = len(server.statuses)
    report = _crawl(project)
    again = server.statuses[mark:]
    items = dict(s for s in again if s[0].startswith("/item/"))
    assert len(items) == SMALL.n_items == len([s for s in again if s[0].startswith("/item/")])
    assert {p for p, s in items.items() if s == 200} == set(pruned)  # pruned: fetched anew
    assert {p for p, s in items.items() if s == 304} == set(items) - set(pruned)  # revalidated
    assert report["not_modified"] >= SMALL.n_items - len(pruned)
    assert not [p for p, _ in again if p.startswith("/img/")]  # kept, still fresh
    assert (project / "data/raw/items.jsonl").read_bytes() == before
    assert set(_cached_paths(cache)) == set(stored)  # stored again


def _slow_site() -> dict[str, Page]:
    """SMALL with item pages answering after 0.3 s: a crawl long enough to stop half-way."""
    return {p: dataclasses.replace(pg, delay_s=0.3) if p.startswith("/item/") else pg
            for p, pg in build_site(SMALL).pages.items()}  # fmt: skip


def _item_requests(srv: DemoSiteServer, since: int) -> list[str]:
    """The item-page requests the server received after its first `since` requests."""
    return [p for p in srv.requests[since:] if p.startswith("/item/")]


def _files(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _path(url: str) -> str:
    return "/" + url.split("/", 3)[3]


def test_interrupted_crawl_resumes_to_the_same_result(tmp_path: Path) -> None:
    item_paths = set(build_site(SMALL).item_paths)
    with DemoSiteServer(_slow_site(), "127.0.0.1", 0) as srv:
        (tmp_path / "whole").mkdir()
        whole = _project(tmp_path / "whole", start_urls=[srv.url], concurrency=2)
        whole_report = _crawl(whole)
        uninterrupted = _item_requests(srv, 0)
        (tmp_path / "cut").mkdir()
        cut = _project(tmp_path / "cut", start_urls=[srv.url], concurrency=2, http_cache=False)
        mark, status_mark = len(srv.requests), len(srv.statuses)
        # Started as a background job is: the stage must stop on SIGINT all the same.
        proc = _start(cut, sigint_ignored=True)
        deadline = time.monotonic() + 60
        while len(_item_requests(srv, mark)) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the crawl ended before it could be interrupted"
        # What the stop finishes is everything the downloader holds: it takes up to
        # CONCURRENT_REQUESTS = 16 requests from the scheduler, 2 at a time on the wire, so the
        # 10 items of the first list page and /page/2 finish (~1.5 s) and /page/2's 10 item
        # links, scheduled while closing, wait in the JOBDIR (seen in every probe run).
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err[-4000:]
        assert not (cut / "data").exists()  # nothing committed
        first = _item_requests(srv, mark)
        answered = [p for p, _ in srv.statuses[status_mark:] if p.startswith("/item/")]
        assert sorted(answered) == sorted(first)  # the requests in flight were finished
        saved = read_jsonl(cut / ".kiln/crawl-job/spider/items.jsonl")
        assert 0 < len(saved) < SMALL.n_items
        assert sorted(_path(r["url"]) for r in saved) == sorted(first)  # each gave its item
        mark = len(srv.requests)
        report = _crawl(cut)
        second = _item_requests(srv, mark)
    # Each item page once across both runs: an answered page is not fetched again, and the
    # union is what the uninterrupted crawl fetched.
    assert len(first + second) == len(set(first + second)) == SMALL.n_items
    assert set(first + second) == set(uninterrupted) == item_paths
    assert len(uninterrupted) == len(item_paths)
    # reports/crawl.json counts both runs (crawlers.run adds the interrupted run's stats.json).
    assert report["pages"] == whole_report["pages"] == SMALL.n_items + 2  # + 2 list pages
    strip = ("first_seen",)
    rows = [{k: v for k, v in r.items() if k not in strip}
            for r in read_jsonl(cut / "data/raw/items.jsonl")]  # fmt: skip
    expected = [{k: v for k, v in r.items() if k not in strip}
                for r in read_jsonl(whole / "data/raw/items.jsonl")]  # fmt: skip
    assert rows == expected


def _site_process(port: int, log: Path) -> subprocess.Popen[bytes]:
    """_slow_site served by a process of its own, listening once this returns; it writes each
    request's path to `log` as it comes."""
    code = ("import time; from crawlers.demo_server import DemoSiteServer; "
            "from tests.integration.test_fault_server import _slow_site; "
            f"srv = DemoSiteServer(_slow_site(), '127.0.0.1', {port}); n = 0\n"
            "while True:\n"
            "    time.sleep(0.02); new = srv.requests[n:]; n += len(new)\n"
            "    print(*new, sep='\\n', end='\\n' if new else '', flush=True)")  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=log.open("wb"))
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            assert time.monotonic() < deadline and proc.poll() is None, "the site did not start"
            time.sleep(0.05)


def test_a_crawl_interrupted_with_its_site_down_resumes_every_page(tmp_path: Path) -> None:
    """What a killed `kiln run` does to the demo site it serves: the site dies with the run,
    so the requests the stopping spider still makes fail. The resumed crawl asks for those
    pages again instead of keeping their failures (before it did, it lost 7 of 300 items, their
    images in flight, when a run was killed 0.3 s into its crawl)."""
    port = free_port()
    project = _project(tmp_path, start_urls=[f"http://127.0.0.1:{port}/"], concurrency=2)
    requests = tmp_path / "requests.log"
    site = _site_process(port, requests)
    proc = _start(project)
    deadline = time.monotonic() + 60
    while requests.read_text().count("/item/") < 4:
        assert time.monotonic() < deadline and proc.poll() is None, "the crawl did not start"
        time.sleep(0.05)
    site.kill()  # its connections go with it, as a killed run's do
    site.wait()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-4000:]
    failed = read_jsonl(project / ".kiln/crawl-job/spider/rejects.jsonl")
    assert failed, "no request failed while the site was down: the test missed its case"
    site = _site_process(port, tmp_path / "requests-again.log")
    try:
        report = _crawl(project)
    finally:
        site.kill()
        site.wait()
    assert (report["items"], report["rejects"], report["partial"]) == (SMALL.n_items, 0, False)
    rows = read_jsonl(project / "data/raw/items.jsonl")
    assert sorted(_path(r["url"]) for r in rows) == sorted(build_site(SMALL).item_paths)


def test_kill_9_mid_crawl_leaves_the_last_committed_raw(tmp_path: Path) -> None:
    with DemoSiteServer(_slow_site(), "127.0.0.1", 0) as srv:
        project = _project(tmp_path, start_urls=[f"{srv.url}item/digit-0001"])
        _crawl(project)
        data, report_path = project / "data", project / "reports/crawl.json"
        before, report_before = _files(data), report_path.read_bytes()
        job = project / ".kiln/crawl-job"
        # concurrency 2: /page/2 waits behind the first 10 item pages (~1.5 s), so the kill
        # after 3 item requests lands with half the site not yet requested.
        _project(tmp_path, start_urls=[srv.url], http_cache=False, concurrency=2)
        mark = len(srv.requests)
        proc = _start(project)
        deadline = time.monotonic() + 60
        while len(_item_requests(srv, mark)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the crawl ended before the kill"
        assert (job / "jobdir/requests.queue").is_dir()  # the spider is at work in the job dir
        assert (job / "spider/items.jsonl").is_file()
        proc.kill()  # SIGKILL: no handler runs
        proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        assert _files(data) == before
        # The orphaned spider got SIGTERM from the kernel (PR_SET_PDEATHSIG) and stops itself:
        # it finishes the requests in flight and writes stats.json last.
        while not (job / "spider/stats.json").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        stats = json.loads((job / "spider/stats.json").read_text(encoding="utf-8"))
        assert stats["finish_reason"] == "shutdown"  # stopped by the signal, not finished
        time.sleep(0.5)
        settled = len(srv.requests)
        time.sleep(1.0)
        assert len(srv.requests) == settled  # and then it sent nothing more
        killed = _item_requests(srv, mark)
        assert 0 < len(killed) < SMALL.n_items  # the kill landed mid-crawl
        assert 0 < len(read_jsonl(job / "spider/items.jsonl")) < SMALL.n_items
        assert _files(data) == before and report_path.read_bytes() == report_before
        mark = len(srv.requests)
        report = _crawl(project)  # the next crawl resumes the job the kill left
        resumed = _item_requests(srv, mark)
    assert len(killed + resumed) == len(set(killed + resumed))  # no page fetched twice
    assert set(killed + resumed) == set(build_site(SMALL).item_paths)
    assert report["items"] == SMALL.n_items == len(read_jsonl(data / "raw/items.jsonl"))
    assert not job.exists()  # done: the next crawl starts afresh
