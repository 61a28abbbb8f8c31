"""Batch API jobs in the call log: intents, submitted jobs, their states, ingestion exactly once.

The `batch_job` table (migration 4) is what lets a Google batch job outlive the kernel that
submitted it. The protocol (docs/architecture.md, "The Batch API"):

1. `record_intents` writes the batch's `batch_log` row (mode `batch_api`, status `submitted`),
   its requests and one `batch_job` row per job in state `intent`, in one transaction, before
   any `batches.create` is called. Each job's `job_key` is derived from (batch id, chunk) and
   travels in the job's display name.
2. `mark_submitted` records the job's name once the service answered.
3. A crash between 1 and 2 leaves an intent without a name: the resumer lists the service's jobs
   and adopts the one whose display name carries the key (`batch_api.jobs`), so it is never
   submitted twice.
4. `ingest` writes a finished job's attempts and results and flips `ingested` in one
   transaction, guarded by `ingested = false`, so two resumers (or a crash mid-way) can never
   write a job's results twice or half.

Live and Batch API results share the `request`, `ai_api_call` and `result` tables; the rows here
have the recorder's shape. No duckdb here.
"""

from __future__ import annotations

import itertools
import os
import socket
import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .database import INSERT_ROWS, Database
from .recorder import CALL_TIMES, RESULT_TIMES  # the rows are the recorder's

INTENT = "intent"
TERMINAL_STATES = frozenset(
    {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"}
)
SUBMITTED = "submitted"  # batch_log.status while a batch's jobs are with the service


@dataclass(frozen=True, slots=True)
class JobRow:
    """One Batch API job as the log knows it."""

    job_key: str
    batch_id: str
    chunk: int
    display_name: str
    model: str
    endpoint: str
    input_mode: str
    request_ids: tuple[str, ...]
    model_spec: str = "{}"  # the ModelSpec as JSON: what prices its answers
    state: str = INTENT
    job_name: str | None = None
    input_file: str | None = None
    input_bytes: int | None = None
    submitted_at: float | None = None
    finished_at: float | None = None
    turnaround_s: float | None = None
    ingested: bool = False
    matched_by: str | None = None
    error: str | None = None

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def request_count(self) -> int:
        return len(self.request_ids)


_COLUMNS = (
    "job_key, batch_id, chunk, display_name, model, endpoint, input_mode, request_ids, "
    "model_spec, state, "
    "job_name, input_file, input_bytes, epoch(submitted_at), epoch(finished_at), turnaround_s, "
    "ingested, matched_by, error"
)


def _job(row: tuple[Any, ...]) -> JobRow:
    values = list(row)
    values[7] = tuple(values[7] or ())
    return JobRow(*values)


def record_intents(
    db: Database,
    batch: dict[str, Any],
    requests: Sequence[dict[str, Any]],
    jobs: Sequence[JobRow],
    decided: Sequence[dict[str, Any]] = (),
) -> None:
    """Write the batch, its requests, the results decided before any job (served from the
    cache, or left out by the budget: never submitted) and every job's intent in one
    transaction (step 1). A batch decided whole, with no job, ends here."""
    now = time.time()
    with db.write() as con:
        con.execute(
            "INSERT INTO batch_log (batch_id, operation, project_id, mode, status, request_count, "
            "concurrency_strategy, models, endpoint, cache_mode, store_text, package_version, "
            "sdk_version, pid, hostname, notices, simulated, started_at, heartbeat_at) VALUES "
            "(?, ?, ?, 'batch_api', ?, ?, 'batch_api', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
            "to_timestamp(?), to_timestamp(?))",
            [
                batch["batch_id"],
                batch.get("operation"),
                batch.get("project_id"),
                SUBMITTED,
                batch["request_count"],
                list(batch["models"]),
                batch["endpoint"],
                batch["cache_mode"],
                batch["store_text"],
                batch["package_version"],
                batch["sdk_version"],
                os.getpid(),
                socket.gethostname(),
                list(batch.get("notices", ())),
                bool(batch.get("simulated", False)),
                now,
                now,
            ],
        )
        Database.insert(con, "request", list(requests))
        Database.insert(con, "result", list(decided), RESULT_TIMES)
        for job in jobs:
            con.execute(
                "INSERT INTO batch_job (job_key, batch_id, chunk, display_name, model, model_spec, "
                "endpoint, input_mode, input_bytes, state, request_ids, request_count, intent_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, to_timestamp(?))",
                [
                    job.job_key,
                    job.batch_id,
                    job.chunk,
                    job.display_name,
                    job.model,
                    job.model_spec,
                    job.endpoint,
                    job.input_mode,
                    job.input_bytes,
                    INTENT,
                    list(job.request_ids),
                    job.request_count,
                    now,
                ],
            )
        if decided:  # the batch's figures count them; with no job, the batch ends here
            _refresh_batch(con, batch["batch_id"])


def mark_submitted(
    db: Database,
    job_key: str,
    job_name: str,
    state: str,
    submitted_at: float,
    input_file: str | None = None,
) -> None:
    """The service answered create (or the job was adopted from its list): step 2."""
    with db.write() as con:
        con.execute(
            "UPDATE batch_job SET job_name = ?, state = ?, submitted_at = to_timestamp(?), "
            "input_file = coalesce(?, input_file), checked_at = current_timestamp "
            "WHERE job_key = ?",
            [job_name, state, submitted_at, input_file, job_key],
        )


def mark_uploaded(db: Database, job_key: str, input_file: str) -> None:
    """A file job's JSONL is on the service: a resumed intent reuses it instead of re-uploading."""
    with db.write() as con:
        con.execute("UPDATE batch_job SET input_file = ? WHERE job_key = ?", [input_file, job_key])


def mark_state(
    db: Database,
    job_key: str,
    state: str,
    *,
    finished_at: float | None = None,
    turnaround_s: float | None = None,
    error: str | None = None,
) -> None:
    """A poll's news: the job's state, and when it ended how long it took."""
    with db.write() as con:
        con.execute(
            "UPDATE batch_job SET state = ?, checked_at = current_timestamp, "
            "finished_at = coalesce(to_timestamp(?), finished_at), "
            "turnaround_s = coalesce(?, turnaround_s), error = coalesce(?, error) "
            "WHERE job_key = ?",
            [state, finished_at, turnaround_s, error, job_key],
        )
        con.execute(
            "UPDATE batch_log SET heartbeat_at = current_timestamp "
            "WHERE batch_id = (SELECT batch_id FROM batch_job WHERE job_key = ?)",
            [job_key],
        )


def jobs(
    db: Database,
    *,
    batch_id: str | None = None,
    job: str | None = None,
    pending_only: bool = False,
) -> list[JobRow]:
    """Jobs of the log (newest batch first), of one batch, or the one named (key or name)."""
    where, params = [], []
    if batch_id is not None:
        where.append("batch_id = ?")
        params.append(batch_id)
    if job is not None:
        where.append("(job_key = ? OR job_name = ?)")
        params += [job, job]
    if pending_only:
        where.append("NOT ingested")
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    rows = db.rows(
        f"SELECT {_COLUMNS} FROM batch_job {clause} ORDER BY intent_at DESC, batch_id, chunk",
        params,
    )
    return [_job(r) for r in rows]


def batch_row(db: Database, batch_id: str) -> dict[str, Any] | None:
    """What resuming needs of a batch: its mode, endpoint (and whether it is simulated),
    ladder, cache mode and text policy."""
    rows = db.rows(
        "SELECT batch_id, mode, status, endpoint, models, cache_mode, store_text, request_count, "
        "epoch(started_at), coalesce(simulated, false) FROM batch_log WHERE batch_id = ?",
        [batch_id],
    )
    if not rows:
        return None
    names = ("batch_id", "mode", "status", "endpoint", "models", "cache_mode", "store_text")
    row = dict(zip(names, rows[0][:7], strict=True))
    row["request_count"] = rows[0][7]
    row["started_at"] = rows[0][8]
    row["simulated"] = bool(rows[0][9])
    return row


def request_indexes(db: Database, batch_id: str) -> dict[str, tuple[int, str]]:
    """Each request of a batch: its index and cache key."""
    rows = db.rows(
        "SELECT request_id, request_index, cache_key FROM request WHERE batch_id = ?", [batch_id]
    )
    return {request_id: (index, key) for request_id, index, key in rows}


def ingest(
    db: Database,
    job_key: str,
    outcomes: Iterable[tuple[dict[str, Any] | None, dict[str, Any]]],
    matched_by: str | None,
) -> bool:
    """Write a finished job's attempts and results once (step 4); False if already ingested.

    `outcomes` are (`ai_api_call` row or None when nothing was sent, `result` row) pairs,
    consumed and written `INSERT_ROWS` at a time inside the one transaction. The batch's
    figures are recomputed from its results, and a batch whose jobs are all ingested ends:
    `finished`, or `cancelled` / `failed` when a job was.
    """
    with db.write() as con:
        claimed = con.execute(
            "UPDATE batch_job SET ingested = true, ingested_at = current_timestamp, "
            "matched_by = ? WHERE job_key = ? AND NOT ingested RETURNING batch_id",
            [matched_by, job_key],
        ).fetchall()
        if not claimed:
            return False
        batch_id = claimed[0][0]
        pending = iter(outcomes)
        while part := list(itertools.islice(pending, INSERT_ROWS)):
            calls = [call for call, _ in part if call is not None]
            Database.insert(con, "ai_api_call", calls, CALL_TIMES)
            Database.insert(con, "result", [row for _, row in part], RESULT_TIMES)
        _refresh_batch(con, batch_id)
    return True


def _refresh_batch(con: Any, batch_id: str) -> None:
    con.execute(
        """
        UPDATE batch_log SET
            success_count = f.ok, failure_count = f.failed, not_run_count = f.not_run,
            cached_count = f.cached, input_tokens = f.tin, output_tokens = f.tout,
            thought_tokens = f.tthink, cached_tokens = f.tcached, estimated_cost = f.cost,
            unpriced_count = f.unpriced, models_used = f.used, heartbeat_at = current_timestamp
        FROM (
            SELECT count(*) FILTER (WHERE success) AS ok,
                   count(*) FILTER (WHERE NOT success AND error_kind IS DISTINCT FROM 'not_run')
                       AS failed,
                   count(*) FILTER (WHERE error_kind = 'not_run') AS not_run,
                   count(*) FILTER (WHERE cached) AS cached,
                   coalesce(sum(input_tokens), 0) AS tin, coalesce(sum(output_tokens), 0) AS tout,
                   coalesce(sum(thought_tokens), 0) AS tthink,
                   coalesce(sum(cached_tokens), 0) AS tcached,
                   coalesce(sum(estimated_cost), 0) AS cost,
                   count(*) FILTER (WHERE estimated_cost IS NULL) AS unpriced,
                   coalesce(list_sort(list(DISTINCT model) FILTER (WHERE model IS NOT NULL)), [])
                       AS used
            FROM result WHERE batch_id = ?
        ) AS f
        WHERE batch_id = ?
        """,
        [batch_id, batch_id],
    )
    (waiting,) = con.execute(
        "SELECT count(*) FROM batch_job WHERE batch_id = ? AND NOT ingested", [batch_id]
    ).fetchone()
    if waiting:
        return
    ended = {
        row[0]
        for row in con.execute(
            "SELECT DISTINCT state FROM batch_job WHERE batch_id = ?", [batch_id]
        ).fetchall()
    }
    status = (
        "failed"
        if "JOB_STATE_FAILED" in ended
        else "cancelled"
        if "JOB_STATE_CANCELLED" in ended
        else "finished"
    )
    con.execute(
        "UPDATE batch_log SET status = ?, finished_at = current_timestamp, "
        "duration_ms = 1000 * epoch(current_timestamp - started_at) WHERE batch_id = ?",
        [status, batch_id],
    )


def turnarounds(db: Database, endpoint: str, limit: int = 50) -> list[float]:
    """The measured create -> done times of the last succeeded jobs at `endpoint`."""
    rows = db.rows(
        "SELECT turnaround_s FROM batch_job WHERE endpoint = ? AND turnaround_s IS NOT NULL "
        "AND state = 'JOB_STATE_SUCCEEDED' ORDER BY finished_at DESC LIMIT ?",
        [endpoint, limit],
    )
    return [float(r[0]) for r in rows]


def jobs_out(db: Database, endpoint: str, lifetime_s: float) -> int:
    """Jobs at `endpoint` created within `lifetime_s` (the service's job lifetime) and not
    ended when last seen: the service's queue that a new job joins."""
    terminal = ", ".join(f"'{state}'" for state in sorted(TERMINAL_STATES))
    rows = db.rows(
        "SELECT count(*) FROM batch_job WHERE endpoint = ? AND job_name IS NOT NULL "
        f"AND state NOT IN ({terminal}) AND epoch(submitted_at) > ?",
        [endpoint, time.time() - lifetime_s],
    )
    return int(rows[0][0])


def median_turnaround_s(db: Database, endpoint: str) -> tuple[float, int] | None:
    """The median measured turnaround at `endpoint` and how many jobs it rests on."""
    measured = turnarounds(db, endpoint)
    if not measured:
        return None
    return statistics.median(measured), len(measured)


def logged_requests(db: Database, batch_id: str) -> list[tuple[Any, ...]]:
    """A batch's requests as logged: id, index, cache key, operation, project, template hash,
    schema (the Pydantic class when it still imports, else the JSON Schema), metadata."""
    from .replay import _schema

    rows = db.rows(
        "SELECT request_id, request_index, cache_key, operation, project_id, template_hash, "
        "response_schema, schema_name, config FROM request WHERE batch_id = ? "
        "ORDER BY request_index",
        [batch_id],
    )
    return [
        (rid, index, key, op, project, template, _schema(schema, name), _metadata(config))
        for rid, index, key, op, project, template, schema, name, config in rows
    ]


def _metadata(config: str | None) -> dict[str, Any]:
    import json

    stored = json.loads(config) if config else {}
    metadata = stored.get("metadata", {}) if isinstance(stored, dict) else {}
    return metadata if isinstance(metadata, dict) else {}


def logged_results(db: Database, batch_id: str) -> list[tuple[Any, ...]]:
    """A batch's results as logged, in request order (for `resume` in another process)."""
    return db.rows(
        "SELECT request_id, request_index, success, cached, text, error_kind, error_message, "
        "finish_reason, model, model_version, attempts, input_tokens, output_tokens, "
        "thought_tokens, coalesce(cached_tokens, 0), estimated_cost, latency_ms, queue_ms "
        "FROM result WHERE batch_id = ? "
        "ORDER BY request_index",
        [batch_id],
    )
