"""Error bodies in Google's JSON shape: `{"error": {"code", "message", "status", "details"?}}`.

Owns the exact texts and `google.rpc` details the Gemini API returns for bad or missing API keys,
unknown models, invalid requests, internal errors, overload and quota exhaustion (429
RESOURCE_EXHAUSTED with Help, QuotaFailure and RetryInfo, in a varying order and sometimes
without `quotaValue`, as the real service does); `ApiFailure`, the exception that carries such a
body out of the batch and file stores; and `rpc_status`, the `google.rpc.Status` form a batch
result row uses instead of an HTTP error. Never puts an API key in a body. Imports nothing from
the engine.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

from .quota import Violation

__all__ = [
    "ApiFailure",
    "bad_request",
    "error_body",
    "format_retry_delay",
    "internal_error",
    "invalid_api_key",
    "missing_api_key",
    "model_not_found",
    "not_found",
    "overloaded",
    "rate_limited",
    "rpc_status",
]

_STATUS = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}

# google.rpc.Code numbers of the statuses above, for results that carry a Status, not HTTP.
_RPC_CODE = {
    "INVALID_ARGUMENT": 3,
    "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
}

_TYPE = "type.googleapis.com/google.rpc."
_RATE_LIMIT_DOCS = "https://ai.google.dev/gemini-api/docs/rate-limits"
_INVALID_KEY = "API key not valid. Please pass a valid API key."
_P_OMIT_QUOTA_VALUE = 0.3


def error_body(
    code: int, message: str, details: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """`{"error": {...}}` with the canonical status name for `code`."""
    error: dict[str, Any] = {"code": code, "message": message, "status": _STATUS[code]}
    if details is not None:
        error["details"] = details
    return {"error": error}


class ApiFailure(Exception):
    """A request the emulator refuses; `body` is Google's error body to answer with."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.body = error_body(code, message)

    @classmethod
    def of(cls, body: dict[str, Any]) -> ApiFailure:
        """The failure that answers with `body`, one of this module's error bodies."""
        failure = cls(int(body["error"]["code"]), str(body["error"]["message"]))
        failure.body = body
        return failure


def rpc_status(body: dict[str, Any]) -> dict[str, Any]:
    """The `google.rpc.Status` (`{"code": 3, "message": ...}`) of an HTTP error body."""
    error = body["error"]
    return {"code": _RPC_CODE.get(error["status"], 2), "message": error["message"]}


def bad_request(message: str) -> dict[str, Any]:
    return error_body(400, message)


def not_found(path: str) -> dict[str, Any]:
    return error_body(404, f"Method not found: {path}")


def invalid_api_key() -> dict[str, Any]:
    return error_body(
        400,
        _INVALID_KEY,
        [
            {
                "@type": _TYPE + "ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            },
            {"@type": _TYPE + "LocalizedMessage", "locale": "en-US", "message": _INVALID_KEY},
        ],
    )


def missing_api_key() -> dict[str, Any]:
    return error_body(
        403,
        "Method doesn't allow unregistered callers (callers without established identity). "
        "Please use API Key or other form of API consumer identity to call this API.",
    )


def model_not_found(model: str, api_version: str, method: str) -> dict[str, Any]:
    return error_body(
        404,
        f"models/{model} is not found for API version {api_version}, or is not supported for "
        f"{method}. Call ListModels to see the list of available models and their supported "
        "methods.",
    )


def internal_error() -> dict[str, Any]:
    return error_body(
        500,
        "An internal error has occurred. Please retry or report in "
        "https://developers.generativeai.google/guide/troubleshooting",
    )


def overloaded() -> dict[str, Any]:
    return error_body(503, "The model is overloaded. Please try again later.")


def format_retry_delay(delay_s: float, whole_seconds: bool) -> str:
    """RetryInfo.retryDelay, rounded up so that waiting it always suffices.

    Google sends whole seconds ("21s"); with compressed windows whole seconds would be far too
    coarse, so the emulator then sends milliseconds ("1.234s").
    """
    if whole_seconds:
        return f"{max(1, math.ceil(delay_s))}s"
    return f"{max(1, math.ceil(delay_s * 1000)) / 1000:.3f}s"


def rate_limited(
    model: str, violations: Sequence[Violation], whole_seconds: bool, r: random.Random
) -> dict[str, Any]:
    """The 429 for `violations` (one QuotaFailure listing all of them); `r` picks the variant."""
    delay = max(v.retry_after_s for v in violations)
    quota_lines = "".join(
        f"\n* Quota exceeded for metric: {v.kind.metric}, limit: {v.limit}, model: {model}"
        for v in violations
    )
    precise = f"{max(delay, 0.001):.9f}".rstrip("0").rstrip(".")
    message = (
        "You exceeded your current quota, please check your plan and billing details. For more "
        f"information on this error, head to: {_RATE_LIMIT_DOCS}. To monitor your current "
        f"usage, head to: https://ai.dev/rate-limit. {quota_lines}\nPlease retry in {precise}s."
    )
    entries: list[dict[str, Any]] = []
    for v in violations:
        entry: dict[str, Any] = {
            "quotaMetric": v.kind.metric,
            "quotaId": v.kind.quota_id,
            "quotaDimensions": {"location": "global", "model": model},
        }
        # A 429 injected on an unlimited window (limit -1) has no value to state.
        if r.random() >= _P_OMIT_QUOTA_VALUE and v.limit >= 0:
            entry["quotaValue"] = str(v.limit)
        entries.append(entry)
    details: list[dict[str, Any]] = [
        {
            "@type": _TYPE + "Help",
            "links": [
                {"description": "Learn more about Gemini API quotas", "url": _RATE_LIMIT_DOCS}
            ],
        },
        {"@type": _TYPE + "QuotaFailure", "violations": entries},
        {"@type": _TYPE + "RetryInfo", "retryDelay": format_retry_delay(delay, whole_seconds)},
    ]
    r.shuffle(details)
    return error_body(429, message, details)
