"""Progress lines (tasks/core/progress.py): the one format, read back; at most one line per
`every_s` and at least one (the heartbeat); a tqdm bar on a terminal instead. A fake clock stands
in for time, except where the heartbeat thread itself is under test."""

from __future__ import annotations

import io
import logging
import sys
import threading
import time

import pytest

from tasks.core import progress
from tasks.core.progress import Progress, ProgressLine, format_line, parse, track


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class _Lines(logging.Handler):
    """The progress lines logged, each with the fake time it was logged at."""

    def __init__(self, clock: _Clock | None = None) -> None:
        super().__init__()
        self.clock = clock
        self.lines: list[tuple[float, ProgressLine]] = []

    def emit(self, record: logging.LogRecord) -> None:
        line = parse(record.getMessage())
        assert line is not None, record.getMessage()  # nothing else is logged here
        self.lines.append((self.clock() if self.clock else time.monotonic(), line))


@pytest.fixture
def logger() -> logging.Logger:
    log = logging.getLogger("tests.progress")
    log.setLevel(logging.INFO)
    log.propagate = False
    yield log
    log.handlers.clear()


def test_the_line_format_reads_back() -> None:
    text = format_line("train", 1200, 2000, "steps", 3.2149, 249.4, "epoch 3/5")
    assert text == "progress train 1200/2000 steps 3.21/s eta 249s epoch 3/5"
    logged = f"2026-12-06 16:00:00,123 INFO kiln.train: {text}\n"
    assert parse(logged) == ProgressLine("train", 1200, 2000, "steps", 3.21, 249, "epoch 3/5")
    assert parse(logged).percent == 60.0
    unknown = parse(format_line("crawl.pages", 380, None, "pages", 12.4, None))
    assert (unknown.total, unknown.eta_s, unknown.percent) == (None, None, None)
    assert parse("INFO kiln.train: epoch 3/5: train loss 0.2") is None
    assert parse("no progress here") is None


def test_one_line_per_every_s_with_start_and_end(logger: logging.Logger) -> None:
    clock = _Clock()
    logger.addHandler(handler := _Lines(clock))
    bar = Progress(
        "clean images", 100, unit="images", logger=logger, tty=False, clock=clock, heartbeat_s=0
    )
    for _ in range(100):
        clock.now += 0.7  # a 0.7 s step: a line every 15 steps (10.5 s)
        bar.update()
    bar.close()
    times = [t for t, _ in handler.lines]
    lines = [line for _, line in handler.lines]
    assert lines[0] == ProgressLine("clean-images", 0, 100, "images", 0.0, None, "")
    assert [line.done for line in lines] == [0, 15, 30, 45, 60, 75, 90, 100]
    assert all(10 <= b - a < 10.7 for a, b in zip(times[:-2], times[1:-1], strict=True))
    assert lines[3].rate == pytest.approx(1 / 0.7, abs=0.01)
    assert lines[3].eta_s == pytest.approx(55 * 0.7, abs=1)
    assert lines[-1].finished and lines[-1].detail == "done in 70.0s"
    assert lines[-1].eta_s == 0


def test_resumed_rate_counts_this_run_only_and_failure_is_named(logger: logging.Logger) -> None:
    clock = _Clock()
    logger.addHandler(handler := _Lines(clock))
    with pytest.raises(KeyboardInterrupt):  # noqa: PT012 (the loop is what raises)
        with Progress(
            "train",
            40,
            unit="steps",
            initial=20,
            logger=logger,
            tty=False,
            clock=clock,
            heartbeat_s=0,
        ) as bar:
            bar.set_detail("epoch 3/4")
            for _ in range(10):
                clock.now += 2.0
                bar.update()
            raise KeyboardInterrupt
    start, *_, end = (line for _, line in handler.lines)
    assert (start.done, start.eta_s) == (20, None)
    assert (end.done, end.rate, end.detail) == (30, 0.5, "stopped after 20.0s epoch 3/4")
    assert not end.finished


def test_the_heartbeat_speaks_during_a_long_step(logger: logging.Logger) -> None:
    logger.addHandler(handler := _Lines())
    with Progress(
        "train", 2, unit="steps", logger=logger, tty=False, every_s=0.05, heartbeat_s=0.01
    ) as bar:
        time.sleep(0.5)  # one step 10 times every_s: the heartbeat must speak
        bar.update()
    during = [line for _, line in handler.lines[1:-1] if line.done == 0]
    assert len(during) >= 3, handler.lines
    times = [t for t, _ in handler.lines]
    assert max(b - a for a, b in zip(times, times[1:], strict=False)) < 0.35  # slack: a busy CPU
    assert not [t for t in threading.enumerate() if t.name.startswith("progress-")]


def test_track_wraps_a_sized_iterable(logger: logging.Logger) -> None:
    clock = _Clock()
    logger.addHandler(handler := _Lines(clock))
    items = []
    for item in track(
        ["a", "b", "c"],
        "export",
        unit="files",
        logger=logger,
        tty=False,
        clock=clock,
        heartbeat_s=0,
    ):
        clock.now += 1
        items.append(item)
    assert items == ["a", "b", "c"]
    end = handler.lines[-1][1]
    assert (end.done, end.total, end.unit, end.finished) == (3, 3, "files", True)


def test_nothing_is_done_when_info_is_off(logger: logging.Logger) -> None:
    logger.setLevel(logging.WARNING)
    logger.addHandler(handler := _Lines())
    with Progress("train", 3, logger=logger, tty=False) as bar:
        bar.update(3)
    assert handler.lines == []
    assert bar._thread is None  # noqa: SLF001 (no heartbeat for nobody)


def test_a_terminal_gets_a_tqdm_bar_not_log_lines(logger, capsys, monkeypatch) -> None:
    monkeypatch.setattr(progress, "_on_terminal", lambda: True)
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    logger.addHandler(handler := _Lines())
    with Progress("train", 4, unit="steps", logger=logger, heartbeat_s=0) as bar:
        bar.set_detail("epoch 1/2")
        bar.update(4)
    assert handler.lines == []
    bar_text = capsys.readouterr().err
    assert "train" in bar_text and "4/4" in bar_text and "steps/s" in bar_text
    assert "epoch 1/2" in bar_text


def test_a_quiet_loop_that_is_short_logs_nothing(logger: logging.Logger) -> None:
    clock = _Clock()
    logger.addHandler(handler := _Lines(clock))
    with Progress("predict", 4, logger=logger, tty=False, clock=clock, heartbeat_s=0,
                  quiet_s=2.0) as bar:  # fmt: skip
        for _ in range(4):
            clock.now += 0.005  # 20 ms in all: a start and an end line would be noise
            bar.update()
    assert handler.lines == []


def test_a_quiet_loop_that_runs_long_speaks_from_quiet_s_on(logger: logging.Logger) -> None:
    clock = _Clock()
    logger.addHandler(handler := _Lines(clock))
    with Progress("predict", 30, logger=logger, tty=False, clock=clock, heartbeat_s=0,
                  quiet_s=2.0) as bar:  # fmt: skip
        for _ in range(30):
            clock.now += 0.5
            bar.update()
    times = [t - 1000.0 for t, _ in handler.lines]
    lines = [line for _, line in handler.lines]
    assert times == [2.0, 12.0, 15.0]  # at quiet_s, then every 10 s, then the end
    assert [line.done for line in lines] == [4, 24, 30]
    assert lines[0].rate == 2.0 and lines[0].eta_s == 13
    assert lines[-1].finished and lines[-1].detail == "done in 15.0s"


def test_a_quiet_loop_s_heartbeat_speaks_during_one_long_step(logger: logging.Logger) -> None:
    logger.addHandler(handler := _Lines())
    with Progress("predict", 2, logger=logger, tty=False, every_s=0.2, heartbeat_s=0.01,
                  quiet_s=0.05) as bar:  # fmt: skip
        time.sleep(0.3)  # one batch longer than quiet_s: the heartbeat says so
        bar.update(2)
    lines = [line for _, line in handler.lines]
    assert lines[0].done == 0 and not lines[0].finished
    assert lines[-1].finished and lines[-1].done == 2


def test_working_shows_elapsed_time_of_one_long_call(logger: logging.Logger) -> None:
    clock = _Clock()
    logger.addHandler(handler := _Lines(clock))
    with progress.working("export.onnx", logger, tty=False, clock=clock, heartbeat_s=0) as bar:
        for _ in range(25):
            clock.now += 1.0
            bar._emit_if_due()  # noqa: SLF001 (what the heartbeat thread does each second)
    lines = [line for _, line in handler.lines]
    assert [(line.done, line.total, line.unit) for line in lines] == [(0, 1, "steps")] * 3 + [
        (1, 1, "steps")
    ]
    assert [line.detail for line in lines] == ["", "working 10s", "working 20s", "done in 25.0s"]
    assert lines[-1].finished


def test_working_that_raises_is_stopped_not_done(logger: logging.Logger) -> None:
    clock = _Clock()
    logger.addHandler(handler := _Lines(clock))
    with (
        pytest.raises(RuntimeError),
        progress.working(  # noqa: PT012
            "export.onnx", logger, tty=False, clock=clock, heartbeat_s=0
        ),
    ):
        clock.now += 3
        raise RuntimeError("parity")
    end = handler.lines[-1][1]
    assert (end.done, end.detail, end.finished) == (0, "stopped after 3.0s", False)


def test_a_quiet_bar_on_a_terminal_waits_too(logger, capsys, monkeypatch) -> None:
    monkeypatch.setattr(progress, "_on_terminal", lambda: True)
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    with Progress("predict", 4, logger=logger, heartbeat_s=0, quiet_s=60) as bar:
        bar.update(4)
    assert "predict" not in capsys.readouterr().err


def test_a_detail_given_at_the_start_is_in_the_start_line(logger: logging.Logger) -> None:
    clock = _Clock()
    logger.addHandler(handler := _Lines(clock))
    with Progress("crawl.pages", 100, unit="pages", logger=logger, tty=False, clock=clock,
                  heartbeat_s=0, detail="limit crawl.max_pages") as bar:  # fmt: skip
        bar.update()
    assert [line.detail for _, line in handler.lines] == [
        "limit crawl.max_pages",
        "done in 0.0s limit crawl.max_pages",
    ]


def test_a_bar_keeps_the_console_handler_s_level(monkeypatch) -> None:
    monkeypatch.setattr(progress, "_on_terminal", lambda: True)
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    root, stream = logging.getLogger(), io.StringIO()
    console = logging.StreamHandler(sys.stderr)  # Scrapy's: LOG_LEVEL on the handler
    console.setLevel(logging.INFO)
    monkeypatch.setattr(root, "handlers", [console])
    monkeypatch.setattr(root, "level", logging.DEBUG)
    with Progress("crawl.pages", 4, heartbeat_s=0) as bar:
        (tqdm_handler,) = root.handlers
        assert tqdm_handler is not console and tqdm_handler.level == logging.INFO
        tqdm_handler.stream = stream
        logging.getLogger("scrapy.core.engine").debug("Crawled (200) <GET http://x/>")
        logging.getLogger("scrapy.core.engine").info("Spider opened")
        bar.update(4)
    assert root.handlers == [console]
    assert "Spider opened" in stream.getvalue() and "Crawled" not in stream.getvalue()
