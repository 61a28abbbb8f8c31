"""Theoretical lower bounds under the emulator's window semantics.

The emulator (like Google) counts requests in sliding windows: a request admitted at t occupies
a slot until t + W. A sliding window therefore admits a full window's worth at once: the best
any client can do on a model with limit R is a burst of R at t = 0, R more at t = W, and so on,
so by time t at most R * (floor(t / W) + 1) requests have been admitted. A per-day quota caps
the total a model can ever admit in the run. The N-th request cannot be admitted before the
first burst that reaches N, and cannot be answered before one (minimum) latency later.

`staircase_bound` is that bound for a ladder of models used together; `ideal_span_after`
computes the same ideal schedule starting from windows that already hold slots, which is how
the post-exhaustion rate of scenario 3 is judged.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limit:
    """What the server admits on one model: requests per window and, optionally, per day."""

    rpm: int | None
    rpd: int | None = None


def _bursts(n: int, models: Sequence[Limit]) -> Iterator[int]:
    """How many requests each window admits in turn (the first at t = 0), until none can be.

    A model without a per-minute limit admits `n` per window; a per-day quota caps the total.
    """
    left = [math.inf if m.rpd is None else float(m.rpd) for m in models]
    while True:
        step = 0
        for i, m in enumerate(models):
            take = min(float(m.rpm if m.rpm is not None else n), left[i])
            left[i] -= take
            step += int(take)
        if step == 0:
            return
        yield step


def staircase_bound(n: int, models: Sequence[Limit], window_s: float, latency_s: float) -> float:
    """Seconds before `n` requests can all be answered (inf if the quotas cannot admit them)."""
    if n <= 0:
        return 0.0
    admitted = 0
    for k, step in enumerate(_bursts(n, models)):
        admitted += step
        if admitted >= n:
            return k * window_s + latency_s
    return math.inf


def ideal_span_after(
    start: float,
    n: int,
    occupied: Sequence[Sequence[float]],
    limits: Sequence[int],
    window_s: float,
) -> float:
    """Seconds from `start` until an ideal client has sent `n` more requests (>= 0).

    Free slots are usable at `start`; a slot taken at `start` frees at `start + W`.
    """
    if n <= 0:
        return 0.0
    heap: list[float] = []
    for slots, limit in zip(occupied, limits, strict=True):
        times = sorted(t for t in slots if t > start - window_s)[-limit:] if limit else []
        heap.extend(t + window_s for t in times)
        heap.extend(start for _ in range(limit - len(times)))
    heapq.heapify(heap)
    last = start
    for _ in range(n):
        at = max(start, heapq.heappop(heap))
        last = at
        heapq.heappush(heap, at + window_s)
    return last - start


def staircase_curve(
    n: int, models: Sequence[Limit], window_s: float, latency_s: float
) -> list[list[float]]:
    """(time, answered so far) steps of the ideal client, for the charts."""
    points: list[list[float]] = [[0.0, 0]]
    done = 0
    for k, step in enumerate(_bursts(n, models)):
        if done >= n:
            break
        t = k * window_s + latency_s
        points.append([t, done])
        done = min(n, done + step)
        points.append([t, done])
    return points
