"""`tasks.core.stage.run_stage`: the folder dvc.yaml's `plots:` declares exists after evaluate."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from tasks.core import stage
from tasks.core.paths import EVALUATION_PLOTS


class _DrawsNothing:
    """A task type (a plugin, say) whose evaluate writes reports/evaluation/ but no plots/."""

    def __init__(self, code: int) -> None:
        self.code = code

    def evaluate(self, params: object) -> int:
        Path("reports/evaluation").mkdir(parents=True)
        (Path("reports/evaluation") / "summary.json").write_text("{}")
        return self.code


@pytest.mark.parametrize("code", [0, 1])
def test_evaluate_leaves_the_plots_folder(
    code: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(
        stage, "load_params", lambda: SimpleNamespace(project=SimpleNamespace(task="toy"))
    )
    monkeypatch.setattr(stage, "task_type", lambda name: _DrawsNothing(code))
    assert stage.run_stage("evaluate") == code
    # DVC loads the empty folder without a warning, a missing one is "failed to load"; a failed
    # evaluate leaves what it left (DVC records nothing of a failed stage)
    assert (tmp_path / EVALUATION_PLOTS).is_dir() == (code == 0)
    assert not any((tmp_path / EVALUATION_PLOTS).glob("*"))
