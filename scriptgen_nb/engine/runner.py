"""BatchEngine: admission, dispatch, retry and rotation for one batch of requests.

One dispatcher coroutine pulls requests lazily (a generator is fine: only what is in flight or
waiting for a retry is held), routes each to the most preferred model of its ladder with headroom
now, admits it through that model's limiter and starts one task per attempt. An attempt's outcome
is judged (truncated, blocked, invalid JSON are their own failures), and failures follow the
`RetryPolicy`: a per-minute 429 parks the model and requeues the request, a per-day 429 exhausts
the model, transient errors back off and retry, the rest fail at once, an invalid key aborts.
Every step is announced as an event to the listeners; the engine knows none of them.

Time comes from the running event loop (`loop.time()`, `asyncio.sleep`), so tests run it on a
virtual-time loop and nothing really sleeps. Wall-clock stamps for the log come from `wall_clock`.
Imports nothing outside `engine/`.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import math
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from .backend import SEND_HOOK, Backend
from .checks import check_number
from .errors import (
    BackendError,
    ConfigurationError,
    InvalidApiKeyError,
    QuotaScope,
    ServiceRefusedError,
)
from .ledger import QuotaLedger
from .limits import Learned, Metric, ModelLimiter
from .models import ModelSpec
from .policy import (
    REAL_DAY_S,
    ConcurrencyPlan,
    Decision,
    RetryPolicy,
    day_reset_delay,
    pacific_day_bounds,
    quota_summary,
    server_limit,
)
from .routing import Never, Wait, choose_model
from .sharing import SharedQuota
from .values import (
    Attempt,
    AttemptFinished,
    BatchFinished,
    BatchStarted,
    Event,
    Failure,
    GenerationRequest,
    LimitLearned,
    ModelHistory,
    ModelStateChanged,
    Reply,
    RequestFinished,
    RequestStarted,
    Result,
    Usage,
    budget_reached,
)
from .verdict import judge_reply
from .window import Slot

Listener = Callable[[Event], None]
# Called as each request is taken up: an earlier result to serve instead of sending it, or None.
Resolver = Callable[[int, GenerationRequest], Result | None]
Routing = Literal["preference", "failover"]


# The output a request without `max_output_tokens` is expected to use, for budgets and dry runs.
EXPECTED_OUTPUT_TOKENS = 1024


def estimate_tokens(request: GenerationRequest) -> int:
    """Input tokens before the call (about four characters a token), for TPM pacing and budgets."""
    chars = len(request.prompt) + len(request.system or "")
    return chars // 4 + 8


def reserved_usage(
    request: GenerationRequest, expected_output: int = EXPECTED_OUTPUT_TOKENS
) -> Usage:
    """The tokens a budget sets aside for `request`: its input estimate and its output cap.

    With `max_output_tokens` the output is capped (on Google, thoughts count within the cap),
    so the reservation bounds what the call can cost; without it, `expected_output` is only
    an expectation, and a longer answer costs more than was set aside.
    """
    return Usage(estimate_tokens(request), request.max_output_tokens or expected_output)


class CancelToken:
    """Thread-safe cancellation: `cancel()` from any thread (a Cancel button, Ctrl-C handler)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._wakers: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def cancel(self) -> None:
        self._event.set()
        with self._lock:
            wakers = list(self._wakers)
        for wake in wakers:
            wake()

    def on_cancel(self, wake: Callable[[], None]) -> Callable[[], None]:
        """Register `wake` (called from the cancelling thread); returns an unregister function."""
        with self._lock:
            self._wakers.append(wake)

        def remove() -> None:
            with self._lock:
                self._wakers.remove(wake)

        return remove


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Everything that shapes one batch's run except the requests and the backend."""

    ladder: Sequence[ModelSpec]
    plan: ConcurrencyPlan
    routing: Routing = "preference"
    timeout_s: float = 60.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    budget_usd: float | None = None
    chunk_size: int | None = None
    expected_output_tokens: int = EXPECTED_OUTPUT_TOKENS
    batch_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    history: Mapping[str, ModelHistory] = field(default_factory=dict)
    # What the user should know before it runs (a retired model named, an unknown price, a
    # model left out of the ladder): told to listeners with BatchStarted.
    notices: tuple[str, ...] = ()
    # The backend is an emulator: every result says its answer was simulated.
    simulated: bool = False
    # The quota ledger shared with other processes at this quota identity (engine/ledger.py);
    # None paces this batch alone.
    ledger: QuotaLedger | None = None

    def __post_init__(self) -> None:
        if not self.ladder:
            raise ConfigurationError("A batch needs at least one model.")
        if self.routing not in ("preference", "failover"):
            raise ConfigurationError(f"routing={self.routing!r}: use 'preference' or 'failover'.")
        check_number("timeout_s", self.timeout_s, low=0, above=True, unit="seconds")
        check_number("chunk_size", self.chunk_size, low=1, whole=True, optional=True)
        check_number("budget_usd", self.budget_usd, low=0, optional=True, unit="US dollars")
        check_number("expected_output_tokens", self.expected_output_tokens, low=0, whole=True)


@dataclass(eq=False, slots=True)
class _Work:
    """A request the engine is carrying, with what its attempts have added up to so far."""

    request: GenerationRequest
    index: int
    queued_at: float
    tokens: int
    attempts: int = 0
    failures: int = 0  # transient failures, bounded by max_attempts
    quota_waits: int = 0
    usage: Usage = field(default_factory=Usage)
    cost_usd: float | None = 0.0  # None once an attempt's price was unknown
    first_sent_at: float | None = None
    ready_since: float = 0.0  # when it last became ready to send (taken up, requeued, retry due)
    queued_s: float = 0.0  # how long the current attempt waited for its turn
    reserved_usd: float = 0.0


class BatchEngine:
    """Runs one batch: `async for result in engine.stream(requests)` yields results as they end."""

    def __init__(
        self,
        backend: Backend,
        config: EngineConfig,
        *,
        listeners: Iterable[Listener] = (),
        cancel: CancelToken | None = None,
        resolve: Resolver | None = None,
        rng: random.Random | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.backend = backend
        self.config = config
        self.listeners = list(listeners)
        self.cancel_token = cancel or CancelToken()
        self._resolve = resolve
        self._rng = rng or random.Random()
        self._wall = wall_clock
        self._wall_offset = 0.0  # wall clock minus loop clock, fixed when the batch starts
        self.limiters = {spec.name: self._limiter(spec) for spec in config.ladder}
        self._quota = SharedQuota(config.ledger, self._emit)
        self.status: Literal["running", "finished", "cancelled", "failed"] = "running"
        self._fatal: BaseException | None = None
        self._stop_reason: Failure | None = None  # set when no further request may be sent
        self._wake = asyncio.Event()
        self._ready: deque[_Work] = deque()
        self._delayed: list[tuple[float, int, _Work]] = []
        self._seq = itertools.count()
        self._tasks: dict[asyncio.Task[None], tuple[_Work, ModelLimiter]] = {}
        self._out: asyncio.Queue[Result | None] = asyncio.Queue()
        self._spent_usd = 0.0
        self._reserved_usd = 0.0
        self._most_output = 0  # the most output (thoughts included) one answer has used
        self._done = 0
        self._totals = {"succeeded": 0, "failed": 0, "not_run": 0}
        self._usage = Usage()
        self._models_used: set[str] = set()

    # --- public --------------------------------------------------------------------------

    def cancel(self) -> None:
        """Stop admitting, cancel what is in flight, mark the rest not run (thread-safe)."""
        self.cancel_token.cancel()

    def unreported(self) -> list[Result]:
        """Results produced but not yet yielded by `stream` (e.g. after it was cancelled)."""
        results = []
        while not self._out.empty():
            result = self._out.get_nowait()
            if result is not None:
                results.append(result)
        return results

    async def stream(
        self, requests: Iterable[GenerationRequest], total: int | None = None
    ) -> AsyncIterator[Result]:
        """Run the batch, yielding each request's final `Result` as soon as it has one."""
        loop = asyncio.get_running_loop()
        self._t0 = loop.time()
        self._total = total

        def wake() -> None:  # called from the cancelling thread
            loop.call_soon_threadsafe(self._wake.set)

        unregister = self.cancel_token.on_cancel(wake)
        await self.backend.open()  # client set-up is slow; do it before any window starts
        self._wall_offset = self._wall() - loop.time()
        self._quota.wall_offset = self._wall_offset
        self._carry_over_history(loop.time())
        self._emit(
            BatchStarted(
                self.config.batch_id,
                total,
                tuple(s.name for s in self.config.ladder),
                self.config.plan.mode,
                self.config.plan.max_in_flight,
                self._wall(),
                self.config.notices,
            )
        )
        for limiter in self.limiters.values():
            for limit in limiter.limits.values():
                if limit.source == "remembered" and limit.value is not None:
                    self._learned(
                        limiter, Learned(limit.metric, limit.configured, limit.value, "remembered")
                    )
        dispatcher = asyncio.create_task(self._dispatch(enumerate(requests)))
        try:
            while True:
                result = await self._out.get()
                if result is None:
                    break
                yield result
        finally:
            unregister()
            if not dispatcher.done():
                self.cancel_token.cancel()
                dispatcher.cancel()
            await asyncio.gather(dispatcher, return_exceptions=True)
            await self._cancel_in_flight()
            self._quota.close()
        if self._fatal is not None:
            raise self._fatal

    def _limiter(self, spec: ModelSpec) -> ModelLimiter:
        """A model's limiter, starting from what earlier batches learned, on Google's days."""
        history = self.config.history.get(spec.name)
        return ModelLimiter(
            spec,
            remembered=history.limits if history else None,
            day_bounds=self._google_day if spec.day_s == REAL_DAY_S else None,
        )

    def _google_day(self, now: float) -> tuple[float, float]:
        """Google's quota day (Pacific midnight to midnight) holding loop time `now`."""
        start, end = pacific_day_bounds(now + self._wall_offset)
        return start - self._wall_offset, end - self._wall_offset

    def _carry_over_history(self, now: float) -> None:
        """Start each limiter from what earlier batches used (quota memory)."""
        for name, history in self.config.history.items():
            limiter = self.limiters.get(name)
            if limiter is None:
                continue
            if not self._quota.active:  # a shared ledger holds every process's slots already
                limiter.preload([Slot(now - ago, tokens) for ago, tokens in history.sent])
            if history.exhausted_for_s:
                limiter.resume_exhausted(now + history.exhausted_for_s)

    # --- dispatch ------------------------------------------------------------------------

    async def _dispatch(self, source: Iterable[tuple[int, GenerationRequest]]) -> None:
        loop = asyncio.get_running_loop()
        pending = iter(source)
        exhausted_source = False
        pulled = 0
        try:
            while True:
                if self.cancel_token.cancelled:
                    # Stop at once: in-flight attempts are cancelled and the rest marked below.
                    self._stop(Failure("not_run", "cancelled before it was sent"))
                    self.status = "cancelled"
                    break
                if self._fatal is not None:
                    break
                now = loop.time()
                self._promote(now)
                if len(self._tasks) >= self.config.plan.max_in_flight:
                    await self._sleep(None)
                    continue
                work = self._ready.popleft() if self._ready else None
                if work is None and not exhausted_source and self._may_pull(pulled):
                    item = next(pending, None)
                    if item is None:
                        exhausted_source = True
                    else:
                        pulled += 1
                        index, request = item
                        earlier = self._take_up(index, request)
                        if earlier is not None:
                            self._deliver(earlier)
                            continue
                        work = _Work(request, index, now, estimate_tokens(request), ready_since=now)
                if work is None:
                    if exhausted_source and not self._tasks and not self._delayed:
                        break
                    next_at = self._delayed[0][0] if self._delayed else None
                    await self._sleep(None if next_at is None else next_at - now)
                    continue
                if self._stop_reason is not None:
                    self._finish(work, None, self._stop_reason)
                    continue
                route = choose_model(
                    list(self.limiters.values()),
                    work.tokens,
                    now,
                    pinned=work.request.model,
                    paced=self.config.plan.paced,
                    failover=self.config.routing == "failover",
                )
                if isinstance(route, Never):
                    ladder_wide = route.failure.kind in ("not_run", "not_found")
                    if ladder_wide and work.request.model is None:
                        self._stop(route.failure)
                    self._finish(work, None, route.failure)
                elif isinstance(route, Wait):
                    self._ready.appendleft(work)
                    await self._sleep(route.seconds)
                elif (budget := self._budget_verdict(work, route.limiter.spec)) == "wait":
                    self._ready.appendleft(work)
                    await self._sleep(None)  # until an attempt ends and its real cost is known
                elif budget == "stop":
                    self._finish(work, None, self._stop_reason)
                else:
                    slot = self._quota.admit(
                        route.limiter,
                        work.tokens,
                        now,
                        self._learned,
                        self.limiters,
                        want=self._ready_to_go(pulled, exhausted_source),
                    )
                    if slot is None:  # other processes' share of the quota: not now
                        self._release_reservation(work)
                        self._ready.appendleft(work)
                        continue
                    task = asyncio.create_task(self._attempt(work, route.limiter, slot))
                    self._tasks[task] = (work, route.limiter)
                    task.add_done_callback(self._task_done)
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                self._fatal = self._fatal or exc
            raise
        finally:
            try:
                await self._cancel_in_flight()
                reason = self._stop_reason or Failure(
                    "not_run", "the batch stopped before it was sent"
                )
                for work in self._drain_waiting():
                    self._finish(work, None, reason)
                if not exhausted_source:
                    self._end_untaken(pending, reason)
                self._end_batch(loop.time())
            finally:
                self._out.put_nowait(None)  # whatever happened, the stream must end

    def _take_up(self, index: int, request: GenerationRequest) -> Result | None:
        """Hand a request to the resolver; a resolver that fails stops the batch like a listener."""
        if self._resolve is None:
            return None
        try:
            return self._resolve(index, request)
        except Exception as exc:
            self._fail(exc, "taking up a request failed")
            return None

    def _end_untaken(
        self, pending: Iterator[tuple[int, GenerationRequest]], reason: Failure
    ) -> None:
        """End the requests never taken up: resolved all the same (logged or served), or not run."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                item = next(pending, None)
            except Exception as exc:  # the request source itself failed: nothing more to end
                self._fail(exc, "reading the requests failed")
                return
            if item is None:
                return
            index, request = item
            earlier = self._take_up(index, request)
            if earlier is not None:
                self._deliver(earlier)
            else:
                self._finish(_Work(request, index, loop.time(), 0), None, reason)

    def _ready_to_go(self, pulled: int, exhausted_source: bool) -> int:
        """How many requests could go now, the one being admitted first: those waiting and
        those not yet taken from a source of known length, as far as the concurrency allows
        (a shared ledger grants that many slots at once where it can)."""
        untaken = 0 if exhausted_source or self._total is None else self._total - pulled
        if self.config.chunk_size:  # the rest of this chunk only: the next waits for it to end
            untaken = min(untaken, -pulled % self.config.chunk_size)
        room = self.config.plan.max_in_flight - len(self._tasks)
        return max(1, min(1 + len(self._ready) + untaken, room))

    def _may_pull(self, pulled: int) -> bool:
        """With `chunk_size`, a chunk must end before the next one is pulled (seed sub-batching)."""
        size = self.config.chunk_size
        if not size or pulled % size:
            return True
        return not (self._tasks or self._delayed or self._ready)

    def _promote(self, now: float) -> None:
        while self._delayed and self._delayed[0][0] <= now:
            _, _, work = heapq.heappop(self._delayed)
            self._ready.append(work)

    async def _sleep(self, seconds: float | None) -> None:
        """Sleep until woken (an attempt ended, a cancel) or `seconds` pass."""
        self._wake.clear()
        if seconds is not None and seconds <= 0:
            await asyncio.sleep(0)
            return
        if seconds is not None and math.isinf(seconds):
            seconds = None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    def _budget_verdict(self, work: _Work, spec: ModelSpec) -> Literal["go", "wait", "stop"]:
        """Whether `work` may be sent now without the budget ever being crossed.

        Each admitted attempt reserves its expected cost (input estimate plus its output cap)
        until it ends. When the reservations in flight leave no room, the request waits for
        them to settle: most calls cost far less than their cap, so deciding on them would end
        a concurrent batch long before its budget is spent. The batch stops only when the
        request cannot fit even with nothing in flight; on "go" its reservation is taken.
        A request without `max_output_tokens` reserves the expected output or the most an
        answer of this batch has used, whichever is more: thinking models answer past 1,024
        tokens, and a reservation below what they use would let the budget be crossed.
        """
        budget = self.config.budget_usd
        if budget is None:
            return "go"
        expected = max(self.config.expected_output_tokens, self._most_output)
        reserve = spec.cost_usd(reserved_usage(work.request, expected), at=self._wall())
        if reserve is None:  # the price is unknown: no budget can be kept with this model
            self._stop(Failure("not_run", f"{spec.name}'s price is unknown: no budget can be kept"))
            return "stop"
        if self._spent_usd + reserve > budget:
            self._stop(budget_reached(budget, self._spent_usd, reserve))
            return "stop"
        if self._tasks and self._spent_usd + self._reserved_usd + reserve > budget:
            return "wait"
        work.reserved_usd = reserve
        self._reserved_usd += reserve
        return "go"

    # --- attempts ------------------------------------------------------------------------

    async def _attempt(self, work: _Work, limiter: ModelLimiter, slot: Slot) -> None:
        loop = asyncio.get_running_loop()
        if limiter.state(loop.time()) in ("exhausted", "gone"):
            # Admitted in the same turn of the loop as a per-day 429 (or a 404) of its burst
            # was answered, and found out before it left: sending it would only be refused.
            limiter.withdraw(slot)
            self._quota.forget(slot)
            self._release_reservation(work)
            self._ready.appendleft(work)
            return
        spec = limiter.spec
        work.attempts += 1
        number = work.attempts
        started = loop.time()
        work.queued_s = started - work.ready_since
        if work.first_sent_at is None:
            work.first_sent_at = started
        wall_started = self._wall()
        self._models_used.add(spec.name)
        self._emit(RequestStarted(work.request.id, work.index, number, spec.name))
        reply: Reply | None = None
        error: BackendError | None = None
        SEND_HOOK.set(lambda: limiter.sent(slot, loop.time()))  # this task's context only
        try:
            async with asyncio.timeout(self.config.timeout_s):
                reply = await self.backend.generate(work.request, spec.name)
        except BackendError as exc:
            error = exc
        except TimeoutError:
            error = BackendError("timeout", f"no answer within {self.config.timeout_s:g}s")
        except asyncio.CancelledError:
            # Sent but never answered: the service may have counted it, so the log must too.
            failure = Failure("not_run", "cancelled while in flight")
            spent = loop.time() - started
            record = self._attempt_record(
                work, spec, number, failure, Usage(), 0.0, spent, wall_started
            )
            self._emit(AttemptFinished(record, will_retry=False))
            limiter.release(slot)
            raise
        limiter.release(slot)
        latency_s = loop.time() - started
        self._release_reservation(work)
        if reply is not None:
            limiter.settle(slot, reply.usage.billable.input or work.tokens)
            flush_in = self._quota.settle(slot, limiter, loop.time())
            if flush_in is not None:
                loop.call_later(flush_in, self._quota.flush)
            for learned in limiter.record_success(slot):
                self._learned(limiter, learned)
            self._judge(work, limiter, reply, number, latency_s, wall_started)
        else:
            assert error is not None
            self._handle_error(work, limiter, slot, error, number, latency_s, wall_started)

    def _judge(
        self,
        work: _Work,
        limiter: ModelLimiter,
        reply: Reply,
        number: int,
        latency_s: float,
        wall_started: float,
    ) -> None:
        """Decide what a 200 reply means: success, or a failure of its own kind."""
        spec = limiter.spec
        usage = reply.usage.billable  # impossible figures (a malformed reply) bill nothing
        cost = spec.cost_usd(usage, at=self._wall())
        work.usage = work.usage + usage
        work.cost_usd = None if cost is None or work.cost_usd is None else work.cost_usd + cost
        self._spent_usd += cost or 0.0
        self._most_output = max(self._most_output, usage.output + usage.thoughts)
        self._usage = self._usage + usage
        verdict = judge_reply(reply, work.request.schema)
        failure = verdict.failure
        retry = False
        if verdict.retryable:
            work.failures += 1
            retry = work.failures < self.config.retry.max_attempts
        attempt = self._attempt_record(
            work,
            spec,
            number,
            failure,
            usage,
            cost,
            latency_s,
            wall_started,
            finish_reason=reply.finish_reason,
            model_version=reply.model_version,
        )
        self._emit(AttemptFinished(attempt, will_retry=retry))
        if retry:
            self._retry_later(work, self.config.retry.backoff.delay(work.failures, self._rng))
        else:
            self._finish(
                work,
                spec.name,
                failure,
                text=reply.text,
                data=verdict.data,
                reply=reply,
                latency_s=latency_s,
            )

    def _handle_error(
        self,
        work: _Work,
        limiter: ModelLimiter,
        slot: Slot,
        error: BackendError,
        number: int,
        latency_s: float,
        wall_started: float,
    ) -> None:
        now = asyncio.get_running_loop().time()
        spec = limiter.spec
        if error.kind in ("server_error", "timeout", "connection", "malformed_response"):
            work.failures += 1
            self._count_server_failure(limiter, now)
        decision = self.config.retry.decide(
            error, work.failures, spec, self._rng, overloads=limiter.consecutive_overloads + 1
        )
        failure = Failure(error.kind, error.message, error.http_status)
        ended: Failure | None = None  # set when the request cannot wait for another model
        if decision.action in ("park", "back_off", "exhaust"):
            ended = self._quota_refusal(work, limiter, slot, error, decision, now)
            work.quota_waits += 1
            if work.quota_waits > self.config.retry.max_quota_waits:
                ended = ended or failure
        elif decision.action == "drop":
            ended = self._drop_model(work, limiter, error.message)
        elif decision.action in ("abort", "refuse"):
            self._end_for_the_project(error)
        requeue = ended is None and decision.action in ("park", "back_off", "exhaust", "drop")
        will_retry = requeue or decision.action == "retry"
        attempt = self._attempt_record(
            work,
            spec,
            number,
            failure,
            Usage(),
            0.0,
            latency_s,
            wall_started,
            retry_delay_s=error.retry_delay_s,
        )
        self._emit(AttemptFinished(attempt, will_retry=will_retry))
        if decision.action == "retry":
            self._retry_later(work, decision.delay_s)
        elif requeue:
            work.ready_since = now
            self._ready.appendleft(work)
        else:
            self._finish(work, spec.name, ended or failure, latency_s=latency_s)

    def _count_server_failure(self, limiter: ModelLimiter, now: float) -> None:
        """A 5xx, timeout or lost connection: three in a row cool the model a while."""
        cool_s = self.config.retry.backoff.delay(limiter.consecutive_failures - 2, self._rng)
        if limiter.record_server_failure(now, cool_s):
            self._emit(
                ModelStateChanged(
                    limiter.spec.name,
                    "cooling",
                    limiter.cooling_until - now,
                    f"{limiter.consecutive_failures} failures in a row",
                )
            )

    def _quota_refusal(
        self,
        work: _Work,
        limiter: ModelLimiter,
        slot: Slot,
        error: BackendError,
        decision: Decision,
        now: float,
    ) -> Failure | None:
        """A 429: park, back off or exhaust the model, learning what the 429 teaches.

        Returns the failure the request ends with if it cannot wait (the model has no quota
        at all, or 429s without details have lasted the policy's patience on every model).
        """
        spec = limiter.spec
        state_before = limiter.state(now)
        learned = None
        self._quota.forget(slot)  # refused: it used none of the quota
        if decision.action == "back_off":
            limiter.overloaded(now, slot, decision.delay_s)
            self._quota.held(spec.name, "backing_off", limiter.backoff_until)
            if state_before != "backing_off":
                self._emit(
                    ModelStateChanged(
                        spec.name, "backing_off", decision.delay_s, error.message[:200]
                    )
                )
            return self._overload_verdict(error, now)
        if decision.action == "park":
            metric: Metric = "tpm" if decision.metric == "tpm" else "rpm"
            scope: QuotaScope = "tokens" if metric == "tpm" else "minute"
            stated = server_limit(error, scope)
            if stated is not None and stated[0] == 0:  # "limit: 0": no quota on this tier
                return self._drop_model(
                    work,
                    limiter,
                    f"the service says it has no quota here (limit 0): {quota_summary(error)}",
                )
            learned = limiter.rate_limited(
                now, slot, decision.delay_s, metric, *(stated or (None, "stated"))
            )
            self._quota.held(spec.name, "parked", limiter.parked_until)
            if state_before != "parked":  # the other refusals of one burst say nothing new
                self._emit(
                    ModelStateChanged(spec.name, "parked", decision.delay_s, quota_summary(error))
                )
        else:
            if decision.metric == "minute":  # a per-minute quota that will not return soon
                delay = decision.delay_s
                limiter.out_until(now, slot, now + delay)
            else:
                wall = datetime.fromtimestamp(self._wall()).astimezone()
                delay = day_reset_delay(error.retry_delay_s, spec, wall)
                stated = server_limit(error, "day")
                learned = limiter.exhausted(now, slot, now + delay, *(stated or (None, "stated")))
            self._quota.held(spec.name, "exhausted", limiter.exhausted_until)
            if state_before != "exhausted":
                self._emit(ModelStateChanged(spec.name, "exhausted", delay, quota_summary(error)))
        if learned is not None:
            self._learned(limiter, learned)
        return None

    def _overload_verdict(self, error: BackendError, now: float) -> Failure | None:
        """Stop the batch once every model still in it has answered nothing but 429s without
        details for the policy's patience: the rest ends rate_limited, to be re-run later."""
        patience = self.config.retry.overload_patience_s
        present = [lim for lim in self.limiters.values() if lim.gone is None]
        if not present or any(
            lim.overloaded_since is None or now - lim.overloaded_since < patience for lim in present
        ):
            return None
        minutes = patience / 60
        failure = Failure(
            "rate_limited",
            f"for {minutes:g} minutes every model answered only 429s without details "
            f"({error.message[:200]!r}): the service is overloaded or the project's quota is "
            "used elsewhere. Re-run later; only what did not succeed is sent.",
            error.http_status,
        )
        self._stop(failure)
        return failure

    def _drop_model(self, work: _Work, limiter: ModelLimiter, why: str) -> Failure | None:
        """The model is gone: it leaves the ladder (said once). The request moves on (None),
        or fails when it was pinned to that model."""
        spec = limiter.spec
        if limiter.gone is None:
            known = f" The catalogue says: {spec.status}." if spec.status else ""
            limiter.drop(f"{why[:300]}{known}")
            self._emit(ModelStateChanged(spec.name, "gone", None, limiter.gone or why))
        if work.request.model == spec.name:
            return Failure("not_found", f"model {spec.name} is not served: {limiter.gone}")
        return None

    def _end_for_the_project(self, error: BackendError) -> None:
        """An invalid key or a refusal of the whole project: no further request may go."""
        detail = error.message[:300]
        if error.refusal is not None:
            fatal: Exception = ServiceRefusedError(error.refusal, detail)
            reason = f"the batch stopped: the service refused the project ({error.refusal})"
        else:
            fatal = InvalidApiKeyError(detail[:200])
            reason = "the batch stopped: the API key was rejected"
        self._fatal = self._fatal or fatal
        self._stop(Failure("not_run", reason))
        self.status = "failed"

    def _learned(self, limiter: ModelLimiter, learned: Learned) -> None:
        self._quota.learned(limiter.spec.name, learned)
        self._emit(
            LimitLearned(
                limiter.spec.name,
                learned.metric,
                learned.configured,
                learned.learned,
                learned.source,
            )
        )

    def _attempt_record(
        self,
        work: _Work,
        spec: ModelSpec,
        number: int,
        failure: Failure | None,
        usage: Usage,
        cost: float | None,
        latency_s: float,
        wall_started: float,
        *,
        finish_reason: str | None = None,
        model_version: str | None = None,
        retry_delay_s: float | None = None,
    ) -> Attempt:
        return Attempt(
            request_id=work.request.id,
            index=work.index,
            number=number,
            model=spec.name,
            success=failure is None,
            failure=failure,
            usage=usage,
            cost_usd=cost,
            latency_ms=latency_s * 1000,
            started_at=wall_started,
            finished_at=self._wall(),
            finish_reason=finish_reason,
            model_version=model_version,
            retry_delay_s=retry_delay_s,
            queue_ms=work.queued_s * 1000,
        )

    def _retry_later(self, work: _Work, delay_s: float) -> None:
        at = asyncio.get_running_loop().time() + delay_s
        work.ready_since = at
        heapq.heappush(self._delayed, (at, next(self._seq), work))

    def _release_reservation(self, work: _Work) -> None:
        self._reserved_usd -= work.reserved_usd
        work.reserved_usd = 0.0

    # --- endings -------------------------------------------------------------------------

    def _finish(
        self,
        work: _Work,
        model: str | None,
        failure: Failure | None,
        *,
        text: str | None = None,
        data: Any = None,
        reply: Reply | None = None,
        latency_s: float | None = None,
    ) -> None:
        loop = asyncio.get_running_loop()
        queue_s = (
            work.first_sent_at if work.first_sent_at is not None else loop.time()
        ) - work.queued_at
        result = Result(
            id=work.request.id,
            index=work.index,
            success=failure is None,
            text=text,
            data=data,
            error=failure,
            finish_reason=reply.finish_reason if reply else None,
            model=model,
            attempts=work.attempts,
            usage=work.usage,
            cost_usd=work.cost_usd,
            latency_ms=None if latency_s is None else latency_s * 1000,
            queue_ms=queue_s * 1000 if work.first_sent_at is not None else None,
            model_version=reply.model_version if reply else None,
            metadata=work.request.metadata,
            simulated=self.config.simulated,
        )
        self._deliver(result)

    def _deliver(self, result: Result) -> None:
        """Count a request's final result and hand it to listeners and the caller."""
        failure = result.error
        self._done += 1
        key = (
            "succeeded"
            if result.success
            else "not_run"
            if failure and failure.kind == "not_run"
            else "failed"
        )
        self._totals[key] += 1
        self._emit(RequestFinished(result, self._done, self._total))
        self._out.put_nowait(result)

    def _stop(self, reason: Failure | None) -> None:
        if self._stop_reason is None:
            self._stop_reason = reason
            self._wake.set()

    def _drain_waiting(self) -> list[_Work]:
        waiting = list(self._ready) + [w for _, _, w in sorted(self._delayed, key=lambda x: x[:2])]
        self._ready.clear()
        self._delayed.clear()
        return waiting

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)
        if not task.cancelled() and task.exception() is not None and self._fatal is None:
            self._fatal = task.exception()
        self._wake.set()

    async def _cancel_in_flight(self) -> None:
        if not self._tasks:
            return
        running = dict(self._tasks)
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        reason = self._stop_reason
        message = "cancelled while in flight"
        if reason is not None and not self.cancel_token.cancelled:
            message = f"stopped while in flight: {reason.message}"
        for task, (work, _) in running.items():
            self._tasks.pop(task, None)
            if task.cancelled():  # a task that ended on its own has already settled its work
                self._release_reservation(work)
                self._finish(work, None, Failure("not_run", message))

    def _end_batch(self, now: float) -> None:
        for limiter in self.limiters.values():
            for learned in limiter.final_reports():
                self._learned(limiter, learned)
        if self.status == "running":
            self.status = (
                "failed"
                if self._fatal is not None
                else ("cancelled" if self.cancel_token.cancelled else "finished")
            )
        self._emit(
            BatchFinished(
                self.config.batch_id,
                self.status,
                self._done,
                self._totals["succeeded"],
                self._totals["failed"],
                self._totals["not_run"],
                self._usage,
                self._spent_usd,
                now - self._t0,
                tuple(sorted(self._models_used)),
            )
        )

    def _emit(self, event: Event) -> None:
        """Tell every listener; a listener that raises stops the batch (its error is raised)."""
        for listener in self.listeners:
            try:
                listener(event)
            except Exception as exc:
                self._fail(exc, "a listener failed")

    def _fail(self, exc: BaseException, what: str) -> None:
        """Stop the batch because of `exc`; the first such error is raised at the end."""
        if self._fatal is None:
            self._fatal = exc
            self._stop(Failure("not_run", f"{what}: {exc}"))
            self.status = "failed"
