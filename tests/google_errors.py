"""Pieces of Google's error bodies, as the real service sends them, for tests to assemble."""

from __future__ import annotations

from typing import Any

PER_MINUTE = "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
PER_DAY = "GenerateRequestsPerDayPerProjectPerModel-FreeTier"
INPUT_TOKENS = "GenerateContentInputTokensPerModelPerMinute-FreeTier"

HELP = {
    "@type": "type.googleapis.com/google.rpc.Help",
    "links": [
        {"description": "Learn more", "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}
    ],
}


REQUESTS_METRIC = "generativelanguage.googleapis.com/generate_content_free_tier_requests"
TOKENS_METRIC = "generativelanguage.googleapis.com/generate_content_free_tier_input_token_count"


def violation(quota_id: str, value: str | None = "10") -> dict[str, Any]:
    """One `QuotaFailure` violation; `value=None` leaves `quotaValue` out, as Google may. The
    metric is Google's for the quota: input tokens, or requests (per minute and per day alike)."""
    v: dict[str, Any] = {
        "quotaMetric": TOKENS_METRIC if quota_id == INPUT_TOKENS else REQUESTS_METRIC,
        "quotaId": quota_id,
        "quotaDimensions": {"location": "global", "model": "gemini-2.5-flash"},
    }
    if value is not None:
        v["quotaValue"] = value
    return v


def quota_failure(*violations: dict[str, Any]) -> dict[str, Any]:
    return {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": list(violations)}


def retry_info(delay: str) -> dict[str, Any]:
    return {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}
