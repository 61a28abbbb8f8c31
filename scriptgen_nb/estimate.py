"""Dry runs: what a batch would cost and how long the account's limits make it take, unsent.

Input tokens use the engine's own estimate (about four characters a token); output tokens are
each request's `max_output_tokens` when set (an upper bound) or a typical 1,024. Cost is priced
on the ladder's first usable model (the one a batch prefers). Time is the limit-bound lower
bound: the ladder's combined per-window request rate (and token rate) admits the batch window
by window, plus one typical latency.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .engine.errors import ConfigurationError
from .engine.models import ModelSpec
from .engine.pricing import CostTotal, format_usd
from .engine.runner import reserved_usage
from .engine.values import GenerationRequest

TYPICAL_LATENCY_S = 10.0


@dataclass(frozen=True, slots=True)
class Estimate:
    requests: int
    input_tokens: int
    output_tokens: int
    cost_usd: float | None  # None: the model's price is unknown
    seconds: float
    model: str

    def __str__(self) -> str:
        return (
            f"dry run: {self.requests} requests, ~{self.input_tokens:,} input and up to "
            f"{self.output_tokens:,} output tokens, ~{format_usd(self.cost_usd)} on {self.model}, "
            f"at least {self.seconds:.0f}s at the ladder's rate limits (nothing was sent)"
        )


def estimate_batch(
    requests: Iterable[GenerationRequest],
    ladder: Sequence[ModelSpec],
    *,
    latency_s: float = TYPICAL_LATENCY_S,
) -> Estimate:
    """Estimate tokens, cost and the limit-bound duration of a batch without sending it."""
    usable = [spec for spec in ladder if spec.usable]
    if not usable:
        raise ConfigurationError("No usable model in the ladder to estimate with.")
    first = usable[0]
    count = tokens_in = tokens_out = 0
    cost = CostTotal()
    for request in requests:
        usage = reserved_usage(request)
        count += 1
        tokens_in += usage.input
        tokens_out += usage.output
        cost = cost.add(first.cost_usd(usage))
    return Estimate(
        count,
        tokens_in,
        tokens_out,
        None if cost.unpriced else cost.usd,
        limit_bound_s(count, tokens_in, usable, latency_s),
        first.name,
    )


def limit_bound_s(
    count: int, input_tokens: int, ladder: Sequence[ModelSpec], latency_s: float
) -> float:
    """The shortest time the ladder's sliding windows allow for `count` requests.

    A sliding window admits a full window's worth at once, then one more window each period,
    so the bound is (windows needed - 1) x window + one latency. Daily limits are not counted.
    """
    if count == 0:
        return 0.0
    per_window = 0.0
    window_s = min(spec.minute_s for spec in ladder)
    if any(spec.rpm is None and spec.tpm is None for spec in ladder):
        return latency_s  # some model is unlimited: only latency bounds it
    tokens_per_window = 0.0
    for spec in ladder:
        per_window += spec.rpm if spec.rpm is not None else math.inf
        tokens_per_window += spec.tpm if spec.tpm is not None else math.inf
    by_requests = math.ceil(count / per_window) if per_window != math.inf else 1
    by_tokens = math.ceil(input_tokens / tokens_per_window) if tokens_per_window != math.inf else 1
    return (max(by_requests, by_tokens, 1) - 1) * window_s + latency_s


def live_bound_s(
    count: int, input_tokens: int, ladder: Sequence[ModelSpec], latency_s: float
) -> float:
    """`limit_bound_s` with the daily limits counted too: what live calls need at the least.

    When every model of the ladder has a requests-per-day limit, a batch larger than their sum
    needs more days: each further day's worth waits a day window (the Batch API's case).
    """
    bound = limit_bound_s(count, input_tokens, ladder, latency_s)
    if count == 0 or any(spec.rpd is None for spec in ladder):
        return bound
    per_day = sum(spec.rpd or 0 for spec in ladder)
    if per_day == 0:
        return math.inf
    days = math.ceil(count / per_day)
    return max(bound, (days - 1) * min(spec.day_s for spec in ladder) + latency_s)
