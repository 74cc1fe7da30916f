"""Hostile or careless params files get a ParamsError naming what is wrong, fast, never a
traceback or a hang (issue 15: alias bombs, deep nesting, bytes that are not UTF-8, a key written
twice, invalid selectors, a cron or time zone that does not exist, duplicate classes, true for a
number)."""

from __future__ import annotations

import copy
import time
from pathlib import Path

import pytest
import yaml

from tasks.core.params import MAX_VALUES, ParamsError, parse_params, read_params_file
from tests.project import REPO


@pytest.fixture
def raw() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))


def _refused(path: Path) -> str:
    started = time.monotonic()
    with pytest.raises(ParamsError) as err:
        read_params_file(path)
    assert time.monotonic() - started < 5  # seconds; the alias bomb hung for minutes
    return str(err.value)


def test_an_alias_bomb_is_refused_without_expanding_it(tmp_path: Path) -> None:
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):  # 9**9 values if expanded
        lines.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]")
    path = tmp_path / "params.yaml"
    path.write_text("\n".join(lines), encoding="utf-8")
    message = _refused(path)
    assert f"more than {MAX_VALUES:,} values" in message and len(message) < 300


@pytest.mark.parametrize(
    "text",
    ["a: " + "[" * 900 + "]" * 900, "\n".join("  " * i + "a:" for i in range(3000)) + " 1"],
    ids=["flow", "block"],
)
def test_deep_nesting_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(text, encoding="utf-8")
    assert "nest" in _refused(path)


def test_a_file_that_is_not_utf8_names_the_byte(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_bytes(b"project:\n  name: caf\xe9\n")
    assert "not UTF-8 text: byte 0xe9 at offset 20" in _refused(path)


def test_a_section_written_twice_is_refused_with_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  epochs: 1\nlabels: {}\ntrain:\n  epochs: 2\n", encoding="utf-8")
    assert "key 'train' is written twice (lines 1 and 4)" in _refused(path)


def test_the_shipped_files_have_no_key_twice() -> None:
    for path in [REPO / "params.yaml", *sorted((REPO / "examples").rglob("*.params.yaml"))]:
        assert isinstance(read_params_file(path), dict), path


def _error(raw: dict) -> str:
    with pytest.raises(ParamsError) as err:
        parse_params(raw)
    return str(err.value)


@pytest.mark.parametrize(
    ("where", "value", "expected"),
    [
        (("crawl", "fields", "title"), {"css": "h1[[::text"}, "CSS selector 'h1[[::text'"),
        (("crawl", "fields", "title"), {"xpath": "//h1["}, "XPath '//h1[' is not valid"),
        (("crawl", "follow_css"), ["nav a", "ul >> li"], "CSS selector 'ul >> li'"),
        (("crawl", "follow"), [{"css": "div:no-such"}], "pseudo-class :no-such is unknown"),
        (("crawl", "item_list"), {"css": "li", "link_xpath": "//a/@@href"}, "XPath '//a/@@href'"),
        (("train", "epochs"), True, "'epochs' must be a number, got True"),
        (("train", "lr"), False, "'lr' must be a number, got False"),
        (("schedule",), {"cron": "every tuesday"}, "cron 'every tuesday' is not a cron"),
        (("schedule",), {"timezone": "Mars/Olympus"}, "'Mars/Olympus' is not an IANA time zone"),
    ],
)
def test_check_names_what_is_wrong(raw: dict, where: tuple, value: object, expected: str) -> None:
    changed = copy.deepcopy(raw)
    node = changed
    for key in where[:-1]:
        node = node.setdefault(key, {})
    node[where[-1]] = value
    assert expected in _error(changed)


def test_duplicate_classes_are_named(raw: dict) -> None:
    raw["labels"]["classes"].append("3")
    assert "classes lists ['3'] more than once" in _error(raw)


@pytest.mark.parametrize(
    ("where", "value"),
    [
        (("crawl", "fields", "title"), {"xpath": '//h1[re:test(@class, "^t")]/text()'}),
        (("crawl", "fields", "title"), {"css": "a.joke::attr(href)"}),
        (("schedule",), {"cron": "@daily", "timezone": "Europe/Paris"}),
        (("schedule",), {"cron": "*/15 2-4 * * 1,3"}),
        (("crawl", "obey_robots"), False),
    ],
)
def test_valid_values_still_pass(raw: dict, where: tuple, value: object) -> None:
    node = raw
    for key in where[:-1]:
        node = node.setdefault(key, {})
    node[where[-1]] = value
    parse_params(raw)


def test_a_long_wrong_value_is_quoted_short(raw: dict) -> None:
    raw["train"]["model"] = "x" * 100_000
    assert len(_error(raw)) < 1000
