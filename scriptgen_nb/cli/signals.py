"""SIGTERM and SIGHUP stop `scriptgen run` and `retry` the way Ctrl-C does.

`timeout`, docker, systemd and Slurm end a job with SIGTERM, and a closed terminal sends SIGHUP.
Python's default for both ends the process on the spot, as kill -9 would: the calls in flight
are never recorded (a resume pays for them again) and no output is written. While a command
runs, `TerminationSignals` raises the first of them as `KeyboardInterrupt`, so it takes Ctrl-C's
path: admission stops, the calls in flight are cancelled and recorded, the batch is logged
cancelled, and the results so far are written whole. The command then exits 128 + the signal's
number (143 for SIGTERM, 129 for SIGHUP), as a shell reports a process that signal ended.

A signal that comes again while the batch is stopping, or once the results are being written
(`hold`), is remembered and not raised: stopping and writing must finish for nothing to be lost.
Handlers can only be set from the main thread; elsewhere (a test calling `main()` from a
thread) the process keeps its own. Imports nothing from the library.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any

STOP_SIGNALS = ("SIGTERM", "SIGHUP")  # by name: Windows has no SIGHUP


class TerminationSignals:
    """A context in which SIGTERM and SIGHUP interrupt like Ctrl-C; `received` is the first."""

    def __init__(self) -> None:
        self.received: signal.Signals | None = None
        self._raising = True
        self._previous: dict[signal.Signals, Any] = {}

    def __enter__(self) -> TerminationSignals:
        if threading.current_thread() is threading.main_thread():
            for name in STOP_SIGNALS:
                number = getattr(signal, name, None)
                if number is not None:
                    self._previous[number] = signal.signal(number, self._stop)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)

    def _stop(self, number: int, frame: FrameType | None) -> None:
        if self.received is not None:
            return
        self.received = signal.Signals(number)
        if self._raising:
            raise KeyboardInterrupt

    def hold(self) -> None:
        """From now on a signal is only remembered: the results are being written."""
        self._raising = False

    def exit_status(self, status: int) -> int:
        """128 + the signal's number once one was received, else `status`."""
        return status if self.received is None else 128 + self.received.value

    def stopped(self) -> str:
        """How the command was stopped, for its message: by which signal, or interrupted."""
        return "interrupted" if self.received is None else f"stopped by {self.received.name}"
