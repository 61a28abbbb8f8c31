"""Per-model sliding-window quotas: requests per minute, input tokens per minute, requests per day.

Owns `QuotaBook`, which admits a request only if every window has room and then charges all of
them at once; a rejected request charges nothing, as with Google. For each violated limit it
says how long until the window frees enough room, which becomes the 429's `retryDelay`. The
clock is injectable so the arithmetic can be tested without sleeping. Imports nothing from the
engine.
"""

from __future__ import annotations

import enum
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Limits", "QuotaBook", "QuotaKind", "Violation"]


class QuotaKind(enum.Enum):
    """A limit as Google names it in a 429's QuotaFailure: (quotaId, quotaMetric)."""

    RPM = (
        "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
        "generativelanguage.googleapis.com/generate_content_free_tier_requests",
    )
    TPM = (
        "GenerateContentInputTokensPerModelPerMinute-FreeTier",
        "generativelanguage.googleapis.com/generate_content_free_tier_input_token_count",
    )
    RPD = (
        "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
        "generativelanguage.googleapis.com/generate_content_free_tier_requests",
    )

    @property
    def quota_id(self) -> str:
        return self.value[0]

    @property
    def metric(self) -> str:
        return self.value[1]


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
        self.day: deque[float] = deque()

    def prune(self, now: float, minute_s: float, day_s: float) -> None:
        # An entry admitted at t counts while now - t < window, i.e. it frees exactly at t + window.
        while self.minute and now - self.minute[0] >= minute_s:
            self.minute.popleft()
            self.minute_tokens -= self.minute_charges.popleft()
        while self.day and now - self.day[0] >= day_s:
            self.day.popleft()


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
        self, minute_s: float, day_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._minute_s = minute_s
        self._day_s = day_s
        self._clock = clock
        self._lock = threading.Lock()
        self._models: dict[str, _ModelWindows] = {}

    def admit(self, model: str, limits: Limits, tokens: int) -> list[Violation]:
        """Charge one request of `tokens` input tokens, or return every limit it would exceed."""
        with self._lock:
            now = self._clock()
            w = self._models.setdefault(model, _ModelWindows())
            w.prune(now, self._minute_s, self._day_s)
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
                wait = _wait_for_slot(w.day, limits.rpd, now, self._day_s)
                if wait is not None:
                    violations.append(Violation(QuotaKind.RPD, limits.rpd, wait))
            if not violations:
                w.minute.append(now)
                w.minute_charges.append(tokens)
                w.minute_tokens += tokens
                w.day.append(now)
            return violations

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
