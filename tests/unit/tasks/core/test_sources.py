"""Sources beside the crawl (tasks/core/sources.py, source_readers.py): every bad input is a
reject with its reason or an error naming the file and line, and data/raw is all or nothing."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from PIL import Image

from tasks.core import source_readers, sources
from tasks.core.params import ParamsError, SourceParams, parse_params
from tasks.core.source_readers import SourceError
from tasks.core.sources import read_source
from tests.project import REPO

TEXT_FIELDS = {"text": {}, "label": {}, "n": {"type": "int", "required": False}}


def _png(value: int, size: int = 8) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (size, size), value).save(buffer, format="PNG")
    return buffer.getvalue()


def _table(root: Path, name: str, data: bytes, **cfg: Any) -> SourceParams:
    (root / name).write_bytes(data)
    return SourceParams(kind="table", path=name, fields=cfg.pop("fields", TEXT_FIELDS), **cfg)


def _folder(root: Path, classes: dict[str, list[bytes]]) -> SourceParams:
    for name, files in classes.items():
        (root / "imgs" / name).mkdir(parents=True)
        for i, data in enumerate(files):
            (root / "imgs" / name / f"{i}.png").write_bytes(data)
    return SourceParams(kind="folder", path="imgs", image_field="image",
                        fields={"label": {"column": "class"}, "image": {"column": "file"}})


def _rejects(result: sources.SourceResult) -> dict[str, str]:
    return {r["url"]: r["reason"] for r in result.rejects}


def test_csv_rows_are_converted_and_bad_rows_rejected_by_line(tmp_path: Path) -> None:
    data = (b'text,label,n\nhello,en,"1,234"\nbonjour,fr,x\n,en,3\n"two\nlines",en,\n'
            b"a,b\ncaf\xe9,fr,5\n")  # fmt: skip
    result = read_source(_table(tmp_path, "t.csv", data), [], tmp_path)
    assert [(r["url"], r["text"], r["n"]) for r in result.items] == [
        ("t.csv#L2", "hello", 1234), ("t.csv#L5", "two\nlines", None)]  # fmt: skip
    assert _rejects(result) == {
        "t.csv#L3": "n: 'x' is not a int",
        "t.csv#L4": "missing required field(s): text",
        "t.csv#L7": "line 7: 2 cells, the header has 3",
        "t.csv#L8": "line 8: not utf-8 text (byte 0xe9); a file of mixed encodings?",
    }
    assert len(result.items) + len(result.rejects) == 6  # every record accounted for
    digest = result.stats["sources"][0]["sha256"]
    assert result.files[f"sources/{digest}.csv"] == data  # the bytes the rows came from


def test_a_csv_without_a_mapped_column_names_the_file_line_and_closest_column(
    tmp_path: Path,
) -> None:
    cfg = _table(tmp_path, "t.csv", b"txt,label\nhi,en\n")
    with pytest.raises(SourceError, match=r"t\.csv line 1: no column 'text' \(source\.fields\."
                       r"text\).*did you mean 'txt'"):  # fmt: skip
        read_source(cfg, [], tmp_path)


def test_a_missing_file_or_folder_is_an_error_naming_it(tmp_path: Path) -> None:
    cfg = SourceParams(kind="table", path="nowhere/*.csv", fields=TEXT_FIELDS)
    with pytest.raises(SourceError, match=r"'nowhere/\*\.csv' matches no file"):
        read_source(cfg, [], tmp_path)
    cfg = SourceParams(kind="folder", path="imgs", fields={"label": {"column": "class"}})
    with pytest.raises(SourceError, match="'imgs': no such folder"):
        read_source(cfg, [], tmp_path)


def test_jsonl_and_parquet_tables(tmp_path: Path) -> None:
    lines = b'{"text": "a", "label": "en"}\nnot json\n[1]\n{"text": "b", "label": "de", "n": 2}\n'
    result = read_source(_table(tmp_path, "t.jsonl", lines), [], tmp_path)
    assert [r["url"] for r in result.items] == ["t.jsonl#L1", "t.jsonl#L4"]
    assert _rejects(result)["t.jsonl#L3"] == "line 3: a JSON list, not an object"
    assert _rejects(result)["t.jsonl#L2"].startswith("line 2: not JSON")
    frame = pd.DataFrame({"text": ["a", None], "label": ["en", "de"], "n": [1.0, float("nan")]})
    frame.to_parquet(tmp_path / "t.parquet")
    cfg = SourceParams(kind="table", path="t.parquet", fields=TEXT_FIELDS)
    result = read_source(cfg, [], tmp_path)
    assert [(r["url"], r["n"]) for r in result.items] == [("t.parquet#row=1", 1)]
    assert _rejects(result) == {"t.parquet#row=2": "missing required field(s): text"}


def test_a_folder_tree_gives_images_and_rejects_what_is_not_one(tmp_path: Path) -> None:
    cfg = _folder(tmp_path, {"0": [_png(0), _png(9)], "1": [_png(255), b"not an image"],
                             "2": []})  # fmt: skip
    (tmp_path / "imgs" / "stray.png").write_bytes(_png(1))
    result = read_source(cfg, [], tmp_path)
    assert [(r["url"], r["label"]) for r in result.items] == [
        ("imgs/0/0.png", "0"), ("imgs/0/1.png", "0"), ("imgs/1/0.png", "1")]  # fmt: skip
    for row in result.items:
        assert result.files[row["image_path"]] == (tmp_path / row["url"]).read_bytes()
        assert row["image_path"].startswith("images/") and row["image_path"].endswith(".png")
        assert row["image_url"] == row["image"] == row["url"]  # where the image came from
    rejects = _rejects(result)
    assert rejects["imgs/2/"] == "class folder '2' has no files"
    assert rejects["imgs/1/1.png"].startswith("image: not a readable image")
    assert rejects["imgs/stray.png"] == "not in a class folder (<path>/<class>/<file>)"


def test_a_file_that_changes_while_it_is_read(tmp_path: Path, monkeypatch) -> None:
    read = source_readers._read_bytes

    def read_then_append(path: Path) -> bytes:
        data = read(path)
        with open(path, "ab") as fh:  # another process writes to it meanwhile
            fh.write(b"\n")
        os.utime(path, ns=(1, 1))
        return data

    monkeypatch.setattr(source_readers, "_read_bytes", read_then_append)
    cfg = _table(tmp_path, "t.csv", b"text,label\nhi,en\n")
    with pytest.raises(SourceError, match=r"t\.csv: changed while it was read"):
        read_source(cfg, [], tmp_path)
    cfg = _folder(tmp_path, {"0": [_png(0)]})
    with pytest.raises(SourceError, match="zero rows") as err:  # the one image is the reject
        read_source(cfg, [], tmp_path)
    assert "imgs/0/0.png: image: " in str(err.value) and "changed while it was read" in str(
        err.value)


def test_text_files_of_a_folder_and_one_in_another_encoding(tmp_path: Path) -> None:
    for name, data in {"en/a.txt": b"hello", "fr/b.txt": b"caf\xe9", "fr/c.txt": b"oui"}.items():
        (tmp_path / "t" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "t" / name).write_bytes(data)
    cfg = SourceParams(kind="folder", path="t", files="text",
                       fields={"label": {"column": "class"}, "text": {}})  # fmt: skip
    result = read_source(cfg, [], tmp_path)
    assert [(r["label"], r["text"]) for r in result.items] == [("en", "hello"), ("fr", "oui")]
    assert _rejects(result) == {
        "t/fr/b.txt": "not utf-8 text (byte 0xe9); a file of mixed encodings?"}


def test_unlabelled_folder_rows_have_a_null_label(tmp_path: Path) -> None:
    (tmp_path / "u").mkdir()
    (tmp_path / "u" / "a.png").write_bytes(_png(3))
    cfg = SourceParams(kind="folder", path="u", labelled=False, image_field="image",
                       fields={"label": {"column": "class", "required": False},
                               "image": {"column": "file"}})  # fmt: skip
    (row,) = read_source(cfg, [], tmp_path).items
    assert row["label"] is None and row["url"] == "u/a.png"


def test_packaged_datasets_load_without_download() -> None:
    cfg = SourceParams(kind="package", loader="sklearn.datasets:load_digits", image_field="image",
                       fields={"label": {"column": "target_name"}, "image": {}})  # fmt: skip
    result = read_source(cfg, [], Path("."))
    assert len(result.items) == 1797 and result.stats["files"] > 1700  # equal digits share one
    assert result.items[0]["url"] == "sklearn.datasets:load_digits#0"
    with Image.open(io.BytesIO(result.files[result.items[0]["image_path"]])) as image:
        assert image.size == (8, 8) and image.mode == "L"
    cfg = SourceParams(kind="package", loader="statsmodels.datasets.co2:load_pandas",
                       fields={"week": {"column": "index", "type": "date"},
                               "co2_ppm": {"column": "co2", "type": "float", "required": False}})
    first = read_source(cfg, [], Path(".")).items[0]
    assert (first["week"], first["co2_ppm"]) == ("1958-03-29", 316.1)


@pytest.mark.parametrize("loader", ["os:system", "sklearn.datasets:fetch_openml",
                                    "sklearn:load_digits", "sklearn.datasets.load_digits"])
def test_only_packaged_dataset_loaders_are_accepted(loader: str) -> None:
    with pytest.raises(ValueError, match="is not 'module:load_function' of a packaged dataset"):
        SourceParams(kind="package", loader=loader, fields={"label": {}})


def test_params_need_a_crawl_section_only_when_crawling() -> None:
    import yaml  # noqa: PLC0415

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    del raw["crawl"]
    with pytest.raises(ParamsError, match="'crawl': Field required when source.kind is crawl"):
        parse_params(raw)
    raw["source"] = {"kind": "table", "path": "a.csv", "fields": {"label": {}}}
    assert parse_params(raw).crawl is None
    raw["source"] = {"kind": "table", "fields": {"label": {}}}
    with pytest.raises(ParamsError, match="source.kind table needs source.path"):
        parse_params(raw)


def test_an_unchanged_source_gives_the_same_rows_and_a_failed_one_leaves_data_raw(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = _table(tmp_path, "t.csv", b"text,label\nhi,en\nho,de\n",
                 fields={"text": {}, "label": {}})
    assert sources.main(cfg) == 0
    raw = {p.relative_to(tmp_path / "data/raw"): p.read_bytes()
           for p in (tmp_path / "data/raw").rglob("*") if p.is_file()}  # fmt: skip
    assert sources.main(cfg) == 0  # first_seen kept: byte-identical
    again = {p.relative_to(tmp_path / "data/raw"): p.read_bytes()
             for p in (tmp_path / "data/raw").rglob("*") if p.is_file()}  # fmt: skip
    assert again == raw
    report = json.loads((tmp_path / "reports/crawl.json").read_text())
    assert (report["items"], report["source"], report["partial"]) == (2, "table", False)
    (tmp_path / "t.csv").write_bytes(b"txt,label\nhi,en\n")  # a wrong column: refused whole
    assert sources.main(cfg) == 1
    (tmp_path / "t.csv").unlink()  # missing
    assert sources.main(cfg) == 1
    after = {p.relative_to(tmp_path / "data/raw"): p.read_bytes()
             for p in (tmp_path / "data/raw").rglob("*") if p.is_file()}  # fmt: skip
    assert after == raw
    assert not [p for p in (tmp_path / "data").iterdir() if p.name != "raw"]  # no temp left


def test_a_table_by_url_and_by_glob(tmp_path: Path) -> None:
    fields = {"text": {}, "label": {}}
    for name in ("a", "b"):
        (tmp_path / f"{name}.jsonl").write_text(json.dumps({"text": name, "label": "en"}) + "\n")
    cfg = SourceParams(kind="table", path=f"file://{tmp_path}/*.jsonl", fields=fields)
    result = read_source(cfg, [], Path("."))  # fsspec, as for s3:// or https://
    assert [r["url"] for r in result.items] == [f"file://{tmp_path}/a.jsonl#L1",
                                                f"file://{tmp_path}/b.jsonl#L1"]  # fmt: skip
    cfg = SourceParams(kind="table", path="*.jsonl", fields=fields)
    assert [r["url"] for r in read_source(cfg, [], tmp_path).items] == ["a.jsonl#L1", "b.jsonl#L1"]
    cfg = SourceParams(kind="table", path=f"file://{tmp_path}/none.csv", fields=fields)
    with pytest.raises(SourceError, match="none.csv"):
        read_source(cfg, [], Path("."))
    cfg = SourceParams(kind="table", path="nosuchscheme://bucket/a.csv", fields=fields)
    with pytest.raises(SourceError, match="'nosuchscheme://bucket/a.csv' cannot be opened"):
        read_source(cfg, [], Path("."))


def test_an_unknown_encoding_is_refused_by_params() -> None:
    with pytest.raises(ValueError, match="source.encoding 'utf-9' is not an encoding"):
        SourceParams(kind="table", path="a.csv", encoding="utf-9", fields={"label": {}})


def test_a_folder_that_cannot_be_listed_is_an_error_naming_it(
    tmp_path: Path, monkeypatch
) -> None:
    cfg = _folder(tmp_path, {"0": [_png(0)]})
    listing = Path.iterdir

    def refused(path: Path):  # noqa: ANN202 (chmod 0 does not stop root, who runs CI)
        if path.name == "0":
            raise PermissionError(13, "Permission denied", str(path))
        return listing(path)

    monkeypatch.setattr(Path, "iterdir", refused)
    with pytest.raises(SourceError, match=r"imgs/0: cannot be listed \(Permission denied\)"):
        read_source(cfg, [], tmp_path)
