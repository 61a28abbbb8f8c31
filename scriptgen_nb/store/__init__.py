"""The call log: every attempt, every result, every batch, in DuckDB (DESIGN rule 7).

Only `database.py` imports duckdb. `schema.py` holds the migrations, `queries.py` the reports.
"""

from __future__ import annotations

import os
from pathlib import Path

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
]
