"""Batch API jobs: the job store, each job's state over time, its results and its wire form.

Owns `BatchBook`. A job is created from inline requests or an uploaded JSONL file and moves
PENDING -> RUNNING -> its outcome by the time since it was created alone: no thread runs it,
its state is computed whenever it is read, from an injectable clock. Its results are produced
once, on the first read after it succeeds, by `answer`, the generator the live endpoint uses
(so answers are deterministic and follow schemas), and kept inline or written to a generated
file of the `FileStore`. The Google quirks `BatchConfig` switches on (failed rows in a job that
succeeds, results out of order, results without metadata) are applied here, drawn from the
seed, the model and each row's key so runs repeat. Batch jobs touch none of the live RPM, TPM
or RPD windows: they are a separate service. Imports nothing from the engine.
"""

from __future__ import annotations

import contextlib
import enum
import io
import itertools
import json
import random
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

from .casing import either_case
from .config import BatchConfig
from .counters import Counters
from .determinism import rng, unit
from .errors import ApiFailure, batch_queue_full
from .files import FileStore
from .request import RequestError, load_object, parse_generate
from .wire import page, timestamp

__all__ = ["Answer", "BatchBook", "BatchState"]

# (model, GenerateContentRequest) -> {"response": GenerateContentResponse} or {"error": Status}
Answer = Callable[[str, Mapping[str, Any]], dict[str, Any]]

_API = "type.googleapis.com/google.ai.generativelanguage.v1main."
_SHUFFLE_BLOCK = (
    1024  # results are shuffled this many at a time, so a big file never sits in memory
)
_ROW_ERROR = {"code": 3, "message": "Request contains an invalid argument."}


class BatchState(enum.StrEnum):
    PENDING = "BATCH_STATE_PENDING"
    RUNNING = "BATCH_STATE_RUNNING"
    SUCCEEDED = "BATCH_STATE_SUCCEEDED"
    FAILED = "BATCH_STATE_FAILED"
    CANCELLED = "BATCH_STATE_CANCELLED"
    EXPIRED = "BATCH_STATE_EXPIRED"


_OUTCOMES = {
    "succeeded": BatchState.SUCCEEDED,
    "failed": BatchState.FAILED,
    "expired": BatchState.EXPIRED,
}
_IN_PROGRESS = (BatchState.PENDING, BatchState.RUNNING)
# The operation's error for the endings that carry one: google.rpc code and message.
_ENDING_ERRORS = {
    BatchState.FAILED: (13, "The batch job failed."),
    BatchState.EXPIRED: (4, "The batch job expired before it could finish."),
}


@dataclass(frozen=True, slots=True)
class _Row:
    key: str | None  # metadata.key (inline) or the line's key (file): what error_keys match
    echo: dict[str, Any]  # copied onto the result: {"metadata": {...}} or {"key": ...}
    request: Mapping[str, Any] | None
    problem: str | None = None  # why the row could not be read (then request is None)


@dataclass(slots=True)
class _Job:
    id: str
    model: str
    display_name: str | None
    settings: BatchConfig
    pending_s: float
    running_s: float
    created: float  # on the book's clock
    created_wall: float  # Unix time
    request_count: int
    tokens: int  # the input tokens it puts in the model's queue (the enqueued-token quota)
    rows: list[_Row] | None  # inline jobs
    input_file: str | None  # file jobs
    cancelled_at: float | None = None
    broken: str | None = None  # why a job due to succeed failed instead (its input vanished)
    output: dict[str, Any] | None = None
    succeeded_rows: int = 0
    failed_rows: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def state(self, now: float) -> BatchState:
        if self.cancelled_at is not None:
            return BatchState.CANCELLED
        age = now - self.created
        if age < self.pending_s:
            return BatchState.PENDING
        if age < self.pending_s + self.running_s:
            return BatchState.RUNNING
        return BatchState.FAILED if self.broken else _OUTCOMES[self.settings.outcome]

    def changed_at(self, now: float) -> float:
        """When the state last changed, on the book's clock."""
        if self.cancelled_at is not None:
            return self.cancelled_at
        marks = (self.created, self.created + self.pending_s)
        end = self.created + self.pending_s + self.running_s
        return end if now >= end else max(m for m in marks if m <= now)

    def wall(self, moment: float) -> float:
        return self.created_wall + (moment - self.created)


def _inline_rows(source: Mapping[str, Any]) -> list[_Row]:
    where = "* BatchGenerateContentRequest.batch.input_config.requests.requests"
    holder = either_case(source, "requests")
    items = either_case(holder, "requests") if isinstance(holder, dict) else None
    if not isinstance(items, list) or not items:
        raise ApiFailure(400, f"{where}: must be a non-empty list\n")
    rows: list[_Row] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("request"), dict):
            raise ApiFailure(400, f"{where}[{i}].request: a GenerateContentRequest is required\n")
        metadata = item.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            raise ApiFailure(400, f"{where}[{i}].metadata: must be an object\n")
        key = metadata.get("key") if metadata else None
        echo = {"metadata": metadata} if metadata is not None else {}
        rows.append(_Row(None if key is None else str(key), echo, item["request"]))
    return rows


def _file_rows(lines: Iterable[str]) -> Iterator[_Row]:
    """The rows of a JSONL input, `{"key": ..., "request": {...}}` a line; blank lines skipped."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError:
            yield _Row(None, {}, None, f"Line {number} of the input file is not valid JSON.")
            continue
        key = item.get("key") if isinstance(item, dict) else None
        echo = {"key": key} if key is not None else {}
        key_text = None if key is None else str(key)
        if not isinstance(item, dict) or not isinstance(item.get("request"), dict):
            problem = f'Line {number} of the input file has no "request" object.'
            yield _Row(key_text, echo, None, problem)
        else:
            yield _Row(key_text, echo, item["request"])


def _enqueued_tokens(rows: Iterable[_Row]) -> int:
    """The input tokens rows put in the queue (a row the service will fail puts none)."""
    total = 0
    for row in rows:
        if row.request is not None:
            with contextlib.suppress(RequestError):  # a row it cannot read: answered an error
                total += parse_generate(row.request).prompt_tokens
    return total


def _shuffled(results: Iterator[dict[str, Any]], r: random.Random) -> Iterator[dict[str, Any]]:
    """Results out of input order (python-genai #1909), one block at a time."""
    while block := list(itertools.islice(results, _SHUFFLE_BLOCK)):
        r.shuffle(block)
        yield from block


class BatchBook:
    """Every batch job of one emulator, thread-safe; jobs stay until deleted."""

    def __init__(
        self,
        files: FileStore,
        counters: Counters,
        answer: Answer,
        seed: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._files = files
        self._counters = counters
        self._answer = answer
        self._seed = seed
        self._clock = clock
        self._lock = threading.Lock()
        self._jobs: dict[str, _Job] = {}

    # -- endpoints -----------------------------------------------------------------------------

    def create(
        self, model: str, body: bytes, settings: BatchConfig, scale: float
    ) -> dict[str, Any]:
        """batchGenerateContent: a new job from the request `body`; its Operation (PENDING)."""
        try:
            data = load_object(body)
        except RequestError as exc:
            raise ApiFailure(400, str(exc)) from None
        batch = either_case(data, "batch")
        if not isinstance(batch, dict):
            raise ApiFailure(400, "* BatchGenerateContentRequest.batch: batch is required\n")
        display_name = either_case(batch, "displayName")
        if display_name is not None and not isinstance(display_name, str):
            raise ApiFailure(
                400, "* BatchGenerateContentRequest.batch.display_name: not a string\n"
            )
        source = either_case(batch, "inputConfig")
        if not isinstance(source, dict):
            raise ApiFailure(400, "* BatchGenerateContentRequest.batch.input_config: required\n")
        file_name = either_case(source, "fileName")
        if (file_name is None) == (either_case(source, "requests") is None):
            raise ApiFailure(
                400,
                "* BatchGenerateContentRequest.batch.input_config: exactly one of requests and "
                "file_name must be set\n",
            )
        rows: list[_Row] | None = None
        if file_name is None:
            rows = _inline_rows(source)
            count, tokens = len(rows), _enqueued_tokens(rows)
        else:
            count, tokens = self._measure_file(str(file_name))
        now = self._clock()
        job = _Job(
            id=secrets.token_hex(18),
            model=model,
            display_name=display_name,
            settings=settings,
            pending_s=settings.pending_s * scale,
            running_s=settings.running_s * scale,
            created=now,
            created_wall=time.time(),
            request_count=count,
            tokens=tokens,
            rows=rows,
            input_file=None if file_name is None else str(file_name),
        )
        with self._lock:
            queued = [
                j for j in self._jobs.values() if j.model == model and j.state(now) in _IN_PROGRESS
            ]
            jobs_cap, tokens_cap = settings.max_active_jobs, settings.max_enqueued_tokens
            if (jobs_cap is not None and len(queued) >= jobs_cap) or (
                tokens_cap is not None and sum(j.tokens for j in queued) + tokens > tokens_cap
            ):
                raise batch_queue_full()
            self._jobs[job.id] = job
        self._counters.batch(model, jobs_created=1, rows_submitted=count)
        # Google answers a new job as PENDING however short its queue will be.
        return self._operation(job, now, BatchState.PENDING)

    def get(self, batch_id: str, unavailable_over_bytes: int | None = None) -> dict[str, Any]:
        """The job; a succeeded inline job whose results exceed `unavailable_over_bytes` is
        answered 503, as Google has been reported to for good (Gemini forum threads 113603,
        174261)."""
        job = self._job(batch_id)
        operation = self._operation(job, self._clock())
        large = (
            unavailable_over_bytes is not None
            and job.rows is not None
            and "response" in operation
            and len(json.dumps(operation["response"])) > unavailable_over_bytes
        )
        if large:
            raise ApiFailure(503, "The service is currently unavailable.")
        return operation

    def list(self, page_size: str | None, page_token: str | None) -> dict[str, Any]:
        """One page of jobs, oldest first, under `operations` as the SDK reads them."""
        with self._lock:
            jobs = list(self._jobs.values())
        chosen, token = page(jobs, page_size, page_token)
        now = self._clock()
        body: dict[str, Any] = {"operations": [self._operation(job, now) for job in chosen]}
        if token is not None:
            body["nextPageToken"] = token
        return body

    def cancel(self, batch_id: str) -> dict[str, Any]:
        """A pending or running job becomes CANCELLED; an ended one is left as it is."""
        job = self._job(batch_id)
        with job.lock:
            now = self._clock()
            if job.state(now) in _IN_PROGRESS:
                job.cancelled_at = now
                self._counters.batch(job.model, jobs_cancelled=1)
        return {}

    def delete(self, batch_id: str) -> dict[str, Any]:
        """Forget a job (a running one is not cancelled first, as with Google's operations)."""
        with self._lock:
            job = self._jobs.pop(batch_id, None)
        if job is None:
            raise ApiFailure(404, f"Batch batches/{batch_id} was not found.")
        self._counters.batch(job.model, jobs_deleted=1)
        return {}

    # -- internals -----------------------------------------------------------------------------

    def _job(self, batch_id: str) -> _Job:
        with self._lock:
            job = self._jobs.get(batch_id)
        if job is None:
            raise ApiFailure(404, f"Batch batches/{batch_id} was not found.")
        return job

    def _measure_file(self, name: str) -> tuple[int, int]:
        """An input file's rows and the input tokens they put in the queue."""
        _, handle = self._files.open(name)
        count = tokens = 0
        with handle:
            lines: TextIO = io.TextIOWrapper(handle, encoding="utf-8", errors="replace")
            for row in _file_rows(lines):
                count += 1
                tokens += _enqueued_tokens((row,))
        if count == 0:
            raise ApiFailure(400, f"The input file {name} holds no requests.")
        return count, tokens

    def _settle(self, job: _Job, now: float) -> BatchState:
        """The job's state, producing its results first if it has just succeeded."""
        state = job.state(now)
        if state is BatchState.SUCCEEDED:
            with job.lock:  # concurrent readers wait for the one that produces them
                if job.output is None and job.broken is None:
                    self._produce(job)
            state = job.state(now)
        return state

    def _produce(self, job: _Job) -> None:
        if job.rows is not None:
            inline = list(self._results(job, iter(job.rows)))
            job.output = {"inlinedResponses": {"inlinedResponses": inline}}
        else:
            assert job.input_file is not None
            try:
                _, handle = self._files.open(job.input_file)
            except ApiFailure:
                job.broken = f"The input file {job.input_file} was deleted before the job ran."
                return
            with handle:
                lines: TextIO = io.TextIOWrapper(handle, encoding="utf-8", errors="replace")
                results = self._results(job, _file_rows(lines))
                stored = self._files.create_generated(
                    f"batch-{job.id}",
                    "application/jsonl",
                    (json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in results),
                )
            job.output = {"responsesFile": stored.name}
            if job.settings.lose_output:  # expired or deleted before it was read: 404
                self._files.delete(stored.name)
        self._counters.batch(
            job.model, rows_succeeded=job.succeeded_rows, rows_failed=job.failed_rows
        )

    def _results(self, job: _Job, rows: Iterator[_Row]) -> Iterator[dict[str, Any]]:
        results = (self._result(job, index, row) for index, row in enumerate(rows))
        if job.settings.shuffle:
            return _shuffled(results, rng(self._seed, "batch-order", job.model, job.request_count))
        return results

    def _result(self, job: _Job, index: int, row: _Row) -> dict[str, Any]:
        settings = job.settings
        if row.request is None:
            result: dict[str, Any] = {"error": {"code": 3, "message": row.problem}}
        elif row.key in settings.error_keys or (
            settings.row_error_rate > 0
            and unit(self._seed, "batch-row-error", job.model, row.key or index)
            < settings.row_error_rate
        ):
            result = {"error": dict(_ROW_ERROR)}  # the job still succeeds: python-genai #2693
        else:
            result = self._answer(job.model, row.request)
        if "error" in result:
            job.failed_rows += 1
        else:
            job.succeeded_rows += 1
        if not (job.rows is not None and settings.drop_metadata):
            result.update(row.echo)
        return result

    def _stats(self, job: _Job, state: BatchState) -> dict[str, str]:
        # int64 counts travel as strings; zero counts are left out, as proto3 JSON does.
        counts = {"requestCount": job.request_count}
        if state in _IN_PROGRESS:
            counts["pendingRequestCount"] = job.request_count
        elif state is BatchState.SUCCEEDED:
            counts["successfulRequestCount"] = job.succeeded_rows
            counts["failedRequestCount"] = job.failed_rows
        return {name: str(n) for name, n in counts.items() if n}

    def _operation(self, job: _Job, now: float, state: BatchState | None = None) -> dict[str, Any]:
        """The job as Google's Operation: the batch in `metadata`, results also in `response`."""
        if state is None:
            state = self._settle(job, now)
        changed = timestamp(
            job.wall(job.created if state is BatchState.PENDING else job.changed_at(now))
        )
        metadata: dict[str, Any] = {
            "@type": _API + "GenerateContentBatch",
            "model": f"models/{job.model}",
        }
        if job.display_name is not None:
            metadata["displayName"] = job.display_name
        metadata["createTime"] = timestamp(job.created_wall)
        metadata["updateTime"] = changed
        done = state not in _IN_PROGRESS
        if done:
            metadata["endTime"] = changed
        metadata["batchStats"] = self._stats(job, state)
        metadata["state"] = state.value
        metadata["name"] = f"batches/{job.id}"
        operation: dict[str, Any] = {"name": f"batches/{job.id}", "metadata": metadata}
        if done:
            operation["done"] = True
        if state is BatchState.SUCCEEDED and job.output is not None:
            metadata["output"] = job.output
            operation["response"] = {"@type": _API + "GenerateContentBatchOutput", **job.output}
        elif state in _ENDING_ERRORS:
            code, message = _ENDING_ERRORS[state]
            operation["error"] = {"code": code, "message": job.broken or message}
        return operation
