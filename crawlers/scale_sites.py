"""Generated sites of any size for the scale benchmark: `python -m crawlers.scale_sites KIND N`.

`benchmarks/scale.py` runs every stage on 5,000, 20,000 and 50,000 items; the demo shop stops at
scikit-learn's 1,797 digits, so this module draws as many distinct items as asked from the same
real data:

* `images`: the demo shop's pages (`crawlers.demo_site`: list pages, item pages with the label,
  writer, ink and price, robots.txt) holding N 32x32 RGB digits. Item i is digit i mod 1797,
  upscaled and then moved (up to 3 px each way), scaled (0.85..1.15) and turned (up to 12
  degrees), in its own ink and background colours, so two items are never the same picture.
* `texts`: a board of N texts in the jokes board's markup (`crawlers.demo_sections`), labelled by
  the Python package whose documentation they come from. Each text is a paragraph of a docstring
  of a public function or class of an installed package (numpy, scipy, pandas, sklearn, statsmodels,
  scrapy: whichever are installed, see `TEXT_PACKAGES`); beyond the paragraphs there are, a text
  is two paragraphs of the same package joined, so every text is distinct.

Everything is drawn from `seed` and the item's index, never from its label; same N and seed, same
bytes (for the same installed package versions: the docstrings are the installed ones).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import io
import logging
import pkgutil
import random
import warnings
from functools import cache

import numpy as np
from PIL import Image

from crawlers.demo_sections import _doc, _messy, _nav
from crawlers.demo_server import DemoSiteServer, Page
from crawlers.demo_site import (
    ROBOTS_TXT,
    DemoItem,
    _digits,
    _html,
    _item_page,
    _list_page,
    _page_path,
    _spell,
)

logger = logging.getLogger("kiln.scale_sites")

IMAGE_SIDE = 32  # pixels, each way
PER_PAGE = 100  # items per list page: 500 list pages at 50,000 items
# Packages whose docstrings make the text site, one class each (those installed are used).
# torch and sympy are left out: walking them takes 7-8 s each, and a sympy module prints on import.
TEXT_PACKAGES = ("numpy", "scipy", "pandas", "sklearn", "statsmodels", "scrapy")
MIN_PARAGRAPH = (
    80  # characters; shorter docstring paragraphs ("Parameters", "Examples") are skipped
)
MAX_TEXT = 600  # characters kept of a text (the text models read up to 256 tokens)


# --------------------------------------------------------------------------------------- images
def scale_image(i: int, seed: int = 0) -> bytes:
    """PNG bytes of item i: digit i mod 1797 as a 32x32 RGB picture moved, scaled and turned."""
    images, _ = _digits()
    rng = np.random.default_rng([seed, i])
    grey = Image.fromarray((images[i % len(images)].astype(np.uint16) * 255 // 16).astype(np.uint8))
    grey = grey.resize((IMAGE_SIDE, IMAGE_SIDE), Image.Resampling.BICUBIC)
    scale = rng.uniform(0.85, 1.15)
    dx, dy = rng.integers(-3, 4, 2)
    grey = grey.rotate(
        float(rng.uniform(-12, 12)),
        resample=Image.Resampling.BILINEAR,
        translate=(int(dx), int(dy)),
    )
    side = round(IMAGE_SIDE * scale)
    scaled = grey.resize((side, side), Image.Resampling.BILINEAR)
    canvas = Image.new("L", (IMAGE_SIDE, IMAGE_SIDE))
    offset = (IMAGE_SIDE - side) // 2
    canvas.paste(scaled, (offset, offset))  # a larger digit is cropped at the edges
    ink = np.asarray(canvas, np.float64)[..., None] / 255.0
    fg = rng.integers(150, 256, 3).astype(np.float64)  # bright ink on a dark background
    bg = rng.integers(0, 100, 3).astype(np.float64)
    buf = io.BytesIO()
    Image.fromarray(np.rint(bg + (fg - bg) * ink).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _listed(paths: list[str]) -> dict[str, Page]:
    n_pages = max(1, -(-len(paths) // PER_PAGE))
    return {
        _page_path(n): _list_page(n, n_pages, paths[(n - 1) * PER_PAGE : n * PER_PAGE])
        for n in range(1, n_pages + 1)
    }


def image_pages(n: int, seed: int = 0) -> dict[str, Page]:
    """Every page of an image site of `n` items; the crawl params of params.yaml read it."""
    _, targets = _digits()
    rng = random.Random(seed)  # noqa: S311 (reproducible labels, not security)
    pages = {
        "/robots.txt": Page(ROBOTS_TXT.encode(), "text/plain; charset=utf-8"),
        "/admin/": Page(_html("Admin", "<h1>Staff only</h1>"), "text/html; charset=utf-8"),
    }
    paths = []
    for i in range(n):
        digit = int(targets[i % len(targets)])
        item = DemoItem(
            sku=f"digit-{i:05d}",
            digit=digit,
            label=_spell(digit, rng),
            writer=f"writer-{rng.randrange(43):02d}",
            ink=f"{rng.random():.4f}",
            price=f"{rng.randint(50, 999) / 100:.2f}",
        )
        image_path = f"/img/{item.sku}.png"
        pages[image_path] = Page(scale_image(i, seed), "image/png", cache_control="max-age=86400")
        pages[f"/item/{item.sku}"] = _item_page(item, image_path)
        paths.append(f"/item/{item.sku}")
    return pages | _listed(paths)


# ---------------------------------------------------------------------------------------- texts
def _public_objects(package: str) -> list[object]:
    """The public functions and classes of `package` and its public modules, in a fixed order."""
    # deprecation notices and prints of modules imported only for their docs
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        root = importlib.import_module(package)
        modules = [root]
        for info in pkgutil.walk_packages(root.__path__, f"{package}."):
            parts = info.name.split(".")
            if any(p.startswith("_") or p in {"tests", "testing", "conftest"} for p in parts):
                continue
            try:
                modules.append(importlib.import_module(info.name))
            except Exception:  # noqa: BLE001, S112 (an optional extra missing: no docs from it)
                continue
    objects = []
    for module in modules:
        for name, obj in sorted(vars(module).items()):
            if not name.startswith("_") and (inspect.isfunction(obj) or inspect.isclass(obj)):
                objects.append(obj)
    return objects


@cache
def package_paragraphs(package: str) -> tuple[str, ...]:
    """Distinct docstring paragraphs (whitespace collapsed, at least MIN_PARAGRAPH characters,
    no code examples) of `package`'s public functions and classes, in a fixed order."""
    seen: dict[str, None] = {}
    for obj in _public_objects(package):
        doc = inspect.getdoc(obj) or ""
        for block in doc.split("\n\n"):
            text = " ".join(block.split())
            if len(text) >= MIN_PARAGRAPH and ">>>" not in text and "---" not in text:
                seen.setdefault(text[:MAX_TEXT], None)
    return tuple(seen)


def installed_packages() -> list[str]:
    return [p for p in TEXT_PACKAGES if importlib.util.find_spec(p) is not None]


def scale_texts(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """(package, text) for n distinct texts, the packages in turn (as balanced as the data
    allows). A package's paragraphs come first, in an order drawn from `seed`; past its last,
    text m + j joins paragraphs a = j mod m and (a + 1 + j div m) mod m (m paragraphs), a pair
    no earlier text joined. A paragraph two packages share belongs to the first in sorted order."""
    names, pools, seen = [], {}, set()
    for package in sorted(installed_packages()):
        texts = [t for t in package_paragraphs(package) if t not in seen]
        seen.update(texts)
        if len(texts) >= 2:
            rng = np.random.default_rng([seed, len(names)])
            names.append(package)
            pools[package] = [texts[k] for k in rng.permutation(len(texts))]
    if len(names) < 2:
        raise RuntimeError(f"fewer than two of {TEXT_PACKAGES} are installed with docstrings")
    out, made = [], dict.fromkeys(names, 0)
    for i in range(n):
        package = names[i % len(names)]
        texts, k = pools[package], made[package]
        made[package] += 1
        m = len(texts)
        if k < m:
            out.append((package, texts[k]))
            continue
        j = k - m
        if j >= m * (m - 1):
            raise RuntimeError(f"{package} has too few paragraphs for {n} distinct texts")
        a = j % m
        out.append((package, f"{texts[a]} {texts[(a + 1 + j // m) % m]}"))
    return out


def text_pages(n: int, seed: int = 0) -> dict[str, Page]:
    """A board of n texts at /jokes/ in the jokes board's markup (examples/jokes.params.yaml's
    selectors read it), each text labelled by its package."""
    texts = scale_texts(n, seed)
    per_page = 25
    n_pages = max(1, -(-n // per_page))
    pages: dict[str, Page] = {"/robots.txt": Page(ROBOTS_TXT.encode(), "text/plain")}
    for start in range(0, n, per_page):
        page_no = start // per_page + 1
        blocks = []
        for i in range(start, min(n, start + per_page)):
            package, text = texts[i]
            joke_id = f"{package}-{i:05d}"
            blocks.append(
                f'<article class="joke jokes-{package}"><span class="lang">{package}</span> '
                f'<a class="joke" href="/jokes/{joke_id}">{joke_id}</a></article>'
            )
            pages[f"/jokes/{joke_id}"] = Page(
                _doc(f"Text {joke_id}", f'<h1 class="joke-id">Joke {joke_id}</h1>\n{_messy(text)}'),
                "text/html; charset=utf-8",
            )
        path = "/jokes/" if page_no == 1 else f"/jokes/page/{page_no}"
        pages[path] = Page(
            _doc(
                f"Texts page {page_no}",
                _nav("/jokes/", page_no, n_pages) + "\n" + "\n".join(blocks),
            ),
            "text/html; charset=utf-8",
        )
    return pages


KINDS = {"images": image_pages, "texts": text_pages}


def start_scale_site(kind: str, n: int, seed: int = 0, port: int = 0) -> DemoSiteServer:
    """Serve a `kind` site of n items on 127.0.0.1:port (0: a free one) from a thread."""
    return DemoSiteServer(KINDS[kind](n, seed), "127.0.0.1", port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=sorted(KINDS))
    parser.add_argument("n", type=int, help="items")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    server = start_scale_site(args.kind, args.n, args.seed, args.port)
    server.serve_until_stopped(logger, f"{args.n} {args.kind}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
