"""Error bodies in Google's JSON shape: `{"error": {"code", "message", "status", "details"?}}`.

Owns the exact texts and `google.rpc` details the Gemini API returns for bad or missing API keys,
unknown, retired and unsupported models, invalid requests, internal errors, overload, deadlines,
cancellations and quota exhaustion (429 RESOURCE_EXHAUSTED with Help, QuotaFailure and
RetryInfo, in a varying order and sometimes without `quotaValue`, named after the usage tier,
as the real service does; or bare, without any details), the billing stop (prepayment credits
depleted), a Batch API create refused on the enqueued-token quota, and the non-transient
refusals (a suspended key, the API disabled for the project, an unsupported location);
`ApiFailure`, the exception that carries such a body out of the batch
and file stores; and `rpc_status`, the `google.rpc.Status` form a batch result row uses instead
of an HTTP error. Never puts an API key in a body (a refusal that names the key names a fixed
placeholder). Imports nothing from the engine.
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
    "batch_queue_full",
    "billing_depleted",
    "cancelled",
    "deadline_exceeded",
    "error_body",
    "format_retry_delay",
    "internal_error",
    "invalid_api_key",
    "missing_api_key",
    "model_not_found",
    "model_unsupported",
    "not_found",
    "overloaded",
    "quota_exhausted_bare",
    "rate_limited",
    "refused",
    "rpc_status",
]

_STATUS = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

# google.rpc.Code numbers of the statuses used here, for results that carry a Status, not HTTP.
_RPC_CODE = {
    "CANCELLED": 1,
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
}

_TYPE = "type.googleapis.com/google.rpc."
_RATE_LIMIT_DOCS = "https://ai.google.dev/gemini-api/docs/rate-limits"
# The first words of every quota 429 Google sends, and the Help detail that comes with it.
_QUOTA_EXCEEDED = (
    "You exceeded your current quota, please check your plan and billing details. For more "
    f"information on this error, head to: {_RATE_LIMIT_DOCS}. To monitor your current usage, "
    "head to: https://ai.dev/rate-limit. "
)
_QUOTA_HELP = {
    "@type": _TYPE + "Help",
    "links": [{"description": "Learn more about Gemini API quotas", "url": _RATE_LIMIT_DOCS}],
}
_INVALID_KEY = "API key not valid. Please pass a valid API key."
_P_OMIT_QUOTA_VALUE = 0.3


def error_body(
    code: int,
    message: str,
    details: list[dict[str, Any]] | None = None,
    *,
    status: str | None = None,
) -> dict[str, Any]:
    """`{"error": {...}}` with `status`, by default the canonical status name for `code`."""
    error: dict[str, Any] = {"code": code, "message": message, "status": status or _STATUS[code]}
    if details is not None:
        error["details"] = details
    return {"error": error}


class ApiFailure(Exception):
    """A request the emulator refuses; `body` is Google's error body to answer with."""

    def __init__(
        self, code: int, message: str, details: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(message)
        self.body = error_body(code, message, details)


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


def model_unsupported(model: str, method: str) -> dict[str, Any]:
    """A retired model answered as no longer supported rather than not found."""
    return error_body(400, f"models/{model} is not supported for {method}.")


def _error_info(reason: str, **metadata: str) -> dict[str, Any]:
    return {
        "@type": _TYPE + "ErrorInfo",
        "reason": reason,
        "domain": "googleapis.com",
        "metadata": {"service": "generativelanguage.googleapis.com", **metadata},
    }


# A refusal names the consumer; the emulator never echoes the caller's key.
_KEY_PLACEHOLDER = "api_key:AIzaSy-emulator-placeholder"
_PROJECT = "123"
_ACTIVATION_URL = (
    "https://console.developers.google.com/apis/api/generativelanguage.googleapis.com/"
    f"overview?project={_PROJECT}"
)


def refused(kind: str) -> dict[str, Any]:
    """A non-transient refusal: "suspended", "service_disabled" or "location"."""
    if kind == "suspended":
        message = f"Permission denied: Consumer '{_KEY_PLACEHOLDER}' has been suspended."
        return error_body(
            403,
            message,
            [
                _error_info("CONSUMER_SUSPENDED", consumer=f"projects/{_PROJECT}"),
                {"@type": _TYPE + "LocalizedMessage", "locale": "en-US", "message": message},
            ],
        )
    if kind == "service_disabled":
        return error_body(
            403,
            f"Generative Language API has not been used in project {_PROJECT} before or it is "
            f"disabled. Enable it by visiting {_ACTIVATION_URL} then retry. If you enabled this "
            "API recently, wait a few minutes for the action to propagate to our systems and "
            "retry.",
            [
                _error_info(
                    "SERVICE_DISABLED",
                    consumer=f"projects/{_PROJECT}",
                    serviceTitle="Generative Language API",
                    activationUrl=_ACTIVATION_URL,
                    containerInfo=_PROJECT,
                ),
                {
                    "@type": _TYPE + "Help",
                    "links": [
                        {
                            "description": "Google developers console API activation",
                            "url": _ACTIVATION_URL,
                        }
                    ],
                },
            ],
        )
    if kind == "location":
        return error_body(
            400, "User location is not supported for the API use.", status="FAILED_PRECONDITION"
        )
    raise ValueError(f"unknown refusal {kind!r}")


def billing_depleted() -> dict[str, Any]:
    """The billing stop: no wait fixes it (Gemini forum threads 170775, 170539)."""
    return error_body(
        429,
        "Your prepayment credits are depleted. Please go to AI Studio at "
        "https://ai.studio/projects to manage your project and billing.",
    )


def batch_queue_full() -> ApiFailure:
    """`batches.create` refused while the enqueued-token quota is full (Gemini forum thread
    112624: around the fourth job at once). Google's words are those of any quota 429, with
    only the Help detail: no QuotaFailure names the quota, no RetryInfo says when (as
    langchain4j#3942's CI log and js-genai#1264 show)."""
    return ApiFailure(429, _QUOTA_EXCEEDED, [dict(_QUOTA_HELP)])


def quota_exhausted_bare() -> dict[str, Any]:
    """A 429 with no QuotaFailure and no RetryInfo, as Tier 1 projects see for hours at times."""
    return error_body(429, "Resource has been exhausted (e.g. check quota).")


def deadline_exceeded() -> dict[str, Any]:
    return error_body(504, "Deadline expired before operation could complete.")


def cancelled() -> dict[str, Any]:
    return error_body(499, "The operation was cancelled.")


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
    model: str,
    violations: Sequence[Violation],
    tier: str,
    whole_seconds: bool,
    r: random.Random,
) -> dict[str, Any]:
    """The 429 for `violations` (one QuotaFailure listing all of them, named as on `tier`);
    `r` picks the variant."""
    delay = max(v.retry_after_s for v in violations)
    quota_lines = "".join(
        f"\n* Quota exceeded for metric: {v.kind.names(tier)[1]}, limit: {v.limit}, model: {model}"
        for v in violations
    )
    precise = f"{max(delay, 0.001):.9f}".rstrip("0").rstrip(".")
    message = f"{_QUOTA_EXCEEDED}{quota_lines}\nPlease retry in {precise}s."
    entries: list[dict[str, Any]] = []
    for v in violations:
        quota_id, metric = v.kind.names(tier)
        entry: dict[str, Any] = {
            "quotaMetric": metric,
            "quotaId": quota_id,
            "quotaDimensions": {"location": "global", "model": model},
        }
        # A 429 injected on an unlimited window (limit -1) has no value to state.
        if r.random() >= _P_OMIT_QUOTA_VALUE and v.limit >= 0:
            entry["quotaValue"] = str(v.limit)
        entries.append(entry)
    details: list[dict[str, Any]] = [
        dict(_QUOTA_HELP),
        {"@type": _TYPE + "QuotaFailure", "violations": entries},
        {"@type": _TYPE + "RetryInfo", "retryDelay": format_retry_delay(delay, whole_seconds)},
    ]
    r.shuffle(details)
    return error_body(429, message, details)
