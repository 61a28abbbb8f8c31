"""The recorder: an engine listener that writes a batch's requests, attempts, results and the
limits it learned.

Events arrive on the engine's loop; the recorder only turns them into rows and appends them to
a buffer. A flusher thread writes the buffer in one transaction at least every `flush_s`
(0.25 s), so a killed process loses only what was in flight or answered since the last flush,
and once a second (`heartbeat_s`) refreshes the batch's `batch_log` row (counts so far and a
heartbeat), so another process can watch a running batch and tell a dead one from a live one.
(Updating it with every flush cost about a tenth of the log's CPU on a fast batch.) If
writing fails, the error is raised from the next event, which stops the batch (nothing is
silently dropped). When the log falls behind (more than `MAX_BUFFERED_ROWS` rows waiting),
taking up the next request waits for the flusher: a slow disk slows the batch instead of
growing memory.

Another process holding the file (a long query) never stops the batch: the flusher waits for it
for as long as the batch runs (its rows wait in the buffer, with the same bound), and the
batch's first and last writes wait up to `log_wait_s` (`lock_wait.py` says so to the user after
a few seconds). No duckdb here.
"""

from __future__ import annotations

import math
import os
import socket
import threading
import time
from dataclasses import dataclass, replace
from typing import Any

from ..engine.pricing import CostTotal
from ..engine.values import (
    Attempt,
    AttemptFinished,
    BatchFinished,
    BatchStarted,
    Event,
    GenerationRequest,
    LimitLearned,
    ModelStateChanged,
    RequestFinished,
    Result,
)
from . import keys
from .database import Database, LogLocked, StoreError
from .lock_wait import LockWait

CALL_TIMES = frozenset({"created_at", "finished_at"})
RESULT_TIMES = frozenset({"finished_at"})
# The notes a batch leaves beside its rows: the working limits it changed and what happened to
# its models, by table, with their time columns.
NOTE_TIMES = {"limit_learned": frozenset({"learned_at"}), "model_event": frozenset({"happened_at"})}
# Rows (requests, attempts, results) waiting for the flusher before taking up a request waits.
# A backend that answers at once can outrun any disk: 100,000 instant requests held ~60,000
# rows (600 MB) per flush without this bound.
MAX_BUFFERED_ROWS = 10_000
LOG_WAIT_S = 300.0  # how long a batch's first and last writes wait for a held file (log_wait_s)


@dataclass(frozen=True, slots=True)
class BatchInfo:
    """What the engine's events do not say about a batch but the log keeps."""

    batch_id: str
    mode: str
    endpoint: str
    cache_mode: str
    store_text: bool
    package_version: str
    sdk_version: str
    # The API key's fingerprint (engine/identity.py), never the key: with the endpoint, the quota
    # identity that learned limits are kept for.
    key_fingerprint: str
    notices: tuple[str, ...] = ()  # what the ladder's resolution said (models.ladder_notices)
    simulated: bool = False  # the endpoint is an emulator (endpoints.is_emulator)
    budget_usd: float | None = None  # what a retry carries over (retries.py)
    max_attempts: int | None = None


@dataclass(frozen=True, slots=True)
class RequestTags:
    """What a request's attempt and result rows say about it beyond the attempt or result."""

    cache_key: str
    operation: str | None
    project_id: str | None
    template_hash: str | None


# The rows of the log's `request`, `ai_api_call` and `result` tables, as the live recorder and
# the Batch API's ingestion (batch_api/ingest.py) both write them.


def request_row(
    batch_id: str, index: int, request: GenerationRequest, cache_key: str, store_text: bool
) -> dict[str, Any]:
    """A `request` row: the request written down, so `retry --failed` can rebuild it."""
    schema = keys.schema_of(request)
    return {
        "batch_id": batch_id,
        "request_id": request.id,
        "request_index": index,
        "cache_key": cache_key,
        "operation": request.operation,
        "project_id": request.project_id,
        "prompt": request.prompt if store_text else None,
        "prompt_hash": keys.sha256(request.prompt),
        "system": request.system if store_text else None,
        "config": keys.request_config(request),
        "response_schema": None if schema is None else keys.data_json(schema),
        "schema_name": keys.schema_name(request),
        "template_hash": keys.template_hash(request),
    }


def call_row(
    batch_id: str,
    attempt: Attempt,
    tags: RequestTags | None,
    package_version: str,
    sdk_version: str,
) -> dict[str, Any]:
    """An `ai_api_call` row: one attempt."""
    failure = attempt.failure
    return {
        "call_id": f"{batch_id}/{attempt.request_id}/{attempt.number}",
        "batch_id": batch_id,
        "request_id": attempt.request_id,
        "request_index": attempt.index,
        "operation": tags.operation if tags else None,
        "project_id": tags.project_id if tags else None,
        "model": attempt.model,
        "attempt": attempt.number,
        "status": "SUCCESS" if attempt.success else "ERROR",
        "http_status": failure.http_status if failure else 200,
        "error_kind": failure.kind if failure else None,
        "error_message": failure.message if failure else None,
        "finish_reason": attempt.finish_reason,
        "model_version": attempt.model_version,
        "input_tokens": attempt.usage.input,
        "cached_tokens": attempt.usage.cached,
        "output_tokens": attempt.usage.output,
        "thought_tokens": attempt.usage.thoughts,
        "estimated_cost": attempt.cost_usd,  # NULL: the price is unknown
        "latency_ms": attempt.latency_ms,
        "queue_ms": attempt.queue_ms,
        "retry_delay_s": attempt.retry_delay_s,
        "template_hash": tags.template_hash if tags else None,
        "package_version": package_version,
        "sdk_version": sdk_version,
        "created_at": attempt.started_at,
        "finished_at": attempt.finished_at,
    }


def result_row(
    batch_id: str, result: Result, cache_key: str, store_text: bool, finished_at: float
) -> dict[str, Any]:
    """A `result` row: a request's final outcome (its text and data only with `store_text`)."""
    failure = result.error
    return {
        "batch_id": batch_id,
        "request_id": result.id,
        "request_index": result.index,
        "cache_key": cache_key,
        "success": result.success,
        "cached": result.cached,
        "text": result.text if store_text else None,
        "text_hash": None if result.text is None else keys.sha256(result.text),
        "data": keys.data_json(result.data) if store_text else None,
        "error_kind": failure.kind if failure else None,
        "error_message": failure.message if failure else None,
        "finish_reason": result.finish_reason,
        "model": result.model,
        "model_version": result.model_version,
        "attempts": result.attempts,
        "input_tokens": result.usage.input,
        "cached_tokens": result.usage.cached,
        "output_tokens": result.usage.output,
        "thought_tokens": result.usage.thoughts,
        "estimated_cost": result.cost_usd,
        "latency_ms": result.latency_ms,
        "queue_ms": result.queue_ms,
        "finished_at": finished_at,
    }


class Recorder:
    """Listener + flusher for one batch. Call `close()` when the batch is over."""

    def __init__(
        self,
        db: Database,
        info: BatchInfo,
        *,
        flush_s: float = 0.25,
        heartbeat_s: float = 1.0,
        wait: LockWait | None = None,
    ) -> None:
        """`wait` is how the batch's first and last writes wait while another process holds
        the file (default: up to `LOG_WAIT_S`); the flusher waits as it says, but for as long
        as the batch runs: until the recorder closes, or `wait` gives up (the batch was
        cancelled)."""
        self.db = db
        self.info = info
        self.flush_s = flush_s
        self.heartbeat_s = heartbeat_s
        self._lock = threading.Lock()
        self._requests: list[dict[str, Any]] = []
        self._calls: list[dict[str, Any]] = []
        self._results: list[dict[str, Any]] = []
        self._notes: dict[str, list[dict[str, Any]]] = {table: [] for table in NOTE_TIMES}
        self._pending: dict[str, RequestTags] = {}
        self._counts = {"success": 0, "failure": 0, "not_run": 0, "cached": 0}
        self._tokens = [0, 0, 0, 0]  # input, output, thoughts, cached
        self._cost = CostTotal()
        self._models_used: set[str] = set()
        self._first: tuple[str, str | None] | None = None  # the first request's operation, project
        self._ending: BatchFinished | _Ending | None = None
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._due = threading.Event()  # flush now (the buffer is full, or closing)
        self._bounded_wait = wait or LockWait(LOG_WAIT_S)
        self._flusher_wait = replace(
            self._bounded_wait, timeout_s=math.inf, give_up=self._flusher_gives_up
        )
        self._drained = threading.Condition(self._lock)  # the flusher took the buffer
        self._flusher: threading.Thread | None = None
        self._flushing = False  # the flusher runs (guarded by the lock)
        self._last_heartbeat = 0.0

    # --- the engine's side ---------------------------------------------------------------

    def record_request(self, index: int, request: GenerationRequest, cache_key: str) -> None:
        """Write down a request as it is taken up (so `retry --failed` can rebuild it)."""
        row = request_row(self.info.batch_id, index, request, cache_key, self.info.store_text)
        pending = RequestTags(
            cache_key, request.operation, request.project_id, row["template_hash"]
        )
        with self._lock:
            self._raise_if_failed()
            self._wait_while_full()
            self._requests.append(row)
            self._pending[request.id] = pending
            self._first = self._first or (request.operation, request.project_id)

    def __call__(self, event: Event) -> None:
        if isinstance(event, BatchStarted):
            self._start(event)
        elif isinstance(event, AttemptFinished):
            self._record_attempt(event.attempt)
        elif isinstance(event, RequestFinished):
            self._record_result(event.result)
        elif isinstance(event, LimitLearned):
            self._record_learned(event)
        elif isinstance(event, ModelStateChanged):
            self._note(
                "model_event",
                {
                    "batch_id": self.info.batch_id,
                    "model": event.model,
                    "state": event.state,
                    "until_s": event.until_s,
                    "reason": event.reason[:1000],
                    "happened_at": time.time(),
                },
            )
        elif isinstance(event, BatchFinished):
            with self._lock:
                self._ending = event

    def _start(self, event: BatchStarted) -> None:
        info = self.info
        with self.db.write(wait=self._bounded_wait) as con:
            con.execute(
                "INSERT INTO batch_log (batch_id, mode, status, "
                "request_count, concurrency_strategy, concurrency_value, models, endpoint, "
                "cache_mode, store_text, package_version, sdk_version, pid, hostname, "
                "notices, simulated, budget_usd, max_attempts, started_at, heartbeat_at) "
                "VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                "to_timestamp(?), current_timestamp)",
                [
                    info.batch_id,
                    info.mode,
                    event.total,
                    event.concurrency,
                    event.max_in_flight,
                    list(event.models),
                    info.endpoint,
                    info.cache_mode,
                    info.store_text,
                    info.package_version,
                    info.sdk_version,
                    os.getpid(),
                    socket.gethostname(),
                    list(info.notices),
                    info.simulated,
                    info.budget_usd,
                    info.max_attempts,
                    event.started_at,
                ],
            )
        self._flusher = threading.Thread(
            target=self._flush_loop, name=f"scriptgen-recorder:{info.batch_id}", daemon=True
        )
        with self._lock:
            self._flushing = True
        self._flusher.start()

    def _record_attempt(self, attempt: Attempt) -> None:
        info = self.info
        with self._lock:
            self._raise_if_failed()
            tags = self._pending.get(attempt.request_id)
            self._models_used.add(attempt.model)
            self._calls.append(
                call_row(info.batch_id, attempt, tags, info.package_version, info.sdk_version)
            )

    def _record_result(self, result: Result) -> None:
        failure = result.error
        with self._lock:
            self._raise_if_failed()
            pending = self._pending.pop(result.id, None)
            kind = (
                "cached"
                if result.cached
                else "success"
                if result.success
                else "not_run"
                if failure and failure.kind == "not_run"
                else "failure"
            )
            self._counts[kind] += 1
            self._tokens[0] += result.usage.input
            self._tokens[1] += result.usage.output
            self._tokens[2] += result.usage.thoughts
            self._tokens[3] += result.usage.cached
            self._cost = self._cost.add(result.cost_usd)
            cache_key = pending.cache_key if pending else ""
            self._results.append(
                result_row(self.info.batch_id, result, cache_key, self.info.store_text, time.time())
            )

    def _record_learned(self, event: LimitLearned) -> None:
        """A working limit the engine changed, kept for the batch's quota identity (a later
        batch starts from it: store/limits.py). One it started from is not new knowledge, nor
        one another process learned (that process's log keeps it)."""
        if event.source in ("remembered", "shared"):
            return
        self._note(
            "limit_learned",
            {
                "batch_id": self.info.batch_id,
                "model": event.model,
                "metric": event.metric,
                "configured": event.configured,
                "learned": event.learned,
                "learned_at": time.time(),
                "source": event.source,
                "endpoint": self.info.endpoint,
                "key_fingerprint": self.info.key_fingerprint,
            },
        )

    def _note(self, table: str, row: dict[str, Any]) -> None:
        with self._lock:
            self._raise_if_failed()
            self._notes[table].append(row)

    def _raise_if_failed(self) -> None:
        """Raise the flusher's error, said once: the store's own already names the file."""
        error = self._error
        if error is None:
            return
        if isinstance(error, StoreError):
            raise StoreError(str(error)) from error
        raise StoreError(f"Writing the call log {self.db.path} failed: {error}") from error

    # --- the flusher's side --------------------------------------------------------------

    def _wait_while_full(self) -> None:
        """Backpressure: with the lock held, wait until the flusher has taken the buffer."""
        while (
            len(self._requests) + len(self._calls) + len(self._results) >= MAX_BUFFERED_ROWS
            and self._flushing
        ):
            self._due.set()
            self._drained.wait(timeout=1.0)
            self._raise_if_failed()

    def _flush_loop(self) -> None:
        try:
            while True:
                self._due.wait(self.flush_s)
                self._due.clear()
                if self._stop.is_set():
                    return
                try:
                    self.flush()
                except LogLocked:
                    return  # closing or cancelled while the file is held: close() takes over
                except Exception as exc:
                    with self._lock:
                        self._error = exc
                    return
        finally:
            with self._lock:  # whoever waits for room in the buffer stops waiting
                self._flushing = False
                self._drained.notify_all()

    def _flusher_gives_up(self) -> bool:
        return self._stop.is_set() or self._bounded_wait.give_up()

    def flush(self, *, final: bool = False) -> None:
        """Write what is buffered; refresh the batch's row (counts, heartbeat, ending) when a
        heartbeat is due and on the final flush.

        While another process holds the file, a flush waits for as long as the batch runs (the
        recorder's `close()` ends that wait), the final one up to the recorder's `wait`.
        """
        with self._lock:
            requests, self._requests = self._requests, []
            calls, self._calls = self._calls, []
            results, self._results = self._results, []
            notes, self._notes = self._notes, {table: [] for table in NOTE_TIMES}
            self._drained.notify_all()
            progress = self._progress_row()
            ending = self._ending if final and isinstance(self._ending, _Ending) else None
        now = time.monotonic()
        beat = final or now - self._last_heartbeat >= self.heartbeat_s
        if not (requests or calls or results or any(notes.values()) or beat):
            return
        try:
            with self.db.write(wait=self._bounded_wait if final else self._flusher_wait) as con:
                Database.insert(con, "request", requests)
                Database.insert(con, "ai_api_call", calls, CALL_TIMES)
                Database.insert(con, "result", results, RESULT_TIMES)
                for table, rows in notes.items():
                    Database.insert(con, table, rows, NOTE_TIMES[table])
                if beat:
                    self._update_batch(con, progress, ending)
        except BaseException:
            with self._lock:  # keep the rows: a later flush (or the error) must account for them
                self._requests[:0] = requests
                self._calls[:0] = calls
                self._results[:0] = results
                for table, rows in notes.items():
                    self._notes[table][:0] = rows
            raise
        if beat:
            self._last_heartbeat = now

    def _progress_row(self) -> dict[str, Any]:
        """The batch's figures so far (the seed's task progress); call with the lock held."""
        operation, project_id = self._first or (None, None)
        return {
            "success_count": self._counts["success"] + self._counts["cached"],
            "failure_count": self._counts["failure"],
            "not_run_count": self._counts["not_run"],
            "cached_count": self._counts["cached"],
            "input_tokens": self._tokens[0],
            "output_tokens": self._tokens[1],
            "thought_tokens": self._tokens[2],
            "cached_tokens": self._tokens[3],
            "estimated_cost": self._cost.usd,
            "unpriced_count": self._cost.unpriced,
            "models_used": sorted(self._models_used),
            "operation": operation,
            "project_id": project_id,
        }

    def _update_batch(self, con: Any, progress: dict[str, Any], ending: _Ending | None) -> None:
        # A batch's operation and project are its first request's; set once, then kept.
        assignments = [
            f"{column} = coalesce({column}, ?)"
            if column in ("operation", "project_id")
            else f"{column} = ?"
            for column in progress
        ]
        values = list(progress.values())
        if ending is not None:
            assignments += [
                "status = ?",
                "duration_ms = ?",
                "request_count = coalesce(?, request_count)",
                "finished_at = current_timestamp",
            ]
            duration_ms = None if ending.duration_s is None else ending.duration_s * 1000
            values += [ending.status, duration_ms, ending.total]
        con.execute(
            f"UPDATE batch_log SET {', '.join(assignments)}, heartbeat_at = current_timestamp "
            "WHERE batch_id = ?",
            [*values, self.info.batch_id],
        )

    def unlogged(self) -> list[str]:
        """The ids of the requests answered (and paid for, not served from the cache) whose
        results wait in the buffer: after a failed `close()`, those the log lacks."""
        with self._lock:
            return [
                row["request_id"] for row in self._results if row["success"] and not row["cached"]
            ]

    def close(self, *, failed: bool = False) -> None:
        """Stop the flusher and write everything left, ending the batch's row.

        A batch that raised (`failed=True`), or never said how it ended, is recorded as failed.
        """
        self._stop.set()
        self._due.set()
        if self._flusher is not None:
            self._flusher.join()
        with self._lock:
            ending = self._ending
            if ending is None or failed:
                self._ending = _Ending(
                    "failed",
                    ending.duration_s if ending else None,
                    ending.total if ending else None,
                )
            else:
                self._ending = _Ending(ending.status, ending.duration_s, ending.total)
        self.flush(final=True)


@dataclass(frozen=True, slots=True)
class _Ending:
    status: str
    duration_s: float | None
    total: int | None
