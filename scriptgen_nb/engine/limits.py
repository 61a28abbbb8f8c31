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

import contextlib
import math
from collections import deque
from dataclasses import dataclass
from typing import Literal

from .models import ModelSpec
from .values import ModelState


@dataclass(slots=True, eq=False)
class Slot:
    """One admitted request in the windows; its token count is corrected after the reply.

    Compared by identity: two requests sent at the same instant with the same estimate are
    still two slots, and forgetting one must not remove the other.
    """

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
        self.margin_s = margin_s if margin_s is not None else max(0.05, spec.minute_s * 0.005)
        self._minute: deque[Slot] = deque()
        self._day: deque[Slot] = deque()
        self.parked_until = -math.inf
        self.exhausted_until = -math.inf
        self.cooling_until = -math.inf
        self._day_resets_at = math.inf
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
        """True when a request of `tokens` input tokens can never be admitted here.

        Judged on the configured limits: a TPM learned from a 429 is an estimate (it can be as
        low as 1 when someone else used the quota), so a request above it waits for an empty
        window instead of failing as too large.
        """
        limit = self.spec.input_token_limit
        tpm = self.spec.tpm
        return (limit is not None and tokens > limit) or (tpm is not None and tokens > tpm)

    def wait_s(self, now: float, tokens: int, *, paced: bool = True) -> float:
        """Seconds until a request of `tokens` input tokens may be sent (0 = now, inf = never)."""
        if self.never_fits(tokens):
            return math.inf
        waits = [self.unavailable_until(now) - now]
        if paced:
            self._expire(now)
            waits.append(self._count_wait(self._minute, self.rpm, self.spec.minute_s, now))
            day_wait = self._count_wait(self._day, self.rpd, self.spec.day_s, now)
            waits.append(min(day_wait, self._day_resets_at - now))
            waits.append(self._token_wait(tokens, now))
        return max(0.0, *waits)

    def used(self, now: float) -> tuple[int, int, int]:
        """(requests this minute, input tokens this minute, requests today) as we count them."""
        self._expire(now)
        return len(self._minute), sum(s.tokens for s in self._minute), len(self._day)

    # --- writing ---------------------------------------------------------------------------

    def admit(self, now: float, tokens: int) -> Slot:
        slot = Slot(now, tokens)
        self._record(slot)
        return slot

    def _record(self, slot: Slot) -> None:
        # A window is kept only for a limit that exists, so an unlimited model's memory does not
        # grow with the number of requests it serves.
        if self.rpm is not None or self.tpm is not None:
            self._minute.append(slot)
        if self.rpd is not None:
            self._day.append(slot)

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

    def sent(self, slot: Slot, now: float) -> None:
        """Re-stamp a slot when its request actually leaves (admission may precede it a little).

        The service counts a request from its arrival; stamping at admission would let the
        window free a slot before the service's does and earn a 429 at the boundary.
        """
        if now <= slot.at:
            return
        slot.at = now
        # Tasks do not reach the wire in admission order; keep each window sorted by time, which
        # _expire, _count_wait and _token_wait rely on. The slot is recent, so look from the right.
        for window in (self._minute, self._day):
            _move_into_place(window, slot)

    def rate_limited(
        self, now: float, slot: Slot, delay_s: float, metric: Metric, server_limit: int | None
    ) -> Learned | None:
        """A per-minute 429 (requests or tokens): park for `delay_s` and learn a lower limit.

        The service's `quotaValue` is the limit when it sends one. Otherwise the rejected request,
        which did not use the service's quota, leaves our windows, and what remains (accepted or
        still in flight) bounds the real limit from above; but a 429 whose delay is a sliver of
        the window is a race at the window's edge (the service stamped a request later than we
        did) and teaches nothing.
        """
        self._forget(slot)
        self.parked_until = max(self.parked_until, now + delay_s)
        self._expire(now)
        if server_limit is not None:
            return self._lower(metric, server_limit)
        if delay_s < 0.1 * self.spec.minute_s:
            # Capacity returns at once: not a lower limit but a race at the window's edge (the
            # service stamped an earlier request later than we did). Hold slots that much longer.
            self.margin_s = min(0.1 * self.spec.minute_s, self.margin_s + delay_s)
            return None
        if self.rpm is None and self.tpm is None:
            return None  # no window was kept to learn from; parking is all we can do
        if metric == "tpm":
            return self._lower_by_evidence("tpm", sum(s.tokens for s in self._minute))
        return self._lower_by_evidence("rpm", len(self._minute))

    def exhausted(
        self, now: float, slot: Slot | None, until: float, server_limit: int | None = None
    ) -> Learned | None:
        """A per-day 429: no request may probe this model before `until`.

        The service resets a day's quota at once (midnight Pacific), not slot by slot, so at
        `until` the day window is emptied instead of waiting for each slot to age out.
        """
        if slot is not None:
            self._forget(slot)
        self.exhausted_until = max(self.exhausted_until, until)
        self._day_resets_at = self.exhausted_until
        self._expire(now)
        if server_limit is not None:
            return self._lower("rpd", server_limit)
        return None if self.rpd is None else self._lower_by_evidence("rpd", len(self._day))

    def resume_exhausted(self, until: float) -> None:
        """Carry over a per-day exhaustion recorded by an earlier batch (learns nothing)."""
        self.exhausted_until = max(self.exhausted_until, until)
        self._day_resets_at = self.exhausted_until

    def preload(self, slots: list[Slot]) -> None:
        """Start from requests already sent (e.g. an earlier batch's, read from the call log).

        Call it before the first `admit`: the windows are kept in time order by appending.
        """
        for slot in sorted(slots, key=lambda s: s.at):
            self._record(slot)

    # --- internals -------------------------------------------------------------------------

    def _lower(self, metric: Metric, observed: int) -> Learned | None:
        current: int | None = getattr(self, metric)
        learned = max(1, observed)
        if current is not None and learned >= current:
            return None
        setattr(self, metric, learned)
        return Learned(metric, getattr(self.spec, metric), learned)

    def _lower_by_evidence(self, metric: Metric, observed: int) -> Learned | None:
        """Lower a limit from what our window held, at most halving it per 429.

        Without the service's `quotaValue` the window is only evidence: the quota may have been
        used by another process, so one 429 must not collapse a limit to 1. Repeated 429s still
        converge on a truly lower limit, as multiplicative decrease does.
        """
        current: int | None = getattr(self, metric)
        return self._lower(metric, observed if current is None else max(observed, current // 2))

    def _forget(self, slot: Slot) -> None:
        for window in (self._minute, self._day):
            with contextlib.suppress(ValueError):  # already expired out of this window
                window.remove(slot)

    def _expire(self, now: float) -> None:
        if now >= self._day_resets_at:
            self._day.clear()
            self._day_resets_at = math.inf
        for window, length in ((self._minute, self.spec.minute_s), (self._day, self.spec.day_s)):
            while window and window[0].at + length + self.margin_s <= now:
                window.popleft()

    def _count_wait(
        self, window: deque[Slot], limit: int | None, length: float, now: float
    ) -> float:
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
        if excess > 0 and self._minute:  # larger than the learned limit: it goes alone
            return self._minute[-1].at + self.spec.minute_s + self.margin_s - now
        return 0.0


def _move_into_place(window: deque[Slot], slot: Slot) -> None:
    """Move `slot`, whose time has just grown, right past the slots stamped before it."""
    for i in range(len(window) - 1, -1, -1):
        if window[i] is slot:
            break
    else:
        return  # not in this window
    j = i
    while j + 1 < len(window) and window[j + 1].at < slot.at:
        j += 1
    if j > i:
        del window[i]
        window.insert(j, slot)
