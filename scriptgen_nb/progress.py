"""Progress: one core folding the engine's events into a snapshot, and thin frontends drawing it.

The tqdm model (DESIGN, house style): `ProgressState` is an engine listener that keeps the
counters and publishes a read-only `ProgressSnapshot`; `format_line` / `format_summary` turn a
snapshot into text; frontends (`TextProgress` here, `jupyter.panel.ProgressPanel` for notebooks)
only draw snapshots, throttled by their shared base `ProgressFrontend`. `choose_progress` is the
`progress="auto"|"widget"|"text"|None` chooser. What is not an engine event but the user must
see is told to the frontend directly: the call log's file held by another process
(`log_waiting`, from `store/lock_wait.py`'s watch).

Events arrive on the engine's thread while snapshots are read from another (a widget, a ticker),
so the state is guarded by one lock. Time comes from an injected clock, so tests need no sleeps.
This module imports no ipywidgets and no IPython (the panel is imported lazily, only when asked
for), and nothing in `engine/` imports it.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, TextIO, TypedDict, Unpack

from .engine.errors import ConfigurationError
from .engine.pricing import CostTotal
from .engine.runner import CancelToken
from .engine.values import (
    AttemptFinished,
    BatchFinished,
    BatchStarted,
    Event,
    LimitLearned,
    ModelState,
    ModelStateChanged,
    QuotaShared,
    RequestFinished,
    Result,
    Usage,
    stopped_by_budget,
)

Clock = Callable[[], float]
Status = Literal["waiting", "running", "finished", "cancelled", "failed"]
PROGRESS_MODES: tuple[str, ...] = ("auto", "widget", "text")

MAX_ERRORS = 5
RATE_WINDOW_S = 30.0  # the ETA follows the recent pace, not the average since the start
MAX_MESSAGE = 160


@dataclass(frozen=True, slots=True)
class ModelRow:
    """One model of the batch: its state now, and its share of the attempts so far."""

    name: str
    state: ModelState
    seconds_left: float | None  # until a parked / cooling / exhausted model is usable again
    reason: str  # why it is in that state ("" when ready)
    attempts: int
    share: float  # this model's attempts / all attempts (0.0 before any)
    # Working limits the engine changed (learned, or started from as remembered by an earlier
    # batch at this quota identity): the latest per metric.
    learned: tuple[LimitLearned, ...] = ()


@dataclass(frozen=True, slots=True)
class ErrorRow:
    """One failed request, as the panel lists it."""

    request_id: str
    model: str | None
    kind: str
    message: str  # the first line only, shortened


@dataclass(frozen=True, slots=True)
class ProgressSnapshot:
    """What a batch looks like at one moment; frontends draw this and nothing else."""

    batch_id: str | None
    status: Status
    total: int | None  # None while requests come from a generator of unknown length
    done: int
    succeeded: int
    failed: int
    not_run: int
    cached: int  # of the succeeded, served from the call log instead of sent
    retries: int  # attempts that failed and will be tried again
    attempts: int
    models: tuple[ModelRow, ...]
    requests_per_min: float | None  # answered requests over the elapsed time
    usage: Usage
    cost: CostTotal  # of the finished requests; counts those whose price is unknown
    eta_s: float | None
    elapsed_s: float
    errors: tuple[ErrorRow, ...]  # the latest MAX_ERRORS, oldest first
    # What to know about the ladder before it ran: a retired model named, an unknown price, a
    # model left out because the endpoint does not list it.
    notices: tuple[str, ...] = ()
    # The call log's file is held by another process and the batch waits for it (None: not).
    log_wait: str | None = None
    # Other processes pacing the same quota through the shared ledger: now, and at most.
    sharing: int = 0
    most_sharing: int = 0
    # Why admission stopped at the batch's budget (None: it did not).
    budget_stop: str | None = None


@dataclass(slots=True)
class _ModelTrack:
    state: ModelState = "ready"
    until: float | None = None  # clock time when the state ends by itself
    reason: str = ""
    attempts: int = 0
    learned: dict[str, LimitLearned] = field(default_factory=dict)  # by metric


class ProgressState:
    """An engine listener folding events into counters; `snapshot()` reads them (thread-safe).

    One instance follows one batch; `total`, when the caller knows it, shows before the start.
    Cost and tokens are summed from finished results, so a request's retries count once it
    ends; the requests-per-minute and the ETA count answered requests only (cached and
    never-sent ones end instantly and would inflate the pace).
    """

    def __init__(self, clock: Clock = time.monotonic, total: int | None = None) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._batch_id: str | None = None
        self._notices: tuple[str, ...] = ()
        self._status: Status = "waiting"
        self._total = total  # known before the start for a list, so the first view says 0/N
        self._started_at: float | None = None
        self._finished_at: float | None = None
        self._succeeded = self._failed = self._not_run = self._cached = 0
        self._answered = self._retries = self._attempts = 0
        self._models: dict[str, _ModelTrack] = {}
        self._usage = Usage()
        self._cost = CostTotal()
        self._recent: deque[float] = deque()  # clock times of recent answered requests
        self._errors: deque[ErrorRow] = deque(maxlen=MAX_ERRORS)
        self._log_wait: str | None = None
        self._sharing = self._most_sharing = 0
        self._budget_stop: str | None = None

    def log_waiting(self, message: str | None) -> None:
        """The call log is held by another process and the batch waits (None: no longer)."""
        with self._lock:
            self._log_wait = message

    def __call__(self, event: Event) -> None:
        now = self._clock()
        with self._lock:
            match event:
                case BatchStarted():
                    self._batch_id = event.batch_id
                    self._notices = event.notices
                    self._total = event.total
                    self._status = "running"
                    self._started_at = now
                    for name in event.models:
                        self._model(name)
                case AttemptFinished(attempt=attempt):
                    self._attempts += 1
                    self._retries += event.will_retry
                    self._model(attempt.model).attempts += 1
                case ModelStateChanged():
                    track = self._model(event.model)
                    track.state = event.state
                    track.reason = event.reason
                    track.until = None if event.until_s is None else now + event.until_s
                case LimitLearned():
                    self._model(event.model).learned[event.metric] = event
                case QuotaShared(failed=None):
                    self._sharing = event.processes
                    self._most_sharing = max(self._most_sharing, event.processes)
                case QuotaShared(failed=str() as failed):
                    self._sharing = 0
                    self._notices = (*self._notices, failed)
                case RequestFinished(result=result):
                    self._finished(result, now)
                case BatchFinished():
                    self._status = event.status
                    self._total = event.total  # now known even for a generator
                    self._finished_at = now

    def _finished(self, result: Result, now: float) -> None:
        kind = result.error.kind if result.error is not None else None
        self._usage = self._usage + result.usage
        self._cost = self._cost.add(result.cost_usd)
        self._cached += result.cached
        if result.success:
            self._succeeded += 1
        elif kind == "not_run":
            self._not_run += 1
            if result.error is not None and stopped_by_budget(result.error):
                self._budget_stop = result.error.message
        else:
            self._failed += 1
        if result.error is not None and kind != "not_run":
            # Not-run requests are counted, not listed: a cancel would flood the list.
            message = _first_line(result.error.message)
            self._errors.append(ErrorRow(result.id, result.model, result.error.kind, message))
        if not result.cached and kind != "not_run":
            self._answered += 1
            self._recent.append(now)
            self._forget_before(now)

    def _forget_before(self, now: float) -> None:
        while self._recent and self._recent[0] <= now - RATE_WINDOW_S:
            self._recent.popleft()

    def _model(self, name: str) -> _ModelTrack:
        return self._models.setdefault(name, _ModelTrack())

    def snapshot(self) -> ProgressSnapshot:
        now = self._clock()
        with self._lock:
            end = self._finished_at if self._finished_at is not None else now
            elapsed = 0.0 if self._started_at is None else max(0.0, end - self._started_at)
            done = self._succeeded + self._failed + self._not_run
            return ProgressSnapshot(
                batch_id=self._batch_id,
                status=self._status,
                total=self._total,
                done=done,
                succeeded=self._succeeded,
                failed=self._failed,
                not_run=self._not_run,
                cached=self._cached,
                retries=self._retries,
                attempts=self._attempts,
                models=tuple(self._rows(now)),
                requests_per_min=self._answered / elapsed * 60 if elapsed > 0 else None,
                usage=self._usage,
                cost=self._cost,
                eta_s=self._eta(now, elapsed, done),
                elapsed_s=elapsed,
                errors=tuple(self._errors),
                notices=self._notices,
                log_wait=self._log_wait,
                sharing=self._sharing,
                most_sharing=self._most_sharing,
                budget_stop=self._budget_stop,
            )

    def _rows(self, now: float) -> list[ModelRow]:
        rows = []
        for name, track in self._models.items():
            left = None if track.until is None else track.until - now
            # The engine announces when a model is parked, not when it is free again.
            free = track.state == "ready" or (left is not None and left <= 0)
            share = track.attempts / self._attempts if self._attempts else 0.0
            learned = tuple(track.learned.values())
            if free:
                rows.append(ModelRow(name, "ready", None, "", track.attempts, share, learned))
            else:
                rows.append(
                    ModelRow(name, track.state, left, track.reason, track.attempts, share, learned)
                )
        return rows

    def _eta(self, now: float, elapsed: float, done: int) -> float | None:
        if self._status != "running" or self._total is None:
            return None
        remaining = self._total - done
        if remaining <= 0:
            return 0.0
        self._forget_before(now)
        span = min(RATE_WINDOW_S, elapsed)
        if not self._recent or span <= 0:
            return None
        return remaining / (len(self._recent) / span)


def _first_line(message: str) -> str:
    line = message.strip().split("\n", 1)[0]
    return line if len(line) <= MAX_MESSAGE else line[: MAX_MESSAGE - 1] + "…"


# --- text --------------------------------------------------------------------------------------


def format_duration(seconds: float, *, tenths: bool = True) -> str:
    """`7.4s` (or `8s` without tenths), `2m05s`, `1h02m05s`: always ending in `s`.

    One shape for every duration, so notebooks can sanitize them with one pattern.
    """
    if seconds < 60:
        return f"{seconds:.1f}s" if tenths else f"{math.ceil(seconds)}s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def count_parts(snapshot: ProgressSnapshot) -> list[str]:
    """`37/40 done`, `35 ok`, (`3 cached`), `1 failed`, `1 not run`, `2 retries`."""
    s = snapshot
    parts = [f"{s.done}/{s.total} done" if s.total is not None else f"{s.done} done"]
    parts.append(f"{s.succeeded} ok")
    if s.cached:
        parts.append(f"{s.cached} cached")
    parts += [
        f"{s.failed} failed",
        f"{s.not_run} not run",
        f"{s.retries} {'retry' if s.retries == 1 else 'retries'}",
    ]
    return parts


def pace_parts(snapshot: ProgressSnapshot) -> list[str]:
    """`312 req/min`, `2 other processes using this quota` (the shared quota ledger),
    `$0.0123` (or `at least $... (N requests of unknown price)`, `cost unknown`), `ETA 4s`;
    the rate and the ETA only once they are known."""
    parts = []
    if snapshot.requests_per_min is not None:
        parts.append(f"{snapshot.requests_per_min:,.0f} req/min")
    if snapshot.sharing:
        parts.append(sharing_text(snapshot.sharing))
    parts.append(str(snapshot.cost))
    if snapshot.eta_s is not None:
        parts.append(f"ETA {format_duration(snapshot.eta_s, tenths=False)}")
    return parts


def processes(count: int) -> str:
    """`1 other process`, `2 other processes`."""
    return f"{count} other process{'' if count == 1 else 'es'}"


def sharing_text(count: int) -> str:
    """`2 other processes using this quota`: pacing it with this batch (the shared ledger)."""
    return f"{processes(count)} using this quota"


# How a working limit came to be, in words (engine/values.py `LimitSource`).
LIMIT_SOURCES: dict[str, str] = {
    "stated": "stated by the service",
    "message": "stated in the 429's message",
    "lowered": "lowered: 429s without a figure",
    "recovered": "recovered: no more 429s",
    "raised": "raised: discovery",
    "remembered": "remembered",
    "shared": "learned by another process",
}


def limit_source(source: str | None) -> str:
    """`stated by the service`, ...: a source in words ("learned" when it is not known, as in
    call logs from before sources were kept)."""
    return LIMIT_SOURCES.get(source or "", "learned")


def format_learned(limit: LimitLearned) -> str:
    """`rpm 150 (stated by the service; catalogue 5)`: a working limit and where it came from."""
    configured = "none" if limit.configured is None else f"{limit.configured:,}"
    return (
        f"{limit.metric} {limit.learned:,} ({limit_source(limit.source)}; catalogue {configured})"
    )


def learned_parts(snapshot: ProgressSnapshot) -> list[str]:
    """`gemini-3.8-flash: rpm 40 (raised: discovery; catalogue 5)`, one per model and metric."""
    return [f"{m.name}: {format_learned(limit)}" for m in snapshot.models for limit in m.learned]


def format_line(snapshot: ProgressSnapshot) -> str:
    """The one-line live view: what the terminal bar draws and the panel's `text/plain`."""
    parts = count_parts(snapshot) + pace_parts(snapshot) + learned_parts(snapshot)
    if snapshot.status not in ("waiting", "running"):
        parts.append(snapshot.status)
    if snapshot.log_wait is not None:
        parts.append(snapshot.log_wait)
    return "scriptgen batch: " + " · ".join(parts)


def format_summary(snapshot: ProgressSnapshot) -> str:
    """The one-line final summary, printed once the batch has ended."""
    s = snapshot
    name = f"scriptgen batch {s.batch_id}" if s.batch_id else "scriptgen batch"
    figures = [*count_parts(s), f"{s.usage.total:,} tokens"]
    if s.most_sharing:
        figures.append(f"the quota shared with {processes(s.most_sharing)}")
    learned = "".join(f"; {part}" for part in learned_parts(s))
    notices = "".join(f"\nnote: {notice}" for notice in s.notices)
    budget = "" if s.budget_stop is None else f"\nstopped at its budget: {s.budget_stop}"
    return (
        f"{name} {s.status}: {', '.join(figures)}, {s.cost} "
        f"in {format_duration(s.elapsed_s)}{learned}{budget}{notices}"
    )


# --- frontends ---------------------------------------------------------------------------------


class FrontendOptions(TypedDict, total=False):
    """`ProgressFrontend`'s keyword arguments, which every frontend passes on."""

    total: int | None
    clock: Clock
    min_interval_s: float
    refresh_s: float | None


class ProgressFrontend:
    """A listener that keeps a `ProgressState` and draws its snapshot, throttled.

    Draws happen on the thread that delivers the event, at most once per `min_interval_s`
    whatever the event rate; the final state (on `BatchFinished`) is always drawn. While the
    batch runs, a ticker thread redraws every `refresh_s`, so countdowns tick and the last
    throttled change shows up even when no event comes (all models parked); `None` turns it
    off (tests). `show()` and `close()` are called by the caller's thread around the run.
    """

    def __init__(
        self,
        *,
        total: int | None = None,
        clock: Clock = time.monotonic,
        min_interval_s: float = 0.1,
        refresh_s: float | None = 1.0,
    ) -> None:
        self.state = ProgressState(clock, total)
        self._clock = clock
        self._min_interval_s = min_interval_s
        self._refresh_s = refresh_s
        self._draw_lock = threading.Lock()  # one writer at a time: engine, ticker, a click
        self._drawn_at: float | None = None
        self._final_drawn = False
        self._ended = threading.Event()
        self._ticker: threading.Thread | None = None

    def __call__(self, event: Event) -> None:
        self.state(event)
        if isinstance(event, BatchFinished):
            self._ended.set()
            self.redraw(final=True)
            return
        if isinstance(event, BatchStarted) and self._refresh_s is not None:
            self._ticker = threading.Thread(
                target=self._tick, name="scriptgen-progress", daemon=True
            )
            self._ticker.start()
        self.redraw()

    def log_waiting(self, message: str | None) -> None:
        """The call log's file is held by another process and the batch waits for it (None:
        it is free again), from whichever thread waits: drawn at once in the live view, or,
        once the final state is drawn (the batch's last rows wait), by `draw_log_wait`."""
        self.state.log_waiting(message)
        with self._draw_lock:
            if self._final_drawn:
                self.draw_log_wait(message)
            else:
                self._draw(self._clock(), final=False)

    def redraw(self, *, final: bool = False, force: bool = False) -> None:
        """Draw the current snapshot unless one was drawn less than `min_interval_s` ago."""
        now = self._clock()
        with self._draw_lock:
            if self._final_drawn:
                return
            recent = self._drawn_at is not None and now - self._drawn_at < self._min_interval_s
            if recent and not (final or force):
                return
            self._draw(now, final=final)

    def _draw(self, now: float, *, final: bool) -> None:
        """Draw the snapshot now; call with the draw lock held."""
        self._drawn_at = now
        self._final_drawn = final
        self.draw(self.state.snapshot(), final=final)

    def _tick(self) -> None:
        assert self._refresh_s is not None
        while not self._ended.wait(self._refresh_s):
            self.redraw()

    def draw(self, snapshot: ProgressSnapshot, *, final: bool) -> None:
        """Show `snapshot`; `final` is the batch's last state. Called under the draw lock."""
        raise NotImplementedError

    def draw_log_wait(self, message: str | None) -> None:
        """Show a wait for the call log that comes after the final state (None: it ended).
        Called under the draw lock."""
        raise NotImplementedError

    def show(self) -> None:
        """Put the view on screen (from the caller's thread, before the batch starts)."""

    def close(self) -> None:
        """After the batch (from the caller's thread): stop the ticker."""
        self._ended.set()
        if self._ticker is not None:
            self._ticker.join()


class TextProgress(ProgressFrontend):
    """The terminal frontend: `format_line` redrawn in place with `\\r`, then the summary."""

    def __init__(self, stream: TextIO | None = None, **options: Unpack[FrontendOptions]) -> None:
        super().__init__(**options)
        self.stream = stream if stream is not None else sys.stderr
        self._width = 0

    def draw(self, snapshot: ProgressSnapshot, *, final: bool) -> None:
        text = format_summary(snapshot) if final else format_line(snapshot)
        # Blanks over the tail of a longer previous line, which `\r` alone leaves behind.
        self.stream.write("\r" + text.ljust(self._width) + ("\n" if final else ""))
        self.stream.flush()
        self._width = len(text)

    def draw_log_wait(self, message: str | None) -> None:
        write_log_wait(self.stream, message)


def write_log_wait(stream: TextIO, message: str | None) -> None:
    """A wait for the call log after a text frontend's summary: a line of its own (its end
    needs none: the call returns or raises next)."""
    if message is not None:
        print(f"scriptgen: {message}", file=stream, flush=True)


def choose_progress(
    mode: str | None, cancel: CancelToken | None = None, *, total: int | None = None
) -> ProgressFrontend | None:
    """The frontend for `progress=`: "auto", "widget", "text", or None for none.

    "auto" picks the widget inside a Jupyter kernel (as tqdm.autonotebook decides), else the
    text bar when stderr is a terminal, else nothing. `cancel` is what the panel's Cancel
    button cancels; `total` is the number of requests when known before the start.
    """
    if mode is None:
        return None
    if mode not in PROGRESS_MODES:
        raise ConfigurationError(
            f"progress={mode!r}: use 'auto' (a panel in Jupyter, a text bar in a terminal), "
            "'widget' (the ipywidgets panel), 'text' (a bar on stderr) or None (no progress)."
        )
    if mode == "text":
        return TextProgress(total=total)
    if mode == "widget":
        return _panel(cancel, total)
    if in_jupyter_kernel():
        try:
            return _panel(cancel, total)
        except ConfigurationError:
            pass  # no ipywidgets in this kernel: fall back like tqdm.autonotebook
    stderr = sys.stderr
    if stderr is not None and stderr.isatty():
        return TextProgress(total=total)
    return None


def _panel(cancel: CancelToken | None, total: int | None) -> ProgressFrontend:
    try:
        from .jupyter.panel import ProgressPanel
    except ImportError as exc:
        raise ConfigurationError(
            f"progress='widget' needs ipywidgets ({exc}): `pip install ipywidgets`, "
            "or use progress='text'."
        ) from exc
    return ProgressPanel(cancel, total=total)


def in_jupyter_kernel() -> bool:
    """Whether this runs in a Jupyter kernel, whose frontends keep (and update) outputs."""
    # Read from sys.modules rather than imported: a kernel has loaded ipykernel already, and
    # importing it (or IPython) here would cost every script that never runs in one.
    zmqshell = sys.modules.get("ipykernel.zmqshell")
    shell = getattr(zmqshell, "ZMQInteractiveShell", None)
    return shell is not None and bool(shell.initialized())
