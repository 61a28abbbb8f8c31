"""The call log: schema and migrations, what a batch writes, costs, cache, privacy, quota memory."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import scriptgen_nb as sg
from scriptgen_nb.emulator import Emulator, EmulatorConfig, ModelConfig
from scriptgen_nb.engine.backend import FakeBackend
from scriptgen_nb.engine.errors import BackendError, QuotaViolation
from scriptgen_nb.engine.values import GenerationRequest, Reply, Usage
from scriptgen_nb.store import Database, StoreError, keys, open_database, purge, schema
from scriptgen_nb.store.replay import stored_requests
from tests.forwarding_proxy import forwarding_proxy
from tests.google_errors import PER_DAY

PRICED = sg.ModelSpec("a", priority=1, input_usd_per_1m=2.0, output_usd_per_1m=10.0)
BACKUP = sg.ModelSpec("b", priority=2, input_usd_per_1m=1.0, output_usd_per_1m=4.0)


def answer(request: GenerationRequest, model: str) -> Reply:
    """A reply whose usage is easy to price by hand: 100 in, 40 out, 10 thoughts."""
    return Reply(f"answer to {request.prompt}", "STOP", Usage(100, 40, 10), model_version=model)


def run(
    prompts: list[str], db: Path, backend: FakeBackend | None = None, **options: Any
) -> sg.ResultList:
    options.setdefault("models", [PRICED])
    reqs = sg.create_batch_requests(prompts, operation="GENERATE_SCRIPT", project_id="p1")
    return sg.batch_generate(reqs, backend=backend or FakeBackend(default=answer), db=db, **options)


def count(db: Database, sql: str, *params: Any) -> Any:
    return db.rows(sql, params)[0][0]


def test_a_fresh_file_gets_every_migration_and_an_old_one_only_the_new(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "log.duckdb"
    db = Database(path)
    shipped = [m.version for m in schema.MIGRATIONS]
    assert shipped == sorted(set(shipped))  # in order, each once (6 is another branch's)
    assert sorted(v for (v,) in db.rows("SELECT version FROM schema_migration")) == shipped
    run(["kept"], path)
    later = shipped[-1] + 1
    extra = schema.Migration(later, "a later column", "ALTER TABLE result ADD COLUMN note VARCHAR")
    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, extra])
    monkeypatch.setattr("scriptgen_nb.store.database.MIGRATIONS", schema.MIGRATIONS)
    reopened = Database(path)
    versions = sorted(v for (v,) in reopened.rows("SELECT version FROM schema_migration"))
    assert versions == [*shipped, later]
    assert reopened.rows("SELECT text, note FROM result") == [("answer to kept", None)]
    assert reopened.migrate() == []  # nothing applied twice


def test_a_migration_numbered_below_the_files_latest_is_still_applied_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Branches number their migrations apart (one adds 7 while another adds 6): a file that got
    # 7 first must still get 6 when the branches meet, and neither twice.
    path = tmp_path / "log.duckdb"
    without_6 = [m for m in schema.MIGRATIONS if m.version != 6]
    with monkeypatch.context() as branch:
        branch.setattr("scriptgen_nb.store.database.MIGRATIONS", without_6)
        Database(path)
    reopened = Database(path)
    assert reopened.migrate() == []
    applied = reopened.rows("SELECT version FROM schema_migration ORDER BY applied_at, version")
    assert [v for (v,) in applied][-1] == 6
    assert sorted(v for (v,) in applied) == sorted(m.version for m in schema.MIGRATIONS)
    assert reopened.rows("SELECT count(cached_tokens) FROM result") == [(0,)]


def test_a_batch_writes_its_requests_attempts_results_and_row(tmp_path: Path) -> None:
    path = tmp_path / "log.duckdb"
    backend = FakeBackend(default=answer)
    backend.enqueue("a", BackendError("server_error", "overloaded", 503, retry_delay_s=0.01))
    results = run(["one", "two", "three"], path, backend)
    db = Database(path)
    (batch_id, status, req_count, ok, failed, not_run, op, project, models, used) = db.rows(
        "SELECT batch_id, status, request_count, success_count, failure_count, not_run_count, "
        "operation, project_id, models, models_used FROM batch_log"
    )[0]
    assert (status, req_count, ok, failed, not_run) == ("finished", 3, 3, 0, 0)
    assert (op, project, models, used) == ("GENERATE_SCRIPT", "p1", ["a"], ["a"])
    calls = db.rows(
        "SELECT request_id, attempt, status, http_status, error_kind, model_version "
        "FROM ai_api_call ORDER BY request_id, attempt"
    )
    assert len(calls) == sum(r.attempts for r in results) == 4
    assert ("ERROR", 503, "server_error", None) in [c[2:] for c in calls]
    assert count(db, "SELECT count(*) FROM request WHERE batch_id = ?", batch_id) == 3
    stored = db.rows("SELECT request_id, text, success, cached FROM result ORDER BY request_index")
    assert stored == [(r.id, r.text, True, False) for r in results]


def test_costs_match_hand_computed_figures_and_the_results(tmp_path: Path) -> None:
    path = tmp_path / "log.duckdb"
    results = run(["x", "y"], path)
    # 100 input at $2/M, 40 output + 10 thoughts (billed as output) at $10/M, per request.
    per_request = (100 * 2.0 + 50 * 10.0) / 1e6
    assert [r.cost_usd for r in results] == pytest.approx([per_request, per_request])
    db = Database(path)
    assert count(db, "SELECT sum(estimated_cost) FROM ai_api_call") == pytest.approx(
        2 * per_request
    )
    assert count(db, "SELECT estimated_cost FROM batch_log") == pytest.approx(2 * per_request)
    assert count(db, "SELECT sum(thought_tokens) FROM result") == 20


def test_cache_use_serves_earlier_answers_without_calling(tmp_path: Path) -> None:
    path = tmp_path / "log.duckdb"
    first = run(["alpha", "beta"], path)
    again = FakeBackend(default=answer)
    second = run(["alpha", "beta", "gamma"], path, again)
    assert [r.cached for r in second] == [True, True, False]
    assert [r.text for r in second[:2]] == [r.text for r in first]
    assert [rid for _, rid in again.calls] == ["2"]
    assert second[0].cost_usd == 0.0  # nothing paid this time
    db = Database(path)
    assert count(db, "SELECT cached_count FROM batch_log ORDER BY started_at DESC LIMIT 1") == 2


def test_cache_refresh_asks_again_and_off_neither_reads_nor_writes(tmp_path: Path) -> None:
    path = tmp_path / "log.duckdb"
    run(["alpha"], path)
    refreshed = FakeBackend(default=answer)
    assert not run(["alpha"], path, refreshed, cache="refresh")[0].cached
    assert len(refreshed.calls) == 1
    off_path = tmp_path / "off.duckdb"
    run(["beta"], off_path, cache="off")
    later = FakeBackend(default=answer)
    assert not run(["beta"], off_path, later)[0].cached  # "off" left nothing to serve
    assert len(later.calls) == 1


def test_the_cache_key_covers_settings_schema_ladder_and_endpoint(tmp_path: Path) -> None:
    path = tmp_path / "log.duckdb"
    run(["same words"], path)

    def fresh(**options: Any) -> bool:
        backend = FakeBackend(default=answer)
        run(["same words"], path, backend, **options)
        return len(backend.calls) == 1

    class Shape(BaseModel):
        words: str

    assert fresh(models=[PRICED, BACKUP])  # another ladder
    reqs = sg.create_batch_requests(
        ["same words"], operation="GENERATE_SCRIPT", project_id="p1", temperature=0.1
    )
    backend = FakeBackend(default=answer)
    sg.batch_generate(reqs, backend=backend, db=path, models=[PRICED])
    assert len(backend.calls) == 1  # another temperature
    schema_reqs = sg.create_batch_requests(
        ["same words"], operation="GENERATE_SCRIPT", project_id="p1", schema=Shape
    )
    backend = FakeBackend(default=lambda r, m: Reply('{"words": "w"}', "STOP", Usage(1, 1)))
    assert sg.batch_generate(schema_reqs, backend=backend, db=path, models=[PRICED])[0].success
    assert len(backend.calls) == 1  # a schema


def test_emulator_answers_are_never_served_to_a_real_endpoint(tmp_path: Path) -> None:
    """A proxy in front of the service is a real endpoint, though on this machine: what an
    emulator answered is not served there, and its answer is not marked simulated."""
    path = tmp_path / "log.duckdb"
    config = EmulatorConfig(api_keys=("k",), latency_scale=0.0, models={"a": ModelConfig()})
    prompts = sg.create_batch_requests(["hello"])
    with Emulator(config) as emulator:
        simulated = sg.batch_generate(
            prompts, models=[PRICED], base_url=emulator.base_url, api_key="k", db=path
        )
        with forwarding_proxy(emulator.base_url) as real:
            again = sg.batch_generate(prompts, models=[PRICED], base_url=real, api_key="k", db=path)
        assert emulator.counters()["models"]["a"]["requests"] == 2
    assert simulated[0].simulated and not simulated[0].cached
    assert again[0].success and not again[0].cached and not again[0].simulated
    assert sg.CallStore(path).batches()["simulated"].tolist() == [False, True]


def test_a_rerun_on_another_emulator_is_served_from_the_cache(tmp_path: Path) -> None:
    """Every emulator is one source of answers, whatever its port (a `--emulator` re-run gets a
    new one); what was learned about quotas stays with each emulator's own address."""
    path = tmp_path / "log.duckdb"
    config = EmulatorConfig(api_keys=("k",), latency_scale=0.0, models={"a": ModelConfig()})
    prompts = sg.create_batch_requests(["hello"])
    with Emulator(config) as first:
        answered = sg.batch_generate(
            prompts, models=[PRICED], base_url=first.base_url, api_key="k", db=path
        )
        first_url = first.base_url
    with Emulator(config) as second:
        again = sg.batch_generate(
            prompts, models=[PRICED], base_url=second.base_url, api_key="k", db=path
        )
        assert second.counters()["models"]["a"]["requests"] == 0
        second_url = second.base_url
    assert again[0].cached and again[0].simulated and again[0].text == answered[0].text
    endpoints = sg.CallStore(path).batches()["endpoint"].tolist()
    assert endpoints == [second_url, first_url]  # each batch's quota identity


def test_without_stored_text_only_hashes_and_figures_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "private.duckdb"
    secret_prompt = "the recipe for grandmother's secret soup"
    results = run([secret_prompt], path, store_text=False)
    db = Database(path)
    prompt, prompt_hash = db.rows("SELECT prompt, prompt_hash FROM request")[0]
    text, text_hash, tokens = db.rows("SELECT text, text_hash, output_tokens FROM result")[0]
    assert prompt is None and text is None and len(prompt_hash) == len(text_hash) == 64
    assert tokens == 40
    del db
    assert secret_prompt.encode() not in path.read_bytes()
    assert results[0].text and results[0].text.encode() not in path.read_bytes()


def test_purge_removes_old_finished_batches_only(tmp_path: Path) -> None:
    path = tmp_path / "log.duckdb"
    run(["old"], path)
    run(["new"], path)
    db = Database(path)
    with db.write() as con:
        con.execute(
            "UPDATE batch_log SET finished_at = finished_at - INTERVAL 40 DAY WHERE batch_id = "
            "(SELECT batch_id FROM result WHERE text = 'answer to old')"
        )
    with db.write() as con:  # the old batch also learned a limit
        con.execute(
            "INSERT INTO limit_learned (batch_id, model, metric, configured, learned, learned_at) "
            "SELECT batch_id, 'm', 'rpm', 10, 5, now() FROM result "
            "WHERE text = 'answer to old'"
        )
    assert purge(db, older_than_days=30) == 1
    assert [t for (t,) in db.rows("SELECT text FROM result")] == ["answer to new"]
    assert count(db, "SELECT count(*) FROM ai_api_call") == 1
    assert count(db, "SELECT count(*) FROM limit_learned") == 0
    with pytest.raises(sg.ConfigurationError):
        purge(db, older_than_days=-1)


def test_quota_used_by_one_batch_paces_the_next(tmp_path: Path) -> None:
    path = tmp_path / "log.duckdb"
    tight = sg.ModelSpec("a", priority=1, rpm=3, minute_s=2.0)
    run(["1", "2", "3"], path, models=[tight])
    started = time.time()
    run(["4", "5"], path, models=[tight])
    db = Database(path)
    first = count(db, "SELECT min(epoch(created_at)) FROM ai_api_call")
    later = count(
        db,
        "SELECT min(epoch(created_at)) FROM ai_api_call c JOIN result r "
        "USING (batch_id, request_id) WHERE r.text = 'answer to 4'",
    )
    assert later >= first + 2.0  # the second batch waited for the first one's window
    assert time.time() - started < 10


def test_a_model_out_of_daily_quota_stays_out_in_the_next_batch(tmp_path: Path) -> None:
    path = tmp_path / "log.duckdb"
    exhausted = BackendError(
        "quota_exhausted", "daily quota", 429, 3600.0, (QuotaViolation(PER_DAY, "day", 20),)
    )
    backend = FakeBackend(default=answer)
    backend.enqueue("a", exhausted)
    assert {r.model for r in run(["1"], path, backend, models=[PRICED, BACKUP])} == {"b"}
    later = FakeBackend(default=answer)
    run(["2", "3"], path, later, models=[PRICED, BACKUP])
    assert {model for model, _ in later.calls} == {"b"}  # no probe of "a" before its reset


def test_requests_are_stored_so_another_process_can_rebuild_them(tmp_path: Path) -> None:
    class Scene(BaseModel):
        heading: str

    path = tmp_path / "log.duckdb"
    reqs = sg.create_batch_requests(
        [{"id": "c1", "prompt": "scene one", "metadata": {"chapter": 1, "template_hash": "t9"}}],
        system="be vivid",
        schema=Scene,
        temperature=0.4,
        max_output_tokens=300,
    )
    backend = FakeBackend(default=lambda r, m: Reply('{"heading": "h"}', "STOP", Usage(1, 1)))
    sg.batch_generate(reqs, backend=backend, db=path, models=[PRICED])
    row = Database(path).frame("SELECT * FROM request").iloc[0]
    assert (row.prompt, row.system, row.template_hash) == ("scene one", "be vivid", "t9")
    assert row.schema_name.endswith("Scene") and '"heading"' in row.response_schema
    assert '"temperature":0.4' in row.config and '"chapter":1' in row.config


def test_an_unwritable_log_path_fails_before_any_call(tmp_path: Path) -> None:
    blocker = tmp_path / "plain-file"
    blocker.write_text("not a folder")
    backend = FakeBackend(default=answer)
    with pytest.raises(sg.ConfigurationError, match="is a file, not a folder"):
        run(["x"], blocker / "log.duckdb", backend)
    assert backend.calls == []


def test_the_default_log_is_the_environments_file_and_memory_works(
    call_log_in_tmp: Path,
) -> None:
    run(["to the default"], None)  # type: ignore[arg-type]
    assert count(open_database(), "SELECT count(*) FROM result") == 1
    assert open_database().path == str(call_log_in_tmp)
    memory = Database(":memory:")
    results = sg.batch_generate(
        sg.create_batch_requests(["m"]),
        backend=FakeBackend(default=answer),
        db=memory,
        models=[PRICED],
    )
    assert results[0].success and count(memory, "SELECT count(*) FROM result") == 1


def test_the_api_key_never_reaches_the_database_file(tmp_path: Path) -> None:
    path = tmp_path / "log.duckdb"
    secret = "AIzaSy-never-store-me-0123456789"
    config = EmulatorConfig(api_keys=(secret,), latency_scale=0.0, models={"a": ModelConfig()})
    with Emulator(config) as emu:
        results = sg.batch_generate(
            sg.create_batch_requests(["p1", "p2"]),
            models=[PRICED],
            base_url=emu.base_url,
            api_key=secret,
            db=path,
        )
    assert all(r.success for r in results)
    assert secret.encode() not in path.read_bytes()


class Caption(BaseModel):
    caption: str


def test_failed_and_unfinished_requests_are_rebuilt_from_the_log(tmp_path: Path) -> None:
    path = tmp_path / "log.duckdb"
    backend = FakeBackend(default=lambda r, m: Reply('{"caption": "c"}', "STOP", Usage(1, 1)))
    backend.enqueue("a", BackendError("invalid_request", "bad", 400))
    reqs = sg.create_batch_requests(
        [{"id": f"r{i}", "prompt": f"p{i}", "metadata": {"n": i}} for i in range(3)],
        schema=Caption,
        temperature=0.3,
        stop_sequences=["END"],
    )
    results = sg.batch_generate(reqs, backend=backend, db=path, models=[PRICED], max_concurrency=1)
    failed = [r.id for r in results if not r.success]
    db = Database(path)
    batch_id = count(db, "SELECT batch_id FROM batch_log")
    rebuilt = stored_requests(Database(path), batch_id)
    assert [r.id for r in rebuilt] == failed == ["r0"]
    assert rebuilt[0] == reqs[0]  # prompt, settings, metadata and the Pydantic class itself
    assert [r.id for r in stored_requests(db, batch_id, ("succeeded",))] == ["r1", "r2"]
    with pytest.raises(sg.ConfigurationError, match="No batch 'nope'"):
        stored_requests(db, "nope")


def test_a_schema_logged_under_its_former_module_path_still_replays(tmp_path: Path) -> None:
    """The seed's workflow moved into `scriptgen_nb.projects`; logs written before name its
    schemas `scriptgen_nb.scripts:Script`, and a retry must rebuild them as that class."""
    path = tmp_path / "log.duckdb"
    backend = FakeBackend()
    backend.enqueue(PRICED.name, BackendError("invalid_request", "bad", 400))
    reqs = sg.create_batch_requests([{"id": "r0", "prompt": "p"}], schema=sg.Script)
    sg.batch_generate(reqs, backend=backend, db=path, models=[PRICED])
    db = Database(path)
    with db.write() as con:  # as a log from before the move names it
        con.execute("UPDATE request SET schema_name = 'scriptgen_nb.scripts:Script'")
    batch_id = count(db, "SELECT batch_id FROM batch_log")
    assert stored_requests(db, batch_id)[0].schema is sg.Script


def test_the_call_store_answers_in_dataframes(tmp_path: Path) -> None:
    path = tmp_path / "log.duckdb"
    backend = FakeBackend(default=answer)
    backend.enqueue("a", BackendError("invalid_request", "bad field", 400))
    results = run(["one", "two"], path, backend, max_concurrency=1)
    log = sg.CallStore(path)
    usage = log.usage_report()
    assert usage[["operation", "model", "requests", "successes"]].values.tolist() == [
        ["GENERATE_SCRIPT", "a", 2, 1]
    ]
    assert usage["cost"].iloc[0] == pytest.approx(sum(r.cost_usd for r in results))
    batch_id = log.batches()["batch_id"].iloc[0]
    assert log.results(batch_id)["success"].tolist() == [False, True]
    assert log.errors(batch_id)["error_kind"].tolist() == ["invalid_request"]
    assert [r.id for r in log.failed_requests(batch_id)] == ["0"]
    assert log.sql("SELECT count(*) AS n FROM result")["n"].iloc[0] == 2
    assert repr(log) == f"CallStore({str(path)!r})"


def test_threads_writing_and_reading_one_file_do_not_trip_duckdb(tmp_path: Path) -> None:
    """The recorder's bulk inserts and the session's lookups run on different threads."""
    db = Database(tmp_path / "log.duckdb")
    failures: list[BaseException] = []

    def write(n: int) -> None:
        for i in range(40):
            try:
                with db.write() as con:
                    row = {
                        "batch_id": "b",
                        "request_id": f"{n}-{i}",
                        "request_index": i,
                        "cache_key": "",
                        "prompt_hash": "h",
                    }
                    Database.insert(con, "request", [row])
            except Exception as exc:
                failures.append(exc)

    def read() -> None:
        for _ in range(60):
            try:
                db.rows("SELECT count(*) FROM request")
            except Exception as exc:
                failures.append(exc)

    workers = [
        threading.Thread(target=write, args=(1,)),
        threading.Thread(target=read),
        threading.Thread(target=read),
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert failures == []
    assert count(db, "SELECT count(*) FROM request") == 40


class _HeldWrites(Database):
    """A log whose writes wait until the test lets them through (a disk that fell behind)."""

    def __init__(self, path: Path) -> None:
        self.gate = threading.Event()
        self.gate.set()
        super().__init__(path)

    def write(self, **options: Any) -> Any:
        self.gate.wait()
        return super().write(**options)


def test_a_log_that_falls_behind_slows_the_batch_instead_of_growing_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scriptgen_nb.engine.values import BatchStarted
    from scriptgen_nb.store import recorder as recorder_module

    monkeypatch.setattr(recorder_module, "MAX_BUFFERED_ROWS", 5)
    db = _HeldWrites(tmp_path / "log.duckdb")
    info = recorder_module.BatchInfo("b1", "live", "fake", "use", True, "0", "0", "fp")
    rec = recorder_module.Recorder(db, info, flush_s=0.05)
    rec(BatchStarted("b1", 12, ("m",), "auto", 4, time.time()))
    db.gate.clear()  # the disk stalls
    taken: list[int] = []

    def take_up() -> None:
        for i in range(12):
            rec.record_request(i, GenerationRequest(f"r{i}", f"prompt {i}"), f"key{i}")
            taken.append(i)

    worker = threading.Thread(target=take_up)
    worker.start()
    worker.join(timeout=0.5)
    # Waiting, not buffering on: at most the bound, plus the rows the stalled flush holds.
    assert worker.is_alive() and 5 <= len(taken) <= 10
    db.gate.set()  # the disk catches up
    worker.join(timeout=10)
    assert not worker.is_alive() and taken == list(range(12))
    rec.close()
    assert count(db, "SELECT count(*) FROM request") == 12


def test_a_large_insert_goes_in_slices_and_every_row_lands_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scriptgen_nb.store import database

    monkeypatch.setattr(database, "INSERT_ROWS", 3)
    db = Database(tmp_path / "log.duckdb")
    rows = [
        {
            "batch_id": "b",
            "model": "m",
            "metric": "rpm",
            "configured": 10,
            "learned": i,
            "learned_at": 1_700_000_000.0 + i,
        }
        for i in range(10)
    ]
    with db.write() as con:
        Database.insert(con, "limit_learned", rows, frozenset({"learned_at"}))
    stored = db.rows("SELECT learned, epoch(learned_at) FROM limit_learned ORDER BY learned")
    assert stored == [(i, 1_700_000_000.0 + i) for i in range(10)]


def test_rows_are_written_every_flush_and_the_batch_row_once_a_heartbeat(
    tmp_path: Path,
) -> None:
    from scriptgen_nb.engine.values import BatchStarted, RequestFinished, Result
    from scriptgen_nb.store import recorder as recorder_module

    db = Database(tmp_path / "log.duckdb")
    info = recorder_module.BatchInfo("b1", "live", "fake", "use", True, "0", "0", "fp")
    rec = recorder_module.Recorder(db, info, flush_s=3600, heartbeat_s=3600)
    rec(BatchStarted("b1", 3, ("m",), "auto", 4, time.time()))
    rec.flush()  # the first flush beats: the batch row is refreshed (heartbeat) at once

    def finish(i: int) -> None:
        rec.record_request(i, GenerationRequest(f"r{i}", f"prompt {i}"), f"key{i}")
        rec(RequestFinished(Result(f"r{i}", i, True, text=f"answer {i}"), i + 1, 3))

    def batch_row() -> tuple[Any, ...]:
        return db.rows("SELECT success_count, status FROM batch_log WHERE batch_id = 'b1'")[0]

    finish(0)
    finish(1)
    rec.flush()
    # The rows are in the log at once; the batch's counts wait for the next heartbeat.
    assert count(db, "SELECT count(*) FROM result WHERE batch_id = 'b1'") == 2
    assert batch_row() == (0, "running")
    finish(2)
    rec.close()  # the final flush always refreshes the batch's row
    assert count(db, "SELECT count(*) FROM result WHERE batch_id = 'b1'") == 3
    assert batch_row() == (3, "failed")  # closed without a BatchFinished event


def test_migration_5_keeps_every_row_and_drops_only_the_primary_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "log.duckdb"
    # A log as the version before migration 5 wrote it, with the later migrations' columns
    # (which today's recorder writes); migration 5 then comes last.
    before_5 = [m for m in schema.MIGRATIONS if m.version != 5]
    monkeypatch.setattr("scriptgen_nb.store.database.MIGRATIONS", before_5)
    with monkeypatch.context() as that_version:  # it remembered no limits (migration 7)
        that_version.setattr("scriptgen_nb.wiring.quota_history", lambda *_: {})
        run(["one", "two"], path)  # a log written by the version before migration 5
    old = Database(path)
    assert (
        old.rows(
            "SELECT count(*) FROM duckdb_constraints() WHERE constraint_type = 'PRIMARY KEY' "
            "AND table_name IN ('request', 'ai_api_call', 'result')"
        )[0][0]
        == 3
    )
    monkeypatch.setattr("scriptgen_nb.store.database.MIGRATIONS", schema.MIGRATIONS)
    db = Database(path)
    assert (
        db.rows("SELECT max(version) FROM schema_migration")[0][0] == schema.MIGRATIONS[-1].version
    )
    assert sorted(t for (t,) in db.rows("SELECT text FROM result")) == [
        "answer to one",
        "answer to two",
    ]
    assert count(db, "SELECT count(*) FROM request") == 2
    assert count(db, "SELECT count(*) FROM ai_api_call") == 2
    kinds = db.rows(
        "SELECT table_name, constraint_type, count(*) FROM duckdb_constraints() "
        "WHERE table_name IN ('request', 'ai_api_call', 'result') GROUP BY ALL ORDER BY ALL"
    )
    assert kinds == [
        ("ai_api_call", "NOT NULL", 3),
        ("request", "NOT NULL", 5),
        ("result", "NOT NULL", 6),
    ]
    assert [
        i for (i,) in db.rows("SELECT index_name FROM duckdb_indexes() WHERE table_name = 'result'")
    ] == ["result_by_cache_key"]
    run(["three"], path)  # and the log goes on being written
    assert count(db, "SELECT count(*) FROM result") == 3


def test_the_thinking_level_is_part_of_the_cache_key_and_absent_when_unset() -> None:
    plain = sg.GenerationRequest("r", "Write about tides")
    low = sg.GenerationRequest("r", "Write about tides", thinking_level="low")
    high = sg.GenerationRequest("r", "Write about tides", thinking_level="HIGH")
    keys_of = {keys.content_key(r, ["m"], "google") for r in (plain, low, high)}
    assert len(keys_of) == 3
    assert "thinking_level" not in keys.generation_settings(plain)  # old keys stay as they were
    assert keys.generation_settings(high)["thinking_level"] == "high"


def test_a_rebuilt_request_keeps_its_thinking_level(tmp_path: Path) -> None:
    path = tmp_path / "log.duckdb"
    reqs = sg.create_batch_requests(["a", "b"], thinking_level="medium")
    backend = FakeBackend(default=answer)
    backend.enqueue("a", BackendError("invalid_request", "no", 400))
    sg.batch_generate(reqs, backend=backend, db=path, models=[PRICED])
    log = sg.CallStore(path)
    batch_id = log.batches()["batch_id"].iloc[0]
    (rebuilt,) = log.failed_requests(batch_id)
    assert rebuilt.thinking_level == "medium"


def test_a_failed_insert_reports_its_own_error_not_the_aborted_transaction(tmp_path: Path) -> None:
    db = Database(tmp_path / "log.duckdb")
    with pytest.raises(StoreError) as caught, db.write() as con:
        con.execute("CREATE TABLE strict (x INTEGER NOT NULL)")
        Database.insert(con, "strict", [{"x": None}])
    assert "NOT NULL" in str(caught.value)
    assert "aborted" not in str(caught.value)


# A statement that runs for seconds unless interrupted (DuckDB checks for signals as it goes).
# Bounded: a worker thread already scanning finishes its task before the cancel completes, so an
# endless range would never end once a scan went to a worker (seen in a long test session).
LONG_QUERY = "SELECT count(*) FROM range(2000000000) t(a) WHERE a % 7 = 3"


def _write_for_long(db: Database) -> None:
    """A unit of writing whose statement runs long (the frame `interrupt_when_in` looks for)."""
    with db.write() as con:
        con.execute("INSERT INTO schema_migration VALUES (999, 'interrupted', current_timestamp)")
        con.execute(LONG_QUERY).fetchall()


def interrupt_when_in(function: str) -> tuple[threading.Thread, list[str]]:
    """A thread that raises SIGUSR1 in this process (handled as `cli/signals.py` handles SIGTERM:
    by raising KeyboardInterrupt) once the main thread has stayed inside one call of `function`
    for a fifth of a second: its Python code takes microseconds, so it is then inside the DuckDB
    statement it runs. Watched, not timed: no sleep decides when. The list it returns names the
    function when it never got there within 30 s (the signal is sent then anyway, so the
    statement ends and the test fails instead of running on)."""
    main = threading.main_thread().ident
    assert main is not None

    def send() -> None:
        deadline = time.monotonic() + 30
        entered: tuple[Any, float] | None = None  # the frame seen, since when
        while time.monotonic() < deadline:
            frame = sys._current_frames().get(main)
            if frame is None or frame.f_code.co_name != function:
                entered = None
            elif entered is None or entered[0] is not frame:
                entered = (frame, time.monotonic())
            elif time.monotonic() - entered[1] > 0.2:
                os.kill(os.getpid(), signal.SIGUSR1)
                return
            time.sleep(0.005)
        os.kill(os.getpid(), signal.SIGUSR1)  # never seen there: end the statement anyway
        missed.append(function)

    missed: list[str] = []
    thread = threading.Thread(target=send, name="interrupter", daemon=True)
    thread.start()
    return thread, missed


@pytest.mark.parametrize("unit", ["rows", "_user_frame", "_write_for_long"])
def test_an_interrupt_during_a_statement_is_a_keyboard_interrupt_and_the_log_stays_usable(
    unit: str, tmp_path: Path
) -> None:
    """Before: DuckDB turned a KeyboardInterrupt raised while a statement ran (Ctrl-C, or SIGTERM
    as `scriptgen` raises it) into `RuntimeError: Query interrupted`, with no context; a command
    then exited 1 instead of 143 (`scriptgen jobs resume`'s SIGTERM test was flaky so). Now
    every interrupt comes out of the store as the KeyboardInterrupt it was."""
    db = Database(tmp_path / "log.duckdb")
    runs: dict[str, Any] = {
        "rows": lambda: db.rows(LONG_QUERY),
        "_user_frame": lambda: db.sandboxed_select(LONG_QUERY),
        "_write_for_long": lambda: _write_for_long(db),
    }

    def as_ctrl_c(number: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGUSR1, as_ctrl_c)
    try:
        sender, missed = interrupt_when_in(unit)
        with pytest.raises(KeyboardInterrupt) as raised:
            runs[unit]()
        sender.join()
        assert missed == []
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert "Query interrupted" in repr(raised.value.__cause__)  # DuckDB's, given back
    assert db.rows("SELECT count(*) FROM schema_migration WHERE version = 999") == [(0,)]
    assert db.sandboxed_select("SELECT 1 AS one")["one"].tolist() == [1]  # usable afterwards
