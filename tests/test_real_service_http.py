"""The engine, the real google-genai SDK and the emulator playing the real service at its worst.

Each of the emulator's ugly modes over real HTTP, end to end: a hidden tier whose limit the
client must discover, 429s without details, a billing stop, refusals of the project, retired
models, a per-day 429 whose retryDelay is short. Windows are compressed (a "minute" of about a
second) so each plays out in seconds; the emulator's counters check the client from outside.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

import scriptgen_nb as sg
from scriptgen_nb.emulator import Emulator, EmulatorConfig, ModelConfig
from scriptgen_nb.engine.errors import ServiceRefusedError
from scriptgen_nb.engine.values import LimitLearned, ModelStateChanged
from scriptgen_nb.progress import ProgressState, format_summary

pytestmark = pytest.mark.integration

KEY = "test-key"
MINUTE = 1.0


def emulator(**settings: Any) -> Emulator:
    models = settings.pop("models")
    return Emulator(
        EmulatorConfig(
            seed=2, api_keys=(KEY,), minute_s=MINUTE, day_s=600.0, models=models, **settings
        )
    )


def fast(**limits: Any) -> ModelConfig:
    return ModelConfig(latency_base_s=0.05, thinking=False, **limits)


def run(emu: Emulator, n: int, models: list[sg.ModelSpec], **options: Any) -> tuple[Any, list]:
    events: list[Any] = []
    reqs = sg.create_batch_requests([f"A line about harbour number {i}." for i in range(n)])
    results = sg.batch_generate(
        reqs,
        models=models,
        base_url=emu.base_url,
        api_key=KEY,
        db=False,
        listeners=[events.append],
        **options,
    )
    return results, events


def guess(name: str, priority: int = 1, **limits: Any) -> sg.ModelSpec:
    return sg.ModelSpec(
        name, priority=priority, discover=True, minute_s=MINUTE, day_s=600.0, **limits
    )


def trusted(name: str, priority: int = 1, **limits: Any) -> sg.ModelSpec:
    return sg.ModelSpec(name, priority=priority, minute_s=MINUTE, day_s=600.0, **limits)


def test_a_hidden_tier_is_discovered_from_a_free_tier_guess() -> None:
    with emulator(tier="tier1", models={"flash": fast(rpm=60)}) as emu:
        started = time.monotonic()
        results, events = run(emu, 150, [guess("flash", rpm=5)])
        elapsed = time.monotonic() - started
        counters = emu.counters()["models"]["flash"]
    assert all(r.success for r in results)
    refused = sum(counters["rate_limited"].values())
    assert refused <= 60  # at most one window's worth of 429s
    learned = [e for e in events if isinstance(e, LimitLearned)]
    assert learned[0].source == "raised"
    assert learned[-1].learned == 60 and learned[-1].source in ("stated", "message")
    # The bound is 3 windows (60 at 0, 1, 2 s) plus a latency; the free-tier guess alone
    # would have needed 30 windows.
    assert elapsed < 6.0


def test_a_storm_of_bare_429s_passes_and_teaches_no_limit() -> None:
    with emulator(storms=((0.0, 1.5),), models={"flash": fast(rpm=100)}) as emu:
        results, events = run(emu, 20, [trusted("flash", rpm=100)])
        counters = emu.counters()["models"]["flash"]
    assert all(r.success for r in results)
    assert counters["bare_429"] >= 1
    assert not [e for e in events if isinstance(e, LimitLearned)]
    assert any(isinstance(e, ModelStateChanged) and e.state == "backing_off" for e in events)
    assert counters["requests"] <= 3 * 20


def test_a_billing_stop_ends_the_batch_at_its_first_answer() -> None:
    with emulator(billing="depleted", models={"flash": fast(rpm=1000)}) as emu:
        with pytest.raises(ServiceRefusedError, match="billing"):
            run(emu, 100, [trusted("flash", rpm=1000)], max_concurrency=4)
        counters = emu.counters()["models"]["flash"]
    assert counters["requests"] <= 4  # what was in flight, nothing after


@pytest.mark.parametrize("refusal", ["suspended", "service_disabled", "location"])
def test_a_refused_project_ends_the_batch(refusal: str) -> None:
    with emulator(refusal=refusal, models={"flash": fast()}) as emu:
        with pytest.raises(ServiceRefusedError) as caught:
            run(emu, 50, [trusted("flash")], max_concurrency=2)
        sent = emu.counters()["models"]["flash"]["requests"]
    assert caught.value.reason == ("location" if refusal == "location" else "permission")
    assert KEY not in str(caught.value)
    assert sent <= 2


@pytest.mark.parametrize("retired_as", ["not_found", "unsupported"])
def test_a_retired_first_model_is_skipped_for_the_next(retired_as: str) -> None:
    models = {"old": fast(retired=True, retired_as=retired_as), "new": fast(rpm=100)}
    with emulator(models=models) as emu:
        results, events = run(
            emu, 30, [trusted("old", rpm=100), trusted("new", 2, rpm=100)], max_concurrency=5
        )
        old = emu.counters()["models"]["old"]["requests"]
    assert all(r.success and r.model == "new" for r in results)
    assert old <= 5
    assert [e.model for e in events if isinstance(e, ModelStateChanged) and e.state == "gone"] == [
        "old"
    ]


def test_a_short_per_day_retry_delay_on_compressed_days_is_waited_then_rotated() -> None:
    # Compressed days keep their window: the 429's retryDelay says when; the batch rotates.
    models = {"a": fast(rpd=3), "b": fast()}
    with emulator(day_retry_delay_s=0.5, models=models) as emu:
        results, events = run(emu, 10, [trusted("a", rpd=1000), trusted("b", 2)])
        a = emu.counters()["models"]["a"]
    assert all(r.success for r in results)
    assert a["requests"] - sum(a["rate_limited"].values()) == 3  # a served its quota
    assert any(isinstance(e, ModelStateChanged) and e.state == "exhausted" for e in events)


def test_an_endless_storm_ends_the_batch_after_the_patience_given() -> None:
    with emulator(storms=((0.0, float("inf")),), models={"flash": fast()}) as emu:
        started = time.monotonic()
        results, _ = run(emu, 8, [trusted("flash")], overload_patience_s=2.0)
        elapsed = time.monotonic() - started
    assert {r.error.kind for r in results if r.error} == {"rate_limited"}
    assert all("Resource has been exhausted" in r.error.message for r in results if r.error)
    assert 2.0 <= elapsed < 10.0


def test_the_patience_must_be_positive() -> None:
    with pytest.raises(sg.ConfigurationError, match="overload_patience_s"):
        sg.batch_generate(
            sg.create_batch_requests(["x"]),
            backend=sg.FakeBackend(),
            db=False,
            models=[trusted("flash")],
            overload_patience_s=0,
        )


def test_a_gone_model_is_said_once_in_the_call_log(tmp_path: Any) -> None:
    models = {"old": fast(retired=True), "new": fast(rpm=100)}
    db = str(tmp_path / "calls.duckdb")
    with emulator(models=models) as emu:
        reqs = sg.create_batch_requests([f"A line about pier {i}." for i in range(12)])
        sg.batch_generate(
            reqs,
            models=[trusted("old", rpm=100, status="shut down"), trusted("new", 2, rpm=100)],
            base_url=emu.base_url,
            api_key=KEY,
            db=db,
            max_concurrency=4,
        )
    events = sg.CallStore(db).model_events()
    gone = events[events["state"] == "gone"]
    assert list(gone["model"]) == ["old"]
    assert "not found" in gone["reason"].iloc[0] and "shut down" in gone["reason"].iloc[0]


def test_a_retired_model_the_endpoint_no_longer_lists_is_left_out_before_any_call() -> None:
    models = {"gemini-2.5-flash": fast(retired=True), "gemini-3.8-flash": fast(rpm=100)}
    with emulator(models=models) as emu:
        events: list[Any] = []
        results = sg.batch_generate(
            sg.create_batch_requests(["one", "two", "three"]),
            models="gemini-2.5-flash,gemini-3.8-flash",
            base_url=emu.base_url,
            api_key=KEY,
            db=False,
            listeners=[events.append],
        )
        old = emu.counters()["models"]["gemini-2.5-flash"]["requests"]
    assert all(r.success and r.model == "gemini-3.8-flash" for r in results)
    assert old == 0  # skipped before any 404
    (started,) = [e for e in events if type(e).__name__ == "BatchStarted"]
    assert any("gemini-2.5-flash: not in the endpoint's model list" in n for n in started.notices)
    progress = ProgressState()
    for event in events:
        progress(event)
    assert "note: gemini-2.5-flash: not in the endpoint's model list" in format_summary(
        progress.snapshot()
    )
