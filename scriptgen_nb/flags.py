"""The settings flags both command surfaces share, checked in the flags' own words.

`%%scriptgen batch` and `%scriptgen retry` (jupyter/magic.py), `scriptgen run` and `scriptgen
retry` (cli/) take the same settings: what every request gets (`--temperature`, `--top-p`,
`--seed`, `--max-tokens`, `--thinking-level`, `--system`) and what the batch gets (`--budget`,
`--timeout`, `--max-attempts`, `--log-wait`, `--concurrency`, `--deadline` with `--mode`). The
library checks each value too, but names it as Python does (`budget_usd=-1.0`, `Request '0':
temperature=9.0`, `deadline='2h' is for mode='auto'`): checked here first, before anything is
built or sent, a bad value is one `ConfigurationError` line naming the flag as typed and what
it accepts. A surface
reads its parsed flags by their namespace names (`args.max_output_tokens`, `args.budget`, ...;
a flag a surface lacks counts as not given). Imports no IPython, no argparse and no duckdb.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .batch_api.plan import parse_deadline
from .engine.checks import check_number
from .engine.errors import ConfigurationError
from .engine.policy import MAX_CONCURRENCY
from .engine.values import SEED_RANGE, TEMPERATURE_RANGE, THINKING_LEVELS, TOP_P_RANGE

# The request settings a flag sets for every request: its namespace name (the request's field).
REQUEST_SETTINGS = (
    "temperature",
    "top_p",
    "seed",
    "max_output_tokens",
    "thinking_level",
    "system",
)


@dataclass(frozen=True, slots=True)
class NumberFlag:
    """A numeric flag: as typed, where the parser puts it, and the range the library allows."""

    flag: str
    name: str
    low: float | None = None
    high: float | None = None
    above: bool = False
    whole: bool = False
    unit: str = ""


NUMBER_FLAGS = (
    NumberFlag("--temperature", "temperature", *TEMPERATURE_RANGE),
    NumberFlag("--top-p", "top_p", *TOP_P_RANGE),
    NumberFlag("--seed", "seed", *SEED_RANGE, whole=True),
    NumberFlag("--max-tokens", "max_output_tokens", 1, whole=True, unit="tokens"),
    NumberFlag("--budget", "budget", 0, unit="US dollars"),
    NumberFlag("--timeout", "timeout", 0, above=True, unit="seconds"),
    NumberFlag("--max-attempts", "max_attempts", 1, whole=True, unit="attempts"),
    NumberFlag("--log-wait", "log_wait", 0, unit="seconds"),
)
# Text flags that may be left out but not given empty: the flag, its name, what to give.
TEXT_FLAGS = (
    ("--system", "system", "the instruction's text"),
    ("--operation", "operation", "a name such as GENERATE_SCRIPT"),
    ("--project", "project", "the project's id"),
)


def check_flags(flags: Any) -> None:
    """Refuse a bad settings flag in `flags` (a parsed namespace) in one line naming it."""
    for number in NUMBER_FLAGS:
        value = getattr(flags, number.name, None)
        if value is not None:
            check_number(
                number.flag,
                value,
                low=number.low,
                high=number.high,
                above=number.above,
                whole=number.whole,
                unit=number.unit,
            )
    concurrency = getattr(flags, "concurrency", None)
    if isinstance(concurrency, int):
        check_number("--concurrency", concurrency, low=1, high=MAX_CONCURRENCY, whole=True)
    for flag, name, what in TEXT_FLAGS:
        text = getattr(flags, name, None)
        if text is not None and not text.strip():
            raise ConfigurationError(f"{flag} is empty: give {what}, or leave {flag} out.")
    ladder = getattr(flags, "model", None) or getattr(flags, "models", None)
    if ladder is not None and not any(name.strip() for name in ladder.split(",")):
        raise ConfigurationError(
            f"--model {ladder!r} names no model: give a name, or a comma-separated ladder."
        )
    level = getattr(flags, "thinking_level", None)
    if level is not None and level.lower() not in THINKING_LEVELS:
        raise ConfigurationError(
            f"--thinking-level {level!r}: use {', '.join(THINKING_LEVELS)} (Gemini 3.x models)."
        )
    _check_deadline(getattr(flags, "deadline", None), getattr(flags, "mode", None))


def _check_deadline(deadline: str | None, mode: str | None) -> None:
    if deadline is None:
        return
    if mode != "auto":
        raise ConfigurationError(
            "--deadline is for --mode auto (it chooses live calls or the Batch API by it): add "
            "--mode auto, or leave --deadline out."
        )
    try:
        parse_deadline(deadline)
    except ConfigurationError:
        raise ConfigurationError(
            f"--deadline {deadline!r}: give a number of seconds or a duration such as 30m, 2h "
            "or 1d."
        ) from None


def request_settings(flags: Any) -> dict[str, Any]:
    """The request settings `flags` give (those not given are left out: the default applies)."""
    given = {name: getattr(flags, name, None) for name in REQUEST_SETTINGS}
    return {name: value for name, value in given.items() if value is not None}
