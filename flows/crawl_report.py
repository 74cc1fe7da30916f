"""The crawl in the Prefect UI: its figures as an artifact of the crawl's own task run, a partial
crawl in the run summary, and no retry of a crawl refused for being partial.

The crawl stage decides (tasks/crawl.py, `crawl.allow_partial`); this module only shows what it
wrote. A partial crawl it kept is in reports/crawl.json (`partial: true`, `partial_reason`); one
it refused is in reports/crawl_partial.json, which it deletes at the start of every crawl, so
that file is there exactly when the last crawl was refused.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect.artifacts import TableArtifact

from tasks.core.paths import CRAWL_PARTIAL_REPORT, CRAWL_REPORT

# reports/crawl.json's figures in the order the table shows them (tasks/crawl.py writes them)
CRAWL_FIGURES = ("partial", "partial_reason", "pages", "files", "items", "rejects", "retries",
                 "failures", "refused", "bytes", "duration_s", "pages_per_s", "not_modified",
                 "from_cache", "kept", "fetched_ahead", "finish_reason",
                 "source")  # fmt: skip  (the source.kind read instead of a crawl)


def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def last_crawl(project: Path) -> tuple[dict[str, Any], bool]:
    """The last crawl's report, and whether data/raw holds what it crawled (False: a partial
    crawl refused, data/raw left as it was)."""
    refused = _read(project / CRAWL_PARTIAL_REPORT)
    return (refused, False) if refused else (_read(project / CRAWL_REPORT), True)


def crawl_figures(project: Path) -> dict[str, Any]:
    """The last crawl's figures in a fixed order (with where its rows went, when it was partial)."""
    report, kept = last_crawl(project)
    figures = {k: report[k] for k in CRAWL_FIGURES if k in report}
    if report.get("partial"):
        figures["data/raw"] = ("replaced (crawl.allow_partial: true)" if kept
                               else "left as it was (crawl.allow_partial: false)")  # fmt: skip
    return figures


def partial_crawl_line(project: Path) -> str | None:
    """One markdown line for the run summary when the last crawl was partial, else None."""
    report, kept = last_crawl(project)
    if not report.get("partial"):
        return None
    reason = report.get("partial_reason") or "partial"
    if kept:
        return (f"**Partial crawl:** {reason}; data/raw holds its {report.get('items')} items and "
                "the later stages used them (crawl.allow_partial: true).")  # fmt: skip
    return (f"**Partial crawl refused:** {reason}; data/raw and every stage after it were left "
            "as they were. Raise that limit in params.yaml, or set crawl.allow_partial: true "
            "to train on a partial crawl.")  # fmt: skip


def _publish(project: Path, task_run: Any) -> None:
    figures = crawl_figures(project)
    if figures:
        TableArtifact(
            table=[{"figure": k, "value": v} for k, v in figures.items()],
            key="crawl",
            description=partial_crawl_line(project) or "Crawl stats from reports/crawl.json",
            task_run_id=task_run.id,
            flow_run_id=task_run.flow_run_id,
        ).create()


def crawl_task_options(project: Path) -> dict[str, Any]:
    """Options of the crawl's task run: its figures become an artifact of that task run, when it
    completed and when it failed; and a crawl refused for being partial is not retried (it would
    stop at the same limit), whereas one that failed otherwise is."""

    def publish(task: Any, task_run: Any, state: Any) -> None:
        _publish(project, task_run)

    def retry(task: Any, task_run: Any, state: Any) -> bool:
        return not (project / CRAWL_PARTIAL_REPORT).is_file()

    hooks: list[Callable[..., None]] = [publish]
    return {"on_completion": hooks, "on_failure": hooks, "retry_condition_fn": retry}
