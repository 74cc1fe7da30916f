"""`notify.blocks`: notification blocks made beforehand in Prefect (as in the UI), loaded by
'<block-type>/<name>' from a real Prefect server and called (flows/notify.py).

A Custom Webhook block stands for any block here: Slack, Teams or SendGrid blocks reach the
outside world, so for those only the loading is checked (their `notify` is not called).
"""

from __future__ import annotations

import logging

import pytest
from prefect.blocks.notifications import CustomWebhookNotificationBlock, SlackWebhook
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows import notify
from tasks.core.params import NotifyParams
from tests.webhook import webhook_receiver

pytestmark = pytest.mark.integration


def test_named_blocks_are_loaded_and_called(prefect_server, monkeypatch: pytest.MonkeyPatch,
                                            caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.notify")
    with temporary_settings({PREFECT_API_URL: prefect_server.api_url}), \
            webhook_receiver() as (url, bodies):
        CustomWebhookNotificationBlock(name="team", url=url, json_data={"t": "{{subject}}"}
                                       ).save("team-hook", overwrite=True)
        settings = NotifyParams(blocks=["custom-webhook/team-hook"], webhooks=[url])
        assert notify.send("demo", settings, "Kiln demo: v0002 promoted", "body", logger) == 2
        assert bodies[0]["subject"] == "Kiln demo: v0002 promoted"  # Kiln's own block first
        assert bodies[1] == {"t": "Kiln demo: v0002 promoted"}  # the block as it was made

        # A Slack block made in the UI is loaded as Prefect's SlackWebhook; its URL never
        # enters params.yaml.
        SlackWebhook(url="https://hooks.slack.com/services/T0/B0/x").save("alerts",
                                                                           overwrite=True)
        called: list[str] = []
        monkeypatch.setattr(SlackWebhook, "notify",
                            lambda self, body, subject=None: called.append(subject))
        slack = NotifyParams(blocks=["slack-webhook/alerts"])
        assert notify.send("demo", slack, "Kiln demo: run failed at train", "b", logger) == 1
        assert called == ["Kiln demo: run failed at train"]

        # A block that does not exist: a warning, nothing sent, no exception.
        with caplog.at_level(logging.WARNING):
            missing = NotifyParams(blocks=["slack-webhook/nobody"])
            assert notify.send("demo", missing, "s", "b", logger) == 0
        assert "notification not sent (s)" in caplog.text
