"""What the spider yields (run it with `python -m crawlers.run`): one item or one reject per page.

Plain dataclasses (Scrapy handles them through itemadapter). `tasks.crawl` turns them into the
rows of `data/raw/items.jsonl` and `data/raw/rejects.jsonl` (docs/contracts.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class PageItem:
    """An item that gave every required field."""

    url: str
    fields: dict[str, Any]  # field name -> typed value (str, int, float, list), None when missing
    image_url: str | None = None  # absolute image URL; set by the spider
    image_path: str | None = None  # "images/<sha256>.<ext>"; set by the images pipeline
    # crawl.file_fields: field -> its absolute URLs (set by the spider) / "files/<sha256>.<ext>"
    # of each (set by the pipeline), in the same order; a field without a value has none.
    file_urls: dict[str, list[str]] = field(default_factory=dict)
    file_paths: dict[str, list[str]] = field(default_factory=dict)
    # For an item page the spider fetched (crawlers/revisit.py keeps them for the next refresh):
    # (url, the fields read for it on this page, or None): the links it followed; None: not a page
    links: list[tuple[str, dict[str, Any] | None]] | None = None
    fresh_s: float = 0.0  # seconds the server said the page stays fresh (Cache-Control max-age)
    # The `from: list` fields read for it on the list page that linked here (None: not linked
    # from an item block): a resumed crawl asks for a failed page again with them.
    list_values: dict[str, Any] | None = None


@dataclass(frozen=True)
class CarriedItem:
    """The item pages one page links to that were not requested: checked recently enough
    (`crawl.revisit_after_s`), so the crawl stage keeps their rows of the last data/raw. One per
    page, not per item: 1,000 kept items through Scrapy's item pipelines one at a time took 0.19 s
    of a cProfiled refresh of an unchanged site."""

    urls: tuple[str, ...]


@dataclass(frozen=True)
class PageReject:
    """A page that gave no item, and why."""

    url: str
    reason: str
    status: int | None = None  # HTTP status; None when no response came back
    list_values: dict[str, Any] | None = None  # as PageItem.list_values; not part of data/raw


def worth_retrying(reject: dict[str, Any]) -> bool:
    """Whether a page with this reject (a row of the spider's rejects.jsonl) may give an item
    when asked again: it got no answer (network error, its image or file failed) or a server
    error. A page that answered but did not parse (status 2xx-4xx) would give the same reject."""
    status = reject.get("status")
    return status is None or status >= 500
