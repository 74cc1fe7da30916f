"""The forecasting test sites: `python -m pytest tests/unit/crawlers/test_series_sites.py`.

Each site of `crawlers.series_sites` serves statsmodels' whole series as table rows, the same
bytes for the same seed, with exactly its declared empty cells and repeated rows.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime

import pytest

from crawlers.series_sites import SITES, build_series_site, series

# site: (values, first date cell, last date cell, strptime format of the date cell)
EXPECTED = {
    "elnino": (732, "1950-01", "2010-12", "%Y-%m"),
    "sunspots": (309, "1700", "2008", "%Y"),
    "gdp": (203, "1959-01-01", "2009-07-01", "%Y-%m-%d"),
}


def _sha(pages: dict) -> str:
    digest = hashlib.sha256()
    for path in sorted(pages):
        digest.update(path.encode() + b"\0" + pages[path].body + b"\0")
    return digest.hexdigest()


def test_every_site_is_expected() -> None:
    assert sorted(SITES) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_site_serves_its_whole_series_with_its_declared_dirt(name: str) -> None:
    n, first, last, fmt = EXPECTED[name]
    site, data = SITES[name], series(name)
    assert len(data) == n and data[0][0] == first and data[-1][0] == last
    dates = [datetime.strptime(when, fmt) for when, _ in data]
    assert dates == sorted(set(dates))  # one value per date, in time order

    built = build_series_site(name, seed=0)
    assert _sha(build_series_site(name, seed=0).pages) == _sha(built.pages)
    assert _sha(build_series_site(name, seed=1).pages) != _sha(built.pages)
    assert len(built.missing) == site.n_missing and len(built.repeated) == site.n_repeated
    assert not set(built.missing) & set(built.repeated)
    assert first not in built.missing and last not in built.missing
    assert len(built.rows) == n + site.n_repeated
    assert [when for when, cell in built.rows if cell == ""] == built.missing

    cells = []  # (date, value) as a crawl of the table's rows reads them
    for path in sorted(p for p in built.pages if p == "/" or p.startswith("/page/")):
        body = built.pages[path].body.decode()
        cells += re.findall(r'<td class="date">([^<]*)</td><td class="value">([^<]*)</td>', body)
    assert sorted(cells) == sorted(built.rows)
    n_pages = sum(1 for p in built.pages if p == "/" or p.startswith("/page/"))
    assert n_pages == -(-len(built.rows) // site.rows_per_page)
    truth = dict(data)
    for when, cell in built.rows:
        if cell:
            assert abs(float(cell.replace(",", "")) - truth[when]) <= 0.5 * 10 ** (
                1 - site.decimals
            )


def test_large_values_carry_a_thousands_separator() -> None:
    built = build_series_site("gdp")
    assert built.rows[0] == ("1959-01-01", "2,710.3")
