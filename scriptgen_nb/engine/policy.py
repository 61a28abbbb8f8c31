"""Retry policy: reading Google's error details, backoff, Google's days, and the concurrency
strategies.

Small pure pieces in the manner of tenacity: parse a 429's `QuotaFailure`/`RetryInfo`, pick a
backoff delay (randomness injected), decide what a failed attempt leads to, say when Google's
day starts and ends, and turn the `max_concurrency=` argument into a plan. The runner applies
the decisions; nothing here sleeps or does I/O. Imports nothing outside `engine/`.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from .checks import check_number
from .errors import BackendError, ConfigurationError, QuotaScope, QuotaViolation
from .models import ModelSpec
from .values import LimitSource

RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
QUOTA_FAILURE = "type.googleapis.com/google.rpc.QuotaFailure"
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")
_LIMIT_IN_MESSAGE = re.compile(r"Quota exceeded for metric: ([^\s,]+), limit: (\d+)")
_RETRY_IN_MESSAGE = re.compile(r"retry in (\d+(?:\.\d+)?)\s*(ms|s)\b", re.IGNORECASE)


def parse_duration(text: object) -> float | None:
    """A protobuf JSON Duration ("21s", "1.5s") in seconds; None when it is not one."""
    if not isinstance(text, str):
        return None
    match = _DURATION.match(text)
    return float(match.group(1)) if match else None


def quota_scope(quota_id: str) -> QuotaScope:
    """Which window a `quotaId` names: per day, input tokens per minute, or requests per minute."""
    if "PerDay" in quota_id:
        return "day"
    if "Token" in quota_id:
        return "tokens"
    return "minute"


def read_error_details(
    details: Sequence[Any], message: str = ""
) -> tuple[float | None, tuple[QuotaViolation, ...]]:
    """(retryDelay seconds, quota violations) from a Google error's `details`, in any order.

    A violation without `quotaValue` (the service sometimes leaves it out) takes the limit its
    metric has in the error's `message` ("Quota exceeded for metric: M, limit: N"), when the
    message names that metric once and no other violation shares it: the per-minute and per-day
    request quotas share one metric, and then the message cannot say which limit is which.
    """
    delay: float | None = None
    entries: list[Mapping[str, Any]] = []
    for detail in details:
        if not isinstance(detail, Mapping):
            continue
        kind = detail.get("@type")
        if kind == RETRY_INFO:
            delay = parse_duration(detail.get("retryDelay"))
        elif kind == QUOTA_FAILURE:
            entries += [v for v in detail.get("violations") or () if isinstance(v, Mapping)]
    stated = _limits_in_message(message)
    shared = Counter(str(v.get("quotaMetric", "")) for v in entries)
    violations = []
    for v in entries:
        quota_id, metric, value = (
            str(v.get("quotaId", "")),
            str(v.get("quotaMetric", "")),
            v.get("quotaValue"),
        )
        limit = int(value) if isinstance(value, str | int) and str(value).isdigit() else None
        from_message = limit is None and shared[metric] == 1 and metric in stated
        if from_message:
            limit = stated[metric]
        violations.append(QuotaViolation(quota_id, quota_scope(quota_id), limit, from_message))
    return delay, tuple(violations)


def _limits_in_message(message: str) -> dict[str, int]:
    """The limit each metric has in a 429's message, for the metrics it names exactly once."""
    named = _LIMIT_IN_MESSAGE.findall(message)
    counts = Counter(metric for metric, _ in named)
    return {metric: int(limit) for metric, limit in named if counts[metric] == 1}


def retry_delay_from_message(message: str) -> float | None:
    """The "Please retry in 40.6s." hint some 429 messages carry when RetryInfo is absent."""
    match = _RETRY_IN_MESSAGE.search(message)
    if not match:
        return None
    value = float(match.group(1))
    return value / 1000 if match.group(2).lower() == "ms" else value


PACIFIC = ZoneInfo("America/Los_Angeles")
REAL_DAY_S = 86_400.0


def next_pacific_midnight(now: datetime) -> datetime:
    """When Google's per-day quotas reset: the next midnight in America/Los_Angeles."""
    pacific = now.astimezone(PACIFIC)
    tomorrow = (pacific + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return tomorrow


def pacific_day_bounds(wall_s: float) -> tuple[float, float]:
    """(start, end) of Google's quota day holding the POSIX time `wall_s`: Pacific midnights.

    A day is 23 or 25 hours long when the clocks change; timestamps (not datetime
    subtraction, which works in wall-clock time) keep that right.
    """
    pacific = datetime.fromtimestamp(wall_s, PACIFIC)
    start = pacific.replace(hour=0, minute=0, second=0, microsecond=0)
    return start.timestamp(), next_pacific_midnight(pacific).timestamp()


def day_reset_delay(retry_delay_s: float | None, spec: ModelSpec, now: datetime) -> float:
    """Seconds from `now` until a model exhausted for the day may be tried again.

    With real day windows, the later of the server's retryDelay and the next Pacific midnight:
    a per-day 429's delay is sometimes a few seconds (38 s is on record), which would only
    earn another 429. With compressed windows (an emulator), the retryDelay, else one day.
    """
    if spec.day_s == REAL_DAY_S:
        # Timestamps, not `-`: datetimes sharing a tzinfo subtract as wall-clock times, which
        # is an hour off on the days the clocks change.
        midnight = next_pacific_midnight(now).timestamp() - now.timestamp()
        return max(midnight, retry_delay_s or 0.0)
    if retry_delay_s is not None:
        return retry_delay_s
    return spec.day_s


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with half jitter: uniform(c / 2, c), c = min(cap, initial * factor**n).

    The floor keeps a retry (and a cooldown, which the runner draws from here) from firing at
    once; `n` is failures - 1, so the first failure waits up to `initial_s`. The cap is decided
    before the power is taken (`factor ** n` overflows a float after about 1,000 doublings, or
    at the third step of a factor of 1e200), so any count of failures and any finite factor
    give a delay.
    """

    initial_s: float = 1.0
    factor: float = 2.0
    max_s: float = 30.0

    def __post_init__(self) -> None:
        check_number("initial_s", self.initial_s, low=0, unit="seconds", where="Backoff: ")
        check_number("factor", self.factor, low=1, where="Backoff: ")
        check_number("max_s", self.max_s, low=0, unit="seconds", where="Backoff: ")

    def delay(self, failures: int, rng: random.Random) -> float:
        steps = max(0, failures - 1)
        if self.initial_s == 0 or self.initial_s >= self.max_s:
            ceiling = min(self.initial_s, self.max_s)
        elif steps * math.log(self.factor) >= math.log(self.max_s / self.initial_s):
            ceiling = self.max_s
        else:
            ceiling = min(self.max_s, self.initial_s * self.factor**steps)  # ulps at the edge
        return rng.uniform(ceiling / 2, ceiling)


# retry: the same request again after `delay_s`; park: the model waits out a per-minute quota;
# back_off: the model waits out a 429 without details; exhaust: the model is out until
# `delay_s`; drop: the model is gone from the batch; fail: the request ends; abort: the batch
# ends (invalid key); refuse: the batch ends (the service will not serve this project).
Action = Literal["retry", "park", "back_off", "exhaust", "drop", "fail", "abort", "refuse"]

RETRYABLE = frozenset({"server_error", "timeout", "connection", "malformed_response"})


@dataclass(frozen=True, slots=True)
class Decision:
    """What a failed attempt leads to; `delay_s` applies to retry, park, back_off and exhaust."""

    action: Action
    delay_s: float = 0.0
    metric: str = ""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounds on retries.

    `max_attempts` bounds attempts that fail with a transient error (5xx, timeout, connection,
    malformed body) or invalid JSON; 429s are not the request's fault and do not use it up, but
    `max_quota_waits` bounds them so every request ends. A 429 without details backs its
    model off by `overload_backoff` (about 1 s, doubling, capped near a minute);
    `overload_patience_s` of nothing but such 429s on every model ends the batch's remaining
    requests as rate_limited. A per-minute 429 whose delay exceeds `max_park_s` is treated as
    the model's exhaustion (rotate), never as a silent long sleep.
    """

    max_attempts: int = 6
    max_quota_waits: int = 100
    backoff: Backoff = Backoff()
    default_park_s: float | None = None  # when a per-minute 429 has no retryDelay: one window
    overload_backoff: Backoff = Backoff(initial_s=1.0, factor=2.0, max_s=60.0)
    overload_patience_s: float = 600.0
    max_park_s: float = 300.0

    def __post_init__(self) -> None:
        check_number("max_attempts", self.max_attempts, low=1, whole=True, unit="attempts")
        check_number("max_quota_waits", self.max_quota_waits, low=0, whole=True)
        check_number("default_park_s", self.default_park_s, low=0, above=True, optional=True)
        check_number("overload_patience_s", self.overload_patience_s, low=0, above=True)
        check_number("max_park_s", self.max_park_s, low=0, above=True, unit="seconds")
        for name in ("backoff", "overload_backoff"):
            if not isinstance(getattr(self, name), Backoff):
                raise ConfigurationError(f"RetryPolicy: {name} must be a Backoff.")

    def decide(
        self,
        error: BackendError,
        failures: int,
        spec: ModelSpec,
        rng: random.Random,
        *,
        overloads: int = 1,
    ) -> Decision:
        """Decide after an attempt failed; `failures` counts this one among the transient ones,
        `overloads` the model's 429s without details in a row, this one included."""
        if error.api_key_invalid:
            return Decision("abort")
        if error.refusal is not None:
            return Decision("refuse")
        if error.model_gone:
            return Decision("drop")
        if error.kind == "quota_exhausted":
            return Decision("exhaust")
        if error.kind == "rate_limited":
            if not error.violations:  # overload of unknown size: read no limit into it
                delay = error.retry_delay_s
                if delay is None:
                    delay = self.overload_backoff.delay(overloads, rng)
                return Decision("back_off", delay)
            delay = error.retry_delay_s
            if delay is None:
                delay = self.default_park_s if self.default_park_s is not None else spec.minute_s
            if delay > self.max_park_s:
                return Decision("exhaust", delay, "minute")
            tokens = any(v.scope == "tokens" for v in error.violations)
            return Decision("park", delay, "tpm" if tokens else "rpm")
        if error.kind in RETRYABLE:
            if failures >= self.max_attempts:
                return Decision("fail")
            delay = error.retry_delay_s
            if delay is None:
                delay = self.backoff.delay(failures, rng)
            return Decision("retry", delay)
        return Decision("fail")


def seed_concurrency(rpm: int | None) -> int:
    """The seed's formula, as written: min(10, max(3, floor(rpm * 0.6 * 5 / 60)))."""
    safe = math.floor((rpm or 0) * 0.6 * 5 / 60)
    return min(10, max(3, safe))


ConcurrencyMode = Literal["auto", "fixed", "seed"]


@dataclass(frozen=True, slots=True)
class ConcurrencyPlan:
    """How many requests may be in flight, and whether the limiters pace admission."""

    mode: ConcurrencyMode
    max_in_flight: int
    paced: bool


AUTO_MAX_IN_FLIGHT = 256
# More in flight than any Gemini tier admits per minute, and a connection pool of this size is
# a resource problem of its own: a larger number is a typo (or seconds for a count).
MAX_CONCURRENCY = 10_000


def plan_concurrency(
    max_concurrency: int | str | None, ladder: Sequence[ModelSpec]
) -> ConcurrencyPlan:
    """Turn `max_concurrency=` into a plan.

    - None / "auto": pace by every model's limits. In flight is then what the windows admit
      times latency (Little's law); the cap is only a ceiling against runaway connection counts.
    - an int: at most that many in flight, pacing still on.
    - "seed": the seed's formula on the primary model, no pacing (for comparisons).
    """
    if max_concurrency is None or max_concurrency == "auto":
        return ConcurrencyPlan("auto", AUTO_MAX_IN_FLIGHT, paced=True)
    if max_concurrency == "seed":
        return ConcurrencyPlan("seed", seed_concurrency(ladder[0].rpm), paced=False)
    if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int):
        raise ConfigurationError(
            f"max_concurrency={max_concurrency!r}: use None or 'auto' (pace by the limits), "
            "a positive integer (cap in flight), or 'seed' (the seed's formula)."
        )
    if max_concurrency < 1:
        raise ConfigurationError(
            f"max_concurrency must be at least 1, got {max_concurrency}; use None or 'auto' to "
            "pace by the models' limits."
        )
    if max_concurrency > MAX_CONCURRENCY:
        raise ConfigurationError(
            f"max_concurrency={max_concurrency:,} is absurd: more than {MAX_CONCURRENCY:,} "
            "requests in flight. Use None or 'auto' (pace by the limits; the in-flight count "
            "follows from rate and latency) or a cap such as 50."
        )
    return ConcurrencyPlan("fixed", max_concurrency, paced=True)


# The window a quota counts, in words: `limit 5 requests per minute`.
SCOPE_UNITS: dict[QuotaScope, str] = {
    "minute": "requests per minute",
    "tokens": "input tokens per minute",
    "day": "requests per day",
}


def quota_summary(error: BackendError) -> str:
    """What a 429 was about, briefly: its quota ids (with limits and their units) or its
    message."""
    named = [
        f"{v.quota_id} (limit {v.limit:,} {SCOPE_UNITS[v.scope]})" if v.limit else v.quota_id
        for v in error.violations
    ]
    return ", ".join(named) or error.message[:200]


def server_limit(error: BackendError, scope: QuotaScope) -> tuple[int, LimitSource] | None:
    """The limit the service stated for the violated window (its quotaValue, or the figure
    its message gives), and which of the two said it; None when it stated none."""
    stated = [v for v in error.violations if v.scope == scope and v.limit is not None]
    if not stated:
        return None
    lowest = min(stated, key=lambda v: v.limit or 0)
    assert lowest.limit is not None
    return lowest.limit, "message" if lowest.from_message else "stated"
