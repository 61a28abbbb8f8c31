"""The `scriptgen` command, run for real in a subprocess."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

SCRIPTGEN = [sys.executable, "-m", "scriptgen_nb.cli"]


def scriptgen(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SCRIPTGEN, *args], capture_output=True, text=True, timeout=120, env=env, check=False
    )


def test_demo_runs_a_batch_across_models_on_the_emulator_without_a_key() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("GEMINI_API_KEY", "GOOGLE_API_KEY")}
    done = scriptgen("demo", env=env)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "embedded Gemini emulator" in out
    rows = re.findall(r"^(gemini-[\w.-]+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s", out, re.MULTILINE)
    assert len(rows) >= 2  # figures for at least two models
    assert sum(int(ok) for _, _, ok, _, _ in rows) == 40
    assert re.search(r"^total: 40/40 requests succeeded", out, re.MULTILINE)
    assert "exhausted" in out  # the first model's day quota ran out and the batch rotated


def test_demo_rejects_a_bad_count() -> None:
    done = scriptgen("demo", "-n", "0")
    assert done.returncode == 2 and "--requests must be at least 1" in done.stderr


def test_help_lists_the_commands_and_the_emulators_own_options() -> None:
    top = scriptgen("--help")
    assert top.returncode == 0 and "demo" in top.stdout and "emulator" in top.stdout
    emulator = scriptgen("emulator", "--help")
    assert emulator.returncode == 0
    assert "usage: scriptgen emulator" in emulator.stdout and "--minute-s" in emulator.stdout


def test_emulator_command_rejects_a_bad_config_file(tmp_path: Path) -> None:
    bad = tmp_path / "emu.toml"
    bad.write_text("[models.m]\nrpm = 'ten'\n")
    done = scriptgen("emulator", "--port", "0", "--config", str(bad))
    assert done.returncode == 2 and "rpm" in done.stderr
