"""The sweep flow: `kiln sweep` runs params.yaml's `sweep` section as DVC experiments.

Wiring only; the search is Optuna's, the trials are DVC's. The flow asks the study
(flows/sweep_plan.py) for a trial's values and runs it as `dvc exp run --temp -n <sweep>-<n>
-S key=value ... evaluate`: a `dvc repro` of the committed pipeline up to the test metrics, in a
temporary copy, recorded as an experiment against the commit it started from, the workspace
untouched. Only train and the stages
after it run: the sweep varies only keys they read, and refuses to start while a stage before train
is stale. During training the trial reports its validation metric per epoch to the study
(tasks/core/sweep_trial.py), which prunes it when it falls behind the earlier trials; a pruned trial
is still an experiment, trained for fewer epochs. The flow then tells the study the trial's result:
the validation metric of the model the trial kept (DVCLive's `best_<metric>`), never a test figure.

With `jobs` > 1 each round's trials are queued (`dvc exp run --queue`) and run together by DVC's
queue (`dvc exp run --run-all --jobs N`), one "round" task run; each trial still has a task run of
its own, which records its result.

Prefect shows one task run per trial (Completed, "Pruned" or Failed) and, at the end, the trials
as a table, the plot of reports/sweep/sweep.png and the best trial (flows/sweep_report.py).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_image_artifact,
    create_markdown_artifact,
    create_table_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, State

from flows.dvc_stages import is_frozen, pipeline, stale_reason
from flows.run_guard import single_run_lock
from flows.sweep_plan import FIRST_TRAINED_STAGE, Plan, SweepError, distribution, open_study, plan
from flows.sweep_report import (
    TRAIN_SUMMARY,
    best_row,
    experiments,
    table,
    trial_rows,
    write_reports,
)
from tasks.core.params import load_params, read_params_file
from tasks.core.params_rewrite import rewrite_problem
from tasks.core.sweep_trial import trial_name

# A trial runs the pipeline up to the test metrics: export and promote are for the model kept
# (`kiln sweep apply best`, then `kiln run`), and would add ~10 s per trial on the tiny demo.
TRIAL_TARGET = "evaluate"


def dvc_set_args(values: dict[str, Any]) -> list[str]:
    """`-S key=value` for each value; JSON values are valid Hydra override values."""
    return [arg for key, value in values.items() for arg in ("-S", f"{key}={json.dumps(value)}")]


def _env() -> dict[str, str]:
    """The stages (`python -m tasks.x`) run with this interpreter's environment first on PATH."""
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
            "PYTHONUNBUFFERED": "1"}  # fmt: skip


def _dvc(project: Path, *args: str) -> None:
    """Run `dvc <args>` in `project`, its output into the task run's log; RuntimeError if it
    fails."""
    logger = get_run_logger()
    cmd = [sys.executable, "-m", "dvc", *args]
    logger.info("$ dvc %s", " ".join(args))
    with subprocess.Popen(cmd, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, env=_env()) as proc:  # fmt: skip
        for line in proc.stdout or ():
            if line.strip():
                logger.info(line.rstrip())
    if proc.returncode != 0:
        raise RuntimeError(f"`dvc {' '.join(args)}` exited {proc.returncode}")


@task(retries=0, cache_policy=NO_CACHE)
def run_trial(project: Path, study_name: str, number: int, values: dict[str, Any], *,
              metric: str, run: bool) -> dict[str, Any] | State:  # fmt: skip
    """Run one trial (unless a round ran it) and tell the study its result."""
    from optuna.trial import TrialState  # noqa: PLC0415

    from flows.sweep_plan import load_study  # noqa: PLC0415

    name = trial_name(study_name, number)
    study = load_study(project, study_name)
    try:
        if run:
            _dvc(project, "exp", "run", "--temp", "-n", name, *dvc_set_args(values), TRIAL_TARGET)
        found = experiments(project).get(name)
        if found is None:
            raise RuntimeError(f"experiment {name} was not recorded (see the log)")
    except Exception:
        study.tell(number, state=TrialState.FAIL)
        raise
    trial = study.get_trials(deepcopy=False)[number]
    value = found["metrics"].get(TRAIN_SUMMARY, {}).get(f"best_{metric}")
    pruned_at = trial.user_attrs.get("pruned_at_epoch")
    if pruned_at is not None:
        study.tell(number, state=TrialState.PRUNED)
        return Completed(name="Pruned", message=f"{name}: pruned after epoch {pruned_at}, "
                         f"{metric} {value}")  # fmt: skip
    if value is None:
        study.tell(number, state=TrialState.FAIL)
        raise RuntimeError(f"{name}: {TRAIN_SUMMARY} has no best_{metric}")
    study.tell(number, float(value))
    get_run_logger().info(f"{name}: {metric} {value:.4f} with {values}")
    return {"trial": number, "experiment": name, metric: value, **values}


@task(retries=0, cache_policy=NO_CACHE)
def run_round(project: Path, jobs: int) -> None:
    """Run the queued trials, `jobs` at a time (DVC's queue); the task run is named after them."""
    _dvc(project, "exp", "run", "--run-all", "--jobs", str(jobs))


def _stale_before_train(project: Path) -> list[str]:
    """The stages before train that DVC considers out of date (each trial would re-run them)."""
    from dvc.repo import Repo  # noqa: PLC0415

    stale = []
    with Repo(str(project)) as repo:
        for stage, spec in pipeline(project).items():
            if stage == FIRST_TRAINED_STAGE:
                break
            if not is_frozen(spec) and stale_reason(repo, stage, project) is not None:
                stale.append(stage)
    return stale


def check_project(project: Path) -> Plan:
    """The sweep's plan once the project can run it; SweepError says why not."""
    params_path = project / "params.yaml"
    p = plan(load_params(params_path), read_params_file(params_path), project / "dvc.yaml")
    if problem := rewrite_problem(params_path):
        raise SweepError(problem)
    if stale := _stale_before_train(project):
        raise SweepError(f"stages before train are out of date ({', '.join(stale)}): every "
                         "trial would re-run them; `kiln run` (and commit) first")  # fmt: skip
    return p


def _publish(project: Path, p: Plan, study: Any, rows: list[dict[str, Any]]) -> None:
    log_keys = {k for k, s in p.spec.params.items() if s.log}
    out = write_reports(project, study, rows, log_keys)
    png = base64.b64encode((out / "sweep.png").read_bytes()).decode()
    key = f"sweep-{p.name}"
    create_image_artifact(f"data:image/png;base64,{png}", key=f"{key}-plot",
                          description=f"{p.metric} (validation) against each varied key, and "
                          "each trial's curves (reports/sweep/sweep.png)")  # fmt: skip
    create_table_artifact(rows, key=f"{key}-trials",
                          description="trials: params, validation and test metrics")  # fmt: skip
    best = best_row(rows, p.metric, p.direction == "maximize")
    overfit = [r["experiment"] for r in rows if r["overfit"]]
    lines = [f"# Sweep {p.name}: {p.spec.sampler}, {len(rows)} trials", ""]
    if best is not None:
        tests = ", ".join(f"{k[5:]} {v:.4f}" for k, v in best.items()
                          if k.startswith("test_") and isinstance(v, float))  # fmt: skip
        lines.append(f"Best: **{best['experiment']}**, {p.metric} {best[p.metric]:.4f} "
                     f"(validation, chosen on); test: {tests or '-'} (reported only). "
                     f"Params: {', '.join(f'{k}={best[k]}' for k in p.keys)}. "
                     "`kiln sweep apply best` puts them into params.yaml.")  # fmt: skip
    if overfit:
        lines += ["", f"Overfitting (validation peaked early and fell): {', '.join(overfit)}"]
    create_markdown_artifact("\n".join(lines), key=f"{key}-summary", description="the best trial")


@flow(name="sweep")
def sweep(project_dir: str = ".", jobs: int | None = None) -> list[dict[str, Any]]:
    project = Path(project_dir).resolve()
    logger = get_run_logger()
    p = check_project(project)
    jobs = jobs or p.spec.jobs
    distributions = {k: distribution(s) for k, s in p.spec.params.items()}
    budget, started = p.budget(), time.monotonic()
    with single_run_lock(project):
        study = open_study(project, p)
        while True:
            finished = sum(t.state.is_finished() for t in study.get_trials(deepcopy=False))
            left = None if budget is None else budget - finished
            timed_out = p.spec.timeout_s is not None and (
                time.monotonic() - started >= p.spec.timeout_s
            )
            if (left is not None and left <= 0) or timed_out:
                break
            asked = [study.ask(distributions) for _ in range(min(jobs, left or jobs))]
            if len(asked) > 1:
                for trial in asked:
                    name = trial_name(p.name, trial.number)
                    queued = ["exp", "run", "--queue", "-n", name, *dvc_set_args(trial.params),
                              TRIAL_TARGET]  # fmt: skip
                    done = subprocess.run([sys.executable, "-m", "dvc", *queued], cwd=project,
                                          env=_env(), capture_output=True, text=True, check=False)
                    if done.returncode != 0:
                        raise SweepError(f"could not queue {name}: {done.stderr.strip()}")
                names = [trial_name(p.name, t.number) for t in asked]
                run_round.with_options(task_run_name=f"round {', '.join(names)}")(
                    project, len(asked), return_state=True
                )
            for trial in asked:
                name = trial_name(p.name, trial.number)
                # return_state: a failed trial fails its task run, not the sweep
                run_trial.with_options(task_run_name=name)(
                    project, p.name, trial.number, trial.params, metric=p.metric,
                    run=len(asked) == 1, return_state=True,
                )  # fmt: skip
        rows = trial_rows(study, experiments(project),
                          type(load_params(project / "params.yaml")).HEADLINE_METRICS,
                          p.spec.overfit_drop)  # fmt: skip
    _publish(project, p, study, rows)
    logger.info("trials:\n%s", table(rows))
    if rows and not any(r["state"] in ("complete", "pruned") for r in rows):
        raise SweepError(f"every trial of sweep {p.name} failed: see their task runs' logs")
    return rows


if __name__ == "__main__":
    sweep()
