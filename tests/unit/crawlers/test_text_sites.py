"""The text classification test sites: `python -m pytest tests/unit/crawlers/test_text_sites.py`.

Each site of `crawlers.text_sites` builds the same pages from the same installed sources and seed,
with its classes, at most `per_class` texts a class, and exactly the dirt its spec declares.
"""

from __future__ import annotations

import hashlib
import html
import re
from collections import Counter

import pytest

from crawlers.text_sites import SITES, build_text_site, texts
from tasks.core.labels import normalise_label
from tasks.core.params import LabelParams


def _sha(pages: dict) -> str:
    digest = hashlib.sha256()
    for path in sorted(pages):
        digest.update(path.encode() + b"\0" + pages[path].body + b"\0")
        digest.update(str(pages[path].status).encode())
    return digest.hexdigest()


@pytest.mark.parametrize("name", sorted(SITES))
def test_each_site_has_its_classes_and_no_text_twice(name: str) -> None:
    site, data = SITES[name], texts(name)
    counts = Counter(cls for cls, _ in data)
    assert sorted(counts) == site.classes
    assert max(counts.values()) == site.per_class
    assert min(counts.values()) >= 10
    assert len({text for _, text in data}) == len(data)  # none twice, none in two classes
    assert all(len(text) >= site.min_chars for _, text in data)


def test_the_sites_differ_in_classes_and_length() -> None:
    docs, apis = texts("docs"), texts("apis")
    mean = {n: sum(len(t) for _, t in d) / len(d) for n, d in (("docs", docs), ("apis", apis))}
    assert mean["docs"] > 1.5 * mean["apis"]  # paragraphs vs one-line summaries
    assert len(SITES["docs"].classes) == 9 and len(SITES["apis"].classes) == 6
    small = Counter(cls for cls, _ in docs)["json"]
    assert small < SITES["docs"].per_class / 4  # an imbalanced class


@pytest.mark.parametrize("name", sorted(SITES))
def test_a_site_builds_the_same_bytes_and_its_declared_dirt(name: str) -> None:
    site = SITES[name]
    built = build_text_site(name, seed=0)
    assert _sha(build_text_site(name, seed=0).pages) == _sha(built.pages)
    n = len(texts(name))
    items = built.items
    assert len(items) == n
    assert sum(it.broken for it in items) == site.n_broken
    assert sum(it.duplicate for it in items) == site.n_duplicates
    assert sum(it.mislabeled for it in items) == round(site.mislabel_share * n)
    assert sum(it.bad_label for it in items) == round(site.bad_label_share * n)
    assert sum(it.broken + it.duplicate + it.mislabeled + it.bad_label for it in items) == sum(
        (
            site.n_broken,
            site.n_duplicates,
            round(site.mislabel_share * n),
            round(site.bad_label_share * n),
        )
    )  # fmt: skip  (disjoint: a text gets at most one kind of dirt)
    labels = LabelParams(classes=site.classes)
    for it in items:
        read = normalise_label(it.label, labels)
        if it.bad_label:
            assert read is None
        elif it.mislabeled:
            assert read is not None and read != it.cls
        else:
            assert read == it.cls
    assert any(it.label != it.cls and not it.mislabeled and not it.bad_label for it in items)

    listed = built.item_paths
    assert len(listed) == n + site.n_duplicates
    board = [p for p in built.pages if p == "/" or p.startswith("/page/")]
    link = re.compile(r'<a class="post" href="([^"]+)"')
    links = [m for p in board for m in link.findall(built.pages[p].body.decode())]
    assert links == listed
    assert len(board) == -(-len(listed) // site.per_page)
    for it in items:
        page = built.pages[f"/text/{it.tid}"]
        assert page.status == (500 if it.broken else 200)
    assert len(built.good_item_paths) == len(listed) - site.n_broken
    other = build_text_site(name, seed=1)
    assert sorted(it.text for it in other.items) == sorted(it.text for it in items)
    assert {it.tid for it in other.items if it.mislabeled} != {
        it.tid for it in items if it.mislabeled
    }


def test_text_pages_are_messy_markup_of_the_real_text() -> None:
    built = build_text_site("docs")
    item = next(it for it in built.items if not it.broken and ". " in it.text)
    body = built.pages[f"/text/{item.tid}"].body.decode()
    assert '<div class="joke-body"><p>' in body and ".<br> " in body and "&nbsp;" in body
    plain = re.sub(r"<[^>]+>", "", body.split('<div class="joke-body">')[1].split("</div>")[0])
    assert " ".join(html.unescape(plain).split()) == " ".join(item.text.split())
    assert built.pages["/robots.txt"].body.startswith(b"User-agent: *\nDisallow: /admin/")


def test_unknown_site_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown text site 'news'"):
        build_text_site("news")
