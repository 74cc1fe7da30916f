"""`kiln crawl --check`'s fetch keeps to crawl.download_timeout_s for the whole answer, not per
read (issue 15: a page sending one byte a second held it for as long as the page lasted)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from crawlers.check import CheckError, Fetched, fetch, format_report
from crawlers.fields import FieldResult
from tasks.core.params import CrawlParams, FieldSelector


class _Drip(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        body = b"<html>" + b"x" * 40 + b"</html>"
        self.send_response(200 if self.path == "/drip" else 404)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path != "/drip":
            self.wfile.write(body)
            return
        for byte in body:  # one byte every 0.2 s: 9.6 s in all
            try:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
            except OSError:  # the client gave up: what the test wants
                return
            time.sleep(0.2)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def dripping() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Drip)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def test_a_dripping_page_is_cut_at_the_download_timeout(dripping: str) -> None:
    cfg = CrawlParams(start_urls=[f"{dripping}/"], allowed_domains=["127.0.0.1"],
                      allow_loopback=True, obey_robots=False, item_url_pattern="/x",
                      fields={"title": FieldSelector(css="h1::text")},
                      download_timeout_s=1.5)  # fmt: skip
    started = time.monotonic()
    with pytest.raises(CheckError, match=r"took longer than crawl.download_timeout_s \(1.5 s\)"):
        fetch(f"{dripping}/drip", cfg)
    assert time.monotonic() - started < 1.5 + 1.0  # seconds; urllib alone took the page's 9.6 s


def test_a_404_body_is_still_read(dripping: str) -> None:
    cfg = CrawlParams(start_urls=[f"{dripping}/"], allowed_domains=["127.0.0.1"],
                      allow_loopback=True, obey_robots=False, item_url_pattern="/x",
                      fields={"title": FieldSelector(css="h1::text")},
                      download_timeout_s=30)  # fmt: skip
    got = fetch(f"{dripping}/missing", cfg)
    assert got.status == 404 and got.body.endswith(b"</html>")


def test_report_leads_with_the_status_and_says_why_a_page_is_rejected() -> None:
    cfg = CrawlParams(start_urls=["http://127.0.0.1/"], allowed_domains=["127.0.0.1"],
                      allow_loopback=True, item_url_pattern="/item/",
                      fields={"note": FieldSelector(css="p::text", required=False),
                              "title": FieldSelector(css="h1::text"),
                              "price": FieldSelector(css="b::text", type="float")})  # fmt: skip
    got = Fetched("http://127.0.0.1/item/1", 200, "text/html", b"<html></html>")
    report = {"note": FieldResult("n", 1), "title": FieldResult(None, 0),
              "price": FieldResult(None, 1, "price: 'abc' is not a number")}
    text, kept = format_report(got, report, cfg)
    lines = text.splitlines()
    assert not kept and lines[0].startswith("HTTP 200  http://127.0.0.1/item/1")
    assert lines[1] == "rejected: missing required field(s): title; price: 'abc' is not a number"
    assert lines[3] == "required fields:" and lines[6] == "optional fields:", text
    assert lines[4].startswith("  title  (matched nothing)")
    assert lines[5].startswith("  price  (unreadable: price: 'abc' is not a number)")
    report["title"], report["price"] = FieldResult("T", 1), FieldResult(2.5, 1)
    text, kept = format_report(got, report, cfg)
    assert kept and text.splitlines()[1].startswith("kept: ")
