"""Fixtures of the tests with real processes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from scriptgen_nb.emulator import Emulator
from tests.reliability.children import CHILD, KEY, PRICES, Child


@pytest.fixture
def start_child(tmp_path: Path) -> Iterator[Callable[..., Child]]:
    """Start batch children; every one still alive at the end is killed (by its own pid)."""
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    started: list[Child] = []

    def start(
        emu: Emulator,
        db: Path,
        model: str,
        texts: list[str],
        max_concurrency: int,
        *,
        wait_for_go: bool = False,
        limits: dict[str, Any] | None = None,
    ) -> Child:
        """A child running one batch of `texts` on `model` (its `ModelSpec` also takes
        `limits`: rpm, minute_s, ...); with `wait_for_go` it starts when told `.go()`."""
        job = {
            "model": model,
            "prices": PRICES,
            "prompts": texts,
            "base_url": emu.base_url,
            "api_key": KEY,
            "db": str(db),
            "max_concurrency": max_concurrency,
            "wait_for_go": wait_for_go,
            "limits": limits or {},
        }
        child = Child.spawn(
            [sys.executable, str(script), json.dumps(job)],
            tmp_path / f"child-{len(started)}.stderr",
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=tmp_path,
        )
        started.append(child)
        return child

    try:
        yield start
    finally:
        for child in started:
            child.end()
