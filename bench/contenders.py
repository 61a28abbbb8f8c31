"""The contenders: our engine and the published patterns it competes with, written here.

Each contender runs one workload (prompts, the ladder the catalogue states, the emulator's URL)
and returns a `Run`: wall time, CPU time of this process, successes, failures by kind, the
moments requests completed and, where the contender exposes them, every attempt.

- `ours`: `scriptgen_nb.batch_generate` with its defaults (pacing by the limits, logging to a
  fresh DuckDB file per run), or another `max_concurrency` ("seed", an int).
- `naive_gather`: `asyncio.gather` of every request through google-genai, with the SDK's own
  `HttpRetryOptions` at its documented defaults (5 attempts, 1 s initial, 60 s max, base 2,
  jitter 1), time constants scaled like the windows. It ignores `retryDelay`.
- `cookbook`: the OpenAI cookbook's `api_request_parallel_processor.py` pattern re-implemented
  for Gemini's REST API: request and token buckets refilled continuously (capped at one
  window's worth, starting full), one request per 1 ms loop, a global pause of 15 s (scaled)
  after any 429, failed requests re-queued at once ahead of new ones, 5 attempts, token estimate
  = prompt tokens (4 characters a token, as tiktoken is not used for Gemini) + 4 + 2 + 15
  (`max_tokens` absent). Like the cookbook it posts raw JSON (the cookbook uses aiohttp, no SDK).
- `bare_semaphore`: `asyncio.gather` of google-genai calls under `asyncio.Semaphore(64)`, no
  retries, no logging (scenario 5's reference).
- `rate_contenders`: the standard line-up of the rate scenarios (1, 2, 3), by name.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import queue
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

import scriptgen_nb as sg
from scriptgen_nb.engine.backend import FakeBackend, GeminiBackend
from scriptgen_nb.engine.models import ModelSpec
from scriptgen_nb.engine.values import (
    AttemptFinished,
    Event,
    GenerationRequest,
    LimitLearned,
    ModelStateChanged,
    RequestFinished,
    RequestStarted,
)
from scriptgen_nb.progress import ProgressState, format_line, format_summary
from scriptgen_nb.store import CallStore

from .emulator_proc import API_KEY

OURS = "ours (default)"
SEED = "ours, max_concurrency='seed'"
NAIVE = "naive gather + SDK retries"
COOKBOOK = "cookbook pattern"


@dataclass(frozen=True, slots=True)
class Workload:
    """What every contender of one run gets: the same prompts, ladder and emulator."""

    prompts: Sequence[str]
    ladder: Sequence[ModelSpec]  # what the catalogue says (limits may be wrong on purpose)
    base_url: str
    minute_s: float  # the compressed minute; time constants scale by minute_s / 60

    @property
    def scale(self) -> float:
        return self.minute_s / 60.0

    def requests(self) -> list[GenerationRequest]:
        return list(
            sg.create_batch_requests(
                [{"id": f"r{i}", "prompt": p} for i, p in enumerate(self.prompts)]
            )
        )


@dataclass(slots=True)
class AttemptRecord:
    """One call as the client saw it (seconds from the run's start)."""

    start: float
    end: float
    model: str
    outcome: str  # "ok" or a failure kind


@dataclass(slots=True)
class Run:
    """What one contender did with one workload."""

    contender: str
    n: int
    wall_s: float = 0.0
    cpu_s: float = 0.0
    succeeded: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    completions: list[float] = field(default_factory=list)  # success times, from the start
    attempts: list[AttemptRecord] | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return self.n - self.succeeded


class _Clock:
    """Wall time since the run's start (engine events carry wall-clock stamps)."""

    def __init__(self) -> None:
        self.t0 = time.time()

    def now(self) -> float:
        return time.time() - self.t0

    def at(self, wall: float) -> float:
        return wall - self.t0


# --- ours --------------------------------------------------------------------------------------


class _EngineWatcher:
    """An engine listener: attempts, completions, learned limits, and what the panel shows.

    It also counts the attempts started (`RequestStarted`) and, for each kind of failure, how
    many had started when the first attempt failing so was reported (`started_before_first`):
    events arrive in the engine's order, so that is what was sent before the engine knew, e.g.
    the calls in flight when a billing stop or a retired model first answered.
    """

    def __init__(self, clock: _Clock) -> None:
        self.clock = clock
        self.attempts: list[AttemptRecord] = []
        self.completions: list[float] = []
        self.events: list[dict[str, Any]] = []
        self.panel = ProgressState()  # the state the panel and the text bar draw
        self.started = 0
        self.started_before_first: dict[str, int] = {}

    def __call__(self, event: Event) -> None:
        self.panel(event)
        if isinstance(event, RequestStarted):
            self.started += 1
        elif isinstance(event, AttemptFinished):
            a = event.attempt
            outcome = "ok" if a.success else (a.failure.kind if a.failure else "error")
            self.started_before_first.setdefault(outcome, self.started)
            self.attempts.append(
                AttemptRecord(
                    self.clock.at(a.started_at), self.clock.at(a.finished_at), a.model, outcome
                )
            )
        elif isinstance(event, RequestFinished):
            if event.result.success:
                self.completions.append(self.clock.now())
        elif isinstance(event, LimitLearned):
            self.events.append(
                {
                    "t": round(self.clock.now(), 3),
                    "type": "limit_learned",
                    "model": event.model,
                    "metric": event.metric,
                    "configured": event.configured,
                    "learned": event.learned,
                    "source": event.source,
                    # the live line (terminal bar, the panel's text) right after the event
                    "progress_line": format_line(self.panel.snapshot()),
                }
            )
        elif isinstance(event, ModelStateChanged):
            row = next((m for m in self.panel.snapshot().models if m.name == event.model), None)
            self.events.append(
                {
                    "t": round(self.clock.now(), 3),
                    "type": event.state,
                    "model": event.model,
                    "panel": f"{row.state}: {row.reason}" if row else "",
                }
            )


def ours(
    workload: Workload,
    *,
    max_concurrency: int | str | None = None,
    log: bool = True,
    inspect_log: Callable[[CallStore], dict[str, Any]] | None = None,
    name: str = OURS,
    db: str | None = None,
    raises: tuple[type[Exception], ...] = (),
    give_up_s: float | None = None,
) -> Run:
    """Our engine through the public API, logging to a fresh DuckDB file (no cache carry-over).

    `db` logs to that file instead (kept, so a later batch can start from what this one
    learned). An exception of a type in `raises` is how the batch is meant to end (a billing
    stop): it is recorded in `extra["raised"]` with every request counted as failed by it,
    instead of propagating. `give_up_s` cancels the batch (its `CancelToken`, as a Cancel
    button does) after that many seconds, so a run far beyond its goal still ends: what did not
    finish is counted as not run, and `extra["gave_up_after_s"]` says so.
    """
    requests = workload.requests()
    with tempfile.TemporaryDirectory(prefix="bench-log-") as tmp:
        db_path = db or str(Path(tmp) / "calls.duckdb")
        clock = _Clock()
        watcher = _EngineWatcher(clock)
        cancel = sg.CancelToken()
        timer = threading.Timer(give_up_s, cancel.cancel) if give_up_s is not None else None
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        if timer is not None:
            timer.start()
        results: Sequence[Any] = ()
        raised: Exception | None = None
        try:
            results = sg.batch_generate(
                requests,
                max_concurrency=max_concurrency,
                models=list(workload.ladder),
                base_url=workload.base_url,
                api_key=API_KEY,
                db=db_path if log else False,
                listeners=[watcher],
                cancel=cancel,
            )
        except raises as exc:
            raised = exc
        finally:
            if timer is not None:
                timer.cancel()
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        run = Run(name, len(requests), wall, cpu)
        run.succeeded = sum(r.success for r in results)
        run.failures = dict(Counter(r.error.kind for r in results if r.error is not None))
        if raised is not None:
            run.failures = {type(raised).__name__: len(requests)}
            run.extra["raised"] = f"{type(raised).__name__}: {raised}"
        if cancel.cancelled:
            run.extra["gave_up_after_s"] = give_up_s
        run.completions = sorted(watcher.completions)
        run.attempts = watcher.attempts
        run.events = watcher.events
        run.extra["attempts_started"] = watcher.started
        run.extra["started_before_first"] = watcher.started_before_first
        run.extra["progress_summary"] = format_summary(watcher.panel.snapshot())
        if log and inspect_log is not None:
            run.extra["log"] = inspect_log(CallStore(db_path))
    return run


def ours_on_fake(n: int, *, max_concurrency: int, log: bool) -> Run:
    """The engine alone: the public API over `FakeBackend` (no HTTP, no latency, no limits)."""
    spec = ModelSpec("fake-unlimited", priority=1)
    prompts = (f"Write a 60-second video script about topic {i}." for i in range(n))
    requests = sg.create_batch_requests(prompts)
    with tempfile.TemporaryDirectory(prefix="bench-log-") as tmp:
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        succeeded = 0
        for result in sg.iter_generate(
            requests,
            models=[spec],
            max_concurrency=max_concurrency,
            backend=FakeBackend(keep_calls=False),
            db=str(Path(tmp) / "calls.duckdb") if log else False,
        ):
            succeeded += result.success
        run = Run(
            f"engine on FakeBackend, log {'on' if log else 'off'}",
            n,
            time.perf_counter() - t0,
            time.process_time() - cpu0,
        )
    run.succeeded = succeeded
    return run


# --- SDK calls gathered at once -----------------------------------------------------------------


def _failure_kind(exc: BaseException) -> str:
    if isinstance(exc, genai_errors.APIError):
        return f"http_{exc.code}"
    return type(exc).__name__


Outcomes = list[BaseException | None]  # one per request: None, or what the call raised


async def _each(
    items: Sequence[Any],
    call: Callable[[Any], Awaitable[object]],
    *,
    limit: int | None = None,
    on_success: Callable[[], None] | None = None,
) -> Outcomes:
    """`asyncio.gather` of `call(item)` for every item, under a semaphore when `limit` is set."""
    gate: contextlib.AbstractAsyncContextManager[Any] = (
        asyncio.Semaphore(limit) if limit else contextlib.nullcontext()
    )

    async def one(item: Any) -> BaseException | None:
        async with gate:
            try:
                await call(item)
            except Exception as exc:
                return exc
        if on_success is not None:
            on_success()
        return None

    return await asyncio.gather(*(one(item) for item in items))


def _timed(name: str, main: Callable[[], Coroutine[Any, Any, Outcomes]]) -> Run:
    """Run `main()` on a fresh loop; its outcomes become a `Run` (wall and CPU time, failures)."""
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    outcomes = asyncio.run(main())
    run = Run(name, len(outcomes), time.perf_counter() - t0, time.process_time() - cpu0)
    run.succeeded = sum(o is None for o in outcomes)
    run.failures = dict(Counter(_failure_kind(o) for o in outcomes if o is not None))
    return run


# --- naive asyncio.gather with the SDK's retries -----------------------------------------------


def sdk_retry_options(scale: float) -> types.HttpRetryOptions:
    """google-genai's documented retry defaults, time constants scaled like the windows."""
    return types.HttpRetryOptions(
        attempts=5,
        initial_delay=1.0 * scale,
        max_delay=60.0 * scale,
        exp_base=2.0,
        jitter=1.0 * scale,
    )


def naive_gather(workload: Workload) -> Run:
    """Every request at once; the SDK retries 408/429/5xx by itself, blind to retryDelay."""
    model = workload.ladder[0].name
    clock = _Clock()
    completions: list[float] = []

    async def main() -> Outcomes:
        options = types.HttpOptions(
            base_url=workload.base_url, retry_options=sdk_retry_options(workload.scale)
        )
        client = genai.Client(api_key=API_KEY, http_options=options)
        try:
            return await _each(
                workload.prompts,
                lambda prompt: client.aio.models.generate_content(model=model, contents=prompt),
                on_success=lambda: completions.append(clock.now()),
            )
        finally:
            await client.aio.aclose()

    run = _timed(NAIVE, main)
    run.completions = sorted(completions)
    return run


# --- bare gather under a semaphore -------------------------------------------------------------


def bare_semaphore(
    workload: Workload,
    *,
    limit: int = 64,
    pool: int | None = None,
    temperature: float | None = None,
    name: str = "bare SDK gather, semaphore 64",
) -> Run:
    """google-genai calls under a semaphore: no retries, no logging, nothing else.

    `pool` gives the SDK an httpx2 client whose pool keeps that many connections (the SDK's
    default keeps 20 alive); `temperature` passes a fresh `GenerateContentConfig(temperature=...)`
    with every call, as `GeminiBackend` does for any request with a generation setting (the
    seed's script generation sends temperature 0.7): a diagnostic of what such a config costs.
    """
    model = workload.ladder[0].name
    clock = _Clock()
    completions: list[float] = []

    def config() -> types.GenerateContentConfig | None:
        return None if temperature is None else types.GenerateContentConfig(temperature=temperature)

    async def main() -> Outcomes:
        extra: dict[str, Any] = {}
        http: httpx2.AsyncClient | None = None
        if pool is not None:
            limits = httpx2.Limits(max_connections=pool, max_keepalive_connections=pool)
            http = httpx2.AsyncClient(limits=limits, timeout=61.0)
            extra["httpx_async_client"] = http
        client = genai.Client(
            api_key=API_KEY, http_options=types.HttpOptions(base_url=workload.base_url, **extra)
        )
        try:
            return await _each(
                workload.prompts,
                lambda prompt: client.aio.models.generate_content(
                    model=model, contents=prompt, config=config()
                ),
                limit=limit,
                on_success=lambda: completions.append(clock.now()),
            )
        finally:
            await client.aio.aclose()
            if http is not None:
                await http.aclose()

    run = _timed(name, main)
    run.completions = sorted(completions)
    return run


def backend_semaphore(workload: Workload, *, limit: int = 64) -> Run:
    """Our `GeminiBackend` alone under a semaphore (no engine, no log): a diagnostic."""
    model = workload.ladder[0].name
    requests = workload.requests()

    async def main() -> Outcomes:
        backend = GeminiBackend(API_KEY, base_url=workload.base_url, max_connections=limit)
        await backend.open()
        try:
            return await _each(
                requests, lambda request: backend.generate(request, model), limit=limit
            )
        finally:
            await backend.aclose()

    return _timed("GeminiBackend alone, semaphore 64", main)


# --- the cookbook's parallel processor ---------------------------------------------------------

COOKBOOK_PAUSE_S = 15.0  # seconds_to_pause_after_rate_limit_error
COOKBOOK_LOOP_SLEEP_S = 0.001  # seconds_to_sleep_each_loop (a polling interval: not scaled)
COOKBOOK_MAX_ATTEMPTS = 5
COOKBOOK_DEFAULT_TPM = 125_000  # max_tokens_per_minute when the user gives none
COOKBOOK_MAX_TOKENS = 15  # completion tokens charged when a request sets no max_tokens


def cookbook_tokens(prompt: str) -> int:
    """num_tokens_consumed_from_request for one user message (chars/4 stands in for tiktoken)."""
    return 4 + math.ceil(len(prompt) / 4) + 2 + COOKBOOK_MAX_TOKENS


@dataclass
class _StatusTracker:
    """The cookbook's StatusTracker, the fields its loop reads (its other counters only feed
    its closing log line; failures by kind are counted in `_CookbookSink`)."""

    num_tasks_in_progress: int = 0
    num_tasks_succeeded: int = 0
    num_rate_limit_errors: int = 0
    time_of_last_rate_limit_error: float = 0.0


@dataclass
class _APIRequest:
    task_id: int
    prompt: str
    token_consumption: int
    attempts_left: int
    result: list[Any] = field(default_factory=list)

    async def call_api(
        self,
        http: httpx2.AsyncClient,
        url: str,
        headers: dict[str, str],
        retry_queue: queue.Queue[_APIRequest],
        status: _StatusTracker,
        sink: _CookbookSink,
    ) -> None:
        error: Any = None
        start = sink.clock.now()
        try:
            body = {"contents": [{"role": "user", "parts": [{"text": self.prompt}]}]}
            response = await http.post(url, headers=headers, json=body)
            payload = response.json()
            if "error" in payload:
                error = payload
                if payload["error"].get("code") == 429:  # the cookbook's current check
                    status.time_of_last_rate_limit_error = time.monotonic()
                    status.num_rate_limit_errors += 1
        except Exception as exc:
            error = exc
        end = sink.clock.now()
        if error is not None:
            kind = (
                f"http_{error['error'].get('code')}"
                if isinstance(error, dict)
                else type(error).__name__
            )
            sink.attempts.append(AttemptRecord(start, end, sink.model, kind))
            self.result.append(error)
            if self.attempts_left:
                retry_queue.put_nowait(self)
            else:
                status.num_tasks_in_progress -= 1
                sink.failures[kind] += 1
        else:
            sink.attempts.append(AttemptRecord(start, end, sink.model, "ok"))
            sink.completions.append(end)
            status.num_tasks_in_progress -= 1
            status.num_tasks_succeeded += 1


@dataclass
class _CookbookSink:
    clock: _Clock
    model: str
    attempts: list[AttemptRecord] = field(default_factory=list)
    completions: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)


async def _process_requests(
    prompts: Sequence[str],
    url: str,
    max_requests_per_minute: float,
    max_tokens_per_minute: float,
    minute_s: float,
    pause_s: float,
    sink: _CookbookSink,
) -> _StatusTracker:
    """process_api_requests_from_file, with the minute compressed to `minute_s`."""
    headers = {"x-goog-api-key": API_KEY, "Content-Type": "application/json"}
    retry_queue: queue.Queue[_APIRequest] = queue.Queue()
    task_ids = iter(range(10**12))
    status = _StatusTracker()
    next_request: _APIRequest | None = None
    available_request_capacity = max_requests_per_minute
    available_token_capacity = max_tokens_per_minute
    last_update_time = time.monotonic()
    file_not_finished = True
    source = iter(prompts)
    tasks: set[asyncio.Task[None]] = set()
    async with httpx2.AsyncClient(timeout=None) as http:  # aiohttp.ClientSession: no timeout
        while True:
            if next_request is None:
                if not retry_queue.empty():
                    next_request = retry_queue.get_nowait()
                elif file_not_finished:
                    try:
                        prompt = next(source)
                        next_request = _APIRequest(
                            task_id=next(task_ids),
                            prompt=prompt,
                            token_consumption=cookbook_tokens(prompt),
                            attempts_left=COOKBOOK_MAX_ATTEMPTS,
                        )
                        status.num_tasks_in_progress += 1
                    except StopIteration:
                        file_not_finished = False
            current_time = time.monotonic()
            seconds_since_update = current_time - last_update_time
            available_request_capacity = min(
                available_request_capacity
                + max_requests_per_minute * seconds_since_update / minute_s,
                max_requests_per_minute,
            )
            available_token_capacity = min(
                available_token_capacity + max_tokens_per_minute * seconds_since_update / minute_s,
                max_tokens_per_minute,
            )
            last_update_time = current_time
            if next_request is not None and (
                available_request_capacity >= 1
                and available_token_capacity >= next_request.token_consumption
            ):
                available_request_capacity -= 1
                available_token_capacity -= next_request.token_consumption
                next_request.attempts_left -= 1
                task = asyncio.create_task(
                    next_request.call_api(http, url, headers, retry_queue, status, sink)
                )
                tasks.add(task)  # the cookbook fires and forgets; keep a reference only
                task.add_done_callback(tasks.discard)
                next_request = None
            if status.num_tasks_in_progress == 0:
                break
            await asyncio.sleep(COOKBOOK_LOOP_SLEEP_S)
            seconds_since_rate_limit_error = time.monotonic() - status.time_of_last_rate_limit_error
            if seconds_since_rate_limit_error < pause_s:
                await asyncio.sleep(pause_s - seconds_since_rate_limit_error)
    return status


def cookbook(workload: Workload, *, rpm: float | None = None, tpm: float | None = None) -> Run:
    """The cookbook's pattern on the ladder's first model, told the catalogue's RPM and TPM."""
    spec = workload.ladder[0]
    rpm = rpm if rpm is not None else (spec.rpm if spec.rpm is not None else 10**9)
    tpm = tpm if tpm is not None else (spec.tpm if spec.tpm is not None else COOKBOOK_DEFAULT_TPM)
    url = f"{workload.base_url}/v1beta/models/{spec.name}:generateContent"
    clock = _Clock()
    sink = _CookbookSink(clock, spec.name)
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    status = asyncio.run(
        _process_requests(
            workload.prompts,
            url,
            float(rpm),
            float(tpm),
            workload.minute_s,
            COOKBOOK_PAUSE_S * workload.scale,
            sink,
        )
    )
    run = Run(COOKBOOK, len(workload.prompts), time.perf_counter() - t0)
    run.cpu_s = time.process_time() - cpu0
    run.succeeded = status.num_tasks_succeeded
    run.failures = dict(sink.failures)
    run.completions = sorted(sink.completions)
    run.attempts = sink.attempts
    run.extra["rate_limit_errors_seen"] = status.num_rate_limit_errors
    return run


# --- the line-up of the rate scenarios ---------------------------------------------------------


def rate_contenders(
    workload: Workload,
    *,
    cookbook_too: bool = True,
    inspect_log: Callable[[CallStore], dict[str, Any]] | None = None,
) -> list[tuple[str, Callable[[], Run]]]:
    """Ours (default), ours with the seed's formula, the naive gather and (where it applies)
    the cookbook pattern, each a name and a call running it on `workload`."""
    line_up: list[tuple[str, Callable[[], Run]]] = [
        (OURS, lambda: ours(workload, inspect_log=inspect_log)),
        (SEED, lambda: ours(workload, max_concurrency="seed", name=SEED)),
        (NAIVE, lambda: naive_gather(workload)),
    ]
    if cookbook_too:
        line_up.append((COOKBOOK, lambda: cookbook(workload)))
    return line_up


def warm_up() -> None:
    """Load what the contenders import and build on first use (pandas, duckdb, google-genai's
    client), outside any measurement."""
    ours_on_fake(50, max_concurrency=8, log=True)
    genai.Client(api_key=API_KEY, http_options=types.HttpOptions(base_url="http://127.0.0.1:9"))
