"""Test-wide set-up: every test gets its own call log file unless it names one."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def call_log_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the default call log (SCRIPTGEN_DB) at a file of this test's own."""
    path = tmp_path / "scriptgen.duckdb"
    monkeypatch.setenv("SCRIPTGEN_DB", str(path))
    return path
