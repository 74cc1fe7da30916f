"""The train stage's side of `kiln sweep` (flows/sweep.py): inside a trial, report each epoch's
validation metric to the sweep's Optuna study, and stop training when the study prunes the trial.

A trial is a DVC experiment named `<sweep name>-<trial number>`. DVC hands every stage of an
experiment its name (DVC_EXP_NAME) and the project's root (DVC_ROOT), also when the experiment runs
in a temporary directory or from the queue, so nothing else has to reach the stage. The study is
the SQLite file `.kiln/sweep/<sweep name>.db` under that root, which several processes can share.
Outside a running trial of an existing study (`dvc repro`, `kiln run`, another experiment) the
train stage runs exactly as always.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tasks.core.paths import SWEEP_DIR

logger = logging.getLogger("kiln.train")

TRIAL_NAME = re.compile(r"(?P<sweep>[a-z0-9][a-z0-9-]*)-(?P<number>\d+)")
HISTORY_KEYS = ("epoch", "train_loss", "val_loss")  # kept per epoch besides the sweep's metric


class StopTraining(Exception):  # noqa: N818 (a request, not an error)
    """Raised by an `on_epoch` callback of the training engine to end training after that epoch,
    as early stopping does (a sweep pruning a poor trial); the message says why."""


def study_path(root: Path, sweep: str) -> Path:
    return root / SWEEP_DIR / f"{sweep}.db"


def storage_url(path: Path) -> str:
    return f"sqlite:///{path}"


def trial_name(sweep: str, number: int) -> str:
    """The DVC experiment name of a trial."""
    return f"{sweep}-{number}"


def pruner(settings: dict[str, Any]) -> Any:
    """The study's pruner from its `pruner` user attribute (a study in storage does not keep its
    pruner: the sweep and every trial build the same one). MedianPruner: a trial whose value at
    an epoch is worse than the median of the finished trials' at that epoch stops there."""
    import optuna  # noqa: PLC0415

    if not settings["prune"]:
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(
        n_startup_trials=settings["startup_trials"],
        n_warmup_steps=settings["warmup_epochs"] + 1,  # steps are epochs, from 1: not before
    )


def _running_trial() -> Any | None:
    """The optuna.Trial this process trains for, or None."""
    name, root = os.environ.get("DVC_EXP_NAME", ""), os.environ.get("DVC_ROOT", "")
    match = TRIAL_NAME.fullmatch(name)
    if not match or not root or not study_path(Path(root), match["sweep"]).is_file():
        return None
    import optuna  # noqa: PLC0415 (~1 s: only inside a sweep trial)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = storage_url(study_path(Path(root), match["sweep"]))
    study = optuna.load_study(study_name=match["sweep"], storage=storage)
    study.pruner = pruner(study.user_attrs["pruner"])
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    frozen = next((t for t in running if t.number == int(match["number"])), None)
    if frozen is None:  # an experiment named like a trial, run after its sweep
        return None
    # Trial(study, id) is how Optuna resumes a trial asked for in another process; FrozenTrial
    # has no public accessor of the storage's id.
    return optuna.Trial(study, frozen._trial_id)  # noqa: SLF001


def with_sweep_trial(
    on_epoch: Callable[[dict[str, float]], None] | None,
) -> Callable[[dict[str, float]], None] | None:
    """`on_epoch`, reporting to the sweep's study first when this process trains one of its
    trials; `on_epoch` itself otherwise."""
    trial = _running_trial()
    if trial is None:
        return on_epoch
    metric = trial.study.user_attrs["metric"]
    history: list[dict[str, float]] = []
    logger.info(f"sweep trial {trial.number}: reporting {metric} per epoch")

    def report(row: dict[str, float]) -> None:
        if metric not in row:
            raise ValueError(f"sweep metric {metric!r} is not among the validation metrics "
                             f"{sorted(k for k in row if k.startswith('val_'))}")  # fmt: skip
        trial.report(row[metric], int(row["epoch"]))
        history.append({k: row[k] for k in (*HISTORY_KEYS, metric) if k in row})
        trial.set_user_attr("history", history)  # the curves `kiln sweep show` draws
        if on_epoch is not None:
            on_epoch(row)
        if trial.should_prune():
            trial.set_user_attr("pruned_at_epoch", int(row["epoch"]))
            raise StopTraining(
                f"pruned by the sweep: {metric} {row[metric]:.4f} at epoch {int(row['epoch'])} "
                "is worse than the median of the earlier trials there"
            )

    return report
