"""Scenario 6's probe, run in a subprocess of its own: N requests from a generator, peak RSS.

`python -m bench.memory_probe N --log PATH|off` builds N requests lazily from a generator, runs
them through `iter_generate` on `FakeBackend` (no HTTP, no limits) and prints one JSON line: the
wall time, peak RSS (`resource.getrusage(RUSAGE_SELF).ru_maxrss`, cross-checked with the
kernel's VmHWM) after the imports and at the end, how long the recorder spent writing the log
(summed over its flushes, timed by wrapping `Recorder.flush` in this process only), how long
the final flush took after the last result, and, sampled after every flush, the resident size
(VmRSS: its median and maximum) and each rise of the high-water mark with the number of results
then received: where in the run the peak grew.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _status_mb(field: str) -> float | None:
    """A memory figure of /proc/self/status in MB: VmHWM (the kernel's high-water mark, a
    cross-check of ru_maxrss) or VmRSS (resident now)."""
    try:
        status = Path("/proc/self/status").read_text(encoding="ascii")
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith(f"{field}:"):
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
    done = [0]  # results received so far (read by the recorder's thread after each flush)
    rss_after_flush: list[float] = []  # the resident size right after each flush
    hwm_steps: list[list[float]] = []  # [results so far, VmHWM MB] each time the peak rose 1 MB
    original: Callable[..., None] = Recorder.flush

    def timed_flush(self: Recorder, **kwargs: Any) -> None:
        started = time.perf_counter()
        try:
            original(self, **kwargs)
        finally:
            flush_s[0] += time.perf_counter() - started
            rss_after_flush.append(_status_mb("VmRSS") or 0.0)
            hwm = _status_mb("VmHWM") or 0.0
            if not hwm_steps or hwm >= hwm_steps[-1][1] + 1.0:
                hwm_steps.append([done[0], round(hwm, 1)])

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
        done[0] += 1
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
                "vm_hwm_mb": round(_status_mb("VmHWM") or 0.0, 1),
                "rss_after_flush_mb": {
                    "median": round(statistics.median(rss_after_flush), 1),
                    "max": round(max(rss_after_flush), 1),
                }
                if rss_after_flush
                else None,
                "hwm_steps": hwm_steps,
                "log_write_s": round(flush_s[0], 3),
                "final_flush_s": round(ended - last_result, 3),
                "rows": rows,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
