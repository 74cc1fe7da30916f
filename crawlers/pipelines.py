"""Item pipelines of the Kiln crawler (`python -m crawlers.run`; enabled in settings.py).

* `NormalizeItemPipeline` turns what a custom spider (`crawl.spider`) yields into the generic
  spider's output: a dict with a `url` becomes a `PageItem` (its other keys are the fields; a
  required `crawl.fields` entry missing makes it a reject), pointed at its image like the
  generic spider's items.
* `HashedImagesPipeline` downloads each item's image with Scrapy's media pipeline and stores it
  as `images/<sha256 of the bytes>.<ext>`, the extension read from the bytes' magic number:
  nothing from the URL or the headers ever becomes part of a path. The files of
  `crawl.file_fields` go the same way to `files/<sha256>.<ext>` (.bin when the bytes are of no
  known kind). An image or file that fails turns its item into a reject.
* `JsonlWriterPipeline` appends items and rejects to `items.jsonl` / `rejects.jsonl` (and the
  item pages not requested, `CarriedItem`, to `carried.jsonl`) in the
  spider's output directory as they come (`tasks.crawl` sorts them), and turns an exception in a
  spider callback into a reject, so every fetched page is accounted for.
  It stops the spider after `crawl.max_items` items (later ones in flight are not written;
  crawlers/limits.py closes it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import DropItem
from scrapy.http import Request, Response
from scrapy.http.request import NO_CALLBACK
from scrapy.pipelines.files import FilesPipeline
from scrapy.pipelines.media import FileException
from twisted.python.failure import Failure

from crawlers.items import CarriedItem, PageItem, PageReject
from crawlers.limits import FILE_DOWNLOAD, LIMIT_REACHED
from crawlers.settings import crawl_params_from
from crawlers.spiders.generic import with_downloads

logger = logging.getLogger(__name__)

_MAGIC = {  # leading bytes -> extension; anything else is not stored
    b"\x89PNG\r\n\x1a\n": "png",
    b"\xff\xd8\xff": "jpg",
    b"GIF87a": "gif",
    b"GIF89a": "gif",
}


_FILE_MAGIC = {  # other files of crawl.file_fields; anything unknown is stored as .bin
    b"%PDF-": "pdf",
    b"PK\x03\x04": "zip",
    b"\x1f\x8b": "gz",
}
_FILE_FIELD = "kiln_file_field"  # request meta: the crawl.file_fields entry a download is for


def file_extension(data: bytes) -> str:
    """The extension of a downloaded file of `crawl.file_fields`, from its first bytes only."""
    return next((ext for magic, ext in _FILE_MAGIC.items() if data.startswith(magic)), "bin")


def image_extension(data: bytes) -> str | None:
    """The file extension for PNG/JPEG/GIF/WebP bytes, None for anything else."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return next((ext for magic, ext in _MAGIC.items() if data.startswith(magic)), None)


class NormalizeItemPipeline:
    def __init__(self, crawler: Crawler) -> None:
        self._cfg = crawl_params_from(crawler.settings)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> NormalizeItemPipeline:
        return cls(crawler)

    def process_item(self, item: Any) -> Any:
        if isinstance(item, PageItem | PageReject | CarriedItem):
            return item
        if not isinstance(item, dict) or not isinstance(item.get("url"), str):
            raise TypeError(f"a spider must yield dicts with a 'url', PageItem or PageReject; "
                            f"got {type(item).__name__}")  # fmt: skip
        fields = {k: v for k, v in item.items() if k != "url"}
        missing = sorted(
            n for n, f in self._cfg.fields.items() if f.required and fields.get(n) is None
        )
        if missing:
            return PageReject(item["url"], f"missing required field(s): {', '.join(missing)}")
        return with_downloads(PageItem(url=item["url"], fields=fields), self._cfg, None)


class HashedImagesPipeline(FilesPipeline):
    def get_media_requests(self, item: Any, info: Any) -> list[Request]:
        """The image first (when there is one), then every file URL, field by field."""
        if not isinstance(item, PageItem):
            return []
        # FILE_DOWNLOAD: counted as a file, not a page (crawlers/limits.py, crawl.max_files)
        image = {FILE_DOWNLOAD: True}
        requests = [Request(u, callback=NO_CALLBACK, meta=image) for u in [item.image_url] if u]
        for name, urls in item.file_urls.items():
            meta = {_FILE_FIELD: name, FILE_DOWNLOAD: True}
            requests += [Request(u, callback=NO_CALLBACK, meta=meta) for u in urls]
        return requests

    def media_to_download(self, request: Request, info: Any, *, item: Any = None) -> None:
        return None  # always download: each crawl stores into a fresh, empty directory

    async def media_downloaded(
        self, response: Response, request: Request, info: Any, *, item: Any = None
    ) -> Any:
        if response.status != 200:  # Scrapy's message would say only "download-error"
            raise FileException(f"HTTP {response.status}")
        return await super().media_downloaded(response, request, info, item=item)

    def file_path(
        self,
        request: Request,
        response: Response | None = None,
        info: Any = None,
        *,
        item: Any = None,
    ) -> str:
        if response is None:  # only media_to_download asks without bytes, and it is overridden
            raise ValueError("a file path is named after its bytes; no response given")
        digest = hashlib.sha256(response.body).hexdigest()
        ext = image_extension(response.body)
        if _FILE_FIELD in request.meta:  # any kind of file; the extension only from known magic
            return f"files/{digest}.{ext or file_extension(response.body)}"
        if ext is None:
            raise FileException(f"not a PNG, JPEG, GIF or WebP image ({len(response.body)} bytes)")
        return f"images/{digest}.{ext}"

    def item_completed(self, results: list[tuple[bool, Any]], item: Any, info: Any) -> Any:
        if not isinstance(item, PageItem) or not results:  # a reject, or an item without files
            return item
        urls = ([item.image_url] if item.image_url else []) + [
            u for urls in item.file_urls.values() for u in urls
        ]
        for url, (ok, value) in zip(urls, results, strict=True):
            if not ok:
                message = value.getErrorMessage() if isinstance(value, Failure) else str(value)
                if isinstance(value, Failure) and not message:  # Scrapy's FileException has none
                    message = value.type.__name__
                what = "image" if url == item.image_url else "file"
                logger.warning("%s %s of %s failed: %s", what, url, item.url, message)
                return PageReject(url=item.url, reason=f"{what} {url} failed: {message}",
                                  list_values=item.list_values)  # fmt: skip
        paths = iter(value["path"] for _, value in results)
        if item.image_url:
            item.image_path = next(paths)
        item.file_paths = {
            name: [next(paths) for _ in urls] for name, urls in item.file_urls.items()
        }
        return item


class JsonlWriterPipeline:
    def __init__(self, crawler: Crawler) -> None:
        self._out = Path(crawler.settings["KILN_OUT_DIR"])
        self._stats = crawler.stats
        self._crawler = crawler
        self._max_items = crawler.settings.getint("KILN_MAX_ITEMS")  # 0: no limit
        self._n_items = 0
        self._resume = crawler.settings.getbool("KILN_RESUME")  # append to an interrupted crawl
        crawler.signals.connect(self._spider_error, signal=signals.spider_error)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> JsonlWriterPipeline:
        return cls(crawler)

    def open_spider(self) -> None:
        self._out.mkdir(parents=True, exist_ok=True)
        self._files = {
            name: open(self._out / f"{name}.jsonl", "a" if self._resume else "w", encoding="utf-8")
            for name in ("items", "rejects", "carried")
        }

    def close_spider(self) -> None:
        for fh in self._files.values():
            fh.close()

    def _write(self, name: str, row: dict[str, Any]) -> None:
        self._files[name].write(json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n")
        self._stats.inc_value(f"kiln/{name}")

    def process_item(self, item: Any) -> Any:
        if isinstance(item, PageItem):
            self._count(1)
            self._write("items", dataclasses.asdict(item))
        elif isinstance(item, CarriedItem):  # a kept item counts towards the limit too
            for url in item.urls[: self._count(len(item.urls))]:
                self._write("carried", {"url": url})
        elif isinstance(item, PageReject):
            self._write("rejects", dataclasses.asdict(item))
        else:
            raise TypeError(f"the spider yielded a {type(item).__name__}, not a PageItem/Reject")
        return item

    def _count(self, n: int) -> int:
        """How many of `n` more items fit under crawl.max_items (DropItem when none does); the
        spider is stopped once the limit is reached."""
        room = n if not self._max_items else min(n, self._max_items - self._n_items)
        self._n_items += max(room, 0)
        if self._max_items and (room < n or self._n_items == self._max_items):
            # crawlers/limits.py closes the spider (now, when items were dropped: room < n)
            self._crawler.signals.send_catch_log(signal=LIMIT_REACHED, reason="kiln_max_items",
                                                 more=room < n)  # fmt: skip
        if room <= 0:
            raise DropItem(f"crawl.max_items={self._max_items} reached")
        return room

    def _spider_error(self, failure: Failure, response: Response) -> None:
        reason = f"spider error: {failure.type.__name__}: {failure.getErrorMessage()}"
        self._write("rejects", {"url": response.url, "status": response.status, "reason": reason})
