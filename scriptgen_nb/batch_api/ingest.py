"""A finished job's answers back to their requests: matched, judged, priced, written once.

**Matching.** Every request is submitted with its id as a key (`metadata.key` inline, `key` in
a JSONL line). Answers are matched by that key, whatever order they come in (the service is
known to reorder inline answers, python-genai #1909). An answer without a key (the service is
also known to drop inline metadata, #2008) is never paired by its place unless the caller
allows it (`BatchApiSettings(match_by_position=True)`), and then only when *no* answer of the
job has a key and their number equals the number submitted (`matched_by` is `position`): a
service that both drops the keys and reorders the answers would otherwise hand requests each
other's answers, silently. Answers without keys when others have them (`mixed`) are matched by
elimination only when exactly one request is left (a certainty, not a guess); anything still
unmatched is a per-request failure of its own kind (`unmatched`), to be run again. File input,
the default, keeps each answer's key on its line.

**Judging.** Each answer is judged like a live reply (`engine.verdict.judge_reply`): blocked,
truncated, empty, invalid JSON for the schema. There is no retry in a batch: such a row is a
failure of that kind. A row the service answered with an error is a failure of the matching
kind. A request of a job that failed, expired or was cancelled without an answer is
`server_error` (failed) or `not_run` (expired, cancelled) and can be run again.

**Pricing.** Usage is billed at the batch model's Batch API price (`ModelSpec.cost_usd(batch=
True)`: `batch_discount` of the live price) in force on the day the job was submitted; a model
of unknown price leaves the cost None. No duckdb here.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from google.genai import batches as sdk_batches
from google.genai import types

from ..engine.backend import reply_from_response
from ..engine.models import ModelSpec
from ..engine.values import Attempt, Failure, FailureKind, Reply, Result, Usage
from ..engine.verdict import judge_reply
from ..store import recorder
from ..store.batch_jobs import JobRow

# google.rpc.Code -> what a row's error means here
_RPC_KINDS: dict[int, FailureKind] = {
    3: "invalid_request",  # INVALID_ARGUMENT
    4: "timeout",  # DEADLINE_EXCEEDED
    5: "not_found",
    7: "permission_denied",
    8: "quota_exhausted",  # RESOURCE_EXHAUSTED
    9: "invalid_request",  # FAILED_PRECONDITION
    11: "invalid_request",  # OUT_OF_RANGE
    16: "permission_denied",  # UNAUTHENTICATED
}
_RPC_HTTP = {3: 400, 4: 504, 5: 404, 7: 403, 8: 429, 9: 400, 11: 400, 13: 500, 14: 503, 16: 401}


@dataclass(frozen=True, slots=True)
class Answer:
    """One output row of a job: its key (if any) and a reply or an error.

    The reply is what a live call's response is reduced to (`reply_from_response`), taken as
    each row is read: a job's rows are all held until they are matched, and the SDK's parsed
    response costs ~10 KB a row (a 50,000-row job held 550 MB of them).
    """

    key: str | None
    reply: Reply | None = None
    error: Failure | None = None


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    """What ingestion needs of a request, as the log holds it."""

    request_id: str
    index: int
    cache_key: str
    operation: str | None
    project_id: str | None
    template_hash: str | None
    schema: Any
    metadata: Mapping[str, Any]


def row_error(error: Any) -> Failure:
    """A row's `google.rpc.Status` (a JobError or a dict) as a failure."""
    if isinstance(error, Mapping):
        code, message = error.get("code"), error.get("message")
    else:
        code, message = getattr(error, "code", None), getattr(error, "message", None)
    code = int(code) if isinstance(code, int | str) and str(code).isdigit() else None
    kind: FailureKind = _RPC_KINDS.get(code, "server_error") if code else "server_error"
    text = f"the service failed this row: {message or 'no message'} (code {code})"
    return Failure(kind, text, _RPC_HTTP.get(code or 0))


def inline_answers(job: types.BatchJob) -> list[Answer]:
    """A finished inline job's rows, as the SDK parsed them."""
    dest = job.dest
    rows = (dest.inlined_responses if dest is not None else None) or []
    answers = []
    for row in rows:
        metadata = getattr(row, "metadata", None) or {}
        key = metadata.get("key") if isinstance(metadata, Mapping) else None
        if row.error is not None:
            answers.append(Answer(key, error=row_error(row.error)))
        elif row.response is not None:
            answers.append(Answer(key, reply=reply_from_response(row.response)))
        else:
            answers.append(Answer(key, error=Failure("malformed_response", "empty row", 200)))
    return answers


def file_answers(data: bytes) -> list[Answer]:
    """A finished file job's output JSONL: one answer per line (`key` + response or error),
    read a line at a time (no second copy of the whole file)."""
    answers = []
    for number, raw in enumerate(io.BytesIO(data), 1):
        line = raw.decode("utf-8", "replace")
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            failure = Failure("malformed_response", f"output line {number} is not JSON", 200)
            answers.append(Answer(None, error=failure))
            continue
        if not isinstance(row, Mapping):
            answers.append(Answer(None, error=Failure("malformed_response", "not a row", 200)))
            continue
        metadata = row.get("metadata")
        key = row.get("key") or (metadata.get("key") if isinstance(metadata, Mapping) else None)
        key = None if key is None else str(key)
        error = row.get("error") or row.get("status")
        if error:
            answers.append(Answer(key, error=row_error(error)))
            continue
        body = row.get("response", row if "candidates" in row else None)
        if not isinstance(body, Mapping):
            failure = Failure("malformed_response", f"output line {number} has no response", 200)
            answers.append(Answer(key, error=failure))
            continue
        parsed = sdk_batches._GenerateContentResponse_from_mldev(dict(body))
        response = types.GenerateContentResponse._from_response(response=parsed, kwargs={})
        answers.append(Answer(key, reply=reply_from_response(response)))
    return answers


def match(
    request_ids: Sequence[str], answers: Sequence[Answer], *, by_position: bool = False
) -> tuple[dict[str, Answer], str]:
    """Answers by request id, and how they were matched (see the module docstring);
    `by_position` allows the documented order to pair answers that carry no key at all."""
    wanted = set(request_ids)
    keyed = [a for a in answers if a.key is not None]
    keyless = [a for a in answers if a.key is None]
    if not keyed:
        if by_position and len(answers) == len(request_ids):
            return dict(zip(request_ids, answers, strict=True)), "position"
        return {}, "unmatched"
    found = {a.key: a for a in keyed if a.key in wanted}
    if not keyless:
        return found, "key"
    left = [i for i in request_ids if i not in found]
    if len(left) == 1 and len(keyless) == 1:
        found[left[0]] = keyless[0]
    return found, "mixed"


@dataclass(frozen=True, slots=True)
class Outcome:
    """A request's result with its rows for `ai_api_call` and `result`."""

    result: Result
    call: dict[str, Any] | None  # None when nothing reached the service for it
    row: dict[str, Any]


def outcomes(
    job: JobRow,
    requests: Mapping[str, LoggedRequest],
    answers: Sequence[Answer] | None,
    spec: ModelSpec,
    *,
    store_text: bool,
    package_version: str,
    sdk_version: str,
    by_position: bool = False,
    now: float | None = None,
) -> tuple[Iterator[Outcome], str]:
    """Every request of `job` as an outcome, and how the answers were matched (`by_position`
    as in `match`); answers None means the job gave none. The outcomes are made as they are
    consumed: a job can hold hundreds of thousands of requests, and their rows are written a
    slice at a time."""
    now = time.time() if now is None else now
    found, matched_by = (
        match(job.request_ids, answers, by_position=by_position) if answers else ({}, "none")
    )
    made = _outcomes(
        job,
        requests,
        found,
        _missing(job, matched_by, answers),
        spec,
        now=now,
        store_text=store_text,
        package_version=package_version,
        sdk_version=sdk_version,
    )
    return made, matched_by


def _outcomes(
    job: JobRow,
    requests: Mapping[str, LoggedRequest],
    found: Mapping[str, Answer],
    unanswered: Failure,
    spec: ModelSpec,
    *,
    now: float,
    store_text: bool,
    package_version: str,
    sdk_version: str,
) -> Iterator[Outcome]:
    latency_ms = None if job.turnaround_s is None else job.turnaround_s * 1000
    started = job.submitted_at or now
    ended = job.finished_at or now
    for request_id in job.request_ids:
        logged = requests[request_id]
        tags = recorder.RequestTags(
            logged.cache_key, logged.operation, logged.project_id, logged.template_hash
        )
        answer = found.get(request_id)
        usage = Usage()
        text = finish = version = None
        data = None
        failure: Failure | None
        if answer is None:
            failure = unanswered
        elif answer.error is not None:
            failure = answer.error
        else:
            reply = answer.reply
            assert reply is not None
            usage, text, finish, version = (
                reply.usage.billable,  # impossible figures: judged malformed, billed as nothing
                reply.text,
                reply.finish_reason,
                reply.model_version,
            )
            verdict = judge_reply(reply, logged.schema)
            failure, data = verdict.failure, verdict.data
        cost = spec.cost_usd(usage, batch=True, at=started)  # the price of the submission day
        sent = answer is not None
        result = Result(
            id=request_id,
            index=logged.index,
            success=failure is None,
            text=text,
            data=data,
            error=failure,
            finish_reason=finish,
            model=spec.name if sent else None,
            attempts=1 if sent else 0,
            usage=usage,
            cost_usd=cost,
            latency_ms=latency_ms if sent else None,
            queue_ms=0.0 if sent else None,
            model_version=version,
            metadata=logged.metadata,
        )
        call = None
        if sent:
            attempt = Attempt(
                request_id,
                logged.index,
                1,
                spec.name,
                result.success,
                failure,
                usage,
                cost,
                result.latency_ms,  # type: ignore[arg-type]  # NULL when the turnaround is unknown
                started,
                ended,
                finish,
                version,
            )
            call = recorder.call_row(job.batch_id, attempt, tags, package_version, sdk_version)
        row = recorder.result_row(job.batch_id, result, logged.cache_key, store_text, now)
        yield Outcome(result, call, row)


def _missing(job: JobRow, matched_by: str, answers: Sequence[Answer] | None) -> Failure:
    if job.state == "JOB_STATE_FAILED":
        why = job.error or "the service reports the job failed"
        return Failure("server_error", f"the Batch API job failed: {why}")
    if job.state in ("JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"):
        what = "cancelled" if job.state == "JOB_STATE_CANCELLED" else "expired before it ran"
        why = f" ({job.error})" if job.error else ""
        return Failure("not_run", f"the Batch API job was {what}{why}; run the request again")
    if not answers and job.error:  # its results were lost (an expired or deleted file)
        return Failure(
            "server_error", f"the Batch API job ran but {job.error}; run the request again"
        )
    if not answers:
        return Failure("malformed_response", "the finished job returned no answers", 200)
    return Failure(
        "unmatched",
        f"no answer of the job carried this request's key ({matched_by}: {len(answers)} "
        f"answers for {job.request_count} requests, some without their key); nothing was "
        "guessed, run it again (`BatchApiSettings(match_by_position=True)` trusts the "
        "answers' order instead)",
        200,
    )
