"""The backend boundary: SDK and transport exceptions to BackendError, requests to SDK config,
SDK responses to replies, and the scripted FakeBackend."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx2
import pytest
from google.genai import errors, types
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from scriptgen_nb.batch_api.jobs import wire_request
from scriptgen_nb.engine.backend import (
    FakeBackend,
    backend_error_from,
    backend_error_from_api_error,
    generation_config,
    json_schema_of,
    reply_from_response,
)
from scriptgen_nb.engine.errors import BackendError, ConfigurationError, QuotaViolation
from scriptgen_nb.engine.values import THINKING_LEVELS, GenerationRequest, Reply, Usage
from tests.google_errors import (
    HELP,
    INPUT_TOKENS,
    PER_DAY,
    PER_MINUTE,
    quota_failure,
    retry_info,
    violation,
)
from tests.virtual_time import run_virtual

QUOTA_MESSAGE = (
    "You exceeded your current quota, please check your plan and billing details. For more "
    "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits. "
    "\n* Quota exceeded for metric: generativelanguage.googleapis.com/"
    "generate_content_free_tier_requests, limit: 10, model: gemini-2.5-flash\n"
    "Please retry in 21.5s."
)


def google_429(*details: dict[str, Any], message: str = QUOTA_MESSAGE) -> errors.ClientError:
    body = {
        "error": {
            "code": 429,
            "message": message,
            "status": "RESOURCE_EXHAUSTED",
            "details": list(details),
        }
    }
    return errors.ClientError(429, body)


def convert(exc: BaseException) -> BackendError:
    return backend_error_from(exc)


# --- 429s: the real service's quirks ---------------------------------------------------------


def test_a_per_minute_429_with_whole_seconds_is_rate_limited() -> None:
    error = convert(google_429(HELP, quota_failure(violation(PER_MINUTE)), retry_info("21s")))
    assert error.kind == "rate_limited"
    assert error.http_status == 429
    assert error.retry_delay_s == 21.0  # RetryInfo wins over the message's "21.5s"
    assert error.violations == (QuotaViolation(PER_MINUTE, "minute", 10),)
    assert "exceeded your current quota" in error.message
    assert not error.api_key_invalid


def test_a_fractional_retry_delay_from_the_emulator_is_kept() -> None:
    error = convert(google_429(quota_failure(violation(PER_MINUTE)), retry_info("1.234s")))
    assert error.retry_delay_s == pytest.approx(1.234)


@pytest.mark.parametrize(
    "order",
    [
        ("help", "quota", "retry"),
        ("retry", "quota", "help"),
        ("quota", "retry", "help"),
        ("help", "retry", "quota"),
    ],
)
def test_429_details_may_come_in_any_order(order: tuple[str, ...]) -> None:
    parts = {
        "help": HELP,
        "quota": quota_failure(violation(PER_MINUTE)),
        "retry": retry_info("40s"),
    }
    error = convert(google_429(*(parts[p] for p in order)))
    assert (error.kind, error.retry_delay_s) == ("rate_limited", 40.0)
    assert error.violations == (QuotaViolation(PER_MINUTE, "minute", 10),)


def test_a_429_without_quota_value_still_converts() -> None:
    # QUOTA_MESSAGE states the requests metric's limit, not the input tokens'.
    error = convert(
        google_429(quota_failure(violation(INPUT_TOKENS, value=None)), retry_info("9s"))
    )
    assert error.kind == "rate_limited"
    assert error.violations == (QuotaViolation(INPUT_TOKENS, "tokens", None),)


def test_a_429_without_quota_value_takes_the_limit_its_message_states() -> None:
    error = convert(google_429(quota_failure(violation(PER_MINUTE, value=None))))
    assert error.violations == (QuotaViolation(PER_MINUTE, "minute", 10, from_message=True),)


def test_an_input_token_429_is_rate_limited_with_a_token_violation() -> None:
    error = convert(google_429(quota_failure(violation(INPUT_TOKENS, "250000")), retry_info("3s")))
    assert error.kind == "rate_limited"
    assert error.violations[0].scope == "tokens"
    assert error.violations[0].limit == 250_000


def test_a_per_day_429_is_quota_exhausted() -> None:
    error = convert(google_429(quota_failure(violation(PER_DAY, "20")), retry_info("3600s")))
    assert error.kind == "quota_exhausted"
    assert error.retry_delay_s == 3600.0
    assert error.violations == (QuotaViolation(PER_DAY, "day", 20),)


def test_several_violations_with_a_per_day_one_are_quota_exhausted() -> None:
    detail = quota_failure(violation(PER_MINUTE), violation(PER_DAY, "20"))
    error = convert(google_429(detail, retry_info("5s")))
    assert error.kind == "quota_exhausted"
    assert [v.scope for v in error.violations] == ["minute", "day"]


def test_several_per_minute_violations_are_rate_limited() -> None:
    detail = quota_failure(violation(PER_MINUTE), violation(INPUT_TOKENS, "250000"))
    error = convert(google_429(detail, retry_info("5s")))
    assert error.kind == "rate_limited"
    assert [v.scope for v in error.violations] == ["minute", "tokens"]


def test_the_retry_delay_comes_from_the_message_when_retry_info_is_absent() -> None:
    message = "You exceeded your current quota.\nPlease retry in 40.6s."
    error = convert(google_429(HELP, quota_failure(violation(PER_MINUTE)), message=message))
    assert error.retry_delay_s == pytest.approx(40.6)


def test_a_bare_429_is_rate_limited_with_no_delay() -> None:
    error = convert(errors.ClientError(429, {"error": {"code": 429, "message": "Too many"}}))
    assert (error.kind, error.retry_delay_s, error.violations) == ("rate_limited", None, ())


def google_error(code: int, status: str, message: str, *details: dict[str, Any]) -> BackendError:
    body = {"error": {"code": code, "message": message, "status": status}}
    if details:
        body["error"]["details"] = list(details)  # type: ignore[index]
    return convert(errors.ClientError(code, body))


def test_a_429_without_any_detail_is_an_overload_with_nothing_to_learn() -> None:
    error = google_error(
        429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."
    )
    assert (error.kind, error.violations, error.refusal) == ("rate_limited", (), None)


def test_a_depleted_prepayment_429_is_a_billing_stop() -> None:
    message = (
        "Your prepayment credits are depleted. Please go to AI Studio at "
        "https://ai.studio/projects to manage your project and billing."
    )
    error = google_error(429, "RESOURCE_EXHAUSTED", message)
    assert (error.kind, error.refusal) == ("billing", "billing")


def test_the_free_tier_429_text_naming_billing_details_is_still_a_rate_limit() -> None:
    # "please check your plan and billing details" is in every free-tier quota 429.
    stripped = google_error(429, "RESOURCE_EXHAUSTED", QUOTA_MESSAGE)
    assert (stripped.kind, stripped.refusal) == ("rate_limited", None)
    detailed = convert(google_429(quota_failure(violation(PER_MINUTE)), retry_info("3s")))
    assert detailed.refusal is None


@pytest.mark.parametrize(
    ("code", "status", "message", "reason", "refusal"),
    [
        (
            403,
            "PERMISSION_DENIED",
            "Permission denied: Consumer 'api_key:xxx' has been suspended.",
            None,
            "permission",
        ),
        (
            403,
            "PERMISSION_DENIED",
            "Generative Language API has not been used in project 123 before or it is disabled.",
            "SERVICE_DISABLED",
            "permission",
        ),
        (
            400,
            "FAILED_PRECONDITION",
            "User location is not supported for the API use.",
            None,
            "location",
        ),
        (403, "PERMISSION_DENIED", "Billing is disabled.", "BILLING_DISABLED", "billing"),
    ],
)
def test_refusals_of_the_whole_project_are_marked(
    code: int, status: str, message: str, reason: str | None, refusal: str
) -> None:
    details = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason}]
    error = google_error(code, status, message, *(details if reason else []))
    assert (error.refusal, error.api_key_invalid) == (refusal, False)


@pytest.mark.parametrize(
    ("code", "status", "message", "gone"),
    [
        (
            404,
            "NOT_FOUND",
            "models/gemini-2.5-pro is not found for API version v1beta, or is not supported for "
            "generateContent. Call ListModels to see the list of available models.",
            True,
        ),
        (400, "INVALID_ARGUMENT", "models/gemini-x is not supported for generateContent.", True),
        (400, "INVALID_ARGUMENT", "Invalid value at 'generation_config.temperature'", False),
    ],
)
def test_a_model_that_is_gone_is_marked(code: int, status: str, message: str, gone: bool) -> None:
    assert google_error(code, status, message).model_gone is gone


# --- other statuses --------------------------------------------------------------------------


def test_an_invalid_api_key_is_flagged_from_error_info() -> None:
    body = {
        "error": {
            "code": 400,
            "message": "API key not valid. Please pass a valid API key.",
            "status": "INVALID_ARGUMENT",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"},
                }
            ],
        }
    }
    error = convert(errors.ClientError(400, body))
    assert error.api_key_invalid
    assert error.kind == "invalid_request"
    assert error.message == "API key not valid. Please pass a valid API key."


def test_error_info_reason_alone_flags_the_key() -> None:
    body = {
        "error": {
            "code": 403,
            "message": "Permission denied.",
            "status": "PERMISSION_DENIED",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_EXPIRED"}
            ],
        }
    }
    error = convert(errors.ClientError(403, body))
    assert (error.kind, error.api_key_invalid) == ("permission_denied", True)


def test_an_ordinary_bad_request_is_not_a_key_problem() -> None:
    body = {
        "error": {
            "code": 400,
            "message": "Invalid value at 'generation_config.temperature'",
            "status": "INVALID_ARGUMENT",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "BAD_REQUEST"}
            ],
        }
    }
    error = convert(errors.ClientError(400, body))
    assert (error.kind, error.api_key_invalid, error.http_status) == ("invalid_request", False, 400)


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        (403, "PERMISSION_DENIED", "permission_denied"),
        (404, "NOT_FOUND", "not_found"),
        (408, "DEADLINE_EXCEEDED", "timeout"),
        (409, "ABORTED", "invalid_request"),
        (500, "INTERNAL", "server_error"),
        (503, "UNAVAILABLE", "server_error"),
        (504, "DEADLINE_EXCEEDED", "timeout"),
    ],
)
def test_http_statuses_map_to_kinds(code: int, status: str, kind: str) -> None:
    body = {"error": {"code": code, "message": f"a {status}", "status": status}}
    cls = errors.ClientError if code < 500 else errors.ServerError
    error = convert(cls(code, body))
    assert (error.kind, error.http_status, error.message) == (kind, code, f"a {status}")
    assert not error.api_key_invalid


def test_an_overloaded_503_keeps_a_retry_delay_when_given() -> None:
    body = {
        "error": {
            "code": 503,
            "message": "The model is overloaded. Please try again later.",
            "status": "UNAVAILABLE",
            "details": [retry_info("2s")],
        }
    }
    error = convert(errors.ServerError(503, body))
    assert (error.kind, error.retry_delay_s) == ("server_error", 2.0)


def test_an_html_502_from_a_proxy_is_a_server_error() -> None:
    response = httpx2.Response(
        502,
        text="<html><body>Bad Gateway</body></html>",
        request=httpx2.Request("POST", "https://generativelanguage.googleapis.com/v1beta/x"),
    )
    with pytest.raises(errors.ServerError) as raised:
        errors.APIError.raise_for_response(response)
    error = convert(raised.value)
    assert (error.kind, error.http_status) == ("server_error", 502)
    assert "Bad Gateway" in error.message


def test_a_429_raised_by_the_sdk_from_a_response_converts_the_same() -> None:
    body = google_429(HELP, quota_failure(violation(PER_DAY, "20")), retry_info("21s")).details
    response = httpx2.Response(
        429, json=body, request=httpx2.Request("POST", "https://example.invalid/v1beta/x")
    )
    with pytest.raises(errors.ClientError) as raised:
        errors.APIError.raise_for_response(response)
    error = convert(raised.value)
    assert (error.kind, error.retry_delay_s) == ("quota_exhausted", 21.0)


def test_backend_error_from_api_error_is_the_same_conversion() -> None:
    exc = google_429(quota_failure(violation(PER_MINUTE)), retry_info("21s"))
    assert backend_error_from_api_error(exc) == backend_error_from(exc)


# --- transport and body failures -------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (httpx2.ReadTimeout("timed out"), "timeout"),
        (httpx2.ConnectTimeout("timed out"), "timeout"),
        (TimeoutError(), "timeout"),
        (httpx2.ConnectError("connection refused"), "connection"),
        (httpx2.RemoteProtocolError("peer closed connection"), "connection"),
        (ConnectionResetError("reset by peer"), "connection"),
        (errors.UnknownApiResponseError("not JSON"), "malformed_response"),
        (json.JSONDecodeError("Expecting value", "<html>", 0), "malformed_response"),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else value,
)
def test_transport_and_body_failures_convert(exc: BaseException, kind: str) -> None:
    error = convert(exc)
    assert error.kind == kind
    assert error.http_status == (200 if kind == "malformed_response" else None)


def test_a_response_that_does_not_validate_is_malformed() -> None:
    with pytest.raises(PydanticValidationError) as raised:
        types.GenerateContentResponse.model_validate({"candidates": "not a list"})
    assert convert(raised.value).kind == "malformed_response"


def test_programming_errors_are_not_disguised_as_backend_errors() -> None:
    with pytest.raises(KeyError):
        convert(KeyError("oops"))
    with pytest.raises(RuntimeError, match="bug"):
        convert(RuntimeError("bug"))


# --- requests to SDK config ------------------------------------------------------------------


class Scene(BaseModel):
    title: str
    seconds: int


def test_a_pydantic_schema_asks_for_json_with_its_json_schema() -> None:
    config = generation_config(GenerationRequest("r", "p", schema=Scene))
    assert config.response_mime_type == "application/json"
    assert config.response_json_schema == Scene.model_json_schema()
    assert config.response_schema is None


def test_a_dict_schema_is_sent_as_given() -> None:
    schema = {"type": "object", "properties": {"title": {"type": "string"}}}
    config = generation_config(GenerationRequest("r", "p", schema=schema))
    assert config.response_json_schema == schema
    assert config.response_mime_type == "application/json"


def test_a_schema_must_be_a_model_class_or_a_dict() -> None:
    with pytest.raises(ConfigurationError, match="pass the class itself"):
        json_schema_of(Scene(title="t", seconds=1))
    with pytest.raises(ConfigurationError, match="schema must be a Pydantic model class"):
        json_schema_of("object")


def test_every_generation_field_reaches_the_sdk_config() -> None:
    request = GenerationRequest(
        "r",
        "p",
        system="You write video scripts.",
        temperature=0.7,
        top_p=0.9,
        top_k=40,
        max_output_tokens=512,
        seed=11,
        stop_sequences=("END", "###"),
        thinking_budget=0,
        safety_settings=({"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_ONLY_HIGH"},),
    )
    config = generation_config(request)
    assert config.system_instruction == "You write video scripts."
    assert (config.temperature, config.top_p, config.top_k) == (0.7, 0.9, 40)
    assert (config.max_output_tokens, config.seed) == (512, 11)
    assert config.stop_sequences == ["END", "###"]
    assert config.thinking_config is not None
    assert config.thinking_config.thinking_budget == 0
    assert config.safety_settings is not None
    setting = config.safety_settings[0]
    assert setting.category == types.HarmCategory.HARM_CATEGORY_HARASSMENT
    assert setting.threshold == types.HarmBlockThreshold.BLOCK_ONLY_HIGH
    assert config.http_options is None  # the client's timeout applies; not repeated per call
    assert config.response_mime_type is None


@pytest.mark.parametrize("level", ["minimal", "LOW", " Medium ", "high"])
def test_a_thinking_level_is_sent_as_the_sdks_enum(level: str) -> None:
    request = GenerationRequest("r", "p", thinking_level=level)
    assert request.thinking_level == level.strip().lower()
    config = generation_config(request)
    assert config is not None and config.thinking_config is not None
    assert config.thinking_config.thinking_level == types.ThinkingLevel(level.strip().upper())
    assert config.thinking_config.thinking_budget is None


def test_the_accepted_thinking_levels_are_the_sdks() -> None:
    assert {level.upper() for level in THINKING_LEVELS} <= set(types.ThinkingLevel.__members__)


def test_a_thinking_level_reaches_the_wire_as_the_sdk_writes_it() -> None:
    wire = json.loads(json.dumps(wire_request(GenerationRequest("r", "p", thinking_level="low"))))
    # The SDK keeps thinkingConfig's fields in snake case (as for thinking_budget); Google's
    # JSON reader takes both cases.
    assert wire["generationConfig"]["thinkingConfig"] == {"thinking_level": "LOW"}


def test_unset_fields_stay_unset_and_zero_is_kept() -> None:
    config = generation_config(GenerationRequest("r", "p", temperature=0.0))
    assert config.temperature == 0.0
    set_fields = config.model_dump(exclude_none=True)
    assert set(set_fields) == {"temperature"}


def test_a_request_that_sets_nothing_sends_no_config() -> None:
    assert generation_config(GenerationRequest("r", "p")) is None


# --- SDK responses to replies ----------------------------------------------------------------


def test_a_camel_case_response_becomes_a_reply_without_the_thoughts() -> None:
    response = types.GenerateContentResponse.model_validate(
        {
            "candidates": [
                {
                    "content": {
                        "role": "model",
                        "parts": [
                            {"text": "Let me think.", "thought": True},
                            {"text": "Tides rise."},
                        ],
                    },
                    "finishReason": "STOP",
                }
            ],
            "usageMetadata": {
                "promptTokenCount": 12,
                "candidatesTokenCount": 3,
                "thoughtsTokenCount": 40,
                "totalTokenCount": 55,
            },
            "modelVersion": "gemini-2.5-flash",
            "responseId": "resp-1",
        }
    )
    assert reply_from_response(response) == Reply(
        text="Tides rise.",
        finish_reason="STOP",
        usage=Usage(12, 3, 40),
        model_version="gemini-2.5-flash",
        response_id="resp-1",
        block_reason=None,
    )


def test_a_snake_case_truncated_response_keeps_its_finish_reason() -> None:
    response = types.GenerateContentResponse.model_validate(
        {
            "candidates": [
                {
                    "content": {"role": "model", "parts": [{"text": "Once upon"}, {"text": " a"}]},
                    "finish_reason": "MAX_TOKENS",
                }
            ],
            "usage_metadata": {"prompt_token_count": 7, "candidates_token_count": 2},
        }
    )
    reply = reply_from_response(response)
    assert (reply.text, reply.finish_reason) == ("Once upon a", "MAX_TOKENS")
    assert reply.usage == Usage(7, 2, 0)


def test_a_blocked_prompt_has_no_text_and_a_block_reason() -> None:
    response = types.GenerateContentResponse.model_validate(
        {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 9}}
    )
    reply = reply_from_response(response)
    assert (reply.text, reply.finish_reason, reply.block_reason) == (None, None, "SAFETY")
    assert reply.usage == Usage(9, 0, 0)


def test_a_safety_stopped_candidate_without_content_has_no_text() -> None:
    response = types.GenerateContentResponse.model_validate(
        {"candidates": [{"finishReason": "SAFETY"}]}
    )
    reply = reply_from_response(response)
    assert (reply.text, reply.finish_reason) == (None, "SAFETY")
    assert reply.usage == Usage()


# --- FakeBackend -----------------------------------------------------------------------------


def test_the_fake_answers_queued_outcomes_per_model_then_echoes() -> None:
    backend = FakeBackend()
    request = GenerationRequest("r1", "hello there")
    quota = BackendError("rate_limited", "slow down", 429, 1.0)
    backend.enqueue("a", quota, Reply("first", "STOP", Usage(1, 1)))
    backend.enqueue("a", lambda req, model: Reply(f"{model}:{req.id}", "STOP", Usage()))

    async def main() -> list[Any]:
        outcomes: list[Any] = []
        for model in ("a", "a", "b", "a", "a"):
            try:
                outcomes.append((await backend.generate(request, model)).text)
            except BackendError as exc:
                outcomes.append(exc)
        return outcomes

    outcomes = run_virtual(main())
    assert outcomes == [quota, "first", "[b] hello there", "a:r1", "[a] hello there"]
    assert backend.calls == [("a", "r1"), ("a", "r1"), ("b", "r1"), ("a", "r1"), ("a", "r1")]
    assert backend.in_flight == 0


def test_the_fake_echo_reports_plausible_usage() -> None:
    reply = FakeBackend.echo(GenerationRequest("r", "x" * 40), "m")
    assert reply.text == "[m] " + "x" * 40
    assert reply.finish_reason == "STOP"
    assert reply.usage == Usage(11, 12)


def test_the_fake_uses_a_custom_default_and_counts_concurrent_calls() -> None:
    backend = FakeBackend(
        default=lambda req, model: Reply(req.prompt.upper(), "STOP", Usage()),
        latency_s=lambda req, model: 2.0 if req.id == "slow" else 1.0,
    )

    async def main() -> tuple[list[str | None], float]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        replies = await asyncio.gather(
            *(backend.generate(GenerationRequest(i, i), "m") for i in ("slow", "x", "y"))
        )
        return [r.text for r in replies], loop.time() - start

    texts, elapsed = run_virtual(main())
    assert texts == ["SLOW", "X", "Y"]
    assert elapsed == pytest.approx(2.0)  # virtual seconds, run concurrently
    assert (backend.max_in_flight, backend.in_flight) == (3, 0)


# --- the sending gate --------------------------------------------------------------------------


def test_the_sending_gate_lets_a_call_in_as_soon_as_an_earlier_one_is_written() -> None:
    from scriptgen_nb.engine.backend import _WRITTEN, _until_written

    inside: list[int] = []
    order: list[str] = []

    async def call(name: str, gate: asyncio.Semaphore, wire: asyncio.Event) -> None:
        async with _until_written(gate):
            inside.append(2 - gate._value)  # calls between entering and written, this one too
            order.append(f"in {name}")
            await wire.wait()
            written = _WRITTEN.get()
            assert written is not None
            written()  # the body is on the wire: the next call may enter
            written()  # a second report changes nothing
            order.append(f"written {name}")
            await asyncio.sleep(0)  # the answer is awaited outside the gate

    async def main() -> None:
        gate = asyncio.Semaphore(2)
        wires = [asyncio.Event() for _ in range(4)]
        tasks = [asyncio.create_task(call(str(i), gate, wires[i])) for i in range(4)]
        await asyncio.sleep(0)
        assert order == ["in 0", "in 1"]  # two at a time
        wires[0].set()
        await asyncio.sleep(0.01)
        assert order[:4] == ["in 0", "in 1", "written 0", "in 2"]
        for wire in wires[1:]:
            wire.set()
        await asyncio.gather(*tasks)
        assert gate._value == 2  # every place given back

    asyncio.run(main())
    assert max(inside) == 2
