"""Routing: which model of a ladder a request goes to now, or how long until one can take it.

A pure function over the ladder's limiters, in preference order. `preference` routing sends a
request to the most preferred model with room now, so a batch uses the ladder's combined rate;
`failover` uses a lower model only while every higher one is parked, backing off, cooling or
exhausted. A model that is gone (retired, unsupported, no quota) is never chosen.
Imports nothing outside `engine/`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .limits import ModelLimiter
from .values import Failure


@dataclass(frozen=True, slots=True)
class Go:
    """Send it now, to this model."""

    limiter: ModelLimiter


@dataclass(frozen=True, slots=True)
class Wait:
    """No model can take it yet; the earliest may in this many seconds."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Never:
    """No model of its ladder will take it in this batch."""

    failure: Failure


def choose_model(
    ladder: Sequence[ModelLimiter],
    tokens: int,
    now: float,
    *,
    pinned: str | None = None,
    paced: bool = True,
    failover: bool = False,
) -> Go | Wait | Never:
    """Route a request of about `tokens` input tokens; `pinned` restricts it to one model."""
    candidates = [lim for lim in ladder if pinned is None or lim.spec.name == pinned]
    if not candidates:
        return Never(Failure("invalid_request", f"model {pinned!r} is not in this batch's ladder"))
    present = [lim for lim in candidates if lim.gone is None]
    if not present:
        gone = "; ".join(f"{lim.spec.name}: {lim.gone}" for lim in candidates)
        return Never(Failure("not_found", f"no model of its ladder is served any more ({gone})"))
    live = [lim for lim in present if lim.usable and lim.exhausted_until <= now]
    if not live:
        resets = ", ".join(
            f"{lim.spec.name} in {_duration(lim.exhausted_until - now)}"
            for lim in sorted(present, key=lambda lim: lim.exhausted_until)
        )
        return Never(
            Failure(
                "not_run",
                f"every model is out of quota until its reset ({resets}). Re-run then to "
                "resume: only what did not run is sent.",
            )
        )
    fitting = [lim for lim in live if not lim.never_fits(tokens)]
    if not fitting:
        return Never(
            Failure(
                "too_large",
                f"about {tokens} input tokens exceed the input or per-minute token limit of "
                "every model in the ladder",
            )
        )
    waits = []
    for limiter in fitting:
        wait = limiter.wait_s(now, tokens, paced=paced)
        if wait <= 0:
            return Go(limiter)
        waits.append(wait)
        if failover and limiter.state(now) == "ready":
            break  # merely paced, not unavailable: strict failover waits for it
    return Wait(min(waits))


def _duration(seconds: float) -> str:
    """A wait as people say it: "42s", "17m 5s", "5h 3m", "unknown" when it never ends."""
    if seconds == float("inf") or seconds != seconds:
        return "an unknown time"
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s" if minutes else f"{secs}s"
