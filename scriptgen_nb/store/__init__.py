"""The call log: every attempt, every result, every batch, in DuckDB (DESIGN rule 7).

Only `database.py` imports duckdb. `schema.py` holds the migrations, `queries.py` the reports.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from ..engine.errors import ConfigurationError
from .database import MEMORY, Database, StoreError

ENV_DB = "SCRIPTGEN_DB"
DEFAULT_DB = "scriptgen.duckdb"
HEARTBEAT_S = 1.0  # a running batch's heartbeat_at is refreshed at least this often
STALE_AFTER_S = 10.0  # a "running" batch whose heartbeat is older than this has died


def default_db_path() -> str:
    """`SCRIPTGEN_DB`, else `scriptgen.duckdb` in the working directory."""
    return os.environ.get(ENV_DB) or str(Path.cwd() / DEFAULT_DB)


def open_database(path: str | os.PathLike[str] | None = None) -> Database:
    """The call log at `path` (None: the default file; ":memory:" allowed), migrated."""
    return Database(default_db_path() if path is None else path)


def purge(db: Database, older_than_days: float) -> int:
    """Delete every batch (and its requests, attempts, results) that ended before the cutoff.

    A batch still running (its heartbeat fresh) is kept whatever its age; one whose process
    died is judged by its last heartbeat. Returns the number of batches deleted.
    """
    if older_than_days < 0:
        raise ConfigurationError("older_than_days must not be negative")
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
        for table in ("result", "ai_api_call", "request", "batch_log"):
            con.execute(f"DELETE FROM {table} WHERE batch_id IN (SELECT unnest(?))", [doomed])
    return len(doomed)


__all__ = [
    "DEFAULT_DB",
    "ENV_DB",
    "HEARTBEAT_S",
    "MEMORY",
    "STALE_AFTER_S",
    "Database",
    "StoreError",
    "default_db_path",
    "open_database",
    "purge",
]
