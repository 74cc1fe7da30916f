"""What a `kiln sweep` searches (params.yaml's `sweep` section) as an Optuna study.

`plan(params, raw, dvc_yaml)` checks the section against the project: every key is a params key
that only train and the stages after it read (dvc.yaml's `params:` lists), every value it can take
is valid for that key (the params schema), and the metric is a validation metric. `open_study`
creates the study in `.kiln/sweep/<name>.db`, or opens it again: running the same sweep again adds
trials up to its budget, and a killed sweep's unfinished trials are marked failed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tasks.core.params import Params, ParamsError, SweepParams, SweepSpace, parse_params
from tasks.core.sweep_trial import pruner, storage_url, study_path

# The validation metric the training engine reports per epoch for each headline (test) metric.
VALIDATION_TWIN = {
    "macro_f1": "val_macro_f1",
    "accuracy": "val_acc",
    "mae": "val_mae",
    "rmse": "val_rmse",
    "val_loss": "val_loss",  # text generation's headline is its test loss
    "perplexity": "val_ppl",
}
MAXIMISED = ("val_acc", "val_macro_f1")  # tasks.core.training's, without importing torch
FIRST_TRAINED_STAGE = "train"


class SweepError(ValueError):
    """The sweep section does not fit the project; the message names the key."""


@dataclass(frozen=True)
class Plan:
    spec: SweepParams
    metric: str
    direction: str  # "maximize" or "minimize"
    grid_size: int | None  # combinations of the grid sampler, else None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def keys(self) -> list[str]:
        return list(self.spec.params)

    def budget(self) -> int | None:
        """Trials in all (None: only timeout_s bounds the sweep)."""
        if self.grid_size is None:
            return self.spec.trials
        return min(self.grid_size, self.spec.trials or self.grid_size)


def grid_values(space: SweepSpace) -> list[Any]:
    """Every value of a key for the grid sampler."""
    if space.range is None:
        return list(space.grid or space.choice or [])
    low, high = space.range
    step = space.step or (high - low)  # SweepParams refuses a grid range without a step
    n = int(round((high - low) / step)) + 1
    values = [low + i * step for i in range(n) if low + i * step <= high + 1e-12 * abs(high)]
    integral = all(isinstance(v, int) for v in (low, high, step))
    return [int(v) if integral else round(v, 12) for v in values]  # 0.1 * 3 -> 0.3, not ...04


def distribution(space: SweepSpace) -> Any:
    """The optuna distribution of one key."""
    from optuna.distributions import (  # noqa: PLC0415
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    if space.range is None:
        return CategoricalDistribution(space.grid or space.choice or [])
    low, high = space.range
    if all(isinstance(v, int) for v in (low, high, space.step or 1)):
        return IntDistribution(low, high, log=space.log, step=int(space.step or 1))
    return FloatDistribution(float(low), float(high), log=space.log, step=space.step)


def _set(raw: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(raw))  # a deep copy of plain YAML data
    node = out
    *parents, last = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return out


def _read_before_train(dvc_yaml: Path) -> dict[str, list[str]]:
    """{stage: its params keys} of the stages dvc.yaml lists before train."""
    stages = (yaml.safe_load(dvc_yaml.read_text(encoding="utf-8")) or {}).get("stages") or {}
    before: dict[str, list[str]] = {}
    for name, stage in stages.items():
        if name == FIRST_TRAINED_STAGE:
            break
        before[name] = [k for k in stage.get("params") or [] if isinstance(k, str)]
    return before


def plan(params: Params, raw: dict[str, Any], dvc_yaml: Path) -> Plan:
    """The sweep of params.yaml (`raw`: the file as read), checked; SweepError names the key."""
    spec = params.sweep
    if spec is None:
        raise SweepError("params.yaml has no `sweep` section (docs/sweeps.md shows one)")
    before = _read_before_train(dvc_yaml)
    for key, space in spec.params.items():
        for stage, keys in before.items():
            clash = [k for k in keys if f"{key}.".startswith(f"{k}.") or k.startswith(f"{key}.")]
            if clash:
                raise SweepError(
                    f"sweep.params.{key}: the {stage} stage reads {clash[0]}, and a sweep "
                    "varies only what train and the stages after it read (each trial would "
                    "re-run everything from that stage)"
                )
        values = grid_values(space) if space.range is None or space.step else list(space.range)
        for value in values:
            try:
                parse_params(_set(raw, key, value))
            except ParamsError as exc:
                problem = str(exc).split("\n", 1)[-1].strip()
                raise SweepError(f"sweep.params.{key} = {value!r}: {problem}") from None
    task_metrics = type(params).HEADLINE_METRICS
    metric = spec.metric or next((VALIDATION_TWIN[m] for m in task_metrics
                                  if m in VALIDATION_TWIN), "val_loss")  # fmt: skip
    direction = spec.direction or ("maximize" if metric in MAXIMISED else "minimize")
    grid_size = None
    if spec.sampler == "grid":
        grid_size = 1
        for space in spec.params.values():
            grid_size *= len(grid_values(space))
    return Plan(spec, metric, direction, grid_size)


def _fingerprint(p: Plan) -> str:
    """What makes two runs the same sweep (the budget may grow between them)."""
    spec = p.spec.model_dump(mode="json", exclude={"trials", "timeout_s", "jobs"})
    return json.dumps({**spec, "metric": p.metric, "direction": p.direction}, sort_keys=True)


def open_study(project: Path, p: Plan) -> Any:
    """The sweep's optuna.Study, created or re-opened (SweepError if the file holds another)."""
    import optuna  # noqa: PLC0415 (~1 s)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    path = study_path(project, p.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    spec = p.spec
    if spec.sampler == "grid":
        space = {k: grid_values(s) for k, s in spec.params.items()}
        sampler: Any = optuna.samplers.GridSampler(space, seed=spec.seed)
    elif spec.sampler == "random":
        sampler = optuna.samplers.RandomSampler(seed=spec.seed)
    else:
        sampler = optuna.samplers.TPESampler(seed=spec.seed, n_startup_trials=spec.startup_trials)
    settings = {k: getattr(spec, k) for k in ("prune", "startup_trials", "warmup_epochs")}
    study = optuna.create_study(
        study_name=p.name,
        storage=storage_url(path),
        sampler=sampler,
        pruner=pruner(settings),
        direction=p.direction,
        load_if_exists=True,
    )
    stored = study.user_attrs.get("fingerprint")
    if stored is None:
        study.set_user_attr("fingerprint", _fingerprint(p))
        study.set_user_attr("metric", p.metric)
        study.set_user_attr("keys", p.keys)
        study.set_user_attr("pruner", settings)  # for the trials' processes
    elif stored != _fingerprint(p):
        raise SweepError(
            f"{path} holds sweep {p.name!r} run with another sweep section; give this one "
            "another sweep.name (or delete the file to start over)"
        )
    for trial in study.get_trials(states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)  # a killed sweep's
    return study


def load_study(project: Path, name: str) -> Any:
    """A sweep's study as `kiln sweep` left it (SweepError when there is none)."""
    import optuna  # noqa: PLC0415

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    path = study_path(project, name)
    if not path.is_file():
        raise SweepError(f"no sweep {name!r} here ({path} is missing): run `kiln sweep` first")
    return optuna.load_study(study_name=name, storage=storage_url(path))
