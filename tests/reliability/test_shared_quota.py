"""One quota, two processes: the shared ledger paces them together (issue 17).

Two child processes run a batch each on one model at one key, against an emulator in this
process whose per-window limit is what both children state; both start when told (after their
imports), so they compete from the first window. With the ledger (a file of the test's own)
they admit together what one would, and the server refuses next to nothing (the same on a
real redis-server, where one can be started; at most 5, issue 17's goal); with
`SCRIPTGEN_QUOTA=off` each paces as if it had the whole quota, and the server refuses about
half of every window. The emulator's counters are the outside view.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from scriptgen_nb.emulator import Emulator, EmulatorConfig, ModelConfig
from tests.reliability.children import KEY, Child, model_counters, prompts

pytestmark = pytest.mark.integration

MODEL = "gemini-3.8-flash"
PER_WINDOW = 10  # requests per 1 s window, on the server and in the children's ModelSpec
EACH = 30  # requests per child: together six windows' worth


def quota_server() -> Emulator:
    model = ModelConfig(rpm=PER_WINDOW, tpm=10_000_000, latency_base_s=0.05)
    return Emulator(
        EmulatorConfig(seed=5, api_keys=(KEY,), minute_s=1.0, day_s=3600.0, models={MODEL: model})
    )


def run_pair(
    start_child: Callable[..., Child], tmp_path: Path, emu: Emulator
) -> list[dict[str, Any]]:
    """Both children's summaries; each logs to a file of its own (the ledger, not the call
    log, is what they share)."""
    limits = {"rpm": PER_WINDOW, "minute_s": 1.0, "day_s": 3600.0}
    children = [
        start_child(
            emu,
            tmp_path / f"{name}.duckdb",
            MODEL,
            prompts(name, EACH),
            None,
            wait_for_go=True,
            limits=limits,
        )
        for name in ("left", "right")
    ]
    for child in children:
        assert child.line() == {"ready": True}
    for child in children:
        child.go()
    return [child.line() for child in children]


def refused(emu: Emulator) -> int:
    return sum(model_counters(emu, MODEL)["rate_limited"].values())


@pytest.fixture(params=["local", "redis"])
def shared_ledger(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Where the children share their quota (SCRIPTGEN_QUOTA, which they inherit): the
    test's own SQLite file (conftest.py), or a real redis-server (skipped where there is none)."""
    if request.param == "redis":
        monkeypatch.setenv("SCRIPTGEN_QUOTA", request.getfixturevalue("empty_redis"))
    return request.param


def test_two_processes_on_one_quota_share_its_window(
    start_child: Callable[..., Child], tmp_path: Path, shared_ledger: str
) -> None:
    with quota_server() as emu:
        summaries = run_pair(start_child, tmp_path, emu)
        assert [s["succeeded"] for s in summaries] == [EACH, EACH]
        assert [s["ledger_failures"] for s in summaries] == [[], []]  # none paced alone
        # Issue 17's goal for a pair. Usually none: what remains are races at a window's edge
        # on a loaded machine, where a 1 s window's 50 ms margin is thin (pacing alone: ~38).
        assert refused(emu) <= 5, model_counters(emu, MODEL)


def test_without_the_ledger_each_process_paces_as_if_alone(
    start_child: Callable[..., Child], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The comparison that shows what the ledger is for (and that the test above could fail)."""
    monkeypatch.setenv("SCRIPTGEN_QUOTA", "off")
    with quota_server() as emu:
        summaries = run_pair(start_child, tmp_path, emu)
        assert [s["succeeded"] for s in summaries] == [EACH, EACH]
        assert refused(emu) >= PER_WINDOW, model_counters(emu, MODEL)
