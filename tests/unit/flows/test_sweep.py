"""The sweep's pieces without DVC or Prefect: the `sweep` section, its plan against the project,
the trial's reporting and pruning inside the training engine (a real Optuna study in SQLite), and
the overfitting flag. The end-to-end sweep is tests/e2e/test_sweep.py."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
import torch.nn.functional as F  # noqa: N812 (the usual torch alias)
from torch import nn
from typer.testing import CliRunner

from flows.cli import app
from flows.sweep_plan import SweepError, grid_values, open_study, plan
from flows.sweep_report import peaked_and_fell
from tasks.core.engine import EngineConfig, TaskData, fit
from tasks.core.objectives import classification_metrics, macro_f1
from tasks.core.params import ParamsError, SweepSpace, parse_params, read_params_file
from tasks.core.sweep_trial import study_path, trial_name, with_sweep_trial
from tests.project import REPO

RAW = read_params_file(REPO / "params.yaml")


def _params(sweep: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    raw = {**RAW, "sweep": sweep}
    return parse_params(raw), raw


def _plan(sweep: dict[str, Any]) -> Any:
    params, raw = _params(sweep)
    return plan(params, raw, REPO / "dvc.yaml")


LR = {"train.lr": {"range": [1e-4, 1e-1], "log": True}}


def test_defaults_choose_on_the_validation_twin_of_the_headline_metric() -> None:
    p = _plan({"params": LR, "trials": 4})
    assert (p.metric, p.direction, p.spec.sampler) == ("val_macro_f1", "maximize", "tpe")
    assert p.budget() == 4


@pytest.mark.parametrize(
    ("sweep", "message"),
    [
        ({"params": LR}, "needs a budget"),
        ({"params": LR, "trials": 2, "metric": "macro_f1"}, "should match pattern"),
        ({"params": {"train.lr": {"range": [0.1, 0.01]}}, "trials": 2}, "low must be below"),
        ({"params": {"train.lr": {"grid": [0.1], "range": [0.1, 1]}}, "trials": 2}, "exactly one"),
        ({"params": {"train.lr": {"range": [0.0, 1.0], "log": True}}, "trials": 2}, "low > 0"),
        ({"params": {"train.lr": {"range": [0.01, 0.1]}}, "sampler": "grid"}, "needs a step"),
    ],
)
def test_the_section_is_checked(sweep: dict[str, Any], message: str) -> None:
    with pytest.raises(ParamsError, match=message):
        _params(sweep)


def test_keys_read_before_train_are_refused() -> None:
    with pytest.raises(SweepError, match="the validate stage reads validate"):
        _plan({"params": {"validate.min_rows": {"choice": [10, 20]}}, "trials": 2})


def test_kiln_check_checks_the_sweep_against_the_project(tmp_path: Path) -> None:
    shutil.copyfile(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    text = (REPO / "params.yaml").read_text()
    good = "sweep:\n  params:\n    train.lr:\n      choice: [0.01, 0.1]\n  trials: 2\n"
    (tmp_path / "params.yaml").write_text(text + good)
    result = CliRunner().invoke(app, ["check", "--project", str(tmp_path)])
    assert result.exit_code == 0, result.output
    (tmp_path / "params.yaml").write_text(text + good.replace("train.lr", "validate.min_rows"))
    result = CliRunner().invoke(app, ["check", "--project", str(tmp_path)])
    assert result.exit_code == 2
    assert "the validate stage reads validate" in result.output


def test_every_value_must_be_valid_for_its_key() -> None:
    with pytest.raises(SweepError, match=r"sweep.params.train.lr = 20.0: .*less than or equal"):
        _plan({"params": {"train.lr": {"range": [0.01, 20.0]}}, "trials": 2})
    with pytest.raises(SweepError, match="unknown key 'train.lrr'"):
        _plan({"params": {"train.lrr": {"choice": [0.1]}}, "trials": 2})


def test_grid_lists_every_combination() -> None:
    p = _plan({"sampler": "grid", "params": {
        "train.lr": {"range": [0.01, 0.03], "step": 0.01},
        "train.channels": {"grid": [4, 8]},
    }})  # fmt: skip
    assert grid_values(p.spec.params["train.lr"]) == [0.01, 0.02, 0.03]
    assert grid_values(SweepSpace(range=(8, 32), step=8)) == [8, 16, 24, 32]
    assert p.budget() == 6


def test_the_same_name_for_another_sweep_is_refused(tmp_path: Path) -> None:
    open_study(tmp_path, _plan({"name": "s", "params": LR, "trials": 2}))
    again = open_study(tmp_path, _plan({"name": "s", "params": LR, "trials": 5}))  # more budget
    assert again.user_attrs["metric"] == "val_macro_f1"
    other = {"train.lr": {"range": [1e-3, 1e-1], "log": True}}
    with pytest.raises(SweepError, match="another sweep section"):
        open_study(tmp_path, _plan({"name": "s", "params": other, "trials": 2}))


def _data() -> TaskData:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(320, 8, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    return TaskData(x[:256], y[:256], x[256:], y[256:])


def _fit_as_trial(study: optuna.Study, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                  lr: float) -> Any:  # fmt: skip
    trial = study.ask()
    monkeypatch.setenv("DVC_EXP_NAME", trial_name(study.study_name, trial.number))
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    cfg = EngineConfig(epochs=5, batch_size=32, lr=lr, patience=5)
    result = fit(model, _data(), F.cross_entropy, classification_metrics, cfg=cfg,
                 checkpoint_path=tmp_path / f"ckpt{trial.number}")  # fmt: skip
    return trial.number, result


def test_a_trial_reports_each_epoch_and_a_poor_one_is_pruned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = _plan({"name": "s", "params": LR, "trials": 2, "startup_trials": 1, "warmup_epochs": 1})
    study = open_study(tmp_path, p)
    assert study_path(tmp_path, "s").is_file()
    number, good = _fit_as_trial(study, tmp_path, monkeypatch, lr=3e-2)
    assert good.epochs_run == 5 and not good.stopped_early
    study.tell(number, good.best["val_macro_f1"])
    history = study.trials[number].user_attrs["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4, 5]
    assert set(history[0]) == {"epoch", "train_loss", "val_loss", "val_macro_f1"}

    number, poor = _fit_as_trial(study, tmp_path, monkeypatch, lr=1e-5)  # learns nothing
    assert poor.stopped_early and poor.epochs_run == 2  # epoch 1 is the warm-up
    assert study.trials[number].user_attrs["pruned_at_epoch"] == 2


def test_outside_a_trial_training_is_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def mine(_row: dict[str, float]) -> None:
        return None

    monkeypatch.setenv("DVC_EXP_NAME", "s-0")
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))  # no study there
    assert with_sweep_trial(mine) is mine
    monkeypatch.delenv("DVC_EXP_NAME")
    assert with_sweep_trial(None) is None


def _rows(metric: list[float], train: list[float]) -> list[dict[str, float]]:
    return [{"epoch": i + 1, "val_acc": m, "train_loss": t}
            for i, (m, t) in enumerate(zip(metric, train, strict=True))]  # fmt: skip


@pytest.mark.parametrize(
    ("metric", "train", "overfit"),
    [
        ([0.5, 0.8, 0.7, 0.6], [1.0, 0.6, 0.4, 0.2], True),  # peaked at 2, fell, train fell
        ([0.5, 0.7, 0.8, 0.8], [1.0, 0.6, 0.4, 0.2], False),  # still at its best
        ([0.5, 0.8, 0.79, 0.795], [1.0, 0.6, 0.4, 0.2], False),  # within 2 % of the peak
        ([0.5, 0.8, 0.6, 0.5], [1.0, 0.6, 0.8, 0.9], False),  # train loss rose too: diverging
    ],
)
def test_overfitting_is_a_peak_then_a_fall(metric: list[float], train: list[float],
                                           overfit: bool) -> None:  # fmt: skip
    assert peaked_and_fell(_rows(metric, train), "val_acc", True, 0.02) is overfit


@pytest.mark.parametrize("seed", range(5))
def test_validation_macro_f1_is_scikit_learns(seed: int) -> None:
    from sklearn.metrics import f1_score  # noqa: PLC0415

    g = torch.Generator().manual_seed(seed)
    y, pred = torch.randint(0, 6, (50,), generator=g), torch.randint(0, 7, (50,), generator=g)
    expected = f1_score(y, pred, average="macro", zero_division=0)
    assert macro_f1(pred, y) == pytest.approx(expected, abs=1e-6)
