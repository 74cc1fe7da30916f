"""The Prefect UI, rendered in headless Chromium, shows runs from the server's API.

A UI that cannot reach its API still loads, but shows "Can't connect to Server API"; this test
looks at the rendered page. It needs Debian's `chromium` (`.ci/run` installs it); without it the
test is skipped with that reason.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.project import prefect_api

pytestmark = pytest.mark.integration
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Flags that keep Chromium offline and quiet on a machine with no network (env/machines docs).
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


def render(url: str, profile: Path) -> str:
    """The page's DOM after its scripts ran (15 s of virtual time is plenty for the UI)."""
    assert CHROMIUM is not None
    proc = subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=15000",
         "--dump-dom", url], capture_output=True, text=True, timeout=120, check=True)
    return proc.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed")
def test_ui_renders_a_flow_run_from_the_api(prefect_server, tmp_path: Path) -> None:
    flow = prefect_api(prefect_server.api_url, "/flows/", {"name": "ui-probe"})
    run_name = f"ui-probe-{uuid.uuid4().hex[:8]}"
    flow_run = prefect_api(prefect_server.api_url, "/flow_runs/",
                           {"flow_id": flow["id"], "name": run_name})
    dom = render(f"{prefect_server.ui_url}/runs/flow-run/{flow_run['id']}", tmp_path / "chromium")
    assert "Can't connect to Server API" not in dom
    assert run_name in dom  # fetched from the API by the UI's scripts, not in the HTML shell
