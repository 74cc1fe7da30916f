"""The refresh-and-retrain flow: `kiln run` (or `python -m flows.refresh_and_retrain`).

Wiring only. Each task run is one DVC stage, run through DVC (flows/dvc_stages.py), so the flow,
`dvc repro` and the tests share one implementation of every stage; the stages that succeeded are
recorded in dvc.lock in one commit at the end. The crawl is retried on
transient errors; later stages are not (bad data does not get better by retrying).
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, State

from flows.dvc_stages import StageOutcome, dvc_session, record, run_crawl, run_stage
from flows.run_guard import demo_site_if_needed, single_run_lock
from flows.summary import publish_artifacts
from tasks.core.params import load_params

AFTER_CRAWL = ("validate", "clean", "train", "evaluate", "export", "promote")


# DVC, not Prefect, decides whether a stage is up to date: no Prefect result caching.
@task(name="crawl", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def crawl(project: Path) -> StageOutcome:
    return run_crawl(project, get_run_logger())


@task(retries=0, cache_policy=NO_CACHE)
def dvc_stage(stage: str, project: Path) -> StageOutcome | State:
    outcome = run_stage(stage, project, get_run_logger())
    if not outcome.ran:  # shown in the UI as a "Skipped" task run with the reason
        return Completed(name="Skipped", message=outcome.reason)
    return outcome


@flow(name="refresh-and-retrain")
def refresh_and_retrain(project_dir: str = ".") -> list[StageOutcome]:
    project = Path(project_dir).resolve()
    params = load_params(project / "params.yaml")  # a typo fails here, before any stage
    outcomes: list[StageOutcome] = []
    logger = get_run_logger()
    try:
        with single_run_lock(project), demo_site_if_needed(params, logger), dvc_session(project):
            try:
                outcomes.append(crawl.with_options(task_run_name="crawl")(project))
                for stage in AFTER_CRAWL:
                    run = dvc_stage.with_options(name=stage, task_run_name=stage)
                    result = run(stage, project)
                    if isinstance(result, State):
                        result = StageOutcome(stage, False, result.message or "skipped")
                    outcomes.append(result)
            finally:
                if outcomes:  # what succeeded goes into dvc.lock, also when a later stage failed
                    record(outcomes[-1].stage, project, logger)
    except Exception as exc:
        publish_artifacts(project, outcomes, failure=str(exc))
        raise
    publish_artifacts(project, outcomes)
    return outcomes


if __name__ == "__main__":
    refresh_and_retrain()
