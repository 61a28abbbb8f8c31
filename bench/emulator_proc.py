"""The emulator in its own process: a thin wrapper around its command line, read over HTTP.

Configurations are the emulator's own `EmulatorConfig` and `ModelConfig` (validated where they
are built). `emulator_process(config)` writes one to a JSON file in the layout
`EmulatorConfig.from_file` reads, starts `python -m scriptgen_nb.emulator --port 0 --config FILE`
as a child process (the server code is the emulator's; nothing of it is repeated here), reads
the base URL it prints and yields an `EmulatorProcess` offering `counters()`
(GET /emulator/counters) and `reset()` (POST /emulator/reset); the child is stopped on exit. A
process of its own keeps client and server from sharing an interpreter. Nothing here imports the
engine.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from scriptgen_nb.emulator import EmulatorConfig, ModelConfig

API_KEY = "bench-key"


def as_mapping(config: EmulatorConfig) -> dict[str, Any]:
    """`config` as plain data in `EmulatorConfig.from_mapping`'s layout (JSON-ready)."""
    data = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    data["api_keys"] = list(config.api_keys)
    data["batch"] = dataclasses.asdict(config.batch)
    data["models"] = {name: dataclasses.asdict(model) for name, model in config.models.items()}
    return data


class EmulatorProcess:
    """A running `python -m scriptgen_nb.emulator` child process."""

    def __init__(self, proc: subprocess.Popen[str], base_url: str) -> None:
        self._proc = proc
        self.base_url = base_url

    def _call(self, method: str, path: str) -> Any:
        data = b"{}" if method == "POST" else None
        request = urllib.request.Request(self.base_url + path, method=method, data=data)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"{}")

    def counters(self) -> dict[str, Any]:
        """The emulator's counters (requests per model, 429s by quotaId, errors, ...)."""
        return dict(self._call("GET", "/emulator/counters"))

    def reset(self) -> None:
        """Empty the quota windows, zero the counters and restart the storm clock (between
        two contenders, so each meets the same storms)."""
        self._call("POST", "/emulator/reset")


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


@contextmanager
def emulator_process(
    config: EmulatorConfig, *, start_timeout_s: float = 30.0
) -> Iterator[EmulatorProcess]:
    """The emulator's CLI serving `config` on a free port, stopped (SIGTERM) on exit."""
    with tempfile.TemporaryDirectory(prefix="bench-emu-") as tmp:
        path = Path(tmp) / "emulator.json"
        path.write_text(json.dumps(as_mapping(config)), encoding="utf-8")
        proc = subprocess.Popen(
            [sys.executable, "-m", "scriptgen_nb.emulator", "--port", "0", "--config", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            assert proc.stdout is not None
            deadline = time.monotonic() + start_timeout_s
            base_url = ""
            while not base_url and time.monotonic() < deadline:
                line = proc.stdout.readline()
                if not line:
                    break
                if "listening on" in line:
                    base_url = line.strip().rsplit(" ", 1)[-1]
            if not base_url:
                raise RuntimeError("the emulator did not print its URL")
            yield EmulatorProcess(proc, base_url)
        finally:
            _stop(proc)


def model_config(
    *,
    rpm: int | None = None,
    tpm: int | None = None,
    rpd: int | None = None,
    latency_s: float = 0.0,
    jitter_s: float = 0.0,
) -> ModelConfig:
    """One model: limits (None = unlimited) and latency (base + uniform jitter), no thinking."""
    return ModelConfig(
        rpm=rpm, tpm=tpm, rpd=rpd, latency_base_s=latency_s, latency_jitter_s=jitter_s
    )


def emulator_config(
    models: Mapping[str, ModelConfig],
    *,
    minute_s: float,
    day_s: float = 3600.0,
    seed: int = 7,
) -> EmulatorConfig:
    """A whole emulator configuration: compressed windows, one accepted key, the given models."""
    return EmulatorConfig(
        seed=seed,
        api_keys=(API_KEY,),
        minute_s=minute_s,
        day_s=day_s,
        latency_scale=1.0,
        models=dict(models),
    )


def summarize_counters(counters: dict[str, Any]) -> dict[str, Any]:
    """Per-model requests, successes, 429s (split per-minute / per-day; those without details
    and billing stops counted apart too), calls to a retired model, in flight at most."""
    out: dict[str, Any] = {}
    total_429 = 0
    for name, c in counters.get("models", {}).items():
        if not c["requests"]:
            continue
        per_day = sum(v for k, v in c["rate_limited"].items() if "PerDay" in k)
        refused = int(c["errors"].get("429", 0))
        total_429 += refused
        out[name] = {
            "requests": c["requests"],
            "successes": c["successes"],
            "http_429": refused,
            "per_day_429": per_day,
            "bare_429": c.get("bare_429", 0),
            "billing_429": c.get("billing_429", 0),
            "retired": c.get("retired", 0),
            "max_in_flight": c["max_in_flight"],
        }
    return {"models": out, "http_429": total_429, "requests": counters.get("requests", 0)}
