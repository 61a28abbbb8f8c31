"""The call log's reports, on a real DuckDB file holding hand-made rows (tests/call_log_rows.py).

Every expected figure below is worked out by hand from the rows' table there.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from scriptgen_nb.engine.errors import ConfigurationError
from scriptgen_nb.store import STALE_AFTER_S, Database, queries
from scriptgen_nb.store.queries import _bucket_s
from tests.call_log_rows import FLASH, HOUR, IMAGES, LITE, SCRIPT, T0, batch_row, fill, insert


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Database:
    """The two batches of call_log_rows; the tests below only read it."""
    database = Database(tmp_path_factory.mktemp("log") / "calls.duckdb")
    fill(database)
    return database


@pytest.fixture
def empty(tmp_path: Path) -> Database:
    return Database(tmp_path / "empty.duckdb")


def records(frame: pd.DataFrame, *columns: str) -> list[tuple[object, ...]]:
    return [tuple(row) for row in frame[list(columns)].itertuples(index=False)]


# --- usage and costs ---------------------------------------------------------------------------


def test_usage_report_groups_attempts_by_operation_and_model_most_costly_first(
    db: Database,
) -> None:
    report = queries.usage_report(db)
    assert list(report.columns) == [
        "simulated",
        "operation",
        "model",
        "requests",
        "successes",
        "input_tokens",
        "cached_tokens",
        "output_tokens",
        "thought_tokens",
        "cost",
        "unpriced",
    ]
    assert records(report, *report.columns[1:-2]) == [
        (SCRIPT, FLASH, 3, 1, 100, 0, 200, 10),  # r0 ok, r1 and r2 answered 429
        (IMAGES, FLASH, 3, 2, 110, 0, 170, 20),
        (SCRIPT, LITE, 4, 2, 210, 0, 330, 0),  # r1, r2 ok; r3's 500 and 400
        (IMAGES, LITE, 1, 1, 40, 0, 60, 0),
    ]
    assert not report["simulated"].any()  # both batches went to Google
    assert report["cost"].tolist() == pytest.approx([0.0010, 0.0007, 0.0003, 0.00005])
    assert report["unpriced"].tolist() == [0, 0, 0, 0]


@pytest.mark.parametrize(
    ("since", "until", "operations"),
    [
        (T0 + HOUR / 2, None, {IMAGES}),
        (None, T0 + HOUR / 2, {SCRIPT}),
        ((T0 + HOUR / 2).replace(tzinfo=None), None, {IMAGES}),  # naive means UTC
        ("2026-03-02T11:30:00+01:00", None, {IMAGES}),  # ISO with an offset: 10:30 UTC
        ("2026-03-02", "2026-03-03", {SCRIPT, IMAGES}),
    ],
)
def test_usage_report_keeps_the_time_range(
    db: Database, since: object, until: object, operations: set[str]
) -> None:
    report = queries.usage_report(db, since=since, until=until)  # type: ignore[arg-type]
    assert set(report["operation"]) == operations


def test_time_range_bounds_count_attempts_by_their_start(db: Database) -> None:
    # since = the moment r2's first attempt started: it and the four after it remain.
    report = queries.usage_report(db, since=T0 + timedelta(seconds=3), until=T0 + HOUR)
    assert report["requests"].sum() == 4
    assert report["cost"].sum() == pytest.approx(0.0001)


def test_parse_time_reads_durations_and_iso_and_refuses_the_rest() -> None:
    now = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    assert queries.parse_time("30m", now=now) == now - timedelta(minutes=30)
    assert queries.parse_time("2d", now=now) == now - timedelta(days=2)
    assert queries.parse_time("2026-03-02") == datetime(2026, 3, 2, tzinfo=UTC)
    with pytest.raises(ConfigurationError, match=r"'yesterday'.*30m.*ISO"):
        queries.parse_time("yesterday")


def test_costs_group_by_any_allowed_columns(db: Database) -> None:
    by_model = queries.costs(db)
    assert records(by_model, "model", "requests", "successes") == [(FLASH, 6, 3), (LITE, 5, 3)]
    assert by_model["cost"].tolist() == pytest.approx([0.0017, 0.00035])
    by_project = queries.costs(db, by="project_id")
    assert by_project["project_id"].tolist() == ["doc", "art"]
    assert by_project["cost"].tolist() == pytest.approx([0.0013, 0.00075])
    two = queries.costs(db, by=("batch_id", "model"), since=T0 + HOUR / 2)
    assert records(two, "batch_id", "model", "input_tokens") == [
        ("b-images", FLASH, 110),
        ("b-images", LITE, 40),
    ]


def test_simulated_spend_is_never_summed_with_real_spend(tmp_path: Path) -> None:
    """The same two batches, the images one answered by an emulator: every report keeps its
    attempts apart (real spend first), whatever it groups by."""
    db = Database(tmp_path / "mixed.duckdb")
    fill(db)
    with db.write() as con:
        con.execute(
            "UPDATE batch_log SET endpoint = 'http://127.0.0.1:8765', simulated = true "
            "WHERE batch_id = 'b-images'"
        )
        con.execute("UPDATE batch_log SET endpoint = 'google' WHERE batch_id = 'b-script'")
    by_model = queries.costs(db)
    assert records(by_model, "simulated", "model", "requests") == [
        (False, FLASH, 3),
        (False, LITE, 4),
        (True, FLASH, 3),
        (True, LITE, 1),
    ]
    assert by_model["cost"].tolist() == pytest.approx([0.0010, 0.0003, 0.0007, 0.00005])
    report = queries.usage_report(db)
    assert records(report, "simulated", "operation") == [
        (False, SCRIPT),
        (False, SCRIPT),
        (True, IMAGES),
        (True, IMAGES),
    ]
    by_endpoint = queries.costs(db, by="endpoint")
    assert records(by_endpoint, "simulated", "endpoint") == [
        (False, "google"),
        (True, "http://127.0.0.1:8765"),
    ]
    listed = queries.batches(db)
    assert records(listed, "batch_id", "simulated") == [("b-images", True), ("b-script", False)]
    assert queries.results(db, "b-script")["simulated"].tolist() == [False] * 4


@pytest.mark.parametrize(
    "by", ["prompt", ("model", "model; DROP TABLE result"), (), ("model",) * 2]
)
def test_costs_refuse_a_grouping_outside_the_allow_list(db: Database, by: object) -> None:
    with pytest.raises(ConfigurationError, match="model, operation, project_id, batch_id"):
        queries.costs(db, by=by)  # type: ignore[arg-type]


# --- batches -----------------------------------------------------------------------------------


def test_batches_lists_the_newest_first_with_counts_duration_cost_and_models(
    db: Database,
) -> None:
    listed = queries.batches(db)
    assert records(
        listed, "batch_id", "state", "request_count", "success_count", "failure_count"
    ) == [("b-images", "finished", 3, 3, 0), ("b-script", "finished", 4, 3, 1)]
    assert listed["duration_s"].tolist() == [3.5, 7.0]
    assert listed["cost"].tolist() == pytest.approx([0.00075, 0.0013])
    assert listed["models"].tolist() == [f"{FLASH}, {LITE}"] * 2
    assert queries.batches(db, limit=1)["batch_id"].tolist() == ["b-images"]


def dead_pid() -> int:
    """The id of a process that has certainly exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_running_batch_is_shown_as_died_when_its_heartbeat_or_its_process_is_gone(
    tmp_path: Path,
) -> None:
    db = Database(tmp_path / "running.duckdb")
    now = datetime.now(UTC)
    here, gone = socket.gethostname(), dead_pid()

    def running(batch_id: str, age_s: float, *, pid: int, host: str = here) -> dict[str, object]:
        started = now - timedelta(seconds=age_s)
        return batch_row(
            batch_id,
            status="running",
            started_at=started,
            heartbeat_at=started,
            pid=pid,
            hostname=host,
        )

    insert(
        db,
        "batch_log",
        [
            running("alive", 1, pid=os.getpid()),
            running("pid-gone", 2, pid=gone),
            running("other-host", 3, pid=gone, host="another-machine"),  # cannot check its pid
            running("stale", STALE_AFTER_S + 5, pid=os.getpid(), host="another-machine"),
            batch_row("cancelled", status="cancelled", started_at=now - HOUR),
        ],
    )
    listed = queries.batches(db)
    assert records(listed, "batch_id", "state", "status") == [
        ("alive", "running", "running"),
        ("pid-gone", "died", "running"),
        ("other-host", "running", "running"),
        ("stale", "died", "running"),
        ("cancelled", "cancelled", "cancelled"),
    ]
    # While running, the duration is the time until the last heartbeat.
    assert listed["duration_s"].iloc[0] == pytest.approx(0.0)
    assert queries.batch_summary(db, "pid-gone")["state"].iloc[0] == "died"


def test_a_died_batchs_counts_come_from_its_result_rows_not_its_last_heartbeat(
    tmp_path: Path,
) -> None:
    """A batch's row is refreshed once a second, its results four times a second: a process
    killed between the two left 20 successes in its row and 25 results in the file. A died
    batch is counted from its rows; one that ended keeps the figures it wrote at the end."""
    db = Database(tmp_path / "died.duckdb")
    started = datetime.now(UTC) - timedelta(seconds=STALE_AFTER_S + 5)
    heartbeat = {"success_count": 20, "cached_count": 1, "input_tokens": 200}
    insert(
        db,
        "batch_log",
        [
            batch_row(
                "died", status="running", started_at=started, heartbeat_at=started, **heartbeat
            ),
            batch_row("ended", status="finished", started_at=started - HOUR, **heartbeat),
        ],
    )
    # 25 successes (3 of them cached), 2 failures, 1 not run; one price unknown.
    outcomes = [(True, False, None)] * 22 + [(True, True, None)] * 3
    outcomes += [(False, False, "server_error")] * 2 + [(False, False, "not_run")]
    rows = [
        {
            "batch_id": batch_id,
            "request_id": f"r{i}",
            "request_index": i,
            "cache_key": f"k{i}",
            "success": success,
            "cached": cached,
            "error_kind": kind,
            "input_tokens": 10,
            "cached_tokens": 1,
            "output_tokens": 20,
            "thought_tokens": 2,
            "estimated_cost": None if i == 0 else 0.001,
        }
        for batch_id in ("died", "ended")
        for i, (success, cached, kind) in enumerate(outcomes)
    ]
    insert(db, "result", rows)
    figures = (
        "state",
        "success_count",
        "failure_count",
        "not_run_count",
        "cached_count",
        "input_tokens",
        "cached_tokens",
        "output_tokens",
        "thought_tokens",
        "unpriced",
    )
    listed = queries.batches(db)
    assert records(listed, "batch_id", *figures) == [
        ("died", "died", 25, 2, 1, 3, 280, 28, 560, 56, 1),
        ("ended", "finished", 20, 0, 0, 1, 200, 0, 0, 0, 0),
    ]
    assert listed["cost"].tolist() == pytest.approx([27 * 0.001, 0.0])
    summary = queries.batch_summary(db, "died")
    assert records(summary, *figures) == records(listed.iloc[:1], *figures)


def test_batch_summary_adds_attempts_and_rate_limits(db: Database) -> None:
    summary = queries.batch_summary(db, "b-script")
    assert len(summary) == 1
    assert list(summary.columns) == [*queries.batches(db).columns, "requests_sent", "rate_limited"]
    row = summary.iloc[0]
    assert (row["state"], row["requests_sent"], row["rate_limited"]) == ("finished", 7, 2)
    assert row["cost"] == pytest.approx(0.0013)


def test_batch_summary_of_an_unknown_batch_says_where_to_look(db: Database) -> None:
    with pytest.raises(ConfigurationError, match=r"'b-nope'.*batches\(db\)"):
        queries.batch_summary(db, "b-nope")


# --- requests and attempts ---------------------------------------------------------------------


def test_results_come_in_request_order_with_their_errors(db: Database) -> None:
    table = queries.results(db, "b-script")
    assert "batch_id" not in table.columns and "cache_key" in table.columns
    assert records(table, "request_id", "success", "model", "attempts") == [
        ("r0", True, FLASH, 1),
        ("r1", True, LITE, 2),
        ("r2", True, LITE, 2),
        ("r3", False, LITE, 2),
    ]
    assert table["error_kind"].fillna("-").tolist() == ["-", "-", "-", "invalid_request"]
    assert queries.results(db, "b-images").empty  # its results were not stored


def test_errors_break_attempts_down_by_kind_and_model(db: Database) -> None:
    table = queries.errors(db)
    assert records(table, "error_kind", "model", "count") == [
        ("rate_limited", FLASH, 2),
        ("invalid_request", LITE, 1),
        ("quota_exhausted", FLASH, 1),
        ("server_error", LITE, 1),
    ]
    first = table.iloc[0]
    assert first["first_at"] == T0 + timedelta(seconds=0.9)
    assert first["last_at"] == T0 + HOUR + timedelta(seconds=1)
    assert first["sample_message"] == f"rate_limited from {FLASH} at 1.0s"  # the latest
    assert len(queries.errors(db, batch_id="b-images")) == 1


def test_throughput_counts_outcomes_per_bucket_by_when_they_ended(db: Database) -> None:
    table = queries.throughput(db, batch_id="b-script", bucket_s=2)
    assert records(table, "t", "completions", "failures", "rate_limited", "tokens") == [
        (0, 1, 0, 1, 310),  # r0 ok at 1.0, r1's 429 at 1.1
        (2, 1, 0, 1, 300),  # r1 ok at 2.8, r2's 429 at 3.1
        (4, 1, 1, 0, 240),  # r2 ok at 4.6, r3's 500 at 5.5
        (6, 0, 1, 0, 0),  # r3's 400 at 6.2
    ]
    assert table["bucket_start"].tolist() == [T0 + timedelta(seconds=s) for s in (0, 2, 4, 6)]


def test_throughput_picks_round_buckets_and_keeps_the_empty_ones(db: Database) -> None:
    short = queries.throughput(db, batch_id="b-script")  # 6.2 s: 1 s buckets
    assert short["t"].tolist() == list(range(7))
    assert short["completions"].tolist() == [0, 1, 1, 0, 1, 0, 0]
    whole = queries.throughput(db)  # 3603.2 s: 60 s would give 61 buckets, so 120 s
    assert len(whole) == 31 and whole["t"].iloc[-1] == 3600
    assert whole["completions"].tolist() == [3, *[0] * 29, 3]
    assert whole["rate_limited"].sum() == 3 and whole["failures"].sum() == 2
    with pytest.raises(ConfigurationError, match="positive"):
        queries.throughput(db, bucket_s=0)


@pytest.mark.parametrize(
    ("span_s", "bucket_s"),
    [
        (0.0, 1),
        (59.9, 1),
        (60.0, 2),
        (299.0, 5),
        (3600.0, 120),
        (5 * 86_400, 10_800),  # 7200 s would cut five days into 61 buckets
        (100 * 86_400, 2 * 86_400),  # past the steps: whole days
    ],
)
def test_bucket_choice_gives_at_most_sixty_round_buckets(span_s: float, bucket_s: float) -> None:
    assert _bucket_s(span_s) == bucket_s
    assert 20 <= span_s // bucket_s + 1 <= 60 or bucket_s == 1


def test_quota_events_mark_when_each_model_ran_out_of_its_daily_quota(db: Database) -> None:
    script = queries.quota_events(db, batch_id="b-script")
    # flash's per-day 429 (r2, sent at 3.0) ended at 3.1, its last attempt in this batch.
    assert records(script, "model", "exhausted_at", "last_used_at") == [
        (FLASH, T0 + timedelta(seconds=3.1), T0 + timedelta(seconds=3.1))
    ]
    assert records(script, "t", "last_t") == [pytest.approx((3.1, 3.1))]
    # Over the whole log flash served again an hour later: p0 and p1 ended at 3600 + 2.0.
    assert records(queries.quota_events(db), "t", "last_t") == [pytest.approx((3.1, 3602.0))]
    assert queries.quota_events(db, batch_id="b-images").empty  # only a per-minute 429 there


def test_latency_percentiles_per_model_over_successful_attempts(db: Database) -> None:
    table = queries.latency(db)
    assert table["model"].tolist() == [LITE, FLASH]
    # lite: 600, 700, 800 ms; flash: 1000, 1500, 2000 ms (interpolated percentiles)
    assert records(table, "count", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "max_ms") == [
        pytest.approx((3, 700, 780, 798, 700, 800)),
        pytest.approx((3, 1500, 1900, 1990, 1500, 2000)),
    ]
    assert queries.latency(db, batch_id="b-script")["count"].tolist() == [2, 1]


# --- users' SQL and an empty log ---------------------------------------------------------------


def test_sql_runs_selects_and_refuses_writes_and_files(db: Database) -> None:
    assert queries.sql(db, "SELECT count(*) AS n FROM ai_api_call")["n"].iloc[0] == 11
    for statement in (
        "DROP TABLE result",
        "DELETE FROM ai_api_call",
        "ATTACH '/tmp/other.duckdb' AS other",
        "SELECT 1; DELETE FROM ai_api_call",
    ):
        with pytest.raises(ConfigurationError, match="Only SELECT"):
            queries.sql(db, statement)
    with pytest.raises(ConfigurationError, match=r"refused: read_csv\(\)"):
        queries.sql(db, "SELECT * FROM read_csv('/etc/passwd')")
    with pytest.raises(ConfigurationError, match=r"query failed.*no_such_column"):
        queries.sql(db, "SELECT no_such_column FROM ai_api_call")
    assert queries.sql(db, "SELECT count(*) AS n FROM ai_api_call")["n"].iloc[0] == 11


REPORTS: list[Callable[[Database], pd.DataFrame]] = [
    queries.usage_report,
    queries.costs,
    queries.batches,
    queries.errors,
    queries.throughput,
    queries.latency,
    queries.quota_events,
    lambda db: queries.results(db, "b-script"),
]


def test_every_report_on_an_empty_log_is_empty_with_its_columns(
    empty: Database, db: Database
) -> None:
    for report in REPORTS:
        blank, full = report(empty), report(db)
        assert blank.empty and not full.empty
        assert list(blank.columns) == list(full.columns)
    with pytest.raises(ConfigurationError, match="b-script"):
        queries.batch_summary(empty, "b-script")
