"""Faults over real HTTP: every request ends exactly once, and the log agrees with the results.

The emulator injects the faults (deterministically from its seed); the engine runs with the real
google-genai SDK against it, with short timeouts and backoffs so the matrix plays out in seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import scriptgen_nb as sg
from scriptgen_nb.emulator import Emulator, EmulatorConfig, FaultConfig, ModelConfig
from scriptgen_nb.engine.policy import Backoff
from scriptgen_nb.engine.values import AttemptFinished
from scriptgen_nb.store import Database

KEY = "reliability-key"
FAST_RETRIES = Backoff(initial_s=0.01, factor=2.0, max_s=0.1)


def spec(name: str, priority: int, **limits: Any) -> sg.ModelSpec:
    return sg.ModelSpec(
        name, priority=priority, input_usd_per_1m=0.3, output_usd_per_1m=2.5, **limits
    )


def run(
    emu: Emulator,
    prompts: list[str],
    models: list[sg.ModelSpec],
    db: Path,
    events: list[Any],
    **options: Any,
) -> sg.ResultList:
    options.setdefault("timeout_s", 2.0)
    options.setdefault("max_attempts", 12)
    return sg.batch_generate(
        sg.create_batch_requests(prompts),
        models=models,
        base_url=emu.base_url,
        api_key=KEY,
        db=db,
        backoff=FAST_RETRIES,
        listeners=[events.append],
        **options,
    )


MATRIX = FaultConfig(
    p_500=0.10, p_503=0.05, p_hang=0.02, p_malformed=0.01, p_429=0.05, p_truncate=0.01, p_block=0.01
)


def test_a_mixed_fault_matrix_on_a_thousand_requests(tmp_path: Path) -> None:
    db = tmp_path / "log.duckdb"
    events: list[Any] = []
    config = EmulatorConfig(
        seed=11,
        api_keys=(KEY,),
        latency_scale=0.0,
        hang_s=5.0,
        minute_s=1.0,
        models={"m": ModelConfig(faults=MATRIX)},
    )
    with Emulator(config) as emu:
        results = run(
            emu,
            [f"request {i}" for i in range(1000)],
            [spec("m", 1, minute_s=1.0)],
            db,
            events,
            max_concurrency=32,
        )
        counters = emu.counters()["models"]["m"]
    # Every request ends exactly once, in input order.
    assert [r.id for r in results] == [str(i) for i in range(1000)]
    # With enough attempts every retryable one succeeded; the rest failed with their own kind.
    kinds = {r.error.kind for r in results if r.error}
    assert kinds == {"truncated", "blocked"}
    finals = [e for e in events if isinstance(e, AttemptFinished) and e.attempt.failure]
    assert not [e for e in finals if e.attempt.failure.kind in kinds and e.will_retry]
    injected = counters["faults"]
    assert {"500", "503", "hang", "malformed", "429", "truncate", "block"} <= set(injected)
    # Every attempt the service saw is an attempt on record, with its error kind.
    attempts = [e.attempt for e in events if isinstance(e, AttemptFinished)]
    assert len(attempts) == counters["requests"] == sum(r.attempts for r in results)
    log = Database(db)
    by_kind = dict(
        log.rows("SELECT coalesce(error_kind, 'ok'), count(*) FROM ai_api_call GROUP BY 1")
    )
    assert sum(by_kind.values()) == counters["requests"]
    assert by_kind["rate_limited"] == injected["429"]
    assert by_kind["server_error"] == injected["500"] + injected["503"]
    assert by_kind["timeout"] == injected["hang"]
    assert by_kind["malformed_response"] == injected["malformed"]
    # Results and log agree, row for row and to the cent.
    stored = dict(log.rows("SELECT request_id, success FROM result"))
    assert stored == {r.id: r.success for r in results}
    logged_cost = log.rows("SELECT sum(estimated_cost) FROM ai_api_call")[0][0]
    assert abs(logged_cost - sum(r.cost_usd for r in results)) < 1e-9


def test_connections_dropped_mid_response_are_retried(tmp_path: Path) -> None:
    events: list[Any] = []
    config = EmulatorConfig(
        seed=2,
        api_keys=(KEY,),
        latency_scale=0.0,
        models={"m": ModelConfig(faults=FaultConfig(p_reset=0.3))},
    )
    with Emulator(config) as emu:
        results = run(
            emu,
            [f"p{i}" for i in range(60)],
            [spec("m", 1)],
            tmp_path / "l.duckdb",
            events,
            max_concurrency=8,
        )
        resets = emu.counters()["models"]["m"]["faults"].get("reset", 0)
    assert all(r.success for r in results)
    failed = [
        e.attempt.failure.kind
        for e in events
        if isinstance(e, AttemptFinished) and e.attempt.failure
    ]
    assert resets > 0 and len(failed) == resets
    assert set(failed) <= {"connection", "malformed_response"}


def test_rotation_finishes_when_one_model_runs_out_and_another_is_overloaded(
    tmp_path: Path,
) -> None:
    events: list[Any] = []
    config = EmulatorConfig(
        seed=4,
        api_keys=(KEY,),
        latency_scale=0.0,
        day_s=60.0,
        models={
            "first": ModelConfig(rpd=10),
            "second": ModelConfig(faults=FaultConfig(p_503=0.4)),
        },
    )
    with Emulator(config) as emu:
        results = run(
            emu,
            [f"chapter {i}" for i in range(40)],
            [spec("first", 1), spec("second", 2)],
            tmp_path / "l.duckdb",
            events,
            max_concurrency=4,
        )
        first = emu.counters()["models"]["first"]
    assert all(r.success for r in results)
    assert first["successes"] == 10  # its whole daily quota, then no more probes
    per_day = first["rate_limited"].get("GenerateRequestsPerDayPerProjectPerModel-FreeTier", 0)
    assert first["requests"] == 10 + per_day and per_day <= 4  # only those in flight
    states = {(e.model, e.state) for e in events if type(e).__name__ == "ModelStateChanged"}
    assert ("first", "exhausted") in states
