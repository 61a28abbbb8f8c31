"""Batch API jobs on the wire: building their input, submitting them once, polling, cancelling.

- `inline_request` / `jsonl_line` turn a `GenerationRequest` into what the service takes, with
  the engine backend's own request builder (`engine.backend.generation_config`), so a request
  means the same live and by batch. Each carries its request id as `metadata.key` (inline) or
  `key` (JSONL): that is how answers find their requests (`ingest.py`).
- `chunk_requests` splits a batch into jobs: one model per job (the Batch API runs one model),
  a JSONL file upload each (the default), or inline jobs under the 20 MB request limit when
  asked.
- `JobService` wraps google-genai's synchronous `batches` and `files` (SDK retries off, as live).
- `submit` follows the idempotency protocol of `store/batch_jobs.py`: the intent is in the log
  before `batches.create`; a job that may exist (an intent without a name, or a create whose
  answer was lost) is first looked for by its display name and adopted, never created twice.
- `poll` waits with backoff until every job has ended, recording each state it sees.

An interrupt while polling leaves the jobs running at the service: they are in the log, and
`resume_batch_job` picks them up later; only `cancel` stops them. No duckdb here.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from google.genai import Client, _common, errors, types
from google.genai import batches as sdk_batches

from ..engine.backend import API_VERSION, backend_error_from, generation_config, scrubbed
from ..engine.checks import check_number
from ..engine.errors import (
    BackendError,
    ConfigurationError,
    EndpointGoneError,
    InvalidApiKeyError,
)
from ..engine.values import GenerationRequest
from ..store import batch_jobs
from ..store.batch_jobs import TERMINAL_STATES, JobRow
from ..store.database import Database

DISPLAY_PREFIX = "scriptgen-"
INLINE_LIMIT_BYTES = 19 * 1024 * 1024  # the service refuses create bodies over 20 MB
FILE_LIMIT_BYTES = 2_000_000_000  # a JSONL input file may hold up to 2 GB
ENVELOPE_BYTES = 512  # the create body's own fields around the requests
# The input file's declared type, in the order tried: Google's docs name `jsonl`; both have been
# refused intermittently ("Unsupported MIME type"), and a second try usually goes through.
UPLOAD_MIME_TYPES = ("jsonl", "application/jsonl", "jsonl", "application/jsonl")


@dataclass(frozen=True, slots=True)
class BatchApiSettings:
    """How Batch API jobs are built and watched (the defaults suit Google).

    `input`: "file" (the default: a JSONL upload, whose answers keep their keys line by line),
    "inline" (requests in the create call, split into several jobs past `inline_limit_bytes`;
    the service is known to drop inline answers' keys and to reorder them), "auto" (inline
    while a job fits, else a file). `match_by_position`: pair answers that lost every key by
    their order (the documented one, which the service does not always keep); off, such answers
    fail their requests as `unmatched`. `turnaround_s` overrides the expected turnaround the
    `auto` plan uses (by default measured, see `plan.py`).
    """

    input: str = "file"
    match_by_position: bool = False
    inline_limit_bytes: int = INLINE_LIMIT_BYTES
    file_limit_bytes: int = FILE_LIMIT_BYTES
    poll_initial_s: float = 5.0
    poll_max_s: float = 60.0
    poll_factor: float = 1.5
    turnaround_s: float | None = None
    timeout_s: float = 120.0  # per HTTP call to the batches and files endpoints
    # A job the service keeps failing to report (5xx, timeouts: `batches.get` has answered 503
    # for good for finished inline jobs with large outputs) stops the wait once both bounds
    # are passed: this many failures in a row, over at least this long.
    poll_failures: int = 20
    poll_failures_s: float = 600.0
    # A create the service refuses with 429 (its enqueued-token quota is full, reported around
    # the fourth job at once) waits, while the created jobs are polled, and is tried again
    # after the 429's retryDelay, else after a delay that doubles from the first to the last.
    create_wait_initial_s: float = 30.0
    create_wait_max_s: float = 600.0

    def __post_init__(self) -> None:
        if self.input not in ("auto", "inline", "file"):
            raise ConfigurationError(
                f"BatchApiSettings(input={self.input!r}): use 'file', 'inline' or 'auto'."
            )
        if not isinstance(self.match_by_position, bool):
            raise ConfigurationError(
                f"BatchApiSettings(match_by_position={self.match_by_position!r}): use True or "
                "False."
            )
        where = "BatchApiSettings: "
        for name in ("inline_limit_bytes", "file_limit_bytes"):
            check_number(name, getattr(self, name), low=0, above=True, whole=True, where=where)
        check_number("poll_failures", self.poll_failures, low=1, whole=True, where=where)
        for name in (
            "poll_initial_s",
            "poll_max_s",
            "timeout_s",
            "poll_failures_s",
            "create_wait_initial_s",
            "create_wait_max_s",
        ):
            check_number(name, getattr(self, name), low=0, above=True, unit="seconds", where=where)
        check_number("poll_factor", self.poll_factor, low=1, where=where)
        check_number(
            "turnaround_s", self.turnaround_s, low=0, above=True, optional=True, where=where
        )


def job_key(batch_id: str, chunk: int) -> str:
    """The client-side key of a batch's chunk: the same after any restart."""
    return hashlib.sha256(f"{batch_id}/{chunk}".encode()).hexdigest()[:24]


def display_name(key: str) -> str:
    return f"{DISPLAY_PREFIX}{key}"


def inline_request(request: GenerationRequest) -> types.InlinedRequest:
    return types.InlinedRequest(
        contents=request.prompt, config=generation_config(request), metadata={"key": request.id}
    )


_WIRE_CLIENT: Client | None = None


def _wire_client() -> Client:
    # Only used to turn requests into their wire form (no call is made with it).
    global _WIRE_CLIENT
    if _WIRE_CLIENT is None:
        _WIRE_CLIENT = Client(
            api_key="offline",
            http_options=types.HttpOptions(base_url="x:/", api_version=API_VERSION),
        )
    return _WIRE_CLIENT


def wire_request(request: GenerationRequest) -> dict[str, Any]:
    """The REST `GenerateContentRequest` of a request, as the SDK writes it for batches."""
    converted = sdk_batches._InlinedRequest_to_mldev(
        _wire_client()._api_client, inline_request(request)
    )
    wire: dict[str, Any] = _common.convert_to_dict(converted["request"])
    return wire


def jsonl_line(request: GenerationRequest) -> str:
    return json.dumps({"key": request.id, "request": wire_request(request)}, separators=(",", ":"))


@dataclass(slots=True)
class Chunk:
    """The requests of one job, with the model that runs them and their input size."""

    model: str
    requests: list[GenerationRequest] = field(default_factory=list)
    size: int = ENVELOPE_BYTES
    input_mode: str = "inline"


def chunk_requests(
    requests: Iterable[GenerationRequest], default_model: str, settings: BatchApiSettings
) -> list[Chunk]:
    """Group by model (a pinned request keeps its model), then split by size.

    With input "file" (the default) a model's requests go as one JSONL file (split again only
    past the file limit); "inline" splits them into as many inline jobs as needed; "auto" goes
    inline while they fit one create call, else as a file.
    """
    by_model: dict[str, list[tuple[GenerationRequest, int]]] = {}
    for request in requests:
        model = (request.model or default_model).removeprefix("models/")
        size = len(json.dumps(wire_request(request), separators=(",", ":"))) + 64
        by_model.setdefault(model, []).append((request, size))
    chunks: list[Chunk] = []
    for model, sized in by_model.items():
        total = ENVELOPE_BYTES + sum(size for _, size in sized)
        mode = settings.input
        if mode == "auto":
            mode = "inline" if total <= settings.inline_limit_bytes else "file"
        limit = settings.inline_limit_bytes if mode == "inline" else settings.file_limit_bytes
        current = Chunk(model, input_mode=mode)
        for request, size in sized:
            if current.requests and current.size + size > limit:
                chunks.append(current)
                current = Chunk(model, input_mode=mode)
            current.requests.append(request)
            current.size += size
        chunks.append(current)
    return chunks


def _mime_refused(error: BackendError) -> bool:
    """The Files API's intermittent refusal of a JSONL upload's declared type."""
    return error.http_status == 400 and "unsupported mime type" in error.message.lower()


def _refused(exc: BaseException) -> bool:
    """Whether a call failed because nothing listens at the endpoint (the transport wraps the
    socket's `ConnectionRefusedError` in its own errors)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def answers(base_url: str, timeout_s: float = 3.0) -> bool:
    """Whether anything accepts a connection at `base_url` (no request is sent)."""
    url = urlsplit(base_url)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "localhost", port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _state_name(job: types.BatchJob) -> str:
    state = job.state
    return str(getattr(state, "name", state) or "JOB_STATE_UNSPECIFIED")


def _epoch(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


class JobService:
    """google-genai's synchronous batches and files endpoints, errors made `BackendError`s;
    `API_VERSION` (v1beta, where Google documents them) unless `api_version` says otherwise.

    A refused connection to a `base_url` (an emulator that has stopped, a proxy that is down)
    is `EndpointGoneError`, not a transient error: nothing listens there, and polling it for
    minutes would only hide that.
    """

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str | None = None,
        api_version: str | None = None,
        timeout_s: float = 120.0,
    ) -> None:
        options = types.HttpOptions(
            base_url=base_url,
            api_version=api_version or API_VERSION,
            timeout=int(timeout_s * 1000),
            retry_options=types.HttpRetryOptions(attempts=1),
        )
        self._client = Client(api_key=api_key, http_options=options)
        self._base_url = base_url
        self.__api_key = api_key  # for scrubbing messages only; never in repr

    def __repr__(self) -> str:
        return "JobService()"

    def _call(self, what: Callable[[], Any]) -> Any:
        try:
            return what()
        except errors.APIError as exc:
            error = scrubbed(backend_error_from(exc), self.__api_key)
            if error.api_key_invalid:
                raise InvalidApiKeyError(error.message) from None
            raise error from None
        except BackendError:
            raise
        except Exception as exc:
            if self._base_url is not None and _refused(exc):
                raise EndpointGoneError(self._base_url) from None
            raise scrubbed(backend_error_from(exc), self.__api_key) from None

    def create(self, model: str, src: Any, name: str) -> types.BatchJob:
        return self._call(
            lambda: self._client.batches.create(
                model=model, src=src, config=types.CreateBatchJobConfig(display_name=name)
            )
        )

    def get(self, name: str) -> types.BatchJob:
        return self._call(lambda: self._client.batches.get(name=name))

    def cancel(self, name: str) -> None:
        self._call(lambda: self._client.batches.cancel(name=name))

    def find(self, name: str) -> types.BatchJob | None:
        """The job whose display name is `name`, if the service lists one."""

        def look() -> types.BatchJob | None:
            for job in self._client.batches.list(config=types.ListBatchJobsConfig(page_size=100)):
                if job.display_name == name:
                    return job
            return None

        found: types.BatchJob | None = self._call(look)
        return found

    def upload(
        self, lines: Iterable[str], name: str, *, sleep: Callable[[float], None] = time.sleep
    ) -> str:
        """Upload JSONL lines as a file; its name at the service.

        The lines are staged in a file of a temporary folder that the SDK reads by path and
        sends in chunks, so a job's input (up to 2 GB) is never held in memory whole (an open
        `TemporaryFile` will not do: on Windows it is not an `io.IOBase`, which the SDK wants,
        and a named one cannot be opened twice there while it is open).
        The Files API refuses an upload now and then with "Unsupported MIME type" whichever
        type is named (python-genai #1547): such a refusal is tried again, alternating the
        documented `jsonl` with `application/jsonl`, before it is reported.
        """
        with tempfile.TemporaryDirectory(prefix="scriptgen-upload-") as folder:
            path = os.path.join(folder, "input.jsonl")
            with open(path, "wb") as staged:
                for line in lines:
                    staged.write(line.encode("utf-8") + b"\n")
            *first, last = UPLOAD_MIME_TYPES
            for attempt, mime_type in enumerate(first):
                try:
                    return self._upload_file(path, mime_type, name)
                except BackendError as exc:
                    if not _mime_refused(exc):
                        raise
                sleep(float(2**attempt))
            return self._upload_file(path, last, name)

    def _upload_file(self, path: str, mime_type: str, name: str) -> str:
        config = types.UploadFileConfig(mime_type=mime_type, display_name=name)
        uploaded = self._call(lambda: self._client.files.upload(file=path, config=config))
        return str(uploaded.name)

    def download(self, name: str) -> bytes:
        data: bytes = self._call(lambda: self._client.files.download(file=name))
        return data

    def close(self) -> None:
        self._client.close()


@dataclass
class Submission:
    """What `submit` did: which jobs it created or adopted, which could not be sent, and which
    wait to be created (the service refused them for now)."""

    created: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)  # job key -> why
    waiting: dict[str, str] = field(default_factory=dict)  # job key -> why


@dataclass
class Deferral:
    """A job whose create the service refused for now (429): when to try again, and why."""

    due: float  # time.monotonic()
    tries: int
    reason: str

    @classmethod
    def after(
        cls,
        error: BackendError,
        earlier: Deferral | None,
        settings: BatchApiSettings,
        now: float,
    ) -> Deferral:
        """The wait after a refusal (`earlier`: the job's last one): the 429's retryDelay
        when it gives one, else `create_wait_initial_s` doubling up to `create_wait_max_s`."""
        tries = 1 if earlier is None else earlier.tries + 1
        backoff = min(settings.create_wait_max_s, settings.create_wait_initial_s * 2 ** (tries - 1))
        delay = error.retry_delay_s if error.retry_delay_s is not None else backoff
        reason = f"the service refused to create it for now (429: {error.message[:200]})"
        return cls(now + delay, tries, reason)


def create_refused_for_now(error: BackendError) -> bool:
    """A 429 to `batches.create` that waiting cures (the enqueued-token quota), not billing."""
    return error.http_status == 429 and error.kind != "billing"


TRANSIENT = frozenset({"server_error", "timeout", "connection", "malformed_response"})


def submit(
    service: JobService,
    db: Database,
    jobs: Sequence[JobRow],
    requests: dict[str, GenerationRequest] | None,
    *,
    look_first: bool = True,
    attempts: int = 4,
    sleep: Callable[[float], None] = time.sleep,
    deferred: dict[str, Deferral] | None = None,
    settings: BatchApiSettings | None = None,
) -> Submission:
    """Send every intent that has no job yet; adopt what the service already has (step 3).

    `requests` are the batch's requests by id (needed only for jobs not yet created). A create
    that fails at the service (4xx) marks its job failed, except a 429 that waiting cures: with
    `deferred` given, that job stays an intent (so a crash meanwhile still creates it at most
    once), noted in `deferred` with when to try again (`settings`), and is skipped until then.
    One whose answer is lost (5xx, timeout, dropped connection) is looked up by display name
    before it is tried again. `look_first=False` skips the first look-up for intents this
    process has just written (no job can exist for them yet); resuming always looks.
    """
    done = Submission()
    settings = settings or BatchApiSettings()
    for job in jobs:
        if job.job_name is not None:
            continue
        waited = None if deferred is None else deferred.get(job.job_key)
        if waited is not None and waited.due > time.monotonic():
            done.waiting[job.job_key] = waited.reason
            continue
        existing = service.find(job.display_name) if look_first else None
        if existing is not None:
            _record_created(db, job, existing)
            done.adopted.append(job.job_key)
            continue
        if requests is None:
            raise RuntimeError(f"job {job.job_key} was never created and its requests are gone")
        chunk = [requests[i] for i in job.request_ids]
        for attempt in range(1, attempts + 1):
            try:
                created = _create(service, db, job, chunk, sleep)
            except BackendError as exc:
                if deferred is not None and create_refused_for_now(exc):
                    later = Deferral.after(exc, waited, settings, time.monotonic())
                    deferred[job.job_key] = later
                    done.waiting[job.job_key] = later.reason
                    break
                if exc.kind not in TRANSIENT or attempt == attempts:
                    reason = f"{exc.kind}: {exc.message}"
                    batch_jobs.mark_state(db, job.job_key, "JOB_STATE_FAILED", error=reason)
                    done.refused[job.job_key] = reason
                    break
                sleep(min(30.0, 2.0**attempt))
                existing = service.find(job.display_name)  # the lost answer may have created it
                if existing is not None:
                    _record_created(db, job, existing)
                    done.adopted.append(job.job_key)
                    break
                continue
            _record_created(db, job, created)
            if deferred is not None:
                deferred.pop(job.job_key, None)
            done.created.append(job.job_key)
            break
    return done


def _create(
    service: JobService,
    db: Database,
    job: JobRow,
    chunk: Sequence[GenerationRequest],
    sleep: Callable[[float], None],
) -> types.BatchJob:
    if job.input_mode == "inline":
        return service.create(job.model, [inline_request(r) for r in chunk], job.display_name)
    source = job.input_file
    if source is None:
        source = service.upload((jsonl_line(r) for r in chunk), job.display_name, sleep=sleep)
        batch_jobs.mark_uploaded(db, job.job_key, source)
    return service.create(job.model, source, job.display_name)


def _record_created(db: Database, job: JobRow, created: types.BatchJob) -> None:
    submitted = _epoch(created.create_time) or time.time()
    batch_jobs.mark_submitted(db, job.job_key, str(created.name), _state_name(created), submitted)


@dataclass
class FailureStreak:
    """A job's polls failing in a row: since when, how many, the last error."""

    since: float
    count: int = 0
    last: BackendError | None = None

    def add(self, error: BackendError) -> None:
        self.count += 1
        self.last = error

    def past(self, settings: BatchApiSettings, now: float) -> bool:
        return self.count >= settings.poll_failures and now - self.since >= settings.poll_failures_s


class PollGaveUp(Exception):
    """The service kept failing to report a job or to hand over its results: waiting for it
    stopped (it may still run; its results may still be had later)."""

    def __init__(self, what: str, streak: FailureStreak, now: float) -> None:
        last = streak.last
        said = f"{last.http_status or last.kind}: {last.message[:200]}" if last else "?"
        super().__init__(
            f"the service failed {what} {streak.count} times in a row over "
            f"{now - streak.since:.0f} s (last: {said})"
        )


def poll(
    service: JobService,
    db: Database,
    jobs: Sequence[JobRow],
    settings: BatchApiSettings,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    create: Callable[[JobRow], JobRow] | None = None,
    on_round: Callable[[Sequence[JobRow], int], None] | None = None,
) -> Iterator[tuple[JobRow, types.BatchJob | None]]:
    """Yield each job as it ends (with the service's view of it), polling with backoff.

    A job not created yet is handed to `create` each round (a create the service refused for
    now, tried again when due; it returns the job as it then is), and polled once it has a
    name; one that was never created and will not be (refused) ends at once with no service
    view. Transient errors
    of a poll are waited out, within `settings.poll_failures` in a row and
    `settings.poll_failures_s`: past both, `PollGaveUp` is raised; the others propagate.
    `on_round` hears, before each wait between rounds, every job as last seen and how many
    polls are failing in a row (what a progress line shows).
    """
    waiting = {job.job_key: job for job in jobs}
    latest = dict(waiting)
    failing: dict[str, FailureStreak] = {}
    delay = settings.poll_initial_s
    while waiting:
        for key, job in list(waiting.items()):
            if job.job_name is None and create is not None and not job.terminal:
                job = waiting[key] = latest[key] = create(job)
                if job.job_name is None and not job.terminal:
                    continue  # still waiting to be created
            if job.job_name is None:
                del waiting[key]
                yield job, None
                continue
            try:
                now_job, seen = observe(service, db, job)
            except BackendError as exc:
                if exc.kind not in TRANSIENT:
                    raise
                streak = failing.setdefault(key, FailureStreak(clock()))
                streak.add(exc)
                now = clock()
                if streak.past(settings, now):
                    raise PollGaveUp(f"to report {job.job_name}", streak, now) from None
                continue
            failing.pop(key, None)
            latest[key] = now_job
            if now_job.terminal:
                del waiting[key]
                yield now_job, seen
        if waiting:
            if on_round is not None:
                failed_polls = sum(streak.count for streak in failing.values())
                on_round(list(latest.values()), failed_polls)
            sleep(delay)
            delay = min(settings.poll_max_s, delay * settings.poll_factor)


def observe(service: JobService, db: Database, job: JobRow) -> tuple[JobRow, types.BatchJob]:
    """Ask the service for a created job and record its state (when it has ended: when, and
    how long it took); the job as it now is, and the service's view of it."""
    assert job.job_name is not None
    seen = service.get(job.job_name)
    state = _state_name(seen)
    ended = state in TERMINAL_STATES
    finished_at = _epoch(seen.end_time) if ended else None
    if ended and finished_at is None:
        finished_at = time.time()
    turnaround = None
    if ended and job.submitted_at is not None and finished_at is not None:
        started = _epoch(seen.create_time) or job.submitted_at
        turnaround = max(0.0, finished_at - started)
    batch_jobs.mark_state(db, job.job_key, state, finished_at=finished_at, turnaround_s=turnaround)
    return _with(job, state, finished_at, turnaround), seen


def _with(job: JobRow, state: str, finished_at: float | None, turnaround: float | None) -> JobRow:
    return replace(job, state=state, finished_at=finished_at, turnaround_s=turnaround)


NEVER_CREATED = "cancelled before the service created it"


def cancel(service: JobService, db: Database, jobs: Sequence[JobRow]) -> list[str]:
    """Ask the service to cancel every job not ended yet; returns their names. A job not
    created yet (waiting to be) is recorded cancelled, so no later resume creates it."""
    cancelled = []
    for job in jobs:
        if job.terminal:
            continue
        if job.job_name is None:
            batch_jobs.mark_state(db, job.job_key, "JOB_STATE_CANCELLED", error=NEVER_CREATED)
            continue
        service.cancel(job.job_name)
        cancelled.append(job.job_name)
    return cancelled
