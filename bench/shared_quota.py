"""Scenario 12 (issue 17): one quota, several processes at once.

Two, then four Python processes (`bench/quota_child.py`), each a 100-request batch on one model
at one key, all started by one `go` once their imports are done; the server allows 40 requests
a window, which is what every process's `ModelSpec` says (each is right about the limit). With
the shared quota ledger (the default: here a SQLite file of the run's own, as the user's cache
directory would hold) they admit together what one process would; with `SCRIPTGEN_QUOTA=off`
each paces as if it had the whole quota, which is how every process paced before the ledger.
Where a `redis-server` can be started (and the `redis` extra is installed), the pair also runs on
a Redis ledger. The ledger's client CPU per request is measured inside each process (its own
thread's time in the ledger's calls).

The pair's time runs from the earliest batch start to the latest end, against the bound of all
their requests on one quota. Rows are built like the other scenarios' (`scenarios._row`).
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from scriptgen_nb.engine.models import ModelSpec

from . import contenders as c
from .bounds import Limit, staircase_bound, staircase_curve
from .emulator_proc import (
    EmulatorProcess,
    emulator_config,
    emulator_process,
    model_config,
    summarize_counters,
)
from .other_process import ROOT, _run_from
from .scenarios import DAY_S, ONE_MODEL, SEMANTICS, Params, _downsample, _goal, _row, prompts

Log = Callable[[str], None]

MODEL = "gemini-3.8-flash"
PER_WINDOW = 40  # the server's limit, and every process's spec
SHARED = "ours, shared ledger (default)"
ALONE = "ours, SCRIPTGEN_QUOTA=off"
ON_REDIS = "ours, shared ledger on Redis"
# (processes, time goal, most 429s): the measured goals.
GOALS = ((2, 1.1, 5), (4, 1.15, 10))
LEDGER_CPU_GOAL_MS = 0.3
# The ledger calls that are a transaction each (a settle is kept for the next of them; a flush
# writes nothing when an admission wrote the kept settles first, so it is counted as at most one).
TRANSACTIONS = ("check", "admit", "flush", "forget", "learn", "hold", "close")
GIVE_UP = 3.0  # a process still running at this many times the bound is cancelled


def _spec(p: Params) -> ModelSpec:
    return ModelSpec(MODEL, priority=1, rpm=PER_WINDOW, minute_s=p.minute_s, day_s=DAY_S)


def _start(job: dict[str, Any], folder: Path, quota: str) -> subprocess.Popen[str]:
    path = folder / f"job-{len(list(folder.glob('job-*')))}.pickle"
    path.write_bytes(pickle.dumps(job))
    return subprocess.Popen(
        [sys.executable, "-m", "bench.quota_child", str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "SCRIPTGEN_QUOTA": quota},
    )


def _together(
    emu: EmulatorProcess, p: Params, processes: int, n: int, quota: str, bound: float
) -> list[c.Run]:
    """`processes` batches of `n` requests started by one `go`; each one's `Run`."""
    with tempfile.TemporaryDirectory(prefix="bench-s12-") as tmp:
        folder = Path(tmp)
        setting = str(folder / "quota.sqlite") if quota == "local" else quota
        children = []
        for i in range(processes):
            workload = c.Workload(prompts(n, f"process {i}"), [_spec(p)], emu.base_url, p.minute_s)
            job = {
                "workload": workload,
                "db": str(folder / f"{i}.duckdb"),
                "give_up_s": GIVE_UP * bound,
            }
            children.append(_start(job, folder, setting))
        try:
            for child in children:
                assert child.stdout is not None
                line = child.stdout.readline()
                if json.loads(line or "{}") != {"ready": True}:
                    raise RuntimeError(f"a process did not start: {child.stderr.read()[-1500:]}")
            for child in children:
                assert child.stdin is not None
                child.stdin.write("go\n")
                child.stdin.flush()  # communicate() closes it
            outputs = [child.communicate(timeout=GIVE_UP * bound + 120) for child in children]
        finally:
            for child in children:
                if child.poll() is None:
                    child.kill()
                    child.wait()
    runs = []
    for child, (out, err) in zip(children, outputs, strict=True):
        if child.returncode != 0:
            raise RuntimeError(f"a process failed: {err.strip()[-1500:]}")
        runs.append(_run_from(json.loads(out.strip().splitlines()[-1])))
    return runs


def _merged(runs: list[c.Run], name: str) -> c.Run:
    """The processes' runs as one: from the first start to the last end, everything summed."""
    first = min(r.extra["started_wall"] for r in runs)
    last = max(r.extra["ended_wall"] for r in runs)
    merged = c.Run(name, sum(r.n for r in runs), last - first, sum(r.cpu_s for r in runs))
    merged.succeeded = sum(r.succeeded for r in runs)
    failures: Counter[str] = Counter()
    for run in runs:
        failures.update(run.failures)
        offset = run.extra["started_wall"] - first
        merged.completions += [t + offset for t in run.completions]
    merged.failures = dict(failures)
    merged.completions.sort()
    ledger_calls: Counter[str] = Counter()
    for run in runs:
        ledger_calls.update(run.extra["ledger_calls"])
    ledger_cpu_s = sum(r.extra["ledger_cpu_s"] for r in runs)
    merged.extra = {
        "per_process_s": [round(r.extra["ended_wall"] - first, 3) for r in runs],
        "ledger_cpu_ms_per_req": round(ledger_cpu_s / merged.n * 1000, 4),
        "ledger_calls": dict(ledger_calls),
        "summaries": [r.extra.get("progress_summary", "") for r in runs],
    }
    return merged


def _measure_together(
    emu: EmulatorProcess,
    p: Params,
    name: str,
    processes: int,
    n: int,
    quota: str,
    bound: float,
    log: Log,
) -> dict[str, Any]:
    emu.reset()
    variant = f"{processes} processes x {n} requests"
    try:
        merged = _merged(_together(emu, p, processes, n, quota, bound), name)
    except Exception as exc:  # a failed run is a row saying so, as in the other scenarios
        log(f"    {name} / {variant}: FAILED {type(exc).__name__}: {exc}")
        return {"contender": name, "variant": variant, "n": processes * n, "error": str(exc)}
    row = _row(merged, bound, summarize_counters(emu.counters()), variant=variant)
    row["series"] = _downsample(merged.completions)
    log(
        f"    {name} / {variant}: {merged.wall_s:.2f} s ({row['ratio']:.2f}x bound), "
        f"{merged.succeeded}/{merged.n} ok, {row['http_429']} x 429, ledger "
        f"{merged.extra['ledger_cpu_ms_per_req']:.3f} ms CPU/request"
    )
    return row


@contextlib.contextmanager
def redis_server() -> Iterator[str | None]:
    """A `redis-server` on a free port for the run (its URL), or None when there is none to
    start or the `redis` extra is not installed."""
    binary = shutil.which("redis-server")
    try:
        import redis  # noqa: F401  (the extra the Redis ledger needs)
    except ImportError:
        binary = None
    if binary is None:
        yield None
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as tmp:
        server = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", tmp],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                    break
                time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            server.terminate()
            server.wait(timeout=10)


def _goals(rows: list[dict[str, Any]], n: int, redis_url: str | None) -> list[dict[str, Any]]:
    def find(name: str, processes: int) -> dict[str, Any] | None:
        variant = f"{processes} processes x {n} requests"
        return next(
            (
                r
                for r in rows
                if r["contender"] == name and r["variant"] == variant and "error" not in r
            ),
            None,
        )

    goals = []
    for processes, ratio, most_429 in GOALS:
        goal = f"{processes} processes: within {ratio}x of the bound, at most {most_429} 429s"
        target = f"ratio <= {ratio}, 429s <= {most_429}, {processes * n} succeed"
        row, alone = find(SHARED, processes), find(ALONE, processes)
        if row is None:
            goals.append(_goal(goal, target, "no result: the run failed (see its row)", False))
            continue
        before = (
            f"; without the ledger {alone['ratio']:.3f}x, {alone['http_429']} x 429"
            if alone
            else ""
        )
        goals.append(
            _goal(
                goal,
                target,
                f"{row['ratio']:.3f} ({row['time_s']:.2f} s vs {row['bound_s']:.2f} s), "
                f"{row['http_429']} x 429, {row['succeeded']}/{row['n']} succeeded{before}",
                row["ratio"] <= ratio and row["http_429"] <= most_429 and row["failed"] == 0,
            )
        )
    local = [r for r in (find(SHARED, k) for k, _, _ in GOALS) if r is not None]
    worst = max(local, key=lambda r: r["extra"]["ledger_cpu_ms_per_req"], default=None)
    goals.append(
        _goal(
            "the local ledger's client CPU per request, pacing active",
            f"<= {LEDGER_CPU_GOAL_MS} ms",
            "no result" if worst is None else _ledger_cpu(worst),
            worst is not None and worst["extra"]["ledger_cpu_ms_per_req"] <= LEDGER_CPU_GOAL_MS,
        )
    )
    on_redis = find(ON_REDIS, 2)
    goals.append(
        _goal(
            "the Redis ledger: 2 processes, its client CPU per request (informational)",
            "",
            (
                f"{on_redis['ratio']:.3f}x the bound, {on_redis['http_429']} x 429, "
                f"{on_redis['extra']['ledger_cpu_ms_per_req']:.3f} ms CPU per request"
                if on_redis
                else "not run: no redis-server here, or the redis extra is not installed"
                if redis_url is None
                else "no result: the run failed (see its row)"
            ),
            None,
        )
    )
    return goals


def _ledger_cpu(row: dict[str, Any]) -> str:
    """A run's ledger CPU per request, and what it is made of: the ledger's transactions per
    request (admissions, refused ones included, and flushes of late sends' settles) and their
    cost."""
    calls = row["extra"]["ledger_calls"]
    per_request = sum(calls.get(name, 0) for name in TRANSACTIONS) / row["n"]
    refused = sum(count for name, count in calls.items() if name.startswith("admit refused"))
    cpu = row["extra"]["ledger_cpu_ms_per_req"]
    return (
        f"{cpu:.3f} ms (the worse of the two runs: {per_request:.2f} transactions per request "
        f"at {cpu / per_request:.3f} ms each; {calls.get('admit', 0)} admissions of which "
        f"{refused} refused, {calls.get('admit granted more', 0)} more slots granted with "
        f"them, {calls.get('flush', 0)} flushes of late sends' settles)"
    )


def scenario_12(p: Params, log: Log = print) -> dict[str, Any]:
    _, _, _, latency, jitter = ONE_MODEL
    n = p.s12_n
    served = model_config(rpm=PER_WINDOW, tpm=10**9, latency_s=latency, jitter_s=jitter)
    config = emulator_config({MODEL: served}, minute_s=p.minute_s, day_s=DAY_S)
    bounds = {
        k: staircase_bound(k * n, [Limit(PER_WINDOW)], p.minute_s, latency) for k, _, _ in GOALS
    }
    rows: list[dict[str, Any]] = []
    with emulator_process(config) as emu, redis_server() as redis_url:
        for processes, _, _ in GOALS:
            bound = bounds[processes]
            for name, quota in ((SHARED, "local"), (ALONE, "off")):
                rows.append(_measure_together(emu, p, name, processes, n, quota, bound, log))
        if redis_url is not None:
            rows.append(_measure_together(emu, p, ON_REDIS, 2, n, redis_url, bounds[2], log))
    return {
        "title": "One quota, several processes at once",
        "params": {
            "n_per_process": n,
            "processes": [k for k, _, _ in GOALS],
            "model": MODEL,
            "server_rpm_per_window": PER_WINDOW,
            "spec_rpm": f"{PER_WINDOW} (each process is right about the limit)",
            "window_s": p.minute_s,
            "latency_s": f"{latency} + U(0, {jitter})",
            "redis": redis_url is not None,
        },
        "bound_s": {f"{k} processes x {n} requests": b for k, b in bounds.items()},
        "bound_note": (
            f"{SEMANTICS}, all the processes' requests on one quota: "
            + ", ".join(
                f"(ceil({k * n}/{PER_WINDOW}) - 1) x {p.minute_s:g} s + {latency:g} s = {b:.2f} s"
                for k, b in bounds.items()
            )
            + ". Time runs from the first batch's start to the last one's end; every process is "
            "started by one `go` once its imports are done"
        ),
        "ideal": {
            f"{k} processes x {n} requests": staircase_curve(
                k * n, [Limit(PER_WINDOW)], p.minute_s, latency
            )
            for k, _, _ in GOALS
        },
        "rows": rows,
        "goals": _goals(rows, n, redis_url),
    }
