"""Headless Chromium for the tests that look at a rendered page (Debian's `chromium`, which
`.ci/run` installs; the tests that need it are skipped, saying why, where it is missing).

`render` returns the DOM after the page's scripts ran, so a test sees what a person would: the
operations Swagger UI drew, the Prefect UI's runs, the chart of a Vega plot. `evaluate` asks the
live page what no DOM dump shows (an image's naturalWidth: whether it loaded and decoded),
through Chromium's DevTools protocol.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from tests.project import free_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Flags that keep Chromium offline and quiet on a machine with no network. The resolver rule
# makes every host but localhost and 127.0.0.1 unreachable, so a page that still loads a script
# from a CDN fails here even on a machine that has a network.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync",
                  "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1"]
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed")


def render(url: str, profile: Path, budget_ms: int = 15000) -> str:
    """The page's DOM after its scripts ran (`budget_ms` of virtual time: 15 s is plenty for the
    Prefect UI)."""
    assert CHROMIUM is not None
    proc = subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
         f"--virtual-time-budget={budget_ms}", "--dump-dom", url],
        capture_output=True, text=True, timeout=120, check=True)
    return proc.stdout


def evaluate(url: str, expression: str, profile: Path, timeout_s: float = 30) -> Any:
    """The value of the JavaScript `expression` on `url`, once it is truthy (asked every 0.25 s;
    the last value after `timeout_s`)."""
    assert CHROMIUM is not None
    port = free_port()
    browser = subprocess.Popen(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
         f"--remote-debugging-port={port}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout_s
        page = _page_target(port, deadline)
        with connect(page["webSocketDebuggerUrl"], max_size=None) as ws:
            calls = iter(range(1, 1 << 30))

            def call(method: str, **params: Any) -> dict:
                n = next(calls)
                ws.send(json.dumps({"id": n, "method": method, "params": params}))
                while (reply := json.loads(ws.recv(timeout=timeout_s))).get("id") != n:
                    pass  # an event
                return reply.get("result", {})

            call("Page.navigate", url=url)
            while True:
                value = call("Runtime.evaluate", expression=expression,
                             returnByValue=True)["result"].get("value")
                if value or time.monotonic() > deadline:
                    return value
                time.sleep(0.25)
    finally:
        browser.terminate()
        browser.wait(timeout=30)


def _page_target(port: int, deadline: float) -> dict:
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                pages = [t for t in json.load(r) if t["type"] == "page"]
            if pages:
                return pages[0]
        except OSError:
            pass  # not listening yet
        assert time.monotonic() < deadline, "Chromium's DevTools did not answer"
        time.sleep(0.1)
