"""A non-crawl source (`source.kind` table, folder or package) into data/raw, as a crawl writes.

The crawl stage (`python -m tasks.crawl`) calls `main` when `source.kind` is not `crawl`. The
records of tasks/core/source_readers.py become the rows of docs/contracts.md: the fields of
`source.fields`, each taken from its column and converted to its type as a crawl field is
(str, int, float with thousands separators, ISO date; an empty value is null; a required field
that is null, or a value that does not convert, rejects the row), `url` (where the row came
from: `<file>#L<line>`, `<file>`, `<loader>#<index>`), `content_hash` (the crawl's formula:
sha256 over the fields and the image bytes), `first_seen` (kept from the previous data/raw while
url and content_hash are unchanged), and with `source.image_field` `image_url` (where the image
came from) and `image_path` (`images/<sha256>.<ext>`). Each table file is kept as read in
`sources/<sha256>.<ext>`, so the DVC-recorded data/raw holds the exact bytes its rows came from.

Reading the same source again gives a byte-identical data/raw, so an unchanged source leaves every
later stage up to date, as an unchanged crawl does. data/raw is replaced in one rename, only when
the whole source was read: on any error it stays as it was.

Exit status: 0 ok; 1 the source could not be read (SourceError names the file and line), or gave
zero rows; 2 params.yaml is invalid.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from tasks.core.io import atomic_dir, read_jsonl, write_bytes, write_json, write_jsonl
from tasks.core.params import SourceField, SourceParams
from tasks.core.paths import CRAWL_REPORT, RAW_DIR
from tasks.core.source_readers import (
    Record,
    Reject,
    SourceError,
    SourceFile,
    read_folder,
    read_package,
    read_stable,
    read_table,
)

logger = logging.getLogger("kiln.source")

_NUMBER_NOISE = re.compile(r"[,_\s\u00a0]")  # thousands separators, as crawl fields allow
_IMAGE_FORMATS = {"PNG": "png", "JPEG": "jpg", "GIF": "gif", "WEBP": "webp"}  # the crawl's


@dataclass(frozen=True)
class SourceResult:
    items: list[dict[str, Any]]  # rows of data/raw/items.jsonl, sorted by url
    rejects: list[dict[str, Any]]  # rows of data/raw/rejects.jsonl: url, status (null), reason
    files: dict[str, bytes]  # path in data/raw (images/..., sources/...) -> its bytes
    stats: dict[str, Any]  # reports/crawl.json


def convert(value: Any, spec: SourceField) -> Any:
    """`value` as the field's type (None stays None); ValueError when it does not convert."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if hasattr(value, "item") and not isinstance(value, str | bytes):  # a numpy scalar
        value = value.item()
    if spec.type == "str":
        return value if isinstance(value, str) else str(value)
    if spec.type in ("int", "float"):
        if isinstance(value, bool):
            raise ValueError(value)
        number = float(_NUMBER_NOISE.sub("", value)) if isinstance(value, str) else float(value)
        if spec.type == "float":
            return number
        if not number.is_integer():
            raise ValueError(value)
        return int(number)
    if isinstance(value, datetime | date):  # pandas' Timestamp is a datetime
        return (value.date() if isinstance(value, datetime) else value).isoformat()
    text = str(value).strip()
    parsed = datetime.strptime(text, spec.date_format) if spec.date_format else (
        datetime.fromisoformat(text))  # fmt: skip
    return parsed.date().isoformat()


def image_file(value: Any, base: Path | None) -> tuple[bytes, str]:
    """(bytes, extension) of an image given as bytes or as a path (relative to `base`), as the
    crawl stores it: PNG, JPEG, GIF and WebP as they are, any other format Pillow reads
    re-encoded as PNG. ValueError says why it is not an image."""
    from PIL import Image, UnidentifiedImageError  # noqa: PLC0415

    if isinstance(value, bytes):
        data = value
    else:
        path = Path(str(value))
        path = path if path.is_absolute() or base is None else base / path
        try:
            data = read_stable(path)
        except SourceError as exc:
            raise ValueError(str(exc)) from None
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # decodes every pixel: a truncated file fails here, not in clean
            ext = _IMAGE_FORMATS.get(image.format or "")
            if ext is None:
                buffer = io.BytesIO()
                image.save(buffer, format="PNG")
                data, ext = buffer.getvalue(), "png"
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as exc:
        # Pillow's decode errors, and an image over its pixel limit (a decompression bomb)
        raise ValueError(f"not a readable image ({exc})") from None
    return data, ext


def content_hash(fields: dict[str, Any], image: bytes) -> str:
    """The crawl's content hash (tasks/crawl.py): sha256 over the fields as sorted JSON, then
    the image bytes."""
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True, ensure_ascii=False).encode())
    digest.update(image)
    return digest.hexdigest()


def to_row(record: Record, cfg: SourceParams) -> tuple[dict[str, Any], dict[str, bytes]] | Reject:
    """A data/raw row (without first_seen) and the files it points at, or a Reject with why."""
    fields: dict[str, Any] = {}
    problems, missing = [], []
    image, files = b"", {}
    for name, spec in cfg.fields.items():
        raw = record.values.get(spec.column or name)
        if name == cfg.image_field:
            if raw is None or (isinstance(raw, str) and not raw.strip()):
                missing.append(name)
                continue
            try:
                image, ext = image_file(raw, record.base)
            except ValueError as exc:
                problems.append(f"{name}: {exc}")
                continue
            fields[name] = raw if isinstance(raw, str) else f"{record.where}#{name}"
            continue
        try:
            fields[name] = convert(raw, spec)
        except (ValueError, TypeError):
            shown = repr(raw) if len(repr(raw)) <= 60 else repr(raw)[:57] + "..."
            problems.append(f"{name}: {shown} is not a {spec.type}")
            continue
        if fields[name] is None and spec.required:
            missing.append(name)
    missing = [n for n in missing if cfg.fields[n].required]
    if missing:
        problems.insert(0, f"missing required field(s): {', '.join(missing)}")
    if problems:
        return Reject(record.where, "; ".join(problems))
    row = {**fields, "url": record.where, "content_hash": content_hash(fields, image)}
    if cfg.image_field is not None:
        rel = f"images/{hashlib.sha256(image).hexdigest()}.{ext}" if image else None
        row |= {"image_url": fields.get(cfg.image_field), "image_path": rel}
        files = {rel: image} if rel else {}
    return row, files


def read_records(cfg: SourceParams, root: Path) -> tuple[list[Record | Reject], list[SourceFile]]:
    if cfg.kind == "table":
        tables = read_table(cfg, root)
        return [r for t in tables for r in t.records], tables
    if cfg.kind == "folder":
        return read_folder(cfg, root), []
    if cfg.kind == "package":
        return read_package(cfg), []
    raise SourceError(f"source.kind {cfg.kind!r} is read by the crawl, not here")


def read_source(
    cfg: SourceParams,
    previous: list[dict[str, Any]],
    root: Path = Path("."),
    now: datetime | None = None,
) -> SourceResult:
    """Every record of the source as a row or a reject (nothing written). SourceError when the
    source cannot be read or gives no row."""
    started = time.monotonic()
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    first_seen = {(r["url"], r["content_hash"]): r["first_seen"] for r in previous
                  if {"url", "content_hash", "first_seen"} <= r.keys()}  # fmt: skip
    records, tables = read_records(cfg, root)
    rows, rejects, files = {}, [], {}
    for record in records:
        made = record if isinstance(record, Reject) else to_row(record, cfg)
        if isinstance(made, Reject):
            rejects.append({"url": made.where, "status": None, "reason": made.reason})
            continue
        row, row_files = made
        row["first_seen"] = first_seen.get((row["url"], row["content_hash"]), stamp)
        rows[row["url"]] = row
        files |= row_files
    sources = []
    for table in tables:
        digest = hashlib.sha256(table.data).hexdigest()
        ext = Path(table.where.split("?")[0]).suffix.lstrip(".").lower() or "bin"
        files[f"sources/{digest}.{ext}"] = table.data
        sources.append({"where": table.where, "sha256": digest, "bytes": len(table.data),
                        "records": len(table.records)})  # fmt: skip
    if not rows:
        raise SourceError(f"zero rows from source.kind {cfg.kind} ({len(rejects)} rejects"
                          + (f", e.g. {rejects[0]['url']}: {rejects[0]['reason']}" if rejects
                             else "") + ")")  # fmt: skip
    items = [rows[url] for url in sorted(rows)]
    rejects.sort(key=lambda r: (r["url"], r["reason"]))
    stats = {
        "source": cfg.kind,
        "items": len(items),
        "rejects": len(rejects),
        "files": sum(1 for rel in files if rel.startswith("images/")),
        "sources": sources,
        "duration_s": round(time.monotonic() - started, 3),
        "finish_reason": "finished",
        "partial": False,
        "partial_reason": None,
    }
    return SourceResult(items=items, rejects=rejects, files=files, stats=stats)


def write_raw(result: SourceResult, raw_dir: Path = RAW_DIR) -> None:
    """Swap in a new data/raw in one rename (tasks.core.io.atomic_dir)."""
    with atomic_dir(raw_dir) as tmp:
        write_jsonl(tmp / "items.jsonl", result.items)
        write_jsonl(tmp / "rejects.jsonl", result.rejects)
        for rel, data in sorted(result.files.items()):
            write_bytes(tmp / rel, data)


def main(cfg: SourceParams) -> int:
    """The crawl stage for a non-crawl source: read it, write data/raw and reports/crawl.json."""
    items_path = RAW_DIR / "items.jsonl"
    try:
        try:
            previous = read_jsonl(items_path) if items_path.exists() else []
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise SourceError(f"{items_path} is not JSON lines ({exc}); move it away") from exc
        result = read_source(cfg, previous)
        write_raw(result)
        write_json(CRAWL_REPORT, result.stats)
    except SourceError as exc:
        logger.error("source failed: %s; data/raw left as it was", exc)
        return 1
    for reject in result.rejects[:20]:  # the rest are in data/raw/rejects.jsonl
        logger.warning("rejected %s: %s", reject["url"], reject["reason"])
    s = result.stats
    logger.info("source %s: %d rows, %d rejects, %d images in %.1f s -> %s", cfg.kind,
                s["items"], s["rejects"], s["files"], s["duration_s"], RAW_DIR)  # fmt: skip
    return 0
