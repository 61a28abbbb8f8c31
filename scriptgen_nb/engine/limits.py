"""Per-model quota accounting: sliding-window RPM, input TPM and RPD, plus park/exhaust/cool state.

One `ModelLimiter` per model per batch. It is pure bookkeeping: every method takes `now` (seconds
on a monotonic clock, normally the event loop's), so tests drive it with plain numbers and the
runner never sleeps inside it. It answers "how long until this request may go?" and records
what was sent; it never calls the service. Imports nothing outside `engine/`.

Windows slide like the service's: a request admitted at t occupies a slot until t + window. The
service stamps a request when it arrives, slightly after we send it, so every slot is held for
`margin_s` longer than the window to avoid 429s at the boundary.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Literal

from .models import ModelSpec
from .values import ModelState


@dataclass(slots=True)
class Slot:
    """One admitted request in the windows; its token count is corrected after the reply."""

    at: float
    tokens: int


Metric = Literal["rpm", "tpm", "rpd"]


@dataclass(frozen=True, slots=True)
class Learned:
    """A limit lowered because the service said 429 where the configured limit had room."""

    metric: Metric
    configured: int | None
    learned: int


class ModelLimiter:
    """Sliding-window admission for one model; limits start at the spec and only go down."""

    def __init__(self, spec: ModelSpec, *, margin_s: float | None = None) -> None:
        self.spec = spec
        self.rpm = spec.rpm
        self.tpm = spec.tpm
        self.rpd = spec.rpd
        self.margin_s = margin_s if margin_s is not None else max(0.02, spec.minute_s * 0.005)
        self._minute: deque[Slot] = deque()
        self._day: deque[Slot] = deque()
        self.parked_until = -math.inf
        self.exhausted_until = -math.inf
        self.cooling_until = -math.inf
        self.consecutive_failures = 0

    # --- reading ---------------------------------------------------------------------------

    def state(self, now: float) -> ModelState:
        if self.exhausted_until > now:
            return "exhausted"
        if self.parked_until > now:
            return "parked"
        if self.cooling_until > now:
            return "cooling"
        return "ready"

    def unavailable_until(self, now: float) -> float:
        """When a parked, exhausted or cooling model is usable again (<= now when it is)."""
        return max(self.exhausted_until, self.parked_until, self.cooling_until)

    def never_fits(self, tokens: int) -> bool:
        """True when a request of `tokens` input tokens can never be admitted here."""
        limit = self.spec.input_token_limit
        return (limit is not None and tokens > limit) or (self.tpm is not None and tokens > self.tpm)

    def wait_s(self, now: float, tokens: int, *, paced: bool = True) -> float:
        """Seconds until a request of `tokens` input tokens may be sent (0 = now, inf = never)."""
        if self.never_fits(tokens):
            return math.inf
        waits = [self.unavailable_until(now) - now]
        if paced:
            self._expire(now)
            waits.append(self._count_wait(self._minute, self.rpm, self.spec.minute_s, now))
            waits.append(self._count_wait(self._day, self.rpd, self.spec.day_s, now))
            waits.append(self._token_wait(tokens, now))
        return max(0.0, *waits)

    def used(self, now: float) -> tuple[int, int, int]:
        """(requests this minute, input tokens this minute, requests today) as we count them."""
        self._expire(now)
        return len(self._minute), sum(s.tokens for s in self._minute), len(self._day)

    # --- writing ---------------------------------------------------------------------------

    def admit(self, now: float, tokens: int) -> Slot:
        slot = Slot(now, tokens)
        self._minute.append(slot)
        self._day.append(slot)
        return slot

    def settle(self, slot: Slot, tokens: int) -> None:
        """Replace the estimate with the input tokens the service reported."""
        slot.tokens = tokens

    def record_success(self) -> None:
        self.consecutive_failures = 0

    def record_server_failure(self, now: float, cool_s: float) -> bool:
        """Count a 5xx/timeout/connection failure; cool the model after three in a row.

        Returns True when the model was just put to cool, so the caller can tell listeners.
        """
        self.consecutive_failures += 1
        if self.consecutive_failures >= 3 and self.cooling_until <= now:
            self.cooling_until = now + cool_s
            return True
        return False

    def rate_limited(self, now: float, slot: Slot, delay_s: float, metric: str) -> Learned | None:
        """A per-minute 429 (requests or tokens): park for `delay_s` and learn a lower limit.

        The rejected request did not use the service's quota, so it leaves our windows; what
        remains in the window is what the service accepted, which is the real limit when that is
        below ours.
        """
        self._forget(slot)
        self.parked_until = max(self.parked_until, now + delay_s)
        self._expire(now)
        if metric == "tpm":
            used = sum(s.tokens for s in self._minute)
            return self._lower("tpm", used)
        return self._lower("rpm", len(self._minute))

    def exhausted(self, now: float, slot: Slot | None, until: float) -> Learned | None:
        """A per-day 429: no request may probe this model before `until`."""
        if slot is not None:
            self._forget(slot)
        self.exhausted_until = max(self.exhausted_until, until)
        self._expire(now)
        return self._lower("rpd", len(self._day))

    def preload(self, slots: list[Slot]) -> None:
        """Start from requests already sent (e.g. an earlier batch's, read from the call log)."""
        for slot in sorted(slots, key=lambda s: s.at):
            self._minute.append(slot)
            self._day.append(slot)

    # --- internals -------------------------------------------------------------------------

    def _lower(self, metric: Metric, observed: int) -> Learned | None:
        current: int | None = getattr(self, metric)
        learned = max(1, observed)
        if current is not None and learned >= current:
            return None
        setattr(self, metric, learned)
        return Learned(metric, getattr(self.spec, metric), learned)

    def _forget(self, slot: Slot) -> None:
        for window in (self._minute, self._day):
            try:
                window.remove(slot)
            except ValueError:
                pass  # already expired out of this window

    def _expire(self, now: float) -> None:
        for window, length in ((self._minute, self.spec.minute_s), (self._day, self.spec.day_s)):
            while window and window[0].at + length + self.margin_s <= now:
                window.popleft()

    def _count_wait(self, window: deque[Slot], limit: int | None, length: float, now: float) -> float:
        if limit is None or len(window) < limit:
            return 0.0
        # The window must drop len - limit + 1 slots; the last of those leaves at this time.
        return window[len(window) - limit].at + length + self.margin_s - now

    def _token_wait(self, tokens: int, now: float) -> float:
        if self.tpm is None:
            return 0.0
        excess = sum(s.tokens for s in self._minute) + tokens - self.tpm
        for slot in self._minute:
            if excess <= 0:
                break
            excess -= slot.tokens
            if excess <= 0:
                return slot.at + self.spec.minute_s + self.margin_s - now
        return 0.0
