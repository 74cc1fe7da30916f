"""Serves in-memory pages over HTTP for the demo site (`python -m crawlers.demo_site`).

A stdlib `ThreadingHTTPServer` in a daemon thread. It records every request path (and the
status it answered), so a test can prove what a crawler fetched and what it did not, and it
injects faults on request: `server.fail_next("/item/x", [503, 503])` answers the next two
requests for that path with 503 before serving the page again; status `DROP` sends half the body
and closes the connection. A `Page` may carry extra headers (Location, Content-Encoding,
Retry-After) and a delay, which is how tests/integration/test_fault_server.py builds redirects to
forbidden places, compression bombs and slow pages.

Every 200 carries an `ETag` (a hash of the body) and `Cache-Control` (pages: `max-age=0`, i.e.
revalidate each time; images: a day, they never change) and a request whose `If-None-Match`
matches gets `304 Not Modified` with no body: what a crawler's HTTP cache relies on.
"""

from __future__ import annotations

import hashlib
import logging
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

logger = logging.getLogger("kiln.demo_site")

DROP = 0  # fault "status": promise the whole body, send half, hang up


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@dataclass(frozen=True)
class Page:
    body: bytes
    content_type: str
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()  # extra response headers
    delay_s: float = 0.0  # seconds to wait before answering (a slow server)
    # "max-age=0", not "no-cache": Scrapy 2.19's RFC2616Policy sends no validators on no-cache.
    cache_control: str = "max-age=0"  # revalidate each time (ETag); images override it

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.body).hexdigest()[:32] + '"'


_NOT_FOUND = Page(b"Not Found\n", "text/plain; charset=utf-8", status=404)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    site: DemoSiteServer

    def handle_error(self, request: object, client_address: object) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):  # a client that timed out and left
            logger.debug("client %s hung up", client_address)
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a crawler reuses one connection per slot
    # TCP_NODELAY: headers and body are two writes, and with Nagle's algorithm the body waited
    # for the client's delayed ACK of the headers: 50 ms per page (40 pages one after the other
    # by their "next" links: 2.03 s with Nagle, see the commit that set this).
    disable_nagle_algorithm = True
    timeout = 10  # seconds an idle keep-alive connection is held open
    server: _HTTPServer

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def _answer(self, send_body: bool) -> None:
        page, drop = self.server.site.respond(self.path)
        if page.delay_s:
            time.sleep(page.delay_s)
        if page.status == 200 and not drop and self.headers.get("If-None-Match") == page.etag:
            self.server.site.record_status(self.path, 304)
            self.send_response(304)
            self.send_header("ETag", page.etag)
            self.send_header("Cache-Control", page.cache_control)
            self.end_headers()
            return
        self.server.site.record_status(self.path, page.status)
        self.send_response(page.status)
        self.send_header("Content-Type", page.content_type)
        self.send_header("Content-Length", str(len(page.body)))
        if page.status == 200:
            self.send_header("ETag", page.etag)
            self.send_header("Cache-Control", page.cache_control)
        for name, value in page.headers:
            self.send_header(name, value)
        self.end_headers()
        if not send_body:
            return
        if drop:
            self.wfile.write(page.body[: len(page.body) // 2])
            self.close_connection = True
            return
        self.wfile.write(page.body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib name)
        logger.debug("%s " + format, self.address_string(), *args)


class DemoSiteServer:
    """A running demo site; `.url` is its home page, `.stop()` shuts it down."""

    def __init__(self, pages: dict[str, Page], host: str, port: int) -> None:
        self._pages = pages
        self._lock = threading.Lock()
        self._faults: dict[str, deque[int | Page]] = {}
        self.requests: list[str] = []  # request paths (with query), in arrival order
        self.statuses: list[tuple[str, int]] = []  # (request path, status answered)
        try:
            self._httpd = _HTTPServer((host, port), _Handler)
        except OSError as exc:
            raise OSError(exc.errno, f"demo site cannot listen on {host}:{port}: {exc}") from exc
        self._httpd.site = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},  # seconds; how fast stop() is noticed
            name="kiln-demo-site",
            daemon=True,
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/"

    def fail_next(self, path: str, statuses: Iterable[int | Page]) -> None:
        """Answer the next requests for `path` with these statuses (`DROP`: cut the body), or
        these pages (e.g. a 429 with a Retry-After header)."""
        with self._lock:
            self._faults.setdefault(path, deque()).extend(statuses)

    def respond(self, raw_path: str) -> tuple[Page, bool]:
        """Record the request; return the page to send and whether to drop it mid-body."""
        path = urlsplit(raw_path).path
        with self._lock:
            self.requests.append(raw_path)
            faults = self._faults.get(path)
            fault = faults.popleft() if faults else None
        page = self._pages.get(path, _NOT_FOUND)
        if fault is None:
            return page, False
        if isinstance(fault, Page):
            return fault, False
        if fault == DROP:
            return page, True
        return Page(f"injected {fault}\n".encode(), "text/plain; charset=utf-8", fault), False

    def record_status(self, raw_path: str, status: int) -> None:
        with self._lock:
            self.statuses.append((raw_path, status))

    def requested(self, prefix: str) -> list[str]:
        """Recorded request paths starting with `prefix`."""
        with self._lock:
            return [p for p in self.requests if p.startswith(prefix)]

    def wait(self) -> None:
        """Block until the server stops (Ctrl+C interrupts it)."""
        self._thread.join()

    def serve_until_stopped(self, log: logging.Logger, what: str) -> None:
        """The command-line sites' main loop: log "serving <what> at <url>", serve until Ctrl+C
        or `kill` (SIGTERM stops it as cleanly), then stop."""
        signal.signal(signal.SIGTERM, _interrupt)
        log.info("serving %s at %s (Ctrl+C to stop)", what, self.url)
        try:
            self.wait()
        except KeyboardInterrupt:
            log.info("stopping")
        finally:
            self.stop()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def __enter__(self) -> DemoSiteServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
