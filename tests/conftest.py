"""Test-wide set-up: every test gets its own call log file unless it names one, and its own
quota ledger."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# A suite started in the background by a shell without job control (`make test &`) inherits
# SIGINT ignored, and hands that on to every process it starts: the Ctrl-C tests would then
# interrupt nothing. Python only turns SIGINT into KeyboardInterrupt where it is not ignored.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def call_log_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the default call log (SCRIPTGEN_DB) at a file of this test's own."""
    path = tmp_path / "scriptgen.duckdb"
    monkeypatch.setenv("SCRIPTGEN_DB", str(path))
    return path


@pytest.fixture(autouse=True)
def fresh_model_lists() -> None:
    """Each test asks endpoints for their model lists, and whether they are emulators, afresh:
    an emulator or server of a later test may get an earlier one's port, with other models."""
    from scriptgen_nb.endpoints import forget_endpoint_kinds
    from scriptgen_nb.engine.listing import forget_endpoint_models

    forget_endpoint_models()
    forget_endpoint_kinds()


@pytest.fixture(autouse=True)
def quota_ledger_in_tmp(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Each test's batches share a quota ledger of their own (SCRIPTGEN_QUOTA, inherited by the
    processes it starts): the default one, in the user's cache directory, is every process's,
    and a test must meet neither another test's slots nor the user's."""
    path = tmp_path_factory.mktemp("quota") / "quota.sqlite"
    monkeypatch.setenv("SCRIPTGEN_QUOTA", str(path))
    return path


@pytest.fixture(scope="module")
def shell() -> Iterator[Any]:
    """An IPython shell with the extension loaded (the magics' tests); after the module the
    emulator it started (`%scriptgen emulator`) is stopped and the extension unloaded, so the
    tests that follow see plain Python (no kernel endpoint)."""
    from IPython import get_ipython
    from IPython.testing.globalipapp import start_ipython

    from scriptgen_nb.jupyter.endpoint import SESSION

    ip = start_ipython() or get_ipython()  # the global test shell: only the first call makes it
    ip.run_line_magic("load_ext", "scriptgen_nb")
    yield ip
    SESSION.stop()
    ip.run_line_magic("unload_ext", "scriptgen_nb")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server for the session (tests/redis_server.py); the test skips, saying
    why, where none can be started. Each test that uses it finds it empty."""
    from tests.redis_server import missing, redis_server

    reason = missing()
    if reason is not None:
        pytest.skip(reason)
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture
def empty_redis(redis_url: str) -> str:
    """The session's redis-server, emptied for this test."""
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushall()
    client.close()
    return redis_url
