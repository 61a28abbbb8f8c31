"""Charts of the call log: matplotlib figures built from the store's reports.

This module owns the four charts that `%scriptgen chart` shows (throughput with 429s and model
rotations, latency percentiles, cost, errors), `chart()` that picks one by name, and
`figure_bytes()` that renders a figure to the same bytes whenever the data are the same. It reads
the log only through `scriptgen_nb.store.queries`. It must not import duckdb, ipywidgets or
IPython, nor pyplot: every chart is a `Chart`, a plain `matplotlib.figure.Figure` (no global
state, no window) that IPython shows as a PNG wherever it is returned, pyplot imported or not,
so a saved notebook keeps the image (not `<Figure size 800x450 with 2 Axes>`).

Scope: `throughput_chart` shows one batch, the latest one when `batch_id` is None; the other
charts cover the whole log unless given a `batch_id`. A chart with nothing to show is a figure
saying "no data yet", and one of attempts that all failed says so; never an exception. Made to
read well for small batches too: count axes tick at whole numbers, legends sit under the axes
(never over a bar or a title), and a line or bar at the top of its axis keeps headroom. Each
model keeps one color in every chart: colors come from a fixed palette in the sorted order of
all the models in the log.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import matplotlib
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..engine.errors import ConfigurationError
from ..store import CallStore, Database, queries

Source = CallStore | Database
Size = tuple[float, float]

DPI = 100
SIZE: Size = (8.0, 4.5)
NO_DATA = "no data yet"
NO_SUCCESS = "no attempt succeeded"
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
"""Model colors, given out in the sorted order of the log's model names."""

_COMPLETIONS, _FAILURES, _RATE_LIMITED, _MARKS = "#2ca02c", "#d62728", "#ff7f0e", "#333333"
_PERCENTILES = {"p50": "#9ecae1", "p90": "#4292c6", "p99": "#08519c"}
_UNNAMED = "(none)"  # a NULL operation, model or error kind, which pivot_table would drop
_SVG_SALT = "scriptgen"
# Metadata that would change between runs (dates) or versions; None leaves the entry out.
_METADATA: dict[str, dict[str, Any]] = {
    "svg": {"Date": None, "Creator": None},
    "png": {"Software": None},
}


class Chart(Figure):
    """A chart's figure: shown by IPython as a PNG (the same bytes as `figure_bytes`) without
    pyplot's display hooks, and named by its title where only text can be shown."""

    def _repr_png_(self) -> bytes:
        return figure_bytes(self, "png")

    def __repr__(self) -> str:
        titles = [ax.get_title() for ax in self.axes if ax.get_title()]
        return f"<scriptgen chart: {titles[0] if titles else 'untitled'}>"


# --- the charts --------------------------------------------------------------------------------


def throughput_chart(
    source: Source,
    batch_id: str | None = None,
    *,
    bucket_s: float | None = None,
    figsize: Size = SIZE,
) -> Chart:
    """One batch's attempts over time (`batch_id=None`: the latest batch), by when they ended.

    Stacked bars give the completions, failures and 429s per time bucket; a dashed line on the
    right-hand axis the completions so far, from 0 at the start through each bucket's end; a
    dotted vertical line marks "<model> out of daily quota" when a model's first per-day 429
    ended, that is when the batch rotated away from it. A batch none of whose attempts
    succeeded says so over its bars. The legend sits under the axes (in `figure.legends`).
    `bucket_s=None` picks the bucket as `queries.throughput` does.
    """
    db = _database(source)
    if batch_id is None:
        batch_id = _latest_batch(db)
    timeline = queries.throughput(db, batch_id, bucket_s)
    events = queries.quota_events(db, batch_id)

    def draw(ax: Axes) -> None:
        _draw_throughput(ax, timeline, events, _bucket_width(timeline, bucket_s))

    return _chart(f"Throughput{_scope(batch_id)}", timeline, draw, figsize)


def latency_chart(source: Source, batch_id: str | None = None, *, figsize: Size = SIZE) -> Chart:
    """p50, p90 and p99 latency of successful attempts per model, as grouped bars with their
    values on top; each model's label gives the number of attempts (`batch_id=None`: the whole
    log). Failed attempts only: a figure saying so."""
    db = _database(source)
    table = queries.latency(db, batch_id)
    title = f"Latency of successful attempts{_scope(batch_id)}"
    failed = int(queries.errors(db, batch_id)["count"].sum())
    empty = f"{NO_SUCCESS}: {_attempts(failed)} failed" if failed else NO_DATA
    return _chart(title, table, lambda ax: _draw_latency(ax, table), figsize, empty=empty)


def cost_chart(source: Source, batch_id: str | None = None, *, figsize: Size = SIZE) -> Chart:
    """Cost per operation, stacked by model, each bar's total at its end and the total in the
    title (`batch_id=None`: the whole log). An emulator's cost was never spent: its bars are
    their own, "OPERATION (simulated)", and the title gives real and simulated totals apart."""
    db = _database(source)
    costs = queries.costs(db, by=("batch_id", "operation", "model"))
    if batch_id is not None:
        costs = costs[costs["batch_id"] == batch_id]
    title = f"Cost by operation and model{_scope(batch_id)}, {_spent(costs)}"
    colors = _model_colors(db)
    operations = costs["operation"].fillna(_UNNAMED)
    labelled = costs.assign(
        operation=operations.where(~costs["simulated"], operations + " (simulated)")
    )

    def draw(ax: Axes) -> None:
        table = _by_model(labelled, "operation", "cost")
        _draw_stacked(ax, table, colors, "cost (USD)", _usd)

    return _chart(title, costs, draw, figsize)


def _spent(costs: pd.DataFrame) -> str:
    """The title's total: real spend, and what emulators simulated said apart (never added)."""
    simulated = costs["simulated"].astype(bool)
    real, fake = costs.loc[~simulated, "cost"].sum(), costs.loc[simulated, "cost"].sum()
    if not simulated.any():
        return f"total {_usd(real)}"
    apart = f"simulated {_usd(fake)} (emulator: not spent)"
    return apart if simulated.all() else f"real {_usd(real)}; {apart}"


def errors_chart(source: Source, batch_id: str | None = None, *, figsize: Size = SIZE) -> Chart:
    """Failed attempts (429s included) per error kind, stacked by model, each bar's count at its
    end and the total in the title (`batch_id=None`: the whole log)."""
    db = _database(source)
    errors = queries.errors(db, batch_id)
    title = f"Errors by kind{_scope(batch_id)}, total {errors['count'].sum()}"
    colors = _model_colors(db)

    def draw(ax: Axes) -> None:
        table = _by_model(errors, "error_kind", "count")
        _draw_stacked(ax, table, colors, "failed attempts", lambda n: f"{n:.0f}")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))

    return _chart(title, errors, draw, figsize)


CHARTS: dict[str, Callable[[Source, str | None], Chart]] = {
    "throughput": throughput_chart,
    "latency": latency_chart,
    "cost": cost_chart,
    "errors": errors_chart,
}
"""The charts by the name `chart()` and `%scriptgen chart` know them by."""


def chart(kind: str, source: Source, batch_id: str | None = None) -> Chart:
    """The chart named `kind` (throughput, latency, cost or errors) of the log or one batch."""
    try:
        build = CHARTS[kind]
    except KeyError:
        raise ConfigurationError(
            f"There is no {kind!r} chart; choose one of {', '.join(CHARTS)}."
        ) from None
    return build(source, batch_id)


def figure_bytes(fig: Figure, format: str = "svg") -> bytes:
    """`fig` rendered as svg or png, byte for byte the same for the same figure: no dates
    or version strings in the metadata, and SVG ids salted with a fixed string."""
    if format not in _METADATA:
        raise ConfigurationError(
            f"figure_bytes(format={format!r}): choose one of {', '.join(_METADATA)}."
        )
    buffer = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": _SVG_SALT}):
        fig.savefig(buffer, format=format, dpi=DPI, metadata=_METADATA[format])
    return buffer.getvalue()


# --- common setup ------------------------------------------------------------------------------


def _chart(
    title: str,
    data: pd.DataFrame,
    draw: Callable[[Axes], None],
    figsize: Size,
    *,
    empty: str = NO_DATA,
) -> Chart:
    """A figure with one titled axes that `draw` fills, or that says `empty` without data."""
    fig = Chart(figsize=figsize, dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title, wrap=True)  # a title wider than the figure wraps, not cut off
    if data.empty:
        ax.set_axis_off()
        _say(ax, empty)
    else:
        draw(ax)
    return fig


def _say(ax: Axes, message: str) -> None:
    """`message` in the middle of the axes, over whatever is drawn there."""
    ax.text(
        0.5,
        0.5,
        message,
        transform=ax.transAxes,
        ha="center",
        va="center",
        fontsize=14,
        bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8},
        zorder=5,
    )


def _attempts(count: int) -> str:
    return f"{count} attempt" if count == 1 else f"all {count} attempts"


def _database(source: Source) -> Database:
    return source.db if isinstance(source, CallStore) else source


def _latest_batch(db: Database) -> str | None:
    newest = queries.batches(db, limit=1)
    return None if newest.empty else str(newest["batch_id"].iloc[0])


def _scope(batch_id: str | None) -> str:
    return f" (batch {batch_id})" if batch_id is not None else " (all batches)"


def _model_colors(db: Database) -> dict[str, str]:
    models = sorted(set(queries.costs(db, by="model")["model"].fillna(_UNNAMED)))
    return {model: PALETTE[i % len(PALETTE)] for i, model in enumerate(models)}


def _usd(value: float) -> str:
    return f"${value:.4g}" if 0 < value < 1 else f"${value:,.2f}"


# --- drawing -----------------------------------------------------------------------------------


def _bucket_width(timeline: pd.DataFrame, bucket_s: float | None) -> float:
    """The buckets' length: as asked, else the step between two buckets. A lone bucket under
    the automatic choice means the span is under a second: 1 s."""
    if bucket_s is not None:
        return bucket_s
    starts = timeline["t"]
    return float(starts.iloc[1] - starts.iloc[0]) if len(starts) > 1 else 1.0


def _draw_throughput(ax: Axes, timeline: pd.DataFrame, events: pd.DataFrame, width: float) -> None:
    starts = timeline["t"]
    below = pd.Series(0, index=timeline.index)
    for column, color, label in (
        ("completions", _COMPLETIONS, "completions"),
        ("failures", _FAILURES, "failures"),
        ("rate_limited", _RATE_LIMITED, "429s (rate limited)"),
    ):
        ax.bar(
            starts, timeline[column], width, bottom=below, align="edge", color=color, label=label
        )
        below = below + timeline[column]
    for model, t in zip(events["model"], events["t"], strict=True):
        ax.axvline(t, color=_MARKS, linestyle=":", linewidth=1.5, zorder=3)
        ax.text(
            t,
            0.97,
            f"{model} out of daily quota",
            transform=ax.get_xaxis_transform(),
            rotation=90,
            ha="right",
            va="top",
            fontsize=8,
            color=_MARKS,
            backgroundcolor="white",
            zorder=4,
        )
    _count_axis(ax, below.max())
    ax.set_xlabel("seconds since the first attempt")
    ax.set_ylabel(f"attempts per {width:g} s")
    # Completions so far at each bucket's end, from none at the start: the line meets the bars'
    # edges, and a batch of one bucket still draws a line.
    so_far = ax.twinx()
    total = timeline["completions"].cumsum()
    so_far.plot(
        [0.0, *(starts + width)],
        [0, *total],
        "--",
        marker=".",
        color=_MARKS,
        label="completions so far",
    )
    _count_axis(so_far, total.iloc[-1])
    so_far.set_ylabel("completions so far")
    if not total.iloc[-1]:
        _say(ax, f"{NO_SUCCESS}: {_attempts(int(below.sum()))} failed")
    handles, labels = ax.get_legend_handles_labels()
    more_handles, more_labels = so_far.get_legend_handles_labels()
    ax.figure.legend(
        handles + more_handles,
        labels + more_labels,
        loc="outside lower center",
        ncols=len(labels + more_labels),
        fontsize="small",
    )


def _count_axis(ax: Axes, peak: float) -> None:
    """A y axis of counts from 0 to `peak`: whole-number ticks, and headroom above the peak
    (at least 1, so that an axis of zeros still has whole numbers to tick)."""
    ax.set_ylim(0, max(peak, 1) * 1.1)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))


def _draw_latency(ax: Axes, table: pd.DataFrame) -> None:
    width = 0.8 / len(_PERCENTILES)
    positions = range(len(table))
    for i, (name, shade) in enumerate(_PERCENTILES.items()):
        offset = (i - (len(_PERCENTILES) - 1) / 2) * width
        bars = ax.bar(
            [p + offset for p in positions],
            table[f"{name}_ms"],
            width,
            color=shade,
            label=name,
        )
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.set_xticks(
        list(positions),
        [
            f"{model}\n(n={count})"
            for model, count in zip(table["model"], table["count"], strict=True)
        ],
    )
    ax.set_ylabel("latency (ms)")
    ax.margins(y=0.1)  # room for the values on the tallest bars
    _legend_under(ax, "percentile")


def _by_model(frame: pd.DataFrame, category: str, value: str) -> pd.DataFrame:
    """`value` summed per `category` (rows, sorted) and model (columns, sorted), 0 if none."""
    named = frame.fillna({category: _UNNAMED, "model": _UNNAMED})
    return named.pivot_table(
        index=category, columns="model", values=value, aggfunc="sum", fill_value=0
    )


def _draw_stacked(
    ax: Axes,
    table: pd.DataFrame,
    colors: dict[str, str],
    xlabel: str,
    total_label: Callable[[float], str],
) -> None:
    """One horizontal bar per row of `table`, top to bottom, stacked by its model columns, with
    the bar's total at its end."""
    categories = [str(c) for c in table.index]
    left = pd.Series(0.0, index=table.index)
    for model in table.columns:
        bars = ax.barh(categories, table[model], left=left, color=colors[model], label=model)
        left = left + table[model]
    ax.bar_label(bars, labels=[total_label(total) for total in left], padding=3, fontsize=8)
    ax.invert_yaxis()
    ax.margins(x=0.15)  # room for the totals
    ax.set_xlabel(xlabel)
    _legend_under(ax, "model")


def _legend_under(ax: Axes, title: str) -> None:
    """The axes' legend under them (in `figure.legends`), up to four entries a row, where it
    covers no bar and no title (beside the axes, it covered a title longer than they are)."""
    handles, labels = ax.get_legend_handles_labels()
    ax.figure.legend(
        handles,
        labels,
        title=title,
        loc="outside lower center",
        ncols=min(len(labels), 4),
        fontsize="small",
    )


__all__ = [
    "CHARTS",
    "DPI",
    "NO_DATA",
    "NO_SUCCESS",
    "PALETTE",
    "SIZE",
    "Chart",
    "chart",
    "cost_chart",
    "errors_chart",
    "figure_bytes",
    "latency_chart",
    "throughput_chart",
]
