"""The terminal bar's postfix: each model's state in words a reader takes the right way, and
the other processes sharing the quota."""

from __future__ import annotations

from scriptgen_nb.cli.bar import model_state, postfix
from scriptgen_nb.engine.values import BatchStarted, QuotaShared
from scriptgen_nb.progress import ModelRow, ProgressState


def test_a_ready_models_figure_is_named_attempts_not_ok() -> None:
    # "3.5-flash: ok 12" read as twelve successes; they are the attempts the model took.
    assert model_state(ModelRow("gemini-3.5-flash", "ready", None, "", 12, 0.5)) == (
        "3.5-flash: ready (12 attempts)"
    )
    assert model_state(ModelRow("models/gemini-2.5-pro", "ready", None, "", 1, 0.1)) == (
        "2.5-pro: ready (1 attempt)"
    )
    parked = ModelRow("gemini-2.5-pro", "parked", 3.2, "a 429", 4, 0.4)
    assert model_state(parked) == "2.5-pro: parked 4s"
    assert model_state(ModelRow("gemini-2.5-pro", "exhausted", 99.0, "", 4, 0.4)) == (
        "2.5-pro: exhausted"
    )


def test_the_bar_says_when_other_processes_use_the_quota() -> None:
    state = ProgressState(lambda: 0.0)
    state(BatchStarted("b1", 10, ("m1",), "auto", 4, 1_700_000_000.0))
    assert "using this quota" not in postfix(state.snapshot())
    state(QuotaShared(3, "/cache/quota.sqlite"))
    assert "3 other processes using this quota" in postfix(state.snapshot())
