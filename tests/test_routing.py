"""Routing and reply judging, the engine's two pure decisions, without running a batch."""

from __future__ import annotations

from pydantic import BaseModel

from scriptgen_nb.engine.limits import ModelLimiter
from scriptgen_nb.engine.models import ModelSpec
from scriptgen_nb.engine.routing import Go, Never, Wait, choose_model
from scriptgen_nb.engine.values import Reply, Usage
from scriptgen_nb.engine.verdict import judge_reply


def ladder(*rpms: int | None) -> list[ModelLimiter]:
    return [ModelLimiter(ModelSpec(f"m{i}", priority=i, rpm=rpm)) for i, rpm in enumerate(rpms)]


def test_preference_takes_the_first_model_with_room_now() -> None:
    limiters = ladder(1, 5)
    limiters[0].admit(0.0, 10)
    route = choose_model(limiters, 10, 1.0)
    assert isinstance(route, Go) and route.limiter.spec.name == "m1"


def test_failover_waits_for_a_model_that_is_only_paced() -> None:
    limiters = ladder(1, 5)
    limiters[0].admit(0.0, 10)
    route = choose_model(limiters, 10, 1.0, failover=True)
    assert isinstance(route, Wait) and 59.0 < route.seconds < 60.0


def test_failover_moves_down_while_the_higher_model_is_parked() -> None:
    limiters = ladder(1, 5)
    limiters[0].rate_limited(0.0, limiters[0].admit(0.0, 10), 30.0, "rpm", 1)
    route = choose_model(limiters, 10, 1.0, failover=True)
    assert isinstance(route, Go) and route.limiter.spec.name == "m1"


def test_all_exhausted_and_unknown_pinned_models_never_run() -> None:
    limiters = ladder(None, None)
    for lim in limiters:
        lim.exhausted(0.0, None, 500.0)
    exhausted = choose_model(limiters, 10, 1.0)
    assert isinstance(exhausted, Never) and exhausted.failure.kind == "not_run"
    assert "m0 in 8m 19s, m1 in 8m 19s" in exhausted.failure.message
    pinned = choose_model(ladder(None), 10, 1.0, pinned="elsewhere")
    assert isinstance(pinned, Never) and pinned.failure.kind == "invalid_request"


def test_unpaced_routing_ignores_the_windows() -> None:
    limiters = ladder(1)
    limiters[0].admit(0.0, 10)
    assert isinstance(choose_model(limiters, 10, 1.0, paced=False), Go)


class Title(BaseModel):
    title: str


def test_judging_replies() -> None:
    usage = Usage(5, 5)
    ok = judge_reply(Reply('{"title": "Tides"}', "STOP", usage), Title)
    assert ok.failure is None and ok.data == Title(title="Tides")
    as_dict = judge_reply(Reply('{"title": "Tides"}', "STOP", usage), {"type": "object"})
    assert as_dict.data == {"title": "Tides"}
    cases = {
        "truncated": Reply("Once upon", "MAX_TOKENS", usage),
        "blocked": Reply(None, "SAFETY", usage),
        "malformed_response": Reply("", "STOP", usage),
        "invalid_json": Reply('{"name": 1}', "STOP", usage),
    }
    verdicts = {kind: judge_reply(reply, Title) for kind, reply in cases.items()}
    assert {k: v.failure.kind for k, v in verdicts.items() if v.failure} == {k: k for k in cases}
    assert {k for k, v in verdicts.items() if v.retryable} == {"malformed_response", "invalid_json"}
