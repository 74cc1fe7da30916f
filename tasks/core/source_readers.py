"""Reading a non-crawl source into records (tasks/core/sources.py maps them to data/raw rows).

Each reader gives, in a stable order, `Record`s (one row of a table, one file of a folder, one
sample of a packaged dataset: its columns and where it came from) and `Reject`s (something that
could not become a record, with its reason), so every record of the source is accounted for.
What makes a whole source unusable (no file matches, a mapped column the file lacks, a file that
changed while it was read) raises SourceError naming the file and line.

* table (`source.path`: a file, a glob or a URL that fsspec, DVC's file-system layer, opens):
  CSV through the standard library's csv reader (it says on which line each record starts,
  which pandas' reader does not, and a bad line is one reject, not the end of the file), JSON
  Lines one line at a time, Parquet through pandas. A line that is not in `source.encoding` is a
  reject naming the line and the byte (a file of mixed encodings loses only those lines).
* folder: `<path>/<class>/<file>` (or `<path>/<file>` when `source.labelled` is false): columns
  `class`, `file` (its path in the project) and, for text files, `text`.
* package: `source.loader` called with no arguments; a pandas frame (statsmodels' `.data`) or a
  scikit-learn Bunch (`target`, `target_name`, the feature names, `image` as PNG bytes).
"""

from __future__ import annotations

import csv
import glob
import importlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.core.params import SourceParams, check_loader

HIDDEN = "."  # .DS_Store, .git, .ipynb_checkpoints: never data (nor is __MACOSX, below)


class SourceError(RuntimeError):
    """The source cannot be read into data/raw; the message names the file (and line)."""


@dataclass(frozen=True)
class Record:
    where: str  # provenance, the row's `url`: "<file>#L<line>", "<file>", "<loader>#<index>"
    values: dict[str, Any]  # column -> value (None: empty)
    base: Path | None = None  # the folder relative file paths in its values are resolved against


@dataclass(frozen=True)
class Reject:
    where: str
    reason: str


@dataclass
class SourceFile:
    """A file the source was read from, kept in data/raw/sources/ as the bytes that were read."""

    where: str
    data: bytes
    records: list[Record | Reject] = field(default_factory=list)


def read_stable(path: Path) -> bytes:
    """The bytes of `path`, read once; SourceError when the file changed while it was read (its
    size or modification time differs before and after), so half-written data is never used."""
    try:
        before = path.stat()
        data = _read_bytes(path)
        after = path.stat()
    except FileNotFoundError:
        raise SourceError(f"{path}: not found") from None
    except OSError as exc:
        raise SourceError(f"{path}: cannot be read ({exc.strerror})") from None
    changed = (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns)
    if changed or len(data) != after.st_size:
        raise SourceError(f"{path}: changed while it was read; run again once it is written")
    return data


def _read_bytes(path: Path) -> bytes:
    return path.read_bytes()


def _is_url(path: str) -> bool:
    return "://" in path


def table_files(cfg: SourceParams, root: Path) -> Iterator[tuple[str, bytes]]:
    """(where, bytes) of every file `source.path` names, sorted; SourceError when none does."""
    pattern = cfg.path or ""  # params require it for this kind
    if _is_url(pattern):
        import fsspec  # noqa: PLC0415 (only remote tables need it)

        try:
            opened = fsspec.open_files(pattern, mode="rb")
        except (ImportError, ValueError, OSError) as exc:  # no filesystem for the scheme (s3fs
            # missing), a malformed URL, the listing of a glob refused
            raise SourceError(f"source.path {pattern!r} cannot be opened: {exc}") from None
        if not opened:
            raise SourceError(f"source.path {pattern!r} matches no file")
        for handle in sorted(opened, key=lambda f: f.path):
            try:
                with handle as fh:
                    data = fh.read()
            except OSError as exc:  # not found, refused, a network error: fsspec's or the OS's
                raise SourceError(f"{handle.full_name}: cannot be read ({exc})") from None
            yield handle.full_name, data
        return
    # glob handles a plain path, a pattern, and an absolute one (root / an absolute path is it)
    matches = sorted(Path(p) for p in glob.glob(str(root / pattern)) if Path(p).is_file())
    if not matches:
        raise SourceError(f"source.path {pattern!r} matches no file (looked in {root.resolve()})")
    for path in matches:
        shown = _shown(path, root)
        yield shown, read_stable(path)


def table_format(cfg: SourceParams, where: str) -> str:
    if cfg.format != "auto":
        return cfg.format
    suffix = Path(where.split("?", 1)[0]).suffix.lower()
    formats = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl",
               ".ndjson": "jsonl"}  # fmt: skip
    if suffix not in formats:
        raise SourceError(f"{where}: cannot tell its format from {suffix or 'no suffix'!r}; "
                          "set source.format (csv, parquet or jsonl)")  # fmt: skip
    return formats[suffix]


def _undecodable(text: str, encoding: str) -> str | None:
    """Why a line decoded with surrogateescape is not `encoding` text (None when it is)."""
    bad = next((c for c in text if "\udc80" <= c <= "\udcff"), None)
    if bad is None:
        return None
    return f"not {encoding} text (byte {ord(bad) - 0xDC00:#04x}); a file of mixed encodings?"


def read_csv(where: str, data: bytes, cfg: SourceParams, base: Path | None) -> SourceFile:
    text = data.decode(cfg.encoding, errors="surrogateescape")
    reader = csv.reader(io.StringIO(text, newline=""))
    out = SourceFile(where, data)
    try:
        header = next(reader)
    except StopIteration:
        raise SourceError(f"{where}: empty, not even a header line") from None
    except csv.Error as exc:
        raise SourceError(f"{where} line 1: {exc}") from None
    if problem := _undecodable(",".join(header), cfg.encoding):
        raise SourceError(f"{where} line 1 (the header): {problem}")
    twice = sorted({h for h in header if header.count(h) > 1})
    if twice:
        raise SourceError(f"{where} line 1: columns {twice} are named more than once")
    check_columns(where, header, cfg, "line 1: ")
    line = reader.line_num + 1  # where the next record starts
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:  # e.g. a NUL byte, an unclosed quote at the end
            out.records.append(Reject(f"{where}#L{line}", f"line {line}: {exc}"))
            line = reader.line_num + 1
            continue
        at, line = line, reader.line_num + 1
        if not cells:
            continue  # a blank line is no record
        if problem := _undecodable(",".join(cells), cfg.encoding):
            out.records.append(Reject(f"{where}#L{at}", f"line {at}: {problem}"))
        elif len(cells) != len(header):
            out.records.append(Reject(f"{where}#L{at}", f"line {at}: {len(cells)} cells, the "
                                      f"header has {len(header)}"))  # fmt: skip
        else:
            values = {h: (c if c.strip() else None) for h, c in zip(header, cells, strict=True)}
            out.records.append(Record(f"{where}#L{at}", values, base))
    return out


def read_jsonl(where: str, data: bytes, cfg: SourceParams, base: Path | None) -> SourceFile:
    out = SourceFile(where, data)
    columns: set[str] = set()
    for number, raw in enumerate(data.split(b"\n"), start=1):
        text = raw.decode(cfg.encoding, errors="surrogateescape")
        if not text.strip():
            continue
        at = f"{where}#L{number}"
        if problem := _undecodable(text, cfg.encoding):
            out.records.append(Reject(at, f"line {number}: {problem}"))
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            out.records.append(Reject(at, f"line {number}: not JSON ({exc})"))
            continue
        if not isinstance(value, dict):
            out.records.append(Reject(at, f"line {number}: a JSON {type(value).__name__}, not "
                                      "an object"))  # fmt: skip
            continue
        columns |= value.keys()
        out.records.append(Record(at, value, base))
    if any(isinstance(r, Record) for r in out.records):
        check_columns(where, sorted(columns), cfg, "")
    return out


def read_parquet(where: str, data: bytes, cfg: SourceParams, base: Path | None) -> SourceFile:
    import pandas as pd  # noqa: PLC0415 (only Parquet tables need it here)

    try:
        frame = pd.read_parquet(io.BytesIO(data))
    except Exception as exc:  # pyarrow's ArrowInvalid and friends: not a Parquet file
        raise SourceError(f"{where}: not a readable Parquet file ({exc})") from None
    check_columns(where, [str(c) for c in frame.columns], cfg, "")
    out = SourceFile(where, data)
    for number, values in enumerate(frame.to_dict("records"), start=1):
        out.records.append(Record(f"{where}#row={number}", _plain(values), base))
    return out


def _plain(values: dict[Any, Any]) -> dict[str, Any]:
    """Column names as strings and pandas' missing values (NaN, NaT, None) as None."""
    import pandas as pd  # noqa: PLC0415

    return {str(k): (None if _is_missing(v, pd) else v) for k, v in values.items()}


def _is_missing(value: Any, pd: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # an array (an image): never "missing" as a whole
        return False


def check_columns(where: str, columns: list[str], cfg: SourceParams, line: str) -> None:
    """SourceError naming the file and the first mapped column it lacks (and the closest one)."""
    import difflib  # noqa: PLC0415

    for name, spec in cfg.fields.items():
        column = spec.column or name
        if column not in columns:
            close = difflib.get_close_matches(column, columns, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise SourceError(
                f"{where} {line}no column {column!r} (source.fields.{name}); its columns: "
                f"{columns[:20]}{hint}"
            )


def read_table(cfg: SourceParams, root: Path) -> list[SourceFile]:
    readers = {"csv": read_csv, "jsonl": read_jsonl, "parquet": read_parquet}
    out = []
    for where, data in table_files(cfg, root):
        base = None if _is_url(where) else (root / where).parent
        out.append(readers[table_format(cfg, where)](where, data, cfg, base))
    return out


def _visible(path: Path) -> bool:
    return not path.name.startswith(HIDDEN) and path.name != "__MACOSX"  # a zip's resource forks


def read_folder(cfg: SourceParams, root: Path) -> list[Record | Reject]:
    try:
        return _read_folder(cfg, root)
    except OSError as exc:  # a folder that cannot be listed (permissions, removed meanwhile)
        raise SourceError(f"{exc.filename}: cannot be listed ({exc.strerror})") from None


def _read_folder(cfg: SourceParams, root: Path) -> list[Record | Reject]:
    folder = cfg.path or ""  # params require it for this kind
    top = root / folder
    if not top.is_dir():
        raise SourceError(f"source.path {folder!r}: no such folder (looked in {root.resolve()})")
    out: list[Record | Reject] = []
    entries = sorted(p for p in top.iterdir() if _visible(p))
    if not cfg.labelled:
        for path in entries:
            out.append(_file_record(path, None, cfg, root) if path.is_file() else
                       Reject(_shown(path, root) + "/", "a folder inside an unlabelled folder "
                              "(source.labelled: false reads <path>/<file>)"))  # fmt: skip
        return out
    for entry in entries:
        if entry.is_file():
            out.append(Reject(_shown(entry, root), "not in a class folder (<path>/<class>/<file>)"))
            continue
        files = sorted(p for p in entry.iterdir() if _visible(p))
        if not files:
            out.append(Reject(_shown(entry, root) + "/", f"class folder {entry.name!r} has no "
                              "files"))  # fmt: skip
        for path in files:
            out.append(_file_record(path, entry.name, cfg, root) if path.is_file() else
                       Reject(_shown(path, root) + "/", "a folder in a class folder"))  # fmt: skip
    return out


def _shown(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _file_record(path: Path, label: str | None, cfg: SourceParams, root: Path) -> Record | Reject:
    where = _shown(path, root)
    values: dict[str, Any] = {"class": label, "file": where}  # relative to the project
    if cfg.files == "text":
        try:
            data = read_stable(path)
        except SourceError as exc:  # one file of many: a reject, the others still count
            return Reject(where, str(exc).removeprefix(f"{path}: "))
        text = data.decode(cfg.encoding, errors="surrogateescape")
        if problem := _undecodable(text, cfg.encoding):
            return Reject(where, problem)
        values["text"] = text if text.strip() else None
    return Record(where, values, root)


def read_package(cfg: SourceParams) -> list[Record | Reject]:
    """The records of `source.loader`'s dataset (imported only here, at run time)."""
    module_name, func_name = check_loader(cfg.loader or "")  # params require it here
    try:
        loader = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError) as exc:
        raise SourceError(f"source.loader {cfg.loader!r} cannot be loaded: {exc}") from None
    try:
        dataset = loader()
    except Exception as exc:  # whatever the package raises: name the loader, not a traceback
        raise SourceError(f"source.loader {cfg.loader!r} failed: {type(exc).__name__}: "
                          f"{exc}") from None
    frame = _frame(dataset, cfg.loader)
    check_columns(cfg.loader, list(frame.columns), cfg, "")
    return [Record(f"{cfg.loader}#{i}", _plain(values)) for i, values in
            enumerate(frame.to_dict("records"))]  # fmt: skip


def _frame(dataset: Any, loader: str) -> Any:
    """A pandas frame of a statsmodels Dataset (`.data`), a scikit-learn Bunch or a frame."""
    import numpy as np  # noqa: PLC0415
    import pandas as pd  # noqa: PLC0415

    data = getattr(dataset, "data", dataset)
    if isinstance(data, pd.DataFrame) and not hasattr(dataset, "target"):
        if not isinstance(data.index, pd.RangeIndex):  # co2's weeks are its index
            data = data.rename_axis(data.index.name or "index").reset_index()
        return data
    if not hasattr(dataset, "target"):
        raise SourceError(f"source.loader {loader!r} gave a {type(dataset).__name__}, neither a "
                          "frame, a statsmodels Dataset nor a scikit-learn Bunch")  # fmt: skip
    columns: dict[str, Any] = {}
    names = getattr(dataset, "feature_names", None)
    features = np.asarray(dataset.data)
    if names is not None and features.ndim == 2:
        columns |= {str(n): features[:, i] for i, n in enumerate(names)}
    target = np.asarray(dataset.target)
    columns["target"] = target
    target_names = getattr(dataset, "target_names", None)
    if target_names is not None and target.ndim == 1 and target.dtype.kind in "iu":
        columns["target_name"] = [str(target_names[t]) for t in target]
    if getattr(dataset, "images", None) is not None:
        columns["image"] = _pngs(np.asarray(dataset.images))
    return pd.DataFrame(columns)


def _pngs(images: Any) -> list[bytes]:
    """Each image of an array (N, H, W) or (N, H, W, 3) as PNG bytes; values other than uint8
    are scaled from 0..max over the whole array to 0..255 (the digits' 0..16, as the demo site)."""
    import numpy as np  # noqa: PLC0415
    from PIL import Image  # noqa: PLC0415

    if images.dtype != np.uint8:
        top = float(images.max()) or 1.0
        images = np.floor(images.astype(np.float64) * 255.0 / top).clip(0, 255).astype(np.uint8)
    out = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out

