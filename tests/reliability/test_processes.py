"""The call log with real processes: kill -9 then resume, two writers on one file, Ctrl-C,
SIGTERM and SIGHUP to `scriptgen run`.

Each batch runs in a child process (a small script written into the test's tmp folder) against
an emulator running in this process, whose counters are the outside view: a kill or a signal
is sent when the emulator shows requests in flight (never after a fixed sleep), and what the
children sent is checked against what the log says. The database file is read from here while
the children write it; `Database` retries on the file lock, as any second process must.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import scriptgen_nb as sg
from scriptgen_nb.emulator import Emulator, EmulatorConfig, ModelConfig
from scriptgen_nb.emulator.config import BatchConfig
from scriptgen_nb.store import queries
from scriptgen_nb.store.database import Database
from tests.reliability.children import (
    KEY,
    POLL_S,
    Child,
    emulator,
    model_counters,
    prompts,
    spec,
    wait_until,
)
from tests.test_cli_run import jsonl

pytestmark = pytest.mark.integration


def wait_for_answers_with_more_in_flight(emu: Emulator, model: str, child: Child) -> None:
    """Wait until `child` has had some answers and still has requests in flight. The emulator
    counts an answer before its latency has passed, so "answered" is read from the requests
    seen: with 4 in flight, the 10th is sent only once 6 have ended."""
    wait_until(
        lambda: (
            model_counters(emu, model)["requests"] >= 10
            and model_counters(emu, model)["in_flight"] > 0
        ),
        20.0,
        "answers given with requests in flight",
        child,
    )


def batch_of(db: Database, pid: int) -> dict[str, Any]:
    """The batch_log row of the batch run by process `pid` (exactly one)."""
    frame = db.frame("SELECT * FROM batch_log WHERE pid = ?", [pid])
    assert len(frame) == 1, f"expected one batch for pid {pid}, found {len(frame)}"
    row: dict[str, Any] = frame.iloc[0].to_dict()
    return row


def pd_isna(value: Any) -> bool:
    return bool(pd.isna(value))


def count(db: Database, sql: str, params: list[Any] | None = None) -> int:
    return int(db.rows(sql, params or [])[0][0])


def assert_rows_whole(db: Database) -> None:
    """No half-written rows anywhere in the file: required fields set, nothing orphaned."""
    broken_calls = db.frame(
        "SELECT * FROM ai_api_call WHERE call_id IS NULL OR batch_id IS NULL "
        "OR request_id IS NULL OR request_index IS NULL OR model IS NULL OR attempt IS NULL "
        "OR status NOT IN ('SUCCESS', 'ERROR') OR status IS NULL "
        # An attempt cut off in flight (not_run) has no HTTP status: it never got an answer.
        "OR (http_status IS NULL AND error_kind IS DISTINCT FROM 'not_run') "
        "OR created_at IS NULL OR finished_at IS NULL OR latency_ms IS NULL "
        "OR (status = 'SUCCESS' AND (input_tokens IS NULL OR output_tokens IS NULL "
        "OR estimated_cost IS NULL OR estimated_cost <= 0))"
    )
    assert broken_calls.empty, broken_calls.to_dict("records")
    broken_results = db.frame(
        "SELECT * FROM result WHERE cache_key = '' OR finished_at IS NULL "
        "OR (success AND (text IS NULL OR text_hash IS NULL OR model IS NULL))"
    )
    assert broken_results.empty, broken_results.to_dict("records")
    duplicates = db.rows(
        "SELECT batch_id, request_id, count(*) FROM result GROUP BY ALL HAVING count(*) > 1"
    )
    assert duplicates == []
    orphans = db.rows(
        "SELECT 'result', batch_id, request_id FROM result "
        "ANTI JOIN request USING (batch_id, request_id) UNION ALL "
        "SELECT 'ai_api_call', batch_id, request_id FROM ai_api_call "
        "ANTI JOIN request USING (batch_id, request_id) UNION ALL "
        "SELECT 'batch', batch_id, NULL FROM request ANTI JOIN batch_log USING (batch_id)"
    )
    assert orphans == []
    # A recorded answer comes with its attempt: a successful result without a SUCCESS call
    # row would be a lost row.
    unlogged = db.rows(
        "SELECT r.batch_id, r.request_id FROM result r WHERE r.success AND NOT r.cached "
        "AND NOT EXISTS (SELECT 1 FROM ai_api_call c WHERE c.batch_id = r.batch_id "
        "AND c.request_id = r.request_id AND c.status = 'SUCCESS')"
    )
    assert unlogged == []


def test_kill_9_mid_batch_then_the_rerun_resumes_without_sending_recorded_requests(
    tmp_path: Path, start_child: Callable[..., Child]
) -> None:
    db_path = tmp_path / "log.duckdb"
    texts = prompts("resume", 60)
    model = "steady"
    with emulator(steady=ModelConfig(latency_base_s=0.3, latency_jitter_s=0.2)) as emu:
        db = Database(db_path)  # created here or by the child: both migrate, under the lock
        child = start_child(emu, db_path, model, texts, 6)

        def recorded_successes() -> int:
            return count(db, "SELECT count(*) FROM result WHERE success")

        # Kill only once answers are on disk AND the emulator holds requests in flight.
        wait_until(
            lambda: recorded_successes() >= 6 and model_counters(emu, model)["in_flight"] > 0,
            20.0,
            "recorded results with requests in flight",
            child,
        )
        os.kill(child.proc.pid, signal.SIGKILL)
        assert child.proc.wait(timeout=5) == -signal.SIGKILL
        # Requests already on the wire still reach the emulator; let them all land there.
        wait_until(lambda: model_counters(emu, model)["in_flight"] == 0, 5.0, "in-flight drain")
        sent_before = {text: emu.attempts_for(text) for text in texts}
        requests_before = model_counters(emu, model)["requests"]

        killed = batch_of(db, child.proc.pid)
        recorded = {
            row[0]
            for row in db.rows(
                "SELECT request_id FROM result WHERE batch_id = ? AND success",
                [killed["batch_id"]],
            )
        }
        assert 6 <= len(recorded) < 60, "the kill must land mid-batch"
        assert all(sent_before[texts[int(i)]] == 1 for i in recorded)

        started = time.monotonic()
        results = sg.batch_generate(
            sg.create_batch_requests(texts),
            models=[spec(model)],
            base_url=emu.base_url,
            api_key=KEY,
            db=db_path,
            max_concurrency=6,
        )
        rerun_s = time.monotonic() - started
        sent_after = {text: emu.attempts_for(text) for text in texts}
        requests_after = model_counters(emu, model)["requests"]

    # Complete, in input order, each request once; the recorded ones served from the log.
    assert [r.id for r in results] == [str(i) for i in range(60)]
    assert all(r.success and r.text for r in results)
    assert {r.id for r in results if r.cached} == recorded
    # Not sent again: the emulator never saw the recorded prompts a second time ...
    assert [t for i, t in enumerate(texts) if str(i) in recorded and sent_after[t] != 1] == []
    # ... and the re-run sent each of the others exactly once, nothing more.
    others = [t for i, t in enumerate(texts) if str(i) not in recorded]
    assert [t for t in others if sent_after[t] != sent_before[t] + 1] == []
    assert requests_after - requests_before == len(others)
    assert rerun_s < 15.0

    rerun = db.frame("SELECT * FROM batch_log WHERE batch_id <> ?", [killed["batch_id"]])
    assert len(rerun) == 1
    rerun_row = rerun.iloc[0].to_dict()
    rerun_id = rerun_row["batch_id"]
    assert rerun_row["status"] == "finished"
    assert rerun_row["request_count"] == rerun_row["success_count"] == 60
    assert rerun_row["cached_count"] == len(recorded)
    assert rerun_row["pid"] == os.getpid()

    assert_rows_whole(db)
    rerun_results = db.frame(
        "SELECT request_id, request_index, cached FROM result WHERE batch_id = ? "
        "ORDER BY request_index",
        [rerun_id],
    )
    assert rerun_results["request_index"].tolist() == list(range(60))
    assert set(rerun_results.loc[rerun_results["cached"], "request_id"]) == recorded
    called = {
        row[0]
        for row in db.rows("SELECT request_id FROM ai_api_call WHERE batch_id = ?", [rerun_id])
    }
    assert called == {str(i) for i in range(60)} - recorded
    # What the log says was spent is what the results report (cached answers cost nothing).
    spent = db.rows(
        "SELECT sum(estimated_cost), count(*) FROM ai_api_call WHERE batch_id = ?", [rerun_id]
    )[0]
    assert spent[1] == len(others)
    assert spent[0] == pytest.approx(sum(r.cost_usd for r in results), rel=1e-9)
    assert rerun_row["estimated_cost"] == pytest.approx(spent[0], rel=1e-9)
    assert all(r.cost_usd == 0 for r in results if r.cached)

    # The killed batch stays "running" with a dead pid and a heartbeat that no longer moves.
    dead = batch_of(db, child.proc.pid)
    assert dead["status"] == "running" and pd_isna(dead["finished_at"])
    assert dead["heartbeat_at"] == killed["heartbeat_at"]
    with pytest.raises(ProcessLookupError):
        os.kill(child.proc.pid, 0)
    # The reports show it died, counted from the results it flushed, not its last heartbeat.
    shown = queries.batch_summary(db, killed["batch_id"]).iloc[0]
    assert (shown["state"], shown["success_count"]) == ("died", len(recorded))


def test_two_processes_write_one_file_at_the_same_time(
    tmp_path: Path, start_child: Callable[..., Child]
) -> None:
    db_path = tmp_path / "shared.duckdb"
    latency = ModelConfig(latency_base_s=0.2, latency_jitter_s=0.05)
    n = 40
    with emulator(alpha=latency, beta=latency) as emu:
        db = Database(db_path)
        first = start_child(emu, db_path, "alpha", prompts("first", n), 4, wait_for_go=True)
        second = start_child(emu, db_path, "beta", prompts("second", n), 4, wait_for_go=True)
        stats_help = subprocess.run(
            [sys.executable, "-m", "scriptgen_nb.cli", "stats", "--help"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert first.line() == {"ready": True} and second.line() == {"ready": True}

        first.go()
        # The second writer starts only once the first holds requests in flight and has
        # already written to the file.
        wait_until(
            lambda: (
                model_counters(emu, "alpha")["in_flight"] > 0
                and count(db, "SELECT count(*) FROM batch_log") == 1
            ),
            10.0,
            "the first batch in flight",
            first,
        )
        second.go()

        both_in_flight = False
        stats: subprocess.Popen[str] | None = None
        stats_out = stats_err = ""
        deadline = time.monotonic() + 25.0
        try:
            while first.proc.poll() is None or second.proc.poll() is None:
                assert time.monotonic() < deadline, "the two batches did not finish in time"
                counters = emu.counters()["models"]
                if counters["alpha"]["in_flight"] > 0 and counters["beta"]["in_flight"] > 0:
                    if not both_in_flight and stats_help.returncode == 0:
                        # Reading the log from a third process while both write it.
                        stats = subprocess.Popen(
                            [sys.executable, "-m", "scriptgen_nb.cli", "stats", "--db", db_path],
                            stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            text=True,
                        )
                    both_in_flight = True
                time.sleep(POLL_S)
            if stats is not None:
                stats_out, stats_err = stats.communicate(timeout=30)
        finally:
            if stats is not None and stats.poll() is None:
                stats.kill()
                stats.wait()
        summaries = [first.line(), second.line()]
        alpha, beta = model_counters(emu, "alpha"), model_counters(emu, "beta")

    assert first.proc.returncode == 0, first.stderr()
    assert second.proc.returncode == 0, second.stderr()
    assert both_in_flight, "the two batches never had requests in flight at the same moment"
    for summary in summaries:
        assert summary["succeeded"] == summary["results"] == n
        assert summary["ids"] == [str(i) for i in range(n)]
    # `scriptgen stats` is being added by another change; until `stats --help` works there is
    # nothing to run, so only the two writers are checked.
    if stats_help.returncode == 0:
        assert stats is not None and stats.returncode == 0, stats_err
        assert stats_out.strip()

    assert_rows_whole(db)
    a, b = batch_of(db, first.proc.pid), batch_of(db, second.proc.pid)
    # Really overlapping in the log too: each started before the other finished.
    assert a["started_at"] < b["finished_at"] and b["started_at"] < a["finished_at"]
    for row, model, counters in ((a, "alpha", alpha), (b, "beta", beta)):
        assert row["status"] == "finished"
        assert row["request_count"] == row["success_count"] == n
        assert row["failure_count"] == row["not_run_count"] == row["cached_count"] == 0
        assert list(row["models"]) == list(row["models_used"]) == [model]
        batch_id = row["batch_id"]
        assert count(db, "SELECT count(*) FROM request WHERE batch_id = ?", [batch_id]) == n
        assert (
            count(db, "SELECT count(*) FROM result WHERE batch_id = ? AND success", [batch_id]) == n
        )
        calls = count(db, "SELECT count(*) FROM ai_api_call WHERE batch_id = ?", [batch_id])
        assert calls == counters["requests"] == n
    assert count(db, "SELECT count(*) FROM result") == 2 * n


def test_sigint_mid_batch_raises_batch_interrupted_and_marks_the_batch_cancelled(
    tmp_path: Path, start_child: Callable[..., Child]
) -> None:
    db_path = tmp_path / "interrupted.duckdb"
    n = 40
    model = "slowish"
    with emulator(slowish=ModelConfig(latency_base_s=0.3, latency_jitter_s=0.1)) as emu:
        child = start_child(emu, db_path, model, prompts("interrupt", n), 4)
        wait_for_answers_with_more_in_flight(emu, model, child)
        child.proc.send_signal(signal.SIGINT)
        signalled = time.monotonic()
        try:
            out, _ = child.proc.communicate(timeout=10)
        finally:
            stopped_s = time.monotonic() - signalled
        sent = model_counters(emu, model)["requests"]

    assert child.proc.returncode == 0, child.stderr()
    assert stopped_s < 2.5, f"the child took {stopped_s:.2f} s to stop after SIGINT"
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["interrupted"] is True
    assert summary["results"] == n and summary["ids"] == [str(i) for i in range(n)]
    assert summary["succeeded"] + summary["not_run"] == n  # no failures: all accounted for
    assert 0 < summary["succeeded"] < n and summary["not_run"] > 0
    assert sent < n  # stopped at once: the rest were never sent

    db = Database(db_path)
    row = batch_of(db, child.proc.pid)
    assert row["status"] == "cancelled"
    assert not pd_isna(row["finished_at"])
    assert row["success_count"] == summary["succeeded"]
    assert row["not_run_count"] == summary["not_run"]
    assert row["request_count"] == n
    # Every request has its row and its result, the untouched rest included (so a re-run or
    # `retry --failed` can find them); every call the emulator saw is an attempt on record,
    # those cancelled in flight included.
    assert count(db, "SELECT count(*) FROM request WHERE batch_id = ?", [row["batch_id"]]) == n
    results = db.frame(
        "SELECT success, error_kind FROM result WHERE batch_id = ?", [row["batch_id"]]
    )
    assert len(results) == n
    assert int(results["success"].sum()) == summary["succeeded"]
    assert set(results.loc[~results["success"], "error_kind"]) == {"not_run"}
    calls = count(db, "SELECT count(*) FROM ai_api_call WHERE batch_id = ?", [row["batch_id"]])
    assert calls == sent
    assert_rows_whole(db)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_or_sighup_to_scriptgen_run_stops_it_like_ctrl_c_and_a_rerun_pays_only_the_rest(
    tmp_path: Path, stop: signal.Signals
) -> None:
    db_path, out = tmp_path / "log.duckdb", tmp_path / "r.jsonl"
    n = 40
    model = "gemini-3.5-flash-lite"  # a catalogue model, so the command knows its price
    texts = prompts(f"{stop.name} run", n)
    (tmp_path / "p.txt").write_text("".join(f"{text}\n" for text in texts))
    command = [sys.executable, "-m", "scriptgen_nb.cli", "run", "p.txt", "-m", model, "-c", "4"]
    command += ["--db", str(db_path), "--out", out.name]
    with emulator(**{model: ModelConfig(latency_base_s=0.3, latency_jitter_s=0.1)}) as emu:
        env = {
            k: v for k, v in os.environ.items() if k not in ("GOOGLE_API_KEY", "SCRIPTGEN_MODELS")
        }
        env.update(GEMINI_API_KEY=KEY, GOOGLE_GEMINI_BASE_URL=emu.base_url, SCRIPTGEN_TIER="tier1")
        child = Child.spawn(
            command, tmp_path / "run.stderr", cwd=tmp_path, env=env, stdout=subprocess.DEVNULL
        )
        status = child.signal_when(
            lambda: wait_for_answers_with_more_in_flight(emu, model, child), stop
        )
        wait_until(lambda: model_counters(emu, model)["in_flight"] == 0, 5.0, "in-flight drain")
        sent = model_counters(emu, model)["requests"]
        sent_before = {text: emu.attempts_for(text) for text in texts}
        first = jsonl(out)
        rerun = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
        sent_after = {text: emu.attempts_for(text) for text in texts}

    said = child.stderr().strip().splitlines()[-1]
    assert status == 128 + stop.value, child.stderr()  # 143, 129: not killed outright
    answered = {int(row["id"]) for row in first if row["success"]}
    assert [row["id"] for row in first] == [str(i) for i in range(n)]  # written whole
    assert {row["error_kind"] for row in first if not row["success"]} == {"not_run"}
    assert 0 < len(answered) < n and sent < n
    assert said.startswith(
        f"scriptgen run: stopped by {stop.name} after {len(answered)} of {n} requests "
        f"({n - len(answered)} not run); the results so far were written to r.jsonl; "
        "`scriptgen retry "
    ), said
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []

    db = Database(db_path)
    row = batch_of(db, child.proc.pid)
    assert row["status"] == "cancelled" and not pd_isna(row["finished_at"])
    assert row["success_count"] == len(answered) and row["request_count"] == n
    batch = [row["batch_id"]]
    # Every call sent is on record, those cut off in flight included.
    assert count(db, "SELECT count(*) FROM ai_api_call WHERE batch_id = ?", batch) == sent
    cut_off = "SELECT count(*) FROM ai_api_call WHERE batch_id = ? AND error_kind = 'not_run'"
    assert count(db, cut_off, batch) > 0
    assert count(db, "SELECT count(*) FROM result WHERE batch_id = ?", batch) == n
    assert_rows_whole(db)

    # The re-run sends only what was not answered, each once; the answers come from the log.
    assert rerun.returncode == 0, rerun.stderr
    again = jsonl(out)
    assert all(r["success"] for r in again)
    assert {int(r["id"]) for r in again if r["cached"]} == answered
    resent = {i for i, text in enumerate(texts) if sent_after[text] != sent_before[text]}
    assert resent == set(range(n)) - answered
    assert all(sent_after[texts[i]] == sent_before[texts[i]] + 1 for i in resent)


def stalled_pipe() -> tuple[int, int]:
    """A pipe whose buffer is full (read end, write end): the first write to it blocks until
    the read end is read, as a stderr nobody reads (a full fifo, a stopped pager) does."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    for chunk in (b"x" * 4096, b"x"):  # whole pages, then byte by byte to the last one
        with contextlib.suppress(BlockingIOError):
            while True:
                os.write(write_end, chunk)
    os.set_blocking(write_end, True)
    return read_end, write_end


def logged_status(path: Path) -> str | None:
    """The status of the one batch in the log at `path` (None: not there yet)."""
    try:
        rows = Database(path, read_only=True).rows("SELECT status FROM batch_log")
    except sg.ScriptgenError:  # not created, or not migrated yet
        return None
    return str(rows[0][0]) if rows else None


def test_sigterm_once_the_batch_ended_writes_every_result_and_says_so(tmp_path: Path) -> None:
    """Before, the signal guard started only once the summary line had been printed: SIGTERM
    while that print waited on a stalled stderr said "stopped by SIGTERM before anything was
    sent", and no output was written. Now the results are held from the moment they exist:
    written whole once stderr moves, the exit status 143, the message true."""
    db_path, out = tmp_path / "log.duckdb", tmp_path / "r.jsonl"
    model, n = "gemini-3.5-flash-lite", 3
    (tmp_path / "p.txt").write_text("".join(f"{t}\n" for t in prompts("stalled", n)))
    command = [sys.executable, "-m", "scriptgen_nb.cli", "run", "p.txt", "-m", model]
    command += ["--db", str(db_path), "--out", out.name]
    read_end, write_end = stalled_pipe()
    with emulator(**{model: ModelConfig()}) as emu, os.fdopen(read_end, "rb") as stderr:
        env = {
            k: v for k, v in os.environ.items() if k not in ("GOOGLE_API_KEY", "SCRIPTGEN_MODELS")
        }
        env.update(GEMINI_API_KEY=KEY, GOOGLE_GEMINI_BASE_URL=emu.base_url, SCRIPTGEN_TIER="tier1")
        proc = subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=write_end
        )
        os.close(write_end)
        try:
            wait_until(lambda: logged_status(db_path) == "finished", 30.0, "the batch's end")
            assert proc.poll() is None  # its summary line waits for stderr to move
            proc.send_signal(signal.SIGTERM)
            said = stderr.read().decode().lstrip("x")  # drained: the command goes on
            status = proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert status == 143, said
    assert [row["id"] for row in jsonl(out)] == [str(i) for i in range(n)]
    assert all(row["success"] for row in jsonl(out))
    lines = said.strip().splitlines()
    assert "before anything was sent" not in said and "Traceback" not in said, said
    assert lines[-2:] == [
        f"wrote {n} results to r.jsonl",
        "scriptgen run: stopped by SIGTERM once the batch had ended; nothing was cut short.",
    ], said


def test_sigterm_to_scriptgen_demo_records_what_was_sent_and_says_so(tmp_path: Path) -> None:
    """Before, SIGTERM ended `scriptgen demo` on the spot (exit -15): its calls in flight were
    never recorded and its batch stayed "running". Now it stops as Ctrl-C does."""
    db_path = tmp_path / "log.duckdb"
    env = {k: v for k, v in os.environ.items() if k not in ("GEMINI_API_KEY", "GOOGLE_API_KEY")}
    env["SCRIPTGEN_DB"] = str(db_path)
    child = Child.spawn(
        [sys.executable, "-m", "scriptgen_nb.cli", "demo", "-n", "400"],
        tmp_path / "demo.stderr",
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
    )

    def reporting() -> None:
        """Until the reporter's first line (a model cooling down or learning a limit)."""
        while not (said := child.stdout.readline()).startswith("  ["):
            assert said, f"the demo ended before reporting:\n{child.stderr()}"

    status = child.signal_when(reporting, signal.SIGTERM)
    assert status == 143, child.stderr()
    last = child.stderr().strip().splitlines()[-1]
    assert last.startswith("scriptgen demo: stopped by SIGTERM after "), last
    assert last.endswith(" of 400 requests; every attempt is in the call log."), last
    db = Database(db_path)
    row = batch_of(db, child.proc.pid)
    assert row["status"] == "cancelled" and row["request_count"] == 400
    assert count(db, "SELECT count(*) FROM result WHERE batch_id = ?", [row["batch_id"]]) == 400
    assert_rows_whole(db)


def test_sigterm_to_jobs_resume_stops_waiting_and_leaves_the_jobs_running(tmp_path: Path) -> None:
    """Before, SIGTERM ended `scriptgen jobs resume` on the spot, writing nothing. Now it stops
    waiting as Ctrl-C does: the results so far written (none ready: not run), the jobs left
    running at the service and resumable, exit 143."""
    model, db_path, out = "gemini-2.5-flash", tmp_path / "log.duckdb", tmp_path / "r.jsonl"
    pending = BatchConfig(pending_s=600.0, running_s=0.0)
    with Emulator(EmulatorConfig(seed=3, api_keys=(KEY,), batch=pending)) as emu:
        requests = sg.create_batch_requests(["Write about gulls", "Write about terns"])
        handle = sg.submit_batch_job(
            requests, base_url=emu.base_url, api_key=KEY, models=model, db=str(db_path)
        )
        handle.close()
        env = {k: v for k, v in os.environ.items() if k != "GOOGLE_API_KEY"}
        env.update(GEMINI_API_KEY=KEY, GOOGLE_GEMINI_BASE_URL=emu.base_url)
        command = [sys.executable, "-m", "scriptgen_nb.cli", "jobs", "resume", handle.batch_id]
        seen = emu.counters()["requests"]
        child = Child.spawn(
            [*command, "--db", str(db_path), "--out", str(out)],
            tmp_path / "resume.stderr",
            env=env,
            stdout=subprocess.DEVNULL,
        )
        first_poll = partial(
            wait_until, lambda: emu.counters()["requests"] > seen, 20.0, "the first poll", child
        )
        status = child.signal_when(first_poll, signal.SIGTERM)
        cancelled = emu.counters()["batches"]["jobs_cancelled"]

    assert status == 143, child.stderr()
    last = child.stderr().strip().splitlines()[-1]
    assert last.startswith(
        f"scriptgen jobs: stopped by SIGTERM while waiting; the Batch API jobs of batch "
        f"{handle.batch_id} keep running at the service: `scriptgen jobs resume "
    ), last
    assert cancelled == 0
    assert [row["error_kind"] for row in jsonl(out)] == ["not_run", "not_run"]
