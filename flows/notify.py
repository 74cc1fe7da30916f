"""Notifications of a failed run and of a promotion, through Prefect's notification blocks.

params.yaml's `notify` section (tasks/core/params.py, NotifyParams) says what is sent where:
each URL of `notify.webhooks` becomes a Prefect "Custom Webhook" block saved on the server as
`kiln-<project>-webhook-<n>` (visible and testable under Blocks in the UI) that POSTs JSON
`{"text", "subject", "body"}` ("text" is what a Slack or Mattermost incoming webhook shows);
each `notify.blocks` entry names a block saved in Prefect beforehand, e.g. a Slack Webhook or a
SendGrid e-mail block, so the secrets in their URLs and keys never enter params.yaml.

The refresh-and-retrain flow calls `notify_failure` when a stage (or the run around them) fails
and `notify_promotion` when promote made a new champion. Every message names the project, the
stage, the reason and the flow run's page in the Prefect UI. A notification that cannot be sent
is logged as a warning and never changes the run's outcome.

What this does not cover: a flow process killed outright (no Python code runs); a server-side
Prefect automation on "flow run entered Crashed" is the mechanism for that (docs/scaling.md).
"""

from __future__ import annotations

import json
import re
from logging import Logger, LoggerAdapter
from pathlib import Path
from typing import Any

from flows.dvc_stages import StageOutcome
from tasks.core.params import NotifyParams, Params, read_params_file

# The JSON body each webhook gets; {{subject}}, {{body}} and {{name}} are the block's templates.
WEBHOOK_JSON = {"text": "{{subject}}\n{{body}}", "subject": "{{subject}}", "body": "{{body}}",
                "source": "{{name}}"}
MAX_REASON = 2000  # characters of a reason a message quotes


def block_name(project_name: str, index: int) -> str:
    """A valid Prefect block name (lowercase letters, digits, dashes) for one webhook."""
    slug = re.sub(r"[^a-z0-9]+", "-", project_name.lower()).strip("-") or "project"
    return f"kiln-{slug}-webhook-{index}"


def settings_of(project: Path, params: Params | None) -> tuple[str, NotifyParams]:
    """The project's name and notify section; read from the file on its own when the whole file
    did not load (a typo elsewhere must not silence the notification of that very failure)."""
    if params is not None:
        return params.project.name, params.notify
    raw = read_params_file(project / "params.yaml")
    name = (raw.get("project") or {}).get("name") or project.name
    return str(name), NotifyParams.model_validate(raw.get("notify") or {})


def run_url() -> str | None:
    """This flow run's page in the Prefect UI (PREFECT_UI_URL, by default the API's origin)."""
    from prefect.context import FlowRunContext  # noqa: PLC0415
    from prefect.utilities.urls import url_for  # noqa: PLC0415

    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return None
    return url_for("flow-run", obj_id=context.flow_run.id)


def message(project_name: str, stage: str, reason: str, url: str | None,
            headline: str) -> tuple[str, str]:
    """(subject, body) of one notification: the project, the stage, the reason, the UI link."""
    reason = reason.strip() or "(no message)"
    if len(reason) > MAX_REASON:
        reason = reason[:MAX_REASON] + " …"
    subject = f"Kiln {project_name}: {headline}"
    body = "\n".join([f"project: {project_name}", f"stage: {stage}", f"reason: {reason}",
                      f"run: {url or '(not run by Prefect)'}"])
    return subject, body


def _blocks(project_name: str, settings: NotifyParams) -> list[Any]:
    """The notification blocks to call: the webhooks' own (saved, so the UI shows them), then
    the named ones loaded from the server."""
    from prefect.blocks.core import Block  # noqa: PLC0415
    from prefect.blocks.notifications import CustomWebhookNotificationBlock  # noqa: PLC0415

    blocks: list[Any] = []
    for index, url in enumerate(settings.webhooks, start=1):
        name = block_name(project_name, index)
        block = CustomWebhookNotificationBlock(name=name, url=url, json_data=WEBHOOK_JSON)
        block.save(name, overwrite=True)  # params.yaml is the source of truth for these
        blocks.append(block)
    blocks += [Block.load(slug) for slug in settings.blocks]
    return blocks


def send(project_name: str, settings: NotifyParams, subject: str, body: str,
         logger: Logger | LoggerAdapter) -> int:
    """Send one message through every configured block; returns how many took it."""
    try:
        blocks = _blocks(project_name, settings)
    except Exception as exc:  # a missing block, a server that refused the save
        logger.warning("notification not sent (%s): %s", subject, exc)
        return 0
    sent = 0
    for block in blocks:
        try:
            block.notify(body=body, subject=subject)
            sent += 1
        except Exception as exc:  # a receiver that is down must not fail the run
            label = getattr(block, "_block_document_name", None) or type(block).__name__
            logger.warning("notification through %s failed: %s", label, exc)
    if sent:
        logger.info("notified %d receiver(s): %s", sent, subject)
    return sent


def notify_failure(project: Path, params: Params | None, stage: str, reason: str,
                   logger: Logger | LoggerAdapter) -> int:
    """A failed run: which stage failed and why."""
    try:
        project_name, settings = settings_of(project, params)
    except Exception as exc:  # the params file itself is unreadable: nothing says whom to tell
        logger.warning("no notification: the notify section could not be read (%s)", exc)
        return 0
    if "failure" not in settings.events or not (settings.webhooks or settings.blocks):
        return 0
    subject, body = message(project_name, stage, reason, run_url(), f"run failed at {stage}")
    return send(project_name, settings, subject, body, logger)


def notify_promotion(project: Path, params: Params, outcomes: list[StageOutcome],
                     logger: Logger | LoggerAdapter) -> int:
    """A promotion made by this run's promote stage (reports/promotion.json)."""
    settings = params.notify
    if "promotion" not in settings.events or not (settings.webhooks or settings.blocks):
        return 0
    if not any(o.stage == "promote" and o.ran for o in outcomes):
        return 0
    report_path = project / "reports" / "promotion.json"
    if not report_path.exists():
        return 0
    report = json.loads(report_path.read_text(encoding="utf-8"))
    if report.get("outcome") != "promoted":
        return 0
    champion = report.get("champion_after") or "a new champion"
    subject, body = message(params.project.name, "promote", report.get("reason", ""), run_url(),
                            f"{champion} promoted")
    return send(params.project.name, settings, subject, body, logger)
