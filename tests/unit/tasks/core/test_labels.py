"""Label normalisation (`tasks.core.labels`): `pytest tests/unit/tasks/core/test_labels.py`."""

from __future__ import annotations

import pytest

from tasks.core.labels import label_lookup, normalise_label
from tasks.core.params import LabelParams

DIGITS = LabelParams(
    classes=[str(d) for d in range(10)], aliases={"seven": "7", " Three ": "3", "nine": "9"}
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("7", "7"),
        (" 7\n", "7"),
        ("seven", "7"),
        (" SEVEN ", "7"),
        ("three", "3"),  # alias keys are compared after strip + lower-case too
        ("n/a", None),
        ("?", None),
        ("", None),
        ("   ", None),
        ("77", None),
        (None, None),
    ],
)
def test_normalise_label(raw: str | None, expected: str | None) -> None:
    assert normalise_label(raw, DIGITS) == expected


def test_classes_match_case_insensitively_and_come_back_canonical() -> None:
    animals = LabelParams(classes=["Cat", "Dog"], aliases={"kitty": "Cat"})
    assert normalise_label(" cat ", animals) == "Cat"
    assert normalise_label("DOG", animals) == "Dog"
    assert normalise_label("Kitty", animals) == "Cat"
    assert normalise_label("cow", animals) is None


def test_a_class_spelling_wins_over_an_alias_of_the_same_text() -> None:
    tricky = LabelParams(classes=["a", "b"], aliases={"A": "b"})
    assert normalise_label("a", tricky) == "a"
    assert label_lookup(tricky) == {"a": "a", "b": "b"}


def test_non_string_label_is_refused_loudly() -> None:
    with pytest.raises(TypeError, match="label must be a string"):
        normalise_label(7, DIGITS)  # type: ignore[arg-type]
