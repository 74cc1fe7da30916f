"""params.yaml parsing: the shipped file is valid; typos and out-of-range values are named."""

from __future__ import annotations

import copy

import pytest
import yaml

from tasks.core.params import ParamsError, load_params, parse_params
from tasks.core.plugins import task_type
from tests.project import REPO, merge_params


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
    del bad["crawl"]
    with pytest.raises(ParamsError, match="'crawl': Field required"):
        parse_params(bad)


def test_classification_without_labels_names_the_classes(raw) -> None:
    bad = copy.deepcopy(raw)
    del bad["labels"]  # optional for the task types that have no labels, not for these
    with pytest.raises(ParamsError, match="needs labels.classes with at least 2 classes"):
        parse_params(bad)


@pytest.mark.parametrize(
    ("task", "metric"),
    [("image_classification", "macro_f1"), ("forecasting", "mae"), ("text_generation", "val_loss")],
)
def test_promote_metric_defaults_to_the_first_headline_metric(task: str, metric: str) -> None:
    crawl = {"start_urls": ["http://a/"], "allowed_domains": ["a"], "item_url_pattern": "/i/"}
    minimal = {
        "project": {"name": "x", "task": task},
        "crawl": {**crawl, "fields": {"text": {"css": "p::text"}}},
        "labels": {"classes": ["a", "b"]} if task.endswith("classification") else {},
        "validate": {"min_rows": 10, "required_columns": [], "non_null_columns": []}
        | ({"image_width": 8, "image_height": 8} if task.startswith("image") else {}),
        "clean": {"series": {"time_column": "t", "value_column": "v"}}
        if task == "forecasting"
        else {},
        "train": {},
    }
    params = parse_params(minimal)
    assert params.promote.metric == metric == task_type(task).headline_metrics[0]


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


def _raw(name: str) -> dict:
    return yaml.safe_load((REPO / name).read_text())


@pytest.mark.parametrize(
    ("base", "changes", "message"),
    [
        # train.model is a Literal of each task type's architectures: pydantic names the key
        # and the valid values
        ("params.yaml", {"train": {"model": "lstm"}}, "'train.model': Input should be 'cnn'"),
        (
            "examples/co2.params.yaml",
            {"train": {"model": "cnn"}},
            "'train.model': Input should be 'lstm' or 'gru'",
        ),
        (
            "examples/jokes.params.yaml",
            {"train": {"model": "minilm", "text": {"tokenizer": "char"}}},
            "train.text.tokenizer 'char' does not match train.model 'minilm'",
        ),
        (
            "examples/jokes_minilm.params.yaml",
            {"train": {"model": "transformer", "text": {"tokenizer": "minilm"}}},
            "train.text.tokenizer 'minilm' does not match train.model 'transformer'",
        ),
        (
            "examples/jokes_generation.params.yaml",
            {"promote": {"metric": "macro_f1"}},
            "promote.metric 'macro_f1' is not measured for text_generation; choose one of "
            "['val_loss', 'perplexity']",
        ),
        (
            "examples/co2.params.yaml",
            {"promote": {"metric": "accuracy"}},
            "promote.metric 'accuracy' is not measured for forecasting; choose one of "
            "['mae', 'rmse', 'mape']",
        ),
        (
            "examples/jokes.params.yaml",
            {"train": {"d_model": 30, "heads": 4}},
            "train.heads 4 must divide d_model 30",
        ),
        # image classification's validate section: a size range no image could be in
        (
            "params.yaml",
            {"validate": {"min_image_side": 9, "max_image_side": 8}},
            "validate.min_image_side 9 is above max_image_side 8",
        ),
        # fit none takes clean.image's size only: validate may not demand another
        (
            "params.yaml",
            {"clean": {"image": {"fit": "none"}}, "validate": {"image_width": 16}},
            "validate.image_width 16 but clean.image.width 8 with clean.image.fit none",
        ),
    ],
)
def test_settings_that_do_not_fit_together_are_named(
    base: str, changes: dict, message: str
) -> None:
    with pytest.raises(ParamsError) as caught:
        parse_params(merge_params(_raw(base), changes))
    assert message in str(caught.value)
    assert "(got {" not in str(caught.value)  # the whole file is not dumped into the message


def test_classification_needs_two_classes(raw: dict) -> None:
    one_class = {**raw, "labels": {"classes": ["0"]}}
    with pytest.raises(
        ParamsError, match="image_classification needs labels.classes with at least"
    ):
        parse_params(one_class)


# Each shipped params file and the task type it configures.
SHIPPED = {
    "params.yaml": "image_classification",
    "examples/co2.params.yaml": "forecasting",
    "examples/jokes.params.yaml": "text_classification",
    "examples/jokes_transformer.params.yaml": "text_classification",
    "examples/jokes_minilm.params.yaml": "text_classification",
    "examples/jokes_generation.params.yaml": "text_generation",
    "examples/table.params.yaml": "text_classification",  # the sources beside the crawl
    "examples/folder.params.yaml": "image_classification",
    "examples/unlabelled.params.yaml": "image_classification",
    "examples/package.params.yaml": "forecasting",
}


def test_every_shipped_params_file_is_listed() -> None:
    shipped = {"params.yaml", *(str(p.relative_to(REPO)) for p in REPO.glob("examples/*.yaml"))}
    assert shipped == set(SHIPPED)


@pytest.mark.parametrize(("name", "task"), sorted(SHIPPED.items()))
def test_shipped_params_parse_to_their_task_types_model(name: str, task: str) -> None:
    params = load_params(REPO / name)
    assert params.project.task == task
    assert type(params) is task_type(task).params
    assert params.promote.metric in task_type(task).headline_metrics


@pytest.mark.parametrize(
    ("name", "section", "key", "value"),
    [
        ("examples/co2.params.yaml", "train", "channels", 32),  # images
        ("examples/co2.params.yaml", "train", "heads", 4),  # Transformers
        ("examples/co2.params.yaml", "evaluate", "min_accuracy", 0.5),  # classification
        ("examples/co2.params.yaml", "validate", "image_width", 8),  # images
        ("params.yaml", "train", "series", {"window": 8}),  # forecasting
        ("params.yaml", "train", "d_model", 64),  # Transformers, forecasting
        ("params.yaml", "clean", "text", {"lowercase": True}),  # text
        ("params.yaml", "evaluate", "season_length", 4),  # forecasting
        ("examples/jokes.params.yaml", "clean", "near_duplicates", {"enabled": False}),  # images
        ("examples/jokes.params.yaml", "clean", "series", {"fill": "ffill"}),  # forecasting
        ("examples/jokes.params.yaml", "evaluate", "generate", {"n_samples": 1}),  # generation
        ("examples/jokes_generation.params.yaml", "train", "channels", 32),  # images
        ("examples/jokes_generation.params.yaml", "evaluate", "min_accuracy", 0.5),
    ],
)
def test_a_key_of_another_task_type_is_an_unknown_key(
    name: str, section: str, key: str, value: object
) -> None:
    bad = merge_params(_raw(name), {section: {key: value}})
    with pytest.raises(ParamsError) as caught:
        parse_params(bad)
    assert f"unknown key '{section}.{key}'" in str(caught.value)


def test_an_unknown_task_type_names_the_known_ones(raw: dict) -> None:
    with pytest.raises(ParamsError) as caught:
        parse_params(merge_params(raw, {"project": {"task": "image_segmentation"}}))
    message = str(caught.value)
    assert "'project.task'" in message and "'image_segmentation'" in message
    for known in ("image_classification", "text_classification", "forecasting", "text_generation"):
        assert known in message
