"""Reports over the call log, as pandas DataFrames, so that callers never write SQL.

This module owns the log's read side: the seed's usage report, the batches and their derived
state (a `running` batch whose process is gone shows as `died`), per-request results, the error
breakdown, the throughput timeline and the daily-quota events that mark model rotations on it,
latency percentiles, costs, and the read-only SQL entry point for users' own queries. Spend is
never summed across real and simulated batches: `costs` and the usage report always split by
`simulated` (the batch's endpoint was an emulator, endpoints.py), real spend first. It reads
only through `Database.frame` (values always bound as parameters) and `Database.sandboxed_select`;
it must not import duckdb (`database.py` is the one module that does), nor anything above the
store (`api`, `cli`, the Jupyter side).

Times: `since` / `until` take a datetime (naive means UTC), a duration ago ("90s", "30m", "1h",
"2d", "1w") or an ISO date/time; `since` is inclusive, `until` exclusive, both on the attempt's
`created_at`. Timestamps come back timezone-aware.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pandas as pd

from ..engine.checks import check_number
from ..engine.errors import ConfigurationError
from .database import Database

Moment = datetime | date | str

COST_GROUPS = ("model", "operation", "project_id", "batch_id", "endpoint", "simulated")
"""The columns `costs(by=...)` may group by (`simulated` always is)."""
MAX_LIMIT = 2**31 - 1  # the most batches a listing may ask for (a LIMIT DuckDB takes)

# SQL fragments over `ai_api_call`, shared so that every report counts the same way.
_SUCCEEDED = "status = 'SUCCESS'"
_RATE_LIMITED = "coalesce(error_kind, '') IN ('rate_limited', 'quota_exhausted')"
_UNSUCCESSFUL = "status IS DISTINCT FROM 'SUCCESS'"
_FAILED = f"{_UNSUCCESSFUL} AND NOT {_RATE_LIMITED}"
_ENDED_AT = "coalesce(finished_at, created_at)"  # when an attempt's outcome was known
# The attempts with their batch's endpoint and whether it was simulated (an emulator's).
_CALLS_WITH_ENDPOINT = """(
    SELECT c.*, b.endpoint, coalesce(b.simulated, false) AS simulated
    FROM ai_api_call c LEFT JOIN batch_log b ON b.batch_id = c.batch_id
) AS calls"""

# Throughput buckets: the smallest of these steps that cuts the span into at most 60 buckets, so
# the ratio between steps (at most 2.5) keeps a batch at roughly 24 to 60 buckets.
_MAX_BUCKETS = 60
_DAY_S = 86_400
_BUCKET_STEPS_S = (
    *(1, 2, 5, 10, 15, 30),  # seconds
    *(60 * m for m in (1, 2, 5, 10, 15, 30)),  # minutes
    *(3600 * h for h in (1, 2, 3, 6, 12, 24)),  # hours
)

_AGO = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])", re.IGNORECASE)
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": _DAY_S, "w": 7 * _DAY_S}


_TIME_FORMS = (
    "a duration ago (90s, 30m, 1h, 2d, 1w) or an ISO date/time (2026-03-02, "
    "2026-03-02T10:00:00+01:00)"
)


def parse_time(value: Moment, *, now: datetime | None = None, name: str = "time") -> datetime:
    """A timezone-aware moment from a datetime or date (naive means UTC), a duration ago
    ("90s", "30m", "1h", "2d", "1w", counted back from `now`) or an ISO date/time string.
    Anything else (a number: seconds, or days?) is a `ConfigurationError` naming the argument
    (`name`: since, until)."""
    if isinstance(value, str):
        text = value.strip()
        ago = _AGO.fullmatch(text)
        if ago:
            seconds = float(ago[1]) * _UNIT_S[ago[2].lower()]
            try:
                return (now or datetime.now(UTC)) - timedelta(seconds=seconds)
            except OverflowError:
                raise ConfigurationError(
                    f"{name}={text!r} reaches back before the year 1; give a shorter duration."
                ) from None
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise ConfigurationError(
                f"Cannot read {text!r} as a time: give {_TIME_FORMS}."
            ) from None
    if not isinstance(value, date):
        raise ConfigurationError(
            f"{name}={value!r} ({type(value).__name__}) is not a time: give a datetime, a date, "
            f"{_TIME_FORMS}."
        )
    if not isinstance(value, datetime):
        value = datetime.combine(value, time())
    # DuckDB would read a naive value in the session's time zone; the log's convention is UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _filters(
    *conditions: str,
    batch_id: str | None = None,
    since: Moment | None = None,
    until: Moment | None = None,
) -> tuple[str, list[Any]]:
    """A WHERE clause over `ai_api_call` (or "") and its parameters."""
    clauses = list(conditions)
    params: list[Any] = []
    for clause, value in (
        ("batch_id = ?", batch_id),
        ("created_at >= ?", None if since is None else parse_time(since, name="since")),
        ("created_at < ?", None if until is None else parse_time(until, name="until")),
    ):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), params


def _seconds(later: str, earlier: str) -> str:
    """Seconds from one TIMESTAMPTZ to another, as SQL.

    Through microseconds since the epoch: `epoch(later - earlier)` on TIMESTAMPTZ values goes
    through DuckDB's time-zone machinery, ten times slower over a million rows (bench/, scenario 7).
    """
    return f"(epoch_us({later}) - epoch_us({earlier})) / 1e6"


def _total(column: str) -> str:
    """A token sum that is 0, not NULL, over no rows or rows without usage (e.g. 429s)."""
    return f"CAST(coalesce(sum({column}), 0) AS BIGINT)"


# The token and cost columns summed over a group of calls or results (the usage report, a died
# batch's figures recounted from its rows): the same names, so the two read alike.
_USAGE_SUMS = f"""{_total("input_tokens")} AS input_tokens,
    {_total("cached_tokens")} AS cached_tokens,
    {_total("output_tokens")} AS output_tokens,
    {_total("thought_tokens")} AS thought_tokens,
    coalesce(sum(estimated_cost), 0) AS cost,
    count(*) FILTER (WHERE estimated_cost IS NULL) AS unpriced"""


# --- usage and costs ---------------------------------------------------------------------------


def usage_report(
    db: Database, since: Moment | None = None, until: Moment | None = None
) -> pd.DataFrame:
    """The seed's usage report: one row per (simulated, operation, model) over a time range.

    Columns: simulated (True: an emulator answered, so the cost was never spent; real spend
    comes first), operation, model, requests (attempts that reached the service), successes,
    input_tokens, cached_tokens, output_tokens, thought_tokens, cost (USD, every billed attempt
    of known price), unpriced (attempts of unknown price, which cost leaves out); most costly
    first.
    """
    return costs(db, by=("operation", "model"), since=since, until=until)


def costs(
    db: Database,
    by: str | Sequence[str] = ("model",),
    since: Moment | None = None,
    until: Moment | None = None,
) -> pd.DataFrame:
    """Cost and tokens of the attempts in a time range, one row per group of `by`.

    `by` is one or more of model, operation, project_id, batch_id, endpoint ("google" or the
    base URL) and simulated. Columns: simulated (always first: an emulator's attempts are
    never summed with real ones; real spend first), the `by` columns, requests (attempts),
    successes, input_tokens, cached_tokens (of the input, billed at the cached price),
    output_tokens, thought_tokens, cost (USD, the attempts of known price), unpriced (attempts
    of a model whose price is unknown: cost is at least the figure shown); most costly first.
    """
    groups = [by] if isinstance(by, str) or not isinstance(by, Iterable) else list(by)
    unknown = [g for g in groups if g not in COST_GROUPS]
    if not groups or unknown or len(set(groups)) != len(groups):
        raise ConfigurationError(
            f"costs(by={by!r}): group by one or more distinct columns of {', '.join(COST_GROUPS)}."
        )
    # Only allow-listed names reach the SQL text; values go in as parameters.
    keys = ", ".join(["simulated", *(g for g in groups if g != "simulated")])
    where, params = _filters(since=since, until=until)
    return db.frame(
        f"""
        SELECT {keys},
               count(*) AS requests,
               count(*) FILTER (WHERE {_SUCCEEDED}) AS successes,
               {_USAGE_SUMS}
        FROM {_CALLS_WITH_ENDPOINT} {where}
        GROUP BY {keys}
        ORDER BY simulated, cost DESC, {keys}
        """,
        params,
    )


# --- batches -----------------------------------------------------------------------------------


def batches(db: Database, limit: int = 20) -> pd.DataFrame:
    """The last `limit` batches, newest first: one row per batch.

    Columns: batch_id, state (the status, except that a `running` batch whose heartbeat is
    stale or whose process on this host is gone is `died`; a died batch's counts, tokens and
    cost are counted from its result rows, as its own row holds its last heartbeat's, which
    may be a second behind the results it flushed), status (as recorded), operation,
    project_id, mode, started_at, finished_at, heartbeat_at, duration_s (so far, while running),
    request_count, success_count, failure_count, not_run_count, cached_count, input_tokens,
    cached_tokens, output_tokens, thought_tokens, cost (USD, the results of known price),
    unpriced (results of unknown price, left out of cost), models (those that served,
    comma-separated), ladder (the requested models), notices (retired models named, unknown
    prices), concurrency_strategy, concurrency_value, endpoint, simulated (an emulator answered:
    its cost was never spent), pid, hostname.
    """
    check_number("limit", limit, low=1, high=MAX_LIMIT, whole=True, unit="batches")
    return _batch_rows(db, "", [], limit)


def batch_summary(db: Database, batch_id: str) -> pd.DataFrame:
    """One row for one batch: the columns of `batches()` plus requests_sent (attempts that
    reached the service) and rate_limited (those answered 429, per minute or per day)."""
    row = _batch_rows(db, "WHERE batch_id = ?", [batch_id], 1)
    if row.empty:
        raise ConfigurationError(
            f"No batch {batch_id!r} in the call log {db.path}; "
            "queries.batches(db) (or `scriptgen batches`) lists the recorded ones."
        )
    sent = db.frame(
        f"""
        SELECT count(*) AS requests_sent, count(*) FILTER (WHERE {_RATE_LIMITED}) AS rate_limited
        FROM ai_api_call WHERE batch_id = ?
        """,
        [batch_id],
    )
    return pd.concat([row, sent], axis=1)


def _batch_rows(db: Database, where: str, params: list[Any], limit: int) -> pd.DataFrame:
    frame = db.frame(
        f"""
        SELECT batch_id, status, operation, project_id, mode,
               started_at, finished_at, heartbeat_at,
               coalesce(duration_ms / 1000,
                        {_seconds("coalesce(finished_at, heartbeat_at)", "started_at")})
                   AS duration_s,
               request_count, success_count, failure_count, not_run_count, cached_count,
               input_tokens, coalesce(cached_tokens, 0) AS cached_tokens, output_tokens,
               thought_tokens, estimated_cost AS cost, coalesce(unpriced_count, 0) AS unpriced,
               array_to_string(models_used, ', ') AS models,
               array_to_string(batch_log.models, ', ') AS ladder,
               array_to_string(coalesce(notices, []), '; ') AS notices,
               concurrency_strategy, concurrency_value, endpoint,
               coalesce(simulated, false) AS simulated, pid, hostname
        FROM batch_log {where}
        ORDER BY started_at DESC NULLS LAST, batch_id
        LIMIT ?
        """,
        [*params, limit],
    )
    frame.insert(1, "state", _states(frame))
    return _recounted(db, frame)


def _recounted(db: Database, frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with each died batch's figures counted from its result rows. Only theirs: a
    batch that ended wrote its final figures, and counting a huge log's rows costs."""
    died = frame["state"] == "died"
    if not died.any():
        return frame
    counted = db.frame(_RESULT_FIGURES, [frame.loc[died, "batch_id"].tolist()])
    figures = counted.set_index("batch_id").reindex(frame.loc[died, "batch_id"]).fillna(0)
    for column in figures.columns:
        frame.loc[died, column] = figures[column].astype(frame[column].dtype).to_numpy()
    return frame


# A batch's figures as the recorder's heartbeat keeps them (`success_count` counts the cached
# answers too), from its result rows.
_RESULT_FIGURES = f"""
    SELECT batch_id,
           count(*) FILTER (WHERE success) AS success_count,
           count(*) FILTER (WHERE NOT success AND error_kind IS DISTINCT FROM 'not_run')
               AS failure_count,
           count(*) FILTER (WHERE error_kind = 'not_run') AS not_run_count,
           count(*) FILTER (WHERE cached) AS cached_count,
           {_USAGE_SUMS}
    FROM result WHERE batch_id IN (SELECT unnest(?))
    GROUP BY batch_id
"""


def _states(frame: pd.DataFrame) -> list[str]:
    # Imported here: the package's __init__ may import this module while it is being set up.
    from . import STALE_AFTER_S

    now = pd.Timestamp.now(tz=UTC)
    here = socket.gethostname()
    states = []
    for status, started, heartbeat, pid, host in zip(
        frame["status"],
        frame["started_at"],
        frame["heartbeat_at"],
        frame["pid"],
        frame["hostname"],
        strict=True,
    ):
        last_sign = started if pd.isna(heartbeat) else heartbeat
        stale = not pd.isna(last_sign) and (now - last_sign).total_seconds() > STALE_AFTER_S
        gone = host == here and not pd.isna(pid) and pid > 0 and not _alive(int(pid))
        states.append("died" if status == "running" and (stale or gone) else status)
    return states


def _alive(pid: int) -> bool:
    """Whether process `pid` of this host exists (signal 0 checks without sending anything)."""
    if os.name == "nt":  # there os.kill would terminate it: rely on the heartbeat alone
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists; it is only someone else's
        pass
    return True


# --- requests and attempts ---------------------------------------------------------------------


def results(db: Database, batch_id: str) -> pd.DataFrame:
    """The final result of each request of a batch, in request order: one row per request.

    Columns: those of the `result` table except batch_id (request_id, request_index,
    cache_key, success, cached, text, text_hash, data, error_kind, error_message,
    finish_reason, model, model_version, attempts, tokens, estimated_cost, latency_ms,
    queue_ms, finished_at), then simulated (the batch's endpoint was an emulator).
    """
    return db.frame(
        "SELECT r.* EXCLUDE (batch_id), coalesce(b.simulated, false) AS simulated FROM result r "
        "LEFT JOIN batch_log b ON b.batch_id = r.batch_id WHERE r.batch_id = ? "
        "ORDER BY r.request_index",
        [batch_id],
    )


def errors(db: Database, batch_id: str | None = None) -> pd.DataFrame:
    """The failed attempts (429s included), one row per (error_kind, model), most frequent
    first. Columns: error_kind, model, count, first_at, last_at, sample_message (the latest)."""
    where, params = _filters(_UNSUCCESSFUL, batch_id=batch_id)
    return db.frame(
        f"""
        SELECT error_kind, model, count(*) AS count,
               min(created_at) AS first_at, max(created_at) AS last_at,
               arg_max(error_message, created_at) AS sample_message
        FROM ai_api_call {where}
        GROUP BY error_kind, model
        ORDER BY count DESC, error_kind, model
        """,
        params,
    )


def model_events(db: Database, batch_id: str | None = None) -> pd.DataFrame:
    """What happened to each model during its batches, in order: parked (a per-minute 429),
    backing_off (429s without details), exhausted (out of quota until its reset), cooling
    (server errors in a row) and gone (retired, not supported, or no quota: it left the
    batch's ladder). Columns: batch_id, model, state, until_s (seconds until usable again;
    NaN for gone), reason (what the service said), happened_at."""
    where, params = ("WHERE batch_id = ?", [batch_id]) if batch_id is not None else ("", [])
    return db.frame(
        f"SELECT batch_id, model, state, until_s, reason, happened_at FROM model_event {where} "
        "ORDER BY happened_at, model",
        params,
    )


def learned_limits(db: Database, batch_id: str | None = None) -> pd.DataFrame:
    """Every change of a working limit the engine made (from 429s, or raised by discovery), in
    the order learned: the batches' history, forgotten limits included (`limits.py` keeps what
    a later batch starts from). Columns: batch_id, model, metric (rpm | tpm | rpd), configured
    (the catalogue's figure), learned (what the engine kept to from then on), learned_at,
    source (stated, message, lowered, recovered, raised; empty before migration 7), endpoint
    and fingerprint (the quota identity). Update the catalogue (SCRIPTGEN_CATALOGUE) when a
    limit keeps coming back."""
    where, params = ("WHERE batch_id = ?", [batch_id]) if batch_id is not None else ("", [])
    return db.frame(
        "SELECT batch_id, model, metric, configured, learned, learned_at, source, endpoint, "
        f"key_fingerprint AS fingerprint FROM limit_learned {where} "
        "ORDER BY learned_at, model, metric",
        params,
    )


def throughput(
    db: Database, batch_id: str | None = None, bucket_s: float | None = None
) -> pd.DataFrame:
    """A timeline of attempts by when they ended: one row per time bucket, empty ones included.

    Columns: t (seconds from the first attempt's start to the bucket's start), bucket_start
    (timestamp), completions (successful attempts), failures (other failed attempts), rate_limited
    (429s, per minute or per day; the three are disjoint), tokens (input + output + thoughts).
    `bucket_s=None` picks a round bucket cutting the span into at most 60 buckets (at least 1 s).
    """
    check_number("bucket_s", bucket_s, low=0, above=True, optional=True, unit="seconds")
    where, params = _filters(batch_id=batch_id)
    if bucket_s is None:
        span = db.frame(
            f"SELECT {_seconds(f'max({_ENDED_AT})', 'min(created_at)')} AS s "
            f"FROM ai_api_call {where}",
            params,
        )["s"].iloc[0]
        bucket_s = _bucket_s(0.0 if pd.isna(span) else float(span))
    return db.frame(
        f"""
        WITH calls AS (SELECT * FROM ai_api_call {where}),
        origin AS (SELECT min(created_at) AS t0 FROM calls),
        binned AS (
            SELECT CAST(floor({_seconds(_ENDED_AT, "t0")} / ?) AS BIGINT) AS bucket,
                   status, error_kind,
                   coalesce(input_tokens, 0) + coalesce(output_tokens, 0)
                       + coalesce(thought_tokens, 0) AS tokens
            FROM calls, origin
        ),
        buckets AS (SELECT unnest(range(0, (SELECT max(bucket) + 1 FROM binned))) AS bucket)
        SELECT buckets.bucket * ? AS t,
               t0 + to_microseconds(CAST(buckets.bucket * ? * 1e6 AS BIGINT)) AS bucket_start,
               count(b.bucket) FILTER (WHERE {_SUCCEEDED}) AS completions,
               count(b.bucket) FILTER (WHERE {_FAILED}) AS failures,
               count(b.bucket) FILTER (WHERE {_RATE_LIMITED}) AS rate_limited,
               {_total("b.tokens")} AS tokens
        FROM buckets CROSS JOIN origin LEFT JOIN binned AS b ON b.bucket = buckets.bucket
        GROUP BY buckets.bucket, t0
        ORDER BY buckets.bucket
        """,
        [*params, bucket_s, bucket_s, bucket_s],
    )


def quota_events(db: Database, batch_id: str | None = None) -> pd.DataFrame:
    """When each model ran out of its daily quota (answered a per-day 429, `quota_exhausted`),
    so that the rotation to the next model can be marked on the throughput timeline.

    One row per model that did, earliest first. Columns: model, t (seconds from the first
    attempt's start to when the model's first per-day 429 ended: the same origin and clock as
    `throughput`'s t), exhausted_at (that moment), last_t and last_used_at (when the model's last
    attempt ended, on the same clock).
    """
    where, params = _filters(batch_id=batch_id)
    return db.frame(
        f"""
        WITH calls AS (SELECT * FROM ai_api_call {where}),
        origin AS (SELECT min(created_at) AS t0 FROM calls),
        ended AS (
            SELECT model, {_ENDED_AT} AS ended_at, error_kind = 'quota_exhausted' AS exhausted
            FROM calls
        ),
        per_model AS (
            SELECT model, min(ended_at) FILTER (WHERE exhausted) AS exhausted_at,
                   max(ended_at) AS last_used_at
            FROM ended GROUP BY model
        )
        SELECT model, {_seconds("exhausted_at", "t0")} AS t, exhausted_at,
               {_seconds("last_used_at", "t0")} AS last_t, last_used_at
        FROM per_model CROSS JOIN origin
        WHERE exhausted_at IS NOT NULL
        ORDER BY exhausted_at, model
        """,
        params,
    )


def _bucket_s(span_s: float) -> float:
    """A round bucket length giving at most 60 buckets over `span_s` (at least 1 s)."""
    for step in _BUCKET_STEPS_S:
        if span_s // step < _MAX_BUCKETS:
            return step
    return _DAY_S * (span_s // (_DAY_S * _MAX_BUCKETS) + 1)


def latency(db: Database, batch_id: str | None = None) -> pd.DataFrame:
    """Latency of successful attempts, one row per model (by name).

    Columns: model, count, p50_ms, p90_ms, p99_ms (interpolated percentiles), mean_ms, max_ms.
    """
    where, params = _filters(_SUCCEEDED, batch_id=batch_id)
    return db.frame(
        f"""
        SELECT model, count(*) AS count,
               quantile_cont(latency_ms, 0.5) AS p50_ms,
               quantile_cont(latency_ms, 0.9) AS p90_ms,
               quantile_cont(latency_ms, 0.99) AS p99_ms,
               avg(latency_ms) AS mean_ms, max(latency_ms) AS max_ms
        FROM ai_api_call {where}
        GROUP BY model
        ORDER BY model
        """,
        params,
    )


# --- users' own SQL ----------------------------------------------------------------------------


def sql(db: Database, query: str) -> pd.DataFrame:
    """The rows of a user's SELECT over the log's tables (batch_log, request, ai_api_call,
    result). Anything but SELECT/EXPLAIN, and any file access, raises ConfigurationError."""
    return db.sandboxed_select(query)


__all__ = [
    "COST_GROUPS",
    "Moment",
    "batch_summary",
    "batches",
    "costs",
    "errors",
    "latency",
    "parse_time",
    "quota_events",
    "results",
    "sql",
    "throughput",
    "usage_report",
]
