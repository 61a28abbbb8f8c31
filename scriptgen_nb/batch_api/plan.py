"""The `mode=` decision: live calls, Google's Batch API, or both, with what each would cost.

Pure: given the requests, the ladder, the batch model, a deadline and the Batch API's expected
turnaround, `plan_batch` returns a `BatchPlan` that says what runs where and why, with the
expected cost and time of each option, shown before anything is sent.

The figures:

- live time: `estimate.live_bound_s`, the least time the ladder's windows (RPM, input TPM and,
  when every model has one, RPD) allow, plus one typical latency;
- live cost: the dry-run estimate (`estimate.py`): input tokens estimated, output tokens each
  request's `max_output_tokens` or a typical 1,024 (`engine.runner.reserved_usage`), priced on
  the ladder's first model;
- Batch API cost: the same tokens on the batch model at its `batch_discount` (50%);
- Batch API time: the turnaround, measured (the median create -> done time of this endpoint's
  jobs in the log), else a documented default: Google's target of 24 hours.

`auto` with a deadline: live when live calls fit it; else the Batch API when its turnaround
fits; else a split: as many requests as live calls can finish by the deadline, taken from the
front of the list (the urgent part), run live, the rest by the Batch API. Without a deadline,
the deadline is the expected turnaround: live while it is at least as fast as the batch would
be, the Batch API once the batch outgrows the live limits.

A budget is split between the parts, in the list's order: the live part (the front) keeps the
reserved cost of its requests, and the Batch API part gets the rest. Jobs cannot be stopped
half-way as live calls are, so the Batch API part sends only the requests whose reserved cost
(`reserved_usage` at the batch price) fits its share, from the front (`affordable`); the rest
end not run. The live part's calls stop before they would cross theirs (the engine's budget).
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from ..engine.errors import ConfigurationError
from ..engine.models import ModelSpec
from ..engine.pricing import CostTotal, format_usd
from ..engine.runner import reserved_usage
from ..engine.values import GenerationRequest, Usage
from ..estimate import TYPICAL_LATENCY_S, live_bound_s

Mode = Literal["live", "batch_api", "auto"]
MODES: tuple[str, ...] = ("live", "batch_api", "auto")
Choice = Literal["live", "batch_api", "split"]

# Google's documented target: "The target turnaround time is 24 hours, but in majority of
# cases, it is much quicker" (ai.google.dev/gemini-api/docs/batch-api). Used until this
# endpoint's own jobs have been measured.
GOOGLE_TURNAROUND_S = 24 * 3600.0


JOB_LIFETIME_H = 48  # a Batch API job not done within this expires; its requests did not run
BATCH_CAVEATS = (
    f"Jobs expire {JOB_LIFETIME_H} h after they are created: what has not run by then ends "
    "not_run, for `retry` (live or as a new batch). A job the service refuses to create for "
    "now (429: too many jobs queued) waits and is created as it lets it."
)


@dataclass(frozen=True, slots=True)
class Turnaround:
    """The expected Batch API turnaround and where the figure comes from."""

    seconds: float
    source: str  # e.g. "median of 3 measured jobs", "Google's documented 24 h target"


@dataclass(frozen=True, slots=True)
class Option:
    """One way to run (part of) the batch: how many requests, the expected cost and time."""

    requests: int
    cost_usd: float | None  # None: a model's price is unknown
    seconds: float


@dataclass(frozen=True, slots=True)
class BatchPlan:
    """What a batch will do (`choice`), and the options it was chosen from."""

    mode: str  # what was asked: live | batch_api | auto
    choice: Choice
    live_count: int  # requests sent live: the first `live_count` of the list
    batch_count: int
    live: Option  # the whole batch live
    batch_api: Option  # the whole batch by the Batch API
    split: Option | None  # the chosen split, when there is one
    deadline_s: float | None
    turnaround: Turnaround
    live_model: str
    batch_model: str
    reason: str
    cached: int = 0  # requests the call log already answered: not sent, not in the options
    budget_usd: float | None = None  # the whole batch's budget
    batch_budget_usd: float | None = None  # its Batch API part's share: what the jobs may reserve
    over_budget: int = 0  # the Batch API part's last requests: not sent, they would cross it
    jobs_out: int = 0  # jobs created earlier at this endpoint, not ended when last seen

    @property
    def live_budget_usd(self) -> float | None:
        """The live part's share of the budget (its calls stop before they would cross it)."""
        if self.budget_usd is None:
            return None
        return self.budget_usd - (self.batch_budget_usd or 0.0)

    @property
    def chosen(self) -> Option:
        return self.split or (self.live if self.choice == "live" else self.batch_api)

    def rows(self) -> list[dict[str, object]]:
        """The options as table rows (what `__str__` and the HTML view show)."""
        rows: list[dict[str, object]] = [
            {
                "option": "live calls",
                "requests": self.live.requests,
                "cost_usd": self.live.cost_usd,
                "time": _duration(self.live.seconds),
                "model": self.live_model,
                "chosen": self.choice == "live",
            },
            {
                "option": "Batch API",
                "requests": self.batch_api.requests,
                "cost_usd": self.batch_api.cost_usd,
                "time": _duration(self.batch_api.seconds),
                "model": self.batch_model,
                "chosen": self.choice == "batch_api",
            },
        ]
        if self.split is not None:
            rows.append(
                {
                    "option": f"split: {self.live_count} live, {self.batch_count} by batch",
                    "requests": self.split.requests,
                    "cost_usd": self.split.cost_usd,
                    "time": _duration(self.split.seconds),
                    "model": f"{self.live_model} / {self.batch_model}",
                    "chosen": True,
                }
            )
        return rows

    @property
    def title(self) -> str:
        """`plan` when the mode was asked for (the reason says "as asked"), else that `auto`
        chose it."""
        return "plan" if self.mode != "auto" else "plan (mode='auto', chosen automatically)"

    def __str__(self) -> str:
        lines = [f"{self.title}: {self.reason}"]
        for row in self.rows():
            mark = "->" if row["chosen"] else "  "
            lines.append(
                f" {mark} {row['option']:<34} {row['requests']:>6} requests  "
                f"~{_usd(row['cost_usd'])}  {row['time']:>10}  on {row['model']}"
            )
        lines.append(f"    Batch API time: {self.turnaround.source}")
        lines.extend(f"    {note}" for note in self._notes())
        return "\n".join(lines)

    def _notes(self) -> list[str]:
        """What the options' table does not show: the cache's share, the budget's, and what
        Batch API jobs may meet."""
        notes = []
        if self.cached:
            notes.append(
                f"{self.cached} more answered by earlier runs (the call log): served free, not sent"
            )
        if self.budget_usd is not None:
            notes.append(self._budget_words())
        if self.choice != "live":
            notes.append(BATCH_CAVEATS)
            if self.jobs_out:
                notes.append(self._queue_words())
        return notes

    def _queue_words(self) -> str:
        jobs = "1 Batch API job" if self.jobs_out == 1 else f"{self.jobs_out} Batch API jobs"
        return (
            f"{jobs} created earlier at this endpoint had not ended when last seen: the service "
            "has refused new jobs (429) with around four at once, so this batch's may wait to "
            "be created until some end."
        )

    def _budget_words(self) -> str:
        words = f"budget {format_usd(self.budget_usd)}"
        if self.batch_count == 0:
            return f"{words}: live calls stop before they would cross it"
        if self.live_count:
            words += (
                f" ({format_usd(self.batch_budget_usd)} of it for the Batch API part, the rest "
                "for the live calls, which stop before they would cross theirs)"
            )
        sent = self.batch_count - self.over_budget
        how = (
            "at their reserved cost (input estimate plus max_output_tokens, or 1,024 output "
            "tokens where it is unset, at the batch price)"
        )
        if not self.over_budget:
            return f"{words}: the {sent} requests for the Batch API fit {how}"
        return (
            f"{words}: only the first {sent} of the {self.batch_count} requests for the Batch "
            f"API fit {how}; the other {self.over_budget} are not sent (not run)"
        )

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """IPython shows the plan as its text (the dataclass repr is for debugging)."""
        printer.text(str(self))

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{h}</th>" for h in ("", "option", "requests", "cost", "time", "model"))
        body = "".join(
            "<tr>"
            f"<td>{'&rarr;' if r['chosen'] else ''}</td>"
            f"<td>{html.escape(str(r['option']))}</td><td>{r['requests']}</td>"
            f"<td>{_usd(r['cost_usd'])}</td><td>{html.escape(str(r['time']))}</td>"
            f"<td>{html.escape(str(r['model']))}</td></tr>"
            for r in self.rows()
        )
        return (
            f"<p><b>{html.escape(self.title)}</b>: {html.escape(self.reason)}</p>"
            f"<table><tr>{head}</tr>{body}</table>"
            f"<p><small>Batch API time: {html.escape(self.turnaround.source)}"
            + "".join(f"<br>{html.escape(note)}" for note in self._notes())
            + "</small></p>"
        )


def parse_deadline(value: object, now: datetime | None = None) -> float | None:
    """A deadline as seconds from now: seconds, a timedelta, "90s"/"30m"/"2h"/"1d", a datetime."""
    if value is None:
        return None
    seconds: float
    if isinstance(value, bool):
        seconds = math.nan
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, datetime):
        moment = value if value.tzinfo else value.astimezone()
        seconds = (moment - (now or datetime.now().astimezone())).total_seconds()
        if seconds <= 0:
            raise ConfigurationError(f"deadline={value!r} is in the past; give a later time.")
    elif isinstance(value, str) and (found := _DURATION.fullmatch(value.strip())):
        seconds = float(found.group(1)) * _UNITS[found.group(2) or "s"]
    else:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigurationError(
            f"deadline={value!r}: give a positive number of seconds, a timedelta, a duration "
            "such as '30m', '2h' or '1d', or a datetime."
        )
    return seconds


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0}


def check_mode(mode: object) -> Mode:
    if mode not in MODES:
        raise ConfigurationError(
            f"mode={mode!r}: use 'live' (paced calls now, full price), 'batch_api' (Google's "
            "Batch API: half price, results within its turnaround) or 'auto' (live when it "
            "fits the deadline, else the Batch API, or both)."
        )
    return mode  # type: ignore[return-value]


def _usd(cost: object) -> str:
    return format_usd(cost if isinstance(cost, int | float) else None)


def _known(*parts: CostTotal) -> float | None:
    """The parts' cost, or None when any price in them is unknown."""
    if any(part.unpriced for part in parts):
        return None
    return sum(part.usd for part in parts)


def affordable(costs: Iterable[float | None], budget_usd: float) -> tuple[int, float]:
    """How many of `costs`, from the front, fit `budget_usd` together, and their sum.

    The first that does not fit ends the count (as the engine stops at the first request that
    cannot fit), so what is sent is always a prefix of the list; an unknown cost never fits.
    """
    count, total = 0, 0.0
    for cost in costs:
        if cost is None or total + cost > budget_usd:
            break
        count, total = count + 1, total + cost
    return count, total


def plan_batch(
    requests: Sequence[GenerationRequest],
    ladder: Sequence[ModelSpec],
    batch_model: ModelSpec,
    *,
    mode: Mode,
    turnaround: Turnaround,
    deadline_s: float | None = None,
    latency_s: float = TYPICAL_LATENCY_S,
    cached: int = 0,
    jobs_out: int = 0,
    budget_usd: float | None = None,
) -> BatchPlan:
    """Decide what runs where (see the module docstring) and price every option.

    `requests` are the ones to send; `cached` counts those the call log already answered;
    `jobs_out` the jobs already out at the endpoint (a new one may wait to be created);
    `budget_usd` is shared between the parts as the module docstring says.
    """
    usable = [spec for spec in ladder if spec.usable] or list(ladder)
    live_model = usable[0]
    tokens = [reserved_usage(r) for r in requests]
    prefix_tokens = [0]
    for usage in tokens:
        prefix_tokens.append(prefix_tokens[-1] + usage.input)

    def live_s(n: int) -> float:
        return live_bound_s(n, prefix_tokens[n], usable, latency_s) if n else 0.0

    def live_cost(part: Sequence[Usage]) -> CostTotal:
        return CostTotal.of(live_model.cost_usd(u) for u in part)

    def batch_cost(part: Sequence[Usage]) -> CostTotal:
        return CostTotal.of(batch_model.cost_usd(u, batch=True) for u in part)

    total = len(requests)
    live = Option(total, _known(live_cost(tokens)), live_s(total))
    batch = Option(total, _known(batch_cost(tokens)), turnaround.seconds if total else 0.0)
    deadline = deadline_s if deadline_s is not None else turnaround.seconds
    split: Option | None = None
    live_count = 0
    if mode == "live":
        choice: Choice = "live"
        reason = "live calls, as asked (mode='live')"
    elif mode == "batch_api":
        choice = "batch_api"
        reason = "Google's Batch API, as asked (mode='batch_api')"
    elif live.seconds <= deadline:
        choice = "live"
        reason = (
            f"live calls fit the {_deadline_words(deadline_s, deadline)} "
            f"({_duration(live.seconds)} at the ladder's limits)"
        )
    elif turnaround.seconds <= deadline:
        choice = "batch_api"
        reason = (
            f"live calls need {_duration(live.seconds)} at the ladder's limits, more than the "
            f"{_duration(turnaround.seconds)} the Batch API is expected to take"
            if deadline_s is None
            else f"live calls need {_duration(live.seconds)}, more than the deadline of "
            f"{_duration(deadline)}; the Batch API is expected in {_duration(turnaround.seconds)}"
        )
    else:
        live_count = _largest_fitting(total, live_s, deadline)
        if live_count == 0:
            choice = "batch_api"
            reason = (
                f"neither fits the deadline of {_duration(deadline)}; not even one request "
                "fits live, so all go to the Batch API"
            )
        else:
            choice = "split"
            reason = (
                f"neither fits the deadline of {_duration(deadline)}: the first {live_count} "
                f"requests (what live calls finish by then) go live, the other "
                f"{total - live_count} to the Batch API"
            )
            split = Option(
                total,
                _known(live_cost(tokens[:live_count]), batch_cost(tokens[live_count:])),
                max(live_s(live_count), turnaround.seconds),
            )
    if choice == "live":
        live_count = total
    batch_budget: float | None = None
    over_budget = 0
    if budget_usd is not None:
        live_reserved = live_cost(tokens[:live_count]).usd
        batch_budget = max(0.0, budget_usd - live_reserved) if live_count < total else 0.0
        batch_part = tokens[live_count:]
        fit, _ = affordable((batch_model.cost_usd(u, batch=True) for u in batch_part), batch_budget)
        over_budget = len(batch_part) - fit
    return BatchPlan(
        mode=mode,
        choice=choice,
        live_count=live_count,
        batch_count=total - live_count,
        live=live,
        batch_api=batch,
        split=split,
        deadline_s=deadline_s,
        turnaround=turnaround,
        live_model=live_model.name,
        batch_model=batch_model.name,
        reason=reason,
        cached=cached,
        budget_usd=budget_usd,
        batch_budget_usd=batch_budget,
        over_budget=over_budget,
        jobs_out=jobs_out,
    )


def _largest_fitting(total: int, live_s: object, deadline: float) -> int:
    """The most requests (from the front) live calls finish within `deadline` (bisection)."""
    assert callable(live_s)
    low, high = 0, total
    while low < high:
        middle = (low + high + 1) // 2
        if live_s(middle) <= deadline:
            low = middle
        else:
            high = middle - 1
    return low


def _deadline_words(given: float | None, deadline: float) -> str:
    if given is None:
        return f"expected Batch API turnaround of {_duration(deadline)}"
    return f"deadline of {_duration(deadline)}"


def _duration(seconds: float) -> str:
    """A human duration; seconds are whole so plans print the same every time."""
    if math.isinf(seconds):
        return "never"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} days"
