"""The refresh-and-retrain flow: `kiln run` (or `python -m flows.refresh_and_retrain`).

Wiring only. The stages and their order are dvc.yaml's; each task run is one of them, run through
DVC by flows/dvc_stages.py, so the flow, `dvc repro` and the tests share one implementation of
every stage. Each stage that runs is committed to dvc.lock as it finishes, so what succeeded is
recorded also when a later stage fails. A frozen stage (the crawl) runs on every refresh and is
retried on transient errors, not when it refused a partial crawl (flows/crawl_report.py); the
others are not (bad data does not get better by retrying). An up-to-date stage is a "Skipped"
task run with DVC's reason. A stage that runs shows its progress lines as a progress artifact of
its task run (flows/stage_progress.py), 100 % when it succeeded, and the PNG images it wrote as
image artifacts of its task run (flows/stage_images.py), a classifier's per-class metrics as a
table artifact of evaluate's (flows/summary.py). A failed run, and a promotion, are
notified through Prefect notification blocks as params.yaml's `notify` section says
(flows/notify.py).

With `storage.remote` in params, a last task run, `storage`, pushes the refresh to the DVC remote
and commits it on `storage.branch` (flows/storage.py); a push that fails fails the run.
"""

from __future__ import annotations

import logging
from logging import LoggerAdapter
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.context import TagsContext
from prefect.states import Completed, State

from flows.crawl_report import crawl_task_options
from flows.dvc_stages import StageFailed, StageOutcome, is_frozen, pipeline, run_stage
from flows.notify import notify_failure, notify_promotion
from flows.run_guard import demo_site_if_needed, single_run_lock
from flows.stage_images import publish_images
from flows.stage_progress import StageProgress
from flows.storage import Published, publish
from flows.summary import publish_artifacts, publish_per_class
from tasks.core.params import StorageParams, load_params

FROZEN_RETRIES = 2  # the crawl: the network has transient errors
FROZEN_RETRY_DELAY_S = 5


class _LastErrors(LoggerAdapter):
    """The stage's logger, remembering the last lines the stage logged at ERROR or above: the
    reason a failure gives, in the UI and in its notification (an exit status says little)."""

    KEPT = 3

    def __init__(self, logger: Any) -> None:
        super().__init__(logger, {})
        self.errors: list[str] = []

    def log(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:
        if level >= logging.ERROR:
            self.errors = [*self.errors, str(msg) % args if args else str(msg)][-self.KEPT:]
        self.logger.log(level, msg, *args, **kwargs)


# DVC, not Prefect, decides whether a stage is up to date: no Prefect result caching.
@task(retries=0, cache_policy=NO_CACHE)
def dvc_stage(stage: str, project: Path) -> StageOutcome | State:
    logger = _LastErrors(get_run_logger())
    progress = StageProgress(stage, logger)
    try:
        outcome = run_stage(stage, project, logger, on_progress=progress)
    except StageFailed as exc:
        progress.fail()
        if logger.errors:  # the stage's own last error lines, below the exit status
            raise StageFailed("\n".join([str(exc), *logger.errors])) from None
        raise
    except BaseException:
        progress.fail()
        raise
    if outcome.ran:
        progress.finish()
        spec = pipeline(project)[stage]
        publish_images(stage, spec, project, logger)  # the PNGs it wrote
        publish_per_class(stage, spec, project)  # a classifier's per-class metrics, as a table
    else:  # shown in the UI as a "Skipped" task run with the reason
        return Completed(name="Skipped", message=outcome.reason)
    return outcome


@task(retries=0, cache_policy=NO_CACHE)
def storage(project: Path, cfg: StorageParams) -> Published:
    """Push every output and registry version to the remote, commit the refresh to git."""
    return publish(project, cfg, get_run_logger())


@flow(name="refresh-and-retrain")
def refresh_and_retrain(project_dir: str = ".") -> list[StageOutcome]:
    project = Path(project_dir).resolve()
    logger = get_run_logger()
    try:
        params = load_params(project / "params.yaml")  # a typo fails here, before any stage
    except Exception as exc:
        notify_failure(project, None, "params", str(exc), logger)
        raise
    outcomes: list[StageOutcome] = []
    current = "start (run lock, demo site)"  # the stage a failure is reported at
    try:
        # The project's tags (`kiln run`: flows/cli.py) are the flow run's, for the UI's filter;
        # not its task runs'. Prefect asks the server for a tag's concurrency limit before each
        # tagged task run: on SQLite that request met the server's event writes and came back
        # 503 "busy", retried after 2 s, 2-3 times a tiny-demo run (6 stages: 0.6 s between
        # stages untagged, 2-6 s tagged). A deployment's run has no tags in this context anyway.
        with (single_run_lock(project), demo_site_if_needed(params, logger),
              TagsContext(current_tags=set())):
            for stage, spec in pipeline(project).items():
                current = stage
                retries = FROZEN_RETRIES if is_frozen(spec) else 0
                # The crawl: its figures on its task run, no retry of a refused partial crawl
                crawl = crawl_task_options(project) if is_frozen(spec) else {}
                run = dvc_stage.with_options(name=stage, task_run_name=stage, retries=retries,
                                             retry_delay_seconds=FROZEN_RETRY_DELAY_S,
                                             **crawl)  # fmt: skip
                result = run(stage, project)
                if isinstance(result, State):
                    result = StageOutcome(stage, False, result.message or "skipped")
                outcomes.append(result)
            if params.storage.remote:
                storage.with_options(name="storage", task_run_name="storage")(project,
                                                                                params.storage)
    except Exception as exc:
        publish_artifacts(project, outcomes, failure=str(exc))
        notify_failure(project, params, current, str(exc), logger)
        raise
    publish_artifacts(project, outcomes)
    notify_promotion(project, params, outcomes, logger)
    return outcomes


if __name__ == "__main__":
    refresh_and_retrain()
