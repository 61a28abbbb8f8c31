"""The emulator in its own process, configured from a file, read and reset over HTTP.

`EmulatorProcess(config)` writes the configuration to a JSON file, starts
`python -m scriptgen_nb.emulator --port 0 --config FILE` as a child process, reads the base URL
it prints, and offers `counters()` (GET /emulator/counters), `reset()` (POST /emulator/reset)
and `stop()`. Nothing here imports the engine; the only link to the emulator is its CLI and HTTP.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

API_KEY = "bench-key"


class EmulatorProcess:
    """A running `scriptgen_nb.emulator` child process; use as a context manager."""

    def __init__(self, config: dict[str, Any], *, start_timeout_s: float = 30.0) -> None:
        self.config = config
        self._start_timeout_s = start_timeout_s
        self._dir = tempfile.TemporaryDirectory(prefix="bench-emu-")
        self._proc: subprocess.Popen[str] | None = None
        self.base_url = ""

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> EmulatorProcess:
        path = Path(self._dir.name) / "emulator.json"
        path.write_text(json.dumps(self.config), encoding="utf-8")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "scriptgen_nb.emulator", "--port", "0", "--config", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self._proc.stdout is not None
        deadline = time.monotonic() + self._start_timeout_s
        while time.monotonic() < deadline:
            line = self._proc.stdout.readline()
            if not line:
                break
            if "listening on" in line:
                self.base_url = line.strip().rsplit(" ", 1)[-1]
                return self
        self.stop()
        raise RuntimeError("the emulator did not print its URL")

    def _call(self, method: str, path: str) -> Any:
        request = urllib.request.Request(self.base_url + path, method=method, data=None)
        if method == "POST":
            request.data = b"{}"
            request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"{}")

    def counters(self) -> dict[str, Any]:
        """The emulator's counters (requests per model, 429s by quotaId, errors, ...)."""
        return dict(self._call("GET", "/emulator/counters"))

    def reset(self) -> None:
        """Empty the quota windows and zero the counters (between two contenders)."""
        self._call("POST", "/emulator/reset")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc is not None and self._proc.stdout is not None:
            self._proc.stdout.close()
        self._proc = None
        self._dir.cleanup()


def model_config(
    *,
    rpm: int | None = None,
    tpm: int | None = None,
    rpd: int | None = None,
    latency_s: float = 0.0,
    jitter_s: float = 0.0,
) -> dict[str, Any]:
    """One `[models.NAME]` table: limits (None = unlimited) and latency (base + uniform jitter)."""
    table: dict[str, Any] = {
        "latency_base_s": latency_s,
        "latency_jitter_s": jitter_s,
        "latency_per_output_token_s": 0.0,
        "thinking": False,
    }
    for name, value in (("rpm", rpm), ("tpm", tpm), ("rpd", rpd)):
        if value is not None:
            table[name] = value
    return table


def emulator_config(
    models: dict[str, dict[str, Any]],
    *,
    minute_s: float,
    day_s: float = 3600.0,
    seed: int = 7,
) -> dict[str, Any]:
    """A whole emulator configuration: compressed windows, one accepted key, the given models."""
    return {
        "seed": seed,
        "api_keys": [API_KEY],
        "minute_s": minute_s,
        "day_s": day_s,
        "latency_scale": 1.0,
        "models": models,
    }


def summarize_counters(counters: dict[str, Any]) -> dict[str, Any]:
    """Per-model requests, successes, 429s (split per-minute / per-day) and other errors."""
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
            "max_in_flight": c["max_in_flight"],
        }
    return {"models": out, "http_429": total_429, "requests": counters.get("requests", 0)}
