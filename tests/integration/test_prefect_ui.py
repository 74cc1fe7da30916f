"""The Prefect UI, rendered in headless Chromium, shows runs from the server's API.

A UI that cannot reach its API still loads, but shows "Can't connect to Server API"; this test
looks at the rendered page. It needs Debian's `chromium` (tests/chromium.py).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.chromium import needs_chromium, render
from tests.project import prefect_api

pytestmark = pytest.mark.integration


@needs_chromium
def test_ui_renders_a_flow_run_from_the_api(prefect_server, tmp_path: Path) -> None:
    flow = prefect_api(prefect_server.api_url, "/flows/", {"name": "ui-probe"})
    run_name = f"ui-probe-{uuid.uuid4().hex[:8]}"
    flow_run = prefect_api(prefect_server.api_url, "/flow_runs/",
                           {"flow_id": flow["id"], "name": run_name})
    dom = render(f"{prefect_server.ui_url}/runs/flow-run/{flow_run['id']}", tmp_path / "chromium")
    assert "Can't connect to Server API" not in dom
    assert run_name in dom  # fetched from the API by the UI's scripts, not in the HTML shell
