"""The engine's values: requests, usage, failures, attempts, results, and the events it emits.

Everything here is a frozen, slotted dataclass: values are shared between the engine's tasks and
its listeners (the progress panel, the DuckDB recorder, a terminal bar), and nobody may change
them after the fact. A request checks its own fields when it is made, so a bad setting is a
`ConfigurationError` before anything is sent (DESIGN rule 3), never a failure per request. This
module imports nothing from the rest of the package but the exception tree (`errors.py`) and
the number check (`checks.py`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .checks import check_number
from .errors import ConfigurationError

# A response schema: a Pydantic model class or a JSON Schema dict.
Schema = Any

FailureKind = Literal[
    "rate_limited",  # 429 per-minute (requests or tokens): retried after the server's delay
    "quota_exhausted",  # 429 per-day: the model is out until its reset
    "server_error",  # 5xx
    "timeout",  # no answer within the per-request timeout
    "connection",  # refused, reset or dropped connection
    "malformed_response",  # a 200 whose body is not a response, or whose usage is impossible
    "invalid_json",  # a schema was asked for and the text is not valid JSON for it
    "truncated",  # finish reason MAX_TOKENS: billed, not retried
    "blocked",  # safety or prompt block: billed, not retried
    "unsupported_language",  # finish reason LANGUAGE: billed, not retried
    "unexpected_finish",  # OTHER, MALFORMED_FUNCTION_CALL or an unknown reason: retried
    "invalid_request",  # 400
    "permission_denied",  # 403
    "not_found",  # 404: the model is gone (it leaves the ladder), or a pinned request's model
    "billing",  # 429 "prepayment credits are depleted" and other billing stops: the batch ends
    "too_large",  # the prompt exceeds every candidate model's input or per-minute token limit
    "unmatched",  # a Batch API answer that carried no key to match it to its request
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
    thinking_level: str | None = None  # Gemini 3.x: minimal | low | medium | high
    safety_settings: tuple[Mapping[str, str], ...] = ()
    model: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_request(self)


# Gemini's documented ranges; a value outside them would only come back as a 400 per request.
TEMPERATURE_RANGE = (0.0, 2.0)
TOP_P_RANGE = (0.0, 1.0)
MAX_STOP_SEQUENCES = 5
# Gemini 3.x's thinking levels (google-genai's ThinkingLevel, lower-cased); not every model takes
# every level (a Pro model: low and high), which the service answers with a 400 per request.
THINKING_LEVELS = ("minimal", "low", "medium", "high")
SEED_RANGE = (-(2**31), 2**31 - 1)  # the API's seed is an int32
SAFETY_FIELDS = frozenset({"category", "threshold", "method"})


def _check_request(request: GenerationRequest) -> None:
    """Refuse a request the service could never accept, naming the field and what to do."""
    where = f"Request {request.id!r}" if isinstance(request.id, str) else "A request"
    if not isinstance(request.id, str) or not request.id:
        raise ConfigurationError(
            f"A request's id must be a non-empty string, not {request.id!r}; create requests "
            "with create_batch_requests (it turns integer ids into strings)."
        )
    for name in _TEXT_FIELDS:
        check_encodable(getattr(request, name), name, where)
    if not isinstance(request.prompt, str):
        raise ConfigurationError(
            f"{where}: the prompt is a {type(request.prompt).__name__}, not text; pass a string."
        )
    if not request.prompt.strip():
        raise ConfigurationError(f"{where}: the prompt is empty; every request needs text.")
    if not isinstance(request.operation, str) or not request.operation.strip():
        raise ConfigurationError(
            f"{where}: operation must be a non-empty name such as 'GENERATE_SCRIPT', "
            f"not {request.operation!r}."
        )
    for name in ("project_id", "system", "model"):
        value = getattr(request, name)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ConfigurationError(
                f"{where}: {name} must be a non-empty string or None, not {value!r}."
            )
    _check_real(request, where, "temperature", TEMPERATURE_RANGE)
    _check_real(request, where, "top_p", TOP_P_RANGE)
    _check_int(request, where, "max_output_tokens", 1, None)
    _check_int(request, where, "top_k", 1, None)
    _check_int(request, where, "seed", *SEED_RANGE)
    _check_int(request, where, "thinking_budget", -1, None)
    _check_thinking_level(request, where)
    object.__setattr__(request, "stop_sequences", _stop_sequences(request, where))
    object.__setattr__(request, "safety_settings", _safety_settings(request, where))
    if not isinstance(request.metadata, Mapping):
        raise ConfigurationError(
            f"{where}: metadata must be a mapping (a dict), not {type(request.metadata).__name__}."
        )


def _check_real(
    request: GenerationRequest, where: str, name: str, bounds: tuple[float, float]
) -> None:
    value = getattr(request, name)
    low, high = bounds
    check_number(name, value, low=low, high=high, optional=True, where=f"{where}: ")
    if value is not None and type(value) not in (int, float):  # e.g. numpy.float64
        object.__setattr__(request, name, float(value))  # stored and keyed as a float


def _check_int(
    request: GenerationRequest, where: str, name: str, low: int, high: int | None
) -> None:
    value = getattr(request, name)
    check_number(name, value, low=low, high=high, whole=True, optional=True, where=f"{where}: ")
    if value is not None and type(value) is not int:  # e.g. numpy.int64
        object.__setattr__(request, name, int(value))


def _check_thinking_level(request: GenerationRequest, where: str) -> None:
    """A known level, stored lower-cased; never beside a thinking budget (the service answers
    "thinking_budget and thinking_level are not supported together" with a 400)."""
    level = request.thinking_level
    if level is None:
        return
    if not isinstance(level, str) or level.strip().lower() not in THINKING_LEVELS:
        raise ConfigurationError(
            f"{where}: thinking_level={level!r} is not one; use {', '.join(THINKING_LEVELS)} "
            "(Gemini 3.x models), or None for the model's default."
        )
    if request.thinking_budget is not None:
        raise ConfigurationError(
            f"{where}: thinking_level and thinking_budget cannot be set together (Gemini "
            "refuses both); use thinking_level for Gemini 3.x models, thinking_budget for 2.5."
        )
    object.__setattr__(request, "thinking_level", level.strip().lower())


def _stop_sequences(request: GenerationRequest, where: str) -> tuple[str, ...]:
    value: Any = request.stop_sequences
    if isinstance(value, str):
        raise ConfigurationError(
            f"{where}: stop_sequences is one string ({value!r}); pass a list of strings, "
            f"e.g. [{value!r}]."
        )
    if not isinstance(value, list | tuple) or not all(isinstance(s, str) and s for s in value):
        raise ConfigurationError(
            f"{where}: stop_sequences must be a list of non-empty strings, not {value!r}."
        )
    if len(value) > MAX_STOP_SEQUENCES:
        raise ConfigurationError(
            f"{where}: {len(value)} stop_sequences; Gemini accepts at most {MAX_STOP_SEQUENCES}."
        )
    return tuple(value)


def _safety_settings(request: GenerationRequest, where: str) -> tuple[Mapping[str, str], ...]:
    value: Any = request.safety_settings
    example = "{'category': 'HARM_CATEGORY_HARASSMENT', 'threshold': 'BLOCK_ONLY_HIGH'}"
    if not isinstance(value, list | tuple):
        raise ConfigurationError(
            f"{where}: safety_settings must be a list of mappings such as {example}, not {value!r}."
        )
    for setting in value:
        if (
            not isinstance(setting, Mapping)
            or not {"category", "threshold"} <= set(setting)
            or not set(setting) <= SAFETY_FIELDS
            or not all(isinstance(v, str) and v for v in setting.values())
        ):
            raise ConfigurationError(
                f"{where}: the safety setting {setting!r} is not one; each needs a category and "
                f"a threshold (and optionally a method) as strings, e.g. {example}."
            )
    return tuple(value)


# Every field whose text is sent, hashed or logged (the schema is checked with its JSON Schema,
# `verdict.json_schema_of`).
_TEXT_FIELDS = (
    "id",
    "prompt",
    "operation",
    "project_id",
    "system",
    "model",
    "stop_sequences",
    "safety_settings",
    "metadata",
)
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def check_encodable(value: object, name: str, where: str) -> None:
    """Refuse text (also inside mappings, lists and tuples) holding a lone surrogate, naming
    where it is: UTF-8 cannot encode one, so the request could be neither hashed, logged nor
    sent. Text decoded with errors="surrogateescape", or JSON with an unpaired "\\ud800" escape,
    brings them in."""
    problem = surrogate_problem(value, name)
    if problem is None:
        return
    raise ConfigurationError(
        f"{where}: {problem}, so it can be neither sent nor logged. Decode the source as UTF-8 "
        "(a file read with errors='surrogateescape' or JSON with an unpaired \\ud800 escape "
        "brings them), or clean the text: text.encode('utf-8', 'replace').decode()."
    )


def surrogate_problem(value: object, name: str) -> str | None:
    """What is wrong with `value` (named `name`) if it holds text UTF-8 cannot encode: "NAME
    holds a lone surrogate (U+DC80) at character 3, which UTF-8 cannot encode"; else None.
    For checks that say it their own way (a file path, an outline's rows)."""
    found = _lone_surrogate(value, name)
    if found is None:
        return None
    path, char, position = found
    return (
        f"{path} holds a lone surrogate (U+{ord(char):04X}) at character {position}, which "
        "UTF-8 cannot encode"
    )


def _lone_surrogate(value: object, path: str) -> tuple[str, str, int] | None:
    """(where, the surrogate, its 1-based character) of the first lone surrogate, or None."""
    if isinstance(value, str):
        match = _SURROGATE.search(value)
        return None if match is None else (path, match.group(), match.start() + 1)
    if isinstance(value, Mapping):
        parts = [(f"a key of {path}", k) for k in value]
        parts += [(f"{path}[{k!r}]", v) for k, v in value.items()]
    elif isinstance(value, list | tuple):
        parts = [(f"{path}[{i}]", item) for i, item in enumerate(value)]
    else:
        return None
    for where, part in parts:
        found = _lone_surrogate(part, where)
        if found is not None:
            return found
    return None


# More tokens than any one call can use (input limits are about 1M): a figure above it is garbage.
ABSURD_TOKENS = 10_000_000


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts as the service reported them; thoughts are billed as output.

    `cached` (`cachedContentTokenCount`: input served from Google's implicit or explicit
    context cache, billed at the cached-input price) is part of `input`, not added to it. Not
    to be confused with `Result.cached` (an answer served from the call log, not sent).
    """

    input: int = 0
    output: int = 0
    thoughts: int = 0
    cached: int = 0

    @property
    def total(self) -> int:
        return self.input + self.output + self.thoughts

    @property
    def problem(self) -> str | None:
        """Why these figures cannot be true (negative, cached beyond the input, absurdly
        large), or None. A reply reporting such usage is malformed and is billed as nothing."""
        for name in ("input", "output", "thoughts", "cached"):
            value = getattr(self, name)
            if value < 0:
                return f"{name} tokens {value} are negative"
            if value > ABSURD_TOKENS:
                return f"{name} tokens {value:,} exceed {ABSURD_TOKENS:,}"
        if self.cached > self.input:
            return f"cached tokens {self.cached:,} exceed the input tokens {self.input:,}"
        return None

    @property
    def billable(self) -> Usage:
        """These figures, or no usage at all when they are impossible (`problem`)."""
        return self if self.problem is None else Usage()

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input + other.input,
            self.output + other.output,
            self.thoughts + other.thoughts,
            self.cached + other.cached,
        )


@dataclass(frozen=True, slots=True)
class Failure:
    """Why an attempt or a request did not succeed: a kind to branch on and a message to read."""

    kind: FailureKind
    message: str
    http_status: int | None = None

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


# How a request left out by the batch's budget is told apart from one cancelled or left out
# when every model was exhausted (all three are `not_run`): its message starts with this.
BUDGET_REACHED = "the budget of $"


def budget_reached(budget_usd: float, spent_usd: float, next_usd: float) -> Failure:
    """Why the requests left when the budget stopped admission were not run."""
    return Failure(
        "not_run",
        f"{BUDGET_REACHED}{budget_usd:.4f} would be crossed: ${spent_usd:.4f} spent, and the "
        f"next request may cost up to ${next_usd:.4f}",
    )


def stopped_by_budget(failure: Failure | None) -> bool:
    """Whether `failure` is a request the batch's budget left out (see `budget_reached`)."""
    return (
        failure is not None
        and failure.kind == "not_run"
        and failure.message.startswith(BUDGET_REACHED)
    )


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
    cost_usd: float | None  # None: the model's price is unknown (never billed as $0)
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
    cost_usd: float | None = 0.0  # every billed attempt; None when a price was unknown
    latency_ms: float | None = None
    queue_ms: float | None = None
    model_version: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    cached: bool = False  # served from an earlier run's recorded result, not sent
    simulated: bool = False  # answered by an emulator (or its cache), not by the real service

    @property
    def tokens(self) -> dict[str, int]:
        """The seed's `tokens: {input, output}` view of the usage."""
        return {"input": self.usage.input, "output": self.usage.output}


# Where a working limit came from: "stated" (a 429's quotaValue), "message" (the 429's message
# says "limit: N"), "lowered" (a QuotaFailure without a figure: multiplicative decrease),
# "recovered" (additive increase once the 429s stopped), "raised" (discovery: the window filled
# without a 429), "remembered" (an earlier batch learned it at this endpoint and key), "shared"
# (another process at this quota learned it just now, through the shared quota ledger).
LimitSource = Literal["stated", "message", "lowered", "recovered", "raised", "remembered", "shared"]


@dataclass(frozen=True, slots=True)
class RememberedLimit:
    """A limit an earlier batch learned at this quota identity, and how it learned it.

    The source decides how far it is trusted: a limit the service stated (or lowered with its
    429s) is known, probed above only one request at a time; one that was only "raised" by the
    earlier batch's own demand, never refused, is a floor, grown from as fast as a guess is.
    """

    value: int
    source: LimitSource


@dataclass(frozen=True, slots=True)
class ModelHistory:
    """What a model already used before this batch (read from the call log): quota memory.

    `sent` holds (seconds ago, input tokens) for each request still inside the day window;
    `exhausted_for_s` says the model is out of daily quota for that much longer.
    """

    sent: tuple[tuple[float, int], ...] = ()
    exhausted_for_s: float | None = None
    # Limits learned for this model at this quota identity (endpoint and key fingerprint) by
    # earlier batches, by metric ("rpm", "tpm", "rpd"); a batch starts from them.
    limits: Mapping[str, RememberedLimit] = field(default_factory=dict)


# --- events: the seam between the engine and its listeners (DESIGN rule 2) -------------------

# "backing_off": 429s without details (overload of unknown size); "gone": the model is retired
# or not supported (404), and it has left this batch's ladder.
ModelState = Literal["ready", "parked", "exhausted", "cooling", "backing_off", "gone"]


@dataclass(frozen=True, slots=True)
class BatchStarted:
    batch_id: str
    total: int | None  # None when requests come from a generator of unknown length
    models: tuple[str, ...]
    concurrency: str  # "auto", "fixed" or "seed"
    max_in_flight: int
    started_at: float
    notices: tuple[str, ...] = ()  # retired models named, unknown prices, models left out


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
    """The engine's working limit for a model and metric changed; `source` says why."""

    model: str
    metric: Literal["rpm", "tpm", "rpd"]
    configured: int | None
    learned: int
    source: LimitSource = "stated"


@dataclass(frozen=True, slots=True)
class QuotaShared:
    """How many other processes pace with this batch through the shared quota ledger
    (engine/ledger.py) changed; or, with `failed`, the ledger failed and the batch paces alone."""

    processes: int  # other processes using this quota now
    ledger: str  # where the ledger is (a file, or a Redis URL without its password)
    failed: str | None = None


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
    | QuotaShared
    | RequestFinished
    | BatchFinished
)

__all__ = [
    "BUDGET_REACHED",
    "Attempt",
    "AttemptFinished",
    "BatchFinished",
    "BatchStarted",
    "Event",
    "Failure",
    "FailureKind",
    "GenerationRequest",
    "LimitLearned",
    "LimitSource",
    "ModelHistory",
    "ModelState",
    "ModelStateChanged",
    "QuotaShared",
    "Reply",
    "RequestFinished",
    "RequestStarted",
    "Result",
    "Schema",
    "Usage",
    "budget_reached",
    "stopped_by_budget",
]
