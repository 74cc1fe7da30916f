"""Notifications (flows/notify.py) as a user gets them: `kiln run` against a real Prefect server,
params.yaml's `notify.webhooks` pointing at a webhook receiver on loopback.

One project, two runs: the first fails at validate (validate.min_rows above what the tiny demo
site holds), the second (min_rows lowered) promotes its model. Each sends one JSON POST through
the Custom Webhook block Kiln saved on the server, naming the project, the stage, the reason and
the flow run's page in the UI.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flows.notify import block_name
from tests.project import (
    flow_run_id,
    free_port,
    make_project,
    merge_params,
    prefect_api,
    run,
    tiny_demo_overrides,
    write_params,
)
from tests.webhook import webhook_receiver

pytestmark = pytest.mark.e2e
FLOORS = {"promote": {"floors": {"accuracy": 0.3, "macro_f1": 0.0}, "baseline_gate": False}}
PROJECT = "notify-demo"


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    with webhook_receiver() as found:
        yield found


def _kiln_run(project: Path, api_url: str):  # noqa: ANN202
    return run([sys.executable, "-m", "flows.cli", "run", "--project", str(project)],
               project, check=False, extra_env={"PREFECT_API_URL": api_url})


def test_failure_and_promotion_are_notified(tmp_path: Path, prefect_server, receiver) -> None:
    url, bodies = receiver
    api, ui = prefect_server.api_url, prefect_server.ui_url
    overrides = merge_params(tiny_demo_overrides(free_port()), {
        **FLOORS, "project": {"name": PROJECT},
        "validate": {"min_rows": 5000},  # the tiny site has 150 items: validate fails
        "notify": {"webhooks": [url]},
    })
    project = make_project(tmp_path, overrides)

    # 1. A failed run: the stage, the validate error line and the run's page.
    failed = _kiln_run(project, api)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    run_id = flow_run_id(failed.stdout)
    assert prefect_api(api, f"/flow_runs/{run_id}")["state"]["type"] == "FAILED"
    assert len(bodies) == 1, bodies
    subject, body = bodies[0]["subject"], bodies[0]["body"]
    assert subject == f"Kiln {PROJECT}: run failed at validate"
    assert f"project: {PROJECT}\nstage: validate\n" in body
    assert "reason: stage validate: `" in body and "exited with status" in body
    assert "rows < min_rows 5000" in body  # the stage's own error line
    assert f"run: {ui}/runs/flow-run/{run_id}" in body
    assert bodies[0]["text"] == f"{subject}\n{body}"  # what Slack/Mattermost hooks show
    saved = prefect_api(api, "/block_documents/filter", {
        "block_documents": {"name": {"any_": [block_name(PROJECT, 1)]}}})
    assert [b["block_type"]["slug"] for b in saved] == ["custom-webhook"], saved

    # 2. A run that promotes: the promote stage, the decision's reason, the run's page.
    write_params(project, {"validate": {"min_rows": 60}})
    promoted = _kiln_run(project, api)
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    run_id = flow_run_id(promoted.stdout)
    report = json.loads((project / "reports" / "promotion.json").read_text())
    assert report["outcome"] == "promoted", report
    assert len(bodies) == 2, bodies
    subject, body = bodies[1]["subject"], bodies[1]["body"]
    assert subject == f"Kiln {PROJECT}: v0001 promoted"
    assert body == (f"project: {PROJECT}\nstage: promote\nreason: {report['reason']}\n"
                    f"run: {ui}/runs/flow-run/{run_id}")
    assert "notified 1 receiver(s)" in promoted.stderr
