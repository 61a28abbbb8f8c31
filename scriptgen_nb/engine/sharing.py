"""One batch's side of a shared quota ledger: asked at each admission, told what is learned.

The engine calls `SharedQuota` where it would call its limiter alone: `admit` asks the ledger
(engine/ledger.py) before the limiter takes a slot, adopting first what other processes learned
(limits, and holds: a model parked, backing off or out of daily quota) and, when a shared window
is full, raising a limit being discovered or queueing the model until the ledger expects room.
A batch with several requests ready asks for as many slots at once: the ledger grants what the
windows and the others' shares allow in one transaction, and the slots granted beyond the first
serve the next requests (given back if not used within the window's margin, if news holds
the model or lowers its limit, or when the batch ends). What this
batch learns, and every slot it gives back (a 429, a request withdrawn) or settles, is told to
the ledger; settles are written with the next admission, or by a flush well before the
others would free the slot when a send came late, a burst's together. Without a ledger, or
once it failed (said once: the batch then paces alone, as without one), every call is the
limiter's alone. Loop time in, wall-clock time to the ledger. Imports nothing outside `engine/`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import NamedTuple, TypeVar

from .errors import QuotaLedgerError
from .ledger import Admission, HoldState, QuotaLedger, SharedHold, SharedLimit, windows_at
from .limits import Learned, ModelLimiter
from .values import Event, ModelStateChanged, QuotaShared
from .window import Slot

# Adopting news, or raising a limit being discovered, asks the ledger again at once: this many
# times at most per admission (news arrives in one piece; a raise is once per window).
ASKS_PER_ADMISSION = 4

# Asked again this much after the ledger expects room: wall and loop clocks differ in rounding,
# and a slot must have left the window when this batch asks, not be about to.
CLOCK_SLACK_S = 0.002

# A send that came late after its admission is written to the ledger within this share of the
# minute after its answer (`SharedQuota.settle`), and by half the time left before the other
# processes would free its slot: late sends come in bursts, and one flush writes a burst's.
FLUSH_WITHIN = 0.1

T = TypeVar("T")


class Grant(NamedTuple):
    """A slot the ledger granted beyond the one asked for, kept for a next request (whose own
    token estimate is written with the next settle: the windows are off by the difference
    for a moment, as they are by every estimate until its answer)."""

    shared_id: int
    tokens: int  # the input tokens it was granted for: the asker's estimate
    at: float  # loop time of the grant: the ledger stamped it then


class SharedQuota:
    """The ledger as one batch uses it (module doc); `ledger` None paces alone."""

    def __init__(
        self,
        ledger: QuotaLedger | None,
        emit: Callable[[Event], None],
    ) -> None:
        self._ledger = ledger
        self._emit = emit
        self.wall_offset = 0.0  # wall clock minus loop clock: set when the batch starts
        self._seen = 0  # the newest news version adopted
        self._own: set[int] = set()  # versions this batch published: not news to it
        self._granted: dict[str, deque[Grant]] = {}  # model -> slots granted, not yet used
        # model -> loop time the ledger expects room for more, queued once its grants are used
        self._wait_after_grants: dict[str, float] = {}
        self._flush_at: float | None = None  # loop time a flush is coming for late settles
        self.others = 0

    @property
    def active(self) -> bool:
        return self._ledger is not None

    def admit(
        self,
        limiter: ModelLimiter,
        tokens: int,
        now: float,
        learned: Callable[[ModelLimiter, Learned], None],
        limiters: dict[str, ModelLimiter],
        want: int = 1,
    ) -> Slot | None:
        """A slot for a request of `tokens` on `limiter`'s model, or None: the ledger says not
        now (the limiter then waits as it says, or another model is chosen). `want`: how many
        requests are ready to go, this one first (the ledger may grant the others' slots now).
        """
        if self._ledger is None or all(lim.value is None for lim in limiter.limits.values()):
            return limiter.admit(now, tokens)  # alone, or nothing to pace: the limiter's call
        granted = self._granted.get(limiter.spec.name)
        if granted and now - granted[0].at > limiter.margin_s:
            # Not used in the turn they were granted in (the requests went elsewhere or
            # waited): give them back, and ask again, so news (a hold) is not missed meanwhile.
            self._give_back(limiter.spec.name)
        elif granted:
            grant = granted.popleft()
            if grant.tokens != tokens:  # granted for the asker's estimate: this one's instead
                at = grant.at + self.wall_offset
                self._call(lambda ledger: ledger.settle(grant.shared_id, at=at, tokens=tokens))
            slot = limiter.admit(now, tokens)
            slot.shared_id, slot.admitted_at = grant.shared_id, grant.at
            if not granted and limiter.spec.name in self._wait_after_grants:
                limiter.queue_until(self._wait_after_grants.pop(limiter.spec.name))
            return slot
        for _ in range(ASKS_PER_ADMISSION):
            answer = self._ask(limiter, tokens, now, want)
            if answer is None:  # the ledger failed just now: pace alone
                return limiter.admit(now, tokens)
            self._count_others(answer)
            if answer.news:
                self._adopt(answer, now, learned, limiters)
                if limiter.wait_s(now, tokens) > 0:
                    return None  # held, or lowered below what the window holds
                continue
            if answer.slot is not None:
                slot = limiter.admit(now, tokens)
                slot.shared_id = answer.slot
                if answer.more:
                    kept = self._granted.setdefault(limiter.spec.name, deque())
                    kept.extend(Grant(more, tokens, now) for more in answer.more)
                if _refused_the_rest(answer, limiter):
                    until = now + answer.wait_s + CLOCK_SLACK_S
                    if answer.more:
                        self._wait_after_grants[limiter.spec.name] = until
                    else:
                        limiter.queue_until(until)
                return slot
            if answer.metric is not None and limiter.raise_for(answer.metric, answer.needed):
                want = 1  # the raise makes room for this request alone
                continue  # a limit being discovered grew: ask with it
            limiter.queue_until(now + answer.wait_s + CLOCK_SLACK_S)
            return None
        # Asked enough for one turn of the loop (news kept coming): a moment, then again.
        limiter.queue_until(now + CLOCK_SLACK_S)
        return None

    def settle(self, slot: Slot, limiter: ModelLimiter, now: float) -> float | None:
        """The slot's request was answered (at `now`): when it was sent, and the service's
        count of its input tokens. Seconds until the caller should `flush`, or None.

        Written with the next admission, unless the send came later after its admission (or
        its grant) than half the window's margin (a burst after a hold reaches the wire tens
        of milliseconds late): the others count the slot from its admission stamp, so they
        would free it before the service does and meet a 429 (then a hold, then another
        burst) if this batch's next admission came only at the window's edge. It is flushed
        within FLUSH_WITHIN of the minute, and by half the time left before that edge, with the
        late settles that come meanwhile.
        """
        shared_id = slot.shared_id
        if shared_id is None:
            return None
        at = slot.at + self.wall_offset  # when it went on the wire
        self._call(lambda ledger: ledger.settle(shared_id, at=at, tokens=slot.tokens))
        if not slot.sent_late:
            return None
        freed_at = slot.admitted_at + limiter.spec.minute_s + limiter.margin_s
        within = min(FLUSH_WITHIN * limiter.spec.minute_s, max(0.0, (freed_at - now) / 2))
        if self._flush_at is not None and self._flush_at <= now + within:
            return None  # the flush coming writes it in time
        self._flush_at = now + within
        return within

    def flush(self) -> None:
        """Write the settles kept (the late sends' among them) now."""
        self._flush_at = None
        self._call(lambda ledger: ledger.flush())

    def forget(self, slot: Slot) -> None:
        """The slot's request was refused or not sent: it gives the ledger its room back."""
        if slot.shared_id is not None:
            shared_id, slot.shared_id = slot.shared_id, None
            self._forget_slot(shared_id)

    def learned(self, model: str, learned: Learned) -> None:
        """Share a limit this batch learned (not one it adopted or remembered)."""
        if learned.source in ("remembered", "shared"):
            return
        version = self._call(
            lambda ledger: ledger.learn(model, learned.metric, learned.learned, learned.source)
        )
        if version is not None:
            self._own.add(version)

    def held(self, model: str, state: HoldState, until: float) -> None:
        """Share that `model` takes nothing before loop time `until` (and give back the slots
        granted for it: nothing will use them meanwhile)."""
        self._give_back(model)
        version = self._call(lambda ledger: ledger.hold(model, state, until + self.wall_offset))
        if version is not None:
            self._own.add(version)

    def close(self) -> None:
        if self._ledger is not None:
            for model in list(self._granted):
                self._give_back(model)
            self._call(lambda ledger: ledger.close())
            self._ledger = None

    # --- internals ----------------------------------------------------------------------------

    def _ask(self, limiter: ModelLimiter, tokens: int, now: float, want: int) -> Admission | None:
        limits = {metric: limit.value for metric, limit in limiter.limits.items()}
        windows = windows_at(limiter.spec, now + self.wall_offset, limiter.margin_s)
        return self._call(
            lambda ledger: ledger.admit(
                limiter.spec.name,
                now=now + self.wall_offset,
                tokens=tokens,
                limits=limits,
                windows=windows,
                seen=self._seen,
                want=want,
            )
        )

    def _forget_slot(self, shared_id: int) -> None:
        self._call(lambda ledger: ledger.forget(shared_id))

    def _give_back(self, model: str) -> None:
        """Forget the slots granted for `model` and not used: room for the others."""
        self._wait_after_grants.pop(model, None)  # it asks again at once
        for grant in self._granted.pop(model, ()):
            self._forget_slot(grant.shared_id)

    def _adopt(
        self,
        answer: Admission,
        now: float,
        learned: Callable[[ModelLimiter, Learned], None],
        limiters: dict[str, ModelLimiter],
    ) -> None:
        """Take on what other batches learned: limits, and holds (told to listeners)."""
        self._seen = max(self._seen, answer.version)
        for item in answer.news:
            limiter = limiters.get(item.model)
            if item.version in self._own or limiter is None:
                continue
            if _narrows(item, limiter):
                self._give_back(item.model)  # granted under a state or a limit now narrower
            if isinstance(item, SharedLimit):
                change = limiter.adopt(item.metric, item.value, item.source)
                if change is not None:
                    learned(limiter, change)
            elif isinstance(item, SharedHold):
                until = item.until - self.wall_offset
                if limiter.adopt_hold(item.state, until, now):
                    self._emit(
                        ModelStateChanged(
                            item.model,
                            item.state,
                            until - now,
                            "another process at this quota was refused",
                        )
                    )

    def _count_others(self, answer: Admission) -> None:
        if answer.others != self.others:
            self.others = answer.others
            assert self._ledger is not None
            self._emit(QuotaShared(answer.others, self._ledger.description))

    def _call(self, call: Callable[[QuotaLedger], T]) -> T | None:
        """`call` on the ledger; a failure is said once and the batch paces alone from then."""
        if self._ledger is None:
            return None
        try:
            return call(self._ledger)
        except QuotaLedgerError as exc:
            ledger, self._ledger = self._ledger, None
            self._emit(
                QuotaShared(
                    0,
                    ledger.description,
                    failed=f"{exc}. This batch paces alone from now (429s still teach it).",
                )
            )
            ledger.close()
            return None


def _refused_the_rest(answer: Admission, limiter: ModelLimiter) -> bool:
    """Whether a grant short of what was wanted refused the rest for a while: the others'
    shares, or a window whose limit cannot grow (a limit being discovered asks again, to be
    raised, as a refusal would)."""
    if answer.wait_s <= 0:
        return False
    return answer.metric is None or limiter.limits[answer.metric].growth == "fixed"


def _narrows(item: SharedLimit | SharedHold, limiter: ModelLimiter) -> bool:
    """Whether news takes room away from what `limiter`'s model was granted under: a hold, or a
    limit below the working one (or where there was none). A raise leaves grants good."""
    if isinstance(item, SharedHold):
        return True
    current = limiter.limits[item.metric].value
    return current is None or item.value < current
