"""One process of scenario 12: `contenders.ours` on a quota other processes use at the same time.

`python -m bench.quota_child JOB` (run from the repository's root, so it imports this checkout)
reads the pickled job (the workload and a call log of its own; the ledger comes from
`SCRIPTGEN_QUOTA` in its environment, as a user's would), imports everything, prints
`{"ready": true}` and waits for a line on stdin: the parent starts every process with one `go`,
so they compete from the first window. It then runs the batch and prints, as its last line, the
`Run` with the batch's wall-clock start and end and the CPU its own thread spent in the quota
ledger's calls (`time.thread_time` around each: the ledger is called from the batch's thread,
so other threads' work is not counted), and how many of each it made, with the slots granted
beyond the one asked for and the refused admissions (by what refused them) counted apart: what
the CPU is made of.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pickle
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scriptgen_nb.quota import LocalLedger

from . import contenders as c

LEDGER_CALLS = ("check", "admit", "settle", "flush", "forget", "learn", "hold", "close")


class LedgerMeter:
    """CPU time spent in a ledger class's calls, by the thread that made them."""

    def __init__(self) -> None:
        self.cpu_s = 0.0
        self.calls: dict[str, int] = {}

    def instrument(self, cls: type) -> None:
        for name in LEDGER_CALLS:
            setattr(cls, name, self._timed(name, getattr(cls, name)))

    def _timed(self, name: str, call: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(call)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.thread_time()
            answer = None
            try:
                answer = call(*args, **kwargs)
                return answer
            finally:
                self.cpu_s += time.thread_time() - started
                self._count(name)
                if name == "admit" and answer is not None and answer.slot is None:
                    why = "news" if answer.news else answer.metric or "share"
                    self._count(f"admit refused ({why})")
                if name == "admit" and answer is not None and answer.more:
                    self._count("admit granted more", len(answer.more))

        return timed

    def _count(self, what: str, many: int = 1) -> None:
        self.calls[what] = self.calls.get(what, 0) + many


def ledger_classes() -> list[type]:
    """The ledgers this process may use: the local file, and Redis when its extra is there."""
    classes: list[type] = [LocalLedger]
    try:
        from scriptgen_nb.quota.redis import RedisLedger
    except ImportError:
        return classes
    return [*classes, RedisLedger]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    job = pickle.loads(Path(args[0]).read_bytes())  # written by the parent just before
    meter = LedgerMeter()
    for cls in ledger_classes():
        meter.instrument(cls)
    print(json.dumps({"ready": True}), flush=True)
    sys.stdin.readline()
    started = time.time()
    run = c.ours(job["workload"], db=job["db"], give_up_s=job["give_up_s"])
    ended = time.time()
    run.extra |= {
        "started_wall": started,
        "ended_wall": ended,
        "ledger_cpu_s": meter.cpu_s,
        "ledger_calls": meter.calls,
    }
    print(json.dumps(dataclasses.asdict(run)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
