"""Results as users handle them: a list in input order that converts to a DataFrame.

A result comes back beside its input. The input is the row a request was made from (a row of
`--over`'s DataFrame, of a CSV, of a JSONL file filled by `--template`), which travels in the
request's `metadata["row"]` (`INPUT_KEY`): through the engine, the call log's `request.config`
(so cached answers and `retry` keep it) and the Batch API. `to_dataframe()` puts the row's
columns first, then the result's (`RESULT_COLUMNS`); an input column named like a result column
is kept as `input_<name>`. Structured `data` can be spread into columns (`expand_data=True`),
a field named like another column as `data_<field>`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .engine.pricing import CostTotal
from .engine.values import Result

if TYPE_CHECKING:
    import pandas as pd

INPUT_KEY = "row"  # the metadata entry holding a request's input row (a mapping)
INPUT_PREFIX = "input_"  # an input column named like a result column: input_text, input_id
DATA_PREFIX = "data_"  # an expanded data field named like another column: data_model


class ResultList(list[Result]):
    """Results in input order; `.to_dataframe()` gives one row per request."""

    @property
    def succeeded(self) -> list[Result]:
        return [r for r in self if r.success]

    @property
    def failed(self) -> list[Result]:
        return [r for r in self if not r.success]

    def to_dataframe(self, *, expand_data: bool = False) -> pd.DataFrame:
        """One row per request: its input's columns, then the result's (`RESULT_COLUMNS`).

        An input column named like a result column (`id`, `text`, `model`, ...) is kept as
        `input_<name>`. `expand_data=True` replaces `data` by one column per field of the
        structured answers (`--schema`), a field named like another column as `data_<field>`;
        answers that are not objects (a schema whose top level is a list) stay in `data`.
        `cost_usd` is NaN where a model's price is unknown; `simulated` is True where an
        emulator answered (its cost was never spent). A row served from the call log has
        `cached` True, `attempts` 0, `cost_usd` 0 and no tokens (nothing was sent or paid this
        time), and NaN latency: the original call's figures are in the log.
        """
        import pandas as pd

        columns, rows = table_rows(self, expand_data=expand_data)
        frame = pd.DataFrame(rows, columns=columns)
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
    "cached",
    "metadata",
    "simulated",
]


def input_row(r: Result) -> dict[str, Any]:
    """The input row `r`'s request was made from; empty when it was made from a prompt alone."""
    row = r.metadata.get(INPUT_KEY)
    return {str(k): v for k, v in row.items()} if isinstance(row, Mapping) else {}


def result_row(r: Result) -> dict[str, Any]:
    """The result's own columns (`RESULT_COLUMNS`); `metadata` without the input row, which
    has columns of its own."""
    data = r.data.model_dump() if hasattr(r.data, "model_dump") else r.data
    spread = isinstance(r.metadata.get(INPUT_KEY), Mapping)
    metadata = {k: v for k, v in r.metadata.items() if not (spread and k == INPUT_KEY)}
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
        "cached": r.cached,  # served from the call log: nothing sent, nothing paid this time
        "metadata": metadata or None,
        "simulated": r.simulated,  # an emulator's answer: its tokens and cost are not real
    }


def table_rows(
    results: Sequence[Result], *, expand_data: bool = False
) -> tuple[list[str], list[dict[str, Any]]]:
    """The columns and the rows (one per result, every column in each) of `to_dataframe`;
    the command line writes the same rows to JSONL, CSV and Parquet."""
    inputs = [input_row(r) for r in results]
    input_names = _renamed(_union(inputs), set(RESULT_COLUMNS), INPUT_PREFIX)
    rows = [
        {new: given.get(old) for old, new in input_names.items()} | result_row(r)
        for given, r in zip(inputs, results, strict=True)
    ]
    columns = [*input_names.values(), *RESULT_COLUMNS]
    if expand_data:
        columns = _spread_data(columns, rows)
    return columns, rows


def _spread_data(columns: list[str], rows: list[dict[str, Any]]) -> list[str]:
    """Replace `data` by a column per field of the answers that are objects (in each row, in
    place); the columns now. Answers that are not objects stay in `data`, kept if any is."""
    objects = [row["data"] for row in rows if isinstance(row["data"], Mapping)]
    names = _renamed(_union(objects), set(columns), DATA_PREFIX)
    for row in rows:
        data = row["data"]
        if isinstance(data, Mapping):
            row["data"] = None
        fields = data if isinstance(data, Mapping) else {}
        row.update({new: fields.get(old) for old, new in names.items()})
    kept = ["data"] if any(row["data"] is not None for row in rows) else []
    at = columns.index("data")
    return [*columns[:at], *kept, *names.values(), *columns[at + 1 :]]


def _union(mappings: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every key of `mappings` as a column name, in the order first seen."""
    seen: dict[str, None] = {}
    for mapping in mappings:
        seen.update(dict.fromkeys(str(k) for k in mapping))
    return list(seen)


def _renamed(names: list[str], reserved: set[str], prefix: str) -> dict[str, str]:
    """Each name as a column: as it is, unless `reserved` holds it: then `prefix` + name
    (prefixed again while another column has that name)."""
    taken = reserved | set(names)
    chosen = {}
    for name in names:
        new = name
        if name in reserved:
            new = prefix + name
            while new in taken:
                new = prefix + new
            taken.add(new)
        chosen[name] = new
    return chosen
