"""The quota ledger of one machine: a small SQLite file in WAL mode, shared by its processes.

Every admission is one short `BEGIN IMMEDIATE` transaction (SQLite's write lock, taken at once,
so two processes never both see the same room): hand over what others learned, then count the
model's slots in the windows and the other batches contending for them, and take a slot or
say when to ask again (engine/ledger.py says what is kept and why). Settled slots are written
with the next admission. WAL lets a
reader (`%scriptgen models`) look while a batch writes; `synchronous=NORMAL` is enough, since
a slot lost in a power cut only makes a window look emptier for a minute. Not the DuckDB call
log: DuckDB allows one writing process per file. No duckdb here.
"""

from __future__ import annotations

import dataclasses
import math
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..engine.errors import QuotaLedgerError
from ..engine.ledger import Admission, HoldState, SharedHold, SharedLimit, Windows
from ..engine.limits import METRICS, Metric
from ..engine.values import LimitSource

# The ledger's tables (one statement each). Raise SCHEMA_VERSION with any change: a file of an
# older version is started afresh (it only ever holds the last day's slots and what was learned,
# which 429s teach again), one of a newer version is left alone (pacing alone, said once).
SCHEMA_VERSION = 2
SCHEMA = (
    """
    CREATE TABLE slot (
        id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: a settled id is this slot's
        quota TEXT NOT NULL,
        model TEXT NOT NULL,
        at REAL NOT NULL,
        tokens INTEGER NOT NULL,
        process TEXT NOT NULL,
        owner TEXT NOT NULL,  -- the batch
        day REAL  -- the Google day it counts in (its start), NULL on a sliding day
    )
    """,
    "CREATE INDEX slot_window ON slot (quota, model, at, tokens)",
    "CREATE INDEX slot_owner ON slot (quota, model, owner, at)",
    """
    CREATE TABLE day_count (
        quota TEXT NOT NULL,
        model TEXT NOT NULL,
        day REAL NOT NULL,
        requests INTEGER NOT NULL,
        PRIMARY KEY (quota, model, day)
    )
    """,
    """
    CREATE TABLE contender (
        quota TEXT NOT NULL,
        model TEXT NOT NULL,
        owner TEXT NOT NULL,
        process TEXT NOT NULL,
        until REAL NOT NULL,  -- lapses then, unless it asks again
        waiting REAL NOT NULL,  -- refused room, it asks again before then (0: it was let in)
        PRIMARY KEY (quota, model, owner)
    )
    """,
    """
    CREATE TABLE news (
        quota TEXT NOT NULL,
        model TEXT NOT NULL,
        kind TEXT NOT NULL,
        value REAL NOT NULL,
        source TEXT NOT NULL,
        version INTEGER NOT NULL,
        at REAL NOT NULL,
        PRIMARY KEY (quota, model, kind)
    )
    """,
    "CREATE TABLE counter (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "INSERT INTO counter VALUES ('version', 0)",
)

# A batch that asks for a model contends for it for one window after it asks (or after the wait
# it was told, if longer), and this much more; then it lapses (it died, or has nothing more to
# send). One that ends leaves at once (close).
CONTENDER_GRACE_S = 1.0
# A batch holding its share while others are owed theirs asks again when it may have room
# (`LocalLedger._share_wait`), but never sooner than this share of the window.
SHARE_RECHECK = 0.005
# Learned limits are news for this long, like the call log's remembered ones (store/limits.py).
NEWS_KEPT_S = 7 * 86_400.0
# How often the count of other processes is taken again (it is for display).
OTHERS_EVERY_S = 1.0
# Slots out of every window are deleted at most this often per batch and model (a share of the
# minute): every query reads by time, so an old row only takes room in the file meanwhile, and
# two deletes per admission were a fifth of its cost.
DROP_EVERY = 0.1
# A batch refused for a full minute that other batches contend for, which wants several slots,
# asks again when room for them all has come, if that is at most this share of the minute later
# than room for one: slots leave in bursts (as they were taken), and one admission for a burst
# costs less than one per slot each batch races the others for.
GATHER = 0.02
# Writers wait this long for another process's transaction (each lasts well under a millisecond).
BUSY_TIMEOUT_S = 10.0
# Between tries to turn a new file to WAL while another process holds it (`_use_wal`).
WAL_RETRY_S = 0.01

PROCESS = f"{socket.gethostname()}:{os.getpid()}"


class LocalLedger:
    """A `QuotaLedger` (engine/ledger.py) in the SQLite file at `path`, for one quota identity.

    One per batch: `owner` tells its queue place from other batches', even in this process.
    Used from the batch's own thread; the connection is made on first use.
    """

    def __init__(self, path: str | os.PathLike[str], quota: str) -> None:
        self.path = Path(path)
        self.quota = quota
        self.description = str(self.path)
        self.owner = uuid.uuid4().hex
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._others = 0
        self._others_at = -math.inf
        self._dropped_at: dict[str, float] = {}  # model -> when its old slots were last deleted
        # slot id -> (sent at, tokens), written with the next admission
        self._settled: dict[int, tuple[float, int]] = {}

    # --- the contract -------------------------------------------------------------------------

    def check(self) -> None:
        with self._transaction():
            pass

    def admit(
        self,
        model: str,
        *,
        now: float,
        tokens: int,
        limits: Mapping[Metric, int | None],
        windows: Windows,
        seen: int,
        want: int = 1,
    ) -> Admission:
        with self._transaction() as db:
            self._write_settled(db)
            news, version = self._news(db, seen, now)
            if news:
                return Admission(None, news=news, version=version, others=self._others)
            hold = db.execute(
                "SELECT value FROM news WHERE quota = ? AND model = ? AND kind = 'hold'",
                (self.quota, model),
            ).fetchone()
            if hold is not None and hold[0] > now:
                return Admission(None, wait_s=hold[0] - now, version=seen, others=self._others)
            minute_from = now - windows.minute_s - windows.margin_s
            self._drop_old(db, model, now, windows)
            count, held = self._minute(db, model, minute_from)
            day = self._day_requests(db, model, windows) if limits.get("rpd") is not None else 0
            shares = self._shares(db, model, now, limits, windows)
            self._count_others(db, now, minute_from)
            refusal = self._refusal(
                db, model, now, tokens, limits, windows, count, held, day, shares, want
            )
            if refusal is not None:
                metric, needed, wait_s = refusal
                self._contend(db, model, now, windows, wait_s)
                return Admission(
                    None,
                    wait_s=wait_s,
                    metric=metric,
                    needed=needed,
                    version=seen,
                    others=self._others,
                )
            granted = 1
            while granted < want:  # each as if asked for alone, one after the other
                more_count, more_held = count + granted, held + granted * tokens
                if _lacking(limits, tokens, more_count, more_held, day + granted) or (
                    shares is not None and shares.taking(granted).over(more_count)
                ):
                    break
                granted += 1
            first, *more = self._take_slots(db, model, now, tokens, windows, granted)
            # Short of what it wanted: refused the rest in the same step, so it need not ask.
            short = None
            if granted < want:
                short = self._refusal(
                    db,
                    model,
                    now,
                    tokens,
                    limits,
                    windows,
                    count + granted,
                    held + granted * tokens,
                    day + granted,
                    None if shares is None else shares.taking(granted),
                    want - granted,
                )
            metric, needed, wait_s = short if short is not None else (None, 0, 0.0)
            self._contend(db, model, now, windows, wait_s if short is not None else None)
            return Admission(
                first,
                more=tuple(more),
                wait_s=wait_s,
                metric=metric,
                needed=needed,
                version=seen,
                others=self._others,
            )

    def settle(self, slot: int, *, at: float, tokens: int) -> None:
        self._settled[slot] = (at, tokens)  # written with the next admission, flush or close

    def flush(self) -> None:
        if self._settled:
            with self._transaction() as db:
                self._write_settled(db)

    def forget(self, slot: int) -> None:
        with self._transaction() as db:
            row = db.execute(
                "DELETE FROM slot WHERE id = ? RETURNING model, day", (slot,)
            ).fetchone()
            if row is not None and row[1] is not None:
                self._count_day(db, row[0], row[1], -1)

    def learn(self, model: str, metric: Metric, value: int, source: LimitSource) -> int:
        return self._publish(model, metric, float(value), source)

    def hold(self, model: str, state: HoldState, until: float) -> int:
        return self._publish(model, "hold", until, state)

    def close(self) -> None:
        if self._conn is None and not self._settled:
            return  # never opened (or closed already) and nothing to write: no file made
        try:
            with self._transaction() as db:
                self._write_settled(db)
                db.execute(
                    "DELETE FROM contender WHERE quota = ? AND owner = ?",
                    (self.quota, self.owner),
                )
        except QuotaLedgerError:
            pass  # leaving: token counts are estimates, and a contender left behind lapses
        finally:
            with self._lock:
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None

    # --- reading (for `%scriptgen models`) -----------------------------------------------------

    def usage(self, model: str, *, now: float, windows: Windows) -> tuple[int, int, int, int]:
        """(requests this minute, input tokens this minute, requests today, other processes)
        for `model`, as every process together has used it."""
        minute_from = now - windows.minute_s - windows.margin_s
        with self._transaction() as db:
            count, held = self._minute(db, model, minute_from)
            day = self._day_requests(db, model, windows)
            (others,) = db.execute(
                """
                SELECT count(DISTINCT process) FROM slot
                WHERE quota = ? AND model = ? AND at > ? AND process != ?
                """,
                (self.quota, model, minute_from, PROCESS),
            ).fetchone()
        return count, held, day, others

    # --- internals ----------------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One immediate transaction; any SQLite failure is a `QuotaLedgerError` saying where."""
        with self._lock:
            try:
                db = self._connection()
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            except (sqlite3.Error, OSError) as exc:
                raise QuotaLedgerError(
                    f"the quota ledger {self.description} failed: {exc}"
                ) from exc

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            try:
                _use_wal(conn)
                conn.execute("PRAGMA synchronous = NORMAL")
                self._prepare(conn)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _prepare(self, conn: sqlite3.Connection) -> None:
        """Make the tables of this SCHEMA_VERSION, unless the file has them already: a file
        an older scriptgen_nb made is started afresh, one a newer one made is refused."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            (version,) = conn.execute("PRAGMA user_version").fetchone()
            if version > SCHEMA_VERSION:
                raise sqlite3.DatabaseError(
                    f"it was made by a newer scriptgen_nb (ledger version {version}; this one "
                    f"knows {SCHEMA_VERSION}): upgrade, or give this one a file of its own"
                )
            if version < SCHEMA_VERSION:
                tables = conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' "
                    "AND name NOT LIKE 'sqlite_%'"
                ).fetchall()
                for (table,) in tables:
                    conn.execute(f'DROP TABLE "{table}"')
                for statement in SCHEMA:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _write_settled(self, db: sqlite3.Connection) -> None:
        """Write the slots settled since the last admission (engine/ledger.py `settle`)."""
        if self._settled:
            db.executemany(
                "UPDATE slot SET at = max(at, ?), tokens = ? WHERE id = ?",
                [(at, tokens, slot) for slot, (at, tokens) in self._settled.items()],
            )
            self._settled.clear()

    def _take_slots(
        self,
        db: sqlite3.Connection,
        model: str,
        now: float,
        tokens: int,
        windows: Windows,
        many: int,
    ) -> list[int]:
        """Write `many` slots of `tokens` at `now` in one statement (and count them in their
        Google day); their ids."""
        day = windows.day_from if math.isfinite(windows.day_ends) else None
        rows = db.execute(
            """
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
            INSERT INTO slot (quota, model, at, tokens, process, owner, day)
            SELECT ?, ?, ?, ?, ?, ?, ? FROM n
            RETURNING id
            """,
            (many, self.quota, model, now, tokens, PROCESS, self.owner, day),
        ).fetchall()
        if day is not None:
            self._count_day(db, model, day, many)
        return [row[0] for row in rows]

    def _news(
        self, db: sqlite3.Connection, seen: int, now: float
    ) -> tuple[tuple[SharedLimit | SharedHold, ...], int]:
        """What was learned at this quota since version `seen` (holds already over are not
        news), and the newest version among it."""
        rows = db.execute(
            """
            SELECT model, kind, value, source, version FROM news
            WHERE quota = ? AND version > ? AND at > ?
            ORDER BY version
            """,
            (self.quota, seen, now - NEWS_KEPT_S),
        ).fetchall()
        news: list[SharedLimit | SharedHold] = []
        for model, kind, value, source, version in rows:
            if kind == "hold":
                if value > now:
                    news.append(SharedHold(model, source, value, version))
            elif kind in METRICS:
                news.append(SharedLimit(model, kind, int(value), source, version))
        return tuple(news), max((row[4] for row in rows), default=seen)

    def _drop_old(self, db: sqlite3.Connection, model: str, now: float, windows: Windows) -> None:
        """Forget the slots out of every window, and the counts of Google days gone by (at
        most every DROP_EVERY of a minute window)."""
        if now - self._dropped_at.get(model, -math.inf) < DROP_EVERY * windows.minute_s:
            return
        self._dropped_at[model] = now
        minute_from, day_from = now - windows.minute_s - windows.margin_s, windows.day_from
        db.execute(
            "DELETE FROM slot WHERE quota = ? AND model = ? AND at <= ? AND at < ?",
            (self.quota, model, minute_from, day_from),
        )
        db.execute(
            "DELETE FROM day_count WHERE quota = ? AND model = ? AND day < ?",
            (self.quota, model, day_from),
        )

    def _minute(self, db: sqlite3.Connection, model: str, minute_from: float) -> tuple[int, int]:
        """(requests, input tokens) of `model`'s slots in the minute window (read from the
        index alone)."""
        count, tokens = db.execute(
            "SELECT count(*), total(tokens) FROM slot WHERE quota = ? AND model = ? AND at > ?",
            (self.quota, model, minute_from),
        ).fetchone()
        return int(count), int(tokens)

    def _day_requests(self, db: sqlite3.Connection, model: str, windows: Windows) -> int:
        """Requests of `model` in the day window: a Google day's count is kept as it goes (a
        day holds thousands of slots, too many to count per admission); a sliding
        (compressed) day's slots are counted."""
        if math.isfinite(windows.day_ends):
            row = db.execute(
                "SELECT requests FROM day_count WHERE quota = ? AND model = ? AND day = ?",
                (self.quota, model, windows.day_from),
            ).fetchone()
            return 0 if row is None else int(row[0])
        (count,) = db.execute(
            "SELECT count(*) FROM slot WHERE quota = ? AND model = ? AND at >= ?",
            (self.quota, model, windows.day_from),
        ).fetchone()
        return int(count)

    def _count_day(self, db: sqlite3.Connection, model: str, day: float, change: int) -> None:
        db.execute(
            """
            INSERT INTO day_count (quota, model, day, requests) VALUES (?, ?, ?, ?)
            ON CONFLICT (quota, model, day) DO UPDATE SET requests = requests + excluded.requests
            """,
            (self.quota, model, day, change),
        )

    def _shares(
        self,
        db: sqlite3.Connection,
        model: str,
        now: float,
        limits: Mapping[Metric, int | None],
        windows: Windows,
    ) -> Shares | None:
        """How `model`'s requests per minute are shared while other batches contend for it
        (None when none do, or it has no such limit); see `Shares`."""
        rpm = limits.get("rpm")
        if rpm is None:
            return None
        rows = db.execute(
            """
            SELECT c.owner, c.waiting, (
                SELECT count(*) FROM slot s
                WHERE s.quota = c.quota AND s.model = c.model AND s.owner = c.owner
                    AND s.at > ?
            ) FROM contender c
            WHERE c.quota = ? AND c.model = ? AND (c.until > ? OR c.owner = ?)
            """,
            (now - windows.minute_s - windows.margin_s, self.quota, model, now, self.owner),
        ).fetchall()
        others = [(waiting, taken) for owner, waiting, taken in rows if owner != self.owner]
        if not others:
            return None
        share = -(-rpm // (len(others) + 1))
        mine = sum(taken for owner, _, taken in rows if owner == self.owner)
        owed = [(waiting, share - taken) for waiting, taken in others if waiting > now]
        return Shares(rpm, share, mine, tuple((w, due) for w, due in owed if due > 0))

    def _share_wait(
        self,
        db: sqlite3.Connection,
        model: str,
        now: float,
        windows: Windows,
        shares: Shares,
        count: int,
    ) -> float:
        """Seconds until a batch held back for the others' shares may have room, so it asks
        then and not over and over meanwhile: the earliest of the `short`-th oldest slot
        leaving the window (`short`: what the room lacks), its own `over + 1`-th leaving (it
        falls below its share), and an owed batch's next ask (by its `waiting` less the grace;
        by `waiting` itself, when it stops being owed, if that ask is overdue), after which the
        room it was owed is taken or no longer waited for; never sooner than SHARE_RECHECK of
        the minute."""
        length = windows.minute_s + windows.margin_s
        short, over = 1 - shares.room(count), shares.mine - shares.share
        waits = [
            waiting - CONTENDER_GRACE_S - now
            if waiting - CONTENDER_GRACE_S > now
            else waiting - now
            for waiting, _ in shares.owed
        ]
        rows = db.execute(
            """
            SELECT at FROM slot WHERE quota = ? AND model = ? AND at > ?
            ORDER BY at LIMIT 1 OFFSET ?
            """,
            (self.quota, model, now - length, short - 1),
        ).fetchall()
        rows += db.execute(
            """
            SELECT at FROM slot WHERE quota = ? AND model = ? AND owner = ? AND at > ?
            ORDER BY at LIMIT 1 OFFSET ?
            """,
            (self.quota, model, self.owner, now - length, over),
        ).fetchall()
        waits += [max(0.0, at + length - now) for (at,) in rows]
        return max(min(waits), SHARE_RECHECK * windows.minute_s, 0.01)

    def _refusal(
        self,
        db: sqlite3.Connection,
        model: str,
        now: float,
        tokens: int,
        limits: Mapping[Metric, int | None],
        windows: Windows,
        count: int,
        held: int,
        day: int,
        shares: Shares | None,
        want: int,
    ) -> tuple[Metric | None, int, float] | None:
        """Why one more request of `tokens` (of `want` ready to go) has no room now: a full
        window (`_full_window`; for several on a minute other batches contend for, when room
        for them all may come, `_room_for_more`: a batch alone is not raced for the room, and
        waiting to gather it would only slow it) or the others' shares (metric None,
        `_share_wait`), with how much the limit lacks and the seconds until it may have room;
        None when it has room."""
        refusal = self._full_window(db, model, now, tokens, limits, windows, count, held, day)
        if refusal is None:
            if shares is None or not shares.over(count):
                return None
            return None, 0, self._share_wait(db, model, now, windows, shares, count)
        metric, needed, wait_s = refusal
        if metric == "rpm" and want > 1 and shares is not None:  # contended: gather the room
            last = min(needed + want - 2, count - 1)
            wait_s = self._room_for_more(db, model, now, windows, last, wait_s)
        return metric, needed, wait_s

    def _full_window(
        self,
        db: sqlite3.Connection,
        model: str,
        now: float,
        tokens: int,
        limits: Mapping[Metric, int | None],
        windows: Windows,
        count: int,
        held: int,
        day: int,
    ) -> tuple[Metric, int, float] | None:
        """The first window without room for one more request (`_lacking`): (metric, how much
        its limit lacks, seconds until it has room for this batch), or None when every one has
        room."""
        lacking = _lacking(limits, tokens, count, held, day)
        if lacking is None:
            return None
        metric, needed = lacking
        length = windows.minute_s + windows.margin_s
        if metric == "rpm":
            # `needed` slots must leave; the last of them leaves at this time.
            offset = min(needed - 1, count - 1)
            return metric, needed, self._slot_leaves(db, model, offset, length, now)
        if metric == "tpm":
            excess = needed
            rows = db.execute(
                "SELECT at, tokens FROM slot WHERE quota = ? AND model = ? AND at > ? ORDER BY at",
                (self.quota, model, now - length),
            )
            wait = windows.minute_s
            for at, slot_tokens in rows:
                excess -= slot_tokens
                wait = at + length - now
                if excess <= 0:
                    break
            return metric, needed, max(0.0, wait)
        if math.isfinite(windows.day_ends):  # Google's day: its requests leave together
            return metric, needed, windows.day_ends - now
        day_s = now - windows.day_from
        return metric, needed, self._slot_leaves(db, model, needed - 1, day_s, now, day=windows)

    def _room_for_more(
        self,
        db: sqlite3.Connection,
        model: str,
        now: float,
        windows: Windows,
        last: int,
        wait_s: float,
    ) -> float:
        """When a batch refused for a full minute that wants several slots should ask again:
        when the slot at offset `last` leaves (room for them all), if that is at most GATHER of
        the minute later than room for one (`wait_s`)."""
        later = self._slot_leaves(db, model, last, windows.minute_s + windows.margin_s, now)
        return min(max(wait_s, later), wait_s + GATHER * windows.minute_s)

    def _slot_leaves(
        self,
        db: sqlite3.Connection,
        model: str,
        offset: int,
        length: float,
        now: float,
        day: Windows | None = None,
    ) -> float:
        """Seconds until the slot at `offset` (oldest first) of a window of `length` leaves it;
        a short turn when there is none (only batches owed the room stand in the way)."""
        since = day.day_from if day is not None else now - length
        row = db.execute(
            """
            SELECT at FROM slot WHERE quota = ? AND model = ? AND at > ?
            ORDER BY at LIMIT 1 OFFSET ?
            """,
            (self.quota, model, since, offset),
        ).fetchone()
        if row is None:
            return 0.05
        return max(0.0, row[0] + length - now)

    def _contend(
        self,
        db: sqlite3.Connection,
        model: str,
        now: float,
        windows: Windows,
        wait_s: float | None,
    ) -> None:
        """This batch contends for `model`: it asked, and will ask again within a window (or
        after the wait it was told, if longer); refused room (`wait_s`, None: it was let in), it
        waits for room until then and a grace more."""
        length = windows.minute_s + windows.margin_s
        until = now + length if wait_s is None else now + max(wait_s, length)
        waiting = 0.0 if wait_s is None else now + wait_s + CONTENDER_GRACE_S
        db.execute(
            """
            INSERT INTO contender (quota, model, owner, process, until, waiting)
            VALUES (?, ?, ?, ?, ?, ?)
            ON CONFLICT (quota, model, owner) DO UPDATE SET
                until = excluded.until, waiting = excluded.waiting
            """,
            (self.quota, model, self.owner, PROCESS, until + CONTENDER_GRACE_S, waiting),
        )

    def _count_others(self, db: sqlite3.Connection, now: float, minute_from: float) -> None:
        """Count the other processes with slots in the minute or contending (at most once a
        second: it is for display)."""
        if now - self._others_at < OTHERS_EVERY_S:
            return
        (self._others,) = db.execute(
            """
            SELECT count(DISTINCT process) FROM (
                SELECT process FROM slot WHERE quota = ? AND at > ?
                UNION SELECT process FROM contender WHERE quota = ? AND until > ?
            ) WHERE process != ?
            """,
            (self.quota, minute_from, self.quota, now, PROCESS),
        ).fetchone()
        self._others_at = now

    def _publish(self, model: str, kind: str, value: float, source: str) -> int:
        """Record news (a limit, or a hold that only ever lengthens) under a new version."""
        with self._transaction() as db:
            (version,) = db.execute(
                "UPDATE counter SET value = value + 1 WHERE name = 'version' RETURNING value"
            ).fetchone()
            if kind == "hold":
                row = db.execute(
                    "SELECT value FROM news WHERE quota = ? AND model = ? AND kind = 'hold'",
                    (self.quota, model),
                ).fetchone()
                if row is not None and row[0] > value:
                    return int(version)  # a longer hold stands
            db.execute(
                """
                INSERT INTO news (quota, model, kind, value, source, version, at)
                VALUES (?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (quota, model, kind) DO UPDATE SET value = excluded.value,
                    source = excluded.source, version = excluded.version, at = excluded.at
                """,
                (self.quota, model, kind, value, source, version, time.time()),
            )
            return int(version)


@dataclass(frozen=True, slots=True)
class Shares:
    """A model's requests per minute shared among the batches contending for it.

    Each has a share of the limit (over the contenders, rounded up). A batch below its share
    takes what room there is; one at or above it leaves what the batches waiting for room
    (refused, and asking again) are still owed of theirs, so a window that frees all at once
    is split, not taken by whichever batch asks first, and room that nobody is waiting for is
    not wasted.
    """

    rpm: int
    share: int
    mine: int  # this batch's slots in the minute
    owed: tuple[tuple[float, int], ...]  # (waiting until, slots owed) of each waiting batch

    def room(self, count: int) -> int:
        """Room in a minute holding `count` slots once the waiting batches have theirs."""
        return self.rpm - count - sum(due for _, due in self.owed)

    def taking(self, granted: int) -> Shares:
        """The same, once this batch has taken `granted` slots more."""
        return dataclasses.replace(self, mine=self.mine + granted)

    def over(self, count: int) -> bool:
        """Whether this batch must leave the room in a minute holding `count` to the others."""
        return self.mine >= self.share and self.room(count) < 1


def _lacking(
    limits: Mapping[Metric, int | None], tokens: int, count: int, held: int, day: int
) -> tuple[Metric, int] | None:
    """The first limit that one more request of `tokens` would exceed, with `count` requests
    and `held` input tokens in the minute and `day` requests in the day, and by how much;
    None when it fits."""
    rpm, tpm, rpd = (limits.get(m) for m in METRICS)
    if rpm is not None and count + 1 > rpm:
        return "rpm", count + 1 - rpm
    if tpm is not None and count and held + tokens > tpm:
        return "tpm", held + tokens - tpm
    if rpd is not None and day + 1 > rpd:
        return "rpd", day + 1 - rpd
    return None


def _use_wal(conn: sqlite3.Connection) -> None:
    """Put the file in WAL mode, waiting (up to the busy timeout) while another process holds it.

    Turning a new file to WAL takes its exclusive lock directly, without SQLite's busy handler:
    processes that open a new ledger together (two batches started at once) were refused
    "database is locked" at once, and paced alone. A file already in WAL mode passes at once.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
        time.sleep(WAL_RETRY_S)
