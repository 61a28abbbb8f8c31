"""The real service's ugly cases in the emulator, over real HTTP with the real google-genai SDK.

Tiers and their quota names, 429s without details and storms of them, the billing stop,
non-transient refusals, retired models, Google's Pacific days, thinking that shares
maxOutputTokens, implicit caching, blocked prompts, 504/499 and odd finish reasons, the API
version counter and live account changes (notes/genai_sdk.md section 9).
"""

from __future__ import annotations

import datetime
import json
import zoneinfo
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google import genai
from google.genai import errors, types

from scriptgen_nb.emulator import (
    ConfigError,
    Emulator,
    EmulatorConfig,
    FaultConfig,
    ModelConfig,
    caching,
    default_config,
    default_models,
    google_retirements,
)
from scriptgen_nb.emulator.__main__ import main as cli_main
from scriptgen_nb.emulator.caching import PrefixCache
from scriptgen_nb.emulator.config import GOOGLE_SHUT_DOWN
from scriptgen_nb.emulator.tokens import count_tokens
from tests.test_emulator import (
    FLASH,
    KEY,
    LITE,
    PROMPT,
    RPD_ID,
    RPM_ID,
    config,
    detail,
    generate_raw,
    raw,
    sdk,
)

pytestmark = pytest.mark.integration

BARE_429 = {
    "error": {
        "code": 429,
        "message": "Resource has been exhausted (e.g. check quota).",
        "status": "RESOURCE_EXHAUSTED",
    }
}
BILLING_429 = {
    "error": {
        "code": 429,
        "message": "Your prepayment credits are depleted. Please go to AI Studio at "
        "https://ai.studio/projects to manage your project and billing.",
        "status": "RESOURCE_EXHAUSTED",
    }
}
INLINE_BATCH = {
    "batch": {"inputConfig": {"requests": {"requests": [{"request": {"contents": "hi"}}]}}}
}


class Clock:
    """A clock a test moves by hand (monotonic or wall)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def flash(**fields: Any) -> EmulatorConfig:
    """Instant answers, one key, one thinking model FLASH with `fields`."""
    return config(**{FLASH: ModelConfig(thinking=True, **fields)})


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(flash()) as emulator:
        yield emulator


@pytest.fixture
def client(emu: Emulator) -> Iterator[genai.Client]:
    with sdk(emu) as c:
        yield c


def batch_raw(emu: Emulator, model: str = FLASH) -> tuple[int, Any]:
    status, _, data = raw(emu, "POST", f"/v1beta/models/{model}:batchGenerateContent", INLINE_BATCH)
    return status, json.loads(data)


def generating_errors(client: genai.Client) -> list[Any]:
    """The error bodies a generate call and a streamed one (the SDK raising) answer with."""
    bodies = []
    for stream in (False, True):
        with pytest.raises(errors.APIError) as info:
            if stream:
                list(client.models.generate_content_stream(model=FLASH, contents=PROMPT))
            else:
                client.models.generate_content(model=FLASH, contents=PROMPT)
        bodies.append(info.value.details)
    return bodies


def model_counts(emu: Emulator, model: str = FLASH) -> dict[str, Any]:
    counts: dict[str, Any] = emu.counters()["models"][model]
    return counts


# -- tiers: quota names and hidden limits --------------------------------------------------------


def test_tier1_429s_carry_the_paid_quota_names() -> None:
    cfg = EmulatorConfig(
        latency_scale=0,
        api_keys=(KEY,),
        minute_s=1.0,
        day_s=20.0,
        tier="tier1",
        models={FLASH: ModelConfig(rpm=1, tpm=15, rpd=1)},
    )
    with Emulator(cfg) as emu, sdk(emu) as client:
        client.models.generate_content(model=FLASH, contents=PROMPT)
        with pytest.raises(errors.ClientError) as info:
            client.models.generate_content(model=FLASH, contents=PROMPT)
        counted = model_counts(emu)
    names = {
        v["quotaId"]: v["quotaMetric"]
        for v in detail(info.value.details, "QuotaFailure")["violations"]
    }
    metric = "generativelanguage.googleapis.com/generate_content_paid_tier_"
    assert names == {
        "GenerateRequestsPerMinutePerProjectPerModel": metric + "requests",
        "GenerateContentPaidTierInputTokensPerModelPerMinute": metric + "input_token_count",
        "GenerateRequestsPerDayPerProjectPerModel": metric + "requests",
    }
    assert "FreeTier" not in json.dumps(info.value.details) and "free_tier" not in str(info.value)
    assert set(counted["rate_limited"]) == set(names)


def test_default_models_per_tier() -> None:
    free, tier1 = default_models(), default_models("tier1")
    assert free == dict(default_config().models) and list(free) == list(tier1)
    limits = {name: (m.rpm, m.tpm, m.rpd) for name, m in tier1.items()}
    assert limits["gemini-3.8-flash"] == (1000, 1_000_000, 10_000)
    assert limits["gemini-3.5-flash-lite"] == (4000, 4_000_000, None)
    for name, model in free.items():
        assert model.rpm is not None and (tier1[name].rpm or 0) >= 10 * model.rpm
        assert tier1[name].latency_base_s == model.latency_base_s
    assert EmulatorConfig.from_mapping({"tier": "tier1"}).models == tier1
    with pytest.raises(ConfigError, match="tier must be one of 'free', 'tier1', got 'gold'"):
        default_models("gold")


def test_hidden_limit_is_the_emulators_not_the_clients() -> None:
    # The free-tier names with a limit no catalogue publishes: the 429 states what is enforced.
    with Emulator(flash(rpm=3)) as emu:
        assert [generate_raw(emu, f"p{i}")[0] for i in range(3)] == [200] * 3
        status, body = generate_raw(emu, "p3")
    (violation,) = detail(body, "QuotaFailure")["violations"]
    assert status == 429 and violation["quotaId"] == RPM_ID
    assert "limit: 3, model: gemini-2.5-flash" in body["error"]["message"]


# -- 429s without details, storms, billing -------------------------------------------------------


def test_bare_quota_errors_have_no_details_but_are_counted() -> None:
    cfg = EmulatorConfig(
        latency_scale=0, api_keys=(KEY,), quota_errors="bare", models={FLASH: ModelConfig(rpm=1)}
    )
    with Emulator(cfg) as emu, sdk(emu) as client:
        client.models.generate_content(model=FLASH, contents="one")
        with pytest.raises(errors.ClientError) as info:
            client.models.generate_content(model=FLASH, contents="two")
        counted = model_counts(emu)
    assert info.value.code == 429 and info.value.details == BARE_429
    assert info.value.response.headers["content-type"].startswith("application/json")
    assert counted["bare_429"] == 1 and counted["rate_limited"] == {RPM_ID: 1}
    assert counted["errors"] == {"429": 1}


def test_bare_429_fault_is_charged_like_an_admitted_request() -> None:
    cfg = config(**{FLASH: ModelConfig(rpm=1, faults=FaultConfig(p_429_bare=1.0))})
    with Emulator(cfg) as emu:
        status, body = generate_raw(emu, "x")
        assert (status, body) == (429, BARE_429)
        status, body = generate_raw(emu, "y")
        counted = model_counts(emu)
    assert status == 429 and detail(body, "QuotaFailure")  # the window was charged
    assert counted["faults"] == {"429_bare": 1} and counted["bare_429"] == 1


def test_a_storm_answers_bare_429s_and_charges_nothing() -> None:
    clock = Clock()
    cfg = EmulatorConfig(
        latency_scale=0,
        api_keys=(KEY,),
        storms=((5.0, 10.0),),
        models={FLASH: ModelConfig(rpm=1)},
    )
    with Emulator(cfg, clock=clock) as emu, sdk(emu) as client:
        clock.now += 5.0
        assert generating_errors(client) + generating_errors(client) == [BARE_429] * 4
        clock.now += 5.0  # the storm is over; had it charged the window, rpm=1 would refuse
        assert client.models.generate_content(model=FLASH, contents=PROMPT).text
        with pytest.raises(errors.ClientError) as limited:
            client.models.generate_content(model=FLASH, contents=PROMPT)
        counted = model_counts(emu)
    assert detail(limited.value.details, "QuotaFailure")["violations"][0]["quotaId"] == RPM_ID
    assert counted["bare_429"] == 4 and counted["rate_limited"] == {RPM_ID: 1}
    assert counted["successes"] == 1


def test_a_reset_restarts_the_storm_clock() -> None:
    # Storms are timed from the last reset, so every run after one (a benchmark's contenders)
    # meets the same storm whenever the emulator was started.
    clock = Clock()
    cfg = EmulatorConfig(
        latency_scale=0, api_keys=(KEY,), storms=((0.0, 5.0),), models={FLASH: ModelConfig()}
    )
    with Emulator(cfg, clock=clock) as emu, sdk(emu) as client:
        clock.now += 6.0  # the storm is over
        assert client.models.generate_content(model=FLASH, contents=PROMPT).text
        emu.reset()
        assert generating_errors(client) == [BARE_429] * 2  # and on again, from the reset
        clock.now += 5.0
        assert client.models.generate_content(model=FLASH, contents=PROMPT).text
        counted = model_counts(emu)
    assert counted["bare_429"] == 2 and counted["successes"] == 1


def test_billing_stop_refuses_generate_and_batches_but_not_count_tokens() -> None:
    with Emulator(flash()) as emu, sdk(emu) as client:
        emu.update_config(billing="depleted")
        assert generating_errors(client) == [BILLING_429] * 2
        assert batch_raw(emu) == (429, BILLING_429)
        assert client.models.count_tokens(model=FLASH, contents=PROMPT).total_tokens
        counted = model_counts(emu)
        assert counted["billing_429"] == 3 and counted["rate_limited"] == {}
        emu.update_config(billing="ok")
        assert client.models.generate_content(model=FLASH, contents=PROMPT).text


# -- non-transient refusals ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "code", "status", "message"),
    [
        ("suspended", 403, "PERMISSION_DENIED", "Permission denied: Consumer 'api_key:"),
        (
            "service_disabled",
            403,
            "PERMISSION_DENIED",
            "Generative Language API has not been used in project 123 before or it is disabled.",
        ),
        (
            "location",
            400,
            "FAILED_PRECONDITION",
            "User location is not supported for the API use.",
        ),
    ],
)
def test_refusals_answer_every_keyed_call(kind: str, code: int, status: str, message: str) -> None:
    secret = "AIzaSy-a-real-looking-secret-key"
    cfg = EmulatorConfig(latency_scale=0, refusal=kind, models={FLASH: ModelConfig()})
    with Emulator(cfg) as emu, sdk(emu, api_key=secret) as client:
        calls = [
            lambda: client.models.generate_content(model=FLASH, contents=PROMPT),
            lambda: client.models.count_tokens(model=FLASH, contents=PROMPT),
            lambda: list(client.models.list()),
            lambda: client.batches.create(model=FLASH, src=[{"contents": "hi"}]),
        ]
        for call in calls:
            with pytest.raises(errors.ClientError) as info:
                call()
            error = info.value
            assert (error.code, error.status) == (code, status)
            assert error.message and error.message.startswith(message)
            assert secret not in json.dumps(error.details)
        counters = emu.counters()
    assert counters["refused"] == {kind: 4} and counters["errors"] == {str(code): 4}
    if kind == "service_disabled":
        reasons = [d.get("reason") for d in error.details["error"]["details"]]
        assert "SERVICE_DISABLED" in reasons


def test_an_invalid_key_is_still_told_apart_from_a_refusal() -> None:
    cfg = EmulatorConfig(
        latency_scale=0, api_keys=(KEY,), refusal="suspended", models={FLASH: ModelConfig()}
    )
    with Emulator(cfg) as emu:
        status, body = generate_raw(emu, "x")
        assert status == 403 and "suspended" in body["error"]["message"]
        with sdk(emu, api_key="wrong") as bad, pytest.raises(errors.ClientError) as info:
            bad.models.generate_content(model=FLASH, contents="x")
    assert info.value.code == 400 and info.value.status == "INVALID_ARGUMENT"


# -- retired models -----------------------------------------------------------------------------


def test_a_retired_model_is_not_found_anywhere() -> None:
    models = {FLASH: ModelConfig(retired=True), LITE: ModelConfig()}
    with (
        Emulator(EmulatorConfig(latency_scale=0, api_keys=(KEY,), models=models)) as emu,
        sdk(emu, api_version="v1beta") as client,
    ):
        generating = [
            lambda: client.models.generate_content(model=FLASH, contents=PROMPT),
            lambda: list(client.models.generate_content_stream(model=FLASH, contents=PROMPT)),
            lambda: client.models.count_tokens(model=FLASH, contents=PROMPT),
            lambda: client.batches.create(model=FLASH, src=[{"contents": "hi"}]),
        ]
        for call in generating:
            with pytest.raises(errors.ClientError) as info:
                call()
            assert info.value.code == 404 and info.value.status == "NOT_FOUND"
            assert info.value.message and info.value.message.startswith(
                f"models/{FLASH} is not found for API version v1beta, or is not supported for "
            )
        assert [m.name for m in client.models.list()] == [f"models/{LITE}"]
        with pytest.raises(errors.ClientError) as got:
            client.models.get(model=FLASH)
        assert got.value.code == 404
        assert client.models.generate_content(model=LITE, contents=PROMPT).text
        counted = model_counts(emu)
    assert counted["retired"] == 4 and counted["errors"] == {"404": 4}


def test_a_retired_model_can_answer_unsupported() -> None:
    cfg = config(**{FLASH: ModelConfig(retired=True, retired_as="unsupported")})
    with Emulator(cfg) as emu:
        status, body = generate_raw(emu, PROMPT)
    assert status == 400 and body["error"] == {
        "code": 400,
        "message": f"models/{FLASH} is not supported for generateContent.",
        "status": "INVALID_ARGUMENT",
    }


def test_google_retirements_marks_the_shut_down_models_only() -> None:
    served = default_models()
    retired = google_retirements(served)
    assert sorted(n for n, m in retired.items() if m.retired) == sorted(GOOGLE_SHUT_DOWN)
    assert not any(m.retired for m in served.values())  # the default still serves the seed's
    assert retired["gemini-3.8-flash"] == served["gemini-3.8-flash"]
    assert google_retirements(served, "unsupported")[FLASH].retired_as == "unsupported"


def test_a_batch_job_whose_model_retired_while_it_waited_fails_its_rows() -> None:
    with Emulator(flash()) as emu, sdk(emu) as client:
        job = client.batches.create(model=FLASH, src=[{"contents": "hi"}])
        emu.update_model(FLASH, retired=True)
        assert job.name
        done = client.batches.get(name=job.name)
    assert done.dest and done.dest.inlined_responses
    (row,) = done.dest.inlined_responses
    assert row.response is None and row.error and row.error.code == 5


# -- Google's days -------------------------------------------------------------------------------


def pacific(*fields: int) -> float:
    tz = zoneinfo.ZoneInfo("America/Los_Angeles")
    return datetime.datetime(*fields, tzinfo=tz).timestamp()


def test_real_days_reset_at_midnight_pacific() -> None:
    wall = Clock(pacific(2026, 12, 4, 23, 59, 30))
    with Emulator(flash(rpd=2), wall_clock=wall) as emu:
        assert [generate_raw(emu, f"p{i}")[0] for i in range(2)] == [200, 200]
        status, body = generate_raw(emu, "p2")
        assert status == 429
        assert detail(body, "QuotaFailure")["violations"][0]["quotaId"] == RPD_ID
        assert detail(body, "RetryInfo")["retryDelay"] == "30s"  # to midnight, not 24 h
        wall.now += 29.0
        assert generate_raw(emu, "p3")[0] == 429
        wall.now += 1.0  # midnight Pacific: a new day, whatever the monotonic clock says
        assert [generate_raw(emu, f"q{i}")[0] for i in range(3)] == [200, 200, 429]


def test_per_day_429_can_carry_a_short_retry_delay() -> None:
    cfg = EmulatorConfig(
        latency_scale=0,
        api_keys=(KEY,),
        day_retry_delay_s=38.0,
        models={FLASH: ModelConfig(rpd=1)},
    )
    wall = Clock(pacific(2026, 7, 8, 9, 0, 0))
    with Emulator(cfg, wall_clock=wall) as emu:
        assert generate_raw(emu, "a")[0] == 200
        status, body = generate_raw(emu, "b")
        emu.update_config(day_retry_delay_s=None)
        _, truthful = generate_raw(emu, "c")
    assert status == 429 and detail(body, "RetryInfo")["retryDelay"] == "38s"
    assert "Please retry in 38s." in body["error"]["message"]
    assert detail(truthful, "RetryInfo")["retryDelay"] == f"{15 * 3600}s"  # 9:00 to midnight


# -- thinking ------------------------------------------------------------------------------------


def thinking(**fields: Any) -> types.GenerateContentConfig:
    return types.GenerateContentConfig(**fields)


def capped(client: genai.Client, cap: int, **thinking_fields: Any) -> types.GenerateContentResponse:
    settings = types.ThinkingConfig(**thinking_fields)
    return client.models.generate_content(
        model=FLASH,
        contents=PROMPT,
        config=thinking(max_output_tokens=cap, thinking_config=settings),
    )


def test_thoughts_share_max_output_tokens_and_can_leave_no_answer() -> None:
    with Emulator(flash(thoughts_share_max_output=True)) as emu, sdk(emu) as client:
        for cap in (40, 300, 2000):
            usage = capped(client, cap).usage_metadata
            assert usage and usage.thoughts_token_count
            used = usage.thoughts_token_count + (usage.candidates_token_count or 0)
            assert used <= cap and usage.total_token_count == (usage.prompt_token_count or 0) + used
        assert capped(client, 2000).text
        starved = capped(client, 40)
        no_thoughts = capped(client, 40, thinking_budget=0)
    assert starved.text is None and starved.usage_metadata and starved.candidates
    assert starved.usage_metadata.thoughts_token_count == 40
    assert not starved.usage_metadata.candidates_token_count
    assert starved.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    assert no_thoughts.text and no_thoughts.usage_metadata
    assert no_thoughts.usage_metadata.candidates_token_count == 40
    assert not no_thoughts.usage_metadata.thoughts_token_count


def test_thoughts_share_max_output_tokens_by_default_and_suit_a_short_ask(
    client: genai.Client,
) -> None:
    """Before, a thinking model's thoughts came on top of `maxOutputTokens` (20 allowed, 33
    used) and a dozen-word prompt asking for a script thought as many tokens as the script
    had; on Google thoughts share the budget (notes/genai_sdk.md section 9)."""
    for cap in (20, 100, 800, None):
        for prompt in (PROMPT, "Write a haiku about moss.", "Name three colours."):
            config = types.GenerateContentConfig(max_output_tokens=cap)
            reply = client.models.generate_content(model=FLASH, contents=prompt, config=config)
            usage = reply.usage_metadata
            assert usage and usage.thoughts_token_count, (cap, prompt)
            used = usage.thoughts_token_count + (usage.candidates_token_count or 0)
            assert cap is None or used <= cap, (cap, prompt, used)
            if cap in (800, None):  # room enough: the whole answer, after a little thought
                assert reply.text and reply.candidates
                assert reply.candidates[0].finish_reason == types.FinishReason.STOP
                answered = usage.candidates_token_count or 0
                assert usage.thoughts_token_count <= max(16, answered // 2), (prompt, usage)


def test_thinking_level_scales_the_thoughts(client: genai.Client, emu: Emulator) -> None:
    def thoughts(level: str) -> int:
        level_config = types.ThinkingConfig(thinking_level=level)
        answer = client.models.generate_content(
            model=FLASH, contents=PROMPT, config=thinking(thinking_config=level_config)
        )
        assert answer.usage_metadata
        return answer.usage_metadata.thoughts_token_count or 0

    assert 0 < thoughts("LOW") < thoughts("MEDIUM") < thoughts("HIGH")
    body = {"thinkingConfig": {"thinkingLevel": "low", "thinkingBudget": 5}}
    status, refused = generate_raw(emu, PROMPT, generationConfig=body)
    assert status == 400 and "cannot both be set" in refused["error"]["message"]
    status, _ = generate_raw(
        emu, PROMPT, generationConfig={"thinking_config": {"thinking_level": "x"}}
    )
    assert status == 400


def test_include_thoughts_adds_a_thought_part_before_the_answer(client: genai.Client) -> None:
    plain = client.models.generate_content(model=FLASH, contents=PROMPT)
    shown = types.ThinkingConfig(include_thoughts=True)
    answer = client.models.generate_content(
        model=FLASH, contents=PROMPT, config=thinking(thinking_config=shown)
    )
    assert answer.candidates and answer.candidates[0].content
    parts = answer.candidates[0].content.parts
    assert parts and [bool(p.thought) for p in parts] == [True, False]
    assert parts[0].text and answer.text == plain.text
    chunks = list(
        client.models.generate_content_stream(
            model=FLASH, contents=PROMPT, config=thinking(thinking_config=shown)
        )
    )
    first = chunks[0].candidates
    assert first and first[0].content and first[0].content.parts
    assert first[0].content.parts[0].thought
    assert "".join(c.text or "" for c in chunks) == plain.text


# -- implicit caching -----------------------------------------------------------------------------

LONG_SYSTEM = " ".join(f"Rule {i}: keep every scene short and vivid." for i in range(150))


def cached_tokens(client: genai.Client, question: str, model: str = FLASH) -> int | None:
    answer = client.models.generate_content(
        model=model, contents=question, config=thinking(system_instruction=LONG_SYSTEM)
    )
    assert answer.usage_metadata
    cached = answer.usage_metadata.cached_content_token_count
    assert (cached or 0) <= (answer.usage_metadata.prompt_token_count or 0)
    return cached


def test_a_repeated_prefix_reports_cached_tokens() -> None:
    clock = Clock()
    system_tokens = count_tokens(LONG_SYSTEM)
    assert system_tokens > 1024 + 256
    with Emulator(flash(), clock=clock) as emu, sdk(emu) as client:
        assert cached_tokens(client, "About lighthouses.") is None
        assert cached_tokens(client, "About volcanoes.") == system_tokens // 256 * 256
        clock.now += 301.0  # past the time to live: nothing is cached any more
        assert cached_tokens(client, "About rivers.") is None
        assert cached_tokens(client, "About forests.") == system_tokens // 256 * 256
        counted = model_counts(emu)
    assert counted["cached_tokens"] == 2 * (system_tokens // 256 * 256)


def test_caching_is_per_model_and_can_be_off() -> None:
    models = {
        FLASH: ModelConfig(implicit_cache_min_tokens=None),
        LITE: ModelConfig(implicit_cache_min_tokens=4096),
    }
    other = "gemini-3.8-flash"
    with (
        Emulator(EmulatorConfig(latency_scale=0, models={**models, other: ModelConfig()})) as emu,
        sdk(emu) as client,
    ):
        for model in (FLASH, LITE, other):
            assert cached_tokens(client, "First.", model) is None
        assert cached_tokens(client, "Second.", FLASH) is None  # caching off
        assert cached_tokens(client, "Second.", LITE) is None  # shorter than its minimum
        assert cached_tokens(client, "Second.", other)


def test_the_prefix_cache_keeps_bounded_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(caching, "MAX_PREFIXES", 8)
    cache = PrefixCache(clock=Clock())
    prompts = [f"Prompt {i}: " + "word " * 600 for i in range(20)]
    for prompt in prompts:
        assert cache.serve("m", ("", prompt), count_tokens(prompt), 256, 300.0) == 0
    assert len(cache._models["m"]) == 8
    assert cache.serve("m", ("", prompts[-1]), count_tokens(prompts[-1]), 256, 300.0) == 512


# -- blocked prompts, 504, 499, odd finish reasons ---------------------------------------------


def faulty(**probabilities: float) -> EmulatorConfig:
    return flash(faults=FaultConfig(**probabilities))


def test_a_blocked_prompt_has_prompt_feedback_and_no_candidates() -> None:
    with Emulator(faulty(p_prompt_block=1.0)) as emu, sdk(emu) as client:
        blocked = client.models.generate_content(model=FLASH, contents=PROMPT)
        streamed = list(client.models.generate_content_stream(model=FLASH, contents=PROMPT))
        counted = model_counts(emu)
    for response in (blocked, streamed[-1]):
        assert response.text is None and not response.candidates
        assert response.prompt_feedback
        assert response.prompt_feedback.block_reason == types.BlockedReason.PROHIBITED_CONTENT
        usage = response.usage_metadata
        assert usage and usage.prompt_token_count == count_tokens(PROMPT)
        assert not usage.candidates_token_count and not usage.thoughts_token_count
    assert counted["prompt_blocks"] == 2 and counted["faults"] == {"prompt_block": 2}


@pytest.mark.parametrize(
    ("fault", "error", "code", "status", "message"),
    [
        (
            "p_504",
            errors.ServerError,
            504,
            "DEADLINE_EXCEEDED",
            "Deadline expired before operation could complete.",
        ),
        ("p_499", errors.ClientError, 499, "CANCELLED", "The operation was cancelled."),
    ],
)
def test_deadline_and_cancelled_faults(
    fault: str, error: type[errors.APIError], code: int, status: str, message: str
) -> None:
    with Emulator(faulty(**{fault: 1.0})) as emu, sdk(emu) as client:
        with pytest.raises(error) as info:
            client.models.generate_content(model=FLASH, contents=PROMPT)
        counted = model_counts(emu)
    assert (info.value.code, info.value.status, info.value.message) == (code, status, message)
    assert counted["faults"] == {str(code): 1} and counted["errors"] == {str(code): 1}


def test_finish_reason_other_and_language() -> None:
    with Emulator(flash()) as clean, sdk(clean) as client:
        full = client.models.generate_content(model=FLASH, contents=PROMPT).text
    with Emulator(faulty(p_finish_other=1.0)) as emu, sdk(emu) as client:
        other = client.models.generate_content(model=FLASH, contents=PROMPT)
    with Emulator(faulty(p_finish_language=1.0)) as emu, sdk(emu) as client:
        language = client.models.generate_content(model=FLASH, contents=PROMPT)
        counted = model_counts(emu)
    assert other.candidates and other.candidates[0].finish_reason == types.FinishReason.OTHER
    assert full and other.text and full.startswith(other.text) and other.text != full
    assert language.candidates
    assert language.candidates[0].finish_reason == types.FinishReason.LANGUAGE
    assert language.text is None and language.usage_metadata
    assert not language.usage_metadata.candidates_token_count
    assert counted["finish_reasons"] == {"LANGUAGE": 1}


# -- API versions, live changes, configuration ----------------------------------------------------


def test_requests_are_counted_per_api_version(emu: Emulator) -> None:
    for version in ("v1beta", "v1beta", "v1"):
        with sdk(emu, api_version=version) as client:
            client.models.generate_content(model=FLASH, contents=PROMPT)
    raw(emu, "GET", "/v1alpha/models")
    assert emu.counters()["api_versions"] == {"v1beta": 2, "v1": 1, "v1alpha": 1}


def test_update_config_switches_the_account_live(emu: Emulator) -> None:
    emu.update_config(tier="tier1", quota_errors="bare", refusal="location")
    assert generate_raw(emu, "x")[0] == 400
    emu.update_config(refusal=None, storms=((0.0, float("inf")),))
    assert generate_raw(emu, "x") == (429, BARE_429)
    emu.update_config(storms=())
    assert generate_raw(emu, "x")[0] == 200
    assert (emu.config.tier, emu.config.quota_errors) == ("tier1", "bare")
    with pytest.raises(ConfigError, match="minute_s cannot change while running"):
        emu.update_config(minute_s=1.0)
    with pytest.raises(ConfigError, match="billing must be one of 'ok', 'depleted'"):
        emu.update_config(billing="overdrawn")
    assert emu.config.billing == "ok"


def test_the_new_fields_in_a_config_file(tmp_path: Path) -> None:
    path = tmp_path / "emu.toml"
    path.write_text(
        """
tier = "tier1"
quota_errors = "bare"
storms = [[0, 30], [120, 180.5]]
billing = "depleted"
refusal = "suspended"
day_retry_delay_s = 38

[models."gemini-2.5-flash"]
retired = true
retired_as = "unsupported"
implicit_cache_min_tokens = 2048
implicit_cache_ttl_s = 60

[models."gemini-2.5-flash".faults]
p_429_bare = 0.1
p_prompt_block = 0.1
p_504 = 0.1
p_499 = 0.1
p_finish_other = 0.1
p_finish_language = 0.1
""",
        encoding="utf-8",
    )
    cfg = EmulatorConfig.from_file(path)
    assert (cfg.tier, cfg.quota_errors, cfg.billing, cfg.refusal) == (
        "tier1",
        "bare",
        "depleted",
        "suspended",
    )
    assert cfg.storms == ((0.0, 30.0), (120.0, 180.5)) and cfg.day_retry_delay_s == 38.0
    model = cfg.models[FLASH]
    assert model.retired and model.retired_as == "unsupported"
    assert (model.implicit_cache_min_tokens, model.implicit_cache_ttl_s) == (2048, 60.0)
    assert model.faults.p_finish_language == 0.1
    assert EmulatorConfig.from_mapping({"refusal": None}).refusal is None


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ('tier = "gold"\n', "tier must be one of 'free', 'tier1', got 'gold'"),
        ('quota_errors = "terse"\n', "quota_errors must be one of 'detailed', 'bare'"),
        ("storms = [[10, 5]]\n", "each storm must be [start_s, end_s] with 0 <= start_s < end_s"),
        ('storms = "always"\n', "storms must be a list of [start_s, end_s] pairs"),
        ('refusal = "banned"\n', "refusal must be one of none, 'suspended'"),
        ("day_retry_delay_s = -3\n", "day_retry_delay_s must be a non-negative number"),
        ('[models.m]\nretired_as = "gone"\n', "retired_as must be one of 'not_found'"),
        ("[models.m]\nimplicit_cache_min_tokens = 1.5\n", "must be an integer"),
    ],
)
def test_bad_new_values_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, needle: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(SystemExit) as info:
        cli_main(["--port", "0", "--config", str(path)])
    assert info.value.code == 2 and needle in capsys.readouterr().err
