"""The public facade: building requests, running from sync and async code, interrupts, errors."""

from __future__ import annotations

import _thread
import asyncio
import subprocess
import sys
import threading

import pytest

import scriptgen_nb as sg
from scriptgen_nb.engine.backend import FakeBackend
from scriptgen_nb.engine.values import GenerationRequest

FAST = [sg.ModelSpec("fake-model", priority=1, input_usd_per_1m=1.0, output_usd_per_1m=2.0)]


def test_create_batch_requests_accepts_strings_mappings_and_requests() -> None:
    ready = GenerationRequest(id="given", prompt="as is")
    reqs = sg.create_batch_requests(
        ["first", {"id": "ch-2", "prompt": "second", "max_output_tokens": 99}, ready],
        operation="GENERATE_SCRIPT",
        project_id="p1",
        temperature=0.7,
        stop_sequences=["END"],
    )
    assert isinstance(reqs, list)
    assert [r.id for r in reqs] == ["0", "ch-2", "given"]
    assert reqs[0].operation == "GENERATE_SCRIPT" and reqs[0].temperature == 0.7
    assert reqs[0].stop_sequences == ("END",)
    assert reqs[1].max_output_tokens == 99 and reqs[1].project_id == "p1"
    assert reqs[2] is ready


def test_create_batch_requests_is_lazy_for_generators() -> None:
    pulled = []

    def prompts():  # type: ignore[no-untyped-def]
        for i in range(3):
            pulled.append(i)
            yield f"p{i}"

    reqs = sg.create_batch_requests(prompts())
    assert pulled == []
    assert [r.prompt for r in reqs] == ["p0", "p1", "p2"]


@pytest.mark.parametrize(
    ("prompts", "config", "message"),
    [
        (["a", {"id": "0", "prompt": "b"}], {}, "share the id '0'"),
        (["   "], {}, "empty"),
        ([42], {}, "is a int"),
        ([{"prompt": "x", "colour": "red"}], {}, "unknown fields \\['colour'\\]"),
        (["x"], {"temprature": 0.2}, "Unknown request settings \\['temprature'\\]"),
    ],
)
def test_bad_prompts_are_rejected_with_a_clear_message(
    prompts: list[object], config: dict[str, object], message: str
) -> None:
    with pytest.raises(sg.ConfigurationError, match=message):
        sg.create_batch_requests(prompts, **config)  # type: ignore[arg-type]


def test_batch_generate_returns_results_in_input_order_and_reports_progress() -> None:
    progress: list[tuple[int, int | None]] = []
    backend = FakeBackend(latency_s=lambda r, m: 0.05 * (5 - int(r.id)))
    reqs = sg.create_batch_requests([f"prompt {i}" for i in range(5)])
    results = sg.batch_generate(
        reqs, lambda done, total: progress.append((done, total)), models=FAST, backend=backend
    )
    assert [r.id for r in results] == ["0", "1", "2", "3", "4"]
    assert [r.text for r in results] == [f"[fake-model] prompt {i}" for i in range(5)]
    assert progress == [(i, 5) for i in range(1, 6)]
    frame = results.to_dataframe()
    assert list(frame["id"]) == ["0", "1", "2", "3", "4"] and frame["success"].all()
    assert results.summary().startswith("5/5 succeeded")


def test_batch_generate_works_inside_a_running_event_loop() -> None:
    async def cell() -> sg.ResultList:  # a Jupyter cell runs inside a loop like this
        return sg.batch_generate(
            sg.create_batch_requests(["a", "b"]), models=FAST, backend=FakeBackend()
        )

    results = asyncio.run(cell())
    assert [r.success for r in results] == [True, True]


def test_abatch_generate_runs_on_the_callers_loop() -> None:
    async def cell() -> tuple[sg.ResultList, str]:
        results = await sg.abatch_generate(
            sg.create_batch_requests(["a", "b", "c"]), models=FAST, backend=FakeBackend()
        )
        return results, threading.current_thread().name

    results, thread = asyncio.run(cell())
    assert len(results) == 3 and thread == "MainThread"


def test_iter_generate_can_be_stopped_early_without_leaving_threads() -> None:
    reqs = (GenerationRequest(id=str(i), prompt=f"p{i}") for i in range(10_000))
    stream = sg.iter_generate(
        reqs, models=FAST, backend=FakeBackend(latency_s=0.001), max_concurrency=4
    )
    first = [next(stream) for _ in range(3)]
    stream.close()  # type: ignore[attr-defined]
    assert len(first) == 3
    assert not [t for t in threading.enumerate() if t.name == "scriptgen-batch"]


def test_ctrl_c_raises_batch_interrupted_with_every_result() -> None:
    def interrupt(done: int, total: int | None) -> None:
        if done == 3:
            _thread.interrupt_main()

    reqs = sg.create_batch_requests([f"p{i}" for i in range(200)])
    with pytest.raises(sg.BatchInterrupted) as caught:
        sg.batch_generate(
            reqs, interrupt, models=FAST, backend=FakeBackend(latency_s=0.01), max_concurrency=2
        )
    results = caught.value.results
    assert [r.id for r in results] == [str(i) for i in range(200)]
    assert sum(r.success for r in results) >= 3
    not_run = [r for r in results if not r.success]
    assert not_run and {r.error.kind for r in not_run} == {"not_run"}  # type: ignore[union-attr]
    assert not [t for t in threading.enumerate() if t.name == "scriptgen-batch"]


def test_cancel_token_from_another_thread_returns_partial_results() -> None:
    token = sg.CancelToken()

    def cancel_at_five(done: int, total: int | None) -> None:
        if done == 5:
            threading.Thread(target=token.cancel).start()

    reqs = sg.create_batch_requests([f"p{i}" for i in range(100)])
    results = sg.batch_generate(
        reqs,
        cancel_at_five,
        models=FAST,
        backend=FakeBackend(latency_s=0.01),
        max_concurrency=2,
        cancel=token,
    )
    assert len(results) == 100
    assert 5 <= sum(r.success for r in results) < 100


def test_missing_api_key_names_the_variable_and_the_emulator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(sg.MissingApiKeyError, match=r"GEMINI_API_KEY(.|\n)*emulator"):
        sg.batch_generate(sg.create_batch_requests(["x"]), models=FAST)


def test_unknown_model_and_bad_concurrency_are_configuration_errors() -> None:
    reqs = sg.create_batch_requests(["x"])
    with pytest.raises(sg.UnknownModelError, match="gemini-9-ultra"):
        sg.batch_generate(reqs, models="gemini-9-ultra", backend=FakeBackend())
    with pytest.raises(sg.ConfigurationError, match="max_concurrency"):
        sg.batch_generate(reqs, max_concurrency="fast", models=FAST, backend=FakeBackend())


def test_engine_imports_no_frontend_and_no_duckdb() -> None:
    code = (
        "import sys, scriptgen_nb.engine.runner, scriptgen_nb.engine.backend;"
        "bad = {'IPython', 'ipywidgets', 'matplotlib', 'duckdb', 'scriptgen_nb.api',"
        " 'scriptgen_nb.emulator'} & set(sys.modules); print(sorted(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_quota_ledger_imports_the_engine_only() -> None:
    """quota/ sits beside store/: it may use engine/, never the layers above or DuckDB (the
    ledger is SQLite: DuckDB allows one writing process per file)."""
    code = (
        "import sys, scriptgen_nb.quota, scriptgen_nb.quota.local, scriptgen_nb.quota.redis;"
        "ours = {m.split('.')[1] for m in sys.modules if m.startswith('scriptgen_nb.')};"
        "print(sorted(ours - {'engine', 'quota'}), 'duckdb' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[] False"


def test_emulator_imports_nothing_from_the_engine() -> None:
    code = (
        "import sys, scriptgen_nb.emulator;"
        "print(sorted(m for m in sys.modules if m.startswith('scriptgen_nb.engine')"
        " or m == 'scriptgen_nb.api'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
