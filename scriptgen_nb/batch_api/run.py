"""Running a batch through Google's Batch API: plan, record, submit, wait, ingest; resume.

`submit_batch` records the batch and its jobs' intents in the call log, then creates the jobs
(`jobs.submit`) and returns a `BatchJobHandle`. `BatchJobHandle.wait()` polls until every job
has ended and ingests each once (`ingest.py`, `store/batch_jobs.ingest`), returning the results
in input order. `resume_batch_job(id)` rebuilds a handle from the log alone (a job key, a job
name `batches/...` or a batch id), in any process: it adopts or creates what an interrupted
submission left, and waits. An interrupt while waiting raises `BatchInterrupted` and leaves the
jobs running at the service; `cancel()` is the only thing that stops them. The batch's
`batch_log.mode` is `batch_api`, its status `submitted` while its jobs are out.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..endpoints import session_api_key
from ..engine.backend import GOOGLE_ENDPOINT
from ..engine.errors import (
    BackendError,
    BatchApiWaitFailed,
    BatchInterrupted,
    ConfigurationError,
    EndpointGoneError,
    MissingApiKeyError,
)
from ..engine.models import ModelSpec, ladder_notices
from ..engine.pricing import format_usd
from ..engine.runner import reserved_usage
from ..engine.values import Failure, GenerationRequest, Result, Usage
from ..engine.verdict import parse_structured
from ..results import ResultList
from ..store import Database, batch_jobs, keys, recorder
from ..store.batch_jobs import JobRow
from ..store.session import cached_result, earlier_answers
from . import ingest, jobs
from .jobs import BatchApiSettings, JobService, Submission
from .plan import GOOGLE_TURNAROUND_S, JOB_LIFETIME_H, BatchPlan, Turnaround, affordable

if TYPE_CHECKING:
    import pandas as pd

    from ..wiring import BatchOptions


def expected_turnaround(
    db: Database | None, endpoint: str, settings: BatchApiSettings
) -> Turnaround:
    """The Batch API time the plan uses: given, else measured at this endpoint, else Google's
    documented 24 h target (an emulator's jobs are measured as soon as one has run)."""
    if settings.turnaround_s is not None:
        return Turnaround(settings.turnaround_s, "given (BatchApiSettings.turnaround_s)")
    measured = batch_jobs.median_turnaround_s(db, endpoint) if db is not None else None
    if measured is not None:
        seconds, count = measured
        jobs_word = "job" if count == 1 else "jobs"
        return Turnaround(seconds, f"median of {count} measured {jobs_word} at this endpoint")
    return Turnaround(
        GOOGLE_TURNAROUND_S,
        "Google's documented target of 24 h (no job measured at this endpoint yet)",
    )


def jobs_out(db: Database | None, endpoint: str) -> int:
    """Jobs this log created at `endpoint` that had not ended when last seen (none expired):
    the queue a new batch's jobs join, which the plan mentions."""
    return batch_jobs.jobs_out(db, endpoint, JOB_LIFETIME_H * 3600) if db is not None else 0


def show_plan(plan: BatchPlan, progress: str | None) -> None:
    """Show the plan before anything is sent: HTML in Jupyter, text on stderr elsewhere."""
    if progress is None:
        return
    shell = sys.modules.get("IPython")
    if shell is not None and progress != "text":
        from IPython import get_ipython
        from IPython.display import display

        if get_ipython() is not None:
            display(plan)
            return
    print(plan, file=sys.stderr)


# The order a job's state moves in, for a progress line's counts.
STATE_ORDER = ("waiting to be created", "pending", "running", "succeeded", "failed", "cancelled")


def job_state(job: JobRow) -> str:
    """A job's state in the user's words: `pending`, `running`, `succeeded`, ... and `waiting
    to be created` for one the service has not created yet (an intent, or a create it refused
    for now)."""
    if job.job_name is None and not job.terminal:
        return "waiting to be created"
    return _short(job.state)


@dataclass(frozen=True, slots=True)
class WaitStatus:
    """Where a batch's Batch API jobs stand while `BatchJobHandle.wait()` polls them: what a
    progress line says (`str`), so a wait that takes hours shows more than a clock."""

    batch_id: str
    states: tuple[tuple[str, int], ...]  # (job_state words, how many jobs), in STATE_ORDER
    done: int  # requests whose job has ended
    total: int  # requests in the batch's jobs
    failed_polls: int = 0  # polls failing in a row (5xx, timeouts), waited out
    refused: int = 0  # jobs whose create the service refused for now (429), to be tried again

    @classmethod
    def of(
        cls, batch_id: str, jobs: Sequence[JobRow], failed_polls: int = 0, refused: int = 0
    ) -> WaitStatus:
        counts: dict[str, int] = {}
        for job in jobs:
            counts[job_state(job)] = counts.get(job_state(job), 0) + 1
        rank = {words: i for i, words in enumerate(STATE_ORDER)}
        states = tuple(sorted(counts.items(), key=lambda item: rank.get(item[0], len(rank))))
        done = sum(j.request_count for j in jobs if j.terminal)
        total = sum(j.request_count for j in jobs)
        return cls(batch_id, states, done, total, failed_polls, refused)

    def __str__(self) -> str:
        jobs = sum(count for _, count in self.states)
        counts = ", ".join(f"{count} {words}" for words, count in self.states)
        line = (
            f"batch {self.batch_id}: {jobs} Batch API job{'' if jobs == 1 else 's'} ({counts}), "
            f"{self.done} of {self.total} requests done"
        )
        if self.failed_polls:
            polls = "poll" if self.failed_polls == 1 else "polls"
            line += f"; {self.failed_polls} {polls} failed, retrying"
        if self.refused:
            line += (
                f"; the service refused to create {self.refused} for now (429: its queue is "
                "full), tried again as jobs end"
            )
        return line


@dataclass
class BatchJobHandle:
    """A batch at the Batch API: its jobs in the log, and how to wait for, or cancel, them."""

    db: Database
    service: JobService
    batch_id: str
    settings: BatchApiSettings = field(default_factory=BatchApiSettings)
    store_text: bool = True
    plan: BatchPlan | None = None
    on_progress: Callable[[int, int | None], None] | None = None
    live_results: list[Result] = field(default_factory=list)  # a split's live part
    simulated: bool = False  # the jobs run at an emulator: every result says so
    on_wait: Callable[[WaitStatus], None] | None = None  # hears the jobs' states as polled
    _requests: dict[str, GenerationRequest] | None = field(default=None, repr=False)
    _results: dict[str, Result] = field(default_factory=dict, repr=False)
    _deferred: dict[str, jobs.Deferral] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        states = ", ".join(f"{j.job_name or j.display_name}: {job_state(j)}" for j in self.jobs)
        return f"BatchJobHandle(batch_id={self.batch_id!r}, jobs=[{states}])"

    @property
    def waiting(self) -> dict[str, str]:
        """Jobs the service refused to create for now (429), by display name: why. They are
        created as it lets them, while `wait()` polls the others."""
        return {
            j.display_name: self._deferred[j.job_key].reason
            for j in self.jobs
            if j.job_key in self._deferred
        }

    @property
    def jobs(self) -> list[JobRow]:
        return batch_jobs.jobs(self.db, batch_id=self.batch_id)

    def submit(self, *, fresh: bool = False) -> Submission:
        """Create (or adopt) every job of the batch that has no job at the service yet.

        `fresh`: the intents were written by this process just now, so none can exist yet.
        """
        open_ = [j for j in self.jobs if j.job_name is None and not j.terminal]
        return self._submit(open_, look_first=not fresh)

    def _submit(self, open_: list[JobRow], *, look_first: bool = True) -> Submission:
        return jobs.submit(
            self.service,
            self.db,
            open_,
            self._requests,
            look_first=look_first,
            deferred=self._deferred,
            settings=self.settings,
        )

    def _create_when_due(self, job: JobRow) -> JobRow:
        """Try again to create a job the service refused for now, once its wait is over; the
        job as it then is (read back from the log only when something changed)."""
        if job.job_key in self._submit([job]).waiting:
            return job  # not due yet, or refused for now again: nothing was written
        [now] = batch_jobs.jobs(self.db, job=job.job_key)
        return now

    def wait(self, *, sleep: Callable[[float], None] = time.sleep) -> ResultList:
        """Poll until every job has ended, ingest each once, return all results in order.

        Ctrl-C (a kernel interrupt) raises `BatchInterrupted` with what is in so far; the
        jobs keep running at the service, and `resume_batch_job(batch_id)` picks them up.
        `on_wait` hears the jobs' states before the first poll and after each round. When
        nothing answers at the endpoint any more, `EndpointGoneError` says so at once.
        """
        logged = self._logged()
        try:
            self.submit()
            total = len(logged) + len(self.live_results)
            pending = [j for j in self.jobs if not j.ingested]
            self._tell(pending, 0)
            for job, seen in jobs.poll(
                self.service,
                self.db,
                pending,
                self.settings,
                sleep=sleep,
                create=self._create_when_due,
                on_round=self._tell,
            ):
                self._ingest(job, seen, logged, sleep)
                self._room_freed()
                if self.on_progress is not None:
                    self.on_progress(len(self._results) + len(self.live_results), total)
        except KeyboardInterrupt:
            raise self.interrupted(logged) from None
        except jobs.PollGaveUp as gave_up:
            raise BatchApiWaitFailed(
                self._collect(logged),
                f"Stopped waiting: {gave_up}. The Batch API jobs of batch {self.batch_id} are "
                f"left as they are: resume_batch_job({self.batch_id!r}) (`scriptgen jobs resume "
                f"{self.batch_id}`) tries again later",
            ) from None
        except EndpointGoneError as gone:
            raise self._gone(gone.base_url, logged) from None
        return self._collect(logged)

    def cancel(self) -> list[str]:
        """Cancel the batch's jobs at the service (a job not created yet never will be), and
        record what each then is: the ended ones are collected at once, their requests not run
        (for `retry`); one still cancelling is collected by a later resume. Returns the names
        of the jobs cancelled at the service."""
        logged = self._logged()
        try:
            names = jobs.cancel(self.service, self.db, self.jobs)
            self._settle(logged)
        except EndpointGoneError as gone:
            raise self._gone(gone.base_url, logged) from None
        return names

    def interrupted(
        self, logged: Mapping[str, ingest.LoggedRequest] | None = None
    ) -> BatchInterrupted:
        """What an interrupt once the jobs exist raises: every result so far, the rest not
        run, and that the jobs keep running at the service."""
        return BatchInterrupted(
            self._collect(self._logged() if logged is None else logged),
            f"Stopped waiting; the Batch API jobs of batch {self.batch_id} keep running "
            f"at the service: resume_batch_job({self.batch_id!r}) collects them later, "
            "cancel_batch_job cancels them",
        )

    def _logged(self) -> dict[str, ingest.LoggedRequest]:
        return {
            row[0]: ingest.LoggedRequest(*row)
            for row in batch_jobs.logged_requests(self.db, self.batch_id)
        }

    def _tell(self, now: Sequence[JobRow], failed_polls: int) -> None:
        """Tell `on_wait` where the batch's jobs stand (`now`: those polled, as last seen)."""
        if self.on_wait is None:
            return
        polled = {j.job_key: j for j in now}
        every = [polled.get(j.job_key, j) for j in self.jobs]
        refused = sum(1 for j in every if j.job_key in self._deferred and j.job_name is None)
        self.on_wait(WaitStatus.of(self.batch_id, every, failed_polls, refused))

    def _room_freed(self) -> None:
        """A job ended, so the service's queue has room again: a create it refused for now is
        tried at the next round, its backoff started afresh rather than after the long delay
        that refusals in a row had reached."""
        now = time.monotonic()
        for key, deferral in self._deferred.items():
            self._deferred[key] = jobs.Deferral(now, 0, deferral.reason)

    def _settle(self, logged: Mapping[str, ingest.LoggedRequest]) -> None:
        """Look once at every job not collected yet and collect those that have ended (one
        never created has no answers to fetch); one the service fails to report now is left
        for a later resume."""
        for job in self.jobs:
            if job.ingested:
                continue
            seen = None
            if job.job_name is not None:
                try:
                    job, seen = jobs.observe(self.service, self.db, job)
                except BackendError as exc:
                    if exc.kind in jobs.TRANSIENT:
                        continue
                    raise
            if job.terminal:
                self._ingest(job, seen, logged, time.sleep)

    def _gone(self, url: str, logged: Mapping[str, ingest.LoggedRequest]) -> EndpointGoneError:
        """Nothing answers at `url`. When it is the emulator the batch ran on, its jobs and
        their answers went with it: each job not collected yet is recorded so (cancelled, if it
        had not ended) and collected, its requests failing or not run (for `retry`). Any other
        endpoint may come back, so the jobs are left as they are for a later resume."""
        lost = self.simulated and all(j.endpoint.rstrip("/") == url.rstrip("/") for j in self.jobs)
        if lost:
            why = f"the emulator at {url} stopped, and its jobs with it"
            for job in self.jobs:
                if not job.ingested:
                    state = job.state if job.terminal else "JOB_STATE_CANCELLED"
                    batch_jobs.mark_state(self.db, job.job_key, state, error=why)
            for job in self.jobs:
                if not job.ingested:
                    self._ingest(job, None, logged, time.sleep)
        return EndpointGoneError(url, self.batch_id, lost=lost)

    def _ingest(
        self,
        job: JobRow,
        seen: Any,
        logged: Mapping[str, ingest.LoggedRequest],
        sleep: Callable[[float], None],
    ) -> None:
        answers: list[ingest.Answer] | None = None
        if seen is not None and seen.dest is not None:
            if seen.dest.file_name:
                answers, lost = self._file_answers(job, seen.dest.file_name, sleep)
                if lost is not None:
                    job = replace(job, error=lost)
            elif seen.dest.inlined_responses is not None:
                answers = ingest.inline_answers(seen)
        spec = ModelSpec(**json.loads(job.model_spec))
        made, matched_by = ingest.outcomes(
            job,
            logged,
            answers,
            spec,
            store_text=self.store_text,
            package_version=__version__,
            sdk_version=version("google-genai"),
            by_position=self.settings.match_by_position,
        )
        results: list[Result] = []

        def rows() -> Iterator[tuple[dict[str, Any] | None, dict[str, Any]]]:
            for outcome in made:  # made as written, a slice at a time
                results.append(outcome.result)
                yield outcome.call, outcome.row

        if batch_jobs.ingest(self.db, job.job_key, rows(), matched_by):
            self._results.update((r.id, r) for r in results)

    def _file_answers(
        self, job: JobRow, name: str, sleep: Callable[[float], None]
    ) -> tuple[list[ingest.Answer] | None, str | None]:
        """A file job's answers from its results file; when the file is lost, no answers and
        why.

        A permanent refusal (the file expired or is gone: 404, 403) is recorded as the job's
        error, and its requests then fail saying so: the job counts as collected, so a resume
        does not try the file forever. A transient failure is tried again within the poll's
        bounds, past which the wait ends resumably (`PollGaveUp`).
        """
        streak = jobs.FailureStreak(time.monotonic())
        while True:
            try:
                return ingest.file_answers(self.service.download(name)), None
            except BackendError as exc:
                if exc.kind not in jobs.TRANSIENT:
                    lost = f"{exc.http_status or exc.kind}: {exc.message[:200]}"
                    reason = f"its results file {name} could not be downloaded ({lost})"
                    batch_jobs.mark_state(self.db, job.job_key, job.state, error=reason)
                    return None, reason
                streak.add(exc)
                now = time.monotonic()
                if streak.past(self.settings, now):
                    raise jobs.PollGaveUp(f"to hand over {name}", streak, now) from None
                sleep(self.settings.poll_initial_s)

    def _collect(self, logged: Mapping[str, ingest.LoggedRequest]) -> ResultList:
        """Every request's result: this process's, else the log's, else (partial) not run.
        The log is read only when this process lacks some (a resume, results cached)."""
        lacking = any(request_id not in self._results for request_id in logged)
        rows = batch_jobs.logged_results(self.db, self.batch_id) if lacking else []
        stored = {row[0]: row for row in rows}
        results = list(self.live_results)
        for request_id, request in logged.items():
            if request_id in self._results:
                results.append(self._results[request_id])
            elif request_id in stored:
                results.append(_from_log(stored[request_id], request))
            else:
                failure = Failure("not_run", "its Batch API job had not ended")
                results.append(
                    Result(
                        request_id, request.index, False, error=failure, metadata=request.metadata
                    )
                )
        in_order = sorted(results, key=lambda r: r.index)
        return ResultList(replace(r, simulated=self.simulated) for r in in_order)

    def close(self) -> None:
        self.service.close()


def _short(state: str) -> str:
    return state.removeprefix("JOB_STATE_").lower()


def _from_log(row: tuple[Any, ...], request: ingest.LoggedRequest) -> Result:
    (
        request_id,
        index,
        success,
        cached,
        text,
        kind,
        message,
        finish,
        model,
        model_version,
        attempts,
        tokens_in,
        tokens_out,
        thoughts,
        cached_tokens,
        cost,
        latency,
        queue,
    ) = row
    data = None
    if success and text is not None and request.schema is not None:
        try:
            data = parse_structured(text, request.schema)
        except ValueError:
            data = None
    return Result(
        id=request_id,
        index=index,
        success=bool(success),
        text=text,
        data=data,
        error=None if kind is None else Failure(kind, message or ""),
        finish_reason=finish,
        model=model,
        attempts=attempts or 0,
        usage=Usage(tokens_in or 0, tokens_out or 0, thoughts or 0, cached_tokens),
        cost_usd=cost,  # NULL: the price is unknown
        latency_ms=latency,
        queue_ms=queue,
        model_version=model_version,
        metadata=request.metadata,
        cached=bool(cached),
    )


def open_log_for_batch_api(options: BatchOptions) -> Database:
    log = options.open_log()
    if log is None:
        raise ConfigurationError(
            "mode='batch_api' needs the call log (db=False was given): a submitted job is "
            "found again, and its results ingested once, through the log. Pass db=PATH."
        )
    return log


def batch_model(options: BatchOptions) -> ModelSpec:
    """The model the Batch API runs (a job runs one model): the ladder's first usable one."""
    ladder = options.ladder()
    return next((spec for spec in ladder if spec.usable), ladder[0])


def submit_batch(
    requests: Sequence[GenerationRequest],
    options: BatchOptions,
    *,
    plan: BatchPlan | None = None,
    first_index: int = 0,
    db: Database | None = None,
    cached: Mapping[str, Result] | None = None,
    budget_usd: float | None = None,
) -> BatchJobHandle:
    """Record the batch and its jobs' intents, then create the jobs; nothing waits here.

    `cached`: what the plan already found in the cache (`answered_by_cache`); None looks here.
    `budget_usd`: what the jobs may reserve (`BatchPlan.batch_budget_usd`); the requests past
    it are not submitted and end not run (`over_budget`).
    """
    settings = options.batch_api or BatchApiSettings()
    log = db or open_log_for_batch_api(options)
    endpoint = options.endpoint()
    simulated = options.simulated()
    service = JobService(
        options.resolved_api_key(),
        base_url=options.resolved_base_url(),
        api_version=options.api_version,
        timeout_s=settings.timeout_s,
    )
    ladder = {spec.name: spec for spec in options.ladder()}
    model = batch_model(options)
    batch_id = uuid.uuid4().hex[:12]
    store_text = options.store_text
    ladder_names = [model.name]
    index_of = {r.id: first_index + i for i, r in enumerate(requests)}
    key_of = batch_cache_keys(requests, options, batch_id)
    if cached is None:
        cached = answered_by_cache(log, requests, options, key_of, first_index)
    rows = [
        recorder.request_row(batch_id, index_of[r.id], r, key_of[r.id], store_text)
        for r in requests
    ]
    finished_at = time.time()
    to_send = [r for r in requests if r.id not in cached]
    left_out = over_budget(to_send, model, budget_usd, index_of)
    to_send = to_send[: len(to_send) - len(left_out)]
    decided_rows = [
        recorder.result_row(batch_id, result, key_of[request_id], store_text, finished_at)
        for request_id, result in {**cached, **left_out}.items()
    ]
    chunks = jobs.chunk_requests(to_send, model.name, settings)
    intents = []
    for chunk_number, chunk in enumerate(chunks):
        spec = ladder.get(chunk.model, model)
        key = jobs.job_key(batch_id, chunk_number)
        intents.append(
            JobRow(
                job_key=key,
                batch_id=batch_id,
                chunk=chunk_number,
                display_name=jobs.display_name(key),
                model=chunk.model,
                endpoint=endpoint,
                input_mode=chunk.input_mode,
                request_ids=tuple(r.id for r in chunk.requests),
                model_spec=json.dumps(asdict(spec), default=str),  # dates as ISO text
                input_bytes=chunk.size,
            )
        )
    first = requests[0] if requests else None
    batch_jobs.record_intents(
        log,
        {
            "batch_id": batch_id,
            "operation": first.operation if first else None,
            "project_id": first.project_id if first else None,
            "request_count": len(requests),
            "models": ladder_names,
            "notices": ladder_notices([model]),
            "endpoint": endpoint,
            "simulated": simulated,
            "cache_mode": options.cache,
            "store_text": store_text,
            "package_version": __version__,
            "sdk_version": version("google-genai"),
        },
        rows,
        intents,
        decided_rows,
    )
    handle = BatchJobHandle(
        log,
        service,
        batch_id,
        settings,
        store_text,
        plan,
        options.on_progress,
        simulated=simulated,
        _requests={r.id: r for r in requests},
    )
    handle.submit(fresh=True)
    return handle


def over_budget(
    requests: Sequence[GenerationRequest],
    model: ModelSpec,
    budget_usd: float | None,
    index_of: Mapping[str, int],
) -> dict[str, Result]:
    """The requests past what `budget_usd` lets the jobs reserve, as not-run results.

    A job cannot be stopped half-way, so the budget is kept before it is created: the requests
    whose reserved cost (`reserved_usage` at the batch price) fits, from the front, are sent.
    """
    if budget_usd is None:
        return {}
    costs = [model.cost_usd(reserved_usage(r), batch=True) for r in requests]
    fit, reserved = affordable(costs, budget_usd)
    return {
        request.id: Result(
            request.id,
            index_of[request.id],
            False,
            error=Failure(
                "not_run",
                f"not sent: the budget of {format_usd(budget_usd)} for the Batch API would be "
                f"crossed: the {fit} requests submitted reserve {format_usd(reserved)} (input "
                "estimate plus output cap, at the batch price) and this one may cost up to "
                f"{format_usd(cost)}",
            ),
            metadata=request.metadata,
        )
        for request, cost in zip(requests[fit:], costs[fit:], strict=True)
    }


def batch_cache_keys(
    requests: Sequence[GenerationRequest], options: BatchOptions, batch_id: str
) -> dict[str, str]:
    """Each request's cache key in a Batch API run: over the batch's model and where its
    answers come from (with `cache="off"`, a key of its own that nothing else shares)."""
    model = [batch_model(options).name]
    source = keys.answer_source(options.endpoint(), options.simulated())
    return {
        r.id: keys.uncached_key(batch_id, r.id)
        if options.cache == "off"
        else keys.content_key(r, model, source)
        for r in requests
    }


def answered_by_cache(
    log: Database,
    requests: Sequence[GenerationRequest],
    options: BatchOptions,
    key_of: Mapping[str, str] | None = None,
    first_index: int = 0,
) -> dict[str, Result]:
    """The requests an earlier run answered, as cached results (they are not submitted).
    Empty unless `cache="use"`; `key_of` is `batch_cache_keys`, computed here if not given."""
    if options.cache != "use" or not requests:
        return {}
    key_of = key_of or batch_cache_keys(requests, options, batch_id="")
    earlier = earlier_answers(log, list(key_of.values()))
    served = {}
    for index, request in enumerate(requests, first_index):
        answer = earlier.get(key_of[request.id])
        result = None if answer is None else cached_result(index, request, answer)
        if result is not None:
            served[request.id] = result
    return served


def find_batch(db: Database, job_or_batch_id: str) -> str:
    """The batch id behind a batch id, a job key or a job name (`batches/...`)."""
    if not isinstance(job_or_batch_id, str) or not job_or_batch_id.strip():
        raise ConfigurationError(
            f"{job_or_batch_id!r}: give a batch id, a job name (batches/...) or a job key."
        )
    if batch_jobs.jobs(db, batch_id=job_or_batch_id):
        return job_or_batch_id
    found = batch_jobs.jobs(db, job=job_or_batch_id)
    if found:
        return found[0].batch_id
    row = batch_jobs.batch_row(db, job_or_batch_id)
    if row is not None and row["mode"] == "batch_api":  # the cache answered it whole: no job
        return job_or_batch_id
    raise ConfigurationError(
        f"No Batch API job or batch {job_or_batch_id!r} in the call log {db.path}; "
        "`%scriptgen jobs`, `scriptgen jobs` or list_batch_jobs() lists the recorded ones."
    )


def handle_for(
    job_or_batch_id: str,
    options: BatchOptions,
    *,
    settings: BatchApiSettings | None = None,
) -> BatchJobHandle:
    """A handle rebuilt from the log alone, for any process (resume, cancel): the batch's own
    endpoint unless `options.base_url` names another; its key as `options` resolves it, or
    the session's when the batch went to the session's endpoint (endpoints.py)."""
    log = open_log_for_batch_api(options)  # waiting up to its log_wait_s for a held file
    batch_id = find_batch(log, job_or_batch_id)
    row = batch_jobs.batch_row(log, batch_id)
    endpoint = row["endpoint"] if row else GOOGLE_ENDPOINT
    url = options.base_url or (None if endpoint == GOOGLE_ENDPOINT else endpoint)
    settings = settings or BatchApiSettings()
    if options.api_key is None:
        options = replace(options, api_key=session_api_key(url))
    service = JobService(
        _key_for(options, url),
        base_url=url,
        api_version=options.api_version,
        timeout_s=settings.timeout_s,
    )
    requests = None
    if any(j.job_name is None and not j.terminal for j in batch_jobs.jobs(log, batch_id=batch_id)):
        from ..store.replay import stored_requests

        rebuilt = stored_requests(log, batch_id, ("succeeded", "failed", "not_run"))
        requests = {r.id: r for r in rebuilt}
    return BatchJobHandle(
        log,
        service,
        batch_id,
        settings,
        bool(row["store_text"]) if row else True,
        None,
        options.on_progress,
        simulated=bool(row["simulated"]) if row else False,
        _requests=requests,
    )


def _key_for(options: BatchOptions, url: str | None) -> str:
    """The key a logged batch is reached with. Without one, a batch sent to an endpoint where
    nothing answers any more (a stopped emulator) needs none: the wait then says the endpoint
    is gone, which is what is wrong, rather than asking for a key that would not help."""
    try:
        return options.resolved_api_key()
    except MissingApiKeyError:
        if url is None or jobs.answers(url):
            raise
        return "no-key-needed"


def jobs_frame(db: Database) -> pd.DataFrame:
    """Every recorded Batch API job, newest first (what `list_batch_jobs` returns), with the
    hours left before each job still out expires."""
    import pandas as pd

    now = time.time()
    rows = [
        {
            "batch_id": j.batch_id,
            "chunk": j.chunk,
            "job_name": j.job_name,
            "job_key": j.job_key,
            "state": job_state(j),
            "model": j.model,
            "input": j.input_mode,
            "requests": j.request_count,
            "ingested": j.ingested,
            "matched_by": j.matched_by,
            "turnaround_s": j.turnaround_s,
            "expires_in_h": _expires_in_h(j, now),
            "endpoint": j.endpoint,
            "error": j.error,
        }
        for j in batch_jobs.jobs(db)
    ]
    columns = [
        "batch_id",
        "chunk",
        "job_name",
        "job_key",
        "state",
        "model",
        "input",
        "requests",
        "ingested",
        "matched_by",
        "turnaround_s",
        "expires_in_h",
        "endpoint",
        "error",
    ]
    return pd.DataFrame(rows, columns=columns)


def _expires_in_h(job: JobRow, now: float) -> float | None:
    """Hours until a job still out expires (the service's 48 h), 0 when overdue; None when it
    has ended or was never created."""
    if job.terminal or job.submitted_at is None:
        return None
    return round(max(0.0, JOB_LIFETIME_H - (now - job.submitted_at) / 3600), 1)
