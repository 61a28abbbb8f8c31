"""Turn `results.json` into `results.png` (matplotlib, Agg) and `BENCHMARKS.md`.

Every number in the markdown comes from the results dict, so the tables always match the run
they describe. `python -m bench.report [DIR]` rebuilds both files from `DIR/results.json`
(default: `bench/`) without running anything.
"""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from . import notes

HERE = Path(__file__).parent
COLORS = {
    "ours (default)": "#1f77b4",
    "ours, max_concurrency='seed'": "#ff7f0e",
    "naive gather + SDK retries": "#d62728",
    "cookbook pattern": "#2ca02c",
    "sequential (queue of 5)": "#9467bd",
}


# --- formatting ------------------------------------------------------------------------------


def _num(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _run_cells(row: dict[str, Any], ratio_digits: int = 3, rps_digits: int = 1) -> list[str]:
    """Time, bound, time / bound, 429s, failures, requests per second."""
    return [
        _num(row["time_s"]),
        _num(row["bound_s"]),
        _num(row["ratio"], ratio_digits),
        _num(row["http_429"]),
        _failures(row),
        _num(row["rps"], rps_digits),
    ]


def _rows_table(
    headers: Sequence[str], rows: Sequence[dict[str, Any]], cells: Callable[[dict[str, Any]], list]
) -> str:
    """One line per row: `cells(row)`, or what a failed or not applicable run says instead."""
    return _table(headers, [_special(row, len(headers)) or cells(row) for row in rows])


def _failures(row: dict[str, Any]) -> str:
    failed = row.get("failed", 0)
    if not failed:
        return "0"
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(row.get("failures", {}).items()))
    return f"{failed} ({kinds})" if kinds else str(failed)


def _special(row: dict[str, Any], width: int) -> list[str] | None:
    name = row["contender"]
    if "error" in row:
        return [name, row.get("variant") or "", f"**run failed:** {row['error']}"] + [""] * (
            width - 3
        )
    if "not_applicable" in row:
        return [name, row.get("variant") or "", f"n/a: {row['not_applicable']}"] + [""] * (
            width - 3
        )
    return None


RATE_HEADERS = [
    "contender",
    "variant",
    "time (s)",
    "bound (s)",
    "time / bound",
    "429s received",
    "failed",
    "req/s",
    "client CPU ms/req",
]


def _rate_table(
    rows: Sequence[dict[str, Any]],
    extra_headers: Sequence[str] = (),
    extra_cells: Callable[[dict[str, Any]], list[str]] | None = None,
) -> str:
    """The rate scenarios' table; `extra_cells(row)` fills the `extra_headers` columns."""

    def cells(row: dict[str, Any]) -> list[str]:
        return [
            row["contender"],
            row.get("variant") or "",
            *_run_cells(row),
            _num(row["cpu_ms_per_req"]),
            *(extra_cells(row) if extra_cells else []),
        ]

    return _rows_table([*RATE_HEADERS, *extra_headers], rows, cells)


def _after_exhaustion_cells(row: dict[str, Any]) -> list[str]:
    after = (row.get("extra") or {}).get("after_exhaustion") or {}
    return [_num(after.get("calls_after")), _num(after.get("efficiency"), 3)]


def _seed_claim_cells(row: dict[str, Any]) -> list[str]:
    reported = (row.get("extra") or {}).get("seed_reported_scaled_s") or {}
    if not reported:
        return [""]
    if row["contender"].startswith("sequential"):
        return [f"{reported['sequential']} s sequential"]
    return [f"{reported['batch']} s batch" if "seed" in row["contender"] else ""]


def _extra_cells(*keys: str) -> Callable[[dict[str, Any]], list[str]]:
    """Cells reading `row["extra"]` by path ("stop.first_answer_s"), "–" where absent."""

    def cells(row: dict[str, Any]) -> list[str]:
        out = []
        for key in keys:
            value: Any = row.get("extra") or {}
            for part in key.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            out.append(_num(value, 3) if not isinstance(value, dict) else _pairs(value))
        return out

    return cells


def _pairs(mapping: dict[str, Any]) -> str:
    return ", ".join(f"{k} {_num(v)}" for k, v in mapping.items()) or "–"


def _storm_cells(row: dict[str, Any]) -> list[str]:
    model: dict[str, Any] = next(iter((row.get("server") or {}).values()), {})
    return [_num(model.get("bare_429")), *_extra_cells("after_storm.first_send_after_s")(row)]


def _retired_cells(row: dict[str, Any]) -> list[str]:
    retired: dict[str, Any] = next(
        (m for m in (row.get("server") or {}).values() if m.get("retired")), {}
    )
    return [
        _num(retired.get("requests", 0)),
        *_extra_cells("stop.started_before_first", "successes_by_model")(row),
    ]


def _billing_table(rows: Sequence[dict[str, Any]]) -> str:
    """Scenario 10: when the batch stopped, against its first billing answer, and the calls."""
    headers = [
        "contender",
        "variant",
        "time (s)",
        "first billing answer at (s)",
        "ended after it (s)",
        "calls the server received",
        "attempts started when it was handled",
        "attempts started in all",
        "raised",
    ]

    def cells(row: dict[str, Any]) -> list[str]:
        return [
            row["contender"],
            row.get("variant") or "",
            _num(row["time_s"], 3),
            *_extra_cells(
                "stop.first_answer_s",
                "stop.ended_after_s",
            )(row),
            _num(row["calls_sent"]),
            *_extra_cells("stop.started_before_first", "stop.started")(row),
            str((row.get("extra") or {}).get("raised", "nothing"))[:90],
        ]

    return _rows_table(headers, rows, cells)


def _s5_table(rows: Sequence[dict[str, Any]]) -> str:
    bares = [
        r for r in rows if r["contender"].startswith("bare SDK") and r.get("role") == "reference"
    ]
    bare = max((r for r in bares if r.get("rps")), key=lambda r: r["rps"], default=None)
    diag_ref = next((r for r in rows if r.get("role") == "diagnostic reference"), None)
    headers = [
        "contender",
        "role",
        "requests",
        "time (s)",
        "bound (s)",
        "time / bound",
        "429s",
        "failed",
        "req/s",
        "share of bare (faster bare; diagnostics: the bare run of their size)",
        "client CPU ms/req",
        "runs: s (CPU ms/req)",
    ]

    def cells(row: dict[str, Any]) -> list[str]:
        reference = diag_ref if str(row.get("role", "")).startswith("diagnostic") else bare
        share = row["rps"] / reference["rps"] if reference and row.get("rps") else None
        return [
            row["contender"],
            row.get("role", ""),
            _num(row["n"]),
            *_run_cells(row, ratio_digits=2, rps_digits=0),
            _num(share, 2) if row.get("role") != "engine alone" else "–",
            _num(row["cpu_ms_per_req"], 3),
            _runs(row),
        ]

    return _rows_table(headers, rows, cells)


def _runs(row: dict[str, Any]) -> str:
    extra = row.get("extra") or {}
    times = extra.get("runs_s") or []
    cpus = extra.get("cpu_runs") or [None] * len(times)
    return ", ".join(f"{_num(t)} ({_num(c)})" for t, c in zip(times, cpus, strict=False))


def _s6_table(rows: Sequence[dict[str, Any]]) -> str:
    headers = [
        "run",
        "time (s)",
        "req/s",
        "peak RSS (MB)",
        "RSS after imports (MB)",
        "RSS right after a flush, median (max) (MB)",
        "the peak last rose after (results)",
        "log write time (s, summed over flushes)",
        "final flush (s)",
        "rows written (calls, results)",
    ]
    out = []
    for row in rows:
        if "error" in row:
            out.append([row["contender"], f"**run failed:** {row['error']}"] + [""] * 8)
            continue
        written = row.get("rows")
        steps = row.get("hwm_steps") or []
        out.append(
            [
                row["contender"],
                _num(row["wall_s"]),
                _num(row["rps"], 0),
                _num(row["peak_rss_mb"], 1),
                _num(row["baseline_rss_mb"], 1),
                _after_flush(row),
                _num(int(steps[-1][0])) if written and steps else "–",
                _num(row["log_write_s"]),
                _num(row["final_flush_s"], 3),
                f"{written['ai_api_call']:,}, {written['result']:,}" if written else "–",
            ]
        )
    return _table(headers, out)


def _after_flush(row: dict[str, Any]) -> str:
    rss = row.get("rss_after_flush_mb")
    return f"{_num(rss['median'], 1)} ({_num(rss['max'], 1)})" if rss else "–"


def _s7_table(rows: Sequence[dict[str, Any]]) -> str:
    headers = ["query", "median (ms)", "min (ms)", "max (ms)", "first run (ms)", "result rows"]
    out = [
        [
            r["contender"],
            _num(r["median_ms"], 1),
            _num(r["min_ms"], 1),
            _num(r["max_ms"], 1),
            _num(r["first_ms"], 1),
            _num((r.get("result_shape") or [None])[0]),
        ]
        for r in rows
    ]
    return _table(headers, out)


def _goals_table(scenarios: dict[str, Any]) -> str:
    out = []
    for key, scenario in scenarios.items():
        for goal in scenario.get("goals", []):
            verdict = {True: "**met**", False: "**not met**", None: "info"}[goal["met"]]
            out.append([key, goal["goal"], goal["target"], goal["value"], verdict])
    return _table(["#", "goal", "target", "measured", "verdict"], out)


# --- chart -----------------------------------------------------------------------------------


def _wrap(label: str, width: int = 34) -> str:
    return "\n".join(textwrap.wrap(label, width)) or label


def _cumulative(
    ax: Any, scenario: dict[str, Any], variant: str | None, title: str, whole: bool = False
) -> None:
    """One variant's contenders, completions over time, against the ideal client."""
    rows = [r for r in scenario["rows"] if r.get("variant") == variant]
    _curves(ax, rows, scenario.get("ideal"), scenario.get("bound_s"), title, whole=whole)


def _curves(
    ax: Any,
    rows: Sequence[dict[str, Any]],
    ideal: Sequence[Sequence[float]] | None,
    bound: Any,
    title: str,
    name: Callable[[dict[str, Any]], str] = lambda row: row["contender"],
    colors: Sequence[str | None] = (),
    whole: bool = False,
) -> None:
    """Each row's completions over time (`name(row)` in the legend, `colors` in turn, else the
    contender's colour), the ideal client's staircase and the bound. The time axis ends at 1.6x
    the bound (slower contenders run off it), or with `whole` after the slowest row; with
    `whole`, a row that answered nothing is a flat line at 0 until it ended."""
    drawn = [row for row in rows if row.get("series") or (whole and "time_s" in row)]
    for i, row in enumerate(drawn):
        color = colors[i] if i < len(colors) else None
        xs = [0.0] + [p[0] for p in row.get("series") or [[row["time_s"], 0]]]
        ys = [0] + [p[1] for p in row.get("series") or [[row["time_s"], 0]]]
        label = f"{name(row)} ({row['time_s']:.1f} s)"
        ax.step(xs, ys, where="post", label=label, color=color or COLORS.get(row["contender"]))
    if ideal:
        ax.plot(
            [p[0] for p in ideal],
            [p[1] for p in ideal],
            "k--",
            lw=1,
            label=f"bound ({bound:.1f} s)" if isinstance(bound, int | float) else "bound",
        )
    if isinstance(bound, int | float):
        slowest = max((row["time_s"] for row in drawn), default=0.0) if whole else 0.0
        ax.set_xlim(0, max(bound * 1.6, slowest * 1.05))
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("seconds", fontsize=8)
    ax.set_ylabel("requests answered", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6, loc="lower right")


def _bars(ax: Any, labels: list[str], values: list[float], title: str, unit: str) -> None:
    ax.barh(range(len(values)), values, color="#1f77b4")
    ax.set_yticks(range(len(values)), [_wrap(label) for label in labels], fontsize=6)
    ax.invert_yaxis()
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(unit, fontsize=8)
    ax.tick_params(axis="x", labelsize=7)


def write_chart(results: dict[str, Any], path: Path) -> None:
    scenarios = results["scenarios"]
    fig, axes = plt.subplots(3, 4, figsize=(24, 18), layout="constrained")
    flat = list(axes.flat)
    for ax in flat:
        ax.set_visible(False)
    if "1" in scenarios:
        flat[0].set_visible(True)
        _cumulative(flat[0], scenarios["1"], None, "1. Rate-bound, one model")
    if "2" in scenarios:
        variants = list(dict.fromkeys(r.get("variant") for r in scenarios["2"]["rows"]))
        for ax, variant in zip(flat[1:3], variants, strict=False):
            ax.set_visible(True)
            _cumulative(ax, scenarios["2"], variant, f"2. Limits wrong: {variant}")
    if "3" in scenarios:
        flat[3].set_visible(True)
        _cumulative(flat[3], scenarios["3"], None, "3. Rotation across a ladder")
    if "4" in scenarios:
        ax = flat[4]
        ax.set_visible(True)
        rows = [r for r in scenarios["4"]["rows"] if "time_s" in r]
        variants = list(dict.fromkeys(r["variant"] for r in rows))
        names = list(dict.fromkeys(r["contender"] for r in rows))
        width = 0.8 / max(1, len(names))
        for j, name in enumerate(names):
            xs, ys = [], []
            for i, variant in enumerate(variants):
                row = next(
                    (r for r in rows if r["contender"] == name and r["variant"] == variant), None
                )
                if row:
                    xs.append(i + j * width)
                    ys.append(row["time_s"])
            ax.bar(xs, ys, width, label=name, color=COLORS.get(name))
        bounds = scenarios["4"]["bound_s"]
        for i, variant in enumerate(variants):
            key = variant.split()[0]
            if key in bounds:
                ax.hlines(bounds[key], i - 0.1, i + 0.8, colors="k", linestyles="--", lw=1)
        ax.set_xticks(
            [i + 0.4 - width / 2 for i in range(len(variants))],
            [v.split()[0] for v in variants],
            fontsize=7,
        )
        ax.set_xlabel("chapters", fontsize=8)
        ax.set_ylabel("seconds (dashed: bound)", fontsize=8)
        ax.set_title("4. The seed's table", fontsize=9)
        ax.legend(fontsize=6)
        ax.tick_params(labelsize=7)
    if "5" in scenarios:
        ax = flat[5]
        ax.set_visible(True)
        rows = [r for r in scenarios["5"]["rows"] if r.get("rps")]
        http = [r for r in rows if r.get("role") != "engine alone"]
        alone = ", ".join(
            f"log {r['contender'].rsplit(' ', 1)[-1]}: {r['rps']:,.0f}/s"
            for r in rows
            if r.get("role") == "engine alone"
        )
        role_colors = {
            "reference": "#7f7f7f",
            "headline": "#1f77b4",
            "diagnostic": "#aec7e8",
            "diagnostic reference": "#c7c7c7",
            "diagnostic, off the chain": "#dbdb8d",
        }
        ax.barh(
            range(len(http)),
            [r["rps"] for r in http],
            color=[role_colors.get(r.get("role", ""), "#2ca02c") for r in http],
        )
        ax.set_yticks(range(len(http)), [_wrap(r["contender"]) for r in http], fontsize=6)
        ax.invert_yaxis()
        ax.set_title(
            f"5. Engine overhead over HTTP (requests/s)\nengine alone on FakeBackend: {alone}",
            fontsize=9,
        )
        ax.set_xlabel("requests/s", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
    if "6" in scenarios:
        flat[6].set_visible(True)
        rows = [r for r in scenarios["6"]["rows"] if "peak_rss_mb" in r]
        _bars(
            flat[6],
            [r["contender"] for r in rows],
            [r["peak_rss_mb"] for r in rows],
            "6. Peak RSS (goal: < 400 MB, flat in N)",
            "MB",
        )
        flat[6].axvline(400, color="r", ls="--", lw=1)
    if "7" in scenarios:
        flat[7].set_visible(True)
        rows = scenarios["7"]["rows"]
        _bars(
            flat[7],
            [r["contender"] for r in rows],
            [r["median_ms"] for r in rows],
            f"7. Log queries over {scenarios['7']['params']['rows']:,} rows (goal: < 200 ms)",
            "median ms",
        )
        flat[7].axvline(200, color="r", ls="--", lw=1)
    _real_service_charts(scenarios, flat[8:])
    fig.suptitle(
        f"scriptgen_nb benchmarks — {results['meta']['date']} — {results['meta']['command']}",
        fontsize=11,
    )
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _real_service_charts(scenarios: dict[str, Any], axes: Sequence[Any]) -> None:
    """Scenarios 8 (both batches, per timing), 9 (the storm shaded) and 11, on `axes`."""
    s8: dict[str, Any] = scenarios.get("8") or {"bound_s": {}}
    for ax, label in zip(axes[:2], s8["bound_s"], strict=False):
        rows = [r for r in s8["rows"] if str(r.get("variant", "")).startswith(f"{label}:")]
        ax.set_visible(True)
        _curves(
            ax,
            rows,
            s8["ideal"][label],
            s8["bound_s"][label],
            f"8. Hidden tier, {label}: a free-tier guess (5) against 150 per window",
            name=lambda row: row["variant"].split(": ", 1)[1],
            colors=("#1f77b4", "#17becf"),
            whole=True,
        )
    s9 = scenarios.get("9")
    if s9:
        axes[2].set_visible(True)
        _cumulative(
            axes[2], s9, None, "9. A storm of 429s without details (shaded), then service", True
        )
        axes[2].axvspan(0, s9["params"]["storm_s"], color="#d62728", alpha=0.1)
    s11 = scenarios.get("11")
    if s11:
        axes[3].set_visible(True)
        _cumulative(axes[3], s11, None, "11. A retired model first in a ladder of two", True)


# --- markdown --------------------------------------------------------------------------------


def _meta(results: dict[str, Any]) -> str:
    meta = results["meta"]
    packages = ", ".join(f"{k} {v}" for k, v in meta["packages"].items())
    dirty = meta.get("package_uncommitted_changes") or []
    tree = f"commit {meta['package_commit']}" + (
        f", with uncommitted changes by other engineers in {', '.join(dirty)}" if dirty else ""
    )
    return "\n".join(
        [
            f"- **Command:** `{meta['command']}` (runs `python -m bench.run`); "
            f"**wall time {meta['wall_s']:.0f} s** ({meta['wall_s'] / 60:.1f} min), measured by "
            "the run from its start to its end.",
            f"- **Date:** {meta['date']} (`date`).",
            f"- **Machine:** {meta['nproc']} cores ({meta['cpu']}), {meta['memory']} memory, "
            f"{meta['os']}.",
            f"- **Python** {meta['python']}; {packages}.",
            f"- **Package under test:** {tree}.",
        ]
    )


def _physics(results: dict[str, Any]) -> str:
    physics = results.get("physics")
    s5 = results["scenarios"].get("5")
    lines = []
    if physics:
        for run in physics["emulator_ceiling"]:
            lines.append(
                f"- The emulator alone (its own process), driven by {run['threads']} threads each "
                f"with a keep-alive `http.client` connection for {run['seconds']} s: "
                f"**{run['rps']:,.0f} requests/s** (zero latency, no limits)."
            )
    if s5:
        bare = next((r for r in s5["rows"] if r["contender"].startswith("bare SDK gather")), None)
        if bare and "rps" in bare:
            lines.append(
                f"- The bare google-genai SDK (`asyncio.gather` under a semaphore of 64, no "
                f"retries, no logging) against the same server: **{bare['rps']:,.0f} requests/s**, "
                f"{bare['cpu_ms_per_req']:.2f} ms of client CPU per call. Every SDK-based client "
                "sits under this line; the emulator is not what limits it."
            )
    return "\n".join(lines)


def _load_note(scenario: dict[str, Any]) -> str:
    load = scenario.get("load")
    if not load:
        return ""
    return (
        f"; other processes used {load['others_share_of_machine']:.0%} of the machine "
        f"meanwhile (load average {load['loadavg_1min_end']:.2f} at the end)"
    )


def write_markdown(results: dict[str, Any], path: Path) -> None:
    scenarios = results["scenarios"]
    parts = [
        "# Benchmarks",
        "",
        "Generated by `bench/report.py` from `bench/results.json` (this run's raw results); "
        "do not edit by hand: `make bench` rewrites it.",
        "",
        _meta(results),
        "",
        notes.HOW_TO_READ.format(**results["params"], factor=round(1 / results["params"]["scale"])),
        "",
        "![results](results.png)",
        "",
        "## Goals",
        "",
        _goals_table(scenarios),
        "",
        notes.headline(results),
        "",
        "## Physics: the ceilings",
        "",
        _physics(results),
        "",
    ]
    renderers = {
        "1": lambda s: _rate_table(s["rows"]),
        "2": lambda s: _rate_table(s["rows"]),
        "3": lambda s: _rate_table(
            s["rows"],
            ["calls to the exhausted model after its first per-day 429", "rate after"],
            _after_exhaustion_cells,
        ),
        "4": lambda s: _rate_table(s["rows"], ["the seed reports (scaled)"], _seed_claim_cells),
        "5": lambda s: _s5_table(s["rows"]),
        "6": lambda s: _s6_table(s["rows"]),
        "7": lambda s: _s7_table(s["rows"]),
        "8": lambda s: _rate_table(
            s["rows"], ["limits learned (the engine's events)"], _extra_cells("limit_story")
        ),
        "9": lambda s: _rate_table(
            s["rows"],
            ["429s without details", "first call after the storm (s after its end)"],
            _storm_cells,
        ),
        "10": lambda s: _billing_table(s["rows"]),
        "11": lambda s: _rate_table(
            s["rows"],
            [
                "calls to the retired model",
                "attempts started when its first 404 was handled",
                "successes by model",
            ],
            _retired_cells,
        ),
        "12": lambda s: _rate_table(
            s["rows"],
            ["ledger CPU ms/req (client)", "each process ended at (s)"],
            _extra_cells("ledger_cpu_ms_per_req", "per_process_s"),
        ),
    }
    for key, scenario in scenarios.items():
        params = ", ".join(f"{k} = {v}" for k, v in scenario["params"].items())
        parts += [
            f"## {key}. {scenario['title']}",
            "",
            f"Parameters: {params}. Scenario wall time: {scenario.get('wall_s', '?')} s"
            + _load_note(scenario)
            + ".",
            "",
            f"Bound: {scenario['bound_note']}.",
            "",
            renderers[key](scenario),
            "",
        ]
        explanation = notes.explain(key, scenario, results)
        if explanation:
            parts += [explanation, ""]
    contenders = notes.CONTENDERS.format(pause_s=15 * results["params"]["scale"])
    parts += [contenders, "", notes.findings(results), ""]
    path.write_text("\n".join(parts), encoding="utf-8")


def write_report(results: dict[str, Any], out: Path) -> None:
    write_chart(results, out / "results.png")
    write_markdown(results, out / "BENCHMARKS.md")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0]) if args else HERE
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    write_report(results, out)
    print(f"wrote {out / 'results.png'} and {out / 'BENCHMARKS.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
