"""The charts, drawn from a real DuckDB file of hand-made rows (tests/call_log_rows.py).

What is asserted is the figures' content (titles, labels, bar heights, line data, the rotation
mark, legends) against the store's own reports over the same file, and that rendering the same
data twice gives the same bytes.
"""

from __future__ import annotations

from pathlib import Path

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
    PALETTE,
    chart,
    cost_chart,
    errors_chart,
    figure_bytes,
    latency_chart,
    throughput_chart,
)
from scriptgen_nb.store import CallStore, Database, queries
from tests.call_log_rows import FLASH, IMAGES, LITE, SCRIPT, T0, batch_row, fill, insert

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


def legend(ax: Axes) -> list[str]:
    box = ax.get_legend()
    assert box is not None
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
    x, completions = xy(ax.lines[0])
    assert completions == timeline["completions"].tolist() == [0, 1, 1, 0, 1, 0, 0]
    assert x == [t + 0.5 for t in range(7)]  # bucket centres
    assert heights(ax) == {
        "failures": timeline["failures"].tolist(),  # r3's 500 and 400
        "429s (rate limited)": timeline["rate_limited"].tolist(),  # r1's and r2's 429s
    }
    rate_limited = ax.containers[1]
    assert [bar.get_y() for bar in rate_limited] == timeline["failures"].tolist()  # stacked
    assert [bar.get_x() for bar in rate_limited] == timeline["t"].tolist()
    assert so_far.get_ylabel() == "completions so far"
    assert xy(so_far.lines[0]) == ([t + 1.0 for t in range(7)], [0, 1, 2, 2, 3, 3, 3])
    assert [text.get_text() for text in fig.legends[0].get_texts()] == [
        "completions",
        "failures",
        "429s (rate limited)",
        "completions so far",
    ]


def test_throughput_marks_when_a_model_ran_out_of_its_daily_quota(db: Database) -> None:
    ax = axes(throughput_chart(db, "b-script"))
    # flash's per-day 429 (r2, sent at 3.0 s) ended at 3.1 s: the rotation to lite.
    (mark,) = ax.texts
    assert mark.get_text() == f"{FLASH} out of daily quota"
    assert mark.get_position()[0] == pytest.approx(3.1)
    assert xy(ax.lines[1])[0] == pytest.approx([3.1, 3.1])  # the dotted vertical line
    # b-images had a per-minute 429 only: no rotation mark.
    assert texts(axes(throughput_chart(db, "b-images"))) == []


def test_throughput_defaults_to_the_latest_batch_and_takes_a_bucket(db: Database) -> None:
    latest = axes(throughput_chart(CallStore(db.path)))
    assert latest.get_title() == "Throughput (batch b-images)"
    ax = axes(throughput_chart(db, "b-script", bucket_s=2))
    assert ax.get_ylabel() == "attempts per 2 s"
    assert xy(ax.lines[0]) == ([1, 3, 5, 7], [1, 1, 1, 0])


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
    assert legend(ax) == ["p50", "p90", "p99"]
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
    assert list(bars) == [LITE, FLASH] == legend(ax)
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
    ax = axes(cost_chart(mixed))
    assert ax.get_title() == (
        "Cost by operation and model (all batches), real $0.0013; "
        "simulated $0.00075 (emulator: not spent)"
    )
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
    assert legend(ax) == [LITE, FLASH]
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


def test_figure_bytes_refuses_unknown_formats(db: Database) -> None:
    with pytest.raises(ConfigurationError, match="svg, png"):
        figure_bytes(latency_chart(db), "pdf")
