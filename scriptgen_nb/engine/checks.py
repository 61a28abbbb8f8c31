"""Checking a number a user gives, where it is given: one helper for every numeric option.

`check_number` refuses a value that is not a real number (text, a bool: `True` is not 1
attempt), NaN or infinite, not whole where a count is meant, or out of range, with a message
naming the option, what is wrong with the value and what is allowed. NaN slipped through
comparisons (`nan < 1` is False: `max_attempts=nan` retried without bound) and text failed with
a bare TypeError. Imports nothing outside `engine/` but the exception tree.
"""

from __future__ import annotations

import math
import numbers

from .errors import ConfigurationError


def check_number(
    name: str,
    value: object,
    *,
    low: float | None = None,
    high: float | None = None,
    above: bool = False,
    whole: bool = False,
    optional: bool = False,
    unit: str = "",
    where: str = "",
) -> None:
    """Refuse `value` with a `ConfigurationError` unless it is a number in the allowed range.

    Allowed: `low` <= value <= `high` (`above`: value > `low`), finite, whole when `whole`;
    None when `optional`. `unit` says what the number counts ("seconds"); `where` prefixes the
    message with what the option belongs to ("Request 'a': ").
    """
    problem = None if value is None and optional else _problem(value, low, high, above, whole)
    if problem is None:
        return
    kind = "a whole number" if whole else "a number"
    what = f"{kind} of {unit}" if unit else kind
    none = " or None" if optional else ""
    rule = _rule(low, high, above=above)
    raise ConfigurationError(f"{where}{name}={value!r} {problem}: {name} {rule} ({what}){none}.")


def _problem(
    value: object, low: float | None, high: float | None, above: bool, whole: bool
) -> str | None:
    """What is wrong with `value`, or None."""
    if isinstance(value, bool):
        return "is True or False, not a number"
    if isinstance(value, str):
        return f"is text, not a number{_unquoted(value)}"
    if not isinstance(value, numbers.Real):
        return f"is a {type(value).__name__}, not a number"
    number = float(value)
    if math.isnan(number):
        return "is not a number (NaN)"
    if math.isinf(number):
        return "is infinite"
    if whole and not isinstance(value, numbers.Integral):
        return f"is a float; pass {number:.0f}" if number.is_integer() else "is not whole"
    too_low = low is not None and (number <= low if above else number < low)
    if too_low or (high is not None and number > high):
        return "is out of range"
    return None


def _unquoted(text: str) -> str:
    """A hint when the text is a number in quotes (a value read from a file or a form)."""
    try:
        float(text)
    except ValueError:
        return ""
    return f" (pass {text.strip()} without quotes)"


def _rule(low: float | None, high: float | None, *, above: bool) -> str:
    """The allowed range in words: "must be positive", "must be at least 1", ..."""
    if low is not None and high is not None:
        start = f"more than {_figure(low)}" if above else f"from {_figure(low)}"
        return f"must be {start} to {_figure(high)}"
    if low == 0:
        return "must be positive" if above else "must not be negative"
    if low is not None:
        return f"must be {'more than' if above else 'at least'} {_figure(low)}"
    return f"must be at most {_figure(high)}" if high is not None else "must be finite"


def _figure(bound: float) -> str:
    """A bound as written: 2,147,483,647 and 0.5, not 2.14748e+09."""
    return f"{int(bound):,}" if float(bound).is_integer() else f"{bound:g}"
