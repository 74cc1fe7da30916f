"""Which item pages a refresh may skip: `crawl.revisit_after_s` and the server's freshness.

Used by `python -m tasks.crawl` (before and after the spider runs) and by the generic spider.
Incremental crawlers revisit a page on a schedule (Nutch's `db.fetch.interval.default`,
StormCrawler's `fetchInterval.default`) instead of on every crawl; Kiln does that for item pages
only. List pages (everything that is not an item page) are re-checked on every crawl, so new and
removed items are seen at once; an item page checked less than its revisit interval ago is not
requested, and its row of the last `data/raw` is kept. The interval of a page is the larger of
`crawl.revisit_after_s` and the freshness its server declared (`Cache-Control: max-age`), counted
from the last time a response for it arrived (a 304 counts).

The state lives in `.kiln/crawl-state.json` (local, like the HTTP cache): per item page, when it
was checked, how long it stays fresh, the `content_hash` of the row it gave, its `from: list`
field values (a changed list entry means the detail page is fetched again) and the links it had
(followed again when it is skipped, so what is reachable through item pages stays reachable).
It also lists the list pages that crawl parsed, which the next one fetches ahead
(crawlers/prefetch.py). Losing the file costs one full re-check, nothing else. One difference
from a crawl that fetches the page: the links of a kept page are requested from the list page
that linked to it, so `crawl.max_depth` counts them one level shallower.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.core.io import write_json
from tasks.core.params import CrawlParams

logger = logging.getLogger("kiln.crawl")

STATE_VERSION = 1
CARRY_FILE = "carry.json"  # in the spider's output directory: the pages it may skip
CARRIED_FILE = "carried.jsonl"  # written by the spider: the pages it skipped
PREFETCH_FILE = "prefetch.json"  # in the spider's output directory: list pages to fetch ahead
LIST_PAGES_FILE = "list_pages.json"  # written by the spider: the list pages it parsed
# Change when or how far, not what a page gives: the limits and the partial-crawl gate too.
_POLICY_ONLY = {"revisit_after_s", "http_cache_max_mb", "max_pages", "max_files", "max_items",
                "allow_partial"}  # fmt: skip


@dataclass(frozen=True)
class PageVisit:
    """The last check of one item page."""

    checked_at: float  # Unix time (s) the last response for it arrived
    fresh_s: float  # seconds the server said it stays fresh (max-age); 0 when it said nothing
    content_hash: str  # of the row it gave (tasks.crawl)
    list_values: dict[str, Any]  # its `from: list` fields, as read on the list page
    links: list[list[Any]]  # [url, its list values or None] the spider followed from it


def server_fresh_s(cache_control: bytes | None) -> float:
    """Seconds a response stays fresh by its Cache-Control header (max-age; 0 for no-cache)."""
    # Imported here: the spider calls this; tasks.crawl imports this module without Scrapy
    # (importing scrapy costs ~0.5 s, python -X importtime).
    from scrapy.extensions.httpcache import parse_cachecontrol  # noqa: PLC0415

    directives = parse_cachecontrol(cache_control or b"")
    if b"no-store" in directives or b"no-cache" in directives:
        return 0.0
    try:
        return max(0.0, float(directives.get(b"max-age") or 0))
    except ValueError:  # a malformed max-age is no promise
        return 0.0


def config_key(cfg: CrawlParams) -> str:
    """What the rows of a crawl depend on: every `crawl` param but the refresh policy ones."""
    dumped = cfg.model_dump(mode="json", by_alias=True, exclude=_POLICY_ONLY)
    return hashlib.sha256(json.dumps(dumped, sort_keys=True).encode()).hexdigest()


def _read_state(path: Path, cfg: CrawlParams) -> dict[str, Any] | None:
    """The state file's contents when it is usable for a crawl with `cfg`, else None."""
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"version {data.get('version')!r}, expected {STATE_VERSION}")
        if data["config"] != config_key(cfg):
            logger.info("crawl params changed since %s: every item page is checked again", path)
            return None
        return data
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        logger.warning("ignoring %s (%s): every item page is checked again", path, exc)
        return None


def load(path: Path, cfg: CrawlParams) -> tuple[dict[str, PageVisit], list[str]]:
    """What the last successful crawl with the same `crawl` params recorded, from one read of
    the file: its visits ({} when there are none, when the file is unusable or when it was made
    with other `crawl` params: its rows may not be today's) and the list pages it parsed, for
    crawlers/prefetch.py ([] when unknown; a state file written before they were recorded has
    none, and the next crawl records them)."""
    data = _read_state(path, cfg)
    if data is None:
        return {}, []
    pages = data.get("list_pages", [])
    list_pages = [url for url in pages if isinstance(url, str)] if isinstance(pages, list) else []
    try:
        return {url: PageVisit(**visit) for url, visit in data["pages"].items()}, list_pages
    except (TypeError, KeyError, AttributeError) as exc:
        logger.warning("ignoring %s (%s): every item page is checked again", path, exc)
        return {}, list_pages


def load_state(path: Path, cfg: CrawlParams) -> dict[str, PageVisit]:
    """The visits of `load`."""
    return load(path, cfg)[0]


def load_list_pages(path: Path, cfg: CrawlParams) -> list[str]:
    """The list pages of `load`."""
    return load(path, cfg)[1]


def save_state(
    path: Path, cfg: CrawlParams, visits: dict[str, PageVisit], list_pages: Iterable[str] = ()
) -> None:
    pages = {url: vars(visits[url]) for url in sorted(visits)}
    write_json(path, {"version": STATE_VERSION, "config": config_key(cfg), "pages": pages,
                      "list_pages": sorted(set(list_pages))})  # fmt: skip


def _canonical(values: dict[str, Any]) -> str:
    return json.dumps(values, sort_keys=True, ensure_ascii=False)


def same_list_values(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """Equal as JSON (a value read now against one that went through items.jsonl); a field that
    is None counts as absent (a page reached by a follow rule has no list values)."""
    return _canonical(_present(a)) == _canonical(_present(b))


def _present(values: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (values or {}).items() if v is not None}


def skippable(
    visits: dict[str, PageVisit],
    previous_rows: Iterable[dict[str, Any]],
    revisit_after_s: float,
    now: float,
) -> dict[str, dict[str, Any]]:
    """The item pages the spider need not request: checked within their interval, and their row
    (same content_hash) among `previous_rows`, the rows of the last data/raw whose files are all
    there. url -> what the spider needs to skip it (its list values and links)."""
    rows = {row["url"]: row for row in previous_rows}
    carry = {}
    for url, visit in visits.items():
        row = rows.get(url)
        if row is None or row.get("content_hash") != visit.content_hash:
            continue  # data/raw is not the snapshot this visit produced (e.g. a dvc checkout)
        if now - visit.checked_at < max(revisit_after_s, visit.fresh_s):
            carry[url] = {"list_values": visit.list_values, "links": visit.links}
    return carry
