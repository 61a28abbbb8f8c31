"""Results as users handle them: a list in input order that converts to a DataFrame."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .engine.pricing import CostTotal
from .engine.values import Result

if TYPE_CHECKING:
    import pandas as pd


class ResultList(list[Result]):
    """Results in input order; `.to_dataframe()` gives one row per request."""

    @property
    def succeeded(self) -> list[Result]:
        return [r for r in self if r.success]

    @property
    def failed(self) -> list[Result]:
        return [r for r in self if not r.success]

    def to_dataframe(self) -> pd.DataFrame:
        """One row per request; `cost_usd` is NaN where a model's price is unknown, and
        `simulated` is True where an emulator answered (its cost was never spent)."""
        import pandas as pd

        frame = pd.DataFrame([result_row(r) for r in self], columns=RESULT_COLUMNS)
        frame["cost_usd"] = frame["cost_usd"].astype(float)  # None -> NaN, never $0
        return frame

    @property
    def cost(self) -> CostTotal:
        """The batch's cost: what the priced requests cost and how many were not priced."""
        return CostTotal.of(r.cost_usd for r in self)

    def summary(self) -> str:
        """`38/40 succeeded, 51234 tokens, $0.0123` (or `at least $...`, `cost unknown`)."""
        ok = len(self.succeeded)
        tokens = sum(r.usage.total for r in self)
        return f"{ok}/{len(self)} succeeded, {tokens} tokens, {self.cost}"


RESULT_COLUMNS = [
    "id",
    "success",
    "text",
    "data",
    "error_kind",
    "error_message",
    "finish_reason",
    "model",
    "attempts",
    "input_tokens",
    "cached_tokens",
    "output_tokens",
    "thought_tokens",
    "cost_usd",
    "latency_ms",
    "queue_ms",
    "simulated",
]


def result_row(r: Result) -> dict[str, Any]:
    data = r.data.model_dump() if hasattr(r.data, "model_dump") else r.data
    return {
        "id": r.id,
        "success": r.success,
        "text": r.text,
        "data": data,
        "error_kind": r.error.kind if r.error else None,
        "error_message": r.error.message if r.error else None,
        "finish_reason": r.finish_reason,
        "model": r.model,
        "attempts": r.attempts,
        "input_tokens": r.usage.input,
        "cached_tokens": r.usage.cached,  # of the input, billed at the cached price
        "output_tokens": r.usage.output,
        "thought_tokens": r.usage.thoughts,
        "cost_usd": r.cost_usd,
        "latency_ms": r.latency_ms,
        "queue_ms": r.queue_ms,
        "simulated": r.simulated,  # an emulator's answer: its tokens and cost are not real
    }
