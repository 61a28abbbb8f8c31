"""Prices as Google bills them: by the Pacific calendar day, cached input apart, some unknown.

A `Price` is one model's USD per 1M tokens for input, cached input, output (thought tokens are
billed as output) and, where the model has them, long-context input and output. A model may
have dated prices (an introductory price `until` a day); the day a call is billed on is its
date in America/Los_Angeles, Google's billing and quota calendar (`pacific_date`). A price of
None is unknown (a model the endpoint lists but the catalogue does not price): its cost is None,
never $0, and sums over such costs say what they leave out (`CostTotal`).

"Today", for prices and for the catalogue's shutdown dates, is read from `catalogue_day`:
`SCRIPTGEN_TODAY=YYYY-MM-DD` pins it (tests, committed notebooks, re-pricing a past bill), so
nothing changes by itself on a date. Quota resets do not read it: they follow the real clock.
Imports nothing outside `engine/` (and zoneinfo needs the `tzdata` package where the system has
no time-zone database).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from .errors import ConfigurationError
from .values import Usage

PACIFIC = ZoneInfo("America/Los_Angeles")
ENV_TODAY = "SCRIPTGEN_TODAY"


def pacific_date(at: float) -> date:
    """The calendar date in America/Los_Angeles at POSIX time `at`."""
    return datetime.fromtimestamp(at, PACIFIC).date()


def catalogue_day(at: float | None = None) -> date:
    """The day prices and shutdown dates are read at: `SCRIPTGEN_TODAY` when set, else the
    Pacific date of `at` (POSIX seconds; None: now)."""
    pinned = os.environ.get(ENV_TODAY)
    if pinned:
        return as_date(pinned, ENV_TODAY)
    return pacific_date(time.time() if at is None else at)


def as_date(value: object, what: str) -> date:
    """A `datetime.date` from a date (TOML's `2026-12-31`) or an ISO string (JSON's)."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ConfigurationError(f"{what} must be a date such as 2026-12-31, not {value!r}.")


@dataclass(frozen=True, slots=True)
class Price:
    """USD per 1M tokens. `until` (a dated price) is the last Pacific day it applies.

    `cached_input_usd_per_1m` None bills cached input at the input price (no discount assumed);
    the `_long` prices, when set, apply to a whole request whose prompt exceeds the model's
    long-context threshold. An input or output price of None makes the cost unknown.
    """

    input_usd_per_1m: float | None = None
    output_usd_per_1m: float | None = None
    cached_input_usd_per_1m: float | None = None
    input_usd_per_1m_long: float | None = None
    output_usd_per_1m_long: float | None = None
    until: date | None = None

    def __post_init__(self) -> None:
        for name in _RATES:
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value < 0
            ):
                raise ConfigurationError(
                    f"{name} must be a price in USD per 1M tokens (a finite number >= 0) or "
                    f"None (unknown), not {value!r}."
                )
        if self.until is not None:
            object.__setattr__(self, "until", as_date(self.until, "A price's until"))

    @classmethod
    def dated(cls, entry: Price | Mapping[str, Any], model: str) -> Price:
        """A dated price from a catalogue's `prices = [{ until = ..., ... }]` entry."""
        if isinstance(entry, Mapping):
            unknown = set(entry) - _PRICE_FIELDS
            if unknown:
                raise ConfigurationError(
                    f"ModelSpec {model!r}: a dated price has unknown fields {sorted(unknown)}; "
                    f"allowed: {sorted(_PRICE_FIELDS)}."
                )
            entry = cls(**entry)
        if not isinstance(entry, Price):
            raise ConfigurationError(
                f"ModelSpec {model!r}: prices must be a list of tables such as "
                "{ until = 2026-12-31, input_usd_per_1m = 0.75, output_usd_per_1m = 3.75 }, "
                f"not {entry!r}."
            )
        if entry.until is None or not entry.known:
            raise ConfigurationError(
                f"ModelSpec {model!r}: a dated price needs `until` (its last day, Pacific time) "
                f"and both input_usd_per_1m and output_usd_per_1m; got {entry!r}."
            )
        return entry

    @property
    def known(self) -> bool:
        return self.input_usd_per_1m is not None and self.output_usd_per_1m is not None

    def cost_usd(self, usage: Usage, long_context_tokens: int) -> float | None:
        """What `usage` costs at this price: cached input at the cached price, the rest of the
        input at the input price, output and thoughts at the output price; None if unknown."""
        if self.input_usd_per_1m is None or self.output_usd_per_1m is None:
            return None
        long = usage.input > long_context_tokens
        input_price = _pick(self.input_usd_per_1m_long, self.input_usd_per_1m, long)
        output_price = _pick(self.output_usd_per_1m_long, self.output_usd_per_1m, long)
        cached = self.cached_input_usd_per_1m
        cached_price = input_price if cached is None else cached
        fresh = usage.input - usage.cached
        billed = (
            fresh * input_price
            + usage.cached * cached_price
            + (usage.output + usage.thoughts) * output_price
        )
        return billed / 1e6


_RATES = (
    "input_usd_per_1m",
    "output_usd_per_1m",
    "cached_input_usd_per_1m",
    "input_usd_per_1m_long",
    "output_usd_per_1m_long",
)
_PRICE_FIELDS = frozenset(f.name for f in fields(Price))


def _pick(special: float | None, base: float, applies: bool) -> float:
    return special if applies and special is not None else base


def format_usd(cost: float | None) -> str:
    """`$0.0123`, or `cost unknown` for a model without a known price."""
    return "cost unknown" if cost is None else f"${cost:.4f}"


@dataclass(frozen=True, slots=True)
class CostTotal:
    """A sum of costs some of which may be unknown: the known part and how many were not."""

    usd: float = 0.0
    priced: int = 0
    unpriced: int = 0

    @classmethod
    def of(cls, costs: Iterable[float | None]) -> CostTotal:
        total = cls()
        for cost in costs:
            total = total.add(cost)
        return total

    def add(self, cost: float | None) -> CostTotal:
        if cost is None:
            return CostTotal(self.usd, self.priced, self.unpriced + 1)
        return CostTotal(self.usd + cost, self.priced + 1, self.unpriced)

    def __str__(self) -> str:
        """`$0.0123`; `at least $0.0123 (2 requests of unknown price)`; `cost unknown`."""
        if not self.unpriced:
            return format_usd(self.usd)
        if not self.priced:
            return "cost unknown"
        plural = "request" if self.unpriced == 1 else "requests"
        return f"at least {format_usd(self.usd)} ({self.unpriced} {plural} of unknown price)"
