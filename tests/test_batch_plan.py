"""The `mode=` planner on its own: live, Batch API or a split, and the figures behind each."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import scriptgen_nb as sg
from scriptgen_nb.batch_api.ingest import Answer, match
from scriptgen_nb.batch_api.jobs import (
    BatchApiSettings,
    Deferral,
    chunk_requests,
    create_refused_for_now,
    jsonl_line,
)
from scriptgen_nb.batch_api.plan import (
    GOOGLE_TURNAROUND_S,
    Turnaround,
    parse_deadline,
    plan_batch,
)
from scriptgen_nb.engine.errors import BackendError
from scriptgen_nb.engine.values import GenerationRequest
from scriptgen_nb.estimate import live_bound_s

SPEC = sg.ModelSpec(
    "gemini-x", rpm=10, tpm=None, rpd=100, input_usd_per_1m=1.0, output_usd_per_1m=2.0
)
DAY = Turnaround(GOOGLE_TURNAROUND_S, "Google's target")


def _requests(n: int) -> list[GenerationRequest]:
    return [
        GenerationRequest(str(i), f"prompt number {i}", max_output_tokens=100) for i in range(n)
    ]


def _plan(n: int, mode: str = "auto", deadline: float | None = None, turnaround: Turnaround = DAY):
    return plan_batch(
        _requests(n),
        [SPEC],
        SPEC,
        mode=mode,
        turnaround=turnaround,
        deadline_s=deadline,  # type: ignore[arg-type]
    )


def test_live_while_it_is_faster_than_the_batch_would_be() -> None:
    plan = _plan(50)  # 5 windows of 10 RPM: about 4 minutes, far inside 24 h
    assert plan.choice == "live" and plan.live_count == 50
    assert plan.live.seconds == pytest.approx(4 * 60 + 10)
    assert "24 h" in plan.turnaround.source or plan.turnaround.seconds == GOOGLE_TURNAROUND_S


def test_the_batch_api_once_the_daily_limit_is_outgrown() -> None:
    plan = _plan(250)  # 100 a day: three days live
    assert plan.live.seconds == pytest.approx(2 * 86_400 + 10)
    assert plan.choice == "batch_api" and plan.batch_count == 250
    assert plan.batch_api.cost_usd == pytest.approx(plan.live.cost_usd / 2)


def test_a_split_when_neither_fits_the_deadline() -> None:
    # In an hour 10 RPM would allow 600, but the day allows 100: those go live, the rest batch.
    plan = _plan(250, deadline=3600.0)
    assert plan.choice == "split"
    assert (plan.live_count, plan.batch_count) == (100, 150)
    assert live_bound_s(100, 0, [SPEC], 10.0) <= 3600 < live_bound_s(101, 0, [SPEC], 10.0)
    assert plan.split is not None
    per_request = plan.live.cost_usd / 250
    assert plan.split.cost_usd == pytest.approx(100 * per_request + 150 * per_request / 2, rel=1e-3)
    assert "first 100" in plan.reason and "->" in str(plan)


def test_the_batch_when_its_turnaround_fits_the_deadline() -> None:
    quick = Turnaround(30.0, "median of 2 measured jobs")
    assert _plan(51, deadline=60.0, turnaround=quick).choice == "batch_api"
    assert _plan(10, deadline=60.0, turnaround=quick).choice == "live"


def test_forced_modes_and_the_plan_as_text_and_html() -> None:
    forced = _plan(5, mode="batch_api")
    assert forced.choice == "batch_api" and forced.live_count == 0
    assert _plan(500, mode="live").choice == "live"
    assert "Batch API" in forced._repr_html_() and "Google's target" in str(forced)
    assert "expire 48 h" in forced._repr_html_() and "expire" not in str(_plan(5, mode="live"))


def test_requests_the_log_answered_are_counted_apart_and_not_priced() -> None:
    plan = plan_batch(_requests(3), [SPEC], SPEC, mode="batch_api", turnaround=DAY, cached=5)
    assert (plan.cached, plan.batch_count, plan.batch_api.requests) == (5, 3, 3)
    assert plan.batch_api.cost_usd == pytest.approx(_plan(3, mode="batch_api").batch_api.cost_usd)
    assert "5 more answered by earlier runs" in str(plan)
    assert "Jobs expire 48 h after they are created" in str(plan)  # said whenever jobs go out
    assert "5 more answered by earlier runs" in plan._repr_html_()
    # Answered whole: nothing is sent, so nothing is waited for.
    whole = plan_batch([], [SPEC], SPEC, mode="batch_api", turnaround=DAY, cached=8)
    assert (whole.batch_api.requests, whole.batch_api.cost_usd, whole.batch_api.seconds) == (
        0,
        0,
        0,
    )
    assert "answered" not in str(_plan(3, mode="batch_api"))


@pytest.mark.parametrize(
    ("given", "seconds"),
    [(90, 90.0), ("30m", 1800.0), ("2h", 7200.0), ("1d", 86_400.0), (timedelta(minutes=5), 300.0)],
)
def test_deadlines(given: object, seconds: float) -> None:
    assert parse_deadline(given) == seconds


@pytest.mark.parametrize("bad", [0, -5, "soon", True, float("nan"), [1]])
def test_bad_deadlines(bad: object) -> None:
    with pytest.raises(sg.ConfigurationError, match="deadline="):
        parse_deadline(bad)


def test_a_datetime_deadline() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_deadline(now + timedelta(hours=1), now) == 3600.0
    with pytest.raises(sg.ConfigurationError, match="past"):
        parse_deadline(now - timedelta(hours=1), now)


def test_matching_by_key_position_or_not_at_all() -> None:
    ids = ["a", "b", "c"]
    answers = [Answer("c"), Answer("a"), Answer("b")]
    found, how = match(ids, answers)
    assert how == "key" and [found[i].key for i in ids] == ids
    assert match(ids, [Answer(None)] * 3) == ({}, "unmatched")  # no key: no pairing by place
    found, how = match(ids, [Answer(None)] * 3, by_position=True)  # unless asked
    assert how == "position" and len(found) == 3
    assert match(ids, [Answer(None)] * 2, by_position=True) == ({}, "unmatched")  # count differs
    found, how = match(ids, [Answer("a"), Answer(None), Answer("c")])
    assert how == "mixed" and found["b"].key is None  # the one left over
    found, how = match(ids, [Answer("a"), Answer(None), Answer(None)])
    assert how == "mixed" and set(found) == {"a"}


def test_chunks_by_model_and_size() -> None:
    requests = [*_requests(4), GenerationRequest("p", "pinned", model="gemini-y")]
    chunks = chunk_requests(requests, "gemini-x", BatchApiSettings())  # file input by default
    assert [(c.model, len(c.requests), c.input_mode) for c in chunks] == [
        ("gemini-x", 4, "file"),
        ("gemini-y", 1, "file"),
    ]
    auto = BatchApiSettings(input="auto")
    assert chunk_requests(requests[:4], "gemini-x", auto)[0].input_mode == "inline"
    small = BatchApiSettings(input="auto", inline_limit_bytes=900)
    assert chunk_requests(requests[:4], "gemini-x", small)[0].input_mode == "file"
    inline = chunk_requests(
        requests[:4], "gemini-x", BatchApiSettings(input="inline", inline_limit_bytes=900)
    )
    assert len(inline) > 1 and all(c.size <= 900 for c in inline)
    line = jsonl_line(GenerationRequest("k1", "hi", system="be brief", temperature=0.5))
    assert '"key":"k1"' in line and '"systemInstruction"' in line and '"temperature":0.5' in line


def test_a_create_refused_for_now_waits_its_retry_delay_else_a_doubling_delay() -> None:
    # Google's create 429 on a full queue has carried no RetryInfo so far; one that does is
    # waited out as said, and a billing stop is no wait at all.
    settings = BatchApiSettings(create_wait_initial_s=30.0, create_wait_max_s=100.0)
    told = BackendError("rate_limited", "slow down", 429, retry_delay_s=7.0)
    assert Deferral.after(told, None, settings, now=1000.0).due == 1007.0
    bare = BackendError("rate_limited", "You exceeded your current quota", 429)
    waits, earlier = [], None
    for _ in range(4):
        earlier = Deferral.after(bare, earlier, settings, now=0.0)
        waits.append(earlier.due)
    assert waits == [30.0, 60.0, 100.0, 100.0] and earlier is not None and earlier.tries == 4
    assert earlier.reason.startswith("the service refused to create it for now (429: You exceeded")
    assert create_refused_for_now(bare) and create_refused_for_now(told)
    assert not create_refused_for_now(BackendError("billing", "credits depleted", 429))
    assert not create_refused_for_now(BackendError("server_error", "overloaded", 503))


def test_the_plan_says_when_jobs_already_out_may_keep_a_new_one_waiting() -> None:
    # Google refuses `batches.create` with 429 around the fourth job at once. Before, the plan
    # said only, whatever the queue, that a refused create waits.
    busy = plan_batch(_requests(5), [SPEC], SPEC, mode="batch_api", turnaround=DAY, jobs_out=3)
    said = "3 Batch API jobs created earlier at this endpoint had not ended when last seen"
    assert said in str(busy) and said in busy._repr_html_()
    assert "created earlier" not in str(_plan(5, mode="batch_api"))  # none out: not said
    live = plan_batch(_requests(5), [SPEC], SPEC, mode="live", turnaround=DAY, jobs_out=3)
    assert "created earlier" not in str(live)  # no job goes out
