"""What a 200 means, by finish reason: success, truncated, blocked (the answer or the prompt
alone), unsupported language, an unexpected finish (retried), impossible usage (malformed)."""

from __future__ import annotations

import pytest
from google.genai import types

from scriptgen_nb.engine.backend import FakeBackend, reply_from_response
from scriptgen_nb.engine.values import AttemptFinished, Reply, Usage
from scriptgen_nb.engine.verdict import (
    BLOCK_REASONS,
    LANGUAGE_REASONS,
    SUCCESS_REASONS,
    TRUNCATED_REASONS,
    judge_reply,
)
from tests.test_runner import Run, requests, spec

USAGE = Usage(5, 5)
KNOWN = SUCCESS_REASONS | BLOCK_REASONS | TRUNCATED_REASONS | LANGUAGE_REASONS


def kind_of(finish: str | None, text: str | None = "an answer") -> tuple[str | None, bool]:
    verdict = judge_reply(Reply(text, finish, USAGE), None)
    return (verdict.failure.kind if verdict.failure else None), verdict.retryable


def test_every_reason_named_here_is_one_the_sdk_knows() -> None:
    assert set(types.FinishReason.__members__) >= KNOWN


@pytest.mark.parametrize("finish", sorted(types.FinishReason.__members__))
def test_every_sdk_finish_reason_has_a_meaning(finish: str) -> None:
    kind, retryable = kind_of(finish)
    expected = (
        None
        if finish in SUCCESS_REASONS
        else "blocked"
        if finish in BLOCK_REASONS
        else "truncated"
        if finish in TRUNCATED_REASONS
        else "unsupported_language"
        if finish in LANGUAGE_REASONS
        else "unexpected_finish"
    )
    assert kind == expected
    assert retryable == (kind == "unexpected_finish")


@pytest.mark.parametrize(
    ("finish", "kind", "retryable"),
    [
        ("STOP", None, False),
        (None, None, False),  # no reason at all, with text: an answer
        ("MAX_TOKENS", "truncated", False),
        ("SAFETY", "blocked", False),
        ("RECITATION", "blocked", False),
        ("SPII", "blocked", False),
        ("LANGUAGE", "unsupported_language", False),
        ("OTHER", "unexpected_finish", True),
        ("MALFORMED_FUNCTION_CALL", "unexpected_finish", True),
        ("A_REASON_FROM_2027", "unexpected_finish", True),
        ("stop", None, False),  # case does not matter
    ],
)
def test_finish_reasons(finish: str | None, kind: str | None, retryable: bool) -> None:
    assert kind_of(finish) == (kind, retryable)


def test_a_prompt_only_block_is_blocked_and_not_retried() -> None:
    response = types.GenerateContentResponse.model_validate(
        {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}, "usageMetadata": {}}
    )
    verdict = judge_reply(reply_from_response(response), None)
    assert verdict.failure is not None and verdict.failure.kind == "blocked"
    assert "PROHIBITED_CONTENT" in verdict.failure.message and not verdict.retryable


def test_an_unknown_finish_reason_from_the_wire_is_an_unexpected_finish() -> None:
    body = {
        "candidates": [
            {"content": {"parts": [{"text": "half"}]}, "finishReason": "A_REASON_FROM_2027"}
        ]
    }
    with pytest.warns(UserWarning, match="not a valid FinishReason"):  # the SDK's own warning
        response = types.GenerateContentResponse.model_validate(body)
    reply = reply_from_response(response)
    assert reply.finish_reason == "A_REASON_FROM_2027"
    assert kind_of(reply.finish_reason) == ("unexpected_finish", True)


def test_cached_content_tokens_are_read_into_the_usage() -> None:
    response = types.GenerateContentResponse.model_validate(
        {
            "candidates": [{"content": {"parts": [{"text": "ok"}]}, "finishReason": "STOP"}],
            "usageMetadata": {
                "promptTokenCount": 1200,
                "cachedContentTokenCount": 1024,
                "candidatesTokenCount": 3,
            },
        }
    )
    assert reply_from_response(response).usage == Usage(1200, 3, 0, 1024)


def test_impossible_usage_is_malformed_and_retried_before_anything_else() -> None:
    verdict = judge_reply(Reply("fine", "STOP", Usage(10, 5, 0, 11)), None)
    assert verdict.failure is not None and verdict.failure.kind == "malformed_response"
    assert "cached tokens 11 exceed the input tokens 10" in verdict.failure.message
    assert verdict.retryable


# --- in the engine -----------------------------------------------------------------------------


def test_an_unexpected_finish_is_retried_and_can_succeed() -> None:
    backend = FakeBackend()
    backend.enqueue("a", Reply("half", "OTHER", USAGE))
    (result,) = Run(backend, [spec("a")], requests(1)).results
    assert result.success and result.attempts == 2


def test_an_unexpected_finish_that_persists_fails_after_max_attempts() -> None:
    backend = FakeBackend(default=lambda r, m: Reply("half", "OTHER", USAGE))
    run = Run(backend, [spec("a")], requests(1))
    (result,) = run.results
    assert result.error is not None and result.error.kind == "unexpected_finish"
    assert result.attempts == run.engine.config.retry.max_attempts
    assert result.cost_usd and result.cost_usd > 0  # every attempt was billed


def test_an_unsupported_language_is_not_retried() -> None:
    backend = FakeBackend(default=lambda r, m: Reply(None, "LANGUAGE", USAGE))
    (result,) = Run(backend, [spec("a")], requests(1)).results
    assert result.error is not None and result.error.kind == "unsupported_language"
    assert result.attempts == 1


def test_impossible_usage_is_a_malformed_reply_retried_and_billed_nothing() -> None:
    backend = FakeBackend()
    backend.enqueue("a", Reply("ok", "STOP", Usage(-40, 10)))
    run = Run(backend, [spec("a")], requests(1))
    (result,) = run.results
    assert result.success and result.attempts == 2
    first, second = (e.attempt for e in run.of(AttemptFinished))
    assert first.failure is not None and first.failure.kind == "malformed_response"
    assert "negative" in first.failure.message
    assert (first.usage, first.cost_usd) == (Usage(), 0.0)
    assert result.usage == second.usage and result.cost_usd == second.cost_usd > 0
