"""The terminal progress bar of `scriptgen run`: tqdm drawing `ProgressState`'s snapshot.

A thin frontend (DESIGN, house style): `progress.ProgressFrontend` folds the engine's events
into the snapshot and throttles the draws (and redraws every second, so countdowns move while
every model is parked); this module only maps a snapshot onto a tqdm bar: done/total, then a
postfix of failures, cost and each model's state (`3.5-flash: ready (12 attempts) · 2.5-pro:
exhausted`). The bar goes to stderr, so results on stdout stay clean; the batch's one-line
summary follows it when the batch ends.
"""

from __future__ import annotations

import sys
from typing import TextIO, Unpack

from tqdm import tqdm

from ..progress import (
    FrontendOptions,
    ModelRow,
    ProgressFrontend,
    ProgressSnapshot,
    format_duration,
    format_summary,
    sharing_text,
    write_log_wait,
)

SEPARATOR = " · "


def postfix(snapshot: ProgressSnapshot) -> str:
    """`1 failed · 2 not run · $0.0123 · 1 other process using this quota · 3.5-flash: ready
    (12 attempts) · 2.5-pro: parked 4s`, and a wait for the call log while another process
    holds it."""
    parts = []
    if snapshot.failed:
        parts.append(f"{snapshot.failed} failed")
    if snapshot.not_run:
        parts.append(f"{snapshot.not_run} not run")
    if snapshot.cached:
        parts.append(f"{snapshot.cached} cached")
    parts.append(str(snapshot.cost))
    if snapshot.sharing:
        parts.append(sharing_text(snapshot.sharing))
    parts += [model_state(row) for row in snapshot.models]
    if snapshot.log_wait is not None:
        parts.append(snapshot.log_wait)
    return SEPARATOR.join(parts)


def model_state(row: ModelRow) -> str:
    """`3.5-flash: ready (12 attempts)`, `parked 4s`, `cooling 2s`, `exhausted`.

    A ready model's figure is its attempts, named: a bare "ok 12" read as 12 successes.
    """
    name = row.name.removeprefix("models/").removeprefix("gemini-")
    if row.state == "ready":
        return f"{name}: ready ({row.attempts} {'attempt' if row.attempts == 1 else 'attempts'})"
    if row.state != "exhausted" and row.seconds_left is not None:
        return f"{name}: {row.state} {format_duration(row.seconds_left, tenths=False)}"
    return f"{name}: {row.state}"


class TqdmProgress(ProgressFrontend):
    """A tqdm bar on `stream` (stderr) for one batch; `close()` after the run."""

    def __init__(self, stream: TextIO | None = None, **options: Unpack[FrontendOptions]) -> None:
        super().__init__(**options)
        self.stream = stream if stream is not None else sys.stderr
        self._bar: tqdm[None] | None = None
        self._summarised = False

    def draw(self, snapshot: ProgressSnapshot, *, final: bool) -> None:
        bar = self._bar
        if bar is None:
            if self._summarised:
                return
            # Made at the first event, not in show(): a batch refused before it starts (a bad
            # option) leaves no empty bar behind its error message.
            bar = self._bar = tqdm(
                total=snapshot.total,
                desc="scriptgen",
                unit="req",
                file=self.stream,
                dynamic_ncols=True,
                mininterval=0,  # the frontend throttles; tqdm draws when asked
            )
        if snapshot.total is not None and bar.total != snapshot.total:
            bar.total = snapshot.total
        bar.n = snapshot.done
        bar.set_postfix_str(postfix(snapshot), refresh=False)
        bar.refresh()
        if final:
            self._finish(snapshot)

    def draw_log_wait(self, message: str | None) -> None:
        write_log_wait(self.stream, message)

    def close(self) -> None:
        super().close()  # stops the ticker: no draw can race what follows
        if not self._summarised:  # the batch never announced its end (it failed to start)
            self._finish(self.state.snapshot())

    def _finish(self, snapshot: ProgressSnapshot) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if snapshot.status != "waiting":
            print(format_summary(snapshot), file=self.stream, flush=True)
        self._summarised = True
