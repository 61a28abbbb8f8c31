"""Per-model quotas: requests per minute, input tokens per minute, requests per day.

Owns `QuotaBook`, which admits a request only if every window has room and then charges all of
them at once; a rejected request charges nothing, as with Google. For each violated limit it
says how long until the window frees enough room, which becomes the 429's `retryDelay`. The
minute windows slide. The day is Google's when it is real (`day_s` 86400): requests are counted
per calendar day in America/Los_Angeles and the count resets at midnight Pacific; a compressed
day slides like the minute. Both clocks (monotonic, and the wall clock for the calendar) are
injectable so the arithmetic can be tested without sleeping or waiting for midnight. Also owns
the quota names per usage tier (`QuotaKind.names`). Imports nothing from the engine.
"""

from __future__ import annotations

import datetime
import enum
import functools
import threading
import time
import zoneinfo
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["REAL_DAY_S", "Limits", "QuotaBook", "QuotaKind", "Violation", "next_pacific_midnight"]

# A day of this length is Google's calendar day, not a compressed one.
REAL_DAY_S = 86_400.0

_METRIC = "generativelanguage.googleapis.com/generate_content_"


class QuotaKind(enum.Enum):
    """A limit; `names(tier)` is how Google names it in a 429's QuotaFailure."""

    RPM = "rpm"
    TPM = "tpm"
    RPD = "rpd"

    def names(self, tier: str) -> tuple[str, str]:
        """(quotaId, quotaMetric) on `tier` ("free" or "tier1")."""
        return _QUOTA_NAMES[tier][self]


# Free-tier names are quoted in public logs; paid names are Google's with the "-FreeTier"
# suffix dropped and the paid metrics (GenerateContentPaidTierInputTokensPerModelPerMinute is
# quoted in public logs too).
_QUOTA_NAMES = {
    "free": {
        QuotaKind.RPM: (
            "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
            _METRIC + "free_tier_requests",
        ),
        QuotaKind.TPM: (
            "GenerateContentInputTokensPerModelPerMinute-FreeTier",
            _METRIC + "free_tier_input_token_count",
        ),
        QuotaKind.RPD: (
            "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
            _METRIC + "free_tier_requests",
        ),
    },
    "tier1": {
        QuotaKind.RPM: (
            "GenerateRequestsPerMinutePerProjectPerModel",
            _METRIC + "paid_tier_requests",
        ),
        QuotaKind.TPM: (
            "GenerateContentPaidTierInputTokensPerModelPerMinute",
            _METRIC + "paid_tier_input_token_count",
        ),
        QuotaKind.RPD: (
            "GenerateRequestsPerDayPerProjectPerModel",
            _METRIC + "paid_tier_requests",
        ),
    },
}


@functools.cache
def _pacific() -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo("America/Los_Angeles")


def _pacific_day(wall: float) -> datetime.date:
    return datetime.datetime.fromtimestamp(wall, _pacific()).date()


def next_pacific_midnight(wall: float) -> float:
    """The Unix time of the first midnight in America/Los_Angeles after `wall`."""
    tomorrow = _pacific_day(wall) + datetime.timedelta(days=1)
    return datetime.datetime.combine(tomorrow, datetime.time(), _pacific()).timestamp()


@dataclass(frozen=True, slots=True)
class Limits:
    """A model's limits at the time of a request; None means unlimited."""

    rpm: int | None
    tpm: int | None
    rpd: int | None


@dataclass(frozen=True, slots=True)
class Violation:
    """One exceeded limit: which, its value, and seconds until a retry would fit."""

    kind: QuotaKind
    limit: int
    retry_after_s: float


class _ModelWindows:
    def __init__(self) -> None:
        self.minute: deque[float] = deque()
        self.minute_charges: deque[int] = deque()  # prompt tokens, parallel to `minute`
        self.minute_tokens = 0
        self.day: deque[float] = deque()  # a compressed day's admissions
        self.calendar_day: datetime.date | None = None  # a real day's date (Pacific) ...
        self.calendar_count = 0  # ... and the requests admitted on it

    def prune(self, now: float, minute_s: float, day_s: float) -> None:
        # An entry admitted at t counts while now - t < window, i.e. it frees exactly at t + window.
        while self.minute and now - self.minute[0] >= minute_s:
            self.minute.popleft()
            self.minute_tokens -= self.minute_charges.popleft()
        while self.day and now - self.day[0] >= day_s:
            self.day.popleft()

    def roll_calendar_day(self, today: datetime.date) -> None:
        """A real day's count starts again from zero on a new Pacific date."""
        if self.calendar_day != today:
            self.calendar_day, self.calendar_count = today, 0


def _wait_for_slot(times: deque[float], limit: int, now: float, window_s: float) -> float | None:
    """Seconds until one more request fits under `limit`; None if it fits now."""
    if len(times) < limit:
        return None
    if limit == 0:
        return window_s  # no capacity ever returns; report a full window like Google does
    return times[len(times) - limit] + window_s - now


class QuotaBook:
    """Sliding windows for every model, guarded by one lock so admission is atomic."""

    def __init__(
        self,
        minute_s: float,
        day_s: float,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._minute_s = minute_s
        self._day_s = day_s
        self._calendar = day_s == REAL_DAY_S
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._models: dict[str, _ModelWindows] = {}

    def admit(self, model: str, limits: Limits, tokens: int) -> list[Violation]:
        """Charge one request of `tokens` input tokens, or return every limit it would exceed."""
        with self._lock:
            now, wall = self._clock(), self._wall_clock()
            w = self._models.setdefault(model, _ModelWindows())
            w.prune(now, self._minute_s, self._day_s)
            if self._calendar:
                w.roll_calendar_day(_pacific_day(wall))
            violations: list[Violation] = []
            if limits.rpm is not None:
                wait = _wait_for_slot(w.minute, limits.rpm, now, self._minute_s)
                if wait is not None:
                    violations.append(Violation(QuotaKind.RPM, limits.rpm, wait))
            if limits.tpm is not None and w.minute_tokens + tokens > limits.tpm:
                violations.append(
                    Violation(
                        QuotaKind.TPM, limits.tpm, self._wait_for_tokens(w, limits.tpm, tokens, now)
                    )
                )
            if limits.rpd is not None:
                wait = self._wait_for_day(w, limits.rpd, now, wall)
                if wait is not None:
                    violations.append(Violation(QuotaKind.RPD, limits.rpd, wait))
            if not violations:
                w.minute.append(now)
                w.minute_charges.append(tokens)
                w.minute_tokens += tokens
                if self._calendar:
                    w.calendar_count += 1
                else:
                    w.day.append(now)
            return violations

    def _wait_for_day(self, w: _ModelWindows, rpd: int, now: float, wall: float) -> float | None:
        """Seconds until the day has room for one more request; None if it has room now."""
        if not self._calendar:
            return _wait_for_slot(w.day, rpd, now, self._day_s)
        if w.calendar_count < rpd:
            return None
        return next_pacific_midnight(wall) - wall

    def _wait_for_tokens(self, w: _ModelWindows, tpm: int, tokens: int, now: float) -> float:
        if tokens > tpm:
            return self._minute_s  # this prompt can never fit; report a full window
        remaining = w.minute_tokens
        for admitted_at, charged in zip(w.minute, w.minute_charges, strict=True):
            remaining -= charged
            if remaining + tokens <= tpm:
                return admitted_at + self._minute_s - now
        return self._minute_s  # unreachable: the loop empties the window at the latest

    def reset(self) -> None:
        """Forget every window (all quota is available again)."""
        with self._lock:
            self._models.clear()
