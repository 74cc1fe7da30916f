"""List pages fetched ahead on a refresh (crawlers/prefetch.py) against the demo shop on loopback:
`pytest tests/integration/test_crawl_prefetch.py`.

`python -m tasks.crawl` runs as DVC runs it; the demo server records every request and status,
so each test proves what was fetched ahead, what the crawl then used, and that the result is
the one a crawl without fetching ahead gives.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest
import yaml

from crawlers.demo_server import DemoSiteServer
from crawlers.demo_site import build_site
from tasks.core.io import read_jsonl
from tasks.core.params import DemoSiteParams
from tests.project import run

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SITE = DemoSiteParams(n_items=30, per_page=10, n_duplicates=0, n_broken=0, sections=[],
                      bad_label_share=0.0)  # fmt: skip
LIST_PAGES = ["/", "/page/2", "/page/3"]  # 30 items, 10 a page; "/" is the start URL


def _project(root: Path, url: str, **crawl: object) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params["crawl"].update({"start_urls": [url], "revisit_after_s": 3600, **crawl})
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return root


def _crawl(project: Path) -> dict:
    # A short timeout: a crawl waiting for a prefetch that never settles would hang here.
    run([sys.executable, "-m", "tasks.crawl"], project, timeout=60,
        extra_env={"PYTHONPATH": str(REPO)})  # fmt: skip
    return json.loads((project / "reports/crawl.json").read_text())


def _listed(server: DemoSiteServer, mark: int) -> list[tuple[str, int]]:
    return [(p, s) for p, s in server.statuses[mark:] if p in LIST_PAGES]


def _rows(project: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "first_seen"}
            for r in read_jsonl(project / "data/raw/items.jsonl")]  # fmt: skip


def test_refresh_fetches_the_list_pages_ahead_and_asks_for_each_once(tmp_path: Path):
    pages = dict(build_site(SITE).pages)
    with DemoSiteServer(pages, "127.0.0.1", 0) as server:
        project = _project(tmp_path, server.url)
        assert _crawl(project)["fetched_ahead"] == 0  # nothing known yet
        state = json.loads((project / ".kiln/crawl-state.json").read_text())
        assert state["list_pages"] == [server.url.rstrip("/") + p for p in LIST_PAGES]
        before = (project / "data/raw/items.jsonl").read_bytes()
        # /page/2 answers slowly: the crawl reaches it while its prefetch is still under way,
        # and its request waits for that answer instead of asking again.
        pages["/page/2"] = dataclasses.replace(pages["/page/2"], delay_s=1.0)
        mark = len(server.statuses)
        report = _crawl(project)
        listed = _listed(server, mark)
    assert report["fetched_ahead"] == 2  # /page/2 and /page/3; "/" is fetched as the start
    assert sorted(listed) == [(p, 304) for p in LIST_PAGES]  # each once, conditionally
    assert report["pages"] == len(LIST_PAGES) and report["kept"] == SITE.n_items
    assert (project / "data/raw/items.jsonl").read_bytes() == before


def test_a_failed_prefetch_is_asked_again_normally(tmp_path: Path):
    # Without the HTTP cache: with it, a 5xx is answered from the cached copy (RFC 2616's rule,
    # as for any request), so the prefetch would not fail.
    with DemoSiteServer(build_site(SITE).pages, "127.0.0.1", 0) as server:
        project = _project(tmp_path, server.url, http_cache=False)
        _crawl(project)
        before = (project / "data/raw/items.jsonl").read_bytes()
        server.fail_next("/page/3", [503])  # the prefetch: not retried, no answer
        mark = len(server.statuses)
        report = _crawl(project)
        listed = _listed(server, mark)
    assert [s for p, s in listed if p == "/page/3"] == [503, 200]  # then the crawl's own request
    assert report["fetched_ahead"] == 1 and report["failures"] == 0
    assert (project / "data/raw/items.jsonl").read_bytes() == before


def test_a_list_page_no_longer_linked_is_fetched_but_not_crawled(tmp_path: Path):
    pages = dict(build_site(SITE).pages)
    with DemoSiteServer(pages, "127.0.0.1", 0) as server:
        project = _project(tmp_path, server.url)
        assert _crawl(project)["items"] == SITE.n_items
        # The site drops its last page from the chain (the page itself still answers).
        nav = b' <a rel="next" href="/page/3">next</a>'
        pages["/page/2"] = dataclasses.replace(
            pages["/page/2"], body=pages["/page/2"].body.replace(nav, b"")
        )
        mark = len(server.statuses)
        report = _crawl(project)
        listed = _listed(server, mark)
        fresh = _project(tmp_path / "fresh", server.url)  # a first crawl of the same site
        fresh_report = _crawl(fresh)
    assert ("/page/3", 304) in listed  # fetched ahead, then not used
    assert report["fetched_ahead"] == 1
    assert report["items"] == fresh_report["items"] == 20
    assert report["pages"] == 2  # the two list pages still linked; the kept items: no request
    assert _rows(project) == _rows(fresh)  # what a crawl that fetches nothing ahead finds
