"""The local demo shop: `python -m crawlers.demo_site [--params params.yaml] [--port N]`.

A small website generated from scikit-learn's real handwritten digits (`load_digits`: 1797 8x8
images, values 0..16, shipped inside the package, so nothing is downloaded). It is what the
default `params.yaml` crawls, and it is deliberately a little dirty, all of it chosen by
`demo_site.seed` so the same params always give the same bytes:

* `n_duplicates` digits listed again at `/item/<sku>-dup` (byte-identical image, same label);
* optional fields (writer, ink, price) left empty on about `_MISSING_SHARE` of the pages;
* labels spelled "7", "seven", " Seven " or "SEVEN";
* `n_broken` item pages answering 500 or truncated HTML without the image and label;
* `bad_label_share` of the digits labelled "n/a", "?", ... (validate quarantines them);
* `/robots.txt` disallows `/admin/`, and the home page links there (see `_list_page`).

`demo_site.sections` adds a jokes board (`/jokes/`) and a CO2 data table (`/co2/`), see
`crawlers.demo_sections`.

`build_site()` is pure; `start_demo_site()` serves it from a background thread (see
`crawlers.demo_server`), and `running_demo_site()` wraps that in a context manager for tests.
Both take an optional `png` (item index -> PNG bytes) that replaces the 8x8 grey digits, the
same pages otherwise: `crawlers.image_sites` makes sites of other image sizes and modes with it.
"""

from __future__ import annotations

import argparse
import gzip
import html
import importlib.util
import io
import logging
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

from crawlers.demo_sections import co2_pages, jokes_pages
from crawlers.demo_server import DemoSiteServer, Page
from tasks.core.params import DemoSiteParams, load_params

logger = logging.getLogger("kiln.demo_site")

_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
_BAD_LABELS = ["n/a", "?", "unknown", "-"]
# Shares of the digits given dirt that has no knob of its own in params.yaml.
_SPELLING_SHARE = 0.25  # label written as a word ("seven", " Seven ", "SEVEN") instead of "7"
_MISSING_SHARE = 0.05  # each optional field (writer, ink, price) empty, drawn independently
# sklearn's digits do not say who wrote them (the UCI set had 43 writers): writer ids are made up.
_N_WRITERS = 43
ROBOTS_TXT = "User-agent: *\nDisallow: /admin/\n"


@dataclass(frozen=True)
class DemoItem:
    """One digit as the shop shows it; `label` is the text on the page, dirt included."""

    sku: str
    digit: int
    label: str
    writer: str | None
    ink: str | None
    price: str | None
    broken: str | None = None  # "500" or "html" for a broken page
    duplicate: bool = False  # also listed at /item/<sku>-dup


@dataclass(frozen=True)
class DemoSite:
    """The whole site in memory: URL path -> page, plus what the dirt is, for tests."""

    params: DemoSiteParams
    items: list[DemoItem]
    pages: dict[str, Page] = field(repr=False)

    @property
    def item_paths(self) -> list[str]:
        """Every listed item URL path, duplicates included, in listing order."""
        paths = [f"/item/{it.sku}" for it in self.items]
        return paths + [f"/item/{it.sku}-dup" for it in self.items if it.duplicate]

    @property
    def good_item_paths(self) -> list[str]:
        """Item paths a crawler should turn into items (the broken ones excluded)."""
        broken = {f"/item/{it.sku}" for it in self.items if it.broken}
        return [p for p in self.item_paths if p not in broken]


@cache
def _digits() -> tuple[np.ndarray, np.ndarray]:
    """sklearn's 1797 digits as (N, 8, 8) uint8 images and their labels.

    Read from the file scikit-learn ships (`datasets/data/digits.csv.gz`: 64 pixels then the
    label per row), as `load_digits` does, without importing sklearn: that import costs ~1.1 s
    (python -X importtime), a tenth of the flow's fixed overhead.
    """
    spec = importlib.util.find_spec("sklearn")  # locates the package without importing it
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("scikit-learn is not installed; the demo site needs its digits")
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
    with gzip.open(path, "rt") as fh:
        data = np.loadtxt(fh, delimiter=",")
    return data[:, :-1].reshape(-1, 8, 8).astype(np.uint8), data[:, -1].astype(int)


def _png(pixels: np.ndarray) -> bytes:
    """8x8 grayscale PNG; 0..16 scaled to 0..255. Pillow's encoder is deterministic."""
    buf = io.BytesIO()
    Image.fromarray((pixels.astype(np.uint16) * 255 // 16).astype(np.uint8), mode="L").save(
        buf, format="PNG"
    )
    return buf.getvalue()


def _pick_dirt(params: DemoSiteParams, rng: random.Random) -> tuple[set, set, set]:
    n = params.n_items
    n_bad = round(params.bad_label_share * n)
    if params.n_broken + params.n_duplicates + n_bad > n:
        raise ValueError(
            f"demo_site: n_broken ({params.n_broken}) + n_duplicates ({params.n_duplicates}) "
            f"+ bad labels ({n_bad}) exceed n_items ({n})"
        )
    order = rng.sample(range(n), n)  # disjoint draws: a digit gets at most one of these
    broken = set(order[: params.n_broken])
    dups = set(order[params.n_broken : params.n_broken + params.n_duplicates])
    bad = set(order[params.n_broken + params.n_duplicates :][:n_bad])
    return broken, dups, bad


def _spell(digit: int, rng: random.Random) -> str:
    if rng.random() >= _SPELLING_SHARE:
        return str(digit)
    word = _WORDS[digit]
    return rng.choice([word, f" {word.capitalize()} ", word.upper()])


def _maybe(value: str, rng: random.Random) -> str | None:
    return None if rng.random() < _MISSING_SHARE else value


def _make_items(params: DemoSiteParams) -> list[DemoItem]:
    images, targets = _digits()
    rng = random.Random(params.seed)  # noqa: S311 (reproducible dirt, not security)
    broken, dups, bad = _pick_dirt(params, rng)
    broken_kinds = {i: ("500", "html")[k % 2] for k, i in enumerate(sorted(broken))}
    items = []
    for i in range(params.n_items):
        digit = int(targets[i])
        label = rng.choice(_BAD_LABELS) if i in bad else _spell(digit, rng)
        ink = images[i].sum() / (64 * 16)  # share of the 8x8 grid's full ink, 0..1
        items.append(
            DemoItem(
                sku=f"digit-{i:04d}",
                digit=digit,
                label=label,
                writer=_maybe(f"writer-{rng.randrange(_N_WRITERS):02d}", rng),
                ink=_maybe(f"{ink:.4f}", rng),
                price=_maybe(f"{rng.randint(50, 999) / 100:.2f}", rng),  # 0.50 .. 9.99
                broken=broken_kinds.get(i),
                duplicate=i in dups,
            )
        )
    return items


def _html(title: str, body: str) -> bytes:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)} | Kiln digits demo</title></head>\n<body>\n{body}\n"
        "</body></html>\n"
    ).encode()


def _item_page(item: DemoItem, image_path: str) -> Page:
    title = f"Handwritten digit #{item.sku.removeprefix('digit-')}"
    if item.broken == "500":
        return Page(b"Internal Server Error\n", "text/plain; charset=utf-8", status=500)
    if item.broken == "html":  # cut off mid-tag, before the image and the label
        head = _html(title, "").split(b"<body>")[0]
        body = head + f'<body>\n<h1 class="title">{title}</h1>\n<div class="pho'.encode()
        return Page(body, "text/html; charset=utf-8")

    def dd(name: str, value: str | None) -> str:
        return f'<dt>{name.title()}</dt><dd class="{name}">{html.escape(value or "")}</dd>'

    body = (
        f'<p><a href="/">All digits</a></p>\n<h1 class="title">{html.escape(title)}</h1>\n'
        f'<img class="digit" src="{image_path}" width="64" height="64" alt="a handwritten digit">'
        f'\n<p>Label: <span class="label">{html.escape(item.label)}</span></p>\n<dl>\n'
        + "\n".join(dd(k, getattr(item, k)) for k in ("writer", "ink", "price"))
        + "\n</dl>"
    )
    return Page(_html(title, body), "text/html; charset=utf-8")


def _page_path(n: int) -> str:
    return "/" if n == 1 else f"/page/{n}"


def _list_page(n: int, n_pages: int, item_paths: list[str]) -> Page:
    links = "\n".join(
        f'<li><a class="item" href="{p}">{p.rsplit("/", 1)[1]}</a></li>' for p in item_paths
    )
    nav = [f'<a rel="prev" href="{_page_path(n - 1)}">prev</a>'] if n > 1 else []
    nav.append(f"<span>page {n} of {n_pages}</span>")
    if n < n_pages:
        nav.append(f'<a rel="next" href="{_page_path(n + 1)}">next</a>')
    if n == 1:
        # Inside the followed nav on purpose: robots.txt, not the selectors, keeps crawlers out.
        nav.append('<a class="admin" href="/admin/">shop admin</a>')
    body = (
        f"<h1>Handwritten digits, page {n}</h1>\n"
        f'<nav class="pagination">{" ".join(nav)}</nav>\n<ul class="items">\n{links}\n</ul>'
    )
    return Page(_html(f"Digits page {n}", body), "text/html; charset=utf-8")


def build_site(params: DemoSiteParams, png: Callable[[int], bytes] | None = None) -> DemoSite:
    """Generate every page of the site in memory; same params, same bytes. `png(i)`, if given,
    is the image of digit i instead of its 8x8 grey PNG."""
    items = _make_items(params)
    images, _ = _digits()
    png = png or (lambda i: _png(images[i]))
    pages: dict[str, Page] = {
        "/robots.txt": Page(ROBOTS_TXT.encode(), "text/plain; charset=utf-8"),
        "/admin/": Page(_html("Admin", "<h1>Staff only</h1>"), "text/html; charset=utf-8"),
    }
    for i, item in enumerate(items):
        image = Page(png(i), "image/png", cache_control="max-age=86400")  # never change
        pages[f"/img/{item.sku}.png"] = image
        pages[f"/item/{item.sku}"] = _item_page(item, f"/img/{item.sku}.png")
        if item.duplicate:  # a second URL for the same digit, its image at a second URL too
            pages[f"/img/{item.sku}-dup.png"] = image
            pages[f"/item/{item.sku}-dup"] = _item_page(item, f"/img/{item.sku}-dup.png")
    if "jokes" in params.sections:
        pages |= jokes_pages()
    if "co2" in params.sections:
        pages |= co2_pages()
    site = DemoSite(params=params, items=items, pages=pages)
    listed = site.item_paths
    n_pages = max(1, -(-len(listed) // params.per_page))  # ceiling division
    for n in range(1, n_pages + 1):
        chunk = listed[(n - 1) * params.per_page : n * params.per_page]
        pages[_page_path(n)] = _list_page(n, n_pages, chunk)
    return site


def start_demo_site(
    params: DemoSiteParams, port: int | None = None, png: Callable[[int], bytes] | None = None
) -> DemoSiteServer:
    """Build the site and serve it from a background thread on params.host.

    `port` None means `params.port`; 0 picks a free port (read it back from `.url`).
    Stop it with `.stop()` (or use it as a context manager). `png`: as in `build_site`.
    """
    site = build_site(params, png)
    return DemoSiteServer(site.pages, params.host, params.port if port is None else port)


@contextmanager
def running_demo_site(
    params: DemoSiteParams, port: int | None = 0, png: Callable[[int], bytes] | None = None
) -> Iterator[tuple[str, DemoSiteServer]]:
    """`with running_demo_site(p) as (url, server):` a served site on a free port by default."""
    server = start_demo_site(params, port, png)
    try:
        yield server.url, server
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--port", type=int, default=None, help="default: demo_site.port")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    params = load_params(args.params).demo_site
    start_demo_site(params, args.port).serve_until_stopped(logger, f"{params.n_items} digits")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
