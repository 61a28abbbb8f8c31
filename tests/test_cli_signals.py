"""`TerminationSignals`: SIGTERM and SIGHUP as Ctrl-C, once, and never while results are written.

Real signals sent to this process (handlers run in the main thread, where pytest runs tests).
"""

from __future__ import annotations

import os
import signal

import pytest

from scriptgen_nb.cli.signals import TerminationSignals


def send(number: signal.Signals) -> None:
    """Signal this process; the handler runs before `os.kill` returns to Python code."""
    os.kill(os.getpid(), number)


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_the_first_signal_interrupts_like_ctrl_c_and_a_repeat_does_not(
    number: signal.Signals,
) -> None:
    with TerminationSignals() as stop:
        with pytest.raises(KeyboardInterrupt):
            send(number)
        send(signal.SIGTERM)  # stopping is under way: not interrupted again
        send(signal.SIGHUP)
    assert stop.received is number
    assert stop.exit_status(130) == 128 + number.value  # 143 or 129
    assert stop.stopped() == f"stopped by {number.name}"


def test_while_results_are_written_a_signal_is_only_remembered() -> None:
    with TerminationSignals() as stop:
        assert (stop.exit_status(0), stop.stopped()) == (0, "interrupted")
        stop.hold()
        send(signal.SIGTERM)
    assert stop.exit_status(0) == 143
