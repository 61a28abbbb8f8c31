"""Per-model quota accounting: sliding-window RPM, input TPM and RPD, working limits that move,
and the park / back-off / exhaust / cool / gone state.

One `ModelLimiter` per model per batch. It is pure bookkeeping: every method takes `now` (seconds
on a monotonic clock, normally the event loop's), so tests drive it with plain numbers and the
runner never sleeps inside it. It answers "how long until this request may go?" and records
what was sent; it never calls the service. Imports nothing outside `engine/`.

Windows slide like the service's: a request admitted at t occupies a slot until t + window. The
service stamps a request when it arrives, slightly after we send it, so every slot is held for
`margin_s` longer than the window to avoid 429s at the boundary. With real days, the day window
is Google's: requests-per-day count from the last midnight in America/Los_Angeles
(`day_bounds(now)` gives that day's start and the next one's), not over a sliding 24 h.

Working limits (`WorkingLimit`, one per metric) start from the spec, or from what an earlier
batch learned at the same endpoint and key. Google does not publish limits and a client cannot
read its tier, so a spec marked `discover` holds guesses: while the window is full and requests
wait, each success earns credit to raise the limit (slow start: two slots per success, which
doubles the rate per round trip, because a slot stays in the minute window after its answer);
with nothing in flight, one probe may go above a full window, so a guess can never stall a
batch. A 429 that states its limit fixes it exactly; one with a QuotaFailure but no figure
lowers it multiplicatively, after which it recovers additively (a tenth of the lowered limit
per window's worth of successes); a 429 with no details at all only backs the model off. Near
a known limit (remembered, or recovering) one request at a time goes above the window, the
next only once that one's attempt has ended (its answer confirms the raise, its 429 teaches), so
earned credit never becomes a burst of 429s.
Trusted limits (a user's spec) never grow above the spec; `hard` caps everything.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from .models import ModelSpec
from .values import LimitSource, ModelState, RememberedLimit
from .window import Slot, SlotWindow

Metric = Literal["rpm", "tpm", "rpd"]
METRICS: tuple[Metric, ...] = ("rpm", "tpm", "rpd")
# Each metric in words, for what a person reads: `5 requests per minute`.
METRIC_UNITS: dict[Metric, str] = {
    "rpm": "requests per minute",
    "tpm": "input tokens per minute",
    "rpd": "requests per day",
}
Growth = Literal["slow_start", "additive", "fixed"]

# A raise is told to listeners once the limit has grown by this factor since it was last told
# (and at the batch's end): slow start changes a limit with every answer.
REPORT_GROWTH = 1.25
# After a lowering, each window's worth of successes raises the limit by this share of it.
RECOVERY_SHARE = 0.1


@dataclass(frozen=True, slots=True)
class Learned:
    """A working limit changed: from `configured` (the spec's figure) to `learned`."""

    metric: Metric
    configured: int | None
    learned: int
    source: LimitSource


@dataclass(slots=True)
class WorkingLimit:
    """One metric's working limit, how it may move, and the growth it has earned.

    `value` None means no limit is known (nothing is paced or learned for the metric).
    `ceiling` is what the limit may never exceed (a trusted or hard spec, or a stated limit).
    `credit` is growth earned by successes (in requests, or tokens for TPM), spent only when a
    request waits on this metric, so a limit rises only while there is demand for it.
    """

    metric: Metric
    configured: int | None
    value: int | None
    ceiling: int | None
    growth: Growth
    credit: float = 0.0
    step: float = 1.0  # additive growth per window's worth of successes
    reported: int | None = None
    source: LimitSource = "raised"
    # Additive growth: the request admitted above the limit, whose attempt must end (answered,
    # or refused, which teaches) before another goes above it.
    probe: Slot | None = None
    # Raised for a shared window (`ModelLimiter.raise_for`) before its request has a slot: the
    # next slot admitted is the probe, and nothing else goes above meanwhile.
    probe_pending: bool = False

    def earn(self, amount: float) -> None:
        """Credit a success of `amount` (1 request, or its tokens) towards raising the limit."""
        if self.value is None or self.growth == "fixed" or self.at_ceiling:
            return
        if self.growth == "slow_start":
            gain = 2.0 * amount
        else:
            gain = self.step * amount / max(1, self.value)
        # At most a doubling is banked, so a burst after a quiet spell cannot jump further.
        self.credit = min(float(self.value), self.credit + gain)

    @property
    def probing(self) -> bool:
        """A request above the limit is out (or about to be): no other may go above it."""
        return self.probe is not None or self.probe_pending

    @property
    def at_ceiling(self) -> bool:
        return self.ceiling is not None and self.value is not None and self.value >= self.ceiling

    def spend(self, needed: int) -> bool:
        """Raise the limit by `needed` if the credit (and the ceiling) allows it."""
        if self.value is None or needed <= 0:
            return needed <= 0
        room = math.inf if self.ceiling is None else self.ceiling - self.value
        if self.credit < needed or room < needed or self.probing:
            return False
        self.credit -= needed
        self.value += needed
        return True

    def set(self, value: int, source: LimitSource) -> Learned | None:
        """Move the limit to `value` (capped by the ceiling); the change, if there is one."""
        if self.ceiling is not None:
            value = min(value, self.ceiling)
        value = max(0, value)
        if value == self.value:
            return None
        self.value = value
        self.reported = value
        self.source = source
        return Learned(self.metric, self.configured, value, source)

    def growth_report(self, *, final: bool = False) -> Learned | None:
        """A raise worth telling: grown by REPORT_GROWTH since last told (any change if final)."""
        if self.value is None or self.value == self.reported or self.growth == "fixed":
            return None
        base = self.reported if self.reported is not None else self.configured
        if not final and base is not None and self.value < base * REPORT_GROWTH:
            return None
        self.reported = self.value
        source: LimitSource = "recovered" if self.source == "lowered" else "raised"
        return Learned(self.metric, self.configured, self.value, source)


def window_margin_s(spec: ModelSpec) -> float:
    """How long past its window a slot is still counted: the client's and the server's clocks
    (and the request's trip) differ a little, and a window freed a moment early costs a 429."""
    return max(0.05, spec.minute_s * 0.005)


class ModelLimiter:
    """Sliding-window admission for one model, with working limits that move (module doc)."""

    def __init__(
        self,
        spec: ModelSpec,
        *,
        margin_s: float | None = None,
        remembered: Mapping[str, RememberedLimit] | None = None,
        day_bounds: Callable[[float], tuple[float, float]] | None = None,
    ) -> None:
        self.spec = spec
        self.limits = {m: self._start(m, (remembered or {}).get(m)) for m in METRICS}
        self.margin_s = margin_s if margin_s is not None else window_margin_s(spec)
        self._day_bounds = day_bounds
        self._minute = SlotWindow()
        self._day = SlotWindow()
        self.parked_until = -math.inf
        self.exhausted_until = -math.inf
        self.cooling_until = -math.inf
        self.backoff_until = -math.inf
        self._day_resets_at = math.inf
        self.consecutive_failures = 0
        self.consecutive_overloads = 0
        self.overloaded_since: float | None = None  # first detail-less 429 since a success
        self.in_flight = 0
        self.gone: str | None = None  # why the model left the batch's ladder
        # A shared quota ledger found the windows of every process full: not before this.
        self.queued_until = -math.inf

    def _start(self, metric: Metric, remembered: RememberedLimit | None) -> WorkingLimit:
        configured: int | None = getattr(self.spec, metric)
        trusted = self.spec.hard or not self.spec.discover
        ceiling = configured if trusted else None
        value = configured
        growth: Growth = "slow_start" if self.spec.discover else "fixed"
        if self.spec.discover and value == 0:
            value = 1  # a guess of "no quota": one try tells
        limit = WorkingLimit(metric, configured, value, ceiling, growth, reported=value)
        if remembered is not None:
            # What an earlier batch learned here is a better start than a guess, and a trusted
            # spec only ever takes it lower. One the service stated or lowered is known: probed
            # above gently (additively). One only raised by that batch's demand is a floor: the
            # service never refused it, so discovery goes on where that batch stopped, with the
            # doubling slow start had banked by then.
            limit.value = remembered.value if ceiling is None else min(remembered.value, ceiling)
            limit.reported = limit.value
            limit.source = "remembered"
            if not self.spec.discover:
                limit.growth = "fixed"
            elif remembered.source == "raised":
                limit.credit = float(limit.value)
            else:
                limit.growth = "additive"
            limit.step = max(1.0, RECOVERY_SHARE * limit.value)
        return limit

    # --- reading ---------------------------------------------------------------------------

    @property
    def rpm(self) -> int | None:
        return self.limits["rpm"].value

    @property
    def tpm(self) -> int | None:
        return self.limits["tpm"].value

    @property
    def rpd(self) -> int | None:
        return self.limits["rpd"].value

    @property
    def usable(self) -> bool:
        """Whether the model may be sent anything: not gone, and not without quota.

        A guessed limit of 0 ("probably no free tier") is one try, not a refusal.
        """
        return self.gone is None and (self.spec.discover or self.spec.usable)

    def state(self, now: float) -> ModelState:
        if self.gone is not None:
            return "gone"
        if self.exhausted_until > now:
            return "exhausted"
        if self.parked_until > now:
            return "parked"
        if self.backoff_until > now:
            return "backing_off"
        if self.cooling_until > now:
            return "cooling"
        return "ready"

    def unavailable_until(self, now: float) -> float:
        """When a parked, backing-off, exhausted or cooling model is usable again."""
        if self.gone is not None:
            return math.inf
        return max(self.exhausted_until, self.parked_until, self.backoff_until, self.cooling_until)

    def never_fits(self, tokens: int) -> bool:
        """True when a request of `tokens` input tokens can never be admitted here.

        Only the model's input token limit is hard, and a trusted per-minute token limit (a
        guessed one is discovered, and a learned one may be as low as what another process
        left): a request above those waits for an empty window instead of failing.
        """
        limit = self.spec.input_token_limit
        tpm = self.limits["tpm"].ceiling
        return (limit is not None and tokens > limit) or (tpm is not None and tokens > tpm)

    def wait_s(self, now: float, tokens: int, *, paced: bool = True) -> float:
        """Seconds until a request of `tokens` input tokens may be sent (0 = now, inf = never)."""
        if self.never_fits(tokens) or self.gone is not None:
            return math.inf
        waits = [self.unavailable_until(now) - now]
        if self.consecutive_overloads and self.in_flight:
            # After 429s without details, one request at a time tells whether the service is
            # back (like a circuit breaker half open): not a whole burst per backoff round.
            waits.append(math.inf)
        if paced:
            waits.append(self.queued_until - now)
            self._expire(now)
            for metric, (wait, needed) in self._metric_waits(now, tokens).items():
                if wait > 0 and self._may_raise(metric, needed):
                    wait = 0.0
                waits.append(wait)
        return max(0.0, *waits)

    def used(self, now: float) -> tuple[int, int, int]:
        """(requests this minute, input tokens this minute, requests today) as we count them."""
        self._expire(now)
        return len(self._minute), self._minute.tokens, len(self._day)

    # --- writing ---------------------------------------------------------------------------

    def admit(self, now: float, tokens: int) -> Slot:
        """Take a slot; a full window whose limit may grow is raised to make room."""
        self._expire(now)
        waits = self._metric_waits(now, tokens).items()
        raised = {m for m, (wait, needed) in waits if wait > 0 and self._raise(m, needed)}
        slot = Slot(now, tokens)
        self.queued_until = -math.inf
        for metric, limit in self.limits.items():
            # Near a known limit (remembered, or recovering from a lowering) one request at a
            # time goes above it, and the next only once its attempt has ended: earned credit
            # spent at once would be a burst of 429s. A raise for a shared window came first.
            if limit.growth == "additive" and (metric in raised or limit.probe_pending):
                limit.probe = slot
            limit.probe_pending = False
        self._record(slot)
        self.in_flight += 1
        return slot

    def release(self, slot: Slot) -> None:
        """`slot`'s attempt has ended, whatever its outcome (a probe above a limit is over)."""
        self.in_flight = max(0, self.in_flight - 1)
        for limit in self.limits.values():
            if limit.probe is slot:
                limit.probe = None

    def withdraw(self, slot: Slot) -> None:
        """`slot` was admitted but its request will not be sent: out of the windows."""
        self._forget(slot)
        self.release(slot)

    def _record(self, slot: Slot) -> None:
        # A window is kept only for a limit that exists, so an unlimited model's memory does not
        # grow with the number of requests it serves.
        if self.rpm is not None or self.tpm is not None:
            self._minute.append(slot)
        if self.rpd is not None:
            self._day.append(slot)

    def settle(self, slot: Slot, tokens: int) -> None:
        """Replace the estimate with the input tokens the service reported."""
        self._minute.retoken(slot, tokens)
        self._day.retoken(slot, tokens)
        slot.tokens = tokens

    def record_success(self, slot: Slot) -> list[Learned]:
        """A 200 for `slot`: the service had room. Earns growth; returns the raises worth
        telling."""
        self.consecutive_failures = 0
        self.consecutive_overloads = 0
        self.overloaded_since = None
        self.limits["rpm"].earn(1)
        self.limits["rpd"].earn(1)
        self.limits["tpm"].earn(slot.tokens)
        return [r for r in (lim.growth_report() for lim in self.limits.values()) if r]

    def final_reports(self) -> list[Learned]:
        """Raises not yet told (at the batch's end, so the log keeps the last working limit)."""
        return [r for r in (lim.growth_report(final=True) for lim in self.limits.values()) if r]

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
        # Measured from the admission, the ledger's stamp until settled (engine/sharing.py
        # `settle`): a request is stamped again once its last byte is written.
        slot.sent_late = now - slot.admitted_at > self.margin_s / 2
        slot.at = now
        # Tasks do not reach the wire in admission order; keep each window sorted by time, which
        # _expire, _count_wait and _token_wait rely on. The slot is recent, so look from the right.
        for window in (self._minute, self._day):
            window.move_later(slot)

    def rate_limited(
        self,
        now: float,
        slot: Slot,
        delay_s: float,
        metric: Metric,
        server_limit: int | None,
        source: LimitSource = "stated",
    ) -> Learned | None:
        """A per-minute 429 with a QuotaFailure (requests or tokens): park and learn.

        A limit the service states (`server_limit`, from quotaValue or the message) is the
        limit, exactly, and stops discovery. Without one, the rejected request (which did not
        use the service's quota) leaves our windows and what remains bounds the limit from
        above, lowering it at most by half; but a 429 whose delay is a sliver of the window is a
        race at the window's edge (the service stamped a request later than we did) and
        teaches nothing.
        """
        self._forget(slot)
        self.parked_until = max(self.parked_until, now + delay_s)
        self._expire(now)
        limit = self.limits[metric]
        if server_limit is not None:
            limit.growth = "fixed"
            learned = limit.set(server_limit, source)
            limit.ceiling = limit.value if limit.ceiling is None else limit.ceiling
            return learned
        if delay_s < 0.1 * self.spec.minute_s:
            # Capacity returns at once: not a lower limit but a race at the window's edge (the
            # service stamped an earlier request later than we did). Hold slots that much longer.
            self.margin_s = min(0.1 * self.spec.minute_s, self.margin_s + delay_s)
            return None
        if limit.value is None:
            return None  # no window was kept to learn from; parking is all we can do
        held = self._minute.tokens if metric == "tpm" else len(self._minute)
        return self._lower(limit, held)

    def overloaded(self, now: float, slot: Slot, delay_s: float) -> None:
        """A 429 with no details: back off for `delay_s`, learn nothing about any limit."""
        self._forget(slot)
        if self.backoff_until > now:
            return  # another refusal of the burst already backing the model off
        self.consecutive_overloads += 1
        if self.overloaded_since is None:
            self.overloaded_since = now
        self.backoff_until = now + delay_s

    def exhausted(
        self,
        now: float,
        slot: Slot | None,
        until: float,
        server_limit: int | None = None,
        source: LimitSource = "stated",
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
        limit = self.limits["rpd"]
        if server_limit is not None:
            limit.growth = "fixed"
            return limit.set(server_limit, source)
        if limit.value is None:
            return None
        return self._lower(limit, len(self._day))

    def out_until(self, now: float, slot: Slot, until: float) -> None:
        """A per-minute quota that will not return for long: the model is out until `until`
        (the batch rotates away) without anything learned about its day."""
        self._forget(slot)
        self.exhausted_until = max(self.exhausted_until, until)

    def queue_until(self, until: float) -> None:
        """Every process's windows together are full (a shared quota ledger): wait till then."""
        self.queued_until = until

    def raise_for(self, metric: Metric, needed: int) -> bool:
        """A shared window is full on `metric`, short by `needed`: raise a limit being
        discovered, as this batch's own full window would (False if it may not grow now).

        The request the raise makes room for is admitted next (`admit`), and near a known limit
        it is the probe: until its attempt ends, no other raise goes above the limit.
        """
        if not self._raise(metric, needed):
            return False
        limit = self.limits[metric]
        limit.probe_pending = limit.growth == "additive"
        return True

    def adopt(self, metric: Metric, value: int, source: LimitSource) -> Learned | None:
        """Take on a limit another process at this quota learned (its `source` says how).

        A limit the service stated is fixed, as if this batch had been told; a lowered one is
        recovered from additively; a raise (discovery, or recovery) is only ever taken upwards,
        since this batch may have grown past it meanwhile. A trusted ceiling still holds.
        """
        limit = self.limits[metric]
        if source in ("raised", "recovered") and limit.value is not None and value <= limit.value:
            return None
        learned = limit.set(value, "shared")
        if source in ("stated", "message"):
            limit.growth = "fixed"
            limit.ceiling = limit.value if limit.ceiling is None else limit.ceiling
        elif source == "lowered" and limit.growth != "fixed":
            limit.growth = "additive"
            limit.credit = 0.0
            limit.step = max(1.0, RECOVERY_SHARE * value)
        return learned

    def adopt_hold(self, state: str, until: float, now: float) -> bool:
        """Another process was refused: hold this model as it was told to (parked, backing
        off, or out of daily quota) until `until`. True when this changes the model's state."""
        before = self.state(now)
        if state == "parked":
            self.parked_until = max(self.parked_until, until)
        elif state == "backing_off":
            self.backoff_until = max(self.backoff_until, until)
        elif state == "exhausted":
            self.resume_exhausted(until)
        return self.state(now) != before

    def resume_exhausted(self, until: float) -> None:
        """Carry over a per-day exhaustion recorded by an earlier batch (learns nothing)."""
        self.exhausted_until = max(self.exhausted_until, until)
        self._day_resets_at = self.exhausted_until

    def drop(self, reason: str) -> None:
        """The model is gone (retired, not supported, no quota): it leaves the ladder."""
        self.gone = reason

    def preload(self, slots: list[Slot]) -> None:
        """Start from requests already sent (e.g. an earlier batch's, read from the call log).

        Call it before the first `admit`: the windows are kept in time order by appending.
        """
        for slot in sorted(slots, key=lambda s: s.at):
            self._record(slot)

    # --- internals -------------------------------------------------------------------------

    def _lower(self, limit: WorkingLimit, held: int) -> Learned | None:
        """Lower a limit from what our window held, at most halving it per 429.

        Without a figure from the service the window is only evidence: the quota may have been
        used by another process, so one 429 must not collapse a limit to 1. Repeated 429s still
        converge on a truly lower limit, as multiplicative decrease does; afterwards the limit
        recovers additively while the 429s stay away.
        """
        current = limit.value
        assert current is not None
        target = max(1, held, current // 2)
        limit.growth = "additive"
        limit.credit = 0.0
        limit.step = max(1.0, RECOVERY_SHARE * target)
        if target >= current:
            return None
        return limit.set(target, "lowered")

    def _metric_waits(self, now: float, tokens: int) -> dict[Metric, tuple[float, int]]:
        """Per metric: (seconds until the window has room, how much the limit lacks now)."""
        rpm, tpm, rpd = self.rpm, self.tpm, self.rpd
        minute = self._count_wait(self._minute, rpm, self.spec.minute_s, now)
        day = min(self._count_wait(self._day, rpd, self.spec.day_s, now), self._day_resets_at - now)
        held = self._minute.tokens
        return {
            "rpm": (minute, 0 if rpm is None else len(self._minute) + 1 - rpm),
            "tpm": (self._token_wait(tokens, now), 0 if tpm is None else held + tokens - tpm),
            "rpd": (day, 0 if rpd is None else len(self._day) + 1 - rpd),
        }

    def _may_raise(self, metric: Metric, needed: int) -> bool:
        """Whether a full window on `metric` may be raised for one more request now."""
        limit = self.limits[metric]
        if limit.value is None or limit.growth == "fixed" or limit.at_ceiling or limit.probing:
            return False
        if limit.credit >= needed:
            return True
        # Nothing in flight to earn credit: a guess must not stall the batch, nor a remembered
        # one (a raised daily figure is only what an earlier batch sent), so one probe goes. A
        # limit a 429 lowered recovers only with credit earned by successes.
        guessed = limit.growth == "slow_start" or limit.source == "remembered"
        return guessed and self.in_flight == 0

    def _raise(self, metric: Metric, needed: int) -> bool:
        """Raise a full window's limit for one more request, if it may grow now."""
        limit = self.limits[metric]
        if not self._may_raise(metric, needed):
            return False
        if not limit.spend(needed):  # the probe: nothing in flight, no credit yet
            limit.credit = float(needed)
            limit.spend(needed)
        return True

    def _forget(self, slot: Slot) -> None:
        for window in (self._minute, self._day):
            window.discard(slot)  # unless already expired out of this window

    def _expire(self, now: float) -> None:
        if now >= self._day_resets_at:
            self._day.clear()
            self._day_resets_at = math.inf
        for window, length in ((self._minute, self.spec.minute_s), (self._day, self.spec.day_s)):
            while window and window[0].at + length + self.margin_s <= now:
                window.popleft()
        if self._day_bounds is not None:
            # Google's day: what was sent before the last midnight Pacific no longer counts.
            start, _ = self._day_bounds(now)
            while self._day and self._day[0].at < start:
                self._day.popleft()

    def _count_wait(
        self, window: SlotWindow, limit: int | None, length: float, now: float
    ) -> float:
        if limit is None or len(window) < limit:
            return 0.0
        if limit == 0:
            return math.inf
        # The window must drop len - limit + 1 slots; the last of those leaves at this time.
        leaves = window[len(window) - limit].at + length + self.margin_s
        if window is self._day and self._day_bounds is not None:
            leaves = min(leaves, self._day_bounds(now)[1])
        return leaves - now

    def _token_wait(self, tokens: int, now: float) -> float:
        if self.tpm is None:
            return 0.0
        excess = self._minute.tokens + tokens - self.tpm
        for slot in self._minute:
            if excess <= 0:
                break
            excess -= slot.tokens
            if excess <= 0:
                return slot.at + self.spec.minute_s + self.margin_s - now
        if excess > 0 and self._minute:  # larger than the learned limit: it goes alone
            return self._minute[-1].at + self.spec.minute_s + self.margin_s - now
        return 0.0
