"""`contenders.ours` in a Python process of its own, on a call log another process wrote.

Scenario 8's second batch: what a later notebook kernel or script gets from the limits an
earlier batch learned (they are kept in the call log per endpoint and key fingerprint, and a
batch in any process starts from them). `ours_elsewhere(workload, db)` writes the job to a JSON
file, runs `python -m bench.other_process JOB` from the repository's root (so the child imports
this checkout's `bench` and `scriptgen_nb`, as the emulator's process does) and reads the `Run`
back from the child's last line of output. The child runs `contenders.ours` with `db=` that
file and nothing warmed up: it pays a fresh process's first-use costs, as a real one would. The
time recorded is the batch's own (`batch_generate` called to returned); the child's whole life,
interpreter start and imports included, is in `extra["process_s"]`.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from scriptgen_nb.engine.models import ModelSpec

from . import contenders as c

ROOT = Path(__file__).parent.parent


def _job(workload: c.Workload, db: str, give_up_s: float | None) -> dict[str, Any]:
    return {
        "give_up_s": give_up_s,
        "prompts": list(workload.prompts),
        "ladder": [dataclasses.asdict(spec) for spec in workload.ladder],
        "base_url": workload.base_url,
        "minute_s": workload.minute_s,
        "db": db,
    }


def _run_from(data: dict[str, Any]) -> c.Run:
    attempts = data.pop("attempts")
    run = c.Run(**data)
    run.attempts = None if attempts is None else [c.AttemptRecord(**a) for a in attempts]
    return run


def ours_elsewhere(workload: c.Workload, db: str, *, give_up_s: float | None = None) -> c.Run:
    """`contenders.ours(workload, db=db, give_up_s=...)` run by another Python process; its
    `Run`."""
    with tempfile.TemporaryDirectory(prefix="bench-other-") as tmp:
        job = Path(tmp) / "job.json"
        job.write_text(json.dumps(_job(workload, db, give_up_s)), encoding="utf-8")
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
    job = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    workload = c.Workload(
        job["prompts"],
        [ModelSpec(**spec) for spec in job["ladder"]],
        job["base_url"],
        job["minute_s"],
    )
    run = c.ours(workload, db=job["db"], give_up_s=job["give_up_s"])
    print(json.dumps(dataclasses.asdict(run)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
