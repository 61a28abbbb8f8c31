"""Entry point: `python -m bench.run [--quick] [--only 1,3,physics] [--out DIR]`.

Runs the physics check and the twelve scenarios in order, prints progress, and writes
`results.json`, `results.png` and `BENCHMARKS.md`. A full run (no `--quick`, no `--only`) writes
them into `bench/` (what `make bench` records); any other run writes into `--out` (default
`/tmp/scriptgen-bench`), so trying things out never overwrites the recorded results.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

from . import contenders, real_service, scenarios, shared_quota
from .report import write_report

HERE = Path(__file__).parent
STEPS = ("physics", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12")
PACKAGES = ("scriptgen_nb", "google-genai", "httpx2", "duckdb", "pandas", "pydantic", "matplotlib")


def _command(args: argparse.Namespace) -> str:
    if not args.quick and not args.only:
        return "make bench"
    parts = ["python -m bench.run"]
    if args.quick:
        parts.append("--quick")
    if args.only:
        parts.append(f"--only {args.only}")
    return " ".join(parts)


def _git(*argv: str) -> str:
    try:
        done = subprocess.run(
            ["git", *argv], capture_output=True, text=True, cwd=HERE.parent, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "?"
    return done.stdout.strip()


def machine() -> dict[str, Any]:
    """Where and when the run happened, and what it ran."""
    memory = "?"
    cpu = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    # `_git` strips its output, so the first line may have lost its leading status blank:
    # take the path as what follows the status field, not as a fixed column.
    changed = [
        line.split(maxsplit=1)[1]
        for line in _git("status", "--porcelain", "scriptgen_nb").splitlines()
        if line.strip()
    ]
    return {
        "date": subprocess.run(["date"], capture_output=True, text=True).stdout.strip(),
        "nproc": os.cpu_count(),
        "memory": memory,
        "cpu": cpu,
        "os": platform.platform(),
        "python": platform.python_version(),
        "packages": {name: version(name) for name in PACKAGES},
        "package_commit": _git("rev-parse", "--short", "HEAD"),
        "package_uncommitted_changes": changed,
    }


def _busy_s() -> float:
    """CPU seconds the whole machine has been busy since boot (all cores, from /proc/stat)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_s() -> float:
    """CPU seconds of this process and its waited-for children (emulators, probes)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class LoadMeter:
    """How much of the machine other processes used while a step ran (they share our cores)."""

    def __init__(self) -> None:
        self._wall = time.perf_counter()
        self._busy = _busy_s()
        self._own = _own_s()

    def read(self) -> dict[str, float]:
        wall = time.perf_counter() - self._wall
        others = max(0.0, (_busy_s() - self._busy) - (_own_s() - self._own))
        cores = os.cpu_count() or 1
        return {
            "others_cpu_s": round(others, 1),
            "others_share_of_machine": round(others / (wall * cores), 3) if wall > 0 else 0.0,
            "loadavg_1min_end": float(Path("/proc/loadavg").read_text().split()[0]),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, to try the suite out")
    parser.add_argument("--only", default="", help=f"comma-separated steps of {','.join(STEPS)}")
    parser.add_argument("--out", default=None, help="where to write (default: see above)")
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.only.split(",") if s.strip()] or list(STEPS)
    unknown = set(chosen) - set(STEPS)
    if unknown:
        parser.error(f"unknown steps {sorted(unknown)}; choose from {', '.join(STEPS)}")
    full = not args.quick and not args.only
    out = Path(args.out) if args.out else (HERE if full else Path("/tmp/scriptgen-bench"))
    out.mkdir(parents=True, exist_ok=True)
    params = scenarios.Params.quick() if args.quick else scenarios.Params()

    started = time.perf_counter()
    whole_run = LoadMeter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s] {message}", flush=True)

    results: dict[str, Any] = {
        "meta": {"command": _command(args), "quick": args.quick, **machine()},
        "params": params.__dict__ | {"scale": params.scale},
        "physics": None,
        "scenarios": {},
    }
    runners: dict[str, Callable[[], dict[str, Any]]] = {
        "1": lambda: scenarios.scenario_1(params, log),
        "2": lambda: scenarios.scenario_2(params, log),
        "3": lambda: scenarios.scenario_3(params, log),
        "4": lambda: scenarios.scenario_4(params, log),
        "5": lambda: scenarios.scenario_5(
            params, (results["physics"] or {}).get("ceiling_rps"), log
        ),
        "6": lambda: scenarios.scenario_6(params, log),
        "7": lambda: scenarios.scenario_7(params, log),
        "8": lambda: real_service.scenario_8(params, log),
        "9": lambda: real_service.scenario_9(params, log),
        "10": lambda: real_service.scenario_10(params, log),
        "11": lambda: real_service.scenario_11(params, log),
        "12": lambda: shared_quota.scenario_12(params, log),
    }
    # Every contender starts warm: the imports and first-use costs of a Python process (pandas,
    # duckdb, google-genai: ~0.5 s) would otherwise land on whichever batch runs first.
    log("warm-up: one small batch through each client (not recorded)")
    contenders.warm_up()
    for step in STEPS:
        if step not in chosen:
            continue
        step_started = time.perf_counter()
        meter = LoadMeter()
        log(f"{'physics' if step == 'physics' else 'scenario ' + step}")
        if step == "physics":
            outcome = scenarios.physics(params, log)
            results["physics"] = outcome
        else:
            outcome = runners[step]()
            results["scenarios"][step] = outcome
        outcome["wall_s"] = round(time.perf_counter() - step_started, 1)
        outcome["load"] = meter.read()
        log(
            f"  done in {outcome['wall_s']:.1f} s (other processes used "
            f"{outcome['load']['others_share_of_machine']:.0%} of the machine meanwhile)"
        )
    results["meta"]["wall_s"] = round(time.perf_counter() - started, 1)
    results["meta"]["load"] = whole_run.read()
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    write_report(results, out)
    log(f"wrote {out / 'results.json'}, {out / 'results.png'}, {out / 'BENCHMARKS.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
