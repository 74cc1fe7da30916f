"""The demo site's text board and data table (served by `python -m crawlers.demo_site`).

Both come from real data that installs with the project, nothing downloaded:

* `/jokes/`: a board of pyjokes' jokes, every language it ships, labelled by language
  (`jokes-<lang>` in the block's class and a `span.lang`). List pages of `_JOKES_PER_PAGE` blocks
  link to one page per joke, whose text sits in deliberately messy markup (unclosed `<p>`, `<br>`
  inside words, entities) so that `cleanup: [html_text]` has work to do.
  `examples/jokes.params.yaml` crawls it.
* `/co2/`: statsmodels' Mauna Loa weekly CO2 record (`statsmodels.datasets.co2`, 2284 weeks,
  1958-2001, ppm; 59 weeks have no value and show an empty cell) as an HTML table spread over
  pages of `_ROWS_PER_PAGE` rows. `examples/co2.params.yaml` crawls it.
"""

from __future__ import annotations

import html
import math
from functools import cache

from crawlers.demo_server import Page

_JOKES_PER_PAGE = 25
_ROWS_PER_PAGE = 100
_HTML = "text/html; charset=utf-8"


@cache
def jokes() -> list[tuple[str, str, str]]:
    """(joke id, language, text) for every joke pyjokes ships, in a fixed order."""
    import pyjokes  # noqa: PLC0415 (only the demo site needs it)

    out = []
    for lang in sorted(pyjokes.LANGUAGE_VALUES):
        for i, text in enumerate(pyjokes.get_jokes(language=lang, category="all")):
            out.append((f"{lang}-{i:04d}", lang, text))
    return out


@cache
def co2_weeks() -> list[tuple[str, float | None]]:
    """(ISO date of the week, CO2 in ppm or None when not measured) for the whole record."""
    from statsmodels.datasets import co2  # noqa: PLC0415 (slow import, ~1 s)

    series = co2.load_pandas().data["co2"]
    return [
        (stamp.date().isoformat(), None if math.isnan(value) else float(value))
        for stamp, value in series.items()
    ]


def _doc(title: str, body: str) -> bytes:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head>\n<body>\n{body}\n</body></html>\n"
    ).encode()


def _nav(base: str, n: int, n_pages: int) -> str:
    def path(k: int) -> str:
        return base if k == 1 else f"{base}page/{k}"

    links = [f'<a rel="prev" href="{path(n - 1)}">prev</a>'] if n > 1 else []
    links.append(f"<span>page {n} of {n_pages}</span>")
    if n < n_pages:
        links.append(f'<a rel="next" href="{path(n + 1)}">next</a>')
    return f'<nav class="pagination">{" ".join(links)}</nav>'


def _messy(text: str) -> str:
    """The joke as a careless CMS would print it: unclosed paragraphs, <br>s, entities."""
    sentences = html.escape(text).replace(". ", ".<br> ").replace("? ", "?<p>")
    return f'<div class="joke-body"><p>{sentences}</div><p class="sig">&mdash;&nbsp;kiln'


def jokes_pages() -> dict[str, Page]:
    all_jokes = jokes()
    n_pages = -(-len(all_jokes) // _JOKES_PER_PAGE)  # ceiling division
    pages = {}
    for n in range(1, n_pages + 1):
        chunk = all_jokes[(n - 1) * _JOKES_PER_PAGE : n * _JOKES_PER_PAGE]
        blocks = "\n".join(
            f'<article class="joke jokes-{lang}"><span class="lang">{lang}</span> '
            f'<a class="joke" href="/jokes/{jid}">{html.escape(text[:40])}…</a></article>'
            for jid, lang, text in chunk
        )
        body = f"<h1>Joke board, page {n}</h1>\n{_nav('/jokes/', n, n_pages)}\n{blocks}"
        pages["/jokes/" if n == 1 else f"/jokes/page/{n}"] = Page(_doc("Jokes", body), _HTML)
    for jid, lang, text in all_jokes:
        body = f'<h1 class="joke-id">Joke {jid}</h1>\n<p><a href="/jokes/">board</a></p>\n'
        body += _messy(text)
        pages[f"/jokes/{jid}"] = Page(_doc(f"Joke {jid} ({lang})", body), _HTML)
    return pages


def _cell(ppm: float | None) -> str:
    return "" if ppm is None else f"{ppm:.1f}"


def co2_pages() -> dict[str, Page]:
    weeks = co2_weeks()
    n_pages = -(-len(weeks) // _ROWS_PER_PAGE)
    pages = {}
    for n in range(1, n_pages + 1):
        rows = "\n".join(
            f'<tr><td class="week">{week}</td><td class="ppm">{_cell(ppm)}</td></tr>'
            for week, ppm in weeks[(n - 1) * _ROWS_PER_PAGE : n * _ROWS_PER_PAGE]
        )
        body = (
            f"<h1>Mauna Loa CO2 (ppm), weekly, page {n}</h1>\n{_nav('/co2/', n, n_pages)}\n"
            f'<table class="series">\n<tr><th>week</th><th>ppm</th></tr>\n{rows}\n</table>'
        )
        pages["/co2/" if n == 1 else f"/co2/page/{n}"] = Page(_doc("CO2", body), _HTML)
    return pages
