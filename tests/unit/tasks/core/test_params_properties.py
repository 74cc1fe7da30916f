"""Property-based: whatever YAML a params file holds, loading it either works or raises
ParamsError (a message naming what is wrong): never another exception (issue 15). Hypothesis
generates the documents; the bound keeps it to a few seconds in CI."""

from __future__ import annotations

from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.core.params import ParamsError, parse_params, read_params_file
from tests.project import REPO

SHIPPED = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
SECTIONS = sorted(SHIPPED)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**30), 10**30), st.floats(allow_nan=True),
    st.text(max_size=30),
)  # fmt: skip
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)


@st.composite
def mutated(draw: st.DrawFn) -> dict:
    """The shipped params with a few keys replaced, added or removed at any depth."""
    raw = yaml.safe_load(yaml.safe_dump(SHIPPED))
    for _ in range(draw(st.integers(1, 4))):
        node = raw
        path = [draw(st.sampled_from(SECTIONS))]
        while isinstance(node.get(path[-1]), dict) and draw(st.booleans()):
            node = node[path[-1]]
            path.append(draw(st.sampled_from(sorted(node) or ["x"])))
        if draw(st.booleans()):
            node[path[-1]] = draw(values)
        else:
            node.pop(path[-1], None)
    return raw


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_a_mutated_params_file_parses_or_names_the_problem(raw: dict) -> None:
    try:
        parse_params(raw)
    except ParamsError as exc:
        assert str(exc).startswith("params.yaml is invalid") and len(str(exc)) < 5000


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_bytes_read_or_name_the_problem(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "params.yaml"
    path.write_bytes(data)
    try:
        raw = read_params_file(path)
    except ParamsError:
        return
    try:
        parse_params(raw)
    except ParamsError:
        pass
