"""Progress a person can follow: count, rate and ETA of a loop, on a terminal and in logs.

    for row in track(rows, "clean.images", unit="images", logger=log):   # a loop over a sized
        ...                                                                # iterable
    with Progress("train", total=n_steps, unit="steps", logger=log) as bar:   # or by hand
        ...; bar.update()

On a terminal (stderr is a TTY) it is a tqdm bar, and log records print above the bar instead of
through it. Anywhere else (DVC or the Prefect flow capture stderr) it logs through `logging`, at
INFO, in one format the flow parses (`parse`) into a Prefect progress artifact:

    progress <what> <done>/<total> <unit> <rate>/s eta <eta>[ <detail>]
    progress train 1200/2000 steps 3.21/s eta 249s epoch 3/5
    progress crawl.pages 380/? pages 12.40/s eta ?

`total` and `eta` are `?` when unknown; the rate is the average over this run (a resumed count
starts from `initial`), so the ETA includes whatever else the loop does between updates
(validation after each epoch, say). One line when the loop starts, one when it ends (detail
`done in <s>s`, or `stopped after <s>s` when it raised), and in between at most one every
`every_s` (10 s): a line is due when an update finds that long since the last one, and a
heartbeat thread writes the due line when no update comes (a single step longer than 10 s, a
validation pass), so nothing is silent for longer than `every_s` plus the heartbeat's period
(1 s). On a terminal the heartbeat redraws the bar (its elapsed time and rate) instead.

An update is an integer addition, a clock read and a comparison: 0.25 to 0.7 µs in log mode and
0.3 to 0.9 µs with tqdm on 2 busy CPU cores (benchmarks/progress_overhead.py), nothing next to a
training step (the demo's CNN: 20 ms). No torch; tqdm only when installed.

A loop that is usually short (a prediction over a few batches, three baseline fits) passes
`quiet_s`: no line until it has run that long (the first line then, the end line only after one
came; on a terminal, tqdm's `delay`), so that a 20 ms loop adds no two lines to the log
(QUIET_S, 2 s, is the usual choice). A single long call with no steps to count (an ONNX export)
runs inside `working(what, logger)`: a Progress of total 1 whose lines in between say how long it
has been working.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

T = TypeVar("T")

EVERY_S = 10.0  # at most one log line per this many seconds per loop, and at least one
HEARTBEAT_S = 1.0  # how often the heartbeat thread looks, seconds; 0: no thread
CLOCK: Callable[[], float] = time.monotonic  # read when a Progress starts; tests swap it
QUIET_S = 2.0  # `quiet_s` of the loops that are usually short: no line unless they run this long

_LINE = re.compile(
    r"\bprogress (?P<what>\S+) (?P<done>\d+)/(?P<total>\d+|\?) (?P<unit>\S+) "
    r"(?P<rate>\d+(?:\.\d+)?)/s eta (?P<eta>\d+s|\?)(?: (?P<detail>.*))?$"
)


@dataclass(frozen=True)
class ProgressLine:
    """One progress line read back (`parse`)."""

    what: str
    done: int
    total: int | None
    unit: str
    rate: float  # per second
    eta_s: int | None
    detail: str

    @property
    def percent(self) -> float | None:
        """0 to 100, or None when the total is unknown."""
        if not self.total:
            return None if self.total is None else 100.0
        return max(0.0, min(100.0, 100.0 * self.done / self.total))

    @property
    def finished(self) -> bool:
        """The loop's last line (its Progress was closed)."""
        return self.detail.startswith("done in ")


def format_line(  # noqa: PLR0917 (the fields of one line)
    what: str,
    done: int,
    total: int | None,
    unit: str,
    rate: float,
    eta_s: float | None,
    detail: str = "",
) -> str:
    """The one line format; `parse` reads it back."""
    eta = "?" if eta_s is None else f"{max(0, round(eta_s))}s"
    total_text = "?" if total is None else str(total)
    line = f"progress {what} {done}/{total_text} {unit} {rate:.2f}/s eta {eta}"
    return f"{line} {detail}" if detail else line


def parse(text: str) -> ProgressLine | None:
    """The progress line in `text` (a message or a whole log line), or None."""
    if "progress " not in text:  # most lines: no regex
        return None
    match = _LINE.search(text.rstrip())
    if match is None:
        return None
    total, eta = match["total"], match["eta"]
    return ProgressLine(
        what=match["what"],
        done=int(match["done"]),
        total=None if total == "?" else int(total),
        unit=match["unit"],
        rate=float(match["rate"]),
        eta_s=None if eta == "?" else int(eta[:-1]),
        detail=match["detail"] or "",
    )


def _token(text: str) -> str:
    """One word of the line: whitespace would break `parse`."""
    return re.sub(r"\s+", "-", text.strip()) or "-"


def _on_terminal() -> bool:
    """A tqdm bar where a person watches stderr; log lines where DVC or Prefect capture it."""
    return sys.stderr.isatty()


def _tqdm_bar(**kwargs: Any) -> Any:
    try:
        from tqdm import tqdm  # noqa: PLC0415 (optional: log lines without it)
    except ImportError:
        return None
    return tqdm(**kwargs)


class Progress(AbstractContextManager["Progress"]):
    """Count, rate and ETA of one loop (module docstring); `update()` once per item or step.

    `tty`: None decides by stderr; `every_s`, `clock` and `heartbeat_s` (0: no heartbeat thread)
    default to the module's EVERY_S, CLOCK and HEARTBEAT_S, read when the Progress starts.
    `quiet_s` > 0: no line before the loop has run that long (the start line is skipped, the
    first comes at `quiet_s`, the end line only if one came before). `show_elapsed`: the lines
    in between say `working <s>s` (`working`). `detail`: the first `set_detail`, in the start
    line too. Call `close()` (or use `with`) at the end.
    """

    def __init__(
        self,
        what: str,
        total: int | None = None,
        *,
        unit: str = "items",
        initial: int = 0,
        logger: logging.Logger | None = None,
        every_s: float | None = None,
        tty: bool | None = None,
        clock: Callable[[], float] | None = None,
        heartbeat_s: float | None = None,
        quiet_s: float = 0.0,
        show_elapsed: bool = False,
        detail: str = "",
    ) -> None:
        self.what, self.unit, self.total = _token(what), _token(unit), total
        self.done = self._initial = initial
        self.detail = detail
        self._log = logger or logging.getLogger("kiln.progress")
        self._every = EVERY_S if every_s is None else every_s
        self._clock = clock or CLOCK
        self._started = self._last = self._clock()
        self._quiet = max(0.0, quiet_s)
        self._show_elapsed = show_elapsed
        self._spoke = False  # a line was logged: the end line is due too
        self._lock = threading.Lock()
        self._closed = False
        self._bar: Any = None
        self._redirect: Any = None
        self._on = True  # False: nothing to show (logging off for INFO, tqdm disabled)
        if _on_terminal() if tty is None else tty:
            self._start_bar()
        else:
            self._on = self._log.isEnabledFor(logging.INFO)
            self._start_line()
        period = HEARTBEAT_S if heartbeat_s is None else heartbeat_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self._on and period:
            self._thread = threading.Thread(
                target=self._heartbeat, args=(period,), name=f"progress-{self.what}", daemon=True
            )
            self._thread.start()

    def _start_line(self) -> None:
        if not self._on:
            return
        if self._quiet:  # the first line is due once the loop has run quiet_s
            self._last = self._started + self._quiet - self._every
        else:
            self._emit(self._started)

    def _start_bar(self) -> None:
        bar = _tqdm_bar(total=self.total, initial=self._initial, desc=self.what, unit=self.unit,
                        leave=True, dynamic_ncols=True, delay=self._quiet)  # fmt: skip
        if bar is None:  # no tqdm: the log lines, on the terminal too
            self._on = self._log.isEnabledFor(logging.INFO)
            self._start_line()
            return
        self._bar, self._on = bar, not bar.disable
        if self.detail:
            bar.set_postfix_str(self.detail, refresh=False)
        if self._on:
            from tqdm.contrib.logging import logging_redirect_tqdm  # noqa: PLC0415

            root, before = logging.getLogger(), list(logging.getLogger().handlers)
            self._redirect = logging_redirect_tqdm()  # log records above the bar, not through it
            self._redirect.__enter__()
            # tqdm copies the console handler's format and filters, not its level: Scrapy's
            # (LOG_LEVEL INFO) would print every DEBUG record above the bar
            replaced = [h for h in before if h not in root.handlers]
            for handler in (h for h in root.handlers if h not in before):
                handler.setLevel(max((h.level for h in replaced), default=logging.NOTSET))

    # -- counting -----------------------------------------------------------------------------

    def update(self, n: int = 1) -> None:
        """`n` more done; logs a line when one is due (every `every_s`)."""
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif self._on and self._clock() - self._last >= self._every:
            self._emit_if_due()

    def set_detail(self, detail: str) -> None:
        """A short note after the figures (`epoch 3/5`): in each line, or the bar's postfix."""
        self.detail = detail
        if self._bar is not None:
            self._bar.set_postfix_str(detail, refresh=False)

    def rate(self, now: float | None = None) -> float:
        elapsed = (self._clock() if now is None else now) - self._started
        return (self.done - self._initial) / elapsed if elapsed > 0 else 0.0

    def line(self, now: float | None = None, detail: str | None = None) -> str:
        """The progress line as of `now` (the clock's time by default)."""
        rate = self.rate(now)
        eta = None
        if self.total is not None and rate > 0:
            eta = max(0, self.total - self.done) / rate
        elif self.total is not None and self.done >= self.total:
            eta = 0.0
        detail = self.detail if detail is None else detail
        return format_line(self.what, self.done, self.total, self.unit, rate, eta, detail)

    # -- output -------------------------------------------------------------------------------

    def _emit(self, now: float, detail: str | None = None) -> None:
        self._last, self._spoke = now, True
        self._log.info(self.line(now, detail))

    def _emit_if_due(self) -> None:
        with self._lock:  # the heartbeat and the loop's thread: one line, not two
            now = self._clock()
            if not self._closed and now - self._last >= self._every:
                detail = None
                if self._show_elapsed:
                    detail = f"working {now - self._started:.0f}s {self.detail}".rstrip()
                self._emit(now, detail)

    def _heartbeat(self, period: float) -> None:
        while not self._stop.wait(period):
            if self._bar is not None:
                if self._clock() - self._started >= self._quiet:  # tqdm's delay: not shown yet
                    self._bar.refresh()  # the elapsed time and rate move during a long step
            else:
                self._emit_if_due()

    def close(self, *, ok: bool = True) -> None:
        """Stop the heartbeat; the end line (`done in <s>s`, or `stopped after <s>s` where the
        loop raised: ok=False), or close the bar. Idempotent: the first call decides."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._bar is not None:
            self._bar.close()
            if self._redirect is not None:
                self._redirect.__exit__(None, None, None)
        elif self._on and self._spoke:  # quiet_s: no end line to a loop that said nothing
            now = self._clock()
            end = f"{'done in' if ok else 'stopped after'} {now - self._started:.1f}s"
            self._emit(now, f"{end} {self.detail}".rstrip())

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(ok=exc_type is None or issubclass(exc_type, GeneratorExit))


def track(
    iterable: Iterable[T],
    what: str,
    *,
    total: int | None = None,
    unit: str = "items",
    logger: logging.Logger | None = None,
    **kwargs: Any,
) -> Iterator[T]:
    """`for x in track(xs, "clean.images", unit="images", logger=log)`: `tqdm(xs)`'s drop-in.

    `total` defaults to len(iterable) where it has one; other keywords go to `Progress`."""
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    with Progress(what, total, unit=unit, logger=logger, **kwargs) as bar:
        for item in iterable:
            yield item
            bar.update()


@contextmanager
def working(
    what: str, logger: logging.Logger | None = None, *, unit: str = "steps", **kwargs: Any
) -> Iterator[Progress]:
    """`with working("export.onnx", log): blob = to_onnx(...)`: one long call with nothing to
    count, shown as a Progress of total 1 (done when the block ends without raising), whose
    heartbeat logs `working <s>s` every `every_s` meanwhile; other keywords go to `Progress`."""
    with Progress(what, 1, unit=unit, logger=logger, show_elapsed=True, **kwargs) as bar:
        yield bar
        bar.update()
