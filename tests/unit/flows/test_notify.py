"""flows/notify.py without a server: the notify section, the message, the fallbacks.

Sending through a saved block to a real receiver is tests/e2e/test_notify.py.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from flows import notify
from flows.dvc_stages import StageOutcome
from tasks.core.params import NotifyParams, ParamsError, load_params, parse_params

REPO = Path(__file__).resolve().parents[3]


def _params(notify_section: dict | None = None):  # noqa: ANN202
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    if notify_section is not None:
        raw["notify"] = notify_section
    return parse_params(raw)


def test_default_is_no_notification() -> None:
    params = load_params(REPO / "params.yaml")
    assert params.notify == NotifyParams()
    assert params.notify.webhooks == [] and params.notify.blocks == []
    assert params.notify.events == ["failure", "promotion"]


@pytest.mark.parametrize(("section", "says"), [
    ({"webhooks": ["ftp://example.invalid/x"]}, "is not an http(s) URL"),
    ({"blocks": ["team-alerts"]}, "is not '<block-type>/<name>'"),
    ({"events": ["success"]}, "notify.events"),
    ({"webhook": ["http://x"]}, "did you mean 'notify.webhooks'"),
])
def test_bad_notify_sections_are_refused(section: dict, says: str) -> None:
    with pytest.raises(ParamsError, match=None) as err:
        _params(section)
    assert says in str(err.value)


def test_message_names_project_stage_reason_and_link() -> None:
    subject, body = notify.message("digits", "validate", "stage validate: exited 1\nwhy\n",
                                   "http://127.0.0.1:4200/runs/flow-run/abc", "run failed")
    assert subject == "Kiln digits: run failed"
    assert body == ("project: digits\nstage: validate\nreason: stage validate: exited 1\nwhy\n"
                    "run: http://127.0.0.1:4200/runs/flow-run/abc")
    _, long = notify.message("p", "s", "x" * 5000, None, "h")
    assert long.count("x") == notify.MAX_REASON and "run: (not run by Prefect)" in long


def test_block_names_are_prefect_slugs() -> None:
    assert notify.block_name("Digits_CNN v2", 1) == "kiln-digits-cnn-v2-webhook-1"
    assert notify.block_name("___", 2) == "kiln-project-webhook-2"


def test_notify_section_is_read_even_when_the_rest_of_the_file_is_wrong(tmp_path: Path) -> None:
    """A typo elsewhere fails the run; its notification must still go out."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["train"]["epoch"] = 3  # the typo
    raw["notify"] = {"webhooks": ["http://127.0.0.1:9/hook"]}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    name, settings = notify.settings_of(tmp_path, None)
    assert name == raw["project"]["name"]
    assert settings.webhooks == ["http://127.0.0.1:9/hook"]


def test_nothing_is_sent_without_receivers_or_for_an_unwanted_event(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[str] = []
    monkeypatch.setattr(notify, "send", lambda *a, **k: sent.append(a[2]) or 1)
    logger = logging.getLogger("test")
    assert notify.notify_failure(tmp_path, _params(), "train", "boom", logger) == 0
    failures_only = _params({"events": ["failure"], "webhooks": ["http://127.0.0.1:9/"]})
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "promotion.json").write_text(
        '{"outcome": "promoted", "reason": "r", "champion_after": "v0002"}')
    ran = [StageOutcome("promote", True, "stale")]
    assert notify.notify_promotion(tmp_path, failures_only, ran, logger) == 0
    both = _params({"webhooks": ["http://127.0.0.1:9/"]})
    assert notify.notify_promotion(tmp_path, both, [StageOutcome("promote", False, "up to date")],
                                   logger) == 0  # promote did not run: no decision this run
    assert notify.notify_promotion(tmp_path, both, ran, logger) == 1
    assert notify.notify_failure(tmp_path, both, "train", "boom", logger) == 1
    assert sent == [f"Kiln {both.project.name}: v0002 promoted",
                    f"Kiln {both.project.name}: run failed at train"]


def test_a_receiver_that_is_down_is_a_warning(monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
    class Down:
        def notify(self, body: str, subject: str | None = None) -> None:
            raise ConnectionError("connection refused")

    monkeypatch.setattr(notify, "_blocks", lambda *_: [Down(), Down()])
    with caplog.at_level(logging.WARNING):
        sent = notify.send("p", NotifyParams(webhooks=["http://127.0.0.1:9/"]), "s", "b",
                           logging.getLogger("test"))
    assert sent == 0
    assert caplog.text.count("notification through Down failed: connection refused") == 2
