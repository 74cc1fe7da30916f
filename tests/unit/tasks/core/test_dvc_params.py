"""Every params file the project ships holds every key dvc.yaml lists, and survives the rewrite
of `dvc exp run -S`.

DVC refuses to run or record a stage whose `params:` key is missing from params.yaml ("Parameters
'clean.text' are missing"), even when tasks/core/params.py has a default for it; `kiln use FILE`
makes an example the active params.yaml, so each example must carry them too.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from flows.cli import app
from tasks.core.params import load_params
from tasks.core.params_rewrite import rewrite_problem
from tests.project import REPO

EXAMPLES = sorted(str(p.relative_to(REPO)) for p in REPO.glob("examples/*.yaml"))
PARAMS_FILES = ["params.yaml", *EXAMPLES]
SITES = sorted(str(p.relative_to(REPO)) for p in REPO.glob("examples/sites/*.params.yaml"))


def _listed_keys() -> set[str]:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    return {key for stage in stages.values() for key in stage.get("params", [])}


def _has(raw: dict, dotted: str) -> bool:
    node = raw
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


@pytest.mark.parametrize("name", PARAMS_FILES)
def test_params_file_has_every_key_dvc_lists(name: str) -> None:
    raw = yaml.safe_load((REPO / name).read_text())
    missing = sorted(k for k in _listed_keys() if not _has(raw, k))
    assert not missing, f"{name} lacks {missing}, which dvc.yaml lists"
    load_params(REPO / name)  # and it is valid


def test_every_task_type_has_an_example() -> None:
    tasks = {load_params(REPO / name).project.task for name in PARAMS_FILES}
    assert tasks == {"image_classification", "text_classification", "forecasting",
                     "text_generation"}


@pytest.mark.parametrize("name", [*PARAMS_FILES, *SITES])
def test_params_file_survives_dvc_exp_set(name: str) -> None:
    """DVC's own rewrite (what `-S` does) leaves a file DVC and the stages read as before."""
    assert rewrite_problem(REPO / name) is None


def _variant(tmp_path: Path, old: str, new: str) -> Path:
    text = (REPO / "params.yaml").read_text()
    assert old in text
    path = tmp_path / "params.yaml"
    path.write_text(text.replace(old, new))
    load_params(path)  # valid: only the rewrite breaks it
    return path


def test_a_selector_with_colons_in_a_flow_mapping_is_refused(tmp_path: Path) -> None:
    block = '    title:\n      css: "h1.title::text"\n'
    path = _variant(tmp_path, block, '    title: {css: "h1.title::text"}\n')
    problem = rewrite_problem(path)
    assert problem is not None
    assert "DVC cannot read it" in problem
    assert "title: {css: h1.title::text}" in problem  # the line DVC would write
    result = CliRunner().invoke(app, ["check", "--project", str(tmp_path)])
    assert result.exit_code == 2
    assert "block style" in result.output


def test_a_string_yaml_1_1_reads_as_a_boolean_is_refused(tmp_path: Path) -> None:
    path = _variant(tmp_path, '    zero: "0"', '    "no": "0"')  # the alias key `no`
    problem = rewrite_problem(path)
    assert problem is not None
    assert "labels.aliases" in problem
