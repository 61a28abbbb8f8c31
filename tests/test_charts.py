"""The charts, drawn from a real DuckDB file of hand-made rows (tests/call_log_rows.py).

What is asserted is the figures' content (titles, labels, bar heights, line data, the rotation
mark, legends) against the store's own reports over the same file, and that rendering the same
data twice gives the same bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.colors import to_rgba
from matplotlib.container import BarContainer
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from scriptgen_nb.engine.errors import ConfigurationError
from scriptgen_nb.jupyter.charts import (
    NO_DATA,
    NO_SUCCESS,
    PALETTE,
    chart,
    cost_chart,
    errors_chart,
    figure_bytes,
    latency_chart,
    throughput_chart,
)
from scriptgen_nb.store import CallStore, Database, queries
from tests.call_log_rows import (
    FLASH,
    IMAGES,
    LITE,
    SCRIPT,
    T0,
    Call,
    batch_row,
    call_rows,
    fill,
    insert,
)

KINDS = ("throughput", "latency", "cost", "errors")


@pytest.fixture(scope="module")
def path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The two batches of call_log_rows (b-images, an hour after b-script, is the latest)."""
    file = tmp_path_factory.mktemp("log") / "calls.duckdb"
    fill(Database(file))
    return file


@pytest.fixture(scope="module")
def db(path: Path) -> Database:
    return Database(path)


# A batch of three requests that all failed within its first second, one attempt each.
FAILED_CALLS: list[Call] = [
    ("f0", 1, FLASH, "server_error", 500, None, None, None, 0.0, 0.0, 300),
    ("f1", 1, FLASH, "truncated", 200, 10, 30, 0, 0.0001, 0.1, 300),
    ("f2", 1, FLASH, "rate_limited", 429, None, None, None, 0.0, 0.2, 100),
]


@pytest.fixture(scope="module")
def failed(tmp_path_factory: pytest.TempPathFactory) -> Database:
    """A log whose one batch, b-failed, had no attempt succeed."""
    db = Database(tmp_path_factory.mktemp("failed") / "calls.duckdb")
    insert(db, "batch_log", [batch_row("b-failed", request_count=3, failure_count=3)])
    insert(db, "ai_api_call", call_rows("b-failed", SCRIPT, "doc", T0, FAILED_CALLS))
    return db


def axes(fig: Figure) -> Axes:
    return fig.axes[0]


def heights(ax: Axes) -> dict[str, list[float]]:
    """Each bar series' values, by its legend label."""
    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    return {str(c.get_label()): np.asarray(c.datavalues).tolist() for c in bars}


def xy(line: Line2D) -> tuple[list[float], list[float]]:
    return np.asarray(line.get_xdata()).tolist(), np.asarray(line.get_ydata()).tolist()


def texts(ax: Axes) -> list[str]:
    return [text.get_text() for text in ax.texts]


def legend(fig: Figure) -> list[str]:
    """The labels of the figure's one legend (outside the axes, so it covers no bar)."""
    (box,) = fig.legends
    return [text.get_text() for text in box.get_texts()]


# --- throughput --------------------------------------------------------------------------------


def test_throughput_shows_one_batch_completions_failures_and_429s_per_bucket(
    db: Database,
) -> None:
    fig = throughput_chart(db, "b-script")
    ax, so_far = fig.axes
    timeline = queries.throughput(db, "b-script")  # 1 s buckets over 6.2 s
    assert ax.get_title() == "Throughput (batch b-script)"
    assert ax.get_xlabel() == "seconds since the first attempt"
    assert ax.get_ylabel() == "attempts per 1 s"
    assert heights(ax) == {
        "completions": timeline["completions"].tolist(),
        "failures": timeline["failures"].tolist(),  # r3's 500 and 400
        "429s (rate limited)": timeline["rate_limited"].tolist(),  # r1's and r2's 429s
    }
    assert heights(ax)["completions"] == [0, 1, 1, 0, 1, 0, 0]
    _, failures, rate_limited = ax.containers
    assert [bar.get_y() for bar in failures] == timeline["completions"].tolist()  # stacked
    assert [bar.get_y() for bar in rate_limited] == (
        timeline["completions"] + timeline["failures"]
    ).tolist()
    assert [bar.get_x() for bar in rate_limited] == timeline["t"].tolist()
    assert so_far.get_ylabel() == "completions so far"
    assert legend(fig) == [
        "completions",
        "failures",
        "429s (rate limited)",
        "completions so far",
    ]


def test_completions_so_far_start_at_zero_and_meet_each_buckets_end(db: Database) -> None:
    _, so_far = throughput_chart(db, "b-script").axes
    # From the first attempt's start, then at the end of each 1 s bucket: the bars' edges.
    assert xy(so_far.lines[0]) == ([float(t) for t in range(8)], [0, 0, 1, 2, 2, 3, 3, 3])


def test_throughput_marks_when_a_model_ran_out_of_its_daily_quota(db: Database) -> None:
    ax = axes(throughput_chart(db, "b-script"))
    # flash's per-day 429 (r2, sent at 3.0 s) ended at 3.1 s: the rotation to lite.
    (mark,) = ax.texts
    assert mark.get_text() == f"{FLASH} out of daily quota"
    assert mark.get_position()[0] == pytest.approx(3.1)
    assert xy(ax.lines[0])[0] == pytest.approx([3.1, 3.1])  # the dotted vertical line
    # b-images had a per-minute 429 only: no rotation mark.
    assert texts(axes(throughput_chart(db, "b-images"))) == []


def test_throughput_defaults_to_the_latest_batch_and_takes_a_bucket(db: Database) -> None:
    latest = axes(throughput_chart(CallStore(db.path)))
    assert latest.get_title() == "Throughput (batch b-images)"
    ax = axes(throughput_chart(db, "b-script", bucket_s=2))
    assert ax.get_ylabel() == "attempts per 2 s"
    assert heights(ax)["completions"] == [1, 1, 1, 0]
    assert [bar.get_x() for bar in ax.containers[0]] == [0, 2, 4, 6]


# --- small and failed batches ------------------------------------------------------------------


def ticks(axis: Any) -> list[float]:
    """The tick values an axis shows (those within its limits)."""
    low, high = sorted(axis.get_view_interval())
    return [t for t in axis.get_majorticklocs() if low <= t <= high]


def test_count_axes_tick_whole_numbers_even_when_nothing_succeeded(
    db: Database, failed: Database
) -> None:
    for fig in (throughput_chart(db, "b-images"), throughput_chart(failed)):
        for ax in fig.axes:  # attempts per bucket, completions so far
            shown = ticks(ax.yaxis)
            assert len(shown) >= 2 and all(t == int(t) for t in shown), (ax.get_ylabel(), shown)
    for fig in (errors_chart(db), errors_chart(failed)):
        shown = ticks(axes(fig).xaxis)
        assert len(shown) >= 2 and all(t == int(t) for t in shown)


def test_completions_so_far_are_drawn_with_room_above_for_a_batch_of_one_bucket(
    failed: Database, tmp_path: Path
) -> None:
    quick = Database(tmp_path / "quick.duckdb")  # three answers within the first second
    calls: list[Call] = [
        (f"q{i}", 1, FLASH, None, 200, 10, 20, 0, 0.0001, 0.1 * i, 300) for i in range(3)
    ]
    insert(quick, "batch_log", [batch_row("b-quick", request_count=3, success_count=3)])
    insert(quick, "ai_api_call", call_rows("b-quick", SCRIPT, "doc", T0, calls))
    ax, so_far = throughput_chart(quick).axes
    assert heights(ax)["completions"] == [3]
    (line,) = so_far.lines
    assert xy(line) == ([0.0, 1.0], [0, 3])  # a line, where one point drew nothing
    assert so_far.get_ylim()[1] > 3 and ax.get_ylim()[1] > 3  # not cut by the frame


def overlaps(fig: Figure) -> list[str]:
    """The bars, their value labels and the titles that a legend of `fig` covers, once laid
    out (a title can run past its axes, where a legend beside them sits)."""
    fig.draw_without_rendering()
    covered = []
    for box in [*fig.legends, *(ax.get_legend() for ax in fig.axes)]:
        if box is None:
            continue
        where = box.get_window_extent()
        for ax in fig.axes:
            pieces = [*ax.patches, *ax.texts, ax.title]
            covered += [str(p) for p in pieces if p.get_window_extent().overlaps(where)]
    return covered


@pytest.mark.parametrize("kind", KINDS)
def test_legends_cover_no_bar_and_no_title(db: Database, failed: Database, kind: str) -> None:
    for source in (db, failed):  # failed: bars of equal length across the whole axes
        fig = chart(kind, source)
        assert overlaps(fig) == [], (kind, source.path)


def test_a_batch_where_nothing_succeeded_says_so(failed: Database) -> None:
    said = f"{NO_SUCCESS}: all 3 attempts failed"
    ax, _ = throughput_chart(failed).axes
    assert ax.get_title() == "Throughput (batch b-failed)"
    assert texts(ax) == [said]
    assert heights(ax) == {"completions": [0], "failures": [2], "429s (rate limited)": [1]}
    ax = axes(latency_chart(failed, "b-failed"))
    assert ax.get_title() == "Latency of successful attempts (batch b-failed)"
    assert texts(ax) == [said] and not ax.axison  # not "no data yet": there were attempts


# --- latency, cost, errors ---------------------------------------------------------------------


def test_latency_shows_percentiles_per_model_with_counts(db: Database) -> None:
    ax = axes(latency_chart(db))
    table = queries.latency(db)
    assert ax.get_title() == "Latency of successful attempts (all batches)"
    assert ax.get_ylabel() == "latency (ms)"
    assert heights(ax) == {p: table[f"{p}_ms"].tolist() for p in ("p50", "p90", "p99")}
    assert heights(ax)["p99"] == pytest.approx([798, 1990])
    assert [label.get_text() for label in ax.get_xticklabels()] == [
        f"{LITE}\n(n=3)",
        f"{FLASH}\n(n=3)",
    ]
    assert legend(ax.figure) == ["p50", "p90", "p99"]
    assert "1990" in texts(ax)  # the values on the bars
    one = axes(latency_chart(db, "b-script"))
    assert one.get_title() == "Latency of successful attempts (batch b-script)"
    assert [label.get_text() for label in one.get_xticklabels()] == [
        f"{LITE}\n(n=2)",
        f"{FLASH}\n(n=1)",
    ]


def test_cost_stacks_models_per_operation_with_the_total(db: Database) -> None:
    ax = axes(cost_chart(db))
    assert ax.get_title() == "Cost by operation and model (all batches), total $0.00205"
    assert ax.get_xlabel() == "cost (USD)"
    assert [label.get_text() for label in ax.get_yticklabels()] == [IMAGES, SCRIPT]
    bars = heights(ax)
    assert list(bars) == [LITE, FLASH] == legend(ax.figure)
    assert bars[LITE] == pytest.approx([0.00005, 0.0003])
    assert bars[FLASH] == pytest.approx([0.0007, 0.0010])
    assert [bar.get_x() for bar in ax.containers[1]] == pytest.approx(bars[LITE])  # stacked
    assert texts(ax) == ["$0.00075", "$0.0013"]
    one = axes(cost_chart(db, "b-script"))
    assert one.get_title() == "Cost by operation and model (batch b-script), total $0.0013"
    assert [label.get_text() for label in one.get_yticklabels()] == [SCRIPT]


def test_cost_keeps_an_emulators_spend_apart_from_real_spend(tmp_path: Path) -> None:
    mixed = Database(tmp_path / "mixed.duckdb")
    fill(mixed)
    with mixed.write() as con:
        con.execute("UPDATE batch_log SET simulated = true WHERE batch_id = 'b-images'")
    fig = cost_chart(mixed)
    ax = axes(fig)
    assert ax.get_title() == (
        "Cost by operation and model (all batches), real $0.0013; "
        "simulated $0.00075 (emulator: not spent)"
    )
    fig.draw_without_rendering()  # a title longer than the figure is wide wraps, not cut off
    assert fig.bbox.contains(*ax.title.get_window_extent().min)
    assert fig.bbox.contains(*ax.title.get_window_extent().max)
    assert [label.get_text() for label in ax.get_yticklabels()] == [
        f"{IMAGES} (simulated)",
        SCRIPT,
    ]
    assert texts(ax) == ["$0.00075", "$0.0013"]
    only = axes(cost_chart(mixed, "b-images"))
    assert only.get_title().endswith("(batch b-images), simulated $0.00075 (emulator: not spent)")


def test_errors_count_kinds_per_model(db: Database) -> None:
    ax = axes(errors_chart(db))
    assert ax.get_title() == "Errors by kind (all batches), total 5"
    assert ax.get_xlabel() == "failed attempts"
    kinds = ["invalid_request", "quota_exhausted", "rate_limited", "server_error"]
    assert [label.get_text() for label in ax.get_yticklabels()] == kinds
    counts = queries.errors(db).set_index(["model", "error_kind"])["count"]
    expected = {model: [counts.get((model, kind), 0) for kind in kinds] for model in (LITE, FLASH)}
    assert heights(ax) == expected == {LITE: [1, 0, 0, 1], FLASH: [0, 1, 2, 0]}
    assert legend(ax.figure) == [LITE, FLASH]
    assert texts(ax) == ["1", "1", "2", "1"]
    assert axes(errors_chart(db, "b-images")).get_title().endswith("(batch b-images), total 1")


def test_a_model_keeps_its_color_in_every_chart(db: Database) -> None:
    for fig in (cost_chart(db), errors_chart(db)):
        lite, flash = axes(fig).containers
        assert lite[0].get_facecolor() == to_rgba(PALETTE[0])  # sorted: 2.0-flash-lite first
        assert flash[0].get_facecolor() == to_rgba(PALETTE[1])
    # b-images's errors involve flash only; it keeps flash's color.
    (flash_only,) = axes(errors_chart(db, "b-images")).containers
    assert flash_only[0].get_facecolor() == to_rgba(PALETTE[1])


# --- dispatch, empty data, determinism ---------------------------------------------------------


def test_chart_picks_by_name_and_refuses_unknown_kinds(db: Database) -> None:
    assert axes(chart("latency", db, "b-script")).get_title().endswith("(batch b-script)")
    assert axes(chart("errors", CallStore(db.path))).get_title().startswith("Errors by kind")
    with pytest.raises(ConfigurationError, match=r"'pie'.*throughput, latency, cost, errors"):
        chart("pie", db)


@pytest.mark.parametrize("kind", KINDS)
def test_an_empty_log_or_unknown_batch_gives_a_no_data_figure(
    tmp_path: Path, db: Database, kind: str
) -> None:
    for fig in (chart(kind, Database(tmp_path / "empty.duckdb")), chart(kind, db, "b-nope")):
        ax = axes(fig)
        assert texts(ax) == [NO_DATA] and not ax.axison
        assert ax.get_title()


def test_a_batch_without_attempts_yet_gives_a_no_data_figure(tmp_path: Path) -> None:
    started = Database(tmp_path / "started.duckdb")
    insert(started, "batch_log", [batch_row("b-new", status="running", started_at=T0)])
    ax = axes(throughput_chart(started))
    assert ax.get_title() == "Throughput (batch b-new)"
    assert texts(ax) == [NO_DATA]


@pytest.mark.parametrize("kind", KINDS)
def test_the_same_data_renders_to_the_same_svg(path: Path, kind: str) -> None:
    salt = matplotlib.rcParams["svg.hashsalt"]
    first, second = (
        figure_bytes(chart(kind, source(path), "b-script")) for source in (Database, CallStore)
    )
    assert first == second
    svg = first.decode()
    assert svg.startswith("<?xml") and "<dc:date>" not in svg and "Matplotlib v" not in svg
    assert matplotlib.rcParams["svg.hashsalt"] == salt  # salted only while rendering


def test_the_same_data_renders_to_the_same_png(path: Path) -> None:
    # nbval ignores PNG, but committed notebooks should not churn either.
    first, second = (
        figure_bytes(throughput_chart(source(path), "b-script"), "png")
        for source in (Database, CallStore)
    )
    assert first == second and first.startswith(b"\x89PNG")


@pytest.mark.parametrize("kind", KINDS)
def test_a_chart_shows_as_its_png_and_reads_as_its_title(db: Database, kind: str) -> None:
    # IPython calls _repr_png_ where no formatter for Figure is registered (pyplot never
    # imported): a notebook saves the image, not `<Figure size 800x450 with 2 Axes>`.
    fig = chart(kind, db, "b-script")
    assert fig._repr_png_() == figure_bytes(fig, "png")
    assert repr(fig) == f"<scriptgen chart: {axes(fig).get_title()}>"


def test_figure_bytes_refuses_unknown_formats(db: Database) -> None:
    with pytest.raises(ConfigurationError, match="svg, png"):
        figure_bytes(latency_chart(db), "pdf")
