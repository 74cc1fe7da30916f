"""A stage's progress lines as the Prefect progress artifact of its task run.

`StageProgress(stage)` is handed to `flows.dvc_stages.run_stage` as `on_progress`: the stage's
first progress line (`tasks.core.progress`) creates the artifact, key `<stage>-progress`, on the
task run that is running; each later line updates it in place (its percent and a one-line
description: what, count, rate, ETA). `finish()` sets 100 once the stage's command succeeded,
creating the artifact there if the stage printed no progress line; `fail()` leaves the percent
where it stopped and says so. A line of unknown total (a crawl without a file limit) keeps the
percent and updates the description.

A stage may run loops inside one another or side by side (the crawl's pages and files, a long
validation pass inside training): the percent is the outermost one's, the loop that began first
among those still running that have a total, so that an inner loop's line updates the
description without the bar jumping back and forth. A loop has ended at its end line (`done in`
or `stopped after`).

Lines come at most one per loop every 10 s, so each is one API call. An API error is logged once
as a warning and ends the updates of this stage: the UI's progress is never worth failing a stage.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from logging import Logger, LoggerAdapter
from typing import Any
from uuid import UUID

from tasks.core.progress import ProgressLine


def artifact_key(stage: str) -> str:
    """`<stage>-progress`: keys are lowercase letters, digits and dashes."""
    return re.sub(r"[^a-z0-9]+", "-", f"{stage.lower()}-progress").strip("-")


def _duration(seconds: int) -> str:
    minutes, s = divmod(seconds, 60)
    hours, m = divmod(minutes, 60)
    return f"{hours} h {m:02d} min" if hours else f"{m} min {s:02d} s" if m else f"{s} s"


def describe(stage: str, line: ProgressLine) -> str:
    """`train: 1200/2000 steps, 3.21 steps/s, ETA 4 min 09 s (epoch 3/5)`."""
    total = "" if line.total is None else f"/{line.total}"
    text = f"{stage}: {line.done}{total} {line.unit}, {line.rate:.2f} {line.unit}/s"
    if line.what != stage:
        text = f"{stage} ({line.what}): {text.split(': ', 1)[1]}"
    if line.eta_s is not None and not line.finished:
        text += f", ETA {_duration(line.eta_s)}"
    return f"{text} ({line.detail})" if line.detail else text


class StageProgress:
    """The progress artifact of one stage's task run (module docstring)."""

    def __init__(
        self,
        stage: str,
        logger: Logger | LoggerAdapter | None = None,
        *,
        create: Callable[..., UUID] | None = None,
        update: Callable[..., Any] | None = None,
    ) -> None:
        if create is None or update is None:
            from prefect.artifacts import (  # noqa: PLC0415 (tests pass fakes; no prefect import)
                create_progress_artifact,
                update_progress_artifact,
            )

            create, update = create or create_progress_artifact, update or update_progress_artifact
        self.stage, self.key = stage, artifact_key(stage)
        self.percent = 0.0
        self.description = f"{stage}: started"
        self.artifact_id: UUID | None = None
        self.last: ProgressLine | None = None
        self._running: dict[str, ProgressLine] = {}  # each loop's last line, oldest loop first
        self._create, self._update, self._logger = create, update, logger
        self._broken = False

    def __call__(self, line: ProgressLine) -> None:
        self.last = line
        if line.finished or line.detail.startswith("stopped after "):
            self._running.pop(line.what, None)
        else:
            self._running[line.what] = line  # a loop seen before keeps its place
        outer = next((r for r in self._running.values() if r.percent is not None), line)
        if outer.percent is not None:
            self.percent = outer.percent
        self._publish(describe(self.stage, line))

    def finish(self) -> None:
        """The stage succeeded: 100 %."""
        self.percent = 100.0
        if self.last is None:
            self._publish(f"{self.stage}: done")
        elif self.last.finished:
            self._publish(describe(self.stage, self.last))
        else:
            self._publish(f"{self.stage}: done (last progress line: {self.description})")

    def fail(self) -> None:
        """The stage failed: the percent stays; the description says where it stopped."""
        if self.artifact_id is not None:
            self._publish(f"{self.stage} failed at {self.percent:.0f} %: {self.description}")

    def _publish(self, description: str) -> None:
        self.description = description
        if self._broken:
            return
        try:
            if self.artifact_id is None:
                self.artifact_id = self._create(
                    progress=self.percent, key=self.key, description=description
                )
            else:
                self._update(self.artifact_id, progress=self.percent, description=description)
        except Exception as exc:  # any API or network error: the stage goes on
            self._broken = True
            if self._logger is not None:
                self._logger.warning(
                    "%s: progress artifact not updated, and no longer will be this run: %s",
                    self.stage,
                    exc,
                )
