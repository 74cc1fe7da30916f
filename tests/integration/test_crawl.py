"""The crawl stage against the demo site on loopback: `pytest tests/integration/test_crawl.py`.

The site runs in this process (a background thread on a free port, with fault injection); the
stage runs as DVC runs it, `python -m tasks.crawl` in a temporary project directory whose
params.yaml points at the site. Covers the crawl faults: retries, failures listed with
status and reason, robots.txt (obeyed; unreachable means skip the host), refused URLs, dropped
connections, last-good data/raw kept on failure, byte-identical re-crawls.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

from crawlers.demo_server import DROP
from crawlers.demo_site import build_site, running_demo_site
from tasks.core.io import read_jsonl, write_jsonl
from tasks.core.params import DemoSiteParams

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SMALL = DemoSiteParams(n_items=40, per_page=10, n_duplicates=3, n_broken=2, bad_label_share=0.05)
FIELDS = {"title", "label", "image", "writer", "ink", "price"}  # params.yaml crawl.fields


@pytest.fixture(scope="module")
def demo():
    with running_demo_site(SMALL) as (url, server):
        yield url, server


def _project(root: Path, **crawl: object) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params["crawl"].update(crawl)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return root


def _crawl(project: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "tasks.crawl"]
    return subprocess.run(
        cmd, cwd=project, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def _ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stderr[-4000:]


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _report(project: Path) -> dict:
    return json.loads((project / "reports" / "crawl.json").read_text(encoding="utf-8"))


def _assert_warns_only_of_the_broken_page(log: str, site) -> None:  # noqa: ANN001 (DemoSite)
    """A normal first crawl warns only about the demo's deliberately broken page (HTTP 500):
    Scrapy gives up retrying it and the spider records it as failed. Not a disabled optional
    middleware, nor a deprecated setting."""
    (sku,) = [it.sku for it in site.items if it.broken == "500"]
    warnings = [
        line.split(" ", 3)[-1]
        for line in log.splitlines()
        if " WARNING " in line or " ERROR " in line
    ]
    assert len(warnings) == 2, warnings
    assert "Gave up retrying" in warnings[0], warnings
    assert f"/item/{sku}> (failed 3 times): 500 Internal Server Error" in warnings[0], warnings
    assert warnings[1].endswith(f"/item/{sku}: HTTP 500 after 2 retries"), warnings


def test_demo_crawl_is_complete_and_byte_identical_when_repeated(demo, tmp_path: Path) -> None:
    url, server = demo
    site = build_site(SMALL)
    project = _project(tmp_path, start_urls=[url])
    first = _crawl(project)
    _ok(first)
    raw = project / "data" / "raw"
    _assert_warns_only_of_the_broken_page(first.stderr, site)

    items = read_jsonl(raw / "items.jsonl")
    by_url = {row["url"]: row for row in items}
    assert [row["url"] for row in items] == sorted(url + p[1:] for p in site.good_item_paths)
    for row in items:
        assert set(row) == FIELDS | {"url", "content_hash", "first_seen", "image_url", "image_path"}
    for it in (it for it in site.items if it.duplicate):
        original, dup = by_url[f"{url}item/{it.sku}"], by_url[f"{url}item/{it.sku}-dup"]
        assert dup["image_path"] == original["image_path"]
        assert dup["label"] == original["label"]

    rejects = read_jsonl(raw / "rejects.jsonl")
    broken = {it.sku: it.broken for it in site.items if it.broken}
    assert [(r["url"], r["status"]) for r in rejects] == sorted(
        (f"{url}item/{sku}", 500 if kind == "500" else 200) for sku, kind in broken.items()
    )
    assert {r["reason"] for r in rejects} == {
        "HTTP 500 after 2 retries",
        "missing required field(s): image, label",
    }

    images = sorted((raw / "images").iterdir())
    assert {f"images/{p.name}" for p in images} == {row["image_path"] for row in items}
    for path in images:
        data = path.read_bytes()
        assert path.name == hashlib.sha256(data).hexdigest() + ".png"
        image = Image.open(io.BytesIO(data))
        assert (image.format, image.size, image.mode) == ("PNG", (8, 8), "L")

    assert server.requested("/admin") == []
    report = _report(project)
    assert report["robots_forbidden"] >= 1  # the home page's /admin/ link, stopped by robots.txt
    assert (report["items"], report["rejects"], report["failures"]) == (41, 2, 1)
    assert report["retries"] == 2 and report["pages"] >= 41 + 2
    from flows.summary import crawl_stats  # noqa: PLC0415 (imports Prefect)

    shown = crawl_stats(project)  # the flow's "crawl" table artifact
    assert shown["items"] == 41 and shown["pages"] == report["pages"] and "pages_per_s" in shown

    # An old first_seen survives a re-crawl of unchanged pages, and nothing else changes.
    write_jsonl(raw / "items.jsonl", [{**r, "first_seen": "2000-01-01T00:00:00Z"} for r in items])
    before = _files(raw)
    _ok(_crawl(project))
    assert _files(raw) == before


def test_503_twice_then_ok_gives_the_item_always_503_a_reject(demo, tmp_path: Path) -> None:
    url, server = demo
    seen = len(server.requested("/item/digit-0001"))
    server.fail_next("/item/digit-0001", [503, 503])
    server.fail_next("/item/digit-0003", [503, 503, 503])
    project = _project(tmp_path, start_urls=[f"{url}item/digit-0001", f"{url}item/digit-0003"])
    _ok(_crawl(project))
    raw = project / "data" / "raw"
    assert [r["url"] for r in read_jsonl(raw / "items.jsonl")] == [f"{url}item/digit-0001"]
    assert read_jsonl(raw / "rejects.jsonl") == [
        {"url": f"{url}item/digit-0003", "status": 503, "reason": "HTTP 503 after 2 retries"}
    ]
    report = _report(project)
    assert (report["retries"], report["failures"], report["items"]) == (4, 1, 1)
    assert len(server.requested("/item/digit-0001")) - seen == 3


def test_connection_dropped_mid_body_is_retried(demo, tmp_path: Path) -> None:
    url, server = demo
    server.fail_next("/item/digit-0005", [DROP])
    server.fail_next("/img/digit-0005.png", [DROP])
    project = _project(tmp_path, start_urls=[f"{url}item/digit-0005"])
    _ok(_crawl(project))
    items = read_jsonl(project / "data" / "raw" / "items.jsonl")
    assert [row["label"] for row in items] == [build_site(SMALL).items[5].label]
    assert _report(project)["retries"] == 2


@pytest.mark.parametrize(
    ("start_url", "loopback", "message"),
    [
        ("file:///etc/passwd", True, "scheme file:// is not http(s)"),
        ("http://example.com/", True, "host example.com is not in crawl.allowed_domains"),
        ("http://127.0.0.1:1/", False, "loopback address"),
    ],
)
def test_refused_start_url_fails_before_crawling(
    tmp_path: Path, start_url: str, loopback: bool, message: str
) -> None:
    project = _project(tmp_path, start_urls=[start_url], allow_loopback=loopback)
    result = _crawl(project)
    assert result.returncode == 2
    assert message in result.stderr and "refused" in result.stderr
    assert not (project / "data").exists()


def test_failed_crawl_leaves_the_last_good_raw(demo, tmp_path: Path) -> None:
    url, server = demo
    project = _project(tmp_path, start_urls=[f"{url}item/digit-0007"])
    _ok(_crawl(project))
    before = _files(project / "data") | _files(project / "reports")
    server.fail_next("/robots.txt", [503, 503, 503])  # RFC 9309: unreachable -> skip the host
    result = _crawl(project)
    assert result.returncode == 1
    assert "zero items" in result.stderr and "robots.txt unreachable" in result.stderr
    assert _files(project / "data") | _files(project / "reports") == before
