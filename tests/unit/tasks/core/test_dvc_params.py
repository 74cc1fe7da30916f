"""Every params file the project ships holds every key dvc.yaml lists.

DVC refuses to run or record a stage whose `params:` key is missing from params.yaml ("Parameters
'clean.text' are missing"), even when tasks/core/params.py has a default for it; `kiln use FILE`
makes an example the active params.yaml, so each example must carry them too.
"""

from __future__ import annotations

import pytest
import yaml

from tasks.core.params import load_params
from tests.project import REPO

EXAMPLES = sorted(str(p.relative_to(REPO)) for p in REPO.glob("examples/*.yaml"))
PARAMS_FILES = ["params.yaml", *EXAMPLES]


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
