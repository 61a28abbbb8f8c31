"""When the call log cannot be written, and when an awaited batch is cancelled: nothing is lost.

Tests run as root in CI, so "unwritable" is made in ways root cannot bypass: a path under a
regular file, `RLIMIT_FSIZE` (a full disk) set in a child process before the batch, and the
immutable attribute (`chattr +i`) for a read-only place.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import scriptgen_nb as sg
from scriptgen_nb.engine.backend import FakeBackend
from scriptgen_nb.engine.values import (
    BatchStarted,
    GenerationRequest,
    ModelStateChanged,
    RequestFinished,
    Result,
)
from scriptgen_nb.store import Database, StoreError
from scriptgen_nb.store.recorder import BatchInfo, Recorder
from tests.reliability.children import child_report, wait_until
from tests.test_cli import scriptgen

MODEL = sg.ModelSpec("m", priority=1, input_usd_per_1m=1.0, output_usd_per_1m=2.0)
PROJECT = "lights"  # the project the read-only log holds
KEY_VARIABLES = ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL")

FULL_DISK_CHILD = """
import json, resource, signal, sys
import scriptgen_nb as sg
from scriptgen_nb.engine.backend import FakeBackend

db, limit = sys.argv[1], int(sys.argv[2])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails, not kills
model = sg.ModelSpec("m", priority=1)
requests = sg.create_batch_requests([f"prompt {i} " + "x" * 400 for i in range(3000)])
sg.batch_generate(requests[:1], models=[model], backend=FakeBackend(), db=db)  # the file exists
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
try:
    sg.batch_generate(requests, models=[model], backend=FakeBackend(latency_s=0.002), db=db,
                      max_concurrency=8)
except sg.CallLogFailed as stopped:
    results = stopped.results
    print(json.dumps({
        "error": str(stopped), "cause": type(stopped.cause).__name__, "total": len(results),
        "ids_unique": len({r.id for r in results}) == len(results),
        "succeeded": sum(r.success for r in results),
        "not_run": sum(r.error is not None and r.error.kind == "not_run" for r in results),
    }))
else:
    print(json.dumps({"error": None}))
"""


def test_a_full_disk_mid_batch_stops_it_and_keeps_every_result(tmp_path: Path) -> None:
    db = tmp_path / "log.duckdb"
    Database(db)  # migrate first, so the size limit below leaves room only for a little more
    limit = db.stat().st_size + 1024 * 1024  # room for a few flushes (each checkpoints)
    report = child_report(FULL_DISK_CHILD, str(db), str(limit))
    assert report["error"] and "could not be written" in report["error"]
    assert report["cause"] == "StoreError"
    assert report["total"] == 3000 and report["ids_unique"]
    assert report["succeeded"] > 0 and report["not_run"] > 0  # it stopped part-way
    assert report["succeeded"] + report["not_run"] == 3000


def test_a_failed_write_says_which_log_and_why_once(tmp_path: Path) -> None:
    db = Database(tmp_path / "log.duckdb")
    recorder = Recorder(
        db, BatchInfo("b1", "live", "fake", "use", True, "0", "0", "fp"), flush_s=0.01
    )
    recorder(BatchStarted("b1", 1, ("m",), "auto", 1, time.time()))
    with db.write() as con:
        con.execute("DROP TABLE result")  # the file loses a table under the running batch
    recorder.record_request(0, GenerationRequest("r0", "a prompt"), "key0")
    recorder(RequestFinished(Result("r0", 0, True, text="an answer"), 1, 1))
    raised: list[StoreError] = []

    def the_next_event_raises() -> bool:
        try:
            recorder(ModelStateChanged("m", "ready", None, ""))
        except StoreError as exc:
            raised.append(exc)
        return bool(raised)

    wait_until(the_next_event_raises, 10.0, "the flusher's error to reach the batch")
    message = str(raised[0])
    assert message.startswith(f"Writing the call log {db.path} failed: ")
    assert message.count("Writing the call log") == 1, message
    assert message.count(str(db.path)) == 1 and "Error" in message  # DuckDB's own words


def test_an_unwritable_log_path_fails_before_any_call(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    backend = FakeBackend()
    with pytest.raises(sg.ConfigurationError, match="is a file, not a folder"):
        sg.batch_generate(
            sg.create_batch_requests(["x"]),
            models=[MODEL],
            backend=backend,
            db=blocker / "log.duckdb",
        )
    assert backend.calls == []


@pytest.fixture
def read_only_log(tmp_path: Path) -> Iterator[Path]:
    """A call log holding one finished batch, in a folder of its own; then the file and the
    folder are made immutable (`chattr +i`), which the kernel enforces for root too (a mode of
    0444 does not stop root), as a read-only mount would. Skipped where chattr cannot do that
    (not installed, no CAP_LINUX_IMMUTABLE, a filesystem without the attribute)."""
    path = tmp_path / "shelf" / "log.duckdb"
    path.parent.mkdir()
    sg.batch_generate(
        sg.create_batch_requests(["x"]), models=[MODEL], backend=FakeBackend(), db=path
    )
    chapters = [{"number": 1, "title": "The lamp", "summary": "Who keeps it lit."}]
    sg.create_project("Lighthouses", chapters=chapters, project_id=PROJECT, db=path)
    chattr = shutil.which("chattr")
    if chattr is None:
        pytest.skip("chattr is not installed: no read-only place that binds root to make here")
    locked = [str(path), str(path.parent)]
    made = subprocess.run([chattr, "+i", *locked], capture_output=True, text=True, check=False)
    try:
        if made.returncode != 0:
            pytest.skip(f"chattr +i is refused here ({made.stderr.strip()})")
        yield path
    finally:
        subprocess.run([chattr, "-i", *locked], capture_output=True, check=False)


def test_a_log_on_a_read_only_place_is_read_and_writing_it_says_read_only(
    read_only_log: Path, shell: Any
) -> None:
    """The kernel refuses every write to the log's file and folder (immutable), root's too.
    Before: `scriptgen stats` could not read the log (opening it migrated, a write), the
    notebook's `%scriptgen stats` / `sql` / `models` / `limits` / `chart` still opened it for
    writing, and a batch called it "not a DuckDB database ... may be damaged". Now the reading
    commands (terminal and magic) and `CallStore(read_only=True)` read it without writing; a
    batch, `CallStore()` (whose upkeep writes) and `scriptgen migrate` say it is on a read-only
    place, which file, and what to do, before any call. Later: `scriptgen jobs` printed a
    traceback, `%scriptgen jobs` / `project` and a Batch API dry run were refused as read-only
    (listing jobs and reading a project opened the log for writing); now they read it too."""
    path = read_only_log
    before = path.read_bytes()
    for command in ("stats", "batches"):
        shown = scriptgen(command, "--db", str(path))
        assert shown.returncode == 0, shown.stderr
        assert re.search(r"^\S+ +finished ", shown.stdout, re.MULTILINE), shown.stdout
    jobs = scriptgen("jobs", "--db", str(path))
    assert (jobs.returncode, jobs.stdout.strip(), jobs.stderr) == (0, "(none)", ""), jobs.stderr
    (path.parent.parent / "p.txt").write_text("Write about gulls.\n")
    keyless = {k: v for k, v in os.environ.items() if k not in KEY_VARIABLES}
    planned = scriptgen(
        "run", str(path.parent.parent / "p.txt"), "--mode", "batch_api", "--dry-run",
        "--db", str(path), env=keyless,
    )  # fmt: skip
    assert planned.returncode == 0 and "(nothing was sent)" in planned.stdout, planned.stderr
    magic = functools.partial(shell.run_line_magic, "scriptgen")
    with contextlib.redirect_stdout(io.StringIO()) as said:
        assert magic(f"stats --db {path}").usage["requests"].sum() == 1
        assert magic(f"sql --db {path} SELECT count(*) AS n FROM result")["n"].iloc[0] == 1
        assert magic(f"limits --db {path}") is not None
        assert len(magic(f"models --db {path}")) > 0
        assert magic(f"chart cost --db {path}") is not None
        assert magic(f"jobs list --db {path}").empty
        assert magic(f"project {PROJECT} --db {path}")["title"].tolist() == ["The lamp"]
    assert f"Project {PROJECT}: 1 chapters" in said.getvalue()
    log = sg.CallStore(path, read_only=True)
    assert log.batches()["state"].tolist() == ["finished"]
    assert log.sql("SELECT count(*) AS n FROM result")["n"].iloc[0] == 1
    said = rf"{re.escape(str(path))} is on a read-only place \(the file .* cannot be written\)"
    backend = FakeBackend()
    with pytest.raises(StoreError, match=said + r".*read_only=True.*a writable path"):
        sg.batch_generate(sg.create_batch_requests(["y"]), models=[MODEL], backend=backend, db=path)
    assert backend.calls == []
    with pytest.raises(StoreError, match=said):
        sg.CallStore(path)
    with pytest.raises(StoreError, match="opened read-only, for reading"):
        log.purge(0)
    migrate = scriptgen("migrate", "--db", str(path))
    assert migrate.returncode == 2 and re.search(said, migrate.stderr), migrate.stderr
    assert path.read_bytes() == before
    assert list(path.parent.iterdir()) == [path]  # no WAL beside it


def test_cancel_during_an_awaited_batch_is_prompt_clean_persisted_and_resumable(
    tmp_path: Path,
) -> None:
    db = tmp_path / "log.duckdb"
    prompts = [f"chapter {i}" for i in range(40)]
    token = sg.CancelToken()
    stopped_at: list[float] = []

    def cancel_at_ten(done: int, total: int | None) -> None:
        if done == 10 and not stopped_at:
            stopped_at.append(time.monotonic())
            token.cancel()  # what the panel's Cancel button does

    async def cell() -> tuple[sg.ResultList, set[asyncio.Task[object]]]:
        results = await sg.abatch_generate(
            sg.create_batch_requests(prompts),
            cancel_at_ten,
            4,
            models=[MODEL],
            backend=FakeBackend(latency_s=0.05),
            db=db,
            cancel=token,
        )
        others = {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}
        return results, others

    results, leftover_tasks = asyncio.run(cell())
    assert time.monotonic() - stopped_at[0] < 1.0
    assert not leftover_tasks
    assert not [t for t in threading.enumerate() if t.name.startswith("scriptgen-")]
    assert len(results) == 40 and 10 <= len(results.succeeded) < 40
    log = Database(db)
    assert log.rows("SELECT status FROM batch_log") == [("cancelled",)]
    assert log.rows("SELECT count(*) FROM result")[0][0] == 40
    resumed_backend = FakeBackend()
    resumed = sg.batch_generate(
        sg.create_batch_requests(prompts), models=[MODEL], backend=resumed_backend, db=db
    )
    assert all(r.success for r in resumed)
    assert sum(r.cached for r in resumed) == len(results.succeeded)
    assert len(resumed_backend.calls) == 40 - len(results.succeeded)
