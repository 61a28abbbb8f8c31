"""ProgressPanel: the notebook frontend of `progress.py`, an ipywidgets view of its snapshot.

It only draws `ProgressSnapshot`s (throttled by `ProgressFrontend`: at most ~10 updates a
second, the final state always) and wires a Cancel button to a `CancelToken`. Draws come from
the engine's thread: they set widget traits under the frontend's one draw lock, inside
`hold_sync()`, and never `print` or `display` (notes/jupyter.md §3.3, §4); `show()` and
`close()` do that from the caller's thread. Stable CSS classes (`sg-panel`, `sg-title`,
`sg-bar`, `sg-cancel`, `sg-summary`, `sg-log` (a wait for the call log), `sg-usage`,
`sg-models`, `sg-errors`; `sg-learned` and `sg-learned-<source>` for a model's learned limits)
name the pieces for browser tests and styling. Imports ipywidgets and IPython; nothing but
`progress.py` imports this module, and only when a panel is asked for.

A viewer without the widgets' state (nbconvert's output, GitHub, VS Code, Lab reopening a
notebook) shows the panel's `text/plain`, which the notebook saved when the panel was displayed:
"0/N done". So in a kernel `close()` updates that display (by its display id) with the final
line, and prints the one-line summary below it. nbval ignores display updates and sees the
first line, which the notebooks' sanitize.cfg evens out; the printed summary is what it
compares.
"""

from __future__ import annotations

from contextlib import ExitStack
from html import escape
from typing import TYPE_CHECKING, Any, Unpack

import ipywidgets as widgets

from ..engine.runner import CancelToken
from ..progress import (
    FrontendOptions,
    ModelRow,
    ProgressFrontend,
    ProgressSnapshot,
    count_parts,
    format_duration,
    format_learned,
    format_line,
    format_summary,
    in_jupyter_kernel,
    pace_parts,
)

if TYPE_CHECKING:
    from IPython.display import DisplayHandle


class ProgressPanel(ProgressFrontend):
    """A live progress panel for one batch; display it (or call `show()`) before the run."""

    def __init__(
        self, cancel: CancelToken | None = None, **options: Unpack[FrontendOptions]
    ) -> None:
        super().__init__(**options)
        self._token = cancel
        self._shown: DisplayHandle | None = None  # the display `close()` brings up to date
        self.title = _html("sg-title")
        self.bar = widgets.IntProgress(
            min=0, max=1, value=0, style={"description_width": "initial"}
        )
        self.bar.add_class("sg-bar")
        self.cancel_button = widgets.Button(
            description="Cancel", icon="stop", disabled=cancel is None, tooltip="Stop the batch"
        )
        self.cancel_button.add_class("sg-cancel")
        self.cancel_button.on_click(self._on_cancel)
        self.summary = _html("sg-summary")
        self.log = _html("sg-log")
        self.usage = _html("sg-usage")
        self.models = _html("sg-models")
        self.errors = _html("sg-errors")
        self.view = widgets.VBox(
            [
                self.title,
                widgets.HBox([self.bar, self.cancel_button]),
                self.summary,
                self.log,
                self.usage,
                self.models,
                self.errors,
            ]
        )
        self.view.add_class("sg-panel")
        self._drawn = (
            self.title,
            self.bar,
            self.cancel_button,
            self.summary,
            self.log,
            self.usage,
            self.models,
            self.errors,
        )
        # Filled in directly: a throttled redraw here would delay the first event's.
        self.draw(self.state.snapshot(), final=False)

    def draw(self, snapshot: ProgressSnapshot, *, final: bool) -> None:
        s = snapshot
        with ExitStack() as held:  # one state message per widget, not one per trait
            for widget in self._drawn:
                held.enter_context(widget.hold_sync())
            self.title.value = f"<b>scriptgen batch</b> {escape(s.batch_id or '')} · {s.status}"
            # The bar fills with answered requests: one not run is no progress, so a cancelled
            # batch's bar stops where the batch did (the summary still counts it as done).
            answered = s.done - s.not_run
            # max before value: the bar clamps a value above its max.
            self.bar.max = max(s.total if s.total is not None else s.done, 1)
            self.bar.value = answered
            self.bar.description = f"{answered}/{s.total}" if s.total is not None else f"{answered}"
            self.bar.bar_style = _bar_style(s)
            self.summary.value = " · ".join(count_parts(s))
            self.draw_log_wait(s.log_wait)
            self.usage.value = " · ".join(
                [
                    f"{s.usage.input:,} tokens in",
                    f"{s.usage.output + s.usage.thoughts:,} out",
                    *pace_parts(s),
                    f"elapsed {format_duration(s.elapsed_s)}",
                ]
            )
            self.models.value = _models_table(s.models)
            self.errors.value = _errors_list(s)
            cancelling = self._token is not None and self._token.cancelled
            self.cancel_button.description = (
                "Cancelled"
                if s.status == "cancelled"
                else "Cancelling…"
                if cancelling
                else "Cancel"
            )
            self.cancel_button.disabled = final or cancelling or self._token is None

    def draw_log_wait(self, message: str | None) -> None:
        self.log.value = "" if message is None else f"<i>{escape(message)}</i>"

    def _on_cancel(self, _button: widgets.Button) -> None:
        if self._token is not None:
            self._token.cancel()
        self.redraw(force=True)  # the new label shows at once, not at the next event

    def show(self) -> None:
        from IPython.display import display

        if in_jupyter_kernel():  # its frontends keep the output, and update it by its id
            self._shown = display(self, display_id=True)
        else:  # a terminal prints the text; an update would print a second line
            display(self)

    def close(self) -> None:
        super().close()
        snapshot = self.state.snapshot()
        if snapshot.status != "waiting":
            if self._shown is not None:
                # The saved text/plain: how the batch ended, not the "0/N done" of its start.
                self._shown.update(self)
            # What stays in the output for viewers without the widget (nbval, static HTML).
            print(format_summary(snapshot))

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle: dict[str, Any] = self.view._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = repr(self)
        return bundle

    def __repr__(self) -> str:
        return format_line(self.state.snapshot())


def _html(css_class: str) -> widgets.HTML:
    widget = widgets.HTML()
    widget.add_class(css_class)
    return widget


def _bar_style(s: ProgressSnapshot) -> str:
    if s.status == "failed":
        return "danger"
    if s.status == "cancelled" or s.failed or s.not_run:
        return "warning"
    return "success" if s.status == "finished" else ""


def _models_table(models: tuple[ModelRow, ...]) -> str:
    rows = "".join(
        f'<tr class="sg-model sg-state-{m.state}" title="{escape(m.reason)}">'
        f"<td>{escape(m.name)}</td><td>{_state_text(m)}</td>"
        f"<td>{m.attempts:,}</td><td>{m.share:.0%}</td></tr>"
        for m in models
    )
    return (
        # Spaced columns: a widget's HTML gets no notebook table style, and cells run together.
        '<table class="sg-models-table" style="border-spacing: 1em 0"><thead><tr>'
        "<th>model</th><th>state</th><th>attempts</th><th>share</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def _state_text(m: ModelRow) -> str:
    state: str = m.state
    if m.seconds_left is not None:
        state = f"{state} {format_duration(m.seconds_left, tenths=False)}"
    learned = "".join(
        f'<br><span class="sg-learned sg-learned-{limit.source}">'
        f"{escape(format_learned(limit))}</span>"
        for limit in m.learned
    )
    return state + learned


def _errors_list(s: ProgressSnapshot) -> str:
    """The ladder's notices, then the latest errors (newest first, where the eye lands)."""
    notices = "".join(f'<li class="sg-notice">{escape(n)}</li>' for n in s.notices)
    items = "".join(
        f'<li class="sg-error"><code>{escape(e.request_id)}</code> {escape(e.model or "-")} '
        f"<b>{escape(e.kind)}</b>: {escape(e.message)}</li>"
        for e in reversed(s.errors)
    )
    return (f"<b>notices</b><ul>{notices}</ul>" if notices else "") + (
        f"<b>latest errors</b><ul>{items}</ul>" if items else ""
    )
