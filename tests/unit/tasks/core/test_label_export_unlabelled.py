"""`kiln label export` for labelling from scratch: the raw rows without a label that the overrides
file does not label yet, keyed as validate and clean key them (image sha256, normalised text)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml

from tasks.core.io import write_jsonl
from tasks.core.label_export import items_to_review
from tasks.core.params import parse_params
from tasks.core.text_norm import normalise_text, text_key
from tests.project import REPO


def _params(base: str, source: dict) -> object:
    raw = yaml.safe_load((REPO / base).read_text())
    return parse_params({**raw, "crawl": None, "source": source})


def test_unlabelled_images_are_listed_until_labelled(tmp_path: Path) -> None:
    params = _params("params.yaml", {"kind": "folder", "path": "u", "labelled": False,
                                     "image_field": "image",
                                     "fields": {"label": {"column": "class", "required": False},
                                                "image": {"column": "file"}}})  # fmt: skip
    rows = []
    for i, data in enumerate([b"a", b"b", b"c"]):
        digest = hashlib.sha256(data).hexdigest()
        (tmp_path / "data/raw/images").mkdir(parents=True, exist_ok=True)
        (tmp_path / f"data/raw/images/{digest}.png").write_bytes(data)
        rows.append({"url": f"u/{i}.png", "label": "7" if i == 2 else None,
                     "image_path": f"images/{digest}.png"})  # fmt: skip
    write_jsonl(tmp_path / "data/raw/items.jsonl", rows)
    (tmp_path / "labels").mkdir()
    first = hashlib.sha256(b"a").hexdigest()
    (tmp_path / "labels/overrides.csv").write_text(f"key,label\n{first},3\n")
    listed = items_to_review(tmp_path, params)
    assert [(r["url"], r["reason"], r["label"]) for r in listed] == [("u/1.png", "unlabelled", "")]
    assert listed[0]["key"] == hashlib.sha256(b"b").hexdigest()
    assert items_to_review(tmp_path) == []  # without params: the review of labelled data only


def test_unlabelled_texts_are_keyed_by_their_normalised_text(tmp_path: Path) -> None:
    params = _params("examples/table.params.yaml",
                     {"kind": "table", "path": "t.csv", "fields": {
                         "text": {}, "label": {"required": False}}})  # fmt: skip
    write_jsonl(tmp_path / "data/raw/items.jsonl",
                [{"url": "t.csv#L2", "text": "  Hello   <b>there</b> ", "label": None}])
    (listed,) = items_to_review(tmp_path, params)
    assert listed["key"] == text_key(normalise_text("Hello there", params.clean.text))
