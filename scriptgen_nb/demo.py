"""The demo job: the seed's workload (video scripts for a project's chapters) as one batch.

`run_demo()` starts the embedded emulator with compressed quota windows (a "minute" of 5 s) and
free-tier-like limits, of which the first model's daily quota is lower than the catalogue says,
so one run shows pacing, a per-day 429, rotation down the ladder, retried 503s, and the figures
per model. With `real=True` the same job goes to Google with GEMINI_API_KEY at real windows.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from .api import ResultList, batch_generate, create_batch_requests
from .emulator import Emulator, EmulatorConfig, FaultConfig, ModelConfig
from .engine.limits import METRIC_UNITS
from .engine.models import ModelSpec, default_catalogue
from .engine.pricing import CostTotal
from .engine.values import AttemptFinished, Event, LimitLearned, ModelStateChanged
from .progress import format_duration, limit_source
from .store import default_db_path

DEMO_KEY = "demo-key"
LEGEND = """\
429: calls refused for quota (sent again later, or to another model)
err: other failed calls (503 overloaded: sent again)
out tok: the answers' and the thinking's tokens; cost in US dollars; p50: median latency"""
MINUTE_S = 5.0
DAY_S = 120.0

PROJECT = "The Keepers of the Light: a history of lighthouses"
CHAPTERS = [
    "The first fires on the cliffs",
    "Pharos of Alexandria",
    "Roman towers of the north",
    "Medieval monks and their lanterns",
    "Eddystone: four towers on one rock",
    "The Fresnel lens",
    "Keepers and their families",
    "Storms that took the lights",
    "Lightships at anchor",
    "Women who kept the lights",
    "Electric light arrives",
    "Radio beacons",
    "The last manned stations",
    "Automation and the empty towers",
    "Lighthouses as museums",
    "Ghost stories of the coast",
    "Lighthouses in painting",
    "Lighthouses in film",
    "Restoring a ruined tower",
    "Living in a lighthouse today",
    "Lights of the Great Lakes",
    "Japan's western-style lighthouses",
    "The Cape Hatteras move",
    "Skerryvore",
    "Bell Rock and Robert Stevenson",
    "The Stevensons, a family of engineers",
    "Lighthouses of the Baltic",
    "Tidal islands and causeways",
    "GPS and the end of the beam",
    "Why we still build lights",
    "The keepers' logbooks",
    "Sound: foghorns and bells",
    "Colours and flashing patterns",
    "Heritage and tourism",
    "Climate and rising seas",
    "Epilogue: the last keeper",
]


def demo_emulator_config(seed: int = 7) -> EmulatorConfig:
    """The emulator as the demo's account sees it: the catalogue's free tier, compressed."""

    def free_tier(rpm: int, rpd: int, latency_s: float) -> ModelConfig:
        return ModelConfig(
            rpm=rpm,
            tpm=250_000,
            rpd=rpd,
            latency_base_s=latency_s,
            latency_per_output_token_s=0.001,
            latency_jitter_s=latency_s / 2,
            faults=FaultConfig(p_503=0.06),  # "The model is overloaded": retried
        )

    return EmulatorConfig(
        seed=seed,
        api_keys=(DEMO_KEY,),
        minute_s=MINUTE_S,
        day_s=DAY_S,
        models={
            # Documented as 20 a day, but this account gets 6: the batch finds out mid-run.
            "gemini-3.8-flash": free_tier(rpm=5, rpd=6, latency_s=0.8),
            "gemini-3.5-flash-lite": free_tier(rpm=15, rpd=1000, latency_s=0.6),
            "gemini-2.5-flash-lite": free_tier(rpm=15, rpd=1000, latency_s=0.5),
        },
    )


def demo_prompts(n: int) -> list[dict[str, Any]]:
    """`n` chapter prompts in the seed's `{id, prompt}` shape."""
    prompts = []
    for i in range(n):
        title = CHAPTERS[i % len(CHAPTERS)]
        prompts.append(
            {
                "id": f"chapter-{i + 1:02d}",
                "prompt": (
                    f'Write a 60-second video script for chapter {i + 1}, "{title}", of the '
                    f'documentary "{PROJECT}". Give scenes with narration and visuals.'
                ),
            }
        )
    return prompts


@dataclass
class ModelTally:
    attempts: int = 0
    succeeded: int = 0
    rate_limited: int = 0
    other_errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: CostTotal = field(default_factory=CostTotal)
    latency_ms: list[float] = field(default_factory=list)


class DemoReporter:
    """A listener that narrates model state changes and tallies attempts per model."""

    def __init__(self, out: TextIO, started: float) -> None:
        self.out = out
        self.started = started
        self.models: dict[str, ModelTally] = defaultdict(ModelTally)

    def __call__(self, event: Event) -> None:
        if isinstance(event, AttemptFinished):
            a = event.attempt
            tally = self.models[a.model]
            tally.attempts += 1
            tally.input_tokens += a.usage.input
            tally.output_tokens += a.usage.output + a.usage.thoughts
            tally.cost = tally.cost.add(a.cost_usd)
            if a.success:
                tally.succeeded += 1
                tally.latency_ms.append(a.latency_ms)
            elif a.failure and a.failure.kind in ("rate_limited", "quota_exhausted"):
                tally.rate_limited += 1
            else:
                tally.other_errors += 1
        elif isinstance(event, ModelStateChanged):
            until = "" if event.until_s is None else f" for {format_duration(event.until_s)}"
            self._say(f"{event.model} {event.state}{until}: {_first_line(event.reason)}")
        elif isinstance(event, LimitLearned):
            self._say(f"{event.model}: {_learned(event)}")

    def _say(self, text: str) -> None:
        print(f"  [{time.monotonic() - self.started:5.1f}s] {text}", file=self.out, flush=True)


def _learned(limit: LimitLearned) -> str:
    """A working limit that changed, in words with its unit: what the service stated, against
    the catalogue's figure; or where a figure it did not state came from."""
    unit = METRIC_UNITS[limit.metric]
    said = (
        "the catalogue says none"
        if limit.configured is None
        else (f"the catalogue says {limit.configured:,}")
    )
    if limit.source not in ("stated", "message"):
        return f"paced at {limit.learned:,} {unit} ({limit_source(limit.source)}; {said})"
    if limit.configured == limit.learned:
        versus = "as the catalogue says"
    elif limit.configured is None:
        versus = "where the catalogue gives no figure"
    else:
        versus = f"not the catalogue's {limit.configured:,}"
    return f"the service allows {limit.learned:,} {unit}, {versus}; paced at that"


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:240] if text.strip() else ""


def print_report(results: ResultList, reporter: DemoReporter, elapsed: float, out: TextIO) -> None:
    header = (
        f"{'model':<24}{'calls':>6}{'ok':>5}{'429':>5}{'err':>5}"
        f"{'in tok':>9}{'out tok':>9}{'cost $':>10}{'p50 ms':>8}"
    )
    print("\n" + header, file=out)
    print("-" * len(header), file=out)
    for name, t in sorted(reporter.models.items()):
        p50 = sorted(t.latency_ms)[len(t.latency_ms) // 2] if t.latency_ms else 0.0
        spent = f"{'>=' if t.cost.unpriced else ''}{t.cost.usd:.5f}"  # >=: some price unknown
        print(
            f"{name:<24}{t.attempts:>6}{t.succeeded:>5}{t.rate_limited:>5}{t.other_errors:>5}"
            f"{t.input_tokens:>9}{t.output_tokens:>9}{spent:>10}{p50:>8.0f}",
            file=out,
        )
    ok = len(results.succeeded)
    cost = CostTotal.of(r.cost_usd for r in results)
    calls = sum(t.attempts for t in reporter.models.values())
    cached = sum(1 for r in results if r.cached)
    print("-" * len(header), file=out)
    print(LEGEND, file=out)
    print(
        f"total: {ok}/{len(results)} requests succeeded in {elapsed:.1f}s "
        f"({len(results) / elapsed * 60:.0f} requests per minute), {calls} calls, {cost}",
        file=out,
    )
    if cached:
        print(
            f"  {cached} of them answered from the call log, where an earlier run left them: "
            "none sent;\n  run the demo in an empty folder to watch it send them all",
            file=out,
        )
    for r in results.failed:
        print(f"  failed {r.id}: {r.error}", file=out)


def run_demo(
    n: int = 36,
    *,
    real: bool = False,
    out: TextIO,
    seed: int = 7,
    on_start: Callable[[str], None] | None = None,
) -> ResultList:
    """Run the demo batch and print per-model and total figures to `out`."""
    requests = create_batch_requests(
        demo_prompts(n),
        operation="GENERATE_SCRIPT",
        project_id="demo-lighthouses",
        temperature=0.7,
        max_output_tokens=2048,
    )
    catalogue = default_catalogue(tier="free")
    models: list[ModelSpec] = catalogue.ladder()
    if real:
        print(f"Sending {n} requests to Google with GEMINI_API_KEY (this spends quota).", file=out)
        return _run(requests, models, out, {})
    with Emulator(demo_emulator_config(seed)) as emu:
        ladder = [m.with_windows(MINUTE_S, DAY_S) for m in models]
        print(
            f"scriptgen demo: {n} chapter scripts on the embedded Gemini emulator at "
            f"{emu.base_url}\n(no API key used; quota windows compressed: a 'minute' is "
            f"{MINUTE_S:g}s). Ladder: {', '.join(m.name for m in ladder)}",
            file=out,
            flush=True,
        )
        if on_start:
            on_start(emu.base_url)
        return _run(requests, ladder, out, {"base_url": emu.base_url, "api_key": DEMO_KEY})


def _run(
    requests: Any, ladder: list[ModelSpec], out: TextIO, endpoint: dict[str, Any]
) -> ResultList:
    started = time.monotonic()
    reporter = DemoReporter(out, started)
    results = batch_generate(requests, models=ladder, listeners=[reporter], **endpoint)
    print_report(results, reporter, time.monotonic() - started, out)
    print(f"Every attempt is in the call log {default_db_path()}: see `scriptgen stats`.", file=out)
    return results
