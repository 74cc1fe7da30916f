"""The Prefect UI, rendered in headless Chromium, shows runs from the server's API.

A UI that cannot reach its API still loads, but shows "Can't connect to Server API"; this test
looks at the rendered page. It needs Debian's `chromium` (tests/chromium.py).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from flows.dvc_stages import FROZEN_REASON, UP_TO_DATE_REASON, StageOutcome
from flows.summary import summary_markdown, validation_markdown
from tests.chromium import evaluate, needs_chromium, render
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


# The character `end` finishes on, in the rendered page: where its right edge lies beyond a box
# that clips what overflows it (a table's scroll box) or beyond the window, it is cut off.
_END_SHOWN = """(() => {
  const end = %s;
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  let node;
  while ((node = walker.nextNode()) && !node.textContent.includes(end)) {}
  if (!node) return false;
  const range = document.createRange();
  const at = node.textContent.indexOf(end) + end.length;
  range.setStart(node, at - 1);
  range.setEnd(node, at);
  const last = range.getBoundingClientRect();
  for (let box = node.parentElement; box; box = box.parentElement) {
    if (getComputedStyle(box).overflowX !== 'visible' &&
        last.right > box.getBoundingClientRect().right + 1)
      return 'cut off by ' + box.tagName + '.' + box.className;
  }
  return last.right <= document.documentElement.clientWidth ? 'whole' : 'cut off by the window';
})()"""


@needs_chromium
def test_run_summary_shows_each_reason_whole(prefect_server, tmp_path: Path) -> None:
    """The run summary's reasons (as long as DVC's status makes them) read to their end in the
    UI: in a table cell, which the UI does not wrap, the end was cut off."""
    reason = ("changed deps: data/raw modified, labels/overrides.csv modified, tasks/core modified "
              "and 2 more; changed outs: data/validated modified")
    outcomes = [StageOutcome("crawl", True, FROZEN_REASON), StageOutcome("validate", True, reason),
                StageOutcome("clean", False, UP_TO_DATE_REASON)]
    flow = prefect_api(prefect_server.api_url, "/flows/", {"name": "ui-probe"})
    flow_run = prefect_api(prefect_server.api_url, "/flow_runs/", {"flow_id": flow["id"]})
    artifact = prefect_api(prefect_server.api_url, "/artifacts/", {
        "type": "markdown", "key": "run-summary", "flow_run_id": flow_run["id"],
        "data": summary_markdown(tmp_path, outcomes, None)})
    shown = evaluate(f"{prefect_server.ui_url}/artifacts/artifact/{artifact['id']}",
                     _END_SHOWN % json.dumps(reason[-30:]), tmp_path / "chromium")
    assert shown == "whole", shown


@needs_chromium
def test_validation_shows_each_example_whole(prefect_server, tmp_path: Path) -> None:
    """The validation artifact's examples (url: value, three per failed expectation, as the
    validate stage writes them) read to their end in the UI."""
    examples = [{"url": f"http://127.0.0.1:8765/item/digit-{i:04d}", "value": value}
                for i, value in ((24, "sevn"), (311, "too"), (1207, "nein"))]  # fmt: skip
    summary = {
        "success": False, "n_in": 1834, "n_valid": 1816, "n_quarantined": 18,
        "quarantine_share": 0.009815, "data_docs": "reports/validation/index.html",
        "failures": [], "warnings": ["drift new_item_share: 0.998675 > threshold 0.5"],
        "expectations": [{
            "expectation": "expect_column_values_to_be_in_set(label_normalised)",
            "severity": "fail", "success": False, "raised": None, "failed_rows": 18,
            "observed": None, "examples": examples,
        }],
    }  # fmt: skip
    (tmp_path / "reports" / "validation").mkdir(parents=True)
    (tmp_path / "reports" / "validation" / "summary.json").write_text(json.dumps(summary))
    flow = prefect_api(prefect_server.api_url, "/flows/", {"name": "ui-probe"})
    flow_run = prefect_api(prefect_server.api_url, "/flow_runs/", {"flow_id": flow["id"]})
    artifact = prefect_api(prefect_server.api_url, "/artifacts/", {
        "type": "markdown", "key": "validation", "flow_run_id": flow_run["id"],
        "data": validation_markdown(tmp_path)})
    shown = evaluate(f"{prefect_server.ui_url}/artifacts/artifact/{artifact['id']}",
                     _END_SHOWN % json.dumps(": 'nein'"), tmp_path / "chromium")
    assert shown == "whole", shown
