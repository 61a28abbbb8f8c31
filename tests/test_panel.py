"""The ipywidgets panel fed with events: widget values, throttling, Cancel, text fallback.

No kernel is needed: ipywidgets works without a frontend (its comm becomes a dummy), and a fake
clock drives the throttle, so nothing sleeps.
"""

from __future__ import annotations

from typing import Any, Literal

import pytest
from IPython.utils.capture import capture_output

import scriptgen_nb as sg
from scriptgen_nb.engine.backend import FakeBackend
from scriptgen_nb.engine.runner import CancelToken
from scriptgen_nb.engine.values import LimitLearned, Usage
from scriptgen_nb.jupyter.panel import ProgressPanel
from scriptgen_nb.progress import choose_progress, format_line

from .test_progress import (
    FAST,
    FakeClock,
    ended,
    fake_kernel,
    feed_fast,
    finished,
    started,
    state_change,
    tried,
)


def panel_after_events(token: CancelToken | None = None) -> tuple[ProgressPanel, FakeClock]:
    clock = FakeClock()
    panel = ProgressPanel(token, total=4, clock=clock, refresh_s=None)
    panel(started(total=4))
    clock.now = 1.0
    panel(tried("m1"))
    panel(finished("r0", usage=Usage(1200, 300, 20), cost=0.012))
    panel(tried("m2", will_retry=True))
    panel(state_change("m2", "parked", 5.0))
    panel(finished("r1", model="m2", kind="blocked", message="<script>x</script>\ntrace"))
    panel.redraw(force=True)  # the last events came within the throttle interval
    return panel, clock


def test_widgets_show_the_snapshot() -> None:
    panel, clock = panel_after_events()
    assert (panel.bar.value, panel.bar.max, panel.bar.description) == (2, 4, "2/4")
    assert panel.bar.bar_style == "warning"  # a request failed
    assert "batch</b> b1 · running" in panel.title.value
    assert panel.summary.value == "2/4 done · 1 ok · 1 failed · 0 not run · 1 retry"
    assert panel.usage.value == (
        "1,200 tokens in · 320 out · 120 req/min · $0.0120 · ETA 1s · elapsed 1.0s"
    )
    models = panel.models.value
    assert '<tr class="sg-model sg-state-ready" title=""><td>m1</td><td>ready</td>' in models
    assert '<tr class="sg-model sg-state-parked" title="parked for a reason">' in models
    assert "<td>m2</td><td>parked 5s</td><td>1</td><td>50%</td>" in models
    assert "<code>r1</code> m2 <b>blocked</b>: &lt;script&gt;x&lt;/script&gt;</li>" in (
        panel.errors.value
    )
    clock.now = 3.5
    panel.redraw()
    assert "<td>m2</td><td>parked 3s</td>" in panel.models.value

    clock.now = 7.0
    panel(finished("r2", kind="not_run"))
    panel(finished("r3", kind="not_run"))
    panel(ended("finished", total=4))
    assert (panel.bar.value, panel.bar.max) == (2, 4)  # the two not run are no progress
    assert "· finished" in panel.title.value
    assert "<td>m2</td><td>ready</td>" in panel.models.value
    assert panel.cancel_button.disabled


def test_unknown_total_shows_the_count() -> None:
    clock = FakeClock()
    panel = ProgressPanel(clock=clock, refresh_s=None)
    panel(started(total=None))
    clock.now = 1.0
    panel(finished("r0"))
    assert (panel.bar.value, panel.bar.max, panel.bar.description) == (1, 1, "1")
    clock.now = 2.0
    panel(finished("r1"))
    assert (panel.bar.value, panel.bar.max, panel.bar.description) == (2, 2, "2")
    panel(ended("finished", total=2))
    assert panel.bar.bar_style == "success"


def test_updates_are_throttled_and_the_final_state_always_pushed() -> None:
    clock = FakeClock()
    panel = ProgressPanel(CancelToken(), total=1000, clock=clock, refresh_s=None)
    changes: list[str] = []
    for widget in (panel.bar, panel.summary):
        widget.observe(lambda change: changes.append(change["owner"].__class__.__name__), "value")
    panel(started(total=1000))
    feed_fast(panel, clock, 1000, 0.3)
    bar_updates = changes.count("IntProgress")
    assert 1 <= bar_updates <= 4  # at t = 0.1, 0.2, 0.3: not a thousand
    assert changes.count("HTML") == bar_updates
    assert panel.bar.value < 1000  # the latest events came within the interval
    panel(ended("finished", total=1000))
    assert panel.bar.value == 1000
    assert panel.summary.value.startswith("1000/1000 done · 1000 ok")
    assert changes.count("IntProgress") == bar_updates + 1


def test_cancel_button_cancels_the_token() -> None:
    token = CancelToken()
    panel, _ = panel_after_events(token)
    assert not panel.cancel_button.disabled
    panel.cancel_button.click()
    assert token.cancelled
    assert panel.cancel_button.description == "Cancelling…"
    assert panel.cancel_button.disabled
    panel(ended("cancelled", total=2))
    assert panel.cancel_button.description == "Cancelled"
    assert panel.bar.bar_style == "warning"


def test_a_cancelled_bar_stops_where_the_batch_did() -> None:
    # The browser test found a cancelled batch's bar full ("120/120") after 2 answers.
    token = CancelToken()
    panel, _ = panel_after_events(token)
    panel.cancel_button.click()
    panel(finished("r2", kind="not_run"))
    panel(finished("r3", kind="not_run"))
    panel(ended("cancelled", total=4))
    assert (panel.bar.value, panel.bar.max, panel.bar.description) == (2, 4, "2/4")
    assert panel.summary.value.startswith("4/4 done · 1 ok · 1 failed · 2 not run")


def test_without_a_token_there_is_nothing_to_cancel() -> None:
    panel = ProgressPanel(refresh_s=None)
    assert panel.cancel_button.disabled
    panel.cancel_button.click()  # harmless


def test_mimebundle_carries_the_widget_and_a_text_line() -> None:
    panel = ProgressPanel(CancelToken(), total=4, clock=FakeClock(), refresh_s=None)
    bundle = panel._repr_mimebundle_()
    assert bundle["text/plain"] == (
        "scriptgen batch: 0/4 done · 0 ok · 0 failed · 0 not run · 0 retries · $0.0000"
    )
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == panel.view.model_id
    panel(started(total=4))
    assert repr(panel) == format_line(panel.state.snapshot())


def test_pieces_carry_stable_css_classes() -> None:
    panel = ProgressPanel(refresh_s=None)
    assert "sg-panel" in panel.view._dom_classes
    pieces = {
        "sg-title": panel.title,
        "sg-bar": panel.bar,
        "sg-cancel": panel.cancel_button,
        "sg-summary": panel.summary,
        "sg-log": panel.log,
        "sg-usage": panel.usage,
        "sg-models": panel.models,
        "sg-errors": panel.errors,
    }
    for css_class, widget in pieces.items():
        assert css_class in widget._dom_classes


def test_a_wait_for_the_call_log_shows_on_its_own_line_during_and_after_the_batch() -> None:
    panel, clock = panel_after_events()
    held = "the call log x.duckdb is held by another process: waiting for <it>"
    panel.log_waiting(held)  # at once, whatever the throttle
    assert (
        panel.log.value
        == "<i>the call log x.duckdb is held by another process: waiting for &lt;it&gt;</i>"
    )
    assert repr(panel).endswith(f" · {held}")
    panel.log_waiting(None)
    assert panel.log.value == ""
    clock.now = 2.0
    panel(ended("finished", total=2))
    panel.log_waiting("waiting up to 300s for it (log_wait_s= in Python)")  # the batch's last rows
    assert panel.log.value == "<i>waiting up to 300s for it (log_wait_s= in Python)</i>"
    assert "· finished" in panel.title.value


def test_close_prints_the_summary_once_the_batch_ran(capsys: pytest.CaptureFixture[str]) -> None:
    ProgressPanel(refresh_s=None).close()
    assert capsys.readouterr().out == ""  # never started: nothing to report
    panel, clock = panel_after_events()
    clock.now = 2.0
    panel(ended("finished", total=2))
    panel.close()
    assert capsys.readouterr().out == (
        "scriptgen batch b1 finished: 2/2 done, 1 ok, 1 failed, 0 not run, 1 retry, "
        "1,520 tokens, $0.0120 in 2.0s\n"
    )


@pytest.mark.parametrize("status", ["finished", "cancelled", "failed"])
def test_the_shown_panels_text_is_brought_up_to_date_when_the_batch_ends(
    shell: Any,
    monkeypatch: pytest.MonkeyPatch,
    status: Literal["finished", "cancelled", "failed"],
) -> None:
    # A notebook saves the text/plain of each display: without widget state (nbconvert,
    # GitHub, VS Code) that text is all that is left of the panel, so it must be the end's.
    # (tests/test_notebook_outputs.py checks the saved notebook of a real kernel.)
    fake_kernel(monkeypatch)
    panel, clock = panel_after_events()
    with capture_output() as captured:  # what the shell publishes, as a kernel would send it
        panel.show()
        clock.now = 2.0
        panel(ended(status, total=2))
        panel.close()
    shown, updated = captured.outputs
    assert shown.data["text/plain"].startswith("scriptgen batch: 2/4 done")
    assert not shown.update and updated.update  # the same output, updated in place
    assert updated.transient == shown.transient and shown.transient["display_id"]
    assert updated.data["text/plain"] == repr(panel)
    assert updated.data["text/plain"].startswith("scriptgen batch: 2/2 done · 1 ok · 1 failed")
    assert updated.data["text/plain"].endswith(f" · {status}")
    assert "application/vnd.jupyter.widget-view+json" in updated.data  # still the live panel
    assert captured.stdout.startswith(f"scriptgen batch b1 {status}: 2/2 done")  # the summary


def test_a_terminal_shell_prints_the_panels_text_once_then_the_summary(shell: Any) -> None:
    panel, clock = panel_after_events()
    with capture_output() as captured:
        panel.show()
        clock.now = 2.0
        panel(ended("finished", total=2))
        panel.close()
    (shown,) = captured.outputs  # no update: a terminal would print it as a second line
    assert shown.data["text/plain"].startswith("scriptgen batch: 2/4 done")
    assert captured.stdout.startswith("scriptgen batch b1 finished: 2/2 done")


def test_choose_progress_gives_the_panel_for_widget_and_in_a_kernel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = CancelToken()
    panel = choose_progress("widget", token, total=3)
    assert isinstance(panel, ProgressPanel) and panel.state.snapshot().total == 3
    panel.cancel_button.click()
    assert token.cancelled
    fake_kernel(monkeypatch)
    assert isinstance(choose_progress("auto"), ProgressPanel)


def test_batch_generate_shows_the_panel_and_prints_the_summary(
    capsys: pytest.CaptureFixture[str],
) -> None:
    reqs = sg.create_batch_requests(["one", "two", "three"])
    results = sg.batch_generate(
        reqs, models=FAST, backend=FakeBackend(), db=False, progress="widget"
    )
    assert len(results) == 3
    shown, summary = capsys.readouterr().out.splitlines()
    # Outside a kernel, display() prints the text fallback, as terminal IPython does.
    assert shown == "scriptgen batch: 0/3 done · 0 ok · 0 failed · 0 not run · 0 retries · $0.0000"
    assert summary.startswith("scriptgen batch ")
    assert " finished: 3/3 done, 3 ok, 0 failed, 0 not run, 0 retries, " in summary


def test_a_learned_limit_is_shown_under_the_models_state() -> None:
    panel, _ = panel_after_events()
    panel(LimitLearned("m2", "rpm", 20, 4, "message"))
    panel.redraw(force=True)
    assert (
        '<td>m2</td><td>parked 5s<br><span class="sg-learned sg-learned-message">'
        "rpm 4 (stated in the 429&#x27;s message; catalogue 20)</span>"
    ) in panel.models.value
