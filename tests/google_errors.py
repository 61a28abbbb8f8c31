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


def violation(quota_id: str, value: str | None = "10") -> dict[str, Any]:
    """One `QuotaFailure` violation; `value=None` leaves `quotaValue` out, as Google may."""
    v: dict[str, Any] = {
        "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
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
