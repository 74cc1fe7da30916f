"""Limits and partial crawls against the demo shop on loopback:
`pytest tests/integration/test_crawl_partial.py`.

`crawl.max_pages` counts pages and `crawl.max_files` downloads, and reports/crawl.json counts the
same things under the same names (crawlers/limits.py). A crawl stopped at a limit is partial:
the crawl stage refuses it unless `crawl.allow_partial` (data/raw, reports/crawl.json and DVC's
record stay as they were, the flow stops after the crawl without retrying it, and the crawl's
task run and the run summary say which limit to raise); with `allow_partial` it replaces
data/raw and says it is partial. The HTTP cache of a real crawl takes at most twice the bytes
it holds.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from crawlers.demo_server import DemoSiteServer
from crawlers.demo_site import build_site
from crawlers.httpcache_sqlite import CACHE_FILE, held_bytes
from tasks.core.io import read_jsonl
from tasks.core.params import DemoSiteParams
from tasks.core.progress import parse
from tests.project import (
    dvc,
    flow_run_id,
    free_port,
    make_project,
    prefect_api,
    run,
    task_run,
    task_run_states,
    tiny_demo_overrides,
    write_params,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SITE = DemoSiteParams(n_items=60, per_page=10, n_duplicates=0, n_broken=0, sections=[],
                      bad_label_share=0.0)  # fmt: skip
N_LIST_PAGES = 6  # 60 items, 10 a page


@pytest.fixture(scope="module")
def server():
    with DemoSiteServer(build_site(SITE).pages, "127.0.0.1", 0) as srv:
        yield srv


def _project(root: Path, url: str, **crawl: object) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params["crawl"].update({"start_urls": [url], "concurrency": 4, **crawl})
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return root


def _crawl(project: Path, **crawl: object):  # noqa: ANN202 (CompletedProcess)
    if crawl:
        params = yaml.safe_load((project / "params.yaml").read_text(encoding="utf-8"))
        params["crawl"].update(crawl)
        (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return run([sys.executable, "-m", "tasks.crawl"], project, check=False, timeout=120,
               extra_env={"PYTHONPATH": str(REPO)})  # fmt: skip


def _json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}  # fmt: skip


def test_pages_and_files_are_counted_apart_as_the_server_saw_them(server, tmp_path: Path) -> None:
    project = _project(tmp_path, server.url, max_pages=N_LIST_PAGES + SITE.n_items)
    mark = len(server.requests)
    result = _crawl(project)
    assert result.returncode == 0, result.stderr[-3000:]
    asked = server.requests[mark:]
    report = _json(project / "reports/crawl.json")
    # The limit is exactly the site's pages: reached at the last one, but nothing was left.
    html = [p for p in asked if p == "/" or p.startswith(("/page/", "/item/"))]
    assert report["pages"] == len(html) == N_LIST_PAGES + SITE.n_items
    assert report["files"] == len([p for p in asked if p.startswith("/img/")]) == SITE.n_items
    assert report["items"] == SITE.n_items
    # A site that fits its limit exactly is whole: nothing more turned up.
    assert (report["partial"], report["partial_reason"]) == (False, None)
    assert report["finish_reason"] == "finished"
    # The crawl's progress: parseable lines, counted as the report counts, against the limits.
    shown = [line for text in result.stderr.splitlines() if (line := parse(text)) is not None]
    pages = [line for line in shown if line.what == "crawl.pages"]
    files = [line for line in shown if line.what == "crawl.files"]
    assert (pages[0].done, pages[0].total, pages[0].unit) == (0, report["pages"], "pages")
    assert pages[-1].finished and pages[-1].done == report["pages"]
    assert pages[-1].eta_s == 0 and pages[-1].rate > 0
    assert files[-1].finished and (files[-1].done, files[-1].total) == (report["files"], None)

    # The HTTP cache of that crawl: at most twice the bytes of the headers and bodies it holds.
    cache = held_bytes(project / ".kiln/httpcache" / CACHE_FILE)
    assert cache["responses"] == len(html) + SITE.n_items
    assert cache["disk_bytes"] <= 2 * cache["held_bytes"], cache


def test_a_partial_crawl_is_refused_by_default_and_kept_with_allow_partial(server, tmp_path):
    project = _project(tmp_path, server.url)
    assert _crawl(project).returncode == 0  # the whole shop
    whole = _files(project / "data") | _files(project / "reports")
    assert _json(project / "reports/crawl.json")["partial"] is False

    # max_pages counts pages only: with one image per item, 20 pages are 20 pages, not ~10.
    refused = _crawl(project, max_pages=20)
    assert refused.returncode == 3, refused.stderr[-3000:]
    message = refused.stderr
    assert "the crawl is partial: stopped at crawl.max_pages=20 (" in message
    assert "raise crawl.max_pages in params.yaml" in message
    assert "crawl.allow_partial: true" in message
    partial = _json(project / "reports/crawl_partial.json")
    assert partial["partial"] is True and partial["finish_reason"] == "kiln_max_pages"
    # and those the downloader held when it stopped (up to CONCURRENT_REQUESTS = 16 of them)
    assert 20 <= partial["pages"] <= 20 + 2 * 16
    assert partial["partial_reason"] == f"stopped at crawl.max_pages=20 ({partial['pages']} pages)"
    assert partial["files"] >= 1 and partial["items"] < SITE.n_items
    # Nothing the next stages read changed: data/raw and its report are the whole shop's.
    assert _files(project / "data") | _files(project / "reports") == whole | {
        "crawl_partial.json": (project / "reports/crawl_partial.json").read_bytes()
    }

    from flows.crawl_report import crawl_figures, partial_crawl_line  # noqa: PLC0415 (Prefect)

    shown = crawl_figures(project)  # the crawl task run's artifact
    assert shown["partial"] is True and shown["pages"] == partial["pages"]
    assert shown["data/raw"] == "left as it was (crawl.allow_partial: false)"
    assert partial_crawl_line(project).startswith("**Partial crawl refused:** stopped at crawl.")

    kept = _crawl(project, max_pages=20, allow_partial=True)
    assert kept.returncode == 0, kept.stderr[-3000:]
    assert "the crawl is partial: stopped at crawl.max_pages=20" in kept.stderr
    report = _json(project / "reports/crawl.json")
    assert report["partial"] is True and report["partial_reason"].startswith(
        "stopped at crawl.max_pages=20 ("
    )
    items = read_jsonl(project / "data/raw/items.jsonl")
    assert len(items) == report["items"] < SITE.n_items
    assert not (project / "reports/crawl_partial.json").exists()
    assert partial_crawl_line(project).startswith("**Partial crawl:** stopped at crawl.max_pages")

    # Another limit, the same rule: the downloads.
    by_files = _crawl(project, max_pages=10_000, max_files=5, allow_partial=False)
    assert by_files.returncode == 3
    assert "stopped at crawl.max_files=5 (" in by_files.stderr
    assert "raise crawl.max_files" in by_files.stderr
    assert _json(project / "reports/crawl_partial.json")["finish_reason"] == "kiln_max_files"


def test_a_crawl_stopped_at_max_items_is_partial_like_the_other_limits(server, tmp_path):
    project = _project(tmp_path, server.url)
    refused = _crawl(project, max_items=15)
    assert refused.returncode == 3, refused.stderr[-3000:]
    partial = _json(project / "reports/crawl_partial.json")
    assert partial["partial"] is True and partial["finish_reason"] == "kiln_max_items"
    assert partial["partial_reason"] == f"stopped at crawl.max_items=15 ({partial['items']} items)"
    assert partial["items"] == 15
    assert "raise crawl.max_items in params.yaml" in refused.stderr
    assert not (project / "data/raw/items.jsonl").exists()  # nothing kept

    from flows.crawl_report import crawl_figures, partial_crawl_line  # noqa: PLC0415 (Prefect)

    assert crawl_figures(project)["finish_reason"] == "kiln_max_items"
    assert partial_crawl_line(project).startswith(
        "**Partial crawl refused:** stopped at crawl.max_items=15 (15 items)"
    )
    kept = _crawl(project, max_items=15, allow_partial=True)
    assert kept.returncode == 0, kept.stderr[-3000:]
    assert len(read_jsonl(project / "data/raw/items.jsonl")) == 15
    assert partial_crawl_line(project).startswith("**Partial crawl:** stopped at crawl.max_items")
    # A limit the site fits into is no limit: the whole shop is not partial.
    whole = _crawl(project, max_items=SITE.n_items, allow_partial=False)
    assert whole.returncode == 0, whole.stderr[-3000:]
    report = _json(project / "reports/crawl.json")
    assert (report["partial"], report["items"]) == (False, SITE.n_items)
    assert partial_crawl_line(project) is None


def _kiln_run(project: Path, api_url: str):  # noqa: ANN202 (CompletedProcess)
    return run([sys.executable, "-m", "flows.cli", "run", "--project", str(project)], project,
               check=False, extra_env={"PREFECT_API_URL": api_url})  # fmt: skip


def test_the_flow_stops_after_a_refused_partial_crawl(prefect_server, tmp_path: Path) -> None:
    api = prefect_server.api_url
    overrides = tiny_demo_overrides(free_port())
    project = make_project(tmp_path, overrides)
    # A whole crawl recorded by DVC, as a finished run leaves it.
    site = yaml.safe_load((project / "params.yaml").read_text())["demo_site"]
    from crawlers.demo_site import running_demo_site  # noqa: PLC0415

    with running_demo_site(DemoSiteParams(**site), port=site["port"]):
        run([sys.executable, "-m", "tasks.crawl"], project)
    dvc("commit", "--force", "crawl", cwd=project)
    lock = (project / "dvc.lock").read_bytes()
    raw = _files(project / "data/raw")

    write_params(project, {"crawl": {"max_pages": 10}})  # the shop has 150 items
    result = _kiln_run(project, api)
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert "stopped at crawl.max_pages=10" in output and "raise crawl.max_pages" in output
    run_id = flow_run_id(output)
    assert task_run_states(api, run_id) == {"crawl": "Failed"}  # no stage after it ran
    crawl = task_run(api, run_id, "crawl")
    assert crawl["run_count"] == 1  # not retried: it would stop at the same limit
    artifacts = prefect_api(api, "/artifacts/filter",
                            {"artifacts": {"flow_run_id": {"any_": [run_id]}}})  # fmt: skip
    by_key = {a["key"]: a for a in artifacts}
    assert by_key["crawl"]["task_run_id"] == crawl["id"]  # on the crawl's own task run
    table = by_key["crawl"]["data"]  # a table artifact's data: its rows as JSON
    figures = {row["figure"]: row["value"] for row in json.loads(table)}
    assert figures["partial"] is True and figures["finish_reason"] == "kiln_max_pages"
    assert (
        "**Partial crawl refused:** stopped at crawl.max_pages=10"
        in (by_key["run-summary"]["data"])
    )
    # DVC's record and data/raw are the whole crawl's: `dvc repro` has no new crawl to train on.
    assert (project / "dvc.lock").read_bytes() == lock
    assert _files(project / "data/raw") == raw
    assert json.loads(dvc("status", "--json", "crawl", cwd=project).stdout or "{}") == {}
