"""The one place that imports duckdb: opening the log file, retrying on a lock, migrating.

DuckDB lets one process at a time open a file for writing, so the log never holds the file
longer than one unit of work: `write()` and `connect()` attach it, run and detach, retrying with
backoff while another process (a second kernel, `scriptgen stats`) holds the lock, for as long
as their `LockWait` says (`lock_wait.py`; by default `lock_timeout_s`). Attaching to
an in-memory DuckDB kept for the store's life costs ~1.5 ms where opening a new connection to
the file costs ~20 ms (DuckDB builds a whole database instance each time), which the recorder
pays four times a second. `:memory:` keeps one connection for the store's life instead. External
access is off: the log's SQL may touch the log's own files and nothing else, and user SQL
(`sandboxed_select`) must not be able to reach any other.

Reads attach the file read-only, so a log on a read-only place can be read; a `Database` opened
`read_only=True` never writes (it checks the schema instead of migrating it). Every failure of
DuckDB comes out as a `StoreError` saying which file, what went wrong (a damaged file, a
read-only place, a lock) and what to do; a user's query that fails is a `ConfigurationError`.
An interrupt (Ctrl-C, or a signal raised as one) that lands while DuckDB runs a statement comes
out as the `KeyboardInterrupt` it was, not as DuckDB's "Query interrupted" (`_interrupts`).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import random
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from ..engine.errors import BatchInterrupted, ConfigurationError, ScriptgenError
from ..engine.values import Result, surrogate_problem
from .lock_wait import LOG_WAIT_SETTINGS, LockWait
from .schema import MIGRATIONS

MEMORY = ":memory:"
_ALIAS = "scriptgen_log"  # the attached log's catalog name, the default while a unit of work runs
_OWN_FILES = ("", ".wal", ".wal.checkpoint")  # what DuckDB writes beside a database file
# Every flush checkpoints, and a checkpoint rewrites the table's last, partly filled row group:
# with DuckDB's default of 122,880 rows that transient grew with the log to ~400 MB at 250,000
# requests; at 16,384 it stays under ~40 MB (bench/, scenario 6). Writes run on one thread: they
# are small, and more threads took the batch's event loop CPU on a small machine (a 250,000-row
# log written in 15 s of CPU instead of 22). Reports scan the whole log and keep every core.
ROW_GROUP_ROWS = 16_384
INSERT_ROWS = 10_000  # rows per DataFrame handed to one INSERT (see `Database.insert`)
_WRITE_THREADS = 1
_READ_THREADS = max(1, os.cpu_count() or 1)
# The in-memory log's one connection: nothing outside it is reachable, and its settings cannot
# be changed, not even by a function a user's SELECT calls (enable_logging() did).
_CONFIG: dict[str, str | bool | int | float | list[str]] = {
    "enable_external_access": False,
    "lock_configuration": True,
}
# A user query's own DuckDB instance (`Database._sandbox`): no extension loaded or installed.
_SANDBOX_CONFIG: dict[str, str | bool | int | float | list[str]] = {
    "autoload_known_extensions": False,
    "autoinstall_known_extensions": False,
    "allow_community_extensions": False,
    "threads": _READ_THREADS,
}
_READ_ONLY_STATEMENTS = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}
_ANALYZE = re.compile(r"\bANALY[SZ]E\b", re.IGNORECASE)
# The table functions a user's SELECT may call: they make rows or describe the catalogue. Every
# other one is refused, those of later DuckDB versions too: some act on the instance
# (enable_logging() to a file aborted the process at the next query, enable_profiling(),
# truncate_duckdb_logs(), checkpoint()), some run SQL given as text (query(),
# json_execute_serialized_sql()), some read files or Python objects.
_READING_TABLE_FUNCTIONS = frozenset(
    {
        *("range", "generate_series", "unnest", "repeat", "repeat_row", "summary"),
        *("json_each", "json_tree", "histogram", "histogram_values"),
        *("duckdb_columns", "duckdb_constraints", "duckdb_databases", "duckdb_dependencies"),
        *("duckdb_functions", "duckdb_indexes", "duckdb_keywords", "duckdb_schemas"),
        *("duckdb_settings", "duckdb_tables", "duckdb_types", "duckdb_views"),
        *("pragma_table_info", "pragma_storage_info", "pragma_database_size", "pragma_version"),
        *("pragma_show", "pg_timezone_names", "icu_calendar_names"),
    }
)
_ACTING_SCALARS = frozenset({"nextval", "setval", "setseed", "write_log"})  # not pure reads
# What DuckDB says when a file's blocks do not hold what it wrote, or are not there at all (a
# damaged file; one cut short: "Could not read enough bytes from file").
_DAMAGE = re.compile(
    r"corrupt|checksum|invalidated|deserializ|could not read enough bytes", re.IGNORECASE
)
_NOT_DUCKDB = "not a valid DuckDB database file"  # DuckDB's words for a file of another kind
# What DuckDB raises (a RuntimeError, no context) when a KeyboardInterrupt is raised while a
# statement runs: Ctrl-C, or SIGTERM / SIGHUP as the command line raises them (cli/signals.py).
_INTERRUPTED = "Query interrupted"
# How a library caller names another log file; a command passes its own words (`--db`).
BY_ARGUMENT = "db="
_BY_ARGUMENT_SAID = "db= (or set SCRIPTGEN_DB to)"


_PROCESS_LOCK = threading.RLock()


@contextmanager
def _interrupts() -> Iterator[None]:
    """Give back an interrupt DuckDB swallowed: a `KeyboardInterrupt` raised (by Ctrl-C or a
    signal handler) while a statement runs comes out of DuckDB as `RuntimeError("Query
    interrupted")`, which every caller would take for a failure (exit 1 instead of 143) or not
    catch at all. Raised again as `KeyboardInterrupt`, it takes the Ctrl-C path everywhere."""
    try:
        yield
    except RuntimeError as exc:
        if type(exc) is not RuntimeError or str(exc) != _INTERRUPTED:
            raise
        raise KeyboardInterrupt from exc


def schema_version() -> int:
    """The schema version this scriptgen_nb reads and writes: its latest migration's."""
    return max(step.version for step in MIGRATIONS)


class StoreError(ScriptgenError):
    """The call log cannot be read or written; the message says why and what to do."""


class UnusableLog(StoreError, ConfigurationError):
    """The path given for the call log cannot be one: a folder, a place that cannot be written,
    a file that is not DuckDB or not a call log, a log of a schema this version cannot use.
    Unlike a damaged log, the fix is another path (or another version): the commands treat it
    as a usage error of their `--db` (one line; exit status 2)."""


class LogLocked(StoreError):
    """Another process held the call log's file for longer than this one was to wait."""


class CallLogFailed(BatchInterrupted):
    """Writing the call log failed (a full disk, a lost file mid-batch; or, at its end, the
    file still held by another process after `log_wait_s`, or when the batch was stopped
    while it waited): nothing more was sent.

    `.results` holds every request's result, kept in memory: the finished ones as they came
    back, the rest not run; `.cause` is the store's error; `.unlogged` the ids of the requests
    answered (and paid for) whose results the log could not take: they are in `.results` only,
    and a re-run or a retry would send them again.
    """

    def __init__(
        self, results: Sequence[Result], cause: BaseException, unlogged: Sequence[str] = ()
    ) -> None:
        super().__init__(results, f"The call log could not be written ({cause})")
        self.cause = cause
        self.unlogged = tuple(unlogged)


class Database:
    """A DuckDB file (or `:memory:`) holding the call log, migrated to the current schema.

    `read_only=True` opens an existing file for reading only: it is never written (nor
    migrated), so a log on a read-only place can be read; one whose schema is older than this
    version's is refused, saying how to migrate it. An in-memory log is new, so it is always
    migrated.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        lock_timeout_s: float = 30.0,
        read_only: bool = False,
        wait: LockWait | None = None,
        check_only: bool = False,
        named_by: str = BY_ARGUMENT,
    ) -> None:
        """`wait` is how units of work without their own wait for another process to let go
        of the file (default: up to `lock_timeout_s`); opening (migrating) is one of them.
        `check_only`: check that a batch could log here, writing nothing (`check_usable`).
        `named_by`: how the caller chose the path (`db=`, or a command's `--db`), which the
        messages about an unusable path tell the user to change."""
        if not isinstance(path, str | os.PathLike) or not str(path).strip():
            raise ConfigurationError(
                f"The call log must be a file path or ':memory:', not {path!r}; pass db=False "
                "to log nothing."
            )
        self.path = str(path)
        self.named_by = _BY_ARGUMENT_SAID if named_by == BY_ARGUMENT else named_by
        problem = surrogate_problem(self.path, f"The call log's path {self.path!r}")
        if problem is not None:  # bytes that were not UTF-8 (a command line's): DuckDB refuses
            raise ConfigurationError(f"{problem}; pass a path that is UTF-8 text.")
        self.lock_timeout_s = lock_timeout_s
        self.read_only = read_only and self.path != MEMORY
        self.wait = wait or LockWait(lock_timeout_s)
        self._memory: duckdb.DuckDBPyConnection | None = None
        self._memory_lock = threading.Lock()
        self._host: duckdb.DuckDBPyConnection | None = None  # attaches the file per unit of work
        self._host_threads = _READ_THREADS
        if self.path == MEMORY:
            self._memory = duckdb.connect(MEMORY, config=_CONFIG)
        else:
            self._check_location(Path(self.path))
        if self.read_only:
            self._check_existing(Path(self.path))
            self.check_schema()
        elif check_only:
            self.check_usable()
        else:
            self.migrate()

    def _host_connection(self) -> duckdb.DuckDBPyConnection:
        """The in-memory DuckDB that attaches the log file; it may reach the log's files only."""
        if self._host is None:
            host = duckdb.connect(MEMORY, config={"threads": _READ_THREADS})
            self._confine(host)
            self._host = host
        return self._host

    def _confine(self, con: duckdb.DuckDBPyConnection) -> None:
        """Let `con` reach the log's own files and no other file, URL or environment variable."""
        con.execute("SET allowed_paths = ?", [[self.path + end for end in _OWN_FILES]])
        con.execute("SET enable_external_access = false")

    def __repr__(self) -> str:
        return f"Database({self.path!r}{', read_only=True' if self.read_only else ''})"

    def _check_existing(self, path: Path) -> None:
        """Reading needs a log to read: opening a missing file read-only would not create it."""
        if not path.is_file():
            raise UnusableLog(
                f"No call log at {path} to read; run a batch first, or pass {self.named_by} "
                "another path."
            )

    def _check_location(self, path: Path) -> None:
        """Fail before any API call when the file cannot be created where asked."""
        parent = path.parent
        for ancestor in (parent, *parent.parents):
            if ancestor.exists():
                if not ancestor.is_dir():
                    raise UnusableLog(
                        f"Cannot create the call log {path}: {ancestor} is a file, not a folder. "
                        f"Pass {self.named_by} a path in a folder you can write to."
                    )
                break
        if not parent.exists():
            raise UnusableLog(
                f"Cannot create the call log {path}: the folder {parent} does not exist. "
                f"Create it or pass {self.named_by} another path."
            )
        if path.exists() and not path.is_file():
            raise UnusableLog(
                f"The call log path {path} is a folder, not a file: pass {self.named_by} a file "
                f"in it (e.g. {path / 'scriptgen.duckdb'})."
            )

    def check_usable(self) -> None:
        """Refuse, writing nothing, a log a batch could not use: one on a read-only place, or a
        file that is not a call log this version can write (an older schema is fine: a batch
        migrates it). Lets a command say so before it starts an emulator or sends a request."""
        self._check_writable()
        if Path(self.path).exists():
            with self.connect() as con:
                self._applied_versions(con)

    # --- connections -----------------------------------------------------------------------

    @contextmanager
    def connect(self, *, wait: LockWait | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection for one unit of reading, the file attached read-only (so a log on a
        read-only place can be read); a transaction is up to the caller. DuckDB's own errors
        (a damaged file) come out as `StoreError`. `wait` says how long to wait while another
        process holds the file (default: `self.wait`)."""
        with self._unit(read_only=True, threads=_READ_THREADS, wait=wait) as connection:
            try:
                yield connection
            except duckdb.Error as exc:
                raise self._failure("Reading", exc) from exc

    @contextmanager
    def _unit(
        self, *, read_only: bool, threads: int, wait: LockWait | None = None
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        with _interrupts():
            if self._memory is not None:
                with self._memory_lock:
                    cursor = self._memory.cursor()
                    try:
                        yield cursor
                    finally:
                        cursor.close()
                return
            connection = self._attach_when_free(read_only, threads, wait or self.wait)
            try:
                yield connection
            finally:
                try:
                    self._detach(connection, writing=not read_only)
                finally:
                    _PROCESS_LOCK.release()

    @contextmanager
    def write(self, *, wait: LockWait | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection inside one transaction: committed at the end, rolled back on error.

        A log opened read-only, or on a read-only place, is refused before anything runs.
        DuckDB's own errors (a full disk, a file that went away, a damaged file) come out as
        `StoreError`; `wait` as in `connect`.
        """
        self._check_writable()
        with self._unit(read_only=False, threads=_WRITE_THREADS, wait=wait) as con:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
                con.execute("COMMIT")
            except BaseException as exc:
                with contextlib.suppress(duckdb.Error):  # the transaction may be gone already
                    con.execute("ROLLBACK")
                if isinstance(exc, duckdb.Error):
                    raise self._failure("Writing", exc) from exc
                raise

    def _check_writable(self) -> None:
        """Refuse to write a log opened for reading, or one on a read-only place, saying so (a
        writable attach there fails with an error that reads like a damaged file)."""
        if self.read_only:
            raise StoreError(
                f"The call log {self.path} was opened read-only, for reading: it cannot be "
                "changed. Open it without read_only=True to write to it."
            )
        reason = None if self._memory is not None else self._read_only_place()
        if reason is not None:
            raise UnusableLog(
                f"The call log {self.path} is on a read-only place ({reason}): it cannot be "
                f"written. To read it, open it read-only (`scriptgen stats --db {self.path}`, "
                f"`CallStore(path, read_only=True)`); to log a batch, pass {self.named_by} a "
                "writable path."
            )

    def _read_only_place(self) -> str | None:
        """Why the log cannot be written where it is, or None. DuckDB rewrites the file and
        keeps a `.wal` beside it, so the file and its folder must both be writable; the check
        is the kernel's (`access(2)`), which knows read-only mounts and immutable files even
        for root, for whom modes alone mean nothing."""
        path = Path(self.path)
        if path.exists() and not os.access(path, os.W_OK):
            return f"the file {path} cannot be written"
        folder = path.parent
        if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
            return f"its folder {folder} cannot be written"
        return None

    def _use_threads(self, threads: int) -> None:
        """Set the host's thread count for the next unit of work (~0.3 ms, only on a change)."""
        if threads != self._host_threads:
            self._host_connection().execute(f"SET threads = {threads}")
            self._host_threads = threads

    def _attach_when_free(
        self,
        read_only: bool,
        threads: int,
        wait: LockWait,
        host: duckdb.DuckDBPyConnection | None = None,
    ) -> duckdb.DuckDBPyConnection:
        """`_attach`, tried with backoff while the file is held, as `wait` says; returns holding
        the process lock, which `_unit` lets go once the file is detached.

        One unit of work at a time in this process: DuckDB 2.0.1 loses its `pandas_scan`
        function when one thread opens the file while another's connection registers a
        DataFrame (reproduced with two plain threads), which the recorder's inserts do. The
        lock is let go between tries, so this process's other units (a cache lookup, the
        recorder's flush) wait for the file on their own terms, not behind each other.
        """
        started = time.monotonic()
        delay = 0.01
        blocked = False
        while True:
            _PROCESS_LOCK.acquire()
            try:
                self._use_threads(threads)
                attached = self._attach(read_only=read_only, host=host)
            except BaseException:
                _PROCESS_LOCK.release()
                raise
            if not isinstance(attached, duckdb.Error):
                if blocked:
                    wait.waited(self.path, None)
                return attached
            _PROCESS_LOCK.release()
            blocked = True
            waited = time.monotonic() - started
            wait.waited(self.path, waited)
            stopped = wait.give_up()
            if waited >= wait.timeout_s or stopped:
                wait.waited(self.path, None)
                raise self._held_too_long(waited, attached, stopped=stopped) from attached
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 0.25)

    def _held_too_long(self, waited_s: float, exc: duckdb.Error, *, stopped: bool) -> LogLocked:
        """The file was still held after the whole wait, or (`stopped`) when the one waiting
        gave up early: its batch was cancelled (Ctrl-C, a signal, the Cancel button)."""
        if stopped:
            return LogLocked(
                f"Stopped waiting for the call log {self.path} after {waited_s:.1f}s: the batch "
                "was stopped while another process held the file"
            )
        return LogLocked(
            f"Cannot open the call log {self.path}: another process held it all the "
            f"{waited_s:.1f}s this one waited ({exc}). Close what holds it open (a long "
            f"query, `scriptgen stats`, another kernel) or pass {self.named_by} another file; "
            f"a batch waits for it as long as you set ({LOG_WAIT_SETTINGS})."
        )

    def _attach(
        self, *, read_only: bool = False, host: duckdb.DuckDBPyConnection | None = None
    ) -> duckdb.DuckDBPyConnection | duckdb.Error:
        """One try: a cursor of the host (`host`, or this log's own) with the log attached and
        made its default catalog, or the error saying the file is held (by another process, or
        by a connection of this one opened with another configuration). Any other error is a
        `StoreError`."""
        cursor = (host or self._host_connection()).cursor()
        options = f" (ROW_GROUP_SIZE {ROW_GROUP_ROWS}{', READ_ONLY' if read_only else ''})"
        try:
            cursor.execute(f"ATTACH ? AS {_ALIAS}{options}", [self.path])
        except (duckdb.IOException, duckdb.ConnectionException) as exc:
            cursor.close()
            if isinstance(exc, duckdb.IOException) and "lock" not in str(exc).lower():
                raise self._unopenable(exc) from exc
            return exc
        except duckdb.Error as exc:
            cursor.close()
            # E.g. a SQLite file, for which DuckDB would load an extension (refused here).
            raise self._unopenable(exc) from exc
        except BaseException:
            cursor.close()
            raise
        try:
            cursor.execute(f"USE {_ALIAS}")
        except BaseException:
            cursor.close()
            raise
        return cursor

    def _detach(self, cursor: duckdb.DuckDBPyConnection, *, writing: bool) -> None:
        """Release the file (DuckDB checkpoints it after a write), so another process may
        open it."""
        try:
            cursor.execute("USE memory")
            cursor.execute(f"DETACH {_ALIAS}")
        except duckdb.Error as exc:
            raise self._failure("Writing" if writing else "Reading", exc) from exc
        finally:
            cursor.close()

    # --- schema ----------------------------------------------------------------------------

    def _unopenable(self, exc: duckdb.Error) -> StoreError:
        """A file DuckDB cannot open: damaged (a `StoreError`), or some other kind of file (an
        `UnusableLog`: the path is wrong, not the disk)."""
        said = str(exc)
        damaged = _DAMAGE.search(said) and _NOT_DUCKDB not in said  # (its path may say "corrupt")
        return (StoreError if damaged else UnusableLog)(self._unreadable(exc))

    def _unreadable(self, exc: BaseException) -> str:
        return (
            f"The call log {self.path} cannot be opened: it is not a DuckDB database this "
            f"version can read ({exc}). It may be damaged, another kind of file, or written by "
            f"a newer DuckDB. {self._move_aside()}"
        )

    def _damaged(self, exc: BaseException) -> str:
        return (
            f"The call log {self.path} is damaged: DuckDB opened it but cannot read all of it "
            f"({exc}). {self._move_aside()}"
        )

    def _move_aside(self) -> str:
        return f"Nothing was written to it: move it aside, or pass {self.named_by} another path."

    def _failure(self, doing: str, exc: duckdb.Error) -> StoreError:
        """DuckDB's error while `doing` ("Reading", "Writing") the log, as a `StoreError`: a
        damaged file says so (as one DuckDB cannot open at all does), anything else says what
        failed."""
        if _DAMAGE.search(str(exc)):
            return StoreError(self._damaged(exc))
        return StoreError(f"{doing} the call log {self.path} failed: {exc}")

    def migrate(self) -> list[int]:
        """Apply the migrations this file has not seen yet; returns their versions.

        A file that is not a call log, or one a newer scriptgen_nb migrated further than this
        one knows, is refused with a `StoreError` and left exactly as it was.
        """
        with self.write() as con:
            done = self._applied_versions(con)
            con.execute(
                "CREATE TABLE IF NOT EXISTS schema_migration ("
                " version INTEGER PRIMARY KEY, name VARCHAR, applied_at TIMESTAMPTZ)"
            )
            applied = []
            for step in MIGRATIONS:
                if step.version in done:
                    continue
                con.execute(step.sql)
                con.execute(
                    "INSERT INTO schema_migration VALUES (?, ?, current_timestamp)",
                    [step.version, step.name],
                )
                applied.append(step.version)
        return applied

    def check_schema(self) -> None:
        """Refuse, without changing it, a file that is not a call log this version can read
        as it is: another database, a newer schema, or an older one (reading never migrates,
        so that a log on a read-only place, or one another version still writes, stays as it
        is; `scriptgen migrate` migrates it)."""
        with self.connect() as con:
            done = self._applied_versions(con)
        missing = [step.version for step in MIGRATIONS if step.version not in done]
        if missing:
            raise UnusableLog(
                f"The call log {self.path} has an older schema (version {max(done, default=0)}; "
                f"this scriptgen_nb reads version {schema_version()}), and reading never changes "
                f"the file. Migrate it with `scriptgen migrate --db {self.path}` (that writes "
                "to it: copy it to a writable place first if it is on a read-only one), then "
                "read it again."
            )

    def _applied_versions(self, con: duckdb.DuckDBPyConnection) -> set[int]:
        """The schema versions the attached file has seen (none: a new, empty file); one that is
        not a call log, or a newer version's, raises a `StoreError`."""
        tables = {
            row[0]
            for row in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()"
            ).fetchall()
        }
        if tables and "schema_migration" not in tables:
            raise UnusableLog(
                f"{self.path} is a DuckDB database but not a scriptgen_nb call log (it holds "
                f"{', '.join(sorted(tables)[:5])} and no schema_migration table). It was "
                f"left untouched: pass {self.named_by} another path."
            )
        if not tables:
            return set()
        done = {row[0] for row in con.execute("SELECT version FROM schema_migration").fetchall()}
        if max(done, default=0) > schema_version():
            raise UnusableLog(
                f"The call log {self.path} was written by a newer scriptgen_nb (schema "
                f"version {max(done)}; this one knows versions up to {schema_version()}). Upgrade "
                f"scriptgen_nb (pip install -U scriptgen_nb), or pass {self.named_by} another "
                "path. The file was left untouched."
            )
        return done

    # --- writing ---------------------------------------------------------------------------

    @staticmethod
    def insert(
        con: duckdb.DuckDBPyConnection,
        table: str,
        rows: Sequence[dict[str, Any]],
        epoch_columns: frozenset[str] = frozenset(),
    ) -> None:
        """Insert many rows at once (as a registered DataFrame: far faster than executemany),
        `INSERT_ROWS` at a time so a large ingestion never holds all its rows as one frame.

        `epoch_columns` hold seconds since the epoch and are stored as timestamps.
        """
        if not rows:
            return
        columns = list(rows[0])  # every row of one insert has the same keys
        selected = ", ".join(
            f'to_timestamp("{c}")' if c in epoch_columns else f'"{c}"' for c in columns
        )
        quoted = ", ".join(f'"{c}"' for c in columns)
        for start in range(0, len(rows), INSERT_ROWS):
            frame = pd.DataFrame(list(rows[start : start + INSERT_ROWS]), columns=columns)
            con.register("incoming_rows", frame)
            try:
                con.execute(f"INSERT INTO {table} ({quoted}) SELECT {selected} FROM incoming_rows")
            except duckdb.Error:
                # The failed INSERT aborted the transaction, which refuses the unregister too:
                # the INSERT's own error is the one to tell.
                with contextlib.suppress(duckdb.Error):
                    con.unregister("incoming_rows")
                raise
            con.unregister("incoming_rows")

    # --- reading ---------------------------------------------------------------------------

    def frame(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        """Run one of the store's own queries and return a DataFrame."""
        with self.connect() as con:
            return con.execute(sql, list(params)).df()

    def rows(
        self, sql: str, params: Sequence[Any] = (), *, wait: LockWait | None = None
    ) -> list[tuple[Any, ...]]:
        """Run one of the store's own queries and return plain tuples (`wait` as in `connect`)."""
        with self.connect(wait=wait) as con:
            return con.execute(sql, list(params)).fetchall()

    def sandboxed_select(self, sql: str) -> pd.DataFrame:
        """Run a user's read-only query: SELECT (or EXPLAIN) statements that only read.

        Anything else is refused before it runs (`refusals`), and so is more than one
        statement (DuckDB would show the last one's rows only). On a file, what passes runs on a
        DuckDB instance of its own (`_sandbox`): the log attached read-only, no other file
        reachable, the configuration locked, closed afterwards; so no user SQL can write, change
        the state of the store's own connections, or take the process down with it. The
        in-memory log has one connection, whose settings are locked from the start; there the
        query runs in a transaction that is rolled back (a write hidden in a SELECT, `WITH d AS
        (DELETE ... RETURNING *)`, runs but does not stay). A query DuckDB rejects is a
        `ConfigurationError`; a log that cannot be read is a `StoreError`.
        """
        refused = refusals(sql)
        if refused:
            raise ConfigurationError(
                "Only SELECT queries that read the call log may run on it; refused: "
                f"{', '.join(refused)}."
            )
        count = len(duckdb.extract_statements(sql))
        if count > 1:  # DuckDB would run them all and return the last one's rows only
            raise ConfigurationError(
                f"{count} SQL statements given: run one query at a time (a `;` inside a quoted "
                "string is fine)."
            )
        if self._memory is None:
            with _PROCESS_LOCK, self._sandbox() as con:
                return self._user_frame(con, sql)
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                return self._user_frame(con, sql)
            finally:
                con.execute("ROLLBACK")

    @contextmanager
    def _sandbox(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A DuckDB instance for one user query: the log attached read-only and made the default
        catalog, nothing else reachable, no extension loadable, the configuration locked (DuckDB
        then refuses enable_logging(), enable_profiling() and any SET). Closed afterwards, so
        nothing the query changed in the instance outlives it. ~20 ms: a user's query can
        afford what the recorder's four writes a second could not."""
        con = duckdb.connect(MEMORY, config=_SANDBOX_CONFIG)
        try:
            with _interrupts():
                self._confine(con)
                # Returns holding the process lock, as every unit of work does (see the method).
                self._attach_when_free(True, _READ_THREADS, self.wait, host=con).close()
                try:
                    con.execute(f"USE {_ALIAS}")
                    con.execute("SET lock_configuration = true")
                    yield con
                finally:
                    _PROCESS_LOCK.release()
        finally:
            con.close()

    def _user_frame(self, con: duckdb.DuckDBPyConnection, sql: str) -> pd.DataFrame:
        """The rows of a user's query. DuckDB's complaint about the query is the user's to fix
        (`ConfigurationError`); a damaged log is the store's (`StoreError`)."""
        try:
            return con.execute(sql).df()
        except duckdb.Error as exc:
            if _DAMAGE.search(str(exc)):
                raise StoreError(self._damaged(exc)) from exc
            raise ConfigurationError(f"The query failed: {exc}") from exc


def refusals(sql: str) -> list[str]:
    """What in a user's SQL may not run on the call log, in order: statements other than
    SELECT and EXPLAIN, EXPLAIN ANALYZE (it runs what it explains), and calls of functions that
    do more than read (`_READING_TABLE_FUNCTIONS`, `_ACTING_SCALARS`). SQL that does not parse,
    or holds no statement, raises a `ConfigurationError`."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise ConfigurationError(f"The SQL does not parse: {exc}") from exc
    if not statements:
        raise ConfigurationError("No SQL statement given.")
    refused = [s.type.name for s in statements if s.type not in _READ_ONLY_STATEMENTS]
    refused += [
        "EXPLAIN ANALYZE"
        for s in statements
        if s.type == duckdb.StatementType.EXPLAIN and _ANALYZE.search(s.query)
    ]
    refused += [f"{name}()" for name in dict.fromkeys(_called_functions(sql)) if _acts(name)]
    return refused


def _called_functions(sql: str) -> Iterator[str]:
    """The names (lower case, unquoted) of the functions `sql` calls: every word followed by an
    opening parenthesis, found on DuckDB's own tokens, so that words inside strings and
    comments do not count."""
    tokens = duckdb.tokenize(sql)
    ends = [start for start, _ in tokens[1:]] + [len(sql)]
    words = [
        (sql[start:end].strip(), kind)
        for (start, kind), end in zip(tokens, ends, strict=True)
        if kind != duckdb.token_type.comment
    ]
    names = (duckdb.token_type.identifier, duckdb.token_type.keyword)
    for (word, kind), (following, _) in itertools.pairwise(words):
        if kind in names and following.startswith("("):
            yield word.strip('"').lower()


def _acts(function: str) -> bool:
    """Whether calling `function` may do more than read: any table function but the reading
    ones (so a new one is refused until it is known to read), and a few scalar functions."""
    return function in _ACTING_SCALARS or (
        function in _table_functions() and function not in _READING_TABLE_FUNCTIONS
    )


@functools.cache
def _table_functions() -> frozenset[str]:
    """The names of this DuckDB's table functions (and table macros)."""
    with _PROCESS_LOCK, duckdb.connect(MEMORY) as con:
        rows = con.execute(
            "SELECT DISTINCT function_name FROM duckdb_functions() "
            "WHERE function_type IN ('table', 'table_macro')"
        ).fetchall()
    return frozenset(row[0] for row in rows)
