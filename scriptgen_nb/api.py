"""The public batch API: build requests, run them (sync, async, streaming), get results back.

`wiring.BatchOptions.prepare` joins the engine to its backend and the call log; this module runs
the result from async and sync code. Sync runs always use a fresh loop in a worker thread that
the caller joins (DESIGN rule 5 also allowed `asyncio.run` when no loop runs; one path behaves
the same in scripts and in Jupyter, where a loop is already running). Ctrl-C / a kernel
interrupt cancels the batch and raises `BatchInterrupted` carrying every request's result
(unfinished ones marked not run). No global asyncio patching.
"""

from __future__ import annotations

import asyncio
import json
import numbers
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from google.genai import types

from .batch_api import run as batch_run
from .batch_api.jobs import BatchApiSettings
from .batch_api.plan import BatchPlan, plan_batch
from .engine.errors import BatchInterrupted, ConfigurationError, RequestRefused
from .engine.models import output_cap_words
from .engine.runner import CancelToken
from .engine.values import GenerationRequest, Result, Schema
from .engine.verdict import json_schema_of
from .results import ResultList
from .store import Database
from .store.database import CallLogFailed, StoreError
from .wiring import BatchOptions, PreparedBatch

# What the batch functions take: a prompt (a string, or a mapping of a request's fields) or a
# ready request.
Prompt = str | Mapping[str, Any] | GenerationRequest

_REQUEST_FIELDS = set(GenerationRequest.__dataclass_fields__)


def create_batch_requests(
    prompts: Iterable[Prompt],
    operation: str = "GENERATE",
    project_id: str | None = None,
    temperature: float | None = None,
    system: str | None = None,
    schema: Schema = None,
    **config: Any,
) -> list[GenerationRequest] | Iterator[GenerationRequest]:
    """Turn prompts into requests (seed: `createBatchRequests`).

    A prompt is a string (its id is its position), a mapping with `prompt` and optionally `id`
    and any per-request field (`model`, `system`, `max_output_tokens`, `metadata`, ...), or a
    ready `GenerationRequest`. The keyword arguments are defaults for every request; `config`
    takes the rest of the generation settings (`max_output_tokens`, `top_p`, `top_k`, `seed`,
    `stop_sequences`, `thinking_budget` (Gemini 2.5) or `thinking_level` (Gemini 3.x:
    "minimal", "low", "medium", "high"), `safety_settings`, `model`).

    A list or tuple gives a list (at least one prompt; ids checked unique); any other iterable,
    such as a generator, gives a lazy iterator, so a huge batch never sits in memory. Every
    setting is checked as the request is made: a bad one raises `ConfigurationError` naming the
    prompt and what to change, before anything can be sent.
    """
    _check_prompts_argument(prompts)
    unknown = set(config) - _REQUEST_FIELDS
    if unknown:
        raise ConfigurationError(
            f"Unknown request settings {sorted(unknown)}; allowed: {sorted(_REQUEST_FIELDS)}."
        )
    if isinstance(project_id, int) and not isinstance(project_id, bool):
        project_id = str(project_id)  # like ids: a number names the project as its digits
    if schema is not None:
        json_schema_of(schema)  # refuse a bad schema once, before the first prompt
    defaults = {
        "operation": operation,
        "project_id": project_id,
        "temperature": temperature,
        "system": system,
        "schema": schema,
        **config,
    }
    built = _made_requests(prompts, defaults)
    if not isinstance(prompts, list | tuple):
        return built
    requests = list(built)
    check_requests(requests)
    return requests


def _made_requests(
    prompts: Iterable[Prompt], defaults: Mapping[str, Any]
) -> Iterator[GenerationRequest]:
    """Each prompt as a request, made when it is reached (a generator stays lazy)."""
    return (_to_request(i, p, defaults) for i, p in enumerate(prompts))


def _check_prompts_argument(prompts: object) -> None:
    """Refuse the things that iterate but are not a collection of prompts."""
    if isinstance(prompts, str | bytes):
        raise ConfigurationError(
            "prompts is a single string; pass a list of prompts, e.g. [prompt]."
        )
    if isinstance(prompts, Mapping | GenerationRequest):
        raise ConfigurationError(
            f"prompts is a single {type(prompts).__name__}; pass a list of them, e.g. [prompt]."
        )
    if not isinstance(prompts, Iterable):
        raise ConfigurationError(
            f"prompts must be a list (or another iterable) of prompts, not "
            f"{type(prompts).__name__}."
        )


def _to_request(index: int, prompt: Prompt, defaults: Mapping[str, Any]) -> GenerationRequest:
    if isinstance(prompt, GenerationRequest):
        return prompt
    if isinstance(prompt, str):
        fields: dict[str, Any] = {"prompt": prompt}
    elif isinstance(prompt, Mapping):
        fields = dict(prompt)
        unknown = set(fields) - _REQUEST_FIELDS
        if unknown:
            raise ConfigurationError(
                f"Prompt #{index} has unknown fields {sorted(unknown)}; "
                f"allowed: {sorted(_REQUEST_FIELDS)}."
            )
    else:
        raise ConfigurationError(
            f"Prompt #{index} is a {type(prompt).__name__}; use a string, a mapping with "
            "'prompt' (and optionally 'id'), or a GenerationRequest."
        )
    text = fields.get("prompt")
    if text is None or (isinstance(text, str) and not text.strip()):
        raise ConfigurationError(f"Prompt #{index} is empty; every request needs prompt text.")
    if not isinstance(text, str):
        raise ConfigurationError(
            f"Prompt #{index}'s prompt is a {type(text).__name__}, not text; pass a string."
        )
    merged = {k: v for k, v in defaults.items() if v is not None}
    merged.update({k: v for k, v in fields.items() if v is not None})
    merged["id"] = _request_id(index, fields)
    if fields.get("schema") is not None:
        json_schema_of(fields["schema"])
    try:
        return GenerationRequest(**merged)  # its own checks name the request by its id
    except ConfigurationError as exc:  # ... and the position names it in a generator or file
        raise ConfigurationError(f"Prompt #{index}: {exc}") from None


def _request_id(index: int, fields: Mapping[str, Any]) -> str:
    """A prompt's id as a string: its own (a string or an integer) or its position."""
    if "id" not in fields:
        return str(index)
    given = fields["id"]
    if isinstance(given, str) and given.strip():
        return given
    if isinstance(given, numbers.Integral) and not isinstance(given, bool):
        return str(int(given))
    raise ConfigurationError(
        f"Prompt #{index} has the id {given!r} ({type(given).__name__}); an id must be a "
        "non-empty string or an integer. Leave it out to use the prompt's position."
    )


def check_requests(requests: Iterable[GenerationRequest]) -> None:
    """Check a list of requests before a batch: at least one, all requests, ids unique.

    Settings were checked when each request was made; what only a whole list shows (duplicate
    ids, an empty list), the schema and safety settings (which need pydantic and the SDK) are
    checked here, once per distinct value.
    """
    seen: set[str] = set()
    for position, request in enumerate(requests):
        _check_one(position, request)
        if request.id in seen:
            raise ConfigurationError(
                f"Two requests share the id {request.id!r}; ids key the results, make them unique."
            )
        seen.add(request.id)
    if not seen:
        raise ConfigurationError(
            "There are no requests: pass at least one prompt (the list is empty)."
        )


def _check_one(position: int, request: object) -> GenerationRequest:
    if not isinstance(request, GenerationRequest):
        raise ConfigurationError(
            f"Request #{position} is a {type(request).__name__}, not a GenerationRequest; "
            "make requests with create_batch_requests(prompts, ...)."
        )
    if request.schema is not None:
        _checked_schema(request.schema)
    if request.safety_settings:
        _check_safety(request.safety_settings)
    return request


def _checked_schema(schema: Any) -> None:
    """Check a request's schema, once per distinct schema (a big batch shares a few)."""
    try:
        key = schema if isinstance(schema, type) else json.dumps(schema, sort_keys=True)
    except (TypeError, ValueError):
        key = None
    if key is not None and key in _SCHEMAS_SEEN:
        return
    json_schema_of(schema)
    if key is not None and len(_SCHEMAS_SEEN) < 256:
        _SCHEMAS_SEEN.add(key)


_SCHEMAS_SEEN: set[Any] = set()


def _check_safety(settings: Iterable[Mapping[str, str]]) -> None:
    for setting in settings:
        for name, enum in (
            ("category", types.HarmCategory),
            ("threshold", types.HarmBlockThreshold),
        ):
            value = setting[name]
            if value not in enum.__members__:
                known = ", ".join(m for m in enum.__members__ if not m.endswith("UNSPECIFIED"))
                raise ConfigurationError(f"Unknown safety {name} {value!r}; use one of: {known}.")


class _CheckedLazily:
    """A generator's requests, each checked as the engine takes it (duplicates are not:
    remembering every id would defeat the bounded memory a generator is for).

    A request that is refused (by its check, or by the generator failing to make it) ends the
    requests there, so the batch lets those it took run to their end instead of cutting off
    calls already paid for; `refused()` is then the error, raised once they have (as
    `RequestRefused`, wiring.PreparedBatch.stream).
    """

    def __init__(self, requests: Iterable[GenerationRequest]) -> None:
        self._requests = requests
        self._refusal: ConfigurationError | None = None

    def __iter__(self) -> Iterator[GenerationRequest]:
        try:
            for position, request in enumerate(self._requests):
                yield _check_one(position, request)
        except ConfigurationError as exc:
            self._refusal = exc

    def refused(self) -> ConfigurationError | None:
        return self._refusal


def _checked(prompts: Iterable[Prompt]) -> Iterable[GenerationRequest]:
    """The requests a batch was given, checked before anything is sent (lists in full).

    Prompts that are not requests yet (strings, mappings) are made into requests as
    `create_batch_requests(prompts)` makes them, with its checks; a generator stays lazy.
    """
    _check_prompts_argument(prompts)
    built = _made_requests(prompts, {})
    if isinstance(prompts, Sequence):
        requests = list(built)
        check_requests(requests)
        return requests
    return _CheckedLazily(built)


def _checked_list(requests: Iterable[Prompt]) -> list[GenerationRequest]:
    """Every request, checked, in a list (a generator read whole), before anything is sent."""
    source = _checked(requests)
    checked = list(source)
    refusal = source.refused() if isinstance(source, _CheckedLazily) else None
    if refusal is not None:
        raise refusal
    check_requests(checked)
    return checked


def _check_against_ladder(requests: Iterable[GenerationRequest], options: BatchOptions) -> None:
    """What only the batch's models show, said up front, since the request could only fail: a
    request pinned to a model the batch does not run, or asking more output tokens than a model
    it may go to can give (its known `output_token_limit`). A list only: a generator's requests
    are not read ahead."""
    if not isinstance(requests, Sequence):
        return
    if not any(r.model is not None or r.max_output_tokens is not None for r in requests):
        return
    ladder = options.ladder()
    by_name = {spec.name: spec for spec in ladder}
    for request in requests:
        models = ladder
        if request.model is not None:
            pinned = by_name.get(request.model.removeprefix("models/"))
            if pinned is None:
                raise ConfigurationError(
                    f"A request is pinned to model {request.model!r}, which is not in this "
                    f"batch's ladder ({', '.join(by_name)}); add it to models=[...] or leave the "
                    "request's model unset."
                )
            models = [pinned]
        cap = request.max_output_tokens
        refused = None if cap is None else output_cap_words(cap, models, "max_output_tokens")
        if refused is not None:
            raise ConfigurationError(f"Request {request.id!r}: {refused}")


def _prepare(requests: Iterable[Prompt], options: dict[str, Any]) -> PreparedBatch:
    """Check the requests and options, then wire the batch; nothing is sent or written before."""
    checked = _checked(requests)
    batch_options = BatchOptions.from_options(options)
    _check_against_ladder(checked, batch_options)
    refused = checked.refused if isinstance(checked, _CheckedLazily) else None
    return batch_options.prepare(checked, refused=refused)


async def aiter_generate(requests: Iterable[Prompt], **options: Any) -> AsyncIterator[Result]:
    """Yield results as they finish (not in input order), on the running loop; bounded memory.

    With `mode="batch_api"` (or an `auto` that chooses it) the results come when the jobs end.
    """
    if _mode(options) != "live":
        for result in await asyncio.to_thread(batch_generate, requests, **options):
            yield result
        return
    batch = _prepare(requests, options)
    with batch.progress_shown():
        async for result in batch.stream():
            yield result


async def abatch_generate(
    requests: Iterable[Prompt],
    on_progress: Callable[[int, int | None], None] | None = None,
    max_concurrency: int | str | None = None,
    **options: Any,
) -> ResultList:
    """Run a batch on the running event loop (top-level `await` in Jupyter); input order.

    Cancelling through `cancel=CancelToken()` (e.g. a Cancel button) returns the results with
    the unfinished requests marked not run; cancelling the awaiting task (an interrupt) raises
    `BatchInterrupted` carrying the same complete list.
    """
    if _mode(options) != "live":  # polling is waiting: a worker thread keeps the loop free
        return await asyncio.to_thread(
            batch_generate, requests, on_progress, max_concurrency, **options
        )
    batch = _prepare(
        requests, dict(options, on_progress=on_progress, max_concurrency=max_concurrency)
    )
    collected: list[Result] = []
    with batch.progress_shown():
        try:
            async for result in batch.stream():
                collected.append(result)
        except asyncio.CancelledError:
            collected.extend(batch.engine.unreported())
            raise BatchInterrupted(_in_order(collected)) from None
        except StoreError as exc:
            raise CallLogFailed(_in_order(collected), exc, batch.unlogged()) from exc
        except RequestRefused as exc:
            raise RequestRefused(exc.refusal, exc.taken, _in_order(collected)) from None
    return _in_order(collected)


def _in_order(results: Iterable[Result]) -> ResultList:
    return ResultList(sorted(results, key=lambda r: r.index))


def batch_generate(
    requests: Iterable[Prompt],
    on_progress: Callable[[int, int | None], None] | None = None,
    max_concurrency: int | str | None = None,
    **options: Any,
) -> ResultList:
    """Run a batch; every request's result in input order (seed: batchGenerateWithGemini).

    `requests` are GenerationRequests or plain prompts, mixed as you like: strings (their id is
    their position) and `{id, prompt, ...}` mappings, made into requests with the checks of
    `create_batch_requests(prompts)` (use it for settings shared by every request). A list is
    checked whole before anything is sent; a generator is pulled as the batch goes. So are
    the requests of `abatch_generate`, `iter_generate`, `aiter_generate`, `batch_plan` and
    `submit_batch_job`.

    Works in plain Python and inside a running event loop (a Jupyter cell). Keyword options:
    `models` (ladder: names, ModelSpecs or "a,b"), `base_url`, `api_key`, `budget_usd`,
    `timeout_s`, `max_attempts`, `overload_patience_s` (600: how long 429s without details on
    every model are waited out), `routing` ("preference" | "failover"), `chunk_size`,
    `catalogue`, `listeners`, `cancel` (a CancelToken), `backend` (tests), `progress` ("auto":
    a panel in Jupyter, a text bar on a terminal; "widget", "text"; None, the default: none),
    `log_wait_s` (300: while another process holds the call log's file, how long the batch
    waits for it before it starts and at its end; meanwhile it waits for as long as it runs,
    saying so after a few seconds). Ctrl-C raises `BatchInterrupted` whose `.results` has every
    request, unfinished ones marked not run; a log still held after `log_wait_s` raises
    `CallLogFailed`, which carries them too.

    `mode="batch_api"` hands the batch to Google's Batch API (half price, results within its
    turnaround; polled until done); `mode="auto"` chooses live calls, the Batch API or a split
    by `deadline=` and shows the plan first (README, "Gemini Batch API"). `batch_api=
    BatchApiSettings(...)` tunes the jobs.
    """
    options = dict(options, on_progress=on_progress, max_concurrency=max_concurrency)
    if _mode(options) != "live":
        return _run_by_plan(requests, options)
    run = ThreadedBatch(requests, options)
    collected: list[Result] = []
    try:
        collected.extend(run)
    except KeyboardInterrupt:
        collected.extend(run.leftover)
        if isinstance(run.failure, StoreError):  # stopped while the log could not be written
            raise CallLogFailed(_in_order(collected), run.failure, run.unlogged()) from None
        raise BatchInterrupted(_in_order(collected)) from None
    except StoreError as exc:
        raise CallLogFailed(_in_order(collected), exc, run.unlogged()) from exc
    except RequestRefused as exc:
        raise RequestRefused(exc.refusal, exc.taken, _in_order(collected)) from None
    return _in_order(collected)


def iter_generate(requests: Iterable[Prompt], **options: Any) -> Iterator[Result]:
    """Yield results as they finish, from synchronous code, with bounded memory.

    Closing the iterator early or Ctrl-C cancels the batch and waits for it to stop. With
    `mode="batch_api"` the results come when the jobs end.
    """
    if _mode(options) != "live":
        return iter(batch_generate(requests, **options))
    return iter(ThreadedBatch(requests, options))


# --- the Batch API ---------------------------------------------------------------------------


def _mode(options: Mapping[str, Any]) -> str:
    mode = options.get("mode", "live")
    return "live" if mode is None else str(mode) if isinstance(mode, str) else repr(mode)


@dataclass
class PlannedBatch:
    """A batch planned for the Batch API or `auto`: the checked requests, the plan, and what
    running it does (`run`). `batch_generate` shows the plan and runs it; the terminal shows
    it its own way first (`cli/run.py`)."""

    requests: list[GenerationRequest]
    options: BatchOptions
    plan: BatchPlan
    log: Database | None
    given: dict[str, Any]  # the keyword options, for the live part
    cached: dict[str, Result] | None  # what planning found in the cache (None: it did not look)

    def run(
        self, on_submitted: Callable[[batch_run.BatchJobHandle], None] | None = None
    ) -> ResultList:
        """Send as planned: live, by the Batch API (waiting for it), or both; input order.

        `on_submitted` hears of the Batch API jobs as soon as they are created (its batch id
        is how `resume_batch_job` finds them again). A budget is kept by each part within its
        share (`BatchPlan.live_budget_usd`, `batch_budget_usd`), so together they never cross it.
        """
        live_options = dict(
            self.given,
            mode="live",
            deadline=None,
            batch_api=None,
            budget_usd=self.plan.live_budget_usd,
        )
        if self.plan.choice == "live":
            return batch_generate(self.requests, **live_options)
        log = self.log or batch_run.open_log_for_batch_api(self.options)
        first = self.plan.live_count
        handle = batch_run.submit_batch(
            self.requests[first:],
            self.options,
            plan=self.plan,
            first_index=first,
            db=log,
            cached=self.cached,
            budget_usd=self.plan.batch_budget_usd,
        )
        try:
            try:
                if on_submitted is not None:
                    on_submitted(handle)
            except KeyboardInterrupt:  # the jobs exist: said as an interrupted wait
                raise handle.interrupted() from None
            if first:  # the urgent part, live, while the service works on the rest
                handle.live_results = list(batch_generate(self.requests[:first], **live_options))
            return handle.wait()
        finally:
            handle.close()


def planned_batch(
    requests: Iterable[Prompt], *, create_log: bool = True, **options: Any
) -> PlannedBatch:
    """Check the requests (a list: jobs are built from all of them) and options, and plan.

    `create_log=False` (a dry run) reads the call log's measured turnaround only when the log
    exists, so planning never leaves a file behind.
    """
    checked = _checked_list(requests)
    batch_options = BatchOptions.from_options(options)
    _check_against_ladder(checked, batch_options)
    settings = batch_options.batch_api or BatchApiSettings()
    log = batch_options.open_log(create=create_log)
    endpoint = batch_options.endpoint()
    # A Batch API run leaves out what the call log answered; `auto` decides its split over the
    # whole list (its live part keys the cache over the ladder), so its plan prices them all.
    cached = (
        batch_run.answered_by_cache(log, checked, batch_options)
        if log is not None and batch_options.mode == "batch_api"
        else None
    )
    plan = plan_batch(
        [r for r in checked if r.id not in (cached or {})],
        batch_options.ladder(),
        batch_run.batch_model(batch_options),
        mode=batch_options.mode,  # type: ignore[arg-type]
        turnaround=batch_run.expected_turnaround(log, endpoint, settings),
        deadline_s=batch_options.deadline_s,
        cached=len(cached or {}),
        budget_usd=batch_options.budget_usd,
        jobs_out=batch_run.jobs_out(log, endpoint),
    )
    return PlannedBatch(checked, batch_options, plan, log, options, cached)


def batch_plan(requests: Iterable[Prompt], **options: Any) -> BatchPlan:
    """What `batch_generate(requests, **options)` would do, and the expected cost and time of
    each option (live calls, the Batch API, a split); nothing is sent. `mode` defaults to
    "auto" here."""
    options.setdefault("mode", "auto")
    return planned_batch(requests, **options).plan


def _run_by_plan(requests: Iterable[Prompt], options: dict[str, Any]) -> ResultList:
    planned = planned_batch(requests, **options)
    batch_run.show_plan(planned.plan, planned.options.progress)
    return planned.run()


def submit_batch_job(requests: Iterable[Prompt], **options: Any) -> batch_run.BatchJobHandle:
    """Submit a batch to the Batch API and return at once with its handle (nothing waits).

    The jobs are in the call log: close the kernel if you like, and later
    `resume_batch_job(handle.batch_id)` (or `handle.wait()`) collects the results once.
    """
    planned = planned_batch(requests, **dict(options, mode="batch_api"))
    batch_run.show_plan(planned.plan, planned.options.progress)
    log = planned.log or batch_run.open_log_for_batch_api(planned.options)
    return batch_run.submit_batch(
        planned.requests,
        planned.options,
        plan=planned.plan,
        db=log,
        cached=planned.cached,
        budget_usd=planned.plan.batch_budget_usd,
    )


def resume_batch_job(
    job_or_batch_id: str,
    *,
    db: Any = None,
    api_key: str | None = None,
    base_url: str | None = None,
    api_version: str | None = None,
    batch_api: BatchApiSettings | None = None,
    on_progress: Callable[[int, int | None], None] | None = None,
    on_wait: Callable[[batch_run.WaitStatus], None] | None = None,
) -> ResultList:
    """Collect a Batch API batch from the log, in any process: every request's result, in order.

    Takes a batch id, a job name (`batches/...`) or a job key. Jobs an interrupted submission
    left are adopted (found by display name) or created, never twice; running jobs are polled;
    ended ones are ingested once (a second resume reads them from the log). The endpoint is the
    one the batch was sent to unless `base_url` says otherwise; when nothing answers there,
    `EndpointGoneError` says so at once. `on_wait` hears the jobs' states as they are polled
    (`WaitStatus`: its text is a progress line).
    """
    where = BatchOptions(
        db=db, api_key=api_key, base_url=base_url, api_version=api_version, on_progress=on_progress
    )
    with _handle(job_or_batch_id, where, batch_api) as handle:
        handle.on_wait = on_wait
        return handle.wait()


def cancel_batch_job(
    job_or_batch_id: str,
    *,
    db: Any = None,
    api_key: str | None = None,
    base_url: str | None = None,
    api_version: str | None = None,
) -> list[str]:
    """Cancel a batch's jobs at the service (interrupting a wait never does); returns their
    names. What each job then is goes in the log: the ended ones are collected at once (their
    requests not run, offered to a retry), one still cancelling by a later `resume_batch_job`;
    a job not created yet never will be."""
    where = BatchOptions(db=db, api_key=api_key, base_url=base_url, api_version=api_version)
    with _handle(job_or_batch_id, where) as handle:
        return handle.cancel()


@contextmanager
def _handle(
    job_or_batch_id: str, options: BatchOptions, settings: BatchApiSettings | None = None
) -> Iterator[batch_run.BatchJobHandle]:
    """A logged batch's handle (resume, cancel), its service closed afterwards."""
    handle = batch_run.handle_for(job_or_batch_id, options, settings=settings)
    try:
        yield handle
    finally:
        handle.close()


def list_batch_jobs(db: Any = None) -> Any:
    """Every Batch API job in the call log, newest first, as a DataFrame. A path is opened
    read-only: listing never writes, so a log on a read-only place can be listed."""
    from .store import open_database

    log = db if isinstance(db, Database) else open_database(db, read_only=True)
    return batch_run.jobs_frame(log)


class ThreadedBatch:
    """A batch on its own event loop in a worker thread, its results handed to the caller.

    One path for scripts and notebooks alike: inside Jupyter the cell's loop is already running,
    so the batch cannot run on it synchronously, and a worker thread behaves the same in both
    places (Ctrl-C lands in the caller's thread, which cancels the batch and joins the worker).
    The hand-off queue is bounded, so a slow consumer slows admission instead of growing memory.
    """

    def __init__(self, requests: Iterable[Prompt], options: dict[str, Any]) -> None:
        self._cancel: CancelToken = options.setdefault("cancel", None) or CancelToken()
        options["cancel"] = self._cancel
        # Built in the caller's thread, so configuration errors surface there, before any call.
        self._batch = _prepare(requests, options)
        self._handoff: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=1024)
        self.leftover: list[Result] = []  # results that arrived while stopping early
        self.failure: BaseException | None = None  # what the batch raised while stopping early

    def unlogged(self) -> list[str]:
        """The answered requests whose results the call log could not take (see
        `PreparedBatch.unlogged`)."""
        return self._batch.unlogged()

    def _work(self) -> None:
        async def produce() -> None:
            async for result in self._batch.stream():
                try:
                    self._handoff.put_nowait(("result", result))
                except queue.Full:  # the consumer is behind: wait without blocking the loop
                    await asyncio.to_thread(self._handoff.put, ("result", result))

        try:
            asyncio.run(produce())
        except BaseException as exc:
            self._handoff.put(("error", exc))
        else:
            self._handoff.put(("end", None))

    def __iter__(self) -> Iterator[Result]:
        # The panel is shown and summarised by this (the caller's) thread, never the worker.
        with self._batch.progress_shown():
            thread = threading.Thread(target=self._work, name="scriptgen-batch", daemon=True)
            thread.start()
            try:
                while True:
                    kind, value = _get(self._handoff)
                    if kind == "result":
                        yield value
                    elif kind == "error":
                        raise value
                    else:
                        return
            finally:
                if thread.is_alive():
                    self._cancel.cancel()
                    self._drain_until_done(thread)
                thread.join()

    def _drain_until_done(self, thread: threading.Thread) -> None:
        while thread.is_alive() or not self._handoff.empty():
            try:
                kind, value = self._handoff.get(timeout=0.05)
            except queue.Empty:
                continue
            if kind == "result":
                self.leftover.append(value)
            elif kind == "error":
                self.failure = value


def _get(handoff: queue.Queue[tuple[str, Any]]) -> tuple[str, Any]:
    # A timeout keeps the wait interruptible by Ctrl-C on every platform.
    while True:
        try:
            return handoff.get(timeout=0.2)
        except queue.Empty:
            continue
