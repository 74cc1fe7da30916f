"""Refresh by revisit interval (`crawl.revisit_after_s`, crawlers/revisit.py) against the demo shop
on loopback: `pytest tests/integration/test_crawl_refresh.py`.

`python -m tasks.crawl` runs as DVC runs it; the demo server records every request, so each test
proves which pages a refresh asked for and which it kept without asking.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest
import yaml

from crawlers.demo_sections import jokes_pages
from crawlers.demo_server import DemoSiteServer, Page
from crawlers.demo_site import build_site
from tasks.core.io import read_jsonl
from tasks.core.params import DemoSiteParams
from tests.project import run

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SITE = DemoSiteParams(n_items=30, per_page=10, n_duplicates=0, n_broken=0, sections=[],
                      bad_label_share=0.0)  # fmt: skip
N_LIST_PAGES = 3  # 30 items, 10 a page


def _project(root: Path, url: str, **crawl: object) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params["crawl"].update({"start_urls": [url], **crawl})
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return root


def _crawl(project: Path) -> dict:
    run(
        [sys.executable, "-m", "tasks.crawl"],
        project,
        timeout=120,
        extra_env={"PYTHONPATH": str(REPO)},
    )
    return json.loads((project / "reports/crawl.json").read_text())


def _raw(project: Path) -> dict[str, bytes]:
    raw = project / "data/raw"
    return {str(p.relative_to(raw)): p.read_bytes() for p in sorted(raw.rglob("*")) if p.is_file()}


def _since(server: DemoSiteServer, mark: int, prefix: str) -> list[str]:
    return [p for p in server.requests[mark:] if p.startswith(prefix)]


def test_unchanged_refresh_asks_only_for_list_pages_and_gives_the_same_bytes(tmp_path: Path):
    with DemoSiteServer(build_site(SITE).pages, "127.0.0.1", 0) as server:
        project = _project(tmp_path, server.url, revisit_after_s=3600)
        first = _crawl(project)
        assert first["items"] == SITE.n_items and first["kept"] == 0
        before = _raw(project)
        mark = len(server.requests)
        again = _crawl(project)
        assert _since(server, mark, "/item/") == []  # checked a moment ago: kept
        assert _since(server, mark, "/img/") == []
        listed = [p for p in server.requests[mark:] if p == "/" or p.startswith("/page/")]
        assert len(listed) == N_LIST_PAGES  # every list page is re-checked
        assert again["kept"] == SITE.n_items and again["items"] == SITE.n_items
        assert _raw(project) == before  # byte-identical data/raw, first_seen included


def _unlist(pages: dict[str, Page], sku: str) -> None:
    """Take `/item/<sku>` off its list page and off the site (404)."""
    link = f'<li><a class="item" href="/item/{sku}">{sku}</a></li>\n'.encode()
    for path, page in pages.items():
        if link in page.body:
            pages[path] = dataclasses.replace(page, body=page.body.replace(link, b""))
    del pages[f"/item/{sku}"]


def test_new_and_removed_items_are_seen_at_once(tmp_path: Path):
    full = build_site(SITE).pages
    pages = dict(full)  # served by reference: the test changes the site under the server
    late = [f"digit-{i:04d}" for i in range(25, 30)]
    for sku in late:  # not on the site yet at the first crawl
        _unlist(pages, sku)
    with DemoSiteServer(pages, "127.0.0.1", 0) as server:
        project = _project(tmp_path, server.url, revisit_after_s=3600)
        assert _crawl(project)["items"] == 25
        pages.clear()
        pages.update(full)  # the five arrive ...
        _unlist(pages, "digit-0003")  # ... and one leaves
        mark = len(server.requests)
        report = _crawl(project)
        fetched = _since(server, mark, "/item/")
    skus = {r["url"].rsplit("/", 1)[1] for r in read_jsonl(project / "data/raw/items.jsonl")}
    assert sorted(fetched) == [f"/item/{sku}" for sku in late]  # only the new ones were asked for
    assert skus == {f"digit-{i:04d}" for i in range(30)} - {"digit-0003"}
    assert report["kept"] == 24 and report["items"] == 29


def test_pages_are_checked_again_once_their_interval_has_passed(tmp_path: Path):
    with DemoSiteServer(build_site(SITE).pages, "127.0.0.1", 0) as server:
        project = _project(tmp_path, server.url, revisit_after_s=3600)
        _crawl(project)
        state_path = project / ".kiln/crawl-state.json"
        state = json.loads(state_path.read_text())
        for visit in list(state["pages"].values())[:7]:  # 7 pages last checked 2 hours ago
            visit["checked_at"] -= 7200
        state_path.write_text(json.dumps(state))
        mark = len(server.statuses)
        report = _crawl(project)
        asked = [(p, s) for p, s in server.statuses[mark:] if p.startswith("/item/")]
    assert len(asked) == 7 and {s for _, s in asked} == {304}  # conditional, nothing changed
    assert report["kept"] == SITE.n_items - 7


def test_without_a_revisit_interval_every_item_page_is_checked(tmp_path: Path):
    with DemoSiteServer(build_site(SITE).pages, "127.0.0.1", 0) as server:
        project = _project(tmp_path, server.url)  # revisit_after_s: 0, as params.yaml has it
        _crawl(project)
        mark = len(server.requests)
        report = _crawl(project)
        assert len(_since(server, mark, "/item/")) == SITE.n_items
    assert report["kept"] == 0


def test_changed_crawl_params_check_every_page_again(tmp_path: Path):
    with DemoSiteServer(build_site(SITE).pages, "127.0.0.1", 0) as server:
        project = _project(tmp_path, server.url, revisit_after_s=3600)
        _crawl(project)
        _project(tmp_path, server.url, revisit_after_s=3600, user_agent="kiln-test/2")
        mark = len(server.requests)
        report = _crawl(project)
        assert len(_since(server, mark, "/item/")) == SITE.n_items  # rows may differ now
    assert report["kept"] == 0


def test_a_changed_list_entry_fetches_its_detail_page_again(tmp_path: Path):
    """The jokes board: the language (`from: list`) is on the list page, the text on the joke's
    own page. A block whose language changed sends its detail page to be fetched again."""
    pages = dict(jokes_pages())
    board = pages["/jokes/"]
    with DemoSiteServer(pages, "127.0.0.1", 0) as server:
        params = yaml.safe_load((REPO / "examples/jokes.params.yaml").read_text(encoding="utf-8"))
        params["crawl"].update(
            start_urls=[server.url + "jokes/"], follow=[], revisit_after_s=3600
        )  # the first board page only: 25 jokes
        tmp_path.joinpath("params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
        _crawl(tmp_path)
        first = {r["url"]: r for r in read_jsonl(tmp_path / "data/raw/items.jsonl")}
        relabelled = next(r for r in first.values() if r["label"] != "de")
        jid = relabelled["url"].rsplit("/", 1)[1]
        block = (
            f'<span class="lang">{relabelled["label"]}</span> <a class="joke" href="/jokes/{jid}"'
        )
        assert block.encode() in board.body
        pages["/jokes/"] = dataclasses.replace(
            board, body=board.body.replace(block.encode(), block.replace(
                f'"lang">{relabelled["label"]}<', '"lang">de<').encode())
        )  # fmt: skip
        mark = len(server.requests)
        report = _crawl(tmp_path)
        fetched = _since(server, mark, "/jokes/")
    rows = {r["url"]: r for r in read_jsonl(tmp_path / "data/raw/items.jsonl")}
    assert fetched == ["/jokes/", f"/jokes/{jid}"]  # the board, and the one changed joke
    assert rows[relabelled["url"]]["label"] == "de"
    assert {u: r for u, r in rows.items() if u != relabelled["url"]} == {
        u: r for u, r in first.items() if u != relabelled["url"]}  # fmt: skip
    assert report["kept"] == len(first) - 1 == 24


def test_kept_items_count_towards_max_items(tmp_path: Path):
    # Kept pages reach the writer in one batch per list page (crawlers.items.CarriedItem); the
    # limit still counts each of them, and a batch that crosses it is cut there.
    with DemoSiteServer(build_site(SITE).pages, "127.0.0.1", 0) as server:
        project = _project(tmp_path, server.url, revisit_after_s=3600, max_items=15,
                           concurrency=1, allow_partial=True)  # fmt: skip
        first = _crawl(project)
        assert first["items"] == 15 and first["kept"] == 0
        again = _crawl(project)
    assert again["items"] == 15  # not 15 kept plus what the second list page adds
    assert 10 <= again["kept"] <= 15  # the first list page's ten at least, not asked for again
    assert len(read_jsonl(project / "data/raw/items.jsonl")) == 15
