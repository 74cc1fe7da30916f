"""The shell every stage module shares: one logging set-up, params loaded once, the task type's
method for the stage called, its exit code returned.

    python -m tasks.train   ->   run_stage("train")   ->   task_type(project.task).train(params)

One log format for every stage, `<time> <LEVEL> <logger>: <message>`: the Prefect flow reads the
level back from each line, so a WARNING of a stage (or of Scrapy inside the crawl) is a WARNING in
the Prefect UI, and drops the time, which its own log record carries. A long loop reports through
`tasks.core.progress` (`track(...)` in place of a bare loop): a tqdm bar on a terminal, else a
`progress <what> <done>/<total> <unit> <rate>/s eta <eta>` line at least and at most every 10 s,
which the flow also shows as the stage's Prefect progress artifact.
"""

from __future__ import annotations

import logging

from tasks.core.params import ParamsError, load_params
from tasks.core.paths import EVALUATION_PLOTS
from tasks.core.plugins import task_type

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
PLUGIN_STAGES = ("clean", "train", "evaluate", "export")  # what a task type implements


def setup_logging(level: int = logging.INFO) -> None:
    """The root logger of a stage process: LOG_FORMAT on stderr, at INFO. Not forced: where the
    root logger has handlers already (a stage called in process, pytest's caplog), they stay."""
    logging.basicConfig(level=level, format=LOG_FORMAT)


def run_stage(stage: str) -> int:
    """Run the task type's implementation of `stage` (one of PLUGIN_STAGES); the exit code."""
    if stage == "train":
        return _run_train()
    setup_logging()
    try:
        params = load_params()
    except ParamsError as exc:
        logging.getLogger(f"kiln.{stage}").error("%s failed: %s", stage, exc)
        return 1
    code = getattr(task_type(params.project.task), stage)(params)
    if stage == "evaluate" and code == 0:
        # dvc.yaml's plots folder, which DVC must find (a task type or plugin may draw nothing)
        EVALUATION_PLOTS.mkdir(parents=True, exist_ok=True)
    return code


def _run_train() -> int:
    """The train stage: in this process, or re-launched under torchrun when train.distributed
    declares several processes (tasks.core.distributed); under torchrun, as one rank of its
    process group, ranks other than 0 logging warnings and errors only."""
    from tasks.core import distributed  # noqa: PLC0415 (torch: the train stage only)

    ranked = distributed.under_torchrun()
    setup_logging(logging.WARNING if ranked and distributed.env_rank() else logging.INFO)
    try:
        params = load_params()
    except ParamsError as exc:
        logging.getLogger("kiln.train").error("train failed: %s", exc)
        return 1
    train = task_type(params.project.task).train
    declared = params.train.distributed
    if not ranked:
        return train(params) if declared.processes == 1 else distributed.launch(declared)
    with distributed.process_group(declared.backend, params.train.device):
        return train(params)
