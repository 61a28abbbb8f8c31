"""Any model name: the endpoint's own model list (`GET models`) decides first, read once per
process and endpoint and key, and quietly skipped when it cannot be had. Over real HTTP against
the emulator (and a server that never answers)."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator

import pytest

import scriptgen_nb as sg
from scriptgen_nb.emulator import Emulator, EmulatorConfig, ModelConfig
from scriptgen_nb.engine import listing
from scriptgen_nb.engine.errors import ConfigurationError, UnknownModelError
from scriptgen_nb.engine.identity import key_fingerprint
from scriptgen_nb.engine.listing import endpoint_models
from scriptgen_nb.store import open_database

pytestmark = pytest.mark.integration

KEY = "listing-key"
NEW = "gemini-4-argon"  # listed by the endpoint, unknown to the catalogue


@pytest.fixture
def emu() -> Iterator[Emulator]:
    models = {
        NEW: ModelConfig(input_token_limit=2_000_000),
        "gemini-2.5-flash-lite": ModelConfig(),
        "gemini-3.5-flash-lite": ModelConfig(),
    }
    with Emulator(EmulatorConfig(seed=2, api_keys=(KEY,), latency_scale=0.0, models=models)) as e:
        yield e


def run(emu: Emulator, models: object, **options: object) -> sg.ResultList:
    requests = sg.create_batch_requests(["one line about tides", "one line about moss"])
    return sg.batch_generate(requests, models=models, base_url=emu.base_url, api_key=KEY, **options)


def generated(emu: Emulator) -> int:
    return sum(m["requests"] for m in emu.counters()["models"].values())


# --- reading the list --------------------------------------------------------------------------


def test_the_list_is_read_at_v1beta_once_and_cached_under_a_fingerprint(
    emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="scriptgen_nb.emulator")
    listed = endpoint_models(KEY, base_url=emu.base_url)
    assert listed is not None and set(listed) == {
        NEW,
        "gemini-2.5-flash-lite",
        "gemini-3.5-flash-lite",
    }
    assert listed[NEW].input_token_limit == 2_000_000
    assert endpoint_models(KEY, base_url=emu.base_url + "/") is listed  # asked once
    gets = [r.getMessage() for r in caplog.records if r.getMessage().startswith("GET /")]
    assert gets == ["GET /v1beta/models -> 200"]
    cached = repr(listing._cache)
    assert KEY not in cached and key_fingerprint(KEY) in cached


def test_a_refused_key_makes_no_list(emu: Emulator) -> None:
    assert endpoint_models("not-the-key", base_url=emu.base_url) is None


def test_a_dead_endpoint_makes_no_list_at_once() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    assert endpoint_models(KEY, base_url=f"http://127.0.0.1:{port}") is None
    assert time.monotonic() - started < 2.0


def test_an_endpoint_that_never_answers_makes_no_list_within_the_timeout() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:  # take connections and say nothing
        server.settimeout(0.05)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        started = time.monotonic()
        url = f"http://127.0.0.1:{server.getsockname()[1]}"
        assert endpoint_models(KEY, base_url=url, timeout_s=0.3) is None
        assert time.monotonic() - started < 3.0
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


# --- batches by any name -----------------------------------------------------------------------


def test_a_name_only_the_endpoint_lists_runs_with_an_unknown_cost(emu: Emulator) -> None:
    results = run(emu, NEW)
    assert all(r.success and r.model == NEW for r in results)
    assert all(r.cost_usd is None for r in results)
    assert results.summary().endswith("cost unknown")
    frame = results.to_dataframe()
    assert frame["cost_usd"].isna().all() and frame["cost_usd"].dtype == float
    db = open_database()
    assert db.rows("SELECT count(*) FROM ai_api_call WHERE estimated_cost IS NULL")[0][0] == 2
    assert db.rows("SELECT unpriced_count, estimated_cost FROM batch_log")[0] == (2, 0.0)
    (notices,) = db.rows("SELECT notices FROM batch_log")[0]
    assert any(f"{NEW}: price unknown" in n for n in notices)
    costs = sg.CallStore().costs()
    assert costs["unpriced"].tolist() == [2]


def test_a_mixed_batch_sums_to_at_least_the_priced_part(emu: Emulator) -> None:
    requests = sg.create_batch_requests(
        [{"prompt": "one line about tides", "model": NEW}, "one line about moss"]
    )
    ladder = [NEW, "gemini-3.5-flash-lite"]
    results = sg.batch_generate(
        requests, models=ladder, base_url=emu.base_url, api_key=KEY, routing="failover"
    )
    assert [r.model for r in results] == [NEW, NEW]  # failover: the first model takes both
    assert str(results.cost) == "cost unknown"
    priced = sg.batch_generate(
        sg.create_batch_requests(["one line about gulls"]),
        models="gemini-3.5-flash-lite",
        base_url=emu.base_url,
        api_key=KEY,
    )
    both = sg.ResultList([*results, *priced])
    assert str(both.cost).startswith("at least $") and "(2 requests of unknown price)" in str(
        both.cost
    )


def test_a_budget_refuses_a_model_of_unknown_price_before_sending(emu: Emulator) -> None:
    with pytest.raises(ConfigurationError, match=rf"price of {NEW} is unknown"):
        run(emu, NEW, budget_usd=1.0)
    priced = sg.ModelSpec(NEW, priority=1, input_usd_per_1m=0.1, output_usd_per_1m=0.4)
    results = run(emu, [priced], budget_usd=1.0)
    assert all(r.success and r.cost_usd and r.cost_usd > 0 for r in results)
    assert generated(emu) == 2


def test_a_catalogue_model_the_endpoint_does_not_list_fails_before_sending(
    emu: Emulator,
) -> None:
    with pytest.raises(ConfigurationError, match=r"'gemini-3\.8-flash' is not in the endpoint"):
        run(emu, "gemini-3.8-flash")
    assert generated(emu) == 0


def test_a_misspelt_name_suggests_the_listed_ones_before_sending(emu: Emulator) -> None:
    with pytest.raises(UnknownModelError, match=r"Did you mean 'gemini-4-argon'"):
        run(emu, "gemini-4-argn")
    assert generated(emu) == 0


def test_the_default_ladder_keeps_only_what_the_endpoint_lists(emu: Emulator) -> None:
    results = run(emu, None)
    assert {r.model for r in results} <= {"gemini-3.5-flash-lite", "gemini-2.5-flash-lite"}
    assert all(r.success for r in results)
    assert emu.counters()["models"][NEW]["requests"] == 0  # listed, but not in the ladder


def test_without_the_list_the_catalogue_decides_alone() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    requests = sg.create_batch_requests(["x"])
    with pytest.raises(UnknownModelError, match=r"Did you mean 'gemini-3.8-flash'"):
        sg.batch_generate(requests, models="gemini-3.8-flsh", base_url=dead, api_key=KEY)
