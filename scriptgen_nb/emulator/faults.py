"""Fault kinds and the deterministic draw that picks one for an admitted attempt.

Owns `Fault` and `draw_fault`. The draw is a pure function of (seed, model, prompt, attempt
number), so two emulators with the same seed answer the same sequence of attempts the same way
and a retry of a failed prompt gets a fresh draw. New kinds go at the end of the bands, so
adding one never changes what an existing configuration draws. Imports nothing from the engine.
"""

from __future__ import annotations

import enum

from .config import FaultConfig
from .determinism import unit

__all__ = ["Fault", "draw_fault"]


class Fault(enum.StrEnum):
    """An injected fault; the value is the key used in the counters."""

    INTERNAL = "500"
    OVERLOADED = "503"
    HANG = "hang"
    MALFORMED = "malformed"
    TRUNCATE = "truncate"
    BLOCK = "block"
    RESET = "reset"
    RATE_LIMITED = "429"
    RATE_LIMITED_BARE = "429_bare"
    PROMPT_BLOCK = "prompt_block"
    DEADLINE = "504"
    CANCELLED = "499"
    FINISH_OTHER = "finish_other"
    FINISH_LANGUAGE = "finish_language"


_PROBABILITY_FIELD = {
    Fault.INTERNAL: "p_500",
    Fault.OVERLOADED: "p_503",
    Fault.HANG: "p_hang",
    Fault.MALFORMED: "p_malformed",
    Fault.TRUNCATE: "p_truncate",
    Fault.BLOCK: "p_block",
    Fault.RESET: "p_reset",
    Fault.RATE_LIMITED: "p_429",
    Fault.RATE_LIMITED_BARE: "p_429_bare",
    Fault.PROMPT_BLOCK: "p_prompt_block",
    Fault.DEADLINE: "p_504",
    Fault.CANCELLED: "p_499",
    Fault.FINISH_OTHER: "p_finish_other",
    Fault.FINISH_LANGUAGE: "p_finish_language",
}


def draw_fault(
    faults: FaultConfig, seed: int, model: str, prompt: str, attempt: int
) -> Fault | None:
    """The fault for this attempt, or None; one uniform draw split into consecutive bands."""
    u = unit(seed, "fault", model, prompt, attempt)
    edge = 0.0
    for fault, name in _PROBABILITY_FIELD.items():
        p: float = getattr(faults, name)
        edge += p
        if p > 0 and u < edge:
            return fault
    return None
