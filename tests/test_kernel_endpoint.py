"""One endpoint per kernel: in an IPython shell with the extension loaded, the magics and the
Python API (batch_generate, the project functions, the Batch API, resuming) send to the same
place, whichever runs first, and the note about the local emulator is said once.

Each test runs cells in the real in-process shell (tests/conftest.py) against the session's
emulator over HTTP; its counters show what each cell sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import scriptgen_nb as sg
from scriptgen_nb.emulator import Emulator, EmulatorConfig, ModelConfig
from scriptgen_nb.jupyter.endpoint import SESSION

MODEL = "gemini-3.5-flash-lite"
NOTE = "No GEMINI_API_KEY set"


@pytest.fixture(autouse=True)
def keyless_kernel(monkeypatch: pytest.MonkeyPatch, shell: Any) -> Iterator[None]:
    """A kernel with no key, no endpoint in the environment and no emulator running yet."""
    for name in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    SESSION.stop()
    SESSION.announced = False
    shell.user_ns["sg"] = sg
    yield
    SESSION.stop()


def run(shell: Any, code: str) -> None:
    """Run `code` as a cell; its exception, if any, fails the test."""
    outcome = shell.run_cell(code)
    assert outcome.success, outcome.error_before_exec or outcome.error_in_exec


def local(*api_keys: str) -> EmulatorConfig:
    """A fast emulator serving MODEL (accepting any key when none are given)."""
    return EmulatorConfig(api_keys=api_keys, latency_scale=0.0, models={MODEL: ModelConfig()})


def test_a_magic_batch_then_the_project_functions_use_one_emulator(
    shell: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = shell.run_cell_magic("scriptgen", f"batch --model {MODEL}", "A haiku about tides")
    emulator = SESSION.emulator
    assert emulator is not None and frame["simulated"].tolist() == [True]
    run(
        shell,
        "pid = sg.create_project('Tides', 'How the moon moves the sea')\n"
        f"outline = sg.generate_outline(pid, 4, models='{MODEL}')",
    )
    outline = shell.user_ns["outline"]
    assert outline.success and len(outline.chapters) == 4
    assert SESSION.emulator is emulator
    assert emulator.counters()["models"][MODEL]["requests"] == 2  # the cell's and the outline's
    assert capsys.readouterr().out.count(NOTE) == 1


def test_python_first_then_a_magic_batch_use_one_emulator(
    shell: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    run(
        shell,
        "first = sg.batch_generate(sg.create_batch_requests(['A limerick about moss']), "
        f"models='{MODEL}')",
    )
    emulator = SESSION.emulator
    assert emulator is not None  # the Python call started the kernel's emulator
    first = shell.user_ns["first"]
    assert first[0].success and first[0].simulated
    frame = shell.run_cell_magic("scriptgen", f"batch --model {MODEL}", "A haiku about moss")
    assert frame["success"].tolist() == [True] and SESSION.emulator is emulator
    assert emulator.attempts_for("A limerick about moss") == 1
    assert emulator.attempts_for("A haiku about moss") == 1
    said = capsys.readouterr().out
    assert said.count(NOTE) == 1 and "the magics and the Python API alike" in said


def test_a_call_that_names_its_endpoint_goes_there(shell: Any) -> None:
    with Emulator(local("own-key")) as own:
        shell.user_ns["own"] = own
        run(
            shell,
            "mine = sg.batch_generate(sg.create_batch_requests(['mine']), "
            f"models='{MODEL}', base_url=own.base_url, "
            "api_key='own-key')",
        )
        assert own.attempts_for("mine") == 1
    assert shell.user_ns["mine"][0].simulated
    assert SESSION.emulator is None  # the kernel's endpoint was not consulted


def test_an_emulator_started_on_purpose_wins_over_a_key_in_the_environment(
    shell: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "a-key-that-must-not-be-used")
    shell.run_line_magic("scriptgen", "emulator start --latency-scale 0")
    run(
        shell, f"chosen = sg.batch_generate(sg.create_batch_requests(['chosen']), models='{MODEL}')"
    )
    assert SESSION.emulator is not None and SESSION.emulator.attempts_for("chosen") == 1


def test_an_endpoint_in_the_environment_is_the_kernels_for_both(
    shell: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Emulator(local("env-key")) as elsewhere:
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", elsewhere.base_url)
        monkeypatch.setenv("GEMINI_API_KEY", "env-key")
        shell.run_cell_magic("scriptgen", f"batch --model {MODEL}", "from the magic")
        run(
            shell, f"sg.batch_generate(sg.create_batch_requests(['from python']), models='{MODEL}')"
        )
        assert elsewhere.attempts_for("from the magic") == 1
        assert elsewhere.attempts_for("from python") == 1
    assert SESSION.emulator is None


def test_the_batch_api_and_resuming_use_the_kernels_emulator(shell: Any) -> None:
    SESSION.start(local())  # what a keyless kernel starts, with jobs that end at once
    fast = "sg.BatchApiSettings(poll_initial_s=0.05, poll_max_s=0.1)"
    run(
        shell,
        "handle = sg.submit_batch_job(sg.create_batch_requests(['a', 'b']), "
        f"models='{MODEL}', batch_api={fast})\n"
        "handle.close()",
    )
    run(shell, f"done = sg.resume_batch_job(handle.batch_id, batch_api={fast})")
    done = shell.user_ns["done"]
    assert [r.success for r in done] == [True, True] and all(r.simulated for r in done)
    assert SESSION.emulator is not None
    assert SESSION.emulator.counters()["batches"]["jobs_created"] == 1


def test_without_the_extension_a_keyless_call_raises_missing_api_key(shell: Any) -> None:
    shell.run_line_magic("unload_ext", "scriptgen_nb")
    try:
        with pytest.raises(sg.MissingApiKeyError, match="GEMINI_API_KEY"):
            sg.batch_generate(sg.create_batch_requests(["no key, no kernel endpoint"]))
        assert SESSION.emulator is None
    finally:
        shell.run_line_magic("load_ext", "scriptgen_nb")
