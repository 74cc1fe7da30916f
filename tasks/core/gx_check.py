"""Check a declared expectation against the installed Great Expectations: `kiln check`.

Called by `tasks.core.params` when params.yaml declares `validate.expectations`, so a typo fails
when
params load, before any stage runs: an unknown name is reported with the closest registered one,
an unknown argument with the closest argument that expectation takes, and bad values with GX's own
message (GX 1.x expectations are pydantic v1 models, so constructing one checks its arguments).
"""

from __future__ import annotations

import difflib
from typing import Any

import great_expectations as gx  # noqa: F401 (importing GX registers its core expectations)
from great_expectations.compatibility import pydantic
from great_expectations.expectations.registry import (
    get_expectation_impl,
    list_registered_expectation_implementations,
)

# Fields every GX expectation has that are not arguments a params.yaml author should set: the
# suite owns ids, metadata and rendering, and Kiln owns the result format and the severity.
_NOT_ARGUMENTS = {
    "id",
    "meta",
    "notes",
    "description",
    "rendered_content",
    "batch_id",
    "result_format",
    "catch_exceptions",
    "severity",
    "windows",
}


def expectation_names() -> list[str]:
    return sorted(list_registered_expectation_implementations())


def argument_names(name: str) -> list[str]:
    return sorted(set(get_expectation_impl(name).__fields__) - _NOT_ARGUMENTS)


def _closest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.5)
    return f"; did you mean '{close[0]}'?" if close else ""


def check_expectation(name: str, kwargs: dict[str, Any]) -> str | None:
    """None if GX accepts `name(**kwargs)`, else a message naming what is wrong."""
    names = expectation_names()
    if name not in names:
        return f"unknown expectation '{name}'{_closest(name, names)}"
    allowed = argument_names(name)
    for arg in kwargs:
        if arg not in allowed:
            return f"{name} has no argument '{arg}'{_closest(arg, allowed)} (it takes {allowed})"
    try:
        get_expectation_impl(name)(**kwargs)
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        return f"{name}: invalid arguments ({problems})"
    return None


def build(name: str, kwargs: dict[str, Any]) -> Any:
    """The GX expectation object; `check_expectation` has accepted it already."""
    return get_expectation_impl(name)(**kwargs)
