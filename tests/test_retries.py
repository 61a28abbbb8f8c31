"""Which failures a retry sends again, with what changed, and what it says it left out.

A batch whose requests fail each in its own way (a fake backend, by prompt) is logged to a real
DuckDB file; the plan is rebuilt from that log, as `%scriptgen retry` and `scriptgen retry` do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import scriptgen_nb as sg
from scriptgen_nb.commands import RetryChanges, RetryPlan, retry_hint, retry_plan
from scriptgen_nb.engine.backend import FakeBackend
from scriptgen_nb.engine.errors import BackendError, ConfigurationError
from scriptgen_nb.engine.values import Failure, GenerationRequest, Reply, Result, Usage
from scriptgen_nb.retries import LeftOut
from tests.script_writer import LADDER

# What the fake service does with each prompt: the failure kind it ends in.
OUTCOMES = {
    "fine": "succeeded",
    "busy": "server_error",
    "long": "truncated",
    "unsafe": "blocked",
    "malformed": "invalid_request",
}


def answer(request: GenerationRequest, model: str) -> Reply:
    kind = OUTCOMES[request.prompt]
    if kind == "server_error":
        raise BackendError("server_error", "overloaded", 503)
    if kind == "invalid_request":
        raise BackendError("invalid_request", "bad field", 400)
    reason = {"truncated": "MAX_TOKENS", "blocked": "SAFETY"}.get(kind, "STOP")
    return Reply(f"answer to {request.prompt}", reason, Usage(3, 30))


@pytest.fixture
def failed_batch(tmp_path: Path) -> tuple[sg.CallStore, str]:
    """A logged batch of five requests (max_output_tokens 30): one succeeded, four failed."""
    db = tmp_path / "log.duckdb"
    requests = sg.create_batch_requests(list(OUTCOMES), max_output_tokens=30, temperature=0.2)
    results = sg.batch_generate(
        requests, backend=FakeBackend(answer), models=LADDER, db=db, max_attempts=1
    )
    assert [r.error.kind if r.error else "succeeded" for r in results] == list(OUTCOMES.values())
    log = sg.CallStore(db)
    return log, str(log.batches()["batch_id"].iloc[0])


def prompts(requests: list[GenerationRequest]) -> list[str]:
    return [r.prompt for r in requests]


def test_by_default_only_what_the_same_settings_can_fix_is_sent_again(
    failed_batch: tuple[sg.CallStore, str],
) -> None:
    plan = retry_plan(*failed_batch)
    assert prompts(plan.requests) == ["busy"]
    assert plan.requests[0].max_output_tokens == 30 and plan.requests[0].temperature == 0.2
    assert [(part.kind, part.count) for part in plan.left_out] == [
        ("truncated", 1),
        ("blocked", 1),
        ("invalid_request", 1),
    ]
    assert plan.note() == (
        "left out 1 truncated (raise --max-tokens above 30), 1 blocked (a new attempt meets the "
        "same answer) and 1 invalid_request (change the settings it was refused for); --all "
        "includes them."
    )
    # the batch's own attempts per request (1 here) are carried over
    assert plan.options() == {"models": "fake-model", "cache": "refresh", "max_attempts": 1}


def test_raising_max_tokens_includes_the_truncated_answers_and_changes_them(
    failed_batch: tuple[sg.CallStore, str],
) -> None:
    log, batch_id = failed_batch
    same = retry_plan(log, batch_id, RetryChanges({"max_output_tokens": 30}))
    assert "truncated" in [part.kind for part in same.left_out]  # not raised: no help
    raised = retry_plan(log, batch_id, RetryChanges({"max_output_tokens": 400}))
    # Any setting changed may fix the 400 too; the safety block stays out.
    assert prompts(raised.requests) == ["busy", "long", "malformed"]
    assert {r.max_output_tokens for r in raised.requests} == {400}
    assert [part.kind for part in raised.left_out] == ["blocked"]


def test_other_models_unpin_the_requests_and_all_sends_everything(
    failed_batch: tuple[sg.CallStore, str],
) -> None:
    log, batch_id = failed_batch
    moved = retry_plan(log, batch_id, RetryChanges(models="other-model"))
    assert moved.models == "other-model" and moved.options()["models"] == "other-model"
    assert prompts(moved.requests) == ["busy", "malformed"]
    everything = retry_plan(log, batch_id, everything=True)
    assert prompts(everything.requests) == ["busy", "long", "unsafe", "malformed"]
    assert everything.left_out == () and everything.note() is None


def test_a_plan_that_sends_nothing_says_why(failed_batch: tuple[sg.CallStore, str]) -> None:
    log, batch_id = failed_batch
    fixed = retry_plan(log, batch_id).requests  # the server error, answered this time
    sg.batch_generate(fixed, backend=FakeBackend(), models=LADDER, db=log.db.path)
    newest = str(log.batches()["batch_id"].iloc[0])
    assert newest != batch_id
    assert retry_plan(log, newest).nothing() == f"batch {newest} has no failed or not-run requests."
    left = RetryPlan("b-1", [], None, (LeftOut("blocked", 2, None),))
    assert left.nothing() == (
        "batch b-1: nothing to retry with these settings; left out 2 blocked (a new attempt "
        "meets the same answer); --all includes them."
    )
    assert retry_plan(log, batch_id).nothing() is None
    with pytest.raises(ConfigurationError, match="No batch 'nope'"):
        retry_plan(log, "nope")


@pytest.mark.parametrize(
    ("kinds", "said"),
    [
        ({}, None),
        ({"server_error": 2}, "re-run them with `scriptgen retry B`"),
        (
            {"truncated": 2, "timeout": 1},
            "re-run them with `scriptgen retry B --max-tokens N` (N above 30)",
        ),
        (
            {"blocked": 1},
            "1 blocked (a new attempt meets the same answer): `scriptgen retry B --all` "
            "includes them",
        ),
        (
            {"not_run": 1, "too_large": 2},
            "re-run them with `scriptgen retry B`; 2 too_large (name other models with "
            "--model): `scriptgen retry B --all` includes them",
        ),
    ],
)
def test_the_hint_after_a_batch_names_the_retry_that_will_help(
    kinds: dict[str, int], said: str | None
) -> None:
    results: list[Any] = [Result(id="ok", index=0, success=True)]
    for kind, count in kinds.items():
        failure = Failure(kind, "it failed")  # type: ignore[arg-type]
        results += [
            Result(id=f"{kind}{i}", index=i, success=False, error=failure, usage=Usage(3, 30))
            for i in range(count)
        ]
    assert retry_hint(results, "scriptgen retry B") == said


def test_the_hint_compares_with_the_requests_own_max_tokens_as_the_retry_does() -> None:
    """A thinking model's thoughts may not count against the cap: the answer used 30 tokens
    where its request allowed 5, and the retry includes it for any --max-tokens above 5."""
    cut = Failure("truncated", "hit max_output_tokens")
    results = [Result(id="a", index=0, success=False, error=cut, usage=Usage(3, 30))]
    requests = sg.create_batch_requests([{"id": "a", "prompt": "p"}], max_output_tokens=5)
    assert retry_hint(results, "%scriptgen retry", requests) == (
        "re-run them with `%scriptgen retry --max-tokens N` (N above 5)"
    )


def test_a_batch_answer_that_lost_its_key_is_sent_again_by_default() -> None:
    # `unmatched` (issue 16): the Batch API answered, but without the key that says for which
    # request; asked again, the answer comes back whole.
    request = sg.create_batch_requests(["p"])[0]
    assert RetryChanges().fixes("unmatched", request)
