"""The engine with the real google-genai SDK over real HTTP against the emulator.

Quota windows are compressed (a "minute" of a second or two) so pacing, parking and rotation
play out in seconds; the emulator's counters check the client from the outside.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import scriptgen_nb as sg
from scriptgen_nb.emulator import Emulator, EmulatorConfig, FaultConfig, ModelConfig
from scriptgen_nb.engine.policy import Backoff
from scriptgen_nb.engine.values import AttemptFinished
from scriptgen_nb.progress import ProgressState, format_summary
from tests.google_errors import PER_DAY, PER_MINUTE

pytestmark = pytest.mark.integration

KEY = "test-key"


def emulator(minute_s: float = 60.0, day_s: float = 86_400.0, **models: ModelConfig) -> Emulator:
    config = EmulatorConfig(
        seed=1, api_keys=(KEY,), minute_s=minute_s, day_s=day_s, hang_s=5.0, models=models
    )
    return Emulator(config)


def spec(
    name: str, priority: int, minute_s: float = 60.0, day_s: float = 86_400.0, **limits: Any
) -> sg.ModelSpec:
    return sg.ModelSpec(
        name,
        priority=priority,
        input_usd_per_1m=0.3,
        output_usd_per_1m=2.5,
        minute_s=minute_s,
        day_s=day_s,
        **limits,
    )


def run(emu: Emulator, n: int, models: list[sg.ModelSpec], **options: Any) -> sg.ResultList:
    reqs = sg.create_batch_requests(
        [f"Write scene {i} of a video about lighthouses." for i in range(n)]
    )
    return sg.batch_generate(reqs, models=models, base_url=emu.base_url, api_key=KEY, **options)


def model_counters(emu: Emulator, name: str) -> dict[str, Any]:
    counters: dict[str, Any] = emu.counters()["models"][name]
    return counters


def test_pacing_keeps_to_the_rate_limit_without_a_429_storm() -> None:
    with emulator(minute_s=1.0, fast=ModelConfig(rpm=10, latency_base_s=0.05)) as emu:
        started = time.monotonic()
        results = run(emu, 30, [spec("fast", 1, minute_s=1.0, rpm=10)])
        elapsed = time.monotonic() - started
        counters = model_counters(emu, "fast")
    assert all(r.success for r in results)
    assert counters["requests"] == 30 and sum(counters["rate_limited"].values()) == 0
    assert elapsed >= 2.0  # three windows of ten: the third cannot start before t = 2 s
    assert all(r.text and r.usage.output > 0 and r.cost_usd > 0 for r in results)


def test_retry_delay_is_honoured_when_the_configured_limit_is_too_high(tmp_path: Path) -> None:
    progress = ProgressState()
    with emulator(minute_s=1.0, slow=ModelConfig(rpm=4, latency_base_s=0.02)) as emu:
        events: list[Any] = []
        results = run(
            emu,
            12,
            [spec("slow", 1, minute_s=1.0, rpm=20)],
            listeners=[events.append, progress],
            db=tmp_path / "log.duckdb",
        )
        counters = model_counters(emu, "slow")
    assert all(r.success for r in results)
    # The first burst sends 12 where the service takes 4: 8 are refused. The limit is learned
    # from that and no later window is overrun.
    assert counters["rate_limited"].get(PER_MINUTE, 0) == 8
    assert counters["requests"] == 20
    learned = [e for e in events if type(e).__name__ == "LimitLearned"]
    assert learned and learned[-1].learned == 4  # from quotaValue, or from what the window held
    attempts = [e.attempt for e in events if isinstance(e, AttemptFinished)]
    refused = [a for a in attempts if a.failure and a.failure.kind == "rate_limited"]
    assert all(a.retry_delay_s and 0 < a.retry_delay_s <= 1.0 for a in refused)
    for r in refused:  # once a refusal is back, nothing is sent before its stated delay
        after = [a.started_at for a in attempts if a.started_at > r.finished_at]
        assert all(t >= r.finished_at + (r.retry_delay_s or 0) - 0.01 for t in after)
    # The learned limit is said where users look: the log and the progress views.
    logged = sg.CallStore(tmp_path / "log.duckdb").learned_limits()
    assert logged[["model", "metric", "configured"]].values.tolist()[0] == ["slow", "rpm", 20]
    assert logged["learned"].iloc[-1] == 4
    said = (
        r"slow: rpm 4 \((stated by the service|stated in the 429's message|lowered: 429s "
        r"without a figure); catalogue 20\)"
    )
    assert re.search(said, format_summary(progress.snapshot()))


def test_rotation_when_the_first_models_day_quota_runs_out() -> None:
    with emulator(day_s=30.0, first=ModelConfig(rpd=5), second=ModelConfig()) as emu:
        results = run(emu, 20, [spec("first", 1), spec("second", 2)], max_concurrency=2)
        first, second = model_counters(emu, "first"), model_counters(emu, "second")
    assert all(r.success for r in results)
    assert first["successes"] == 5
    # Each request that met the exhausted quota in flight got one 429; none probed it later.
    assert first["rate_limited"].get(PER_DAY, 0) <= 2
    assert first["requests"] == 5 + first["rate_limited"].get(PER_DAY, 0)
    assert second["successes"] == 15


def test_all_exhausted_marks_the_rest_not_run_without_calls() -> None:
    with emulator(day_s=30.0, only=ModelConfig(rpd=3)) as emu:
        results = run(emu, 10, [spec("only", 1)], max_concurrency=1)
        counters = model_counters(emu, "only")
    assert [r.success for r in results] == [True] * 3 + [False] * 7
    assert {r.error.kind for r in results[3:]} == {"not_run"}  # type: ignore[union-attr]
    assert counters["requests"] == 4


FAULTS = FaultConfig(
    p_500=0.15,
    p_503=0.1,
    p_malformed=0.05,
    p_reset=0.03,
    p_hang=0.02,
    p_truncate=0.03,
    p_block=0.03,
)


def test_faults_every_request_ends_exactly_once_and_retryable_ones_succeed() -> None:
    events: list[Any] = []
    with emulator(model=ModelConfig(latency_base_s=0.01, faults=FAULTS)) as emu:
        results = run(
            emu,
            120,
            [spec("model", 1)],
            timeout_s=1.0,
            max_attempts=10,
            backoff=Backoff(initial_s=0.05, factor=2.0, max_s=0.4),
            listeners=[events.append],
        )
        counters = model_counters(emu, "model")
    assert [r.id for r in results] == [str(i) for i in range(120)]
    kinds = {r.error.kind for r in results if r.error}  # type: ignore[union-attr]
    assert kinds <= {"truncated", "blocked"}
    assert kinds  # the matrix did produce non-retryable outcomes
    assert sum(r.success for r in results) >= 100
    assert sum(r.attempts for r in results) == counters["requests"]
    assert counters["faults"]  # faults were really injected
    attempts = [e for e in events if isinstance(e, AttemptFinished)]
    assert len(attempts) == counters["requests"]
    final_kinds = {
        e.attempt.failure.kind for e in attempts if e.attempt.failure and not e.will_retry
    }
    assert final_kinds == kinds  # truncation and blocks end a request at once
    retried = {e.attempt.failure.kind for e in attempts if e.attempt.failure and e.will_retry}
    assert {"server_error", "malformed_response", "timeout", "connection"} <= retried


def test_invalid_key_fails_fast() -> None:
    with emulator(model=ModelConfig(latency_base_s=0.01)) as emu:
        reqs = sg.create_batch_requests([f"p{i}" for i in range(50)])
        with pytest.raises(sg.InvalidApiKeyError, match="API key not valid"):
            sg.batch_generate(
                reqs,
                models=[spec("model", 1)],
                base_url=emu.base_url,
                api_key="wrong-key",
                max_concurrency=2,
            )
        assert emu.counters()["models"]["model"]["requests"] <= 2


class Scene(BaseModel):
    heading: str
    narration: str
    seconds: int


class Script(BaseModel):
    title: str
    scenes: list[Scene]


def test_structured_output_is_parsed_into_the_schema() -> None:
    with emulator(model=ModelConfig()) as emu:
        reqs = sg.create_batch_requests(["Script about tides", "Script about moss"], schema=Script)
        results = sg.batch_generate(
            reqs, models=[spec("model", 1)], base_url=emu.base_url, api_key=KEY
        )
    assert all(r.success for r in results)
    assert all(isinstance(r.data, Script) and r.data.scenes for r in results)


def test_plain_strings_run_through_the_real_sdk_from_a_list_and_a_generator() -> None:
    async def streamed(where: dict[str, Any]) -> list[sg.Result]:
        prompts = (f"Write about {topic}." for topic in ("fog", "kelp"))
        return [r async for r in sg.aiter_generate(prompts, **where)]

    with emulator(model=ModelConfig()) as emu:
        where = {"models": [spec("model", 1)], "base_url": emu.base_url, "api_key": KEY}
        listed = sg.batch_generate(["Write about tides.", "Write about moss."], **where)
        from_generator = asyncio.run(streamed(where))
        seen = model_counters(emu, "model")["requests"]
    assert [r.id for r in listed] == ["0", "1"] and all(r.text for r in listed)
    assert sorted(r.id for r in from_generator) == ["0", "1"]
    assert all(r.success for r in from_generator) and seen == 4


def test_environment_variables_select_endpoint_and_key(monkeypatch: pytest.MonkeyPatch) -> None:
    with emulator(model=ModelConfig()) as emu:
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", emu.base_url)
        monkeypatch.delenv("GEMINI_API_KEY", raising=False)
        monkeypatch.setenv("GOOGLE_API_KEY", KEY)
        results = sg.batch_generate(sg.create_batch_requests(["hello"]), models=[spec("model", 1)])
    assert results[0].success


def test_a_generator_streams_through_the_real_sdk_with_bounded_outstanding_requests() -> None:
    pulled = 0
    consumed = 0
    most_outstanding = 0

    def prompts() -> Iterator[sg.GenerationRequest]:
        nonlocal pulled, most_outstanding
        for i in range(1_000):
            pulled += 1
            most_outstanding = max(most_outstanding, pulled - consumed)
            yield sg.GenerationRequest(id=str(i), prompt=f"line {i}", max_output_tokens=16)

    with emulator(model=ModelConfig()) as emu:
        ended = 0
        for result in sg.iter_generate(
            prompts(),
            models=[spec("model", 1)],
            base_url=emu.base_url,
            api_key=KEY,
            max_concurrency=32,
        ):
            consumed += 1
            ended += result.success or (
                result.error is not None and result.error.kind == "truncated"
            )
        counters = model_counters(emu, "model")
    assert consumed == ended == counters["requests"] == 1_000
    assert counters["max_in_flight"] <= 32
    # In flight (32) plus the hand-off queue to this thread (1024): independent of the batch size.
    assert most_outstanding <= 32 + 1024 + 2


def test_the_api_key_never_appears_in_errors_events_or_reprs() -> None:
    secret = "AIzaSy-super-secret-key-0123456789"
    events: list[Any] = []
    with emulator(model=ModelConfig()) as emu:
        reqs = sg.create_batch_requests(["p0", "p1"])
        with pytest.raises(sg.InvalidApiKeyError) as caught:
            sg.batch_generate(
                reqs,
                models=[spec("model", 1)],
                base_url=emu.base_url,
                api_key=secret,
                listeners=[events.append],
                max_concurrency=1,
            )
    from scriptgen_nb.api import BatchOptions
    from scriptgen_nb.engine.backend import GeminiBackend

    seen = [
        str(caught.value),
        repr(caught.value),
        *map(repr, events),
        repr(BatchOptions(api_key=secret)),
        repr(GeminiBackend(secret)),
    ]
    assert events and not [text for text in seen if secret in text]


def test_a_request_is_stamped_at_hand_over_and_again_once_its_body_is_written() -> None:
    from scriptgen_nb.engine.backend import SEND_HOOK, GeminiBackend

    stamps: dict[str, list[float]] = {}

    async def send_all(base_url: str) -> None:
        backend = GeminiBackend(KEY, base_url=base_url, max_connections=4)

        async def one(i: int) -> None:
            mine = stamps.setdefault(f"r{i}", [])
            SEND_HOOK.set(lambda: mine.append(time.monotonic()))  # this task's context only
            await backend.generate(sg.GenerationRequest(f"r{i}", f"prompt {i}"), "fast")

        await asyncio.gather(*(one(i) for i in range(8)))
        await backend.aclose()

    with emulator(fast=ModelConfig()) as emu:
        asyncio.run(send_all(emu.base_url))
    assert set(stamps) == {f"r{i}" for i in range(8)}
    for handed_over, written in stamps.values():  # two stamps each, the second no earlier
        assert written >= handed_over
