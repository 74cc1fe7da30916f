"""Headless Chromium for the tests that look at a rendered page (Debian's `chromium`, which
`.ci/run` installs; the tests that need it are skipped, saying why, where it is missing).

`render` returns the DOM after the page's scripts ran, so a test sees what a person would: the
operations Swagger UI drew, the Prefect UI's runs, the canvas of a Vega chart.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

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
