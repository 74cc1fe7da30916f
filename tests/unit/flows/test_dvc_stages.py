"""The stage runner's reading of dvc.yaml and of a stage's output lines (flows/dvc_stages.py)."""

from __future__ import annotations

import logging

import pytest
import yaml

from flows.dvc_stages import log_line, pipeline, stage_names
from tests.project import REPO


class _Recorder(logging.Logger):
    def __init__(self) -> None:
        super().__init__("recorder")
        self.records: list[tuple[str, str]] = []

    def log(self, level: int, msg: object, *args: object, **kwargs: object) -> None:  # noqa: ARG002
        self.records.append((logging.getLevelName(level), str(msg)))


def _logged(*lines: str) -> list[tuple[str, str]]:
    logger = _Recorder()
    for line in lines:
        log_line(line, logger)
    return logger.records


def test_stage_names_are_dvc_yaml_s_in_order(tmp_path) -> None:
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(
        {"stages": {"b": {"cmd": "x"}, "a": {"cmd": "y"}, "c": {"cmd": "z"}}}, sort_keys=False))
    assert stage_names(tmp_path) == ["b", "a", "c"]


def test_the_project_s_pipeline_starts_with_the_frozen_crawl() -> None:
    stages = pipeline(REPO)
    assert next(iter(stages)) == "crawl"
    assert stages["crawl"]["frozen"] is True
    assert [name for name, spec in stages.items() if spec.get("frozen")] == ["crawl"]


@pytest.mark.parametrize("line", [
    "2026-12-06 16:00:00,123 WARNING kiln.crawl.spider: 3 pages refused",  # the format
    "2026-12-06 16:00:00,123 kiln.crawl.spider WARNING 3 pages refused",  # the older order
    "2026-12-06 16:00:00 [kiln.crawl.spider] WARNING: 3 pages refused",  # Scrapy's
])
def test_a_log_line_keeps_its_level_and_loses_its_timestamp(line: str) -> None:
    ((level, message),) = _logged(line + "\n")
    assert level == "WARNING"
    assert message == line.split(" ", 2)[2]
    assert "3 pages refused" in message


@pytest.mark.parametrize("level", ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"])
def test_every_level_is_read(level: str) -> None:
    line = f"2026-12-06 16:00:00.5 {level} kiln.train: x"
    assert _logged(line) == [(level, f"{level} kiln.train: x")]


def test_other_lines_are_info_once_each() -> None:
    lines = [
        "Traceback (most recent call last):\n",
        '  File "tasks/validate.py", line 3, in main\n',
        "ValueError: WARNING is only a word here\n",
        "epoch 1:  10%|#  | 1/10\repoch 1:  50%|#####  | 5/10\repoch 1: 100%|##########| 10/10\n",
        "2026-12-06 16:00:00,123 kiln.demo_site serving on :8000\n",  # a timestamp, no level
        "\n",
    ]
    assert _logged(*lines) == [
        ("INFO", "Traceback (most recent call last):"),
        ("INFO", '  File "tasks/validate.py", line 3, in main'),
        ("INFO", "ValueError: WARNING is only a word here"),
        ("INFO", "epoch 1: 100%|##########| 10/10"),  # only the progress bar's last state
        ("INFO", "kiln.demo_site serving on :8000"),
    ]


def test_dvc_git_hints_are_dropped() -> None:
    assert _logged("To track the changes with git, run:\n", "\tgit add dvc.lock\n",
                   "To enable auto staging, run:\n", "\tdvc config core.autostage true\n") == []
