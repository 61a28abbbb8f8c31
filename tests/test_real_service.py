"""The engine against a fake service that behaves like Google's, on a virtual clock.

Limits hidden from the client (it only has guesses), 429s with and without details, billing
stops, retired models, long per-minute delays and Google's Pacific days. The fake counts a
request when it arrives, as the service does, and answers after a latency; every wait is
virtual, so minutes of quota arithmetic run in milliseconds.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from scriptgen_nb.engine.backend import mark_sent
from scriptgen_nb.engine.errors import BackendError, QuotaViolation, ServiceRefusedError
from scriptgen_nb.engine.models import ModelSpec
from scriptgen_nb.engine.policy import RetryPolicy, plan_concurrency
from scriptgen_nb.engine.runner import BatchEngine, EngineConfig
from scriptgen_nb.engine.values import (
    Event,
    GenerationRequest,
    LimitLearned,
    LimitSource,
    ModelHistory,
    ModelStateChanged,
    RememberedLimit,
    Reply,
    Result,
    Usage,
)
from tests.google_errors import PER_DAY, PER_MINUTE
from tests.virtual_time import run_virtual

NOON_PACIFIC = 1_796_414_400.0  # 2026-12-04 12:00 PST
BARE = "Resource has been exhausted (e.g. check quota)."
BILLING = (
    "Your prepayment credits are depleted. Please go to AI Studio at https://ai.studio/projects "
    "to manage your project and billing."
)


@dataclass
class Service:
    """A fake Gemini: per-model hidden RPM windows, and a hook for any other answer.

    `stated` says how a 429 reports the limit: "value" (quotaValue), "none" (a QuotaFailure
    without a figure) or "bare" (no details at all). `answer(model, now)` may return a
    `BackendError` to raise instead of the normal course (a storm, a billing stop, a 404).
    """

    rpm: dict[str, int] = field(default_factory=dict)
    window_s: float = 60.0
    latency_s: float = 1.5
    stated: str = "value"
    answer: Callable[[str, float], BackendError | None] = lambda model, now: None
    calls: list[tuple[float, str]] = field(default_factory=list)
    refused: int = 0
    endpoint: str = "fake"

    def __post_init__(self) -> None:
        self._windows: dict[str, deque[float]] = {}

    async def open(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    async def generate(self, request: GenerationRequest, model: str) -> Reply:
        mark_sent()
        now = asyncio.get_running_loop().time()
        self.calls.append((now, model))
        error = self.answer(model, now) or self._admit(model, now)
        await asyncio.sleep(self.latency_s)
        if error is not None:
            raise error
        return Reply(f"[{model}] {request.prompt}", "STOP", Usage(10, 20))

    def _admit(self, model: str, now: float) -> BackendError | None:
        limit = self.rpm.get(model)
        if limit is None:
            return None
        window = self._windows.setdefault(model, deque())
        while window and window[0] <= now - self.window_s:
            window.popleft()
        if len(window) < limit:
            window.append(now)
            return None
        self.refused += 1
        delay = window[0] + self.window_s - now
        if self.stated == "bare":
            return BackendError("rate_limited", BARE, 429)
        value = limit if self.stated == "value" else None
        violation = QuotaViolation(PER_MINUTE, "minute", value)
        return BackendError("rate_limited", "quota", 429, delay, (violation,))


@dataclass
class Outcome:
    results: list[Result]
    events: list[Event]
    elapsed: float

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


def run(
    service: Service,
    ladder: list[ModelSpec],
    n: int,
    *,
    wall: float = NOON_PACIFIC,
    concurrency: int | None = None,
    **config: Any,
) -> Outcome:
    events: list[Event] = []
    reqs = [GenerationRequest(id=f"r{i}", prompt=f"prompt {i}") for i in range(n)]
    engine = BatchEngine(
        service,
        EngineConfig(ladder, plan_concurrency(concurrency, ladder), **config),
        listeners=[events.append],
        rng=random.Random(3),
        wall_clock=lambda: wall + asyncio.get_running_loop().time(),
    )

    async def main() -> tuple[list[Result], float]:
        out = [r async for r in engine.stream(reqs, n)]
        return out, asyncio.get_running_loop().time()

    results, elapsed = run_virtual(main())
    return Outcome(results, events, elapsed)


def guess(name: str = "m", priority: int = 1, **limits: Any) -> ModelSpec:
    """A model as the bundled catalogue has it: limits that are guesses."""
    return ModelSpec(name, priority=priority, discover=True, **limits)


def max_in_window(times: list[float], window: float = 60.0) -> int:
    times = sorted(times)
    return max((sum(1 for u in times if t <= u < t + window) for t in times), default=0)


# --- discovery ---------------------------------------------------------------------------


def test_a_guessed_free_tier_limit_is_raised_to_the_hidden_one_at_the_cost_of_one_window() -> None:
    service = Service(rpm={"m": 150})
    out = run(service, [guess(rpm=5)], 600)
    assert all(r.success for r in out.results)
    # The bound: 150 a window, so the 600th request leaves at 180 s and answers 1.5 s later.
    assert out.elapsed <= 1.3 * 181.5
    assert service.refused <= 150  # at most one window's worth of 429s
    learned = out.of(LimitLearned)
    assert learned[0].source == "raised" and learned[0].learned > 5
    assert (learned[-1].learned, learned[-1].source) == (150, "stated")


def test_discovery_grows_per_round_trip_not_per_minute() -> None:
    service = Service(rpm={"m": 1000}, latency_s=2.0)
    out = run(service, [guess(rpm=5)], 300)
    starts = [t for t, _ in service.calls]
    # Slow start doubles each round trip: 5, 10, 20, 40, 80, 160 -> 300 sent within ~6 trips.
    assert max(starts) <= 6 * 2.0 + 1.0
    assert out.elapsed < 20.0 and service.refused == 0


def test_a_limit_without_a_figure_is_lowered_by_half_then_recovers_additively() -> None:
    service = Service(rpm={"m": 150}, stated="none")
    out = run(service, [guess(rpm=5)], 600)
    assert all(r.success for r in out.results)
    lowered = [e for e in out.of(LimitLearned) if e.source == "lowered"]
    assert lowered and all(e.learned >= 75 for e in lowered[:1])  # at most halved at once
    assert any(e.source == "recovered" for e in out.of(LimitLearned))
    assert out.elapsed <= 1.6 * 181.5


def test_a_trusted_limit_is_never_probed_above() -> None:
    service = Service(rpm={"m": 150})
    out = run(service, [ModelSpec("m", priority=1, rpm=10)], 30)
    assert all(r.success for r in out.results)
    assert max_in_window([t for t, _ in service.calls]) == 10
    assert out.of(LimitLearned) == []


def test_a_hard_cap_bounds_discovery() -> None:
    service = Service(rpm={"m": 150})
    out = run(service, [guess(rpm=5, hard=True)], 40)
    assert max_in_window([t for t, _ in service.calls]) == 5
    assert all(r.success for r in out.results) and service.refused == 0


def test_a_remembered_limit_is_the_start_and_is_said_once() -> None:
    service = Service(rpm={"m": 150})
    history = {"m": ModelHistory(limits={"rpm": RememberedLimit(150, "stated")})}
    out = run(service, [guess(rpm=5)], 300, history=history)
    assert out.of(LimitLearned)[0] == LimitLearned("m", "rpm", 5, 150, "remembered")
    assert service.refused <= 5
    assert sum(1 for t, _ in service.calls if t < 1.0) == 150  # the first window at once


def test_a_guessed_daily_limit_never_exhausts_a_model_by_itself() -> None:
    service = Service(rpm={"m": 1000})
    out = run(service, [guess(rpm=1000, rpd=20)], 200)
    assert all(r.success for r in out.results)
    assert out.elapsed < 30.0  # not a day


def test_a_guess_of_no_quota_is_one_try_then_the_model_is_dropped_on_limit_zero() -> None:
    zero = BackendError(
        "rate_limited", "quota", 429, 30.0, (QuotaViolation(PER_MINUTE, "minute", 0),)
    )
    service = Service(answer=lambda model, now: zero if model == "pro" else None)
    ladder = [guess("pro", 1, rpm=0, rpd=0), guess("flash", 2, rpm=100)]
    out = run(service, ladder, 20)
    assert all(r.success and r.model == "flash" for r in out.results)
    assert sum(1 for _, m in service.calls if m == "pro") == 1
    gone = [e for e in out.of(ModelStateChanged) if e.state == "gone"]
    assert [e.model for e in gone] == ["pro"] and "limit 0" in gone[0].reason


# --- 429s without details ------------------------------------------------------------------


def storm(until: float) -> Callable[[str, float], BackendError | None]:
    return lambda model, now: BackendError("rate_limited", BARE, 429) if now < until else None


def test_a_storm_of_429s_without_details_backs_off_and_teaches_no_limit() -> None:
    service = Service(answer=storm(4.0))
    out = run(service, [ModelSpec("m", priority=1, rpm=100)], 40)
    assert all(r.success for r in out.results)
    assert out.of(LimitLearned) == []
    # The storm, the backoff's cap, then the batch at its bound (40 requests: one latency).
    assert out.elapsed <= 4.0 + 60.0 + 1.2 * 1.5
    # The first burst is refused whole; then one probe a backoff round, not a burst each.
    assert len(service.calls) <= 40 + 10 + 40
    backing_off = [e for e in out.of(ModelStateChanged) if e.state == "backing_off"]
    assert backing_off[0].until_s is not None and backing_off[0].until_s <= 1.0
    assert any(e.state == "backing_off" for e in out.of(ModelStateChanged))


def test_an_endless_storm_on_every_model_ends_the_rest_rate_limited() -> None:
    service = Service(answer=storm(float("inf")))
    ladder = [ModelSpec("a", priority=1, rpm=100), ModelSpec("b", priority=2, rpm=100)]
    policy = RetryPolicy(overload_patience_s=120.0)
    out = run(service, ladder, 10, retry=policy)
    assert {r.error.kind for r in out.results if r.error} == {"rate_limited"}
    assert all(BARE in (r.error.message if r.error else "") for r in out.results)
    assert 120.0 <= out.elapsed <= 120.0 + 61.5  # patience, then at most one capped backoff


# --- refusals, gone models, long delays ----------------------------------------------------


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (BackendError("billing", BILLING, 429, refusal="billing"), "billing"),
        (BackendError("permission_denied", "suspended", 403, refusal="permission"), "permission"),
        (BackendError("permission_denied", "location", 400, refusal="location"), "location"),
    ],
)
def test_a_refusal_of_the_project_ends_the_batch_at_once(error: BackendError, reason: str) -> None:
    service = Service(answer=lambda model, now: error)
    with pytest.raises(ServiceRefusedError) as caught:
        run(service, [ModelSpec("m", priority=1, rpm=1000)], 200, concurrency=8)
    assert caught.value.reason == reason and reason in str(caught.value)
    assert len(service.calls) <= 8  # what was already in flight, nothing after the answer


def gone_404(model: str) -> BackendError:
    return BackendError(
        "not_found",
        f"models/{model} is not found for API version v1beta, or is not supported for "
        "generateContent.",
        404,
        model_gone=True,
    )


def test_a_retired_first_model_leaves_the_ladder_and_the_next_serves() -> None:
    service = Service(answer=lambda model, now: gone_404(model) if model == "old" else None)
    ladder = [
        ModelSpec("old", priority=1, rpm=100, status="shutdown 2026-12-01"),
        ModelSpec("new", priority=2, rpm=100),
    ]
    out = run(service, ladder, 50, concurrency=5)
    assert all(r.success and r.model == "new" for r in out.results)
    assert sum(1 for _, m in service.calls if m == "old") <= 5  # one burst at most
    gone = [e for e in out.of(ModelStateChanged) if e.state == "gone"]
    assert len(gone) == 1 and "shutdown 2026-12-01" in gone[0].reason


def test_a_request_pinned_to_a_gone_model_fails_naming_it() -> None:
    service = Service(answer=lambda model, now: gone_404(model) if model == "old" else None)
    ladder = [ModelSpec("old", priority=1, status="shutdown 2026-12-01"), ModelSpec("new", 2)]
    engine_requests = [GenerationRequest(id="p", prompt="x", model="old")]
    events: list[Event] = []
    engine = BatchEngine(
        service, EngineConfig(ladder, plan_concurrency(None, ladder)), listeners=[events.append]
    )

    async def main() -> list[Result]:
        return [r async for r in engine.stream(engine_requests, 1)]

    (result,) = run_virtual(main())
    assert result.error is not None and result.error.kind == "not_found"
    assert "old" in result.error.message and "shutdown 2026-12-01" in result.error.message


def test_every_model_gone_fails_the_rest_without_sending() -> None:
    service = Service(answer=lambda model, now: gone_404(model))
    out = run(service, [ModelSpec("a", 1), ModelSpec("b", 2)], 30, concurrency=1)
    assert {r.error.kind for r in out.results if r.error} == {"not_found"}
    assert len(service.calls) == 2


def test_a_per_minute_429_with_a_long_delay_rotates_instead_of_sleeping() -> None:
    long = BackendError(
        "rate_limited", "quota", 429, 7_200.0, (QuotaViolation(PER_MINUTE, "minute", 10),)
    )
    service = Service(answer=lambda model, now: long if model == "a" else None)
    ladder = [ModelSpec("a", priority=1, rpm=100), ModelSpec("b", priority=2, rpm=100)]
    out = run(service, ladder, 20, concurrency=1)
    assert all(r.success and r.model == "b" for r in out.results)
    assert out.elapsed < 60.0
    assert any(e.state == "exhausted" for e in out.of(ModelStateChanged))


def test_when_every_model_is_exhausted_the_batch_ends_saying_when_each_resets() -> None:
    day = BackendError("quota_exhausted", "quota", 429, 38.0, (QuotaViolation(PER_DAY, "day", 20),))
    service = Service(answer=lambda model, now: day)
    out = run(service, [ModelSpec("a", 1), ModelSpec("b", 2)], 10, concurrency=1)
    not_run = [r for r in out.results if r.error and r.error.kind == "not_run"]
    assert len(not_run) == 10 and len(service.calls) == 2  # one try each, then nothing
    # Real days: not the 38 s the 429 said, but Google's midnight, twelve hours away.
    assert "a in 11h 59m" in not_run[-1].error.message  # type: ignore[union-attr]
    assert "b in 11h 59m" in not_run[-1].error.message  # type: ignore[union-attr]
    assert out.elapsed < 10.0


# --- Google's days ----------------------------------------------------------------------


def test_requests_per_day_count_per_pacific_day_and_reset_at_its_midnight() -> None:
    service = Service()
    spec = ModelSpec("m", priority=1, rpd=3)
    one_minute_to_midnight = NOON_PACIFIC + 12 * 3600 - 60
    out = run(service, [spec], 6, wall=one_minute_to_midnight)
    assert all(r.success for r in out.results)
    sent = sorted(t for t, _ in service.calls)
    assert sent[:3] == [0.0, 0.0, 0.0]
    assert 60.0 <= sent[3] <= 61.0  # the new day, not 24 h later
    assert out.elapsed < 65.0


def sent_today(
    count: int, *, at_s: float, **limits: tuple[int, LimitSource]
) -> dict[str, ModelHistory]:
    """Model "m"'s history from an earlier batch today: `count` requests of 10 tokens sent at
    `at_s` (virtual seconds), and the limits it left remembered, metric=(value, how learned)."""
    remembered = {metric: RememberedLimit(value, how) for metric, (value, how) in limits.items()}
    return {"m": ModelHistory(sent=tuple((at_s, 10) for _ in range(count)), limits=remembered)}


def test_a_remembered_daily_figure_does_not_stall_the_next_batch_of_the_day() -> None:
    # Discovery raised rpd to what the first batch sent (40) and remembered it; the next batch
    # the same day finds its day window full at that figure and must still probe past it.
    service = Service(rpm={"m": 1000})
    history = sent_today(40, at_s=30.0, rpd=(40, "raised"), rpm=(40, "raised"))
    out = run(service, [guess(rpm=5, rpd=20)], 10, history=history)
    assert all(r.success for r in out.results)
    assert out.elapsed < 60.0  # not midnight Pacific


def test_a_remembered_limit_only_raised_by_demand_is_a_floor_that_slow_start_leaves_fast() -> None:
    # The first batch of the day raised its daily guess to what it sent (600; never refused)
    # and the service stated 150 a minute. The second batch's day window is full at 600: the
    # day limit must go on growing where discovery stopped (slow start, with the doubling it
    # had banked), not one request at a time, nor from nothing round trip by round trip.
    service = Service(rpm={"m": 150})
    history = sent_today(600, at_s=120.0, rpd=(600, "raised"), rpm=(150, "stated"))
    out = run(service, [guess(rpm=5, rpd=20)], 600, history=history)
    assert all(r.success for r in out.results)
    bound = 3 * service.window_s + service.latency_s  # four windows of 150
    assert out.elapsed <= 1.05 * bound
    assert service.refused <= 5
