"""Learned limits kept per quota identity in a real DuckDB file: what a later batch (another
session of the log, as another process would open it) starts from, expiry, forgetting, purge."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import scriptgen_nb as sg
from scriptgen_nb.engine.backend import FakeBackend
from scriptgen_nb.engine.errors import BackendError, QuotaViolation
from scriptgen_nb.engine.identity import key_fingerprint
from scriptgen_nb.engine.values import LimitLearned, LimitSource, RememberedLimit
from scriptgen_nb.store import REMEMBER_LIMITS_S, Database, open_database, purge, schema
from scriptgen_nb.store.limits import forget_limits, remembered_limits
from scriptgen_nb.store.recorder import BatchInfo, Recorder
from scriptgen_nb.store.session import quota_history
from tests.call_log_rows import remember
from tests.google_errors import PER_MINUTE

KEY = "AIzaSy-this-key-must-never-reach-the-log-0123456789"
A = sg.ModelSpec("a", priority=1, rpm=10, minute_s=1.0)
B = sg.ModelSpec("b", priority=2, rpm=10, minute_s=1.0)


def stated_429(limit: int) -> BackendError:
    """A per-minute 429 whose QuotaFailure states the limit (quotaValue)."""
    return BackendError(
        "rate_limited", "quota", 429, 0.2, (QuotaViolation(PER_MINUTE, "minute", limit),)
    )


def learn(path: Path, limit: int, *, api_key: str | None = KEY, model: str = "a") -> None:
    """Batch 1: one request meets a 429 stating `limit`, and the engine learns it."""
    backend = FakeBackend()
    backend.enqueue(model, stated_429(limit))
    spec = A if model == "a" else B
    reqs = sg.create_batch_requests(["one", "two"])
    options: dict[str, Any] = {"api_key": api_key} if api_key else {}
    results = sg.batch_generate(
        reqs, models=[spec], backend=backend, db=path, cache="refresh", **options
    )
    assert all(r.success for r in results)


def limits_at(db: Database, fingerprint: str | None, endpoint: str = "fake", **kw: Any) -> Any:
    """The remembered limits' values, per model and metric."""
    history = quota_history(db, [A, B], endpoint, fingerprint, **kw)
    return {
        model: {metric: limit.value for metric, limit in h.limits.items()}
        for model, h in history.items()
        if h.limits
    }


def test_a_later_batch_in_another_session_starts_from_the_limit_learned(tmp_path: Path) -> None:
    path = tmp_path / "log.duckdb"
    learn(path, 3)
    later = open_database(path)  # what another process opens: the file, nothing shared
    assert limits_at(later, key_fingerprint(KEY)) == {"a": {"rpm": 3}}
    # With how it was learned: a stated limit is known, one only raised is a floor.
    history = quota_history(later, [A, B], "fake", key_fingerprint(KEY))
    assert history["a"].limits["rpm"] == RememberedLimit(3, "stated")
    # Only for the same quota identity: another key, another endpoint, no key known.
    assert limits_at(later, key_fingerprint("another key")) == {}
    assert limits_at(later, key_fingerprint(KEY), endpoint="google") == {}
    assert limits_at(later, None) == {}
    row = later.rows("SELECT source, endpoint, key_fingerprint, configured FROM limit_learned")
    assert row == [("stated", "fake", key_fingerprint(KEY), 10)]


def test_the_key_never_reaches_the_log_only_its_fingerprint(tmp_path: Path) -> None:
    path = tmp_path / "log.duckdb"
    learn(path, 3)
    written = path.read_bytes()
    assert KEY.encode() not in written
    assert KEY[:24].encode() not in written
    assert key_fingerprint(KEY).encode() in written  # so the search above could have found it
    fingerprint = key_fingerprint(KEY)
    assert len(fingerprint) == 16 and int(fingerprint, 16) >= 0
    assert fingerprint == key_fingerprint(KEY) != key_fingerprint(KEY + "x")


def test_the_latest_learned_limit_wins_per_model_and_metric(tmp_path: Path) -> None:
    path = tmp_path / "log.duckdb"
    learn(path, 3)
    learn(path, 2, model="b")
    learn(path, 6)
    assert limits_at(open_database(path), key_fingerprint(KEY)) == {
        "a": {"rpm": 6},
        "b": {"rpm": 2},
    }


def test_a_custom_backend_without_a_key_is_the_keyless_identity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "log.duckdb"
    learn(path, 4, api_key=None)
    assert limits_at(open_database(path), key_fingerprint("")) == {"a": {"rpm": 4}}


def test_a_remembered_limit_expires_after_the_stated_time(tmp_path: Path) -> None:
    path = tmp_path / "log.duckdb"
    learn(path, 3)
    db = open_database(path)
    (learned_at,) = db.rows("SELECT epoch(learned_at) FROM limit_learned")[0]
    fingerprint = key_fingerprint(KEY)
    assert REMEMBER_LIMITS_S == 7 * 86_400
    still = learned_at + REMEMBER_LIMITS_S - 1
    gone = learned_at + REMEMBER_LIMITS_S + 1
    assert limits_at(db, fingerprint, now=still) == {"a": {"rpm": 3}}
    assert limits_at(db, fingerprint, now=gone) == {}
    frame = remembered_limits(db, key_fingerprint=fingerprint, now=still)
    assert (frame["expires_at"] - frame["learned_at"]).tolist() == [pd.Timedelta(days=7)]
    assert remembered_limits(db, key_fingerprint=fingerprint, now=gone).empty
    # An expired limit is not counted as forgotten, and the history keeps it.
    assert forget_limits(db, now=gone) == 0
    assert len(sg.CallStore(path).learned_limits()) == 1


def test_forgetting_a_model_stops_later_batches_starting_from_it(tmp_path: Path) -> None:
    path = tmp_path / "log.duckdb"
    learn(path, 3)
    learn(path, 2, model="b")
    log = sg.CallStore(path)
    fingerprint = key_fingerprint(KEY)
    assert log.forget_limits("a", "google", fingerprint) == 0  # another endpoint: nothing
    assert log.forget_limits("a", "fake", key_fingerprint("other")) == 0  # another key
    assert log.forget_limits("a", "fake", fingerprint) == 1
    assert limits_at(open_database(path), fingerprint) == {"b": {"rpm": 2}}
    assert log.forget_limits("a", "fake", fingerprint) == 0  # already forgotten
    # The batches' history still says what they learned; learning again remembers again.
    assert sorted(log.learned_limits()["model"]) == ["a", "b"]
    learn(path, 5)
    assert limits_at(open_database(path), fingerprint) == {"a": {"rpm": 5}, "b": {"rpm": 2}}
    assert log.forget_limits() == 2  # every model, endpoint and key
    assert log.limits().empty


def test_limits_shows_each_identitys_remembered_limits(tmp_path: Path) -> None:
    path = tmp_path / "log.duckdb"
    learn(path, 3)
    learn(path, 2, api_key="a second key")
    log = sg.CallStore(path)
    every = log.limits()
    assert list(every.columns) == [
        "model",
        "metric",
        "limit",
        "source",
        "configured",
        "learned_at",
        "expires_at",
        "endpoint",
        "fingerprint",
        "batch_id",
    ]
    assert sorted(zip(every["fingerprint"], every["limit"], strict=True)) == sorted(
        [(key_fingerprint(KEY), 3), (key_fingerprint("a second key"), 2)]
    )
    mine = log.limits("fake", key_fingerprint(KEY))
    assert mine[["model", "metric", "limit", "source", "configured"]].values.tolist() == [
        ["a", "rpm", 3, "stated", 10]
    ]
    assert log.limits("google").empty
    assert mine["batch_id"].iloc[0] == log.batches(limit=5)["batch_id"].iloc[-1]


def record(db: Database, *events: LimitLearned) -> None:
    """The recorder of a batch at ("fake", fingerprint "fp") given `events` and closed."""
    recorder = Recorder(db, BatchInfo("b1", "live", "fake", "use", True, "0", "0", "fp"))
    for event in events:
        recorder(event)
    recorder.close()


@pytest.mark.parametrize("source", ["stated", "message", "lowered", "recovered", "raised"])
def test_every_source_of_new_knowledge_is_recorded_with_the_identity(
    tmp_path: Path, source: LimitSource
) -> None:
    db = Database(tmp_path / "log.duckdb")
    record(db, LimitLearned("a", "tpm", 1000, 4000, source))
    assert db.rows("SELECT model, metric, learned, source, endpoint FROM limit_learned") == [
        ("a", "tpm", 4000, source, "fake")
    ]
    assert limits_at(db, "fp") == {"a": {"tpm": 4000}}


def test_a_limit_started_from_is_not_recorded_again(tmp_path: Path) -> None:
    db = Database(tmp_path / "log.duckdb")
    record(db, LimitLearned("a", "rpm", 5, 20, "remembered"))
    assert db.rows("SELECT count(*) FROM limit_learned") == [(0,)]


def test_purge_forgets_the_limits_a_deleted_batch_learned(tmp_path: Path) -> None:
    path = tmp_path / "log.duckdb"
    learn(path, 3)
    db = open_database(path)
    with db.write() as con:  # the batch ended a day ago; its limit is still remembered
        con.execute("UPDATE batch_log SET finished_at = finished_at - INTERVAL 1 DAY")
    assert limits_at(db, key_fingerprint(KEY)) == {"a": {"rpm": 3}}
    assert purge(db, older_than_days=0.5) == 1
    assert limits_at(db, key_fingerprint(KEY)) == {}


def test_limits_learned_before_identities_were_kept_are_history_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "log.duckdb"
    before_7 = [m for m in schema.MIGRATIONS if m.version < 7]
    monkeypatch.setattr("scriptgen_nb.store.database.MIGRATIONS", before_7)
    old = Database(path)
    with old.write() as con:
        con.execute("INSERT INTO limit_learned VALUES ('b0', 'a', 'rpm', 10, 4, now())")
    monkeypatch.setattr("scriptgen_nb.store.database.MIGRATIONS", schema.MIGRATIONS)
    db = Database(path)
    history = sg.CallStore(path).learned_limits()
    assert history[["model", "learned"]].values.tolist() == [["a", 4]]
    assert history["source"].isna().all() and history["fingerprint"].isna().all()
    assert remembered_limits(db).empty
    assert forget_limits(db) == 0


def test_the_newest_of_two_rows_learned_apart_is_the_one_in_force(tmp_path: Path) -> None:
    db = Database(tmp_path / "log.duckdb")
    now = time.time()
    remember(db, "a", 40, source="raised", endpoint="fake", learned_at=now - 60)
    remember(db, "a", 30, source="lowered", endpoint="fake", learned_at=now - 30)
    frame = remembered_limits(db, endpoint="fake", key_fingerprint="fp")
    assert frame[["limit", "source"]].values.tolist() == [[30, "lowered"]]


def test_a_batch_in_another_process_starts_from_the_limit_learned(tmp_path: Path) -> None:
    path = tmp_path / "log.duckdb"
    learn(path, 3)
    code = (
        "import sys; from scriptgen_nb import ModelSpec; "
        "from scriptgen_nb.store import open_database; "
        "from scriptgen_nb.store.session import quota_history; "
        "h = quota_history(open_database(sys.argv[1]), [ModelSpec('a', rpm=10)], 'fake', "
        "sys.argv[2]); print({m: (l.value, l.source) for m, l in h['a'].limits.items()})"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path), key_fingerprint(KEY)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == "{'rpm': (3, 'stated')}"
