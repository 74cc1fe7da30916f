"""Guards around a flow run: one run per project at a time; the demo site only when needed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from flows.run_guard import RunInProgress, points_at_demo_site, single_run_lock
from tasks.core.params import parse_params
from tests.project import REPO


def test_a_second_run_is_refused_while_the_first_holds_the_lock(tmp_path: Path) -> None:
    with single_run_lock(tmp_path):
        with pytest.raises(RunInProgress, match=r"another refresh-and-retrain run \(pid \d+\)"):
            with single_run_lock(tmp_path):
                pass
    with single_run_lock(tmp_path):  # released after the first run ends
        pass


def test_demo_site_is_recognised_only_on_its_host_and_port() -> None:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    assert points_at_demo_site(parse_params(raw))
    raw["crawl"]["start_urls"] = ["http://127.0.0.1:9/"]
    assert not points_at_demo_site(parse_params(raw))
    raw["crawl"]["start_urls"] = ["https://example.org/"]
    assert not points_at_demo_site(parse_params(raw))

