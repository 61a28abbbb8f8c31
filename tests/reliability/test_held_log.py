"""A reader in another process holding the call log's file never kills a batch.

DuckDB lets one process at a time hold a file. Here a real second process opens the log (as a
long query or `scriptgen stats` would) and holds it until the test releases it through its
stdin; the batch runs in this process on the FakeBackend. Every wait is on something observed:
the holder saying it holds the file, the progress bar or stderr saying the batch waits for it.
Waits are made short by their options (`log_wait_s`, `NOTICE_AFTER_S`), never by sleeping.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import scriptgen_nb as sg
from scriptgen_nb.emulator import Emulator, EmulatorConfig
from scriptgen_nb.engine.backend import FakeBackend
from scriptgen_nb.store import Database, LogLocked, lock_wait, recorder
from scriptgen_nb.store.lock_wait import LOG_WAIT_SETTINGS
from tests.forwarding_proxy import forwarding_proxy
from tests.reliability.children import KEY, Child, wait_until
from tests.reliability.test_processes import assert_rows_whole
from tests.test_cli_run import jsonl

MODEL = sg.ModelSpec("m", priority=1, input_usd_per_1m=1.0, output_usd_per_1m=2.0)
HELD = "is held by another process"

HOLDER = """\
'''Hold a call log's file open, as a long query in another process would (test helper).'''
import json
import sys
import time

import duckdb

while True:
    try:
        connection = duckdb.connect(sys.argv[1], read_only=True)
        break
    except duckdb.IOException:  # the batch writes it this moment: take turns, as it does
        time.sleep(0.01)
print(json.dumps({"holding": True}), flush=True)
sys.stdin.readline()
connection.close()
print(json.dumps({"released": True}), flush=True)
"""


@pytest.fixture
def hold(tmp_path: Path) -> Iterator[Callable[[Path], Child]]:
    """`hold(path)`: a process holding the file once this returns; `.go()` releases it. Every
    holder still alive at the end is killed (by its own pid)."""
    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    holders: list[Child] = []

    def start(path: Path) -> Child:
        holder = Child.spawn(
            [sys.executable, str(script), str(path)],
            tmp_path / f"holder-{len(holders)}.stderr",
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        holders.append(holder)
        assert holder.line() == {"holding": True}
        return holder

    try:
        yield start
    finally:
        for holder in holders:
            holder.end()


def said_on_stderr(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """What the batch says on stderr (its text bar, its notices), readable while it runs; a
    wait is said after a fifth of a second instead of three. Called in the test itself: pytest
    sets its own sys.stderr once the fixtures are set up."""
    said = io.StringIO()
    monkeypatch.setattr(sys, "stderr", said)
    monkeypatch.setattr(lock_wait, "NOTICE_AFTER_S", 0.2)
    return said


def release(holder: Child) -> None:
    holder.go()
    assert holder.line() == {"released": True}


def in_thread(run: Callable[[], sg.ResultList]) -> tuple[threading.Thread, dict[str, Any]]:
    """`run` in a thread of its own; its results or its exception land in the dict."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["results"] = run()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="held-log-batch")
    thread.start()
    return thread, outcome


@dataclass
class ReaderMidBatch:
    """A batch running in a thread of its own that a reader process meets once 5 are done."""

    thread: threading.Thread
    outcome: dict[str, Any]  # its "results" or its "error"
    holders: list[Child]  # the reader, once it holds the file (it never lets go by itself)
    done: list[int]  # the finished counts the batch reported


def batch_meeting_a_reader(
    path: Path, hold: Callable[[Path], Child], n: int, **options: Any
) -> ReaderMidBatch:
    """Start a batch of `n` on the fake backend, 4 in flight, logged to `path` (or `db=`), its
    text bar on stderr; once 5 are done a reader process takes the file (the batch goes on only
    once it holds it)."""
    holders: list[Child] = []
    done: list[int] = []

    def reader_arrives_at_five(finished: int, total: int | None) -> None:
        done.append(finished)
        if finished == 5:
            holders.append(hold(path))

    options = {"backend": FakeBackend(), "db": path, "progress": "text", **options}
    thread, outcome = in_thread(
        lambda: sg.batch_generate(prompts(n), reader_arrives_at_five, 4, models=[MODEL], **options)
    )
    return ReaderMidBatch(thread, outcome, holders, done)


def prompts(n: int) -> list[sg.GenerationRequest]:
    return sg.create_batch_requests([f"scene {i} of a film about lighthouses" for i in range(n)])


def assert_logged_whole(db: Database, n: int) -> None:
    """The log holds one batch, finished, with every request, attempt and result of its `n`."""
    [(batch_id, status, succeeded)] = db.rows(
        "SELECT batch_id, status, success_count FROM batch_log"
    )
    assert (status, succeeded) == ("finished", n)
    for table in ("request", "ai_api_call", "result"):
        rows = db.rows(f"SELECT count(*) FROM {table} WHERE batch_id = ?", [batch_id])
        assert rows == [(n,)], table
    assert_rows_whole(db)


def test_a_reader_holding_the_log_mid_batch_slows_it_and_every_result_and_row_lands(
    tmp_path: Path,
    hold: Callable[[Path], Child],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stderr = said_on_stderr(monkeypatch)
    bound = 30
    monkeypatch.setattr(recorder, "MAX_BUFFERED_ROWS", bound)
    path = tmp_path / "log.duckdb"
    # This log's own reads and writes give up after half a second; before the fix, so did the
    # batch's (30 s by default), and the batch died with CallLogFailed.
    log = Database(path, lock_timeout_s=0.5)
    n = 200
    run = batch_meeting_a_reader(path, hold, n, backend=FakeBackend(latency_s=0.005), db=log)
    batch, outcome, done = run.thread, run.outcome, run.done
    wait_until(lambda: HELD in stderr.getvalue() or not batch.is_alive(), 30.0, "the bar to say so")
    assert "error" not in outcome, outcome["error"]
    # The rows wait in a bounded buffer: taking up requests waits for the file, so the batch is
    # held back (two buffers' worth: the one the waiting flush holds and the one filling up).
    held_at = done[-1]
    assert held_at < 5 + 2 * bound, done
    assert "the batch goes on and its rows wait in memory" in stderr.getvalue()
    release(run.holders[0])
    batch.join(timeout=30)
    assert not batch.is_alive()
    assert "error" not in outcome, outcome["error"]
    results = outcome["results"]
    assert [r.id for r in results] == [str(i) for i in range(n)]
    assert all(r.success for r in results)
    assert done[-1] == n
    assert_logged_whole(log, n)


def test_a_batch_started_while_a_reader_holds_the_log_waits_then_runs(
    tmp_path: Path, hold: Callable[[Path], Child], monkeypatch: pytest.MonkeyPatch
) -> None:
    stderr = said_on_stderr(monkeypatch)
    path = tmp_path / "log.duckdb"
    Database(path)
    holder = hold(path)
    backend = FakeBackend()
    n = 20
    batch, outcome = in_thread(
        lambda: sg.batch_generate(prompts(n), models=[MODEL], backend=backend, db=path)
    )
    wait_until(lambda: HELD in stderr.getvalue() or not batch.is_alive(), 30.0, "a notice")
    assert "error" not in outcome, outcome["error"]
    assert f"waiting up to 300s for it ({LOG_WAIT_SETTINGS})" in stderr.getvalue()  # the default
    assert backend.calls == []  # nothing is sent before the log can be written
    release(holder)
    batch.join(timeout=30)
    assert not batch.is_alive()
    assert "error" not in outcome, outcome["error"]
    assert all(r.success for r in outcome["results"])
    assert len(backend.calls) == n
    assert_logged_whole(Database(path), n)


def test_a_log_still_held_after_log_wait_s_raises_call_log_failed_with_every_result(
    tmp_path: Path, hold: Callable[[Path], Child], monkeypatch: pytest.MonkeyPatch
) -> None:
    stderr = said_on_stderr(monkeypatch)
    path = tmp_path / "log.duckdb"
    n = 40
    run = batch_meeting_a_reader(path, hold, n, log_wait_s=1.0)  # the reader never lets go
    run.thread.join(timeout=60)
    failed = run.outcome.get("error")
    assert isinstance(failed, sg.CallLogFailed), run.outcome
    results = failed.results
    assert [r.id for r in results] == [str(i) for i in range(n)]
    assert all(r.success for r in results)  # every answer, though the log could not take them
    cause = failed.cause
    assert isinstance(cause, LogLocked)
    assert str(path) in str(cause) and "another process held it all the" in str(cause)
    said = stderr.getvalue()
    assert f"waiting up to 1s for it ({LOG_WAIT_SETTINGS})" in said  # under the bar's summary
    assert said.index(" finished: ") < said.index("waiting up to 1s")
    release(run.holders[0])
    # What the log got before the reader came is whole; the batch never said it ended.
    log = Database(path)
    assert log.rows("SELECT status FROM batch_log") == [("running",)]
    assert_rows_whole(log)


def test_cancelling_a_batch_that_waits_for_a_held_log_stops_it_at_once_with_every_result(
    tmp_path: Path, hold: Callable[[Path], Child], monkeypatch: pytest.MonkeyPatch
) -> None:
    stderr = said_on_stderr(monkeypatch)
    monkeypatch.setattr(recorder, "MAX_BUFFERED_ROWS", 30)  # held back soon after the reader
    path = tmp_path / "log.duckdb"
    token = sg.CancelToken()
    n = 200
    run = batch_meeting_a_reader(path, hold, n, backend=FakeBackend(latency_s=0.005), cancel=token)
    batch, outcome = run.thread, run.outcome
    wait_until(lambda: HELD in stderr.getvalue() or not batch.is_alive(), 30.0, "the bar to say so")
    assert HELD in stderr.getvalue() and batch.is_alive()  # waiting, not dead
    token.cancel()  # what Ctrl-C or the panel's Cancel button does
    cancelled_at = time.monotonic()
    batch.join(timeout=30)
    assert not batch.is_alive()
    assert time.monotonic() - cancelled_at < 2.0  # no wait for the file once cancelled
    stopped = outcome.get("error")
    assert isinstance(stopped, sg.CallLogFailed), outcome  # the log lacks its last rows
    results = stopped.results
    assert [r.id for r in results] == [str(i) for i in range(n)]
    succeeded = sum(r.success for r in results)
    not_run = sum(r.error is not None and r.error.kind == "not_run" for r in results)
    assert 5 <= succeeded < n and succeeded + not_run == n
    release(run.holders[0])


def test_sigterm_while_a_batch_waits_for_a_held_log_at_its_end_says_where_its_answers_are(
    tmp_path: Path, hold: Callable[[Path], Child]
) -> None:
    """`scriptgen run --log-wait 100` answered while a reader held the log, then stopped by
    SIGTERM while it waited for the file at its end. Before: "`scriptgen retry ID` runs the
    rest", though the log had none of the answers, so that retry paid for them again. Now the
    line says the answers are only in the output file, the log could not take them, and a
    retry or a re-run would send them again."""
    path, out, model = tmp_path / "log.duckdb", tmp_path / "r.jsonl", "gemini-3.5-flash-lite"
    (tmp_path / "p.txt").write_text("Write about gulls.\nWrite about terns.\n")
    command = [sys.executable, "-m", "scriptgen_nb.cli", "run", "p.txt", "-m", model]
    command += ["--db", str(path), "--log-wait", "100", "--out", out.name]
    answers = threading.Event()  # the proxy holds the answers until the reader holds the log
    emulator = Emulator(EmulatorConfig(seed=3, api_keys=(KEY,), latency_scale=0))
    with emulator as emu, forwarding_proxy(emu.base_url, answers) as url:
        env = {
            k: v for k, v in os.environ.items() if k not in ("GOOGLE_API_KEY", "SCRIPTGEN_MODELS")
        }
        env.update(GEMINI_API_KEY=KEY, GOOGLE_GEMINI_BASE_URL=url, SCRIPTGEN_TIER="tier1")
        child = Child.spawn(
            command, tmp_path / "run.stderr", cwd=tmp_path, env=env, stdout=subprocess.DEVNULL
        )
        at_the_end = f"waiting up to 100s for it ({LOG_WAIT_SETTINGS})"  # said after 3 s of waiting

        def asked() -> bool:
            return bool(emu.counters()["models"][model]["requests"] == 2)

        def waiting_at_the_end() -> None:
            wait_until(lambda: at_the_end in child.stderr(), 30.0, "the wait at the end", child)

        try:
            wait_until(asked, 30.0, "both requests", child)
            holder = hold(path)
            answers.set()
            status = child.signal_when(waiting_at_the_end, signal.SIGTERM)
        finally:
            answers.set()
            child.end()
    release(holder)
    assert status == 143, child.stderr()
    assert [(row["id"], row["success"]) for row in jsonl(out)] == [("0", True), ("1", True)]
    said = child.stderr().strip().splitlines()[-1]
    assert said.startswith(
        f"scriptgen run: The call log could not be written (Stopped waiting for the call log "
        f"{path} after "
    ), said
    assert said.endswith(
        "after 2 of 2 requests (0 not run); the results so far were written to r.jsonl; 2 "
        "answer(s) are only there: the call log could not take them, so a retry or a re-run "
        "would send them again (and pay again)."
    ), said
    assert "scriptgen retry" not in said
    log = Database(path, read_only=True)
    assert log.rows("SELECT count(*) FROM result") == [(0,)]  # as said: the log has none
    assert log.rows("SELECT status FROM batch_log") == [("running",)]


def test_a_retry_and_a_projects_run_wait_for_a_held_log_as_log_wait_s_says(
    tmp_path: Path, hold: Callable[[Path], Child]
) -> None:
    """Before: `scriptgen retry --log-wait 100` and `generate_scripts(log_wait_s=...)` opened
    the log with the store's own 30 s wait, whatever log_wait_s said (LogLocked "held it all
    the 30.0s"). Now they wait as long as it says: the retry says so and goes on once the
    reader lets go; a project's run given half a second gives up after half a second."""
    path = tmp_path / "log.duckdb"
    sg.batch_generate(prompts(2), models=[MODEL], backend=FakeBackend(), db=path)
    chapters = [{"number": 1, "title": "The lamp", "summary": "Who keeps it lit."}]
    project = sg.create_project("Lighthouses", chapters=chapters, db=path)
    holder = hold(path)
    command = [sys.executable, "-m", "scriptgen_nb.cli", "retry", "--db", str(path)]
    retry = Child.spawn(
        [*command, "--log-wait", "100"],
        tmp_path / "retry.stderr",
        env={**os.environ, "GEMINI_API_KEY": "test-key"},
    )
    try:
        said = f"waiting up to 100s for it ({LOG_WAIT_SETTINGS})"  # after 3 s of waiting
        wait_until(lambda: said in retry.stderr(), 20.0, "the retry's wait", retry)
        release(holder)
        assert retry.proc.wait(timeout=30) == 0, retry.stderr()
    finally:
        retry.end()
    assert retry.stderr().splitlines()[-1].endswith("has no failed or not-run requests.")
    holder = hold(path)
    started = time.monotonic()
    with pytest.raises(LogLocked, match="held it all the"):
        sg.generate_scripts(project, db=path, log_wait_s=0.5, models=[MODEL], backend=FakeBackend())
    assert time.monotonic() - started < 10.0  # not the store's 30 s
    release(holder)


def test_log_wait_s_must_be_a_number_of_seconds(tmp_path: Path) -> None:
    backend = FakeBackend()
    for bad in (-1, float("nan"), "300", None):
        with pytest.raises(sg.ConfigurationError, match=r"log_wait_s.*(seconds|number)"):
            sg.batch_generate(
                prompts(1),
                models=[MODEL],
                backend=backend,
                db=tmp_path / "l.duckdb",
                log_wait_s=bad,
            )
    assert backend.calls == [] and not (tmp_path / "l.duckdb").exists()


def run_offline(folder: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """`scriptgen run p.txt OPTIONS` in `folder`, its endpoint one nobody listens on: whatever
    it says, nothing could be sent."""
    (folder / "p.txt").write_text("A prompt\n")
    env = {
        **os.environ,
        "GEMINI_API_KEY": "test-key",
        "GOOGLE_GEMINI_BASE_URL": "http://127.0.0.1:9",
    }
    return subprocess.run(
        [sys.executable, "-m", "scriptgen_nb.cli", "run", "p.txt", *options],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_command_line_passes_log_wait_on_to_the_library(tmp_path: Path) -> None:
    done = run_offline(tmp_path, "--log-wait", "-1")
    assert done.returncode == 2, done.stderr
    assert "--log-wait=-1.0 is out of range: --log-wait must not be negative" in done.stderr


def test_scriptgen_run_on_a_log_held_past_log_wait_says_so_in_one_line(
    tmp_path: Path, hold: Callable[[Path], Child]
) -> None:
    path = tmp_path / "log.duckdb"
    Database(path)
    holder = hold(path)
    done = run_offline(
        tmp_path, "--db", str(path), "--log-wait", "0.5", "-m", "gemini-2.5-flash-lite"
    )
    release(holder)
    assert done.returncode == 1, done.stderr
    [said] = done.stderr.splitlines()  # no traceback, no bar: one line
    assert said.startswith(
        f"scriptgen run: Cannot open the call log {path}: another process held"
    ), said
    assert said.endswith(f"a batch waits for it as long as you set ({LOG_WAIT_SETTINGS})."), said


def test_a_users_query_reads_the_log_beside_another_processs_reader(
    tmp_path: Path, hold: Callable[[Path], Child]
) -> None:
    # User SQL runs on a DuckDB instance of its own (the sandbox), attaching the file
    # read-only: a reader in another process (a long query, `scriptgen stats`) does not stop
    # it, and it never has to wait for one.
    path = tmp_path / "l.duckdb"
    sg.batch_generate(prompts(3), models=[MODEL], backend=FakeBackend(), db=path)
    waits: list[bool] = []

    def blocked() -> bool:
        waits.append(True)
        return True  # give up at once: the test is that no wait happens

    db = Database(path, wait=lock_wait.LockWait(timeout_s=60.0, give_up=blocked))
    holder = hold(path)
    frame = db.sandboxed_select("SELECT count(*) AS n FROM result")
    release(holder)
    assert int(frame["n"].iloc[0]) == 3 and waits == []
