"""Batches in processes of their own, for the tests that need real processes: the child
script (one batch from a JSON job, a summary line printed at the end), a handle on a running
child, and polling helpers that fail at a deadline instead of sleeping and hoping.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import scriptgen_nb as sg
from scriptgen_nb.emulator import Emulator, EmulatorConfig, ModelConfig

KEY = "test-key"
POLL_S = 0.05
PRICES = {"input_usd_per_1m": 0.3, "output_usd_per_1m": 2.5}

CHILD = '''\
"""Run one batch from a JSON job in argv[1]; print a JSON summary line (test helper)."""
import json
import sys

import scriptgen_nb as sg
from scriptgen_nb.engine.values import BatchStarted, QuotaShared

job = json.loads(sys.argv[1])
spec = sg.ModelSpec(job["model"], priority=1, **job["prices"], **job["limits"])
requests = sg.create_batch_requests(job["prompts"])
ledger_failures = []  # a shared quota ledger that could not be used: the batch paced alone


def note_ledger(event):
    if isinstance(event, BatchStarted):
        ledger_failures.extend(n for n in event.notices if "quota ledger" in n)
    elif isinstance(event, QuotaShared) and event.failed:
        ledger_failures.append(event.failed)


if job["wait_for_go"]:
    print(json.dumps({"ready": True}), flush=True)
    sys.stdin.readline()
try:
    results = sg.batch_generate(
        requests,
        models=[spec],
        base_url=job["base_url"],
        api_key=job["api_key"],
        db=job["db"],
        max_concurrency=job["max_concurrency"],
        listeners=[note_ledger],
    )
    interrupted = False
except sg.BatchInterrupted as exc:
    results = exc.results
    interrupted = True
not_run = [r for r in results if r.error is not None and r.error.kind == "not_run"]
print(
    json.dumps(
        {
            "interrupted": interrupted,
            "results": len(results),
            "ids": [r.id for r in results],
            "succeeded": sum(r.success for r in results),
            "not_run": len(not_run),
            "ledger_failures": ledger_failures,
        }
    ),
    flush=True,
)
'''


def prompts(prefix: str, n: int) -> list[str]:
    return [f"{prefix}: write scene {i} of a film about tide pools." for i in range(n)]


def spec(model: str) -> sg.ModelSpec:
    """The same ladder the child builds: the cache key covers the ladder's names."""
    return sg.ModelSpec(model, priority=1, **PRICES)


def emulator(**models: ModelConfig) -> Emulator:
    return Emulator(EmulatorConfig(seed=3, api_keys=(KEY,), hang_s=2.0, models=models))


def model_counters(emu: Emulator, model: str) -> dict[str, Any]:
    counters: dict[str, Any] = emu.counters()["models"][model]
    return counters


@dataclass
class Child:
    """A batch (or a command) running in a process of its own."""

    proc: subprocess.Popen[str]
    stderr_path: Path

    @classmethod
    def spawn(cls, command: list[str], stderr_path: Path, **popen: Any) -> Child:
        """Start `command`, its stderr going to `stderr_path` (read back with `.stderr()`)."""
        with stderr_path.open("w") as stderr:
            proc = subprocess.Popen(command, stderr=stderr, text=True, **popen)
        return cls(proc, stderr_path)

    def end(self) -> None:
        """Kill the process if it still runs (by its own pid), reap it, close its pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None and not stream.closed:
                stream.close()

    def signal_when(self, ready: Callable[[], None], number: signal.Signals) -> int:
        """Once `ready()` returns, send `number`; the exit status (killed after 15 s)."""
        try:
            ready()
            self.proc.send_signal(number)
            return self.proc.wait(timeout=15)
        finally:
            self.end()

    @property
    def stdout(self) -> IO[str]:
        assert self.proc.stdout is not None
        return self.proc.stdout

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def line(self) -> dict[str, Any]:
        """The next JSON line the child prints (EOF: it died; its stderr says why)."""
        text = self.stdout.readline()
        assert text, f"the child printed nothing (exit {self.proc.poll()}):\n{self.stderr()}"
        parsed: dict[str, Any] = json.loads(text)
        return parsed

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.close()


def child_report(script: str, *args: str) -> dict[str, Any]:
    """Run Python `script` with `args` in a process of its own; the JSON report it prints last
    (a crash or a non-zero exit fails the test, showing the end of its stderr)."""
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def wait_until(
    condition: Callable[[], bool], timeout_s: float, what: str, *children: Child
) -> None:
    """Poll `condition` every POLL_S until it holds; fail at the deadline or if a child ends."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        for child in children:
            code = child.proc.poll()
            assert code is None, f"child exited ({code}) before {what}:\n{child.stderr()}"
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        time.sleep(POLL_S)
