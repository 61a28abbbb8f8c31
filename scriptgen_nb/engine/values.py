"""The engine's values: requests, usage, failures, attempts, results, and the events it emits.

Everything here is a frozen, slotted dataclass: values are shared between the engine's tasks and
its listeners (the progress panel, the DuckDB recorder, a terminal bar), and nobody may change
them after the fact. This module imports nothing from the rest of the package.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

# A response schema: a Pydantic model class or a JSON Schema dict.
Schema = Any

FailureKind = Literal[
    "rate_limited",  # 429 per-minute (requests or tokens): retried after the server's delay
    "quota_exhausted",  # 429 per-day: the model is out until its reset
    "server_error",  # 5xx
    "timeout",  # no answer within the per-request timeout
    "connection",  # refused, reset or dropped connection
    "malformed_response",  # the service answered 200 with a body that is not a response
    "invalid_json",  # a schema was asked for and the text is not valid JSON for it
    "truncated",  # finish reason MAX_TOKENS: billed, not retried
    "blocked",  # safety or prompt block: billed, not retried
    "invalid_request",  # 400
    "permission_denied",  # 403
    "not_found",  # 404
    "too_large",  # the prompt exceeds every candidate model's input or per-minute token limit
    "not_run",  # never sent or never finished: cancelled, all models exhausted, budget reached
]


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """One prompt to generate for, with everything that shapes its answer.

    `model` pins the request to one model (no rotation); otherwise the batch's ladder applies.
    `metadata` is free-form and travels to the result untouched (e.g. a chapter number).
    """

    id: str
    prompt: str
    operation: str = "GENERATE"
    project_id: str | None = None
    system: str | None = None
    schema: Schema = None
    temperature: float | None = None
    max_output_tokens: int | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    stop_sequences: tuple[str, ...] = ()
    thinking_budget: int | None = None
    safety_settings: tuple[Mapping[str, str], ...] = ()
    model: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts as the service reported them; thoughts are billed as output."""

    input: int = 0
    output: int = 0
    thoughts: int = 0

    @property
    def total(self) -> int:
        return self.input + self.output + self.thoughts

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input + other.input, self.output + other.output, self.thoughts + other.thoughts
        )


@dataclass(frozen=True, slots=True)
class Failure:
    """Why an attempt or a request did not succeed: a kind to branch on and a message to read."""

    kind: FailureKind
    message: str
    http_status: int | None = None

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


@dataclass(frozen=True, slots=True)
class Reply:
    """What a backend returns for one successful HTTP exchange (before the engine judges it)."""

    text: str | None
    finish_reason: str | None
    usage: Usage
    model_version: str | None = None
    response_id: str | None = None
    block_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Attempt:
    """One call to the service for one request: the unit the call log records."""

    request_id: str
    index: int
    number: int
    model: str
    success: bool
    failure: Failure | None
    usage: Usage
    cost_usd: float
    latency_ms: float
    started_at: float  # wall-clock seconds since the epoch
    finished_at: float
    finish_reason: str | None = None
    model_version: str | None = None
    retry_delay_s: float | None = None
    queue_ms: float = 0.0  # waiting since it was taken up or last requeued, until this send


@dataclass(frozen=True, slots=True)
class Result:
    """The final outcome of one request (seed: `{id, success, data, error, tokens}`)."""

    id: str
    index: int
    success: bool
    text: str | None = None
    data: Any = None
    error: Failure | None = None
    finish_reason: str | None = None
    model: str | None = None
    attempts: int = 0
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    latency_ms: float | None = None
    queue_ms: float | None = None
    model_version: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    cached: bool = False  # served from an earlier run's recorded result, not sent

    @property
    def tokens(self) -> dict[str, int]:
        """The seed's `tokens: {input, output}` view of the usage."""
        return {"input": self.usage.input, "output": self.usage.output}


@dataclass(frozen=True, slots=True)
class ModelHistory:
    """What a model already used before this batch (read from the call log): quota memory.

    `sent` holds (seconds ago, input tokens) for each request still inside the day window;
    `exhausted_for_s` says the model is out of daily quota for that much longer.
    """

    sent: tuple[tuple[float, int], ...] = ()
    exhausted_for_s: float | None = None


# --- events: the seam between the engine and its listeners (DESIGN rule 2) -------------------

ModelState = Literal["ready", "parked", "exhausted", "cooling"]


@dataclass(frozen=True, slots=True)
class BatchStarted:
    batch_id: str
    total: int | None  # None when requests come from a generator of unknown length
    models: tuple[str, ...]
    concurrency: str  # "auto", "fixed" or "seed"
    max_in_flight: int
    started_at: float


@dataclass(frozen=True, slots=True)
class RequestStarted:
    request_id: str
    index: int
    attempt: int
    model: str


@dataclass(frozen=True, slots=True)
class AttemptFinished:
    attempt: Attempt
    will_retry: bool


@dataclass(frozen=True, slots=True)
class ModelStateChanged:
    """A model was parked (per-minute quota), exhausted (per-day quota), cooled or freed."""

    model: str
    state: ModelState
    until_s: float | None  # seconds from now until the model is usable again
    reason: str


@dataclass(frozen=True, slots=True)
class LimitLearned:
    """A 429 arrived while the configured limit said there was room: the engine lowered it."""

    model: str
    metric: Literal["rpm", "tpm", "rpd"]
    configured: int | None
    learned: int


@dataclass(frozen=True, slots=True)
class RequestFinished:
    result: Result
    done: int
    total: int | None


@dataclass(frozen=True, slots=True)
class BatchFinished:
    batch_id: str
    status: Literal["finished", "cancelled", "failed"]
    total: int
    succeeded: int
    failed: int
    not_run: int
    usage: Usage
    cost_usd: float
    duration_s: float
    models_used: tuple[str, ...]


Event = (
    BatchStarted
    | RequestStarted
    | AttemptFinished
    | ModelStateChanged
    | LimitLearned
    | RequestFinished
    | BatchFinished
)

__all__ = [
    "Attempt",
    "AttemptFinished",
    "BatchFinished",
    "BatchStarted",
    "Event",
    "Failure",
    "FailureKind",
    "GenerationRequest",
    "LimitLearned",
    "ModelHistory",
    "ModelState",
    "ModelStateChanged",
    "Reply",
    "RequestFinished",
    "RequestStarted",
    "Result",
    "Schema",
    "Usage",
]
