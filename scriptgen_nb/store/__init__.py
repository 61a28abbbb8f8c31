"""The call log: every attempt, every result, every batch, in DuckDB (DESIGN rule 7).

Only `database.py` imports duckdb. `schema.py` holds the migrations, `queries.py` the reports,
`recorder.py` and `session.py` the writing side, `replay.py` the rebuilding of requests.
`limits.py` the learned limits kept per quota identity, `lock_wait.py` how a batch waits while
another process holds the file. `CallStore` is the handle users hold: the reports as methods
returning DataFrames.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pandas as pd

from ..engine.checks import check_number
from ..engine.errors import ConfigurationError
from ..engine.values import GenerationRequest
from . import limits, queries, replay
from .database import (
    BY_ARGUMENT,
    MEMORY,
    CallLogFailed,
    Database,
    LogLocked,
    StoreError,
    UnusableLog,
)
from .limits import REMEMBER_LIMITS_S
from .lock_wait import LockWait, waiting_up_to

ENV_DB = "SCRIPTGEN_DB"
MAX_AGE_DAYS = 1_000_000  # `purge`'s farthest cutoff, ~2,700 years back: a time DuckDB can hold
DEFAULT_DB = "scriptgen.duckdb"
HEARTBEAT_S = 1.0  # a running batch's heartbeat_at is refreshed at least this often
STALE_AFTER_S = 10.0  # a "running" batch whose heartbeat is older than this has died


def default_db_path() -> str:
    """`SCRIPTGEN_DB`, else `scriptgen.duckdb` in the working directory."""
    return os.environ.get(ENV_DB) or str(Path.cwd() / DEFAULT_DB)


def open_database(
    path: str | os.PathLike[str] | None = None,
    *,
    read_only: bool = False,
    wait: LockWait | None = None,
    named_by: str = BY_ARGUMENT,
) -> Database:
    """The call log at `path` (None: the default file; ":memory:" allowed), migrated; with
    `read_only`, an existing file opened for reading only, never changed (see `Database`);
    `wait` says how long its units of work wait while another process holds the file;
    `named_by` how the caller chose the path (`db=`; a command's `--db`), for its messages."""
    return Database(
        default_db_path() if path is None else path,
        read_only=read_only,
        wait=wait,
        named_by=named_by,
    )


def purge(db: Database, older_than_days: float) -> int:
    """Delete every batch (its requests, attempts, results, learned limits, Batch API jobs) that
    ended before the cutoff. A limit learned by a deleted batch is no longer remembered either.

    A batch still running (its heartbeat fresh) is kept whatever its age; one whose process
    died is judged by its last heartbeat. Returns the number of batches deleted.
    """
    check_number("older_than_days", older_than_days, low=0, high=MAX_AGE_DAYS, unit="days")
    cutoff = time.time() - older_than_days * 86_400
    with db.write() as con:
        doomed = [
            row[0]
            for row in con.execute(
                "SELECT batch_id FROM batch_log "
                "WHERE coalesce(finished_at, heartbeat_at, started_at) < to_timestamp(?) "
                "AND (status <> 'running' OR heartbeat_at < to_timestamp(?))",
                [cutoff, time.time() - STALE_AFTER_S],
            ).fetchall()
        ]
        # Project tables (script versions, image prompts) keep their batch_id as provenance
        # and outlive it: they are the user's work, not the log's.
        for table in (
            "result",
            "ai_api_call",
            "request",
            "limit_learned",
            "model_event",
            "batch_job",
            "batch_log",
        ):
            con.execute(f"DELETE FROM {table} WHERE batch_id IN (SELECT unnest(?))", [doomed])
    return len(doomed)


class CallStore:
    """The call log as users handle it: reports as DataFrames, read-only SQL, upkeep.

        log = CallStore()                 # ./scriptgen.duckdb, or SCRIPTGEN_DB, or a path
        log.usage_report(since="1h")      # the seed's report: per operation and model
        log.batches(); log.results(batch_id); log.errors(batch_id)
        log.limits(); log.forget_limits("gemini-3.8-flash")   # limits learned and remembered
        log.sql("SELECT model, count(*) FROM ai_api_call GROUP BY model")

    Times (`since`, `until`) take a datetime, an ISO string or a duration ago ("30m", "2d").
    `read_only=True` reads an existing log without ever writing (nor migrating) it, e.g. one on
    a read-only place: the reports and `sql` work, upkeep (`purge`, `forget_limits`) is refused.
    `log_wait_s`: how long to wait while another process holds the file (a batch's option of
    the same name; None: 30 s, unsaid). `named_by`: how the path was chosen, for the messages
    about one that cannot be used (`db=`; the commands say `--db`). An argument of the wrong
    kind (a batch id that is not text, a limit that is not a whole number) is a
    `ConfigurationError` naming it.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        read_only: bool = False,
        log_wait_s: float | None = None,
        named_by: str = BY_ARGUMENT,
    ) -> None:
        wait = None if log_wait_s is None else waiting_up_to(log_wait_s)
        self.db = open_database(path, read_only=read_only, wait=wait, named_by=named_by)

    def __repr__(self) -> str:
        return f"CallStore({self.db.path!r})"

    def usage_report(self, since: Any = None, until: Any = None) -> pd.DataFrame:
        return queries.usage_report(self.db, since, until)

    def costs(self, by: Any = ("model",), since: Any = None, until: Any = None) -> pd.DataFrame:
        return queries.costs(self.db, by, since, until)

    def batches(self, limit: int = 20) -> pd.DataFrame:
        return queries.batches(self.db, limit)

    def batch_summary(self, batch_id: str) -> pd.DataFrame:
        return queries.batch_summary(self.db, _text("batch_id", batch_id))

    def results(self, batch_id: str) -> pd.DataFrame:
        return queries.results(self.db, _text("batch_id", batch_id))

    def errors(self, batch_id: str | None = None) -> pd.DataFrame:
        return queries.errors(self.db, _text("batch_id", batch_id, optional=True))

    def model_events(self, batch_id: str | None = None) -> pd.DataFrame:
        """What happened to each model (parked, backing off, exhausted, cooling, gone)."""
        return queries.model_events(self.db, _text("batch_id", batch_id, optional=True))

    def learned_limits(self, batch_id: str | None = None) -> pd.DataFrame:
        """Every limit change the engine made, per batch, in the order learned (history)."""
        return queries.learned_limits(self.db, _text("batch_id", batch_id, optional=True))

    def limits(
        self, endpoint: str | None = None, key_fingerprint: str | None = None
    ) -> pd.DataFrame:
        """The remembered limits a later batch starts from (learned within the last
        `REMEMBER_LIMITS_S`, 7 days, and not forgotten), one row per quota identity, model and
        metric; None means every endpoint ("google" or a base URL) or every key fingerprint
        (`scriptgen_nb.engine.identity.key_fingerprint(key)`). Columns: model, metric, limit,
        source, configured, learned_at, expires_at, endpoint, fingerprint, batch_id."""
        return limits.remembered_limits(
            self.db,
            endpoint=_text("endpoint", endpoint, optional=True),
            key_fingerprint=_text("key_fingerprint", key_fingerprint, optional=True),
        )

    def forget_limits(
        self,
        model: str | None = None,
        endpoint: str | None = None,
        key_fingerprint: str | None = None,
    ) -> int:
        """Forget remembered limits (None: every model, endpoint, key), so later batches start
        from the catalogue again; returns how many were remembered. The history stays."""
        return limits.forget_limits(
            self.db,
            model=_text("model", model, optional=True),
            endpoint=_text("endpoint", endpoint, optional=True),
            key_fingerprint=_text("key_fingerprint", key_fingerprint, optional=True),
        )

    def throughput(
        self, batch_id: str | None = None, bucket_s: float | None = None
    ) -> pd.DataFrame:
        return queries.throughput(self.db, _text("batch_id", batch_id, optional=True), bucket_s)

    def latency(self, batch_id: str | None = None) -> pd.DataFrame:
        return queries.latency(self.db, _text("batch_id", batch_id, optional=True))

    def sql(self, query: str) -> pd.DataFrame:
        """Your own read-only query: SELECT only, no access to other files."""
        return queries.sql(self.db, _text("query", query))

    def failed_requests(self, batch_id: str) -> list[GenerationRequest]:
        """The batch's failed and unfinished requests, rebuilt, ready to run again."""
        return replay.stored_requests(self.db, _text("batch_id", batch_id))

    def purge(self, older_than_days: float) -> int:
        """Delete batches that ended more than `older_than_days` ago; returns how many."""
        return purge(self.db, older_than_days)


def _text(name: str, value: Any, *, optional: bool = False) -> Any:
    """`value`, when it is text (or None where that means "any"): ids, names and queries are
    compared with the log's text columns, where a number failed as DuckDB's conversion error."""
    if isinstance(value, str) or (value is None and optional):
        return value
    none = " (or None for any)" if optional else ""
    listed = "; `CallStore.batches()` lists the batch ids" if name == "batch_id" else ""
    raise ConfigurationError(
        f"{name}={value!r} ({type(value).__name__}) is not text: pass a string{none}{listed}."
    )


__all__ = [
    "BY_ARGUMENT",
    "DEFAULT_DB",
    "ENV_DB",
    "HEARTBEAT_S",
    "MEMORY",
    "REMEMBER_LIMITS_S",
    "STALE_AFTER_S",
    "CallLogFailed",
    "CallStore",
    "Database",
    "LockWait",
    "LogLocked",
    "StoreError",
    "UnusableLog",
    "default_db_path",
    "open_database",
    "purge",
]
