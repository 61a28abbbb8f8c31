"""The prose of BENCHMARKS.md: how to read it, the contenders, and the measured causes.

Kept apart from `report.py` (which lays out tables and the chart) so the words can be read and
reviewed on their own. Every figure quoted here is read from the results passed in; where a
sentence explains a cause, the figure that shows it is in the same run (a diagnostic row, a
timeline taken from the client's own attempt records, the emulator's counters).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

from scriptgen_nb.store.database import ROW_GROUP_ROWS

HOW_TO_READ = """\
**How to read the tables.** Every contender runs in this process against the emulator in its
own process, over real HTTP on 127.0.0.1, with the emulator reset (empty windows, zero counters)
before each run. Time is compressed {factor}x: a "minute" lasts {minute_s:g} s, and every other
time constant of the rate scenarios is scaled by the same factor (latencies, the cookbook's 15 s
pause, the SDK's retry delays), so their ratios are the real service's. *Bound* is the
theoretical lower bound under the server's window semantics: sliding windows admit a full
window's worth at once, so a model with limit R admits R requests at t = 0, R more one window
later, and so on; the bound is the start of the burst that admits the last request plus the
minimum latency (an infinitely fast client). *429s received* come from the emulator's own
counters. *req/s* is successful requests per second of wall time. *Client CPU ms/req* is this
process's CPU time (all threads, DuckDB's included) divided by the requests: what a contender
costs per request on the client. *Failed* counts requests that did not succeed, by kind. The
machine is shared: each scenario's header says how much of it other processes used meanwhile
(other engineers' test runs), which slows CPU-bound figures (scenarios 5 and 6) more than
rate-bound ones."""

CONTENDERS = """\
## The contenders

All written in `bench/contenders.py`, from their published descriptions, with their published
defaults:

- **ours (default)**: `scriptgen_nb.batch_generate(requests, models=ladder, base_url=...,
  db=<fresh file>)`; everything else default (`max_concurrency=None`: pace by the limits,
  preference routing, every attempt and result logged to DuckDB). A fresh log file per run, so
  no quota memory or cache carries over between contenders.
- **ours, max_concurrency='seed'**: the same with the seed's formula
  `min(10, max(3, floor(rpm * 0.6 * 5 / 60)))` in flight and no pacing (rotation still on).
- **sequential (queue of 5)** (scenario 4): the same engine with `max_concurrency=5`, standing in
  for the seed's p-queue of 5 (here paced and rotating).
- **naive gather + SDK retries**: `asyncio.gather` of every request through google-genai with
  `HttpRetryOptions` at the SDK's documented defaults (5 attempts, 1 s initial delay, 60 s max,
  base 2, jitter 1) scaled by the window factor, on the ladder's first model. It retries 429s
  blind to `retryDelay` (python-genai#1875): with real windows its ~15-19 s of retries are spent
  inside one 60 s window, as they are here inside one 5 s window.
- **cookbook pattern**: the OpenAI cookbook's `api_request_parallel_processor.py` re-implemented
  for Gemini's REST API: request and token buckets refilled continuously (one window's worth,
  starting full), one request per 1 ms loop (the loop's sleep is a polling interval and is not
  scaled), a global pause of 15 s scaled ({pause_s:.2f} s) after any 429, failed requests
  re-queued at once ahead of new ones, 5 attempts, tokens estimated as prompt tokens (4
  characters a token in place of tiktoken) + 4 + 2 + 15 (`max_tokens` absent). Like the cookbook
  it posts raw JSON with an HTTP client (httpx2 in place of aiohttp), not through an SDK, and
  keeps no log. It is told the catalogue's RPM and TPM, i.e. 100% of the limit; its docstring
  advises leaving 25-50% headroom, which would trade its 429s for a proportionally lower rate.
- **bare SDK gather, semaphore 64** (scenario 5): google-genai calls under
  `asyncio.Semaphore(64)`, the SDK's default client (which keeps 20 connections alive), no
  retries, no logging; and the same with a pool of 64 kept-alive connections. The goal is judged
  against the faster of the two.
- Diagnostics in scenario 5 (not contenders), run in turn with a bare run of the same size:
  `GeminiBackend` alone under a semaphore (no engine), our engine with logging off, and, off
  that chain, the bare SDK passing a fresh `GenerateContentConfig(temperature=0.7)` with every
  call: what `GeminiBackend` sends for a request whose only setting is a temperature (the
  seed's script and image-prompt generation set a temperature, 0.7 or 0.8 by default, and
  some a schema too). The benchmark's requests are bare prompts, for which `GeminiBackend`
  passes no config at all.

**Method notes.** Peak RSS in scenario 6 is `ru_maxrss` of a probe process started through a
shell that forks it: Linux keeps `ru_maxrss` across `exec`, so a probe forked straight from this
(large) process would report this process's peak instead of its own; the kernel's `VmHWM` is
recorded alongside as a cross-check. The probe also samples, after every flush of the log, the
resident size (`VmRSS`) and the high-water mark with the number of results received by then, so
the table shows where in the run the peak grew."""


# --- helpers ---------------------------------------------------------------------------------


def _row(scenario: dict[str, Any] | None, name: str, variant: str | None = None) -> dict:
    for row in (scenario or {}).get("rows", []):
        if row["contender"] == name and row.get("variant") == variant and "error" not in row:
            return row
    return {}


def _f(value: Any, digits: int = 2) -> str:
    return "?" if value is None else f"{value:,.{digits}f}"


def _n429(count: int) -> str:
    return f"{count} 429" + ("" if count == 1 else "s")


def _delta(ms: float) -> str:
    """A CPU difference between two runs; below 0.1 ms it is within the runs' noise."""
    return f"{ms:+.2f} ms" if abs(ms) >= 0.1 else f"{ms:+.2f} ms (within noise)"


def _load(scenario: dict[str, Any]) -> str:
    """Kept as a hook: the scenario header already states the machine's load."""
    return ""


def _seed_in_flight(rpm: int) -> int:
    """The seed's formula, as written: min(10, max(3, floor(rpm * 0.6 * 5 / 60)))."""
    return min(10, max(3, math.floor(rpm * 0.6 * 5 / 60)))


def _latency(scenario: dict[str, Any]) -> tuple[float, float]:
    """A scenario's minimum latency and jitter, from its "B + U(0, J)" parameter."""
    text = str(scenario["params"]["latency_s"])
    base, _, rest = text.partition(" + U(0, ")
    return float(base), float(rest.split(")")[0] or 0)


def explain(key: str, scenario: dict[str, Any], results: dict[str, Any]) -> str:
    """The measured causes behind a scenario's verdicts (empty when there is nothing to add)."""
    text = EXPLANATIONS.get(key)
    return "" if text is None else text(scenario, results)


# --- per scenario ----------------------------------------------------------------------------


def _margin(results: dict[str, Any]) -> float:
    """The limiter's margin beyond each window: max(0.05 s, 0.5% of the window)."""
    return max(0.05, results["params"]["minute_s"] * 0.005)


def _ceiling(results: dict[str, Any]) -> float | None:
    return (results.get("physics") or {}).get("ceiling_rps")


def _emission(results: dict[str, Any], burst: int) -> str:
    """How much client CPU a burst costs, from scenario 5's CPU per request (an estimate)."""
    row = _row(results["scenarios"].get("5"), "ours, max_concurrency=64, log on")
    if not row:
        return ""
    ms = row["cpu_ms_per_req"]
    return (
        f"; for scale, {burst} requests take the client ~{burst * ms / 1000:.2f} s of CPU at "
        f"scenario 5's {ms:.1f} ms per request"
    )


def _drift_text(t: dict[str, Any], windows: int, margin: float) -> str:
    """The drift over `windows` window changes, split into the limiter's margin and the rest."""
    drift = t.get("drift_s")
    if drift is None or windows <= 0:
        return f"{_f(drift)} s of drift"
    by_design = windows * margin
    text = (
        f"{drift:.2f} s of drift over {windows} window change{'s' if windows > 1 else ''} "
        f"({drift / windows:.3f} s per "
        f"window), of which {windows} x {margin:g} s = {by_design:.2f} s is the limiter's "
        f"margin (it holds every slot {margin:g} s beyond its window, counted from the moment "
        "the request's body was written, so each burst starts at least that much later than "
        "whole windows after the previous one)"
    )
    rest = drift - by_design
    if rest > 0.05:
        text += (
            f" and {rest:.2f} s the bursts' own spread: a slot is reused only after the one it "
            "replaces has aged out, so each burst leaves at the pace its predecessor's bodies "
            "were written"
        )
    return text


def _s1(s: dict[str, Any], results: dict[str, Any]) -> str:
    ours = _row(s, "ours (default)")
    seed = _row(s, "ours, max_concurrency='seed'")
    naive = _row(s, "naive gather + SDK retries")
    cook = _row(s, "cookbook pattern")
    margin = _margin(results)
    rpm = s["params"]["rpm_per_window"]
    minute, scale = results["params"]["minute_s"], results["params"]["scale"]
    flight = _seed_in_flight(rpm)
    parts = []
    if ours:
        t = ours["extra"].get("timeline", {})
        excess = ours["time_s"] - ours["bound_s"]
        windows = math.ceil(ours["n"] / rpm) - 1
        parts.append(
            f"**Our default** took {ours['time_s']:.2f} s against {ours['bound_s']:.2f} s "
            f"({ours['ratio']:.3f}x) with {_n429(ours['http_429'])}. Where the {excess:.2f} s "
            f"went, from the client's own attempt records: {_f(t.get('startup_s'))} s before the "
            "first request left (creating and migrating the DuckDB log, the SDK client); "
            f"{_drift_text(t, windows, margin)}; and "
            f"{_f(t.get('tail_beyond_min_latency_s'))} s beyond the minimum latency at the end "
            f"(latency jitter of up to {_latency(s)[1]:g} s, reading the last answers, closing "
            "the client and the log)."
        )
        parked = [str(e["t"]) for e in ours["events"] if e["type"] == "parked"]
        if ours["http_429"]:
            ceiling = _ceiling(results)
            lag = (
                f" (it serves ~{ceiling:,.0f} requests/s alone, so a burst of {rpm} takes it "
                f"~{rpm / ceiling:.2f} s)"
                if ceiling
                else ""
            )
            parts.append(
                f"The {_n429(ours['http_429'])} arrived although the limit was right (the engine "
                f"parked the model at t = {', '.join(parked) or '-'} s): the engine stamps a "
                "slot when the request's body is written, the emulator when its handler admits "
                f"the request, and when the server falls behind a burst{lag} its admission can "
                f"lag the stamp by more than the margin of {margin:g} s. After such a 429 the "
                "engine parks the model for the short `retryDelay` and widens its margin by it."
            )
        else:
            parts.append(
                "No 429: every slot was reused only after the server's window had freed it."
            )
    if cook:
        cheaper = ours and cook["cpu_ms_per_req"] < ours["cpu_ms_per_req"]
        parts.append(
            f"**The cookbook pattern** took {cook['time_s']:.2f} s ({cook['ratio']:.3f}x) with "
            f"{cook['http_429']} 429s: its bucket starts full (a burst of the whole limit) and "
            f"refills continuously, so the next request leaves ~{minute / rpm * 1000:.0f} ms "
            "later into a sliding window that is still full; each 429 pauses everything for "
            f"{15 * scale:.2f} s (15 s scaled), after which the refilled bucket probes again. "
            "It spends "
            f"{cook['cpu_ms_per_req']:.1f} ms of CPU per request against our "
            f"{ours.get('cpu_ms_per_req', 0):.1f}"
            + (": raw JSON, no SDK, no log." if cheaper else ".")
        )
    if seed and ours:
        seed_cpu = seed["cpu_ms_per_req"] * seed["n"] / 1000
        ours_cpu = ours["cpu_ms_per_req"] * ours["n"] / 1000
        parts.append(
            f"**The seed's formula** ({flight} in flight for {rpm} RPM, no pacing) took "
            f"{seed['time_s']:.1f} s ({seed['ratio']:.2f}x): {flight} requests per latency of "
            f"~{_latency(s)[0]:g} s is ~{flight / _latency(s)[0]:.0f} requests/s where the window "
            f"allows {rpm / minute:.0f}. Its CPU per request is higher because the "
            f"client's CPU grows with the run's length too: {seed_cpu:.1f} s over its "
            f"{seed['time_s']:.0f} s against our default's {ours_cpu:.1f} s over "
            f"{ours['time_s']:.0f} s for the same requests (the log's flusher and heartbeat and "
            "the engine's timers tick for the whole run)."
        )
    if naive:
        parts.append(
            f"**Naive gather** finished in {naive['time_s']:.1f} s with {naive['succeeded']} of "
            f"{naive['n']} requests: the SDK's 5 attempts ({(1 + 2 + 4 + 8) * scale:.2f} s of "
            "backoff plus jitter, scaled) never wait "
            f"for the window, so all but the first window's requests fail after "
            f"{naive['http_429']} 429s."
        )
    return "\n\n".join(parts) + _load(s)


def _timeline_text(row: dict[str, Any], results: dict[str, Any], burst: int) -> str:
    t = (row.get("extra") or {}).get("timeline") or {}
    return (
        f"{_f(t.get('startup_s'))} s before the first request left, "
        f"{_f(t.get('drift_s'))} s of drift, {_f(t.get('tail_beyond_min_latency_s'))} s "
        f"beyond the minimum latency at the end{_emission(results, burst)}"
    )


def _s2(s: dict[str, Any], results: dict[str, Any]) -> str:
    real = s["params"]["server_rpm_per_window"]
    high_rpm, low_rpm = s["params"]["catalogue_rpm"]
    high_v = f"too high: catalogue {high_rpm}, server {real}"
    low_v = f"too low: catalogue {low_rpm}, server {real}"
    ours_h, ours_l = _row(s, "ours (default)", high_v), _row(s, "ours (default)", low_v)
    cook_h, cook_l = _row(s, "cookbook pattern", high_v), _row(s, "cookbook pattern", low_v)
    parts = []
    if ours_h:
        learned = [e for e in ours_h["events"] if e["type"] == "limit_learned"]
        steps = ", ".join(f"{e['configured']} -> {e['learned']} at t = {e['t']} s" for e in learned)
        stored = ours_h["extra"].get("log", {}).get("learned_limits", [])
        rows = "; ".join(
            f"{r['model']}, {r['metric']}, configured {r['configured']}, learned {r['learned']}"
            for r in stored
        )
        line = learned[-1].get("progress_line") if learned else None
        summary = ours_h["extra"].get("progress_summary")
        limited = ours_h["extra"].get("log", {}).get("rate_limited_rows", "?")
        parts.append(
            f"**Too high.** Our default sent its first burst at the catalogue's {high_rpm}; the "
            f"server took {real} and refused the rest ({ours_h['http_429']} 429s). The engine "
            f"learned the limit ({steps or 'no LimitLearned event'}), parked until the window "
            f"freed and then paced at {real}: {ours_h['time_s']:.2f} s, "
            f"{ours_h['ratio']:.3f}x the bound ({_timeline_text(ours_h, results, high_rpm)})."
        )
        parts.append(
            "**The signal, as a user sees it.** The live progress line (the terminal bar and the "
            "panel's text) right after the last of those events: "
            f"`{line or 'no line recorded'}`. The summary printed at the end: "
            f"`{summary or 'none recorded'}`. The call log's `limit_learned` "
            f"table, read with `CallStore(path).learned_limits()`: "
            f"{rows or 'no rows'} (beside {limited} `rate_limited` attempt rows)."
        )
    if ours_l:
        parts.append(
            f"**Too low.** Limits the user states (here a `ModelSpec`) are trusted: learned down "
            "from 429s, never probed above unless the spec says `discover=True`. So our default "
            f"paced at the stated {low_rpm}: {ours_l['time_s']:.2f} s, {ours_l['ratio']:.2f}x "
            f"the bound, {_n429(ours_l['http_429'])}, {ours_l['succeeded']} of {ours_l['n']} "
            "succeeded: a user who under-states a limit pays for it in time, not in 429s. The "
            "bundled catalogue's limits are guesses, discovered upwards (scenario 8)."
        )
    if cook_h and cook_l:
        parts.append(
            f"The cookbook pattern: too high {cook_h['time_s']:.2f} s with {cook_h['http_429']} "
            f"429s (it never learns; every refill probes again and is followed by a global "
            f"pause); too low {cook_l['time_s']:.2f} s, like ours."
        )
    return "\n\n".join(parts) + _load(s)


def _others_429(row: dict[str, Any]) -> str:
    others = row["http_429"] - (row["per_day_429"] or 0)
    if not others:
        return "No other 429 was received. "
    return (
        f"The other {_n429(others)} were per-minute refusals at window edges on the other "
        "models, as in scenario 1. "
    )


def _s3(s: dict[str, Any], results: dict[str, Any]) -> str:
    ours = _row(s, "ours (default)")
    seed = _row(s, "ours, max_concurrency='seed'")
    naive = _row(s, "naive gather + SDK retries")
    parts = []
    after = (ours.get("extra") or {}).get("after_exhaustion") or {}
    if after:
        parts.append(
            f"**Our default** met the first per-day 429 at t = {after['t_exhausted']} s. From then "
            f"on {after.get('requests_after')} requests went to the two other models in "
            f"{after.get('actual_s')} s where an ideal client, starting from the same occupied "
            f"windows, needs {after.get('ideal_s')} s: {after.get('efficiency')} of the aggregate "
            f"rate. No call to the exhausted model started after that 429 "
            f"({after['calls_after']}); the emulator counted {ours['per_day_429']} per-day "
            f"429(s), the requests already on the wire in the same burst. {_others_429(ours)}"
            f"The whole batch took {ours['time_s']:.2f} s, {ours['ratio']:.3f}x the bound."
        )
    seed_after = (seed.get("extra") or {}).get("after_exhaustion") or {}
    if seed and seed_after:
        rpms = list(s["params"]["rpm_per_window"].values())
        flight, latency = _seed_in_flight(rpms[0]), _latency(s)[0]
        minute = results["params"]["minute_s"]
        parts.append(
            f"**The seed's formula** ({flight} in flight, from the first model's {rpms[0]} RPM) "
            "rotates too and "
            + ("never called" if not seed_after.get("calls_after") else "still called")
            + " the exhausted model again, but reaches "
            f"only {seed_after.get('efficiency')} of the aggregate rate afterwards: {flight} in "
            f"flight at ~{latency:g} s is ~{flight / latency:.0f} requests/s where the other "
            f"models allow {sum(rpms[1:]) / minute:.0f}."
        )
    if naive:
        parts.append(
            f"**Naive gather** has no ladder: on the first model alone {naive['succeeded']} of "
            f"{naive['n']} succeeded (its day's quota), with {naive['http_429']} 429s."
        )
    return "\n\n".join(parts) + _load(s)


SEED_BATCH_S = {5: 20, 10: 35, 20: 70}  # the seed's table, batch mode, real seconds


def _s4(s: dict[str, Any], results: dict[str, Any]) -> str:
    chapters = max(s["params"]["chapters"])
    variant = f"{chapters} chapters"
    ours = _row(s, "ours (default)", variant)
    seq = _row(s, "sequential (queue of 5)", variant)
    seed = _row(s, "ours, max_concurrency='seed'", variant)
    if not ours:
        return ""
    t = ours["extra"].get("timeline", {})
    minimum = s["bound_s"][str(chapters)]
    excess = ours["time_s"] - minimum
    scale = results["params"]["scale"]
    rpms = list(s["params"]["models"].values())
    split, left = [], chapters
    for rpm in rpms:
        split.append(min(rpm, left))
        left -= split[-1]
    flight = _seed_in_flight(rpms[0])
    parts = [
        f"**Our default** sent all {chapters} chapters at once across the three models "
        f"({' + '.join(str(k) for k in split if k)} by preference within their limits) and "
        f"finished in {ours['time_s']:.2f} s: one latency ({minimum:.2f} s minimum) plus "
        f"{excess:.2f} s, of which {_f(t.get('startup_s'))} s passed before the first request "
        f"left, {_f(t.get('drift_s'))} s between the first and the last send (new connections, "
        f"the SDK's work per request) and {_f(t.get('tail_beyond_min_latency_s'))} s beyond the "
        f"minimum latency after the last send (latency jitter of up to {_latency(s)[1]:g} s, "
        f"reading the answers, then {_f(t.get('after_last_answer_s'))} s closing the client and "
        f"the log). These are fixed costs that the {1 / scale:.0f}x compression does not shrink: "
        f"at the real latency the same run takes ~{minimum / scale:.1f} s + {excess:.1f} s. "
        f"The seed reports ~{SEED_BATCH_S.get(chapters, '?')} s "
        f"for {chapters} chapters in its batch mode, "
        f"{SEED_BATCH_S.get(chapters, 0) * results['params']['scale']:.2f} s scaled."
    ]
    if seed:
        parts.append(
            f"**The seed's formula** gives {flight} in flight (the first model's {rpms[0]} RPM), "
            f"unpaced: {seed['time_s']:.2f} s for {chapters} (~ceil({chapters}/{flight}) = "
            f"{math.ceil(chapters / flight)} latencies), "
            + (
                f"with {_n429(seed['http_429'])} when a request reaches the first model inside "
                "its full window (the engine then rotates it)"
                if seed["http_429"]
                else "without a 429"
            )
            + f". The seed's own figure is ~{SEED_BATCH_S.get(chapters, '?')} s for {chapters} "
            "chapters."
        )
    if seq:
        parts.append(f"**The queue of 5** needs ceil({chapters}/5) rounds: {seq['time_s']:.2f} s.")
    return "\n\n".join(parts) + _load(s)


DIAGNOSTIC_CHAIN = (
    ("bare SDK", "bare SDK, pool of 64 (diagnostic size)"),
    (
        "GeminiBackend (its request hook and body-written trace that stamp the slot, the "
        "sending gate, the reply's conversion)",
        "GeminiBackend alone, semaphore 64",
    ),
    (
        "the engine itself (scheduling, events, the worker thread)",
        "ours, max_concurrency=64, log off",
    ),
    ("logging to DuckDB", "ours, max_concurrency=64, log on (diagnostic size)"),
)
OFF_CHAIN = "diagnostic, off the chain"


def s5_costs(s: dict[str, Any] | None) -> list[tuple[str, float]]:
    """Client CPU per request added at each layer, from scenario 5's diagnostic rows (ms)."""
    rows = {r["contender"]: r for r in (s or {}).get("rows", []) if "error" not in r}
    chain = [(label, rows.get(name)) for label, name in DIAGNOSTIC_CHAIN]
    if any(row is None for _, row in chain):
        return []
    out = []
    for (_, before), (label, after) in itertools.pairwise(chain):
        assert before is not None and after is not None
        out.append((label, after["cpu_ms_per_req"] - before["cpu_ms_per_req"]))
    return out


def _config_cost(s: dict[str, Any] | None) -> tuple[dict[str, Any], float] | None:
    """The off-chain diagnostic (a per-call config) and its CPU over the bare run of its size."""
    rows = [r for r in (s or {}).get("rows", []) if "error" not in r]
    off = next((r for r in rows if r.get("role") == OFF_CHAIN), None)
    ref = next((r for r in rows if r["contender"] == DIAGNOSTIC_CHAIN[0][1]), None)
    if not off or not ref:
        return None
    return off, off["cpu_ms_per_req"] - ref["cpu_ms_per_req"]


def _s7_row(results: dict[str, Any], prefix: str) -> dict[str, Any]:
    for row in (results["scenarios"].get("7") or {}).get("rows", []):
        if row["contender"].startswith(prefix):
            return dict(row)
    return {}


def _attach_text(results: dict[str, Any]) -> str:
    row = _s7_row(results, "diagnostic: attach")
    return (
        f", ~{row['median_ms']:.1f} ms for the attach and detach alone (scenario 7)" if row else ""
    )


def _s5(s: dict[str, Any], results: dict[str, Any]) -> str:
    rows = {r["contender"]: r for r in s["rows"] if "error" not in r}
    ours = rows.get("ours, max_concurrency=64, log on", {})
    bares = [
        r
        for r in s["rows"]
        if r["contender"].startswith("bare SDK") and r.get("role") == "reference"
    ]
    if not ours or not bares:
        return ""
    bare = max(bares, key=lambda r: r["rps"])
    ref = rows.get(DIAGNOSTIC_CHAIN[0][1], {})
    fake_on = rows.get("engine on FakeBackend, log on", {})
    fake_off = rows.get("engine on FakeBackend, log off", {})
    cook = rows.get("cookbook pattern", {})
    costs = s5_costs(s)
    share = ours["rps"] / bare["rps"]
    parts = [
        f"**Our engine with logging** reached {ours['rps']:.0f} requests/s, {share:.2f} of the "
        f"faster bare SDK run ({bare['rps']:.0f}/s, {bare['contender']}). The client is "
        "CPU-bound (one event loop on one core, the emulator on the other), so throughput "
        f"follows the client's CPU per request: {bare['cpu_ms_per_req']:.2f} ms bare against "
        f"{ours['cpu_ms_per_req']:.2f} ms for our engine with its log (the lowest of each one's "
        "runs).",
    ]
    if costs:
        ranked = sorted(costs, key=lambda x: -x[1])
        listing = "; ".join(f"{label} {_delta(delta)}" for label, delta in costs)
        cheaper = [(label, d) for label, d in costs if d < -0.1]
        parts.append(
            "Where the extra CPU goes, layer by layer, from the diagnostic rows (the same "
            f"{ref.get('n', 0):,} requests, each layer run in turn twice, the lower CPU kept; "
            "differences under ~0.3 ms are within the run-to-run spread shown in the table): "
            f"bare {ref['cpu_ms_per_req']:.2f} ms per request; {listing}. The largest share is "
            f"{ranked[0][0].split(' (')[0]}. These requests are bare prompts, so `GeminiBackend` "
            "passes the SDK no config. The log: the recorder flushes four times a second, each "
            "flush attaching the file to a kept in-memory DuckDB, inserting and detaching it "
            f"(which checkpoints){_attach_text(results)}."
            + "".join(
                f" A negative figure means the layer ran cheaper than the one below it: "
                f"{label.split(' (')[0]} ({_delta(d)}) calls the same SDK, but lets at most "
                "4 calls at a time between entering it and their body written (its sending "
                "gate), where the bare run lets all 64 of its semaphore interleave; this run "
                "does not isolate whether that is the saving."
                for label, d in cheaper
                if label.startswith("GeminiBackend")
            )
        )
    config = _config_cost(s)
    if config:
        off, delta = config
        parts.append(
            f"Off that chain, a fresh `GenerateContentConfig(temperature=0.7)` with every call "
            f"costs the bare SDK {_delta(delta)} per request ({off['rps']:.0f}/s against "
            f"{ref.get('rps', 0):.0f}/s): google-genai converts any config field by field on "
            "every call, so a batch whose requests carry any generation setting (the seed's "
            "script generation sets a temperature) pays at least that on top of the figures "
            "above."
        )
    parts.append(
        "The engine's own scheduling is small: on `FakeBackend` it runs "
        f"{_f(fake_off.get('rps'), 0)} requests/s without the log "
        f"({_f(fake_off.get('cpu_ms_per_req'), 3)} ms each) and {_f(fake_on.get('rps'), 0)}/s "
        f"with it ({_f(fake_on.get('cpu_ms_per_req'), 3)} ms each)."
    )
    if cook:
        parts.append(
            f"The cookbook pattern, posting raw JSON without an SDK, spends "
            f"{cook['cpu_ms_per_req']:.2f} ms per request and reached {cook['rps']:.0f}/s: with no "
            "rate limit to respect, the SDK and the log are the whole difference."
        )
    return "\n\n".join(parts) + _load(s)


ROW_GROUP = ROW_GROUP_ROWS  # the log's rows per DuckDB row group


def _peak_rises(row: dict[str, Any], at_least_mb: float = 20.0) -> list[tuple[int, float, float]]:
    """(results received, rise in MB, peak after) for each rise of the peak of `at_least_mb`+,
    merging the 1 MB steps the probe records within 2,000 results of each other."""
    steps = row.get("hwm_steps") or []
    rises: list[tuple[int, float, float]] = []
    start_mb = steps[0][1] if steps else 0.0
    group: list[list[float]] = []
    for step in steps[1:]:
        if group and step[0] - group[-1][0] > 2_000:
            rises.append((int(group[0][0]), group[-1][1] - start_mb, group[-1][1]))
            start_mb = group[-1][1]
            group = []
        group.append(step)
    if group:
        rises.append((int(group[0][0]), group[-1][1] - start_mb, group[-1][1]))
    return [r for r in rises if r[1] >= at_least_mb]


def _after_boundary(done: int) -> str:
    k = round(done / ROW_GROUP)
    if k >= 1 and 0 <= done - k * ROW_GROUP <= 5_000:
        return f" (just past {k} x {ROW_GROUP:,})"
    return ""


def _s6(s: dict[str, Any], results: dict[str, Any]) -> str:
    rows = [r for r in s["rows"] if "error" not in r]
    logged = sorted((r for r in rows if r.get("log")), key=lambda r: r["n"])
    unlogged = [r for r in rows if not r.get("log")]
    if len(logged) < 2:
        return ""
    peaks = ", ".join(f"{r['peak_rss_mb']:.0f} MB at {r['n']:,}" for r in logged)
    parts = [
        f"Peak RSS with logging on: {peaks} requests; the imports alone take "
        f"{logged[0]['baseline_rss_mb']:.0f} MB."
    ]
    if unlogged:
        off = unlogged[0]
        parts.append(
            f"With logging off the peak stays at {off['peak_rss_mb']:.0f} MB for "
            f"{off['n']:,} requests: the engine and `iter_generate` hold bounded memory (requests "
            "are pulled from the generator as slots free up), so the growth is the log's."
        )
    largest = logged[-1]
    rises = _peak_rises(largest)
    after = largest.get("rss_after_flush_mb") or {}
    if rises:
        listing = "; ".join(
            f"at {done:,} results{_after_boundary(done)}, +{mb:.0f} MB to {peak:.0f} MB"
            for done, mb, peak in rises
        )
        at_boundaries = [r for r in rises if _after_boundary(r[0])]
        text = (
            f"Where the peak grew, sampled after every flush of the {largest['n']:,}-request "
            f"run (each flush inserts one transaction; its detach checkpoints the file): the "
            f"rises of 20 MB or more were {listing}. Right after a flush the resident size was "
            f"{_f(after.get('median'), 0)} MB at the median"
            f" (at most {_f(after.get('max'), 0)} MB)."
        )
        if len(at_boundaries) >= 2:
            first, last = at_boundaries[0], at_boundaries[-1]
            grows = last[1] > first[1] * 1.2
            text += (
                f" The large rises come where the tables' rows pass a multiple of {ROW_GROUP:,}, "
                "the log's row-group size, i.e. in the flush that completes a row group (it "
                "inserts, then its detach checkpoints the file); "
                + (
                    f"the later one is larger (+{last[1]:.0f} MB against +{first[1]:.0f} MB), "
                    "so the peak is not bounded by one row group: it grows with the row groups "
                    "already in the file, i.e. with N."
                    if grows
                    else f"they are of similar size (+{first[1]:.0f} and +{last[1]:.0f} MB), so "
                    "the peak grows by about that much per row group of the log."
                )
            )
        parts.append(text)
    if rises:
        top = max(rises, key=lambda r: r[1])
        below = logged[-2]
        text = f"The largest rise, +{top[1]:.0f} MB at {top[0]:,} results, came in one flush"
        if _after_boundary(top[0]):
            text += (
                f"{_after_boundary(top[0])}: the flush in which the tables passed a multiple of "
                f"the log's row-group size ({ROW_GROUP:,} rows); it inserts, then its detach "
                "checkpoints the file"
            )
        if largest["peak_rss_mb"] > below["peak_rss_mb"] * 1.1:
            text += (
                f". The peak is not bounded by one row group: the {largest['n']:,}-request run "
                f"peaked {largest['peak_rss_mb'] - below['peak_rss_mb']:.0f} MB above the "
                f"{below['n']:,}-request one, so it grows with the rows already in the log, "
                "i.e. with N, in steps."
            )
        else:
            text += f". Beyond {below['n']:,} requests the peak grew by less than 10%."
        parts.append(text)
    big = logged[1] if len(logged) > 2 else largest
    if unlogged:
        off = unlogged[0]
        parts.append(
            f"Log write time: the recorder spent {big['log_write_s']:.1f} s writing during the "
            f"{big['wall_s']:.1f} s {big['n']:,}-request run (in its own thread, concurrently "
            f"with the engine); the final flush after the last result took "
            f"{big['final_flush_s']:.2f} s. The same run without a log took "
            f"{off['wall_s']:.1f} s: the log costs {big['wall_s'] / off['wall_s']:.1f}x in "
            "this no-latency, no-HTTP setting (~"
            f"{(big['wall_s'] - off['wall_s']) / big['n'] * 1e3:.2f} ms per request)."
        )
    return "\n\n".join(parts) + _load(s)


def _s7(s: dict[str, Any], results: dict[str, Any]) -> str:
    goals = [r for r in s["rows"] if not r["contender"].startswith("diagnostic")]
    if not goals:
        return ""
    slowest = max(goals, key=lambda r: r["median_ms"])
    over = [r["contender"] for r in goals if r["median_ms"] >= 200]
    tz = _s7_row(results, "diagnostic: epoch(")
    us = _s7_row(results, "diagnostic: epoch_us")
    attach = _s7_row(results, "diagnostic: attach")
    text = (
        f"Over {s['params']['rows']:,} call rows the slowest query is {slowest['contender']} at "
        f"{slowest['median_ms']:.0f} ms (median); "
        + (f"over 200 ms: {', '.join(over)}." if over else "every query is under 200 ms.")
    )
    if tz and us:
        text += (
            " The timelines compute seconds as `epoch_us(...)` differences "
            f"(`queries._seconds`): that arithmetic over all rows takes {us['median_ms']:.0f} ms "
            f"where `epoch(ts - t0)` on TIMESTAMPTZ, which goes through DuckDB's time-zone "
            f"code, takes {tz['median_ms']:.0f} ms."
        )
    if attach:
        text += (
            f" Every query attaches the file to the store's in-memory DuckDB and detaches it: "
            f"{attach['median_ms']:.1f} ms of each figure."
        )
    return text + _load(s)


# --- 8-11: the real service's ugly cases (bench/real_service.py) ------------------------------


def _remembered(row: dict[str, Any]) -> str:
    """The limits a batch started from, as its `remembered` events say: "rpm 150, rpd 600"."""
    events = [e for e in row.get("events", []) if e.get("source") == "remembered"]
    return ", ".join(f"{e['metric']} {e['learned']}" for e in events) or "none"


def _s8(s: dict[str, Any], results: dict[str, Any]) -> str:
    parts = []
    for label in s["bound_s"]:
        first = _row(s, "ours (default)", f"{label}: first batch")
        second = _row(s, "ours (default)", f"{label}: second batch, another process, same log")
        if first:
            parts.append(
                f"**{label}, first batch:** {first['time_s']:.2f} s against {first['bound_s']:.2f} "
                f"s ({first['ratio']:.3f}x); discovery cost {_n429(first['http_429'])} "
                f"({first['http_429'] / first['n']:.0%} of the requests; Google does not bill a "
                f"429). Limits: {first['extra'].get('limit_story')}."
            )
        if not second:
            continue
        text = (
            f"**{label}, second batch** (a fresh process on the same log): started from "
            f"{_remembered(second)} (remembered) and took {second['time_s']:.2f} s "
            f"({second['ratio']:.3f}x) with {_n429(second['http_429'])}, {second['succeeded']} "
            f"of {second['n']} answered, {second['calls_sent']} calls reaching the server"
        )
        gave_up = second["extra"].get("gave_up_after_s")
        if gave_up:
            text += (
                f"; it was cancelled at {gave_up:.1f} s. Its day window already held the first "
                "batch's requests (quota memory, read from the log), and the remembered "
                "requests-per-day limit is only what the first batch raised its guess to (its "
                "own demand, never refused by the server). A remembered limit is treated as "
                "known: it grows additively, one request above it at a time, each confirmed by "
                "a success before the next"
                + (
                    f", so with the day window full the batch went one call at a time "
                    f"({second['calls_sent']} calls in {second['time_s']:.1f} s)"
                    if second["calls_sent"]
                    else ", and with the day window full and nothing in flight no probe went at "
                    "all: the batch sent nothing"
                )
            )
        parts.append(text + ".")
    return "\n\n".join(parts) + _load(s)


def _s9(s: dict[str, Any], results: dict[str, Any]) -> str:
    ours = _row(s, "ours (default)")
    if not ours:
        return ""
    after = ours["extra"].get("after_storm") or {}
    model = next(iter((ours.get("server") or {}).values()), {})
    storm = s["params"]["storm_s"]
    return (
        f"The storm answered {model.get('bare_429', '?')} calls with a 429 without details "
        f"over its {storm:g} s; the engine backed the model off "
        f"{after.get('backing_off_events', '?')} times (about 1 s, doubling, capped at "
        f"{s['params']['backoff_cap']}) with one probe at a time after the first burst, and "
        f"learned {after.get('limits_learned', '?')} limits from it. The first call after the "
        f"storm left {_f(after.get('first_send_after_s'))} s after its end (the backoff step "
        f"under way when it ended), and the batch took {ours['time_s']:.2f} s against the "
        f"lower bound of {ours['bound_s']:.2f} s (the storm, then the staircase) with "
        f"{ours['calls_sent']} calls for {ours['n']} requests." + _load(s)
    )


def _s10(s: dict[str, Any], results: dict[str, Any]) -> str:
    ours = _row(s, "ours (default)")
    stop = (ours.get("extra") or {}).get("stop") if ours else None
    if not stop:
        return ""
    return (
        f"The first billing answer came back at {_f(stop['first_answer_s'], 3)} s and the batch "
        f"returned {_f(stop['ended_after_s'], 3)} s later, raising `ServiceRefusedError`. By "
        f"then the engine had started {stop['started_before_first']} attempts (the window "
        f"admits {s['params']['rpm_per_window']} at once) and {ours['calls_sent']} had reached "
        "the server: the others were cancelled before they were sent. None started after."
        + _load(s)
    )


def _s11(s: dict[str, Any], results: dict[str, Any]) -> str:
    ours = _row(s, "ours (default)")
    if not ours:
        return ""
    retired, following = s["params"]["ladder"]
    calls = (ours.get("server") or {}).get(retired, {}).get("requests", 0)
    gone = [e for e in ours["events"] if e["type"] == "gone"]
    stop = ours["extra"].get("stop") or {}
    text = (
        f"{retired} got {calls} calls: the burst sent at the start, before its first 404 came "
        f"back at {_f(stop.get('first_answer_s'), 3)} s"
    )
    if gone:
        text += (
            f"; the engine dropped it from the batch at {gone[0]['t']:.2f} s ({gone[0]['panel']})"
        )
    return (
        text + f", and every request was answered by {following}: {ours['time_s']:.2f} s against "
        f"{ours['bound_s']:.2f} s on {following} alone ({ours['ratio']:.3f}x)." + _load(s)
    )


EXPLANATIONS: dict[str, Callable[[dict[str, Any], dict[str, Any]], str]] = {
    "1": _s1,
    "2": _s2,
    "3": _s3,
    "4": _s4,
    "5": _s5,
    "6": _s6,
    "7": _s7,
    "8": _s8,
    "9": _s9,
    "10": _s10,
    "11": _s11,
}


# --- the title -----------------------------------------------------------------------


def headline(results: dict[str, Any]) -> str:
    """The issue's title: as close to the rate limit as physics allows, and cheaper per request."""
    s1 = results["scenarios"].get("1")
    if not s1:
        return ""
    lines = [
        "## The title's two claims",
        "",
        "Scenario 1, per request (the comparisons below count only contenders that completed "
        "the batch):",
        "",
        "| contender | time / bound | 429s per request | client CPU ms per request | failed |",
        "|---|---|---|---|---|",
    ]
    for row in s1["rows"]:
        if "time_s" not in row:
            continue
        lines.append(
            f"| {row['contender']} | {row['ratio']:.3f} | {row['http_429'] / row['n']:.3f} | "
            f"{row['cpu_ms_per_req']:.2f} | {row['failed']} |"
        )
    ours = _row(s1, "ours (default)")
    if not ours:
        return "\n".join(lines)
    others = [r for r in s1["rows"] if "time_s" in r and r["contender"] != "ours (default)"]
    complete = [r for r in others if r["failed"] == 0]
    faster = [r for r in complete if r["time_s"] < ours["time_s"]]
    cheaper_cpu = [r for r in complete if r["cpu_ms_per_req"] < ours["cpu_ms_per_req"]]
    fewer_429 = [r for r in complete if r["http_429"] < ours["http_429"]]
    more_429 = [r["contender"] for r in others if r["http_429"] > ours["http_429"]]
    names = ", ".join
    close = (
        "within the 5% goal"
        if ours["ratio"] <= 1.05
        else "the 5% goal is missed by the start-up and the per-window drift explained under "
        "scenario 1"
    )
    lines += [
        "",
        f"- **As close to the rate limit as physics allows:** {ours['ratio']:.3f}x the bound in "
        f"scenario 1, {close}; "
        + (
            "faster among the contenders that complete the batch: "
            f"{names(r['contender'] for r in faster)}."
            if faster
            else "no contender that completes the batch was faster."
        ),
        "- **Cheaper per request than anything else:** in wasted calls, "
        + (f"fewer 429s than {names(more_429)}" if more_429 else "no contender had more 429s")
        + (f", not fewer than {names(r['contender'] for r in fewer_429)}" if fewer_429 else "")
        + "; in client CPU, "
        + (
            f"not met: {names(r['contender'] for r in cheaper_cpu)} "
            f"{'spends' if len(cheaper_cpu) == 1 else 'spend'} less per request; ours pays for "
            "the SDK, the engine and logging every attempt (scenario 5's layers)."
            if cheaper_cpu
            else "the cheapest."
        ),
    ]
    return "\n".join(lines)


# --- findings --------------------------------------------------------------------------------


def findings(results: dict[str, Any]) -> str:
    """What the run shows the package still costs or misses, with the measured cause."""
    sc = results["scenarios"]
    s1 = _row(sc.get("1"), "ours (default)")
    s5 = {r["contender"]: r for r in (sc.get("5") or {}).get("rows", []) if "error" not in r}
    ours5 = s5.get("ours, max_concurrency=64, log on", {})
    fake5 = s5.get("engine on FakeBackend, log off", {})
    bare5 = max(
        (r for r in s5.values() if r.get("role") == "reference"),
        key=lambda r: r.get("rps", 0),
        default={},
    )
    items = ["## Findings for the package (not patched here)", ""]
    costs = s5_costs(sc.get("5"))
    if ours5 and bare5:
        share = ours5["rps"] / bare5["rps"]
        ranked = sorted(costs, key=lambda x: -x[1])
        items.append(
            f"- **Engine overhead over HTTP (scenario 5): {ours5['rps']:.0f} requests/s against "
            f"{bare5['rps']:.0f} bare ({share:.2f}; goal 0.85).** Client CPU per request, layer "
            f"by layer: {'; '.join(f'{label} {_delta(d)}' for label, d in costs) or '?'}."
            + (f" The largest is {ranked[0][0].split(' (')[0]}." if ranked else "")
            + " The engine's own bookkeeping costs "
            f"{_f(fake5.get('cpu_ms_per_req'), 3)} ms per request on `FakeBackend`, so most of "
            "the engine layer appears only with real I/O (the worker thread's loop, per-attempt "
            "timeouts and contexts, the hand-off queue); this run does not break it down further."
        )
    s6 = sc.get("6") or {}
    flat = [g for g in s6.get("goals", []) if g["goal"].startswith("flat in N")]
    if any(g["met"] is False for g in flat):
        logged = sorted(
            (r for r in s6.get("rows", []) if r.get("log") and "error" not in r),
            key=lambda r: r["n"],
        )
        off = next((r for r in s6.get("rows", []) if r.get("log") is False), None)
        rises = _peak_rises(logged[-1]) if logged else []
        where = ", ".join(f"{done:,}{_after_boundary(done)}" for done, _, _ in rises)
        items.append(
            "- **The log's peak memory grows with N (scenario 6): "
            + ", ".join(f"{r['peak_rss_mb']:.0f} MB at {r['n']:,}" for r in logged)
            + ".** The engine alone stays flat"
            + (f" ({off['peak_rss_mb']:.0f} MB at {off['n']:,} without the log)" if off else "")
            + (
                f"; with the log the peak rose by 20 MB or more in the flushes at {where} results"
                if where
                else "; with the log the peak rose in steps of under 20 MB each"
            )
            + f" (a flush inserts, then its DETACH checkpoints; the log's row groups hold "
            f"{ROW_GROUP:,} rows). Scenario 6 gives the sizes of those rises."
        )
    if s1.get("http_429"):
        items.append(
            f"- **429s with correct limits (scenario 1: {s1['http_429']}):** see scenario 1; "
            "the engine widens its margin after the first and parks for the short `retryDelay`."
        )
    missed = [
        g
        for g in (sc.get("8") or {}).get("goals", [])
        if "second batch" in g["goal"] and g["met"] is False
    ]
    if missed:
        items.append(
            "- **A later batch on the same day stalls on the limits an earlier one learned "
            "(scenario 8):** "
            + "; ".join(
                f"{g['goal'].split(':')[0]}: {g['value'].split('; limits')[0]}" for g in missed
            )
            + ". The cause is under scenario 8: a remembered limit that was only raised "
            "(never refused), here the requests per day, is treated as a known limit and "
            "probed one request at a time while the day window is full of the earlier "
            "batch's requests; slow start from it (as for a guess) would not be."
        )
    startup = (s1.get("extra") or {}).get("timeline", {}).get("startup_s")
    if startup is not None:
        items.append(
            f"- **Start-up with a file log:** the first request leaves {startup:.2f} s after "
            "`batch_generate` is called in scenario 1 (creating and migrating the log, writing "
            "the batch's row, making the SDK client), a fixed cost that scenario 4's short "
            "batches show."
        )
    return "\n".join(items)
