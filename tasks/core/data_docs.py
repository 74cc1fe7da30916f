"""Great Expectations Data Docs that render offline, and a plain http server for them.

GX 1.x's page templates load Bootstrap, jQuery, bootstrap-table, Font Awesome, Vega and the logo
from CDNs and S3: opened with no network, a page is unstyled and its tables never draw.
`localize` copies the vendored files (data_docs_assets/, VENDORED.md says where each comes from)
into the site's `static/vendor/` and rewrites every page to load them from there, relative to the
page, so the site works from any directory and over http. A reference to a host that stays in a
page (a GX upgrade with a new CDN) fails the build, naming it, rather than a page that silently
renders bare.

`kiln data-docs` serves the site over http (`serve`): a browser does not follow a `file://` link
from an http page such as the Prefect UI, so the run's artifact links here.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "data_docs_assets"
VENDOR = Path("static") / "vendor"
DEFAULT_PORT = 8766

# The URL each GX template uses → the vendored file (relative to ASSETS).
CDN_FILES = {
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": "bootstrap.min.css",
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": "bootstrap.min.js",
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": "popper.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css":
        "bootstrap-table.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js":
        "bootstrap-table.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/"
    "bootstrap-table-filter-control.min.js": "bootstrap-table-filter-control.min.js",
    # the templates name 1.19.0 for the filter-control CSS, minified or not: the same rules
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/"
    "bootstrap-table-filter-control.min.css": "bootstrap-table-filter-control.min.css",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/"
    "bootstrap-table-filter-control.css": "bootstrap-table-filter-control.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/"
    "bootstrap-datepicker.min.css": "bootstrap-datepicker.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/"
    "bootstrap-datepicker.min.js": "bootstrap-datepicker.min.js",
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/"
    "bootstrap-prefers-dark.css": "bootstrap-prefers-dark.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css":
        "fontawesome/css/all.min.css",
    "https://cdn.jsdelivr.net/npm/vega@5": "vega.min.js",
    "https://cdn.jsdelivr.net/npm/vega-lite@5": "vega-lite.min.js",
    "https://cdn.jsdelivr.net/npm/vega-embed@6": "vega-embed.min.js",
}
# The navbar's logo comes from GX's S3 bucket; the same image is in the site's static/images/.
_S3_IMAGE = re.compile(
    r"https://great-expectations-web-assets\.s3\.us-east-2\.amazonaws\.com/([\w.-]+)(\?[^\"']*)?")
# Subresource integrity of the CDN copies: a local copy is the same origin, nothing to pin.
_INTEGRITY = re.compile(r'\s+(integrity="[^"]*"|crossorigin="anonymous")')
# What a page loads (not what it links to): a stylesheet, a script, an image, a font.
_LOADED = re.compile(r"<(?:script|link|img|source)\b[^>]*\b(?:src|href)=[\"'](https?://[^\"']+)",
                     re.IGNORECASE)


class OnlineAsset(RuntimeError):
    """A Data Docs page still loads something from another host."""


def localize(site: Path) -> list[Path]:
    """Point every page of the Data Docs site at local copies; returns the pages rewritten."""
    site = Path(site)
    shutil.copytree(ASSETS, site / VENDOR, dirs_exist_ok=True)
    pages = sorted(site.rglob("*.html"))
    for page in pages:
        html = page.read_text(encoding="utf-8")
        up = Path(os.path.relpath(site, page.parent))
        for url, name in CDN_FILES.items():
            html = html.replace(f'"{url}"', f'"{(up / VENDOR / name).as_posix()}"')
        images = (up / "static" / "images").as_posix()
        html = _S3_IMAGE.sub(lambda m, images=images: f"{images}/{m[1]}", html)
        html = _INTEGRITY.sub("", html)
        online = sorted(set(_LOADED.findall(html)))
        if online:
            raise OnlineAsset(f"{page}: Data Docs page still loads {', '.join(online)} (no local "
                              f"copy in {ASSETS.name}; add it to tasks/core/data_docs.py)")
        page.write_text(html, encoding="utf-8")
    return pages


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib's name)
        pass


def server(site: Path, port: int = DEFAULT_PORT, host: str = "127.0.0.1") -> http.server.HTTPServer:
    """An http server of the site (serve_forever it); port 0 picks a free one."""
    handler = functools.partial(_Quiet, directory=str(Path(site).resolve()))
    return http.server.ThreadingHTTPServer((host, port), handler)
