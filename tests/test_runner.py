"""BatchEngine on a fake backend and a virtual clock: pacing, routing, retries, endings."""

from __future__ import annotations

import asyncio
import random
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

import pytest
from pydantic import BaseModel

from scriptgen_nb.engine.backend import FakeBackend
from scriptgen_nb.engine.errors import BackendError, InvalidApiKeyError, QuotaViolation
from scriptgen_nb.engine.models import ModelSpec
from scriptgen_nb.engine.policy import Backoff, RetryPolicy, plan_concurrency
from scriptgen_nb.engine.runner import BatchEngine, CancelToken, EngineConfig, _Work
from scriptgen_nb.engine.values import (
    AttemptFinished,
    BatchFinished,
    Event,
    GenerationRequest,
    LimitLearned,
    ModelHistory,
    ModelStateChanged,
    Reply,
    RequestFinished,
    Result,
    Usage,
)
from tests.google_errors import PER_DAY, PER_MINUTE
from tests.virtual_time import run_virtual

# Noon Pacific on 2026-12-04 (20:00 UTC): the engine's wall clock in these runs starts here and
# follows the virtual loop, so Google's day (midnight Pacific) is twelve hours away.
NOON_PACIFIC = 1_796_414_400.0


def requests(n: int, **fields: Any) -> list[GenerationRequest]:
    return [GenerationRequest(id=f"r{i}", prompt=f"prompt number {i}", **fields) for i in range(n)]


def spec(name: str, priority: int = 1, **limits: Any) -> ModelSpec:
    return ModelSpec(name, priority=priority, input_usd_per_1m=1.0, output_usd_per_1m=2.0, **limits)


class Run:
    """One engine run on the virtual clock: results, events, and when each call was sent."""

    def __init__(
        self,
        backend: FakeBackend,
        ladder: list[ModelSpec],
        reqs: Iterable[GenerationRequest],
        *,
        concurrency: int | str | None = None,
        cancel_when: Callable[[Event, list[Event]], bool] | None = None,
        **config: Any,
    ) -> None:
        self.events: list[Event] = []
        self.sent_at: list[tuple[float, str, str]] = []
        self.backend = backend
        token = CancelToken()
        original = backend.generate

        async def timed(request: GenerationRequest, model: str) -> Reply:
            self.sent_at.append((asyncio.get_running_loop().time(), model, request.id))
            return await original(request, model)

        backend.generate = timed  # type: ignore[method-assign]

        def listen(event: Event) -> None:
            self.events.append(event)
            if cancel_when is not None and cancel_when(event, self.events):
                token.cancel()

        retry = config.pop("retry", RetryPolicy(backoff=Backoff(0.5, 2.0, 4.0)))
        clock = config.pop("wall_clock", lambda: NOON_PACIFIC + asyncio.get_running_loop().time())
        self.engine = BatchEngine(
            backend,
            EngineConfig(ladder, plan_concurrency(concurrency, ladder), retry=retry, **config),
            listeners=[listen],
            cancel=token,
            rng=random.Random(7),
            wall_clock=clock,
        )
        self.total = len(reqs) if isinstance(reqs, list) else None

        async def main() -> tuple[list[Result], float]:
            out = [r async for r in self.engine.stream(reqs, self.total)]
            return out, asyncio.get_running_loop().time()

        self.results, self.elapsed = run_virtual(main())

    @property
    def by_id(self) -> dict[str, Result]:
        return {r.id: r for r in self.results}

    def calls_to(self, model: str) -> list[float]:
        return [t for t, m, _ in self.sent_at if m == model]

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


def max_in_any_window(times: list[float], window: float) -> int:
    times = sorted(times)
    return max((sum(1 for u in times if t <= u < t + window) for t in times), default=0)


def rate_limit(quota_id: str, delay: float | None, limit: int | None = None) -> BackendError:
    scope = "day" if "PerDay" in quota_id else "tokens" if "Token" in quota_id else "minute"
    kind = "quota_exhausted" if scope == "day" else "rate_limited"
    return BackendError(kind, "quota", 429, delay, (QuotaViolation(quota_id, scope, limit),))  # type: ignore[arg-type]


def test_paces_to_rpm_and_finishes_at_the_sliding_window_bound() -> None:
    run = Run(FakeBackend(latency_s=1.0), [spec("a", rpm=10)], requests(35))
    assert all(r.success for r in run.results)
    assert max_in_any_window(run.calls_to("a"), 60.0) == 10
    # A sliding window admits 10 at 0, 60, 120, 180 (+ margin); the last answer one latency later.
    assert 181.0 <= run.elapsed < 182.0


def test_preference_ladder_uses_the_combined_rate() -> None:
    ladder = [spec("a", 1, rpm=10), spec("b", 2, rpm=5)]
    run = Run(FakeBackend(latency_s=1.0), ladder, requests(30))
    assert len(run.calls_to("a")) == 20 and len(run.calls_to("b")) == 10
    assert run.elapsed < 62.0  # two windows of 15, not three windows of 10


def test_failover_routing_uses_a_lower_model_only_while_the_higher_is_unavailable() -> None:
    ladder = [spec("a", 1, rpm=10), spec("b", 2, rpm=5)]
    run = Run(FakeBackend(latency_s=1.0), ladder, requests(30), routing="failover")
    assert run.calls_to("b") == []
    assert len(run.calls_to("a")) == 30


def test_fixed_concurrency_caps_in_flight_and_still_paces() -> None:
    backend = FakeBackend(latency_s=5.0)
    run = Run(backend, [spec("a", rpm=20)], requests(40), concurrency=3)
    assert backend.max_in_flight == 3
    assert max_in_any_window(run.calls_to("a"), 60.0) <= 20


def test_seed_concurrency_sends_without_pacing() -> None:
    backend = FakeBackend(latency_s=1.0)
    run = Run(backend, [spec("a", rpm=2)], requests(9), concurrency="seed")
    assert backend.max_in_flight == 3  # min(10, max(3, floor(2*0.6*5/60)))
    assert run.elapsed == pytest.approx(3.0)  # unpaced: three rounds of one latency


def test_per_minute_429_parks_the_model_for_retry_delay_and_learns_the_limit() -> None:
    backend = FakeBackend(latency_s=0.5)
    backend.enqueue("a", *[FakeBackend.echo] * 4, rate_limit(PER_MINUTE, 7.5))
    run = Run(backend, [spec("a", rpm=10)], requests(6), concurrency=1)
    assert all(r.success for r in run.results)
    calls = run.calls_to("a")
    assert len(calls) == 7  # six requests plus the one rejected attempt
    rejected_at = calls[4]
    assert min(t for t in calls[5:]) >= rejected_at + 0.5 + 7.5
    learned = run.of(LimitLearned)
    # Four were accepted; without a quotaValue one refusal may at most halve the limit.
    assert [(e.metric, e.configured, e.learned) for e in learned] == [("rpm", 10, 5)]
    assert any(e.state == "parked" for e in run.of(ModelStateChanged))


def test_a_stated_quota_value_is_learned_as_the_limit() -> None:
    backend = FakeBackend(latency_s=0.5)
    backend.enqueue("a", FakeBackend.echo, rate_limit(PER_MINUTE, 30.0, limit=3))
    run = Run(backend, [spec("a", rpm=10)], requests(8), concurrency=1)
    assert [(e.metric, e.learned) for e in run.of(LimitLearned)] == [("rpm", 3)]
    assert max_in_any_window(run.calls_to("a")[2:], 60.0) == 3


def test_a_429_at_the_windows_edge_teaches_nothing() -> None:
    backend = FakeBackend(latency_s=0.5)
    backend.enqueue("a", FakeBackend.echo, rate_limit(PER_MINUTE, 0.2))
    run = Run(backend, [spec("a", rpm=10)], requests(4), concurrency=1)
    assert all(r.success for r in run.results)
    assert run.of(LimitLearned) == []


def test_per_day_429_exhausts_the_model_and_rotates_without_probing_it_again() -> None:
    backend = FakeBackend(latency_s=0.5)
    backend.enqueue("a", *[FakeBackend.echo] * 3, rate_limit(PER_DAY, 3600.0))
    ladder = [spec("a", 1, rpm=100), spec("b", 2, rpm=100)]
    run = Run(backend, ladder, requests(20), concurrency=1)
    assert all(r.success for r in run.results)
    assert len(run.calls_to("a")) == 4
    assert {r.model for r in run.results[4:]} == {"b"}
    exhausted = [e for e in run.of(ModelStateChanged) if e.state == "exhausted"]
    # Real days: the later of the retryDelay (an hour) and Google's midnight (in twelve hours,
    # less the 1.5 s the run took).
    assert exhausted and exhausted[0].until_s == pytest.approx(12 * 3600, abs=3)


def test_an_attempt_admitted_before_its_models_exhaustion_was_known_is_not_sent() -> None:
    # In a burst, one call's per-day 429 can be handled in the same turn of the event loop in
    # which another call to that model was admitted, before that one's task has run: the bench
    # (scenario 3) saw two such calls sent after the model was known to be exhausted. The
    # attempt looks again before it leaves; its slot is given back and the request requeued.
    backend = FakeBackend()
    ladder = [spec("a", 1, rpm=100, rpd=100), spec("b", 2, rpm=100)]
    engine = BatchEngine(backend, EngineConfig(ladder, plan_concurrency(None, ladder)))
    limiter = engine.limiters["a"]

    async def admitted_then_exhausted() -> None:
        now = asyncio.get_running_loop().time()
        slot = limiter.admit(now, 10)
        limiter.exhausted(now, None, now + 3600.0)  # another call's per-day 429, handled first
        work = _Work(requests(1)[0], 0, now, 10, ready_since=now)
        await engine._attempt(work, limiter, slot)
        assert list(engine._ready) == [work] and work.attempts == 0

    run_virtual(admitted_then_exhausted())
    assert backend.calls == []
    assert limiter.in_flight == 0 and limiter.used(0.0) == (0, 0, 0)  # the slot given back


def test_all_models_exhausted_stops_fast_and_marks_the_rest_not_run() -> None:
    backend = FakeBackend(latency_s=0.5)
    backend.enqueue("a", FakeBackend.echo, rate_limit(PER_DAY, 3600.0))
    backend.enqueue("b", rate_limit(PER_DAY, 3600.0))
    ladder = [spec("a", 1), spec("b", 2)]
    run = Run(backend, ladder, requests(50), concurrency=1)
    assert len(backend.calls) == 3
    assert run.by_id["r0"].success
    not_run = [r for r in run.results if not r.success]
    assert len(not_run) == 49 and {r.error.kind for r in not_run} == {"not_run"}  # type: ignore[union-attr]
    assert run.elapsed < 2.0
    assert run.of(BatchFinished)[0].not_run == 49


def test_server_errors_back_off_and_retry_until_success() -> None:
    backend = FakeBackend(latency_s=0.1)
    backend.enqueue(
        "a",
        BackendError("server_error", "boom", 500),
        BackendError("server_error", "overloaded", 503),
    )
    run = Run(backend, [spec("a")], requests(1))
    result = run.results[0]
    assert result.success and result.attempts == 3
    sends = run.calls_to("a")
    assert sends[1] - sends[0] >= 0.1 + 0.25  # backoff: uniform(initial/2, initial)
    assert [e.will_retry for e in run.of(AttemptFinished)] == [True, True, False]


def test_server_error_retry_delay_from_the_server_is_honoured() -> None:
    backend = FakeBackend()
    backend.enqueue("a", BackendError("server_error", "busy", 503, retry_delay_s=9.0))
    run = Run(backend, [spec("a")], requests(1))
    sends = run.calls_to("a")
    assert sends[1] - sends[0] == pytest.approx(9.0)


def test_transient_failures_are_bounded_by_max_attempts() -> None:
    backend = FakeBackend(
        default=lambda r, m: (_ for _ in ()).throw(BackendError("timeout", "slow"))
    )
    run = Run(
        backend, [spec("a")], requests(2), retry=RetryPolicy(max_attempts=3, backoff=Backoff(0.1))
    )
    assert [r.attempts for r in run.results] == [3, 3]
    assert {r.error.kind for r in run.results} == {"timeout"}  # type: ignore[union-attr]


def test_client_errors_fail_at_once() -> None:
    backend = FakeBackend()
    backend.enqueue(
        "a",
        BackendError("invalid_request", "bad field", 400),
        BackendError("not_found", "no model", 404),
    )
    run = Run(backend, [spec("a")], requests(3), concurrency=1)
    kinds = [r.error.kind if r.error else "ok" for r in run.results]
    assert kinds == ["invalid_request", "not_found", "ok"]
    assert len(backend.calls) == 3


def test_invalid_api_key_aborts_the_batch_with_a_clear_error() -> None:
    backend = FakeBackend(latency_s=0.1)
    key_error = BackendError("invalid_request", "API key not valid.", 400, api_key_invalid=True)
    backend.enqueue("a", key_error)
    with pytest.raises(InvalidApiKeyError, match="GEMINI_API_KEY"):
        Run(backend, [spec("a")], requests(100), concurrency=1)
    assert len(backend.calls) == 1


def test_truncation_and_safety_blocks_are_their_own_kinds_and_not_retried() -> None:
    backend = FakeBackend()
    backend.enqueue(
        "a",
        Reply("half a scr", "MAX_TOKENS", Usage(10, 50)),
        Reply(None, "SAFETY", Usage(10, 0)),
        Reply(None, "STOP", Usage(10, 0), block_reason="PROHIBITED_CONTENT"),
    )
    run = Run(backend, [spec("a")], requests(3), concurrency=1)
    assert [r.error.kind for r in run.results] == ["truncated", "blocked", "blocked"]  # type: ignore[union-attr]
    assert run.results[0].text == "half a scr" and run.results[0].finish_reason == "MAX_TOKENS"
    assert [r.attempts for r in run.results] == [1, 1, 1]
    assert run.results[0].cost_usd == pytest.approx((10 * 1.0 + 50 * 2.0) / 1e6)  # billed


class Scene(BaseModel):
    heading: str
    seconds: int


def test_structured_output_is_parsed_and_invalid_json_is_retried_then_reported() -> None:
    good = Reply('{"heading": "Dawn", "seconds": 12}', "STOP", Usage(5, 9))
    bad = Reply('{"heading": "Dawn", "seconds": ', "STOP", Usage(5, 4))
    seen: Counter[str] = Counter()

    def answer(request: GenerationRequest, model: str) -> Reply:
        seen[request.id] += 1
        return good if request.id == "r0" and seen["r0"] == 2 else bad

    run = Run(
        FakeBackend(default=answer),
        [spec("a")],
        requests(2, schema=Scene),
        retry=RetryPolicy(max_attempts=3, backoff=Backoff(0.1)),
    )
    first, second = run.by_id["r0"], run.by_id["r1"]
    assert first.success and first.data == Scene(heading="Dawn", seconds=12) and first.attempts == 2
    assert not second.success and second.error.kind == "invalid_json" and second.attempts == 3  # type: ignore[union-attr]
    assert second.usage == Usage(15, 12)  # every billed attempt counts


def test_timeout_is_enforced_by_the_engine() -> None:
    backend = FakeBackend(latency_s=lambda r, m: 100.0 if r.id == "r0" else 0.1)
    run = Run(
        backend,
        [spec("a")],
        requests(2),
        timeout_s=5.0,
        retry=RetryPolicy(max_attempts=2, backoff=Backoff(0.1)),
    )
    assert run.by_id["r0"].error.kind == "timeout" and run.by_id["r0"].attempts == 2  # type: ignore[union-attr]
    assert run.by_id["r1"].success


def test_consecutive_server_failures_cool_the_model_and_traffic_moves_down_the_ladder() -> None:
    backend = FakeBackend()
    backend.enqueue("a", *[BackendError("server_error", "overloaded", 503)] * 3)
    ladder = [spec("a", 1), spec("b", 2)]
    run = Run(backend, ladder, requests(6), concurrency=1)
    assert all(r.success for r in run.results)
    assert any(e.state == "cooling" and e.model == "a" for e in run.of(ModelStateChanged))
    assert "b" in {r.model for r in run.results}


def test_budget_stops_admission_before_it_would_be_crossed() -> None:
    backend = FakeBackend(default=lambda r, m: Reply("x" * 40, "STOP", Usage(100, 1000)))
    # Each request reserves 8 + len(prompt)//4 input and 1000 output tokens: ~$0.00201 here.
    run = Run(backend, [spec("a")], requests(10), concurrency=1, budget_usd=0.0065)
    spent = sum(r.cost_usd for r in run.results)
    assert spent <= 0.0065
    assert sum(r.success for r in run.results) == 3
    assert {r.error.kind for r in run.results if not r.success} == {"not_run"}  # type: ignore[union-attr]
    assert "budget" in run.results[-1].error.message  # type: ignore[union-attr]


def test_a_budget_with_many_in_flight_is_spent_as_far_as_with_one_and_never_crossed() -> None:
    # Each call reserves ~$0.002 (1,000 output tokens) but costs $0.0005: at 16 in flight the
    # reservations alone would cross $0.02 at the tenth request.
    def budgeted_run(concurrency: int) -> Run:
        backend = FakeBackend(
            default=lambda r, m: Reply("x" * 40, "STOP", Usage(100, 200)),
            latency_s=lambda r, m: 1.0 + int(r.id[1:]) % 7 * 0.3,
        )
        return Run(backend, [spec("a")], requests(100), concurrency=concurrency, budget_usd=0.02)

    one, many = budgeted_run(1), budgeted_run(16)
    spent_one = sum(r.cost_usd or 0.0 for r in one.results)
    spent_many = sum(r.cost_usd or 0.0 for r in many.results)
    assert many.backend.max_in_flight > 4  # really concurrent, not one at a time
    assert spent_one <= spent_many <= 0.02
    assert sum(r.success for r in many.results) >= sum(r.success for r in one.results) == 36
    stopped = [r for r in many.results if not r.success]
    assert stopped and {r.error.kind for r in stopped} == {"not_run"}  # type: ignore[union-attr]
    assert all("budget" in r.error.message for r in stopped)  # type: ignore[union-attr]
    (finished,) = many.of(BatchFinished)
    assert finished.cost_usd == pytest.approx(spent_many)


def test_a_budget_without_max_output_tokens_reserves_the_longest_answer_seen() -> None:
    # A thinking model answers past the expected 1,024 output tokens: 300 words and 1,200
    # thoughts, $0.0031 a call, while a reservation of 1,024 tokens is ~$0.0021.
    backend = FakeBackend(default=lambda r, m: Reply("x" * 40, "STOP", Usage(100, 300, 1200)))
    expected = spec("a").cost_usd(Usage(11, 1024))
    per_call = spec("a").cost_usd(Usage(100, 300, 1200))
    assert expected is not None and per_call is not None and per_call > expected
    budget = 3 * per_call + 1.05 * expected  # room for one more 1,024-token reservation
    run = Run(backend, [spec("a")], requests(10), concurrency=1, budget_usd=budget)
    spent = sum(r.cost_usd or 0.0 for r in run.results)
    assert spent <= budget
    assert sum(r.success for r in run.results) == 3
    assert all("budget" in r.error.message for r in run.results if r.error)


def test_a_model_failing_over_a_thousand_times_in_a_row_keeps_cooling_and_the_batch_ends() -> None:
    # 220 requests x 6 attempts of 500s on one model: its cooldown is drawn from the backoff
    # at 1,300 failures in a row, where 2.0 ** n had overflowed (OverflowError, no results).
    backend = FakeBackend(default=lambda r, m: _raise(BackendError("server_error", "boom", 500)))
    retry = RetryPolicy(backoff=Backoff(0.001, 2.0, 0.002))
    run = Run(backend, [spec("a")], requests(220), concurrency=8, retry=retry)
    assert len(backend.calls) == 220 * 6
    assert {r.error.kind for r in run.results if r.error} == {"server_error"}
    assert len(run.results) == 220


def _raise(error: BaseException) -> Reply:
    raise error


def test_results_keep_ids_indexes_usage_cost_and_timings() -> None:
    backend = FakeBackend(latency_s=lambda r, m: 3.0 - int(r.id[1:]))
    run = Run(backend, [spec("a")], requests(3))
    assert [r.id for r in run.results] == ["r2", "r1", "r0"]  # finish order
    r0 = run.by_id["r0"]
    assert r0.index == 0 and r0.model == "a" and r0.attempts == 1
    assert r0.latency_ms == pytest.approx(3000.0)
    assert r0.queue_ms == pytest.approx(0.0)
    assert r0.cost_usd == pytest.approx(spec("a").cost_usd(r0.usage))
    assert r0.tokens == {"input": r0.usage.input, "output": r0.usage.output}


def test_cancel_stops_admission_and_marks_everything_else_not_run() -> None:
    backend = FakeBackend(latency_s=1.0)

    def after_four(event: Event, events: list[Event]) -> bool:
        return sum(isinstance(e, RequestFinished) for e in events) == 4

    run = Run(backend, [spec("a")], requests(20), concurrency=2, cancel_when=after_four)
    assert len(run.results) == 20 and len({r.id for r in run.results}) == 20
    done = [r for r in run.results if r.success]
    assert 4 <= len(done) <= 6
    assert len(backend.calls) <= 6
    assert run.engine.status == "cancelled"
    assert run.of(BatchFinished)[0].status == "cancelled"


def test_chunk_size_finishes_each_chunk_before_the_next_starts() -> None:
    backend = FakeBackend(latency_s=lambda r, m: 1.0 + int(r.id[1:]) % 3)
    run = Run(backend, [spec("a")], requests(9), chunk_size=4)
    finished = {r.id: r for r in run.results}
    sent = {rid: t for t, _, rid in run.sent_at}
    chunk_end = max(sent[f"r{i}"] + finished[f"r{i}"].latency_ms / 1000 for i in range(4))  # type: ignore[operator]
    assert min(sent[f"r{i}"] for i in range(4, 8)) >= chunk_end


def test_a_generator_is_consumed_lazily_with_bounded_in_flight() -> None:
    pulled: list[int] = []

    def lazy() -> Iterator[GenerationRequest]:
        for i in range(2000):
            pulled.append(i)
            yield GenerationRequest(id=str(i), prompt=f"p{i}")

    backend = FakeBackend(latency_s=1.0)
    run = Run(backend, [spec("a")], lazy(), concurrency=16)
    assert len(run.results) == 2000 and all(r.success for r in run.results)
    assert backend.max_in_flight == 16
    assert run.of(BatchFinished)[0].total == 2000
    assert Counter(rid for _, _, rid in run.sent_at).most_common(1)[0][1] == 1


def test_memory_does_not_grow_with_the_number_of_requests() -> None:
    def peak_for(n: int) -> int:
        reqs = (GenerationRequest(id=str(i), prompt=f"p{i}") for i in range(n))

        async def main() -> int:
            engine = BatchEngine(
                FakeBackend(latency_s=0.5, keep_calls=False),
                EngineConfig([spec("a")], plan_concurrency(64, [spec("a")])),
            )
            return sum([1 async for _ in engine.stream(reqs)])

        tracemalloc.start()
        try:
            assert run_virtual(main()) == n
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, large = peak_for(1_000), peak_for(10_000)
    assert large < small * 1.5  # ten times the requests, about the same peak


def test_a_failing_listener_stops_the_batch_and_its_error_is_raised() -> None:
    def broken(event: Event) -> None:
        if isinstance(event, AttemptFinished):
            raise RuntimeError("disk full")

    async def main() -> None:
        engine = BatchEngine(
            FakeBackend(latency_s=0.1),
            EngineConfig([spec("a")], plan_concurrency(2, [spec("a")])),
            listeners=[broken],
        )
        async for _ in engine.stream(requests(10), 10):
            pass

    with pytest.raises(RuntimeError, match="disk full"):
        run_virtual(main())


def test_a_pinned_request_goes_only_to_its_model() -> None:
    reqs = [*requests(3), GenerationRequest(id="pinned", prompt="x", model="b")]
    run = Run(FakeBackend(), [spec("a", 1), spec("b", 2)], reqs)
    assert run.by_id["pinned"].model == "b"
    assert {run.by_id[f"r{i}"].model for i in range(3)} == {"a"}


def test_a_prompt_larger_than_every_model_allows_fails_as_too_large() -> None:
    big = GenerationRequest(id="big", prompt="word " * 4000)
    run = Run(FakeBackend(), [spec("a", tpm=500)], [big, *requests(1)])
    assert run.by_id["big"].error.kind == "too_large"  # type: ignore[union-attr]
    assert run.by_id["r0"].success


def test_cancel_is_prompt_even_with_long_calls_and_pending_retries() -> None:
    backend = FakeBackend(latency_s=lambda r, m: 1.0 if r.id == "r0" else 600.0)
    backend.enqueue("a", BackendError("server_error", "busy", 503, retry_delay_s=300.0))

    def on_first_retry(event: Event, events: list[Event]) -> bool:
        return isinstance(event, AttemptFinished) and event.will_retry

    run = Run(backend, [spec("a")], requests(6), cancel_when=on_first_retry, concurrency=6)
    assert run.elapsed < 2.0  # neither the 600 s calls nor the 300 s retry were waited for
    assert {r.error.kind for r in run.results} == {"not_run"}  # type: ignore[union-attr]
    assert len(run.results) == 6


def test_a_resolver_serves_earlier_results_without_sending_them() -> None:
    def resolve(index: int, request: GenerationRequest) -> Result | None:
        if index % 2:
            return None
        return Result(id=request.id, index=index, success=True, text="from before", cached=True)

    backend = FakeBackend()
    reqs = requests(6)
    events: list[Event] = []

    async def main() -> list[Result]:
        engine = BatchEngine(
            backend,
            EngineConfig([spec("a")], plan_concurrency(None, [spec("a")])),
            listeners=[events.append],
            resolve=resolve,
        )
        return [r async for r in engine.stream(reqs, 6)]

    results = {r.id: r for r in run_virtual(main())}
    assert sorted(rid for _, rid in backend.calls) == ["r1", "r3", "r5"]
    assert [results[f"r{i}"].cached for i in range(6)] == [True, False] * 3
    assert results["r2"].text == "from before" and results["r2"].index == 2
    finished = next(e for e in events if isinstance(e, BatchFinished))
    assert finished.succeeded == 6


def test_quota_used_by_earlier_batches_is_carried_over() -> None:
    earlier = {
        "a": ModelHistory(sent=tuple((5.0, 10) for _ in range(10))),
        "b": ModelHistory(exhausted_for_s=100.0),
    }
    ladder = [spec("a", 1, rpm=10), spec("b", 2, rpm=10)]
    run = Run(FakeBackend(), ladder, requests(3), history=earlier)
    assert run.calls_to("b") == []  # still out of daily quota
    assert min(run.calls_to("a")) >= 55.0  # the window was already full five seconds ago


def test_each_attempt_records_how_long_it_waited_for_its_turn() -> None:
    backend = FakeBackend(latency_s=1.0)
    run = Run(backend, [spec("a", rpm=2)], requests(3))
    waits = sorted(e.attempt.queue_ms for e in run.of(AttemptFinished))
    assert waits[:2] == [0.0, 0.0]
    assert waits[2] == pytest.approx(60_000 + 300, abs=1)  # a window plus the 0.5% margin


def test_attempts_cancelled_in_flight_are_reported() -> None:
    def on_first_finish(event: Event, events: list[Event]) -> bool:
        return isinstance(event, RequestFinished)

    backend = FakeBackend(latency_s=lambda r, m: 1.0 if r.id == "r0" else 50.0)
    run = Run(backend, [spec("a")], requests(4), cancel_when=on_first_finish, concurrency=4)
    ended = [e.attempt for e in run.of(AttemptFinished)]
    assert len(ended) == len(backend.calls) == 4  # every call sent is an attempt on record
    cut = [a for a in ended if a.failure and a.failure.kind == "not_run"]
    assert len(cut) == 3 and {a.failure.message for a in cut} == {"cancelled while in flight"}  # type: ignore[union-attr]
    assert {r.error.message for r in run.results if r.error} == {"cancelled while in flight"}


# --- cost as billed ----------------------------------------------------------------------------


def test_a_model_of_unknown_price_costs_none_never_zero() -> None:
    run = Run(FakeBackend(), [ModelSpec("new", priority=1)], requests(3))
    assert all(r.success and r.cost_usd is None for r in run.results)
    assert all(e.attempt.cost_usd is None for e in run.of(AttemptFinished))
    (finished,) = run.of(BatchFinished)
    assert finished.cost_usd == 0.0  # the known part: nothing was priced


def test_a_budget_cannot_be_kept_with_a_model_of_unknown_price() -> None:
    run = Run(FakeBackend(), [ModelSpec("new", priority=1)], requests(2), budget_usd=1.0)
    assert [r.error.kind for r in run.results] == ["not_run", "not_run"]  # type: ignore[union-attr]
    assert "price is unknown" in run.results[0].error.message  # type: ignore[union-attr]
    assert run.sent_at == []


def test_a_call_is_priced_on_its_pacific_day(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SCRIPTGEN_TODAY", raising=False)
    dated = ModelSpec(
        "m",
        priority=1,
        input_usd_per_1m=2.0,
        output_usd_per_1m=2.0,
        prices=[{"until": "2026-12-31", "input_usd_per_1m": 1.0, "output_usd_per_1m": 1.0}],
    )
    answer = Reply("ok", "STOP", Usage(1_000_000, 0))
    new_years_eve = datetime.fromisoformat("2026-12-31T23:30:00-08:00").timestamp()
    for moment, price in ((new_years_eve, 1.0), (new_years_eve + 3600, 2.0)):
        backend = FakeBackend(default=lambda r, m: answer)
        run = Run(backend, [dated], requests(1), wall_clock=lambda at=moment: at)
        assert run.results[0].cost_usd == pytest.approx(price)


def test_cached_input_is_billed_at_its_price_and_kept_in_the_usage() -> None:
    priced = ModelSpec(
        "m", priority=1, input_usd_per_1m=1.0, output_usd_per_1m=1.0, cached_input_usd_per_1m=0.1
    )
    backend = FakeBackend(default=lambda r, m: Reply("ok", "STOP", Usage(1_000_000, 0, 0, 500_000)))
    (result,) = Run(backend, [priced], requests(1)).results
    assert result.usage.cached == 500_000
    assert result.cost_usd == pytest.approx(0.5 * 1.0 + 0.5 * 0.1)
