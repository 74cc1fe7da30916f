"""Forecasting test sites: `python -m crawlers.series_sites SITE [--port N] [--seed S]`.

Real series that statsmodels ships (`statsmodels.datasets`, nothing downloaded), each served as
an HTML table over list pages (`/`, `/page/<n>`), like the demo's `/co2/` section, with the date
written the way such tables write it:

* `elnino`: the sea surface temperature of the El Niño region in °C (`elnino`), monthly, 732
  values (1950-2010): a strong yearly season and irregular El Niño swings; date cell `1950-01`.
* `sunspots`: the yearly mean sunspot number (`sunspots`), 309 values (1700-2008): the ~11-year
  solar cycle, no season; date cell `1700`.
* `gdp`: US real GDP in billions of 2005 dollars (`macrodata`'s realgdp), quarterly, 203 values
  (1959-2009): a trend and recessions; date cell `1959-01-01` (the quarter's first day, as FRED
  writes it).

Dirt, drawn from `--seed` (demo_site.seed in a params file): `n_missing` value cells left empty
(the crawl rejects those rows; clean re-inserts the steps and fills them) and `n_repeated` rows
printed twice (the second time with the value rounded to one decimal less; clean keeps one row
per date). Values over 1,000 carry a thousands separator. `/robots.txt` disallows `/admin/`.
"""

from __future__ import annotations

import argparse
import logging
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache

from crawlers.demo_sections import _doc, _nav
from crawlers.demo_server import DemoSiteServer, Page
from crawlers.demo_site import ROBOTS_TXT

logger = logging.getLogger("kiln.series_sites")

_HTML = "text/html; charset=utf-8"


def _elnino() -> list[tuple[str, float]]:
    from statsmodels.datasets import elnino  # noqa: PLC0415 (slow import, ~1 s)

    frame = elnino.load_pandas().data
    months = list(frame.columns[1:])  # JAN .. DEC
    return [
        (f"{int(row['YEAR'])}-{m:02d}", float(row[name]))
        for _, row in frame.iterrows()
        for m, name in enumerate(months, start=1)
    ]


def _sunspots() -> list[tuple[str, float]]:
    from statsmodels.datasets import sunspots  # noqa: PLC0415

    frame = sunspots.load_pandas().data
    years, values = frame["YEAR"], frame["SUNACTIVITY"]
    return [(f"{int(y)}", float(v)) for y, v in zip(years, values, strict=True)]


def _gdp() -> list[tuple[str, float]]:
    from statsmodels.datasets import macrodata  # noqa: PLC0415

    frame = macrodata.load_pandas().data
    return [
        (f"{int(y)}-{3 * int(q) - 2:02d}-01", float(v))
        for y, q, v in zip(frame["year"], frame["quarter"], frame["realgdp"], strict=True)
    ]


@dataclass(frozen=True)
class SeriesSite:
    name: str
    title: str
    load: Callable[[], list[tuple[str, float]]]  # (date cell, value), in time order
    time_header: str
    value_header: str
    decimals: int
    n_missing: int
    n_repeated: int = 2
    rows_per_page: int = 60
    port: int = 8781  # default port of `python -m crawlers.series_sites`


SITES = {
    s.name: s
    for s in (
        SeriesSite("elnino", "El Niño sea surface temperature (°C), monthly", _elnino,
                   "month", "sst", 2, n_missing=9, port=8781),
        SeriesSite("sunspots", "Sunspot number, yearly mean", _sunspots,
                   "year", "sunspots", 1, n_missing=4, rows_per_page=50, port=8782),
        SeriesSite("gdp", "US real GDP (billions of chained 2005 dollars), quarterly", _gdp,
                   "quarter", "gdp", 1, n_missing=3, rows_per_page=40, port=8783),
    )
}  # fmt: skip


@cache
def series(name: str) -> tuple[tuple[str, float], ...]:
    """(date cell, value) of site `name`'s whole series, in time order, none missing."""
    return tuple(SITES[name].load())


@dataclass(frozen=True)
class BuiltSeriesSite:
    site: SeriesSite
    rows: list[tuple[str, str]]  # (date cell, value cell) as printed, repeats included
    missing: list[str]  # date cells whose value cell is empty
    repeated: list[str]  # date cells printed twice
    pages: dict[str, Page] = field(repr=False)


def _value(value: float, decimals: int) -> str:
    return f"{value:,.{decimals}f}"


def build_series_site(name: str, seed: int = 0) -> BuiltSeriesSite:
    """Every page of test site `name` in memory; same statsmodels and seed, same bytes."""
    if name not in SITES:
        raise ValueError(f"unknown series site {name!r}; known: {sorted(SITES)}")
    site = SITES[name]
    data = series(name)
    rng = random.Random(f"{name}-{seed}")  # noqa: S311 (reproducible dirt, not security)
    inner = range(1, len(data) - 1)  # the first and last value are always there
    picked = rng.sample(inner, site.n_missing + site.n_repeated)
    missing, repeated = set(picked[: site.n_missing]), set(picked[site.n_missing :])
    rows = []
    for i, (when, value) in enumerate(data):
        cell = "" if i in missing else _value(value, site.decimals)
        rows.append((when, cell))
        if i in repeated:
            rows.append((when, _value(round(value, site.decimals - 1), site.decimals)))
    pages = {
        "/robots.txt": Page(ROBOTS_TXT.encode(), "text/plain; charset=utf-8"),
        "/admin/": Page(_doc("Admin", "<h1>Staff only</h1>"), _HTML),
    }
    per = site.rows_per_page
    n_pages = -(-len(rows) // per)
    for n in range(1, n_pages + 1):
        cells = "\n".join(
            f'<tr><td class="date">{when}</td><td class="value">{cell}</td></tr>'
            for when, cell in rows[(n - 1) * per : n * per]
        )
        body = (
            f"<h1>{site.title}, page {n}</h1>\n{_nav('/', n, n_pages)}\n"
            f'<table class="series">\n<tr><th>{site.time_header}</th>'
            f"<th>{site.value_header}</th></tr>\n{cells}\n</table>"
        )
        pages["/" if n == 1 else f"/page/{n}"] = Page(_doc(site.title, body), _HTML)
    return BuiltSeriesSite(
        site=site,
        rows=rows,
        missing=[data[i][0] for i in sorted(missing)],
        repeated=[data[i][0] for i in sorted(repeated)],
        pages=pages,
    )


def start_series_site(
    name: str, host: str = "127.0.0.1", port: int | None = None, seed: int = 0
) -> DemoSiteServer:
    """Serve test site `name` from a background thread; port None: the site's own, 0: free."""
    built = build_series_site(name, seed)
    return DemoSiteServer(built.pages, host, SITES[name].port if port is None else port)


@contextmanager
def running_series_site(
    name: str, port: int | None = 0, seed: int = 0
) -> Iterator[tuple[str, DemoSiteServer]]:
    """`with running_series_site("elnino") as (url, server):` on a free port by default."""
    server = start_series_site(name, port=port, seed=seed)
    try:
        yield server.url, server
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("site", choices=sorted(SITES))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=None, help="default: the site's own")
    parser.add_argument("--seed", type=int, default=0, help="which cells get dirt")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    server = start_series_site(args.site, args.host, args.port, args.seed)
    server.serve_until_stopped(logger, f"{len(series(args.site))} {args.site} values")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
