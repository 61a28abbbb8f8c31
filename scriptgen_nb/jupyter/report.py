"""What `%scriptgen stats` returns: one titled result holding the call log's two tables.

A line magic that called `display()` showed its first table even when its result was assigned
(`s = %scriptgen stats`), and returned only the second. `StatsReport` is returned instead and
displays nothing by itself: the notebook renders it (a title, then each table under its
heading, as HTML and as text), and its frames stay reachable as `.usage` and `.batches`.
Imports pandas only: no IPython, no duckdb.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True, eq=False, repr=False)
class StatsReport:
    """The call log's usage report (`usage`: per operation and model, since `since`) and its
    last batches (`batches`, newest first), each shown under a heading; with `batch_id`, that
    batch's `summary` and `errors` too (`%scriptgen stats --batch ID`)."""

    log: str
    since: str
    usage: pd.DataFrame
    batches: pd.DataFrame
    batch_id: str | None = None
    summary: pd.DataFrame | None = None
    errors: pd.DataFrame | None = None

    @property
    def title(self) -> str:
        return f"scriptgen stats: the call log {self.log}"

    def sections(self) -> list[tuple[str, pd.DataFrame]]:
        """Each table under its heading, in the order shown."""
        shown = [
            (f"Usage per operation and model, {self.since}", self.usage),
            ("The last batches, newest first", self.batches),
        ]
        if self.summary is not None:
            shown.append((f"Batch {self.batch_id}", self.summary))
        if self.errors is not None:
            shown.append((f"Errors in batch {self.batch_id}", self.errors))
        return shown

    def _repr_html_(self) -> str:
        parts = [f"<h3>{escape(self.title)}</h3>"]
        for heading, frame in self.sections():
            shown = "<p>(none)</p>" if frame.empty else frame.to_html(index=False)
            parts += [f"<h4>{escape(heading)}</h4>", shown]
        return "\n".join(parts)

    def __repr__(self) -> str:
        parts = [self.title]
        for heading, frame in self.sections():
            shown = "  (none)" if frame.empty else frame.to_string(index=False)
            parts += ["", f"{heading}:", shown]
        return "\n".join(parts)
