"""Files besides the image (`crawl.file_fields`) against hand-made pages on loopback:
`pytest tests/integration/test_crawl_files.py`.

Each item page of this little archive has a scan (the image), a manual (one file) and a list of
attachments (a `list` field); `python -m tasks.crawl` runs as DVC runs it.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from crawlers.demo_server import DemoSiteServer, Page
from crawlers.demo_site import build_site
from tasks.core.io import read_jsonl
from tasks.core.params import DemoSiteParams
from tests.project import run

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
HTML = "text/html; charset=utf-8"
PNG = build_site(DemoSiteParams(n_items=20, n_duplicates=0, n_broken=0, sections=[],
                                bad_label_share=0.0)).pages["/img/digit-0000.png"]  # fmt: skip
PDF = b"%PDF-1.4\n% a manual\n%%EOF\n"


def _zip(text: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr(zipfile.ZipInfo("notes.txt", (2026, 1, 1, 0, 0, 0)), text)  # same bytes
    return buf.getvalue()


def _site(n_attachments: int) -> dict[str, Page]:
    pages = {"/robots.txt": Page(b"", "text/plain"), "/img/scan.png": PNG}
    links = []
    for n in range(3):
        extra = "".join(f'<a class="att" href="/files/{n}-{k}.zip">a{k}</a>'
                        for k in range(n_attachments))  # fmt: skip
        broken = '<a class="manual" href="/files/missing.pdf">m</a>' if n == 2 else (
            '<a class="manual" href="/files/manual.pdf">m</a>')  # fmt: skip
        body = (f'<h1 class="title">Doc {n}</h1><span class="label">{n}</span>'
                f'<img class="digit" src="/img/scan.png">{broken}{extra}')  # fmt: skip
        pages[f"/item/doc-{n}"] = Page(body.encode(), HTML)
        for k in range(n_attachments):
            pages[f"/files/{n}-{k}.zip"] = Page(_zip(f"doc {n} attachment {k}"), "application/zip")
        links.append(f'<li><a class="item" href="/item/doc-{n}">doc {n}</a></li>')
    pages["/files/manual.pdf"] = Page(PDF, "application/pdf")
    pages["/"] = Page(f'<ul class="items">{"".join(links)}</ul>'.encode(), HTML)
    return pages


def _crawl(project: Path, url: str) -> dict:
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params["crawl"].update(
        start_urls=[url],
        fields={
            "title": {"css": "h1.title::text"},
            "label": {"css": "span.label::text"},
            "image": {"css": "img.digit::attr(src)"},
            "manual": {"css": "a.manual::attr(href)"},
            "attachments": {"css": "a.att::attr(href)", "type": "list", "required": False},
        },
        file_fields=["manual", "attachments"],
    )
    (project / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    run(
        [sys.executable, "-m", "tasks.crawl"],
        project,
        timeout=120,
        extra_env={"PYTHONPATH": str(REPO)},
    )
    return json.loads((project / "reports/crawl.json").read_text())


def test_every_file_field_is_downloaded_under_its_hash(tmp_path: Path) -> None:
    with DemoSiteServer(_site(n_attachments=2), "127.0.0.1", 0) as server:
        report = _crawl(tmp_path, server.url)
    raw = tmp_path / "data/raw"
    rows = {r["title"]: r for r in read_jsonl(raw / "items.jsonl")}
    assert sorted(rows) == ["Doc 0", "Doc 1"] and report["items"] == 2
    [reject] = read_jsonl(raw / "rejects.jsonl")  # doc 2's manual answers 404: no item from it
    assert reject["url"].endswith("/item/doc-2") and "files/missing.pdf failed" in reject["reason"]
    manual = f"files/{hashlib.sha256(PDF).hexdigest()}.pdf"
    for n, row in enumerate(rows.values()):
        assert row["manual_path"] == manual  # one file: one path
        assert len(row["attachments_path"]) == 2  # a list field: a list of paths, in page order
        for k, rel in enumerate(row["attachments_path"]):
            data = (raw / rel).read_bytes()
            assert rel == f"files/{hashlib.sha256(data).hexdigest()}.zip"
            notes = zipfile.ZipFile(io.BytesIO(data)).read("notes.txt")
            assert notes == f"doc {n} attachment {k}".encode()
    assert (raw / manual).read_bytes() == PDF
    assert sorted(p.name for p in (raw / "files").iterdir()) == sorted(
        {Path(r).name for row in rows.values() for r in [row["manual_path"],
                                                           *row["attachments_path"]]}
    )  # fmt: skip


def test_a_changed_file_changes_the_content_hash(tmp_path: Path) -> None:
    with DemoSiteServer(_site(n_attachments=1), "127.0.0.1", 0) as server:
        _crawl(tmp_path, server.url)
        before = {
            r["url"]: r["content_hash"] for r in read_jsonl(tmp_path / "data/raw/items.jsonl")
        }
    site = _site(n_attachments=1)
    site["/files/0-0.zip"] = Page(_zip("doc 0, second edition"), "application/zip")
    host, port = server.url.removeprefix("http://").rstrip("/").split(":")
    with DemoSiteServer(site, host, int(port)):
        _crawl(tmp_path, server.url)
    after = {r["url"]: r["content_hash"] for r in read_jsonl(tmp_path / "data/raw/items.jsonl")}
    changed = sorted(u for u in before if before[u] != after[u])
    assert changed == [f"{server.url}item/doc-0"]  # only the page whose attachment changed
