"""Every SDK client the package builds speaks v1beta (the Batch and Files APIs are documented
only there), unless `api_version=` says otherwise: proven by the paths the emulator receives."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

import scriptgen_nb as sg
from scriptgen_nb.emulator import Emulator, EmulatorConfig
from scriptgen_nb.emulator.config import BatchConfig

pytestmark = pytest.mark.integration

KEY = "version-key"
MODEL = sg.ModelSpec("gemini-3.8-flash", priority=1, input_usd_per_1m=0.5, output_usd_per_1m=3.0)


@pytest.fixture
def emu() -> Iterator[Emulator]:
    config = EmulatorConfig(
        seed=4, api_keys=(KEY,), latency_scale=0.0, batch=BatchConfig(pending_s=0, running_s=0)
    )
    with Emulator(config) as emulator:
        yield emulator


def _requests() -> list[sg.GenerationRequest]:
    return sg.create_batch_requests(["one line about tides", "one line about moss"])  # type: ignore[return-value]


def _sent(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The API paths (not the emulator's own /emulator/ ones) the log shows."""
    lines = [r.getMessage() for r in caplog.records if " -> " in r.getMessage()]
    return [line.split()[1] for line in lines if not line.split()[1].startswith("/emulator/")]


def test_live_calls_use_v1beta(emu: Emulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="scriptgen_nb.emulator")
    results = sg.batch_generate(_requests(), models=[MODEL], base_url=emu.base_url, api_key=KEY)
    assert all(r.success for r in results)
    sent = _sent(caplog)
    assert sent and all(p.startswith("/v1beta/models/gemini-3.8-flash:") for p in sent), sent


def test_an_explicit_api_version_wins(emu: Emulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="scriptgen_nb.emulator")
    sg.batch_generate(
        _requests(), models=[MODEL], base_url=emu.base_url, api_key=KEY, api_version="v1alpha"
    )
    sent = _sent(caplog)
    assert sent and all(p.startswith("/v1alpha/") for p in sent), sent


def test_the_batch_api_uses_v1beta(emu: Emulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="scriptgen_nb.emulator")
    settings = sg.BatchApiSettings(poll_initial_s=0.01, poll_max_s=0.05)
    results = sg.batch_generate(
        _requests(),
        models=[MODEL],
        base_url=emu.base_url,
        api_key=KEY,
        mode="batch_api",
        batch_api=settings,
    )
    assert all(r.success for r in results)
    sent = _sent(caplog)
    assert any(":batchGenerateContent" in p for p in sent), sent
    assert all(p.startswith(("/v1beta/", "/upload/v1beta/")) for p in sent), sent
