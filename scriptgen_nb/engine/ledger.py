"""The quota ledger's contract: one quota, paced together by every process that uses it.

Rate limits belong to the Google Cloud project behind a key, not to a process: two kernels (or
a kernel and `scriptgen run`, or a team's workers) that each pace as if they had the whole
quota send twice what it holds and learn it from 429s. A `QuotaLedger` is a store they share
(quota/local.py: SQLite in the user's cache directory; quota/redis.py: Redis for many hosts),
scoped to one quota identity (endpoint and key fingerprint). It keeps, per model:

- every process's **slots** (a request and its input tokens), stamped in wall-clock time since
  processes share no event loop, so `admit` decides atomically from all of them whether one
  more fits the requests-per-minute, input-tokens-per-minute and requests-per-day windows; a
  killed process's slots simply age out of the windows;
- **contenders**: the batches asking for a model; while several do, each is owed an equal
  share of its requests per minute, so batches that want more than the window holds split it
  (and room nobody else comes for is not wasted);
- **limits learned** and **holds** (a model parked by a per-minute 429, backing off after 429s
  without details, or out of daily quota), versioned: `admit` hands a batch what others learned
  since it last asked (`Admission.news`) before admitting anything, so a 429 in one process
  slows the others at their next admission.

The engine's own `ModelLimiter` still paces each batch and learns; the ledger is asked only
when the limiter would send, and it has the last word. Times here are wall-clock seconds; the
engine converts its loop clock. Imports nothing outside `engine/`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from .limits import Metric
from .models import ModelSpec
from .policy import REAL_DAY_S, pacific_day_bounds
from .values import LimitSource

HoldState = Literal["parked", "backing_off", "exhausted"]


@dataclass(frozen=True, slots=True)
class Windows:
    """How a model's windows are measured at the moment of an admission (wall clock).

    A slot counts towards the minute while `at > now - minute_s - margin_s`, and towards the
    day from `day_from` on (Google's last midnight Pacific, or `now - day_s` for a compressed
    day); `day_ends` is when today's requests stop counting (a refused day waits for it).
    """

    minute_s: float
    margin_s: float
    day_from: float
    day_ends: float


def windows_at(spec: ModelSpec, wall: float, margin_s: float) -> Windows:
    """`spec`'s windows at wall time `wall`: real days are Google's (Pacific midnight to
    midnight, as the engine counts them), compressed ones slide."""
    if spec.day_s == REAL_DAY_S:
        day_from, day_ends = pacific_day_bounds(wall)
    else:
        day_from, day_ends = wall - spec.day_s - margin_s, math.inf
    return Windows(spec.minute_s, margin_s, day_from, day_ends)


@dataclass(frozen=True, slots=True)
class SharedLimit:
    """A working limit a batch learned for a model, shared with the others."""

    model: str
    metric: Metric
    value: int
    source: LimitSource
    version: int


@dataclass(frozen=True, slots=True)
class SharedHold:
    """A model no batch at this quota may send to before `until` (wall clock)."""

    model: str
    state: HoldState
    until: float
    version: int


@dataclass(frozen=True, slots=True)
class Admission:
    """The ledger's answer to one admission.

    `slot` is set when the request may go (its id for `settle` / `forget`). Otherwise `news`
    holds what other batches learned since the version asked about (adopt it, then ask again),
    or `wait_s` says when to ask again: the model is held, the room is owed to other contenders
    (`metric` None), or a window is full (`metric`, and by how much its limit falls short,
    `needed`, so a limit being discovered may be raised).
    `more` holds the further slots granted with `slot` when several were wanted (`want`), for
    this batch's next requests, stamped now with `tokens` like `slot` (a request of another
    estimate corrects it with a `settle`). When fewer were granted than wanted, the rest were
    refused in the same step: `wait_s`, `metric` and `needed` say why as a refusal would (the
    batch need not ask again before then, once its grants are used); 0 when none lacked.
    `others` counts the other processes using the quota now; `version` is the newest news.
    """

    slot: int | None
    more: tuple[int, ...] = ()
    wait_s: float = 0.0
    metric: Metric | None = None
    needed: int = 0
    news: tuple[SharedLimit | SharedHold, ...] = ()
    version: int = 0
    others: int = 0


class QuotaLedger(Protocol):
    """A store of one quota identity's windows, shared by processes (module doc)."""

    description: str  # where it is, for messages ("/home/me/.cache/scriptgen_nb/quota.sqlite")

    def check(self) -> None:
        """Open the ledger now: `QuotaLedgerError` (engine/errors.py) if it cannot be used."""
        ...

    def admit(
        self,
        model: str,
        *,
        now: float,
        tokens: int,
        limits: Mapping[Metric, int | None],
        windows: Windows,
        seen: int,
        want: int = 1,
    ) -> Admission:
        """Take a slot for a request of `tokens` input tokens if every window has room under
        `limits` (None: not limited) and the room is not owed to other contenders; `seen` is
        the newest version this batch has adopted. With `want` above 1, up to `want - 1` more
        slots of `tokens` each as the same rules allow (`Admission.more`), in the same
        transaction: a burst of requests is admitted at the cost of one."""
        ...

    def settle(self, slot: int, *, at: float, tokens: int) -> None:
        """The slot's request went on the wire at `at` (it was admitted a moment before) and
        the service counted `tokens` input tokens (it was admitted with an estimate). Kept
        until this batch's next admission, `flush` or `close`, and written with it: both only
        move the slot a little within windows far longer than a call, which other processes
        then read a moment late at worst, and a write of its own per request would double the
        ledger's cost."""
        ...

    def flush(self) -> None:
        """Write the settles kept now (one transaction, nothing when none is kept): a send
        that came late after its admission must be known to the others before the window's
        edge (engine/sharing.py `settle`)."""
        ...

    def forget(self, slot: int) -> None:
        """The request was refused or never sent: it does not use the quota."""
        ...

    def learn(self, model: str, metric: Metric, value: int, source: LimitSource) -> int:
        """Share a working limit; returns its version (this batch has it already)."""
        ...

    def hold(self, model: str, state: HoldState, until: float) -> int:
        """No batch may send to `model` before `until`; returns the hold's version."""
        ...

    def close(self) -> None:
        """Leave the ledger: this batch waits no longer (its slots stay until they age out).
        Never raises: a ledger that cannot be left is left anyway (it stops contending after
        a window)."""
        ...

    def usage(self, model: str, *, now: float, windows: Windows) -> tuple[int, int, int, int]:
        """(requests this minute, input tokens this minute, requests today, other processes
        with requests this minute) for `model`, every process together (`%scriptgen models`)."""
        ...
