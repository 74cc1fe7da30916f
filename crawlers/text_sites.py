"""Text classification test sites: `python -m crawlers.text_sites SITE [--port N] [--seed S]`.

Real English text that installs with the project, labelled by where it comes from, served as a
board of list pages (`/`, `/page/<n>`: a block per text with its label and a link) and one page
per text in messy markup (the demo's joke pages' markup: unclosed `<p>`, `<br>` inside sentences,
entities), so the crawl params of `examples/jokes.params.yaml` fit with other selectors:

* `docs`: the docstrings (first two paragraphs, at most 600 characters; ~150 characters mean) of
  the Python standard library's packages, read from their source with `ast` (nothing imported),
  in 9 topics: `asyncio`, `email`, `importlib`, `json` (19 texts only), `logging`, `tkinter`,
  `unittest`, `web` (`http` + `urllib`), `xml`; 1181 texts with Python 3.11.7.
* `apis`: the one-line summaries (~70 characters mean) of the public functions and classes of
  six installed libraries, labelled by library: `numpy`, `pandas`, `scipy`, `sklearn`,
  `statsmodels`, `torch`; 900 texts.

Each class keeps at most `TextSite.per_class` texts, taken from its source files in a fixed order
(files sorted by the sha256 of their path), so the same installed versions (the Python of the
venv, requirements.lock) give the same texts. A summary found in two classes is left out.

Dirt, drawn from `--seed` (demo_site.seed in a params file) and the text's index, never from
its label: `n_duplicates` texts listed again at `/text/<id>-dup`; `mislabel_share` labelled as
another class (real label noise for label review to find); `bad_label_share` labelled "n/a",
"?", ... (validate quarantines them); about a quarter of the labels spelled in other case or with
spaces ("Asyncio ", "ASYNCIO": labels match classes case- and space-insensitively); `n_broken`
text pages answering 500 (the crawl counts them as failures); `/robots.txt` disallows `/admin/`.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import html
import importlib.util
import logging
import random
import sysconfig
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from crawlers.demo_sections import _doc, _messy, _nav
from crawlers.demo_server import DemoSiteServer, Page
from crawlers.demo_site import ROBOTS_TXT

logger = logging.getLogger("kiln.text_sites")

_HTML = "text/html; charset=utf-8"
_BAD_LABELS = ["n/a", "?", "unknown", "-"]
_SPELLING_SHARE = 0.25


def _stdlib(*packages: str) -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    return [root / p for p in packages]


def _installed(package: str) -> list[Path]:
    spec = importlib.util.find_spec(package)  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"{package} is not installed; the `apis` test site needs it")
    return [Path(p) for p in spec.submodule_search_locations]


def _source_files(roots: list[Path]) -> list[Path]:
    """The package's .py files minus its tests, in a fixed order that mixes its subpackages."""
    files = []
    for root in roots:
        for path in root.rglob("*.py"):
            rel = path.relative_to(root.parent)
            if {"test", "tests", "testing", "idle_test"} & set(rel.parts[:-1]):
                continue
            if rel.name.startswith("test_") or rel.name == "conftest.py":
                continue
            files.append((hashlib.sha256(rel.as_posix().encode()).hexdigest(), path))
    return [path for _, path in sorted(files)]


def _docstrings(path: Path) -> Iterator[tuple[str, str]]:
    """(public name, docstring) of the module, classes and functions in one file."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return
    for node in ast.walk(tree):
        if isinstance(node, ast.Module):
            name = path.stem
        elif isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            name = node.name
        else:
            continue
        if name.startswith("_") and name != "__init__":
            continue
        doc = ast.get_docstring(node)
        if doc:
            yield name, doc


def _paragraphs(doc: str) -> str:
    """The first two paragraphs, whitespace collapsed, at most 600 characters (cut at a word)."""
    text = " ".join(" ".join(doc.split("\n\n")[:2]).split())
    if len(text) > 600:
        text = text[:600].rsplit(" ", 1)[0]
    return text


def _summary(doc: str) -> str:
    return " ".join(doc.strip().split("\n\n")[0].split())


@dataclass(frozen=True)
class TextSite:
    name: str
    title: str
    sources: dict[str, Callable[[], list[Path]]]  # class -> package directories
    extract: Callable[[str], str]  # docstring -> text
    min_chars: int
    per_class: int
    per_page: int = 25
    n_duplicates: int = 30
    n_broken: int = 4
    mislabel_share: float = 0.03
    bad_label_share: float = 0.01
    port: int = 8771  # default port of `python -m crawlers.text_sites`

    @property
    def classes(self) -> list[str]:
        return sorted(self.sources)


SITES = {
    s.name: s
    for s in (
        TextSite(
            "docs",
            "Python standard library documentation",
            {
                "asyncio": lambda: _stdlib("asyncio"),
                "email": lambda: _stdlib("email"),
                "importlib": lambda: _stdlib("importlib"),
                "json": lambda: _stdlib("json"),
                "logging": lambda: _stdlib("logging"),
                "tkinter": lambda: _stdlib("tkinter"),
                "unittest": lambda: _stdlib("unittest"),
                "web": lambda: _stdlib("http", "urllib"),
                "xml": lambda: _stdlib("xml"),
            },
            _paragraphs,
            min_chars=40,
            per_class=150,
            port=8771,
        ),
        TextSite(
            "apis",
            "What does this function do?",
            {
                p: (lambda p=p: _installed(p))
                for p in ("numpy", "pandas", "scipy", "sklearn", "statsmodels", "torch")
            },
            _summary,
            min_chars=20,
            per_class=150,
            port=8772,
        ),
    )
}


@dataclass(frozen=True)
class TextItem:
    """One text as the site shows it; `label` is the text on the page, dirt included."""

    tid: str
    cls: str  # the true class
    label: str
    text: str
    mislabeled: bool = False
    bad_label: bool = False
    broken: bool = False
    duplicate: bool = False  # also listed at /text/<tid>-dup


@dataclass(frozen=True)
class BuiltTextSite:
    site: TextSite
    items: list[TextItem]
    pages: dict[str, Page] = field(repr=False)

    @property
    def item_paths(self) -> list[str]:
        paths = [f"/text/{it.tid}" for it in self.items]
        return paths + [f"/text/{it.tid}-dup" for it in self.items if it.duplicate]

    @property
    def good_item_paths(self) -> list[str]:
        broken = {f"/text/{it.tid}" for it in self.items if it.broken}
        return [p for p in self.item_paths if p not in broken]


@cache
def texts(name: str) -> tuple[tuple[str, str], ...]:
    """(class, text) of site `name`, in a fixed order: each class's texts in file order."""
    site = SITES[name]
    found: dict[str, list[str]] = {}
    for cls in site.classes:
        seen: list[str] = []
        have = set()
        for path in _source_files(site.sources[cls]()):
            for _, doc in _docstrings(path):
                text = site.extract(doc)
                if len(text) >= site.min_chars and text not in have:
                    have.add(text)
                    seen.append(text)
            if len(seen) >= 2 * site.per_class:  # enough to drop the shared ones and still fill
                break
        found[cls] = seen
    owners: dict[str, set[str]] = {}
    for cls, items in found.items():
        for text in items:
            owners.setdefault(text, set()).add(cls)
    out = []
    for cls in site.classes:
        own = [t for t in found[cls] if len(owners[t]) == 1][: site.per_class]
        out.extend((cls, t) for t in own)
    return tuple(out)


def _spell(label: str, rng: random.Random) -> str:
    if rng.random() >= _SPELLING_SHARE:
        return label
    return rng.choice([f" {label.capitalize()} ", label.upper(), f"{label.title()}"])


def _items(site: TextSite, seed: int) -> list[TextItem]:
    data = texts(site.name)
    n = len(data)
    rng = random.Random(f"{site.name}-{seed}")  # noqa: S311 (reproducible dirt, not security)
    n_mis, n_bad = round(site.mislabel_share * n), round(site.bad_label_share * n)
    order = rng.sample(range(n), n)  # disjoint draws: a text gets at most one of these
    sizes = [site.n_broken, site.n_duplicates, n_mis, n_bad]
    if sum(sizes) > n:
        raise ValueError(f"{site.name}: more dirt ({sum(sizes)}) than texts ({n})")
    bounds = [sum(sizes[:k]) for k in range(len(sizes) + 1)]
    broken, dups, mis, bad = (set(order[bounds[k] : bounds[k + 1]]) for k in range(4))
    items = []
    for i, (cls, text) in enumerate(data):
        if i in bad:
            label = rng.choice(_BAD_LABELS)
        elif i in mis:
            label = rng.choice([c for c in site.classes if c != cls])
        else:
            label = _spell(cls, rng)
        items.append(
            TextItem(
                tid=f"{site.name}-{i:04d}",
                cls=cls,
                label=label,
                text=text,
                mislabeled=i in mis,
                bad_label=i in bad,
                broken=i in broken,
                duplicate=i in dups,
            )
        )
    # the board lists the texts shuffled, not class after class
    return sorted(items, key=lambda it: hashlib.sha256(f"{seed}-{it.tid}".encode()).hexdigest())


def _text_page(site: TextSite, item: TextItem) -> Page:
    if item.broken:
        return Page(b"Internal Server Error\n", "text/plain; charset=utf-8", status=500)
    head = f'<h1 class="text-id">Text {item.tid}</h1>\n<p><a href="/">board</a></p>\n'
    body = head + _messy(item.text)
    return Page(_doc(f"{site.title}: {item.tid}", body), _HTML)


def _path(n: int) -> str:
    return "/" if n == 1 else f"/page/{n}"


def build_text_site(name: str, seed: int = 0) -> BuiltTextSite:
    """Every page of test site `name` in memory; same installed versions and seed, same bytes."""
    if name not in SITES:
        raise ValueError(f"unknown text site {name!r}; known: {sorted(SITES)}")
    site = SITES[name]
    items = _items(site, seed)
    pages = {
        "/robots.txt": Page(ROBOTS_TXT.encode(), "text/plain; charset=utf-8"),
        "/admin/": Page(_doc("Admin", "<h1>Staff only</h1>"), _HTML),
    }
    listed: list[tuple[str, TextItem]] = []
    for item in items:
        pages[f"/text/{item.tid}"] = _text_page(site, item)
        listed.append((f"/text/{item.tid}", item))
    for item in items:  # the second listings at the end of the board, as a re-post would be
        if item.duplicate:
            pages[f"/text/{item.tid}-dup"] = _text_page(site, item)
            listed.append((f"/text/{item.tid}-dup", item))
    n_pages = -(-len(listed) // site.per_page)
    for n in range(1, n_pages + 1):
        blocks = "\n".join(
            f'<article class="post"><span class="topic">{html.escape(item.label)}</span> '
            f'<a class="post" href="{path}">{html.escape(item.text[:40])}…</a></article>'
            for path, item in listed[(n - 1) * site.per_page : n * site.per_page]
        )
        nav = _nav("/", n, n_pages)
        body = f"<h1>{html.escape(site.title)}, page {n}</h1>\n{nav}\n{blocks}"
        pages[_path(n)] = Page(_doc(site.title, body), _HTML)
    return BuiltTextSite(site=site, items=items, pages=pages)


def start_text_site(
    name: str, host: str = "127.0.0.1", port: int | None = None, seed: int = 0
) -> DemoSiteServer:
    """Serve test site `name` from a background thread; port None: the site's own, 0: free."""
    built = build_text_site(name, seed)
    return DemoSiteServer(built.pages, host, SITES[name].port if port is None else port)


@contextmanager
def running_text_site(
    name: str, port: int | None = 0, seed: int = 0
) -> Iterator[tuple[str, DemoSiteServer]]:
    """`with running_text_site("docs") as (url, server):` on a free port by default."""
    server = start_text_site(name, port=port, seed=seed)
    try:
        yield server.url, server
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("site", choices=sorted(SITES))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=None, help="default: the site's own")
    parser.add_argument("--seed", type=int, default=0, help="which texts get dirt")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    server = start_text_site(args.site, args.host, args.port, args.seed)
    server.serve_until_stopped(logger, f"{len(texts(args.site))} {args.site} texts")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
