"""GX Data Docs render offline: styled, their scripts run, the index lists the validation runs.

The pages are served over http as `kiln data-docs` serves them (tasks/core/data_docs.py) and
rendered in headless Chromium, which reaches no host but loopback (tests/chromium.py): a page
that still loaded Bootstrap or jQuery from a CDN would render bare here.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tasks.core import data_docs
from tasks.core.params import load_params
from tasks.validate import validate_items
from tests.chromium import evaluate, needs_chromium
from tests.project import REPO, env, free_port, run
from tests.raw_fixture import Dirt, build_raw, write_params

pytestmark = pytest.mark.integration

# Asked of the loaded page: Bootstrap's stylesheet applies (`d-none` hides), the scripts ran
# (jQuery, bootstrap-table drew its tables, Vega loaded), Font Awesome's font is the icons', and
# the rows the index's table drew (from its data, by bootstrap-table).
PAGE_FACTS = """(() => {
  if (document.readyState !== 'complete') return null;
  const probe = document.createElement('div');
  probe.className = 'd-none';
  document.body.appendChild(probe);
  const icon = document.querySelector('.fas, .far, .fa');
  const resources = performance.getEntriesByType('resource').map(r => r.name);
  return JSON.stringify({
    d_none: getComputedStyle(probe).display,
    jquery: typeof window.jQuery,
    bootstrap_tables: document.querySelectorAll('.bootstrap-table').length,
    vega: typeof window.vegaEmbed,
    icon_font: icon ? getComputedStyle(icon).fontFamily : null,
    rows: [...document.querySelectorAll('.bootstrap-table tbody tr')].map(tr => tr.innerText),
    resources: resources,
  });
})()"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data-docs")
    limits = {"validate": {"min_rows": 100, "max_quarantine_share": 0.05}}
    params = load_params(write_params(root / "params", limits))
    rows = build_raw(root, 200, Dirt(unknown_labels=3))
    outcome = validate_items(pd.DataFrame(rows, dtype=object), root / "data" / "raw",
                             params.labels, params.validate_)
    outcome.suite.write_docs(root / "validation")
    return root / "validation"


@pytest.fixture(scope="module")
def served(site: Path) -> Iterator[str]:
    server = data_docs.server(site, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _facts(url: str, profile: Path) -> dict:
    return json.loads(evaluate(url, PAGE_FACTS, profile))


def test_no_page_loads_anything_from_another_host(site: Path) -> None:
    pages = list(site.rglob("*.html"))
    assert len(pages) >= 3  # the index, the suite, two validation runs
    for page in pages:
        html = page.read_text()
        assert not data_docs._LOADED.findall(html), page
        assert "cdn" not in html.lower() and "unpkg" not in html, page


def test_a_page_that_still_loads_from_a_cdn_fails_the_build(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text(
        '<link rel="stylesheet" href="https://cdn.example.org/new.css">')
    with pytest.raises(data_docs.OnlineAsset, match="https://cdn.example.org/new.css"):
        data_docs.localize(tmp_path)


@needs_chromium
def test_the_index_lists_the_runs_styled_and_its_links_work(site: Path, served: str,
                                                            tmp_path: Path) -> None:
    facts = _facts(f"{served}/index.html", tmp_path / "chromium")
    assert facts["d_none"] == "none"  # bootstrap.min.css applied
    assert facts["jquery"] == "function" and facts["vega"] == "function"
    assert facts["bootstrap_tables"] >= 1  # bootstrap-table's script drew the runs table
    assert '"Font Awesome 6 Free"' in facts["icon_font"]
    runs = " ".join(facts["rows"])
    assert "all_rows" in runs and "valid_rows" in runs  # both GX runs of the stage
    assert all(r.startswith(served) for r in facts["resources"]), facts["resources"]
    # Each row opens its result page: the index's data names the page, served here.
    index = (site / "index.html").read_text()
    for run_name in ("all_rows", "valid_rows"):
        link = next(p for p in (site / "validations").rglob("*.html") if run_name in str(p))
        path = link.relative_to(site).as_posix()
        assert f"'_table_row_link_path': '{path}'" in index
        with urllib.request.urlopen(f"{served}/{path}", timeout=10) as resp:  # noqa: S310
            assert resp.status == 200


@needs_chromium
def test_a_validation_result_page_renders_styled(site: Path, served: str, tmp_path: Path) -> None:
    page = next((site / "validations").rglob("*.html")).relative_to(site).as_posix()
    facts = _facts(f"{served}/{page}", tmp_path / "chromium")
    assert facts["d_none"] == "none"
    assert facts["jquery"] == "function" and facts["vega"] == "function"
    assert facts["bootstrap_tables"] >= 1
    assert all(r.startswith(served) for r in facts["resources"]), facts["resources"]


def test_kiln_data_docs_serves_the_project_s_data_docs(site: Path, tmp_path: Path) -> None:
    project = tmp_path / "project"
    missing = run([sys.executable, "-m", "flows.cli", "data-docs", "--project", str(project)],
                  REPO, check=False)
    assert missing.returncode == 1 and "no Data Docs in" in missing.stderr
    shutil.copytree(site, project / "reports" / "validation")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "data-docs", "--project", str(project),
         "--port", str(port)], cwd=REPO, env=env(), stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == (
            f"Data Docs: http://127.0.0.1:{port}/ (Ctrl-C stops)")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as resp:  # noqa: S310
            assert "Validation Results" in resp.read().decode()
        with urllib.request.urlopen(  # noqa: S310
                f"http://127.0.0.1:{port}/static/vendor/bootstrap.min.css", timeout=10) as resp:
            assert resp.headers["Content-Type"] == "text/css"
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
