"""Scenario 6's probe, run in a subprocess of its own: N requests from a generator, peak RSS.

`python -m bench.memory_probe N --log PATH|off` builds N requests lazily from a generator, runs
them through `iter_generate` on `FakeBackend` (no HTTP, no limits) and prints one JSON line: the
wall time, peak RSS (`resource.getrusage(RUSAGE_SELF).ru_maxrss`, cross-checked with the
kernel's VmHWM) after the imports and at the end, how long the recorder spent writing the log
(summed over its flushes, timed by wrapping `Recorder.flush` in this process only) and how long
the final flush took after the last result.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _vm_hwm_mb() -> float | None:
    """The kernel's high-water mark of this process's memory (a cross-check of ru_maxrss)."""
    try:
        status = Path("/proc/self/status").read_text(encoding="ascii")
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("n", type=int)
    parser.add_argument("--log", default="off", help="DuckDB file, or off")
    args = parser.parse_args(argv)

    import scriptgen_nb as sg
    from scriptgen_nb.engine.backend import FakeBackend
    from scriptgen_nb.engine.models import ModelSpec
    from scriptgen_nb.store.recorder import Recorder

    flush_s = [0.0]
    original: Callable[..., None] = Recorder.flush

    def timed_flush(self: Recorder, **kwargs: Any) -> None:
        started = time.perf_counter()
        try:
            original(self, **kwargs)
        finally:
            flush_s[0] += time.perf_counter() - started

    Recorder.flush = timed_flush  # type: ignore[method-assign]

    def prompts() -> Iterator[dict[str, str]]:
        for i in range(args.n):
            yield {"id": f"r{i}", "prompt": f"Write a 60-second video script about topic {i}."}

    baseline = _peak_rss_mb()
    spec = ModelSpec("fake-unlimited", priority=1)
    started = time.perf_counter()
    last_result = started
    succeeded = 0
    for result in sg.iter_generate(
        sg.create_batch_requests(prompts()),
        models=[spec],
        backend=FakeBackend(keep_calls=False),
        db=False if args.log == "off" else args.log,
    ):
        succeeded += result.success
        last_result = time.perf_counter()
    ended = time.perf_counter()
    rows = None
    if args.log != "off":
        from scriptgen_nb.store import Database

        db = Database(args.log)
        rows = {t: db.rows(f"SELECT count(*) FROM {t}")[0][0] for t in ("ai_api_call", "result")}
    print(
        json.dumps(
            {
                "n": args.n,
                "log": args.log != "off",
                "succeeded": succeeded,
                "wall_s": round(ended - started, 3),
                "rps": round(args.n / (ended - started), 1),
                "baseline_rss_mb": round(baseline, 1),
                "peak_rss_mb": round(_peak_rss_mb(), 1),
                "vm_hwm_mb": round(_vm_hwm_mb() or 0.0, 1),
                "log_write_s": round(flush_s[0], 3),
                "final_flush_s": round(ended - last_result, 3),
                "rows": rows,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
