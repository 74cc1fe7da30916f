"""params.yaml parsing: the shipped file is valid; typos and out-of-range values are named."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from tasks.params import ParamsError, load_params, parse_params
from tests.project import merge_params

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def test_shipped_params_are_valid() -> None:
    params = load_params(REPO / "params.yaml")
    assert params.project.task == "image_classification"
    assert params.validate_.image_width == 8
    assert params.labels.aliases["seven"] == "7"


def test_params_are_frozen() -> None:
    params = load_params(REPO / "params.yaml")
    with pytest.raises(ValueError, match="frozen"):
        params.train.epochs = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("section", "typo", "suggestion"),
    [
        ("train", "epoch", "train.epochs"),
        ("train", "learning_rate", None),
        ("crawl", "start_url", "crawl.start_urls"),
        ("validate", "min_row", "validate.min_rows"),
    ],
)
def test_typo_names_full_path_and_closest_key(raw, section, typo, suggestion) -> None:
    bad = copy.deepcopy(raw)
    bad[section][typo] = 1
    with pytest.raises(ParamsError) as err:
        parse_params(bad)
    message = str(err.value)
    assert f"unknown key '{section}.{typo}'" in message
    if suggestion:
        assert f"did you mean '{suggestion}'" in message


def test_typo_in_a_top_level_section(raw) -> None:
    bad = copy.deepcopy(raw)
    bad["trian"] = bad.pop("train")
    with pytest.raises(ParamsError, match=r"unknown key 'trian'; did you mean 'train'\?"):
        parse_params(bad)


def test_typo_in_a_nested_field_selector(raw) -> None:
    bad = copy.deepcopy(raw)
    bad["crawl"]["fields"]["label"]["reqired"] = False
    expected = r"'crawl\.fields\.label\.reqired'; did you mean 'crawl\.fields\.label\.required'"
    with pytest.raises(ParamsError, match=expected):
        parse_params(bad)


@pytest.mark.parametrize(
    ("section", "key", "value", "bound"),
    [
        ("train", "lr", -0.1, "greater than 0"),
        ("train", "epochs", 0, "greater than or equal to 1"),
        ("clean", "val_share", 0.7, "less than 0.5"),
        ("demo_site", "port", 70000, "less than or equal to 65535"),
    ],
)
def test_out_of_range_value_names_field_and_bound(raw, section, key, value, bound) -> None:
    bad = copy.deepcopy(raw)
    bad[section][key] = value
    with pytest.raises(ParamsError) as err:
        parse_params(bad)
    assert f"'{section}.{key}'" in str(err.value)
    assert bound in str(err.value)


def test_missing_section_is_named(raw) -> None:
    bad = copy.deepcopy(raw)
    del bad["labels"]
    with pytest.raises(ParamsError, match="'labels': Field required"):
        parse_params(bad)


def test_alias_to_unknown_class_is_refused(raw) -> None:
    bad = copy.deepcopy(raw)
    bad["labels"]["aliases"]["ten"] = "10"
    with pytest.raises(ParamsError, match=r"aliases map to labels not in classes: \['10'\]"):
        parse_params(bad)


def test_unreadable_files(tmp_path) -> None:
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("train: [unclosed")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("- a list\n")
    with pytest.raises(ParamsError, match="must be a mapping"):
        load_params(tmp_path / "params.yaml")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"train": {"model": "lstm"}},
            "train.model 'lstm' cannot learn project.task 'image_classification'; choose one of "
            "['cnn']",
        ),
        (
            {"project": {"task": "forecasting"}},
            "train.model 'cnn' cannot learn project.task 'forecasting'; choose one of "
            "['lstm', 'gru']",
        ),
        (
            {
                "project": {"task": "text_classification"},
                "train": {"model": "minilm", "text": {"tokenizer": "char"}},
            },
            "train.text.tokenizer 'char' does not match train.model 'minilm'",
        ),
        (
            {
                "project": {"task": "text_classification"},
                "train": {"model": "transformer", "text": {"tokenizer": "minilm"}},
            },
            "train.text.tokenizer 'minilm' does not match train.model 'transformer'",
        ),
        (
            {"project": {"task": "text_generation"}, "train": {"model": "char_transformer"}},
            "promote.metric 'macro_f1' is not measured for text_generation; choose one of "
            "['val_loss', 'perplexity']",
        ),
        ({"train": {"d_model": 30, "heads": 4}}, "train.heads 4 must divide d_model 30"),
        ({"validate": {"image_width": None}}, "image_classification needs validate.image_width"),
    ],
)
def test_settings_that_do_not_fit_together_are_named(
    raw: dict, changes: dict, message: str
) -> None:
    with pytest.raises(ParamsError) as caught:
        parse_params(merge_params(raw, changes))
    assert message in str(caught.value)
    assert "(got {" not in str(caught.value)  # the whole file is not dumped into the message


def test_classification_needs_two_classes(raw: dict) -> None:
    one_class = {**raw, "labels": {"classes": ["0"]}}
    with pytest.raises(
        ParamsError, match="image_classification needs labels.classes with at least"
    ):
        parse_params(one_class)
