"""A stage's progress lines as its task run's progress artifact (flows/stage_progress.py), with
fakes for Prefect's create/update calls; tests/integration/test_stage_progress.py runs it against
the real server. And the runner handing a stage's progress lines over (flows/dvc_stages.py)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from uuid import UUID, uuid4

from flows.dvc_stages import _stream
from flows.stage_progress import StageProgress, artifact_key, describe
from tasks.core.progress import ProgressLine, format_line, parse


class _Api:
    def __init__(self, fail_after: int | None = None) -> None:
        self.calls: list[tuple[str, float, str]] = []
        self.id = uuid4()
        self.fail_after = fail_after

    def _call(self, kind: str, progress: float, description: str) -> UUID:
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise ConnectionError("server gone")
        self.calls.append((kind, progress, description))
        return self.id

    def create(self, *, progress: float, key: str, description: str) -> UUID:
        assert key == "train-progress"
        return self._call("create", progress, description)

    def update(self, artifact_id: UUID, *, progress: float, description: str) -> UUID:
        assert artifact_id == self.id
        return self._call("update", progress, description)


def _line(done: int, total: int | None, detail: str = "", what: str = "train") -> ProgressLine:
    eta = None if total is None else (total - done) * 2.0
    parsed = parse(format_line(what, done, total, "steps", 0.5, eta, detail))
    assert parsed is not None
    return parsed


def test_keys_are_lowercase_words_and_dashes() -> None:
    assert artifact_key("train") == "train-progress"
    assert artifact_key("Train_Big.v2") == "train-big-v2-progress"


def test_the_description_reads_as_a_sentence() -> None:
    assert describe("train", _line(1200, 2000, "epoch 3/5")) == (
        "train: 1200/2000 steps, 0.50 steps/s, ETA 26 min 40 s (epoch 3/5)"
    )
    assert describe("clean", _line(3, None, what="clean.images")) == (
        "clean (clean.images): 3 steps, 0.50 steps/s"
    )
    assert describe("train", _line(10, 10, "done in 20.0s")).endswith("(done in 20.0s)")


def test_first_line_creates_later_lines_update_and_success_is_100() -> None:
    api = _Api()
    stage = StageProgress("train", create=api.create, update=api.update)
    for line in (_line(0, 20), _line(5, 20, "epoch 1/2"), _line(30, None), _line(20, 20)):
        stage(line)
    stage.finish()
    kinds = [(kind, progress) for kind, progress, _ in api.calls]
    assert kinds == [
        ("create", 0),
        ("update", 25),
        ("update", 25),
        ("update", 100),
        ("update", 100),
    ]
    assert api.calls[1][2] == "train: 5/20 steps, 0.50 steps/s, ETA 30 s (epoch 1/2)"
    assert api.calls[-1][2].startswith("train: done (last progress line: train: 20/20")


def test_the_percent_is_the_outermost_running_loop_s() -> None:
    api = _Api()
    stage = StageProgress("train", create=api.create, update=api.update)
    stage(_line(0, 100))
    stage(_line(40, 100))
    stage(_line(0, 2000, what="predict"))  # a long validation pass inside training
    stage(_line(1000, 2000, what="predict"))
    stage(_line(2000, 2000, "done in 20.0s", what="predict"))
    stage(_line(60, 100))
    stage(_line(100, 100, "done in 60.0s"))
    stage(_line(1, 3, what="baselines.fit"))  # after it, the next loop alone
    assert [progress for _, progress, _ in api.calls] == [0, 40, 40, 40, 40, 60, 100, 100 / 3]
    assert api.calls[3][2] == "train (predict): 1000/2000 steps, 0.50 steps/s, ETA 33 min 20 s"


def test_a_crawl_follows_its_pages_not_its_files() -> None:
    api = _Api()
    stage = StageProgress("train", create=api.create, update=api.update)  # (the fake's key)
    stage(_line(0, 200, what="crawl.pages"))
    stage(_line(0, 50, what="crawl.files"))  # files from the first download on
    stage(_line(100, 200, what="crawl.pages"))
    stage(_line(45, 50, what="crawl.files"))
    stage(_line(110, 200, "stopped after 9.0s", what="crawl.pages"))
    assert [progress for _, progress, _ in api.calls] == [0, 0, 50, 50, 90]


def test_a_stage_without_progress_lines_is_created_at_100() -> None:
    api = _Api()
    StageProgress("train", create=api.create, update=api.update).finish()
    assert api.calls == [("create", 100.0, "train: done")]


def test_a_failure_keeps_the_percent_and_says_so() -> None:
    api = _Api()
    stage = StageProgress("train", create=api.create, update=api.update)
    stage(_line(5, 20))
    stage.fail()
    assert api.calls[-1][:2] == ("update", 25.0)
    assert api.calls[-1][2].startswith("train failed at 25 %: train: 5/20 steps")


def test_an_api_error_is_one_warning_and_the_stage_goes_on(caplog) -> None:
    api = _Api(fail_after=1)
    logger = logging.getLogger("tests.stage_progress")
    stage = StageProgress("train", logger, create=api.create, update=api.update)
    with caplog.at_level(logging.WARNING, logger="tests.stage_progress"):
        for done in (0, 5, 10):
            stage(_line(done, 20))
        stage.finish()
    assert [kind for kind, _, _ in api.calls] == ["create"]
    assert [r.getMessage() for r in caplog.records] == [
        "train: progress artifact not updated, and no longer will be this run: server gone"
    ]


class _Quiet(logging.Logger):
    def __init__(self) -> None:
        super().__init__("quiet")
        self.messages: list[str] = []

    def log(self, level: int, msg: object, *args: object, **kwargs: object) -> None:  # noqa: ARG002
        self.messages.append(str(msg))


def test_the_runner_hands_each_progress_line_over_and_logs_it(tmp_path: Path) -> None:
    script = tmp_path / "stage.py"
    script.write_text(
        "import logging\n"
        "from tasks.core.progress import Progress\n"
        "from tasks.core.stage import setup_logging\n"
        "setup_logging()\n"
        "with Progress('train', 3, unit='steps', logger=logging.getLogger('kiln.train'),\n"
        "              every_s=0, tty=False) as bar:\n"
        "    for _ in range(3):\n"
        "        bar.update()\n"
        "print('not progress 1/2 at all', flush=True)\n"
    )
    seen: list[ProgressLine] = []
    logger = _Quiet()
    _stream("train", f"{sys.executable} {script}", tmp_path, logger, seen.append)
    assert [(p.what, p.done, p.total) for p in seen] == [("train", d, 3) for d in (0, 1, 2, 3, 3)]
    assert seen[-1].finished
    assert len(logger.messages) == 6  # the progress lines are logged like any other line
    assert logger.messages[0].startswith("INFO kiln.train: progress train 0/3 steps")
