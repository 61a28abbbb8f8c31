"""Waiting for the call log's file while another process holds it.

DuckDB lets one process at a time hold a file (a second kernel, `scriptgen stats` or someone's
long query may hold it for minutes). `LockWait` says how one unit of work waits: up to
`timeout_s` (`math.inf`: for as long as it takes), giving up early once `give_up()` says so (the
batch was cancelled, or its recorder is closing). `LockWatch` follows one batch's waits and says
so once a wait has lasted `NOTICE_AFTER_S`, and again (`None`) when the file is free: on stderr
until the batch's progress frontend takes over. `waiting_up_to(log_wait_s)` is the wait of
whatever opens the log for a batch or a command that was given `log_wait_s` (`--log-wait`).
No duckdb here.
"""

from __future__ import annotations

import math
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass

from ..engine.checks import check_number

# A wait this long is said to the user: a short one is the ordinary turn-taking of two writers.
NOTICE_AFTER_S = 3.0

Say = Callable[[str | None], None]


def _never() -> bool:
    return False


def say_on_stderr(message: str | None) -> None:
    """Say a wait on stderr (nothing when it ends): where no progress frontend is shown."""
    if message is not None:
        print(f"scriptgen: {message}", file=sys.stderr, flush=True)


class LockWatch:
    """One batch's waits for its call log: said once a wait has lasted `NOTICE_AFTER_S`, and
    `say(None)` once the file is free again. `say` may be replaced (by the progress frontend's
    `log_waiting`) before the batch starts; waits report from any thread."""

    def __init__(self, say: Say = say_on_stderr) -> None:
        self.say = say
        self._lock = threading.Lock()
        self._said = False

    def waited(self, path: str, wait: LockWait, seconds: float | None) -> None:
        """A unit of work on `path` has waited `seconds` so far (None: it has the file now, or
        gave up)."""
        with self._lock:
            if seconds is None:
                if not self._said:
                    return
                self._said = False
                message = None
            elif self._said or seconds < NOTICE_AFTER_S:
                return
            else:
                self._said = True
                message = held_message(path, wait.timeout_s)
        self.say(message)


def held_message(path: str, timeout_s: float) -> str:
    """What a wait for `path` looks like to the user, bounded or for as long as the batch runs."""
    held = (
        f"the call log {path} is held by another process (a long query, `scriptgen stats`, "
        "another kernel?)"
    )
    if math.isinf(timeout_s):
        return f"{held}: waiting for it; the batch goes on and its rows wait in memory"
    return f"{held}: waiting up to {timeout_s:g}s for it ({LOG_WAIT_SETTINGS})"


# Where each surface sets how long a batch waits for a held log (said with every wait).
LOG_WAIT_SETTINGS = (
    "`scriptgen run --log-wait S`, `%config ScriptgenMagics.default_log_wait_s = S`, "
    "log_wait_s= in Python"
)


@dataclass(frozen=True, slots=True)
class LockWait:
    """How one unit of work waits while another process holds the call log's file."""

    timeout_s: float = 30.0  # math.inf: for as long as it takes
    give_up: Callable[[], bool] = (
        _never  # stop waiting early (a cancelled batch, a closing flusher)
    )
    watch: LockWatch | None = None  # told how long it waited, to say so

    def waited(self, path: str, seconds: float | None) -> None:
        """Tell the watch how long this unit has waited for `path` (None: the wait is over)."""
        if self.watch is not None:
            self.watch.waited(path, self, seconds)


def waiting_up_to(log_wait_s: float) -> LockWait:
    """A wait of up to `log_wait_s` seconds (checked: a number, 0 or more), said on stderr once
    it has lasted a few seconds: how a batch, a retry or a project's run opens its log."""
    check_number("log_wait_s", log_wait_s, low=0, unit="seconds")
    return LockWait(log_wait_s, watch=LockWatch())
