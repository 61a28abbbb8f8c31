"""`contenders.ours` in a Python process of its own, on a call log another process wrote.

Scenario 8's second batch: what a later notebook kernel or script gets from the limits an
earlier batch learned (they are kept in the call log per endpoint and key fingerprint, and a
batch in any process starts from them). `ours_elsewhere(workload, db)` pickles the job (the
workload, whose `ModelSpec`s carry dates and price tables, and the log's path) to a file, runs
`python -m bench.other_process JOB` from the repository's root (so the child imports
this checkout's `bench` and `scriptgen_nb`, as the emulator's process does) and reads the `Run`
back from the child's last line of output. The child runs `contenders.ours` with `db=` that
file and nothing warmed up: it pays a fresh process's first-use costs, as a real one would. The
time recorded is the batch's own (`batch_generate` called to returned); the child's whole life,
interpreter start and imports included, is in `extra["process_s"]`.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import contenders as c

ROOT = Path(__file__).parent.parent


def _run_from(data: dict[str, Any]) -> c.Run:
    attempts = data.pop("attempts")
    run = c.Run(**data)
    run.attempts = None if attempts is None else [c.AttemptRecord(**a) for a in attempts]
    return run


def ours_elsewhere(workload: c.Workload, db: str, *, give_up_s: float | None = None) -> c.Run:
    """`contenders.ours(workload, db=db, give_up_s=...)` run by another Python process; its
    `Run`."""
    with tempfile.TemporaryDirectory(prefix="bench-other-") as tmp:
        job = Path(tmp) / "job.pickle"
        job.write_bytes(pickle.dumps({"workload": workload, "db": db, "give_up_s": give_up_s}))
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "bench.other_process", str(job)],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        process_s = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"the other process failed: {done.stderr.strip()[-1500:]}")
    run = _run_from(json.loads(done.stdout.strip().splitlines()[-1]))
    run.extra["process_s"] = round(process_s, 3)
    return run


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    job = pickle.loads(Path(args[0]).read_bytes())  # written by `ours_elsewhere` just before
    run = c.ours(job["workload"], db=job["db"], give_up_s=job["give_up_s"])
    print(json.dumps(dataclasses.asdict(run)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
