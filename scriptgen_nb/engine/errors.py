"""The exceptions scriptgen_nb raises, and the typed error a backend reports for one call.

A failed *request* is data (`values.Failure` on its `Result`), never an exception. Exceptions
escape only for misuse and configuration problems, and each says what to do::

    ScriptgenError
    ├── ConfigurationError          bad arguments, unreadable catalogue, ...   (also a ValueError)
    │   ├── MissingApiKeyError      no GEMINI_API_KEY / GOOGLE_API_KEY and no emulator URL
    │   ├── InvalidApiKeyError      the service rejected the key: the batch stops at once
    │   ├── ServiceRefusedError     billing stopped, key suspended, API disabled, location:
    │   │                           no wait fixes it, so the batch stops at once
    │   ├── UnknownModelError       a model name neither the endpoint nor the catalogue knows
    │   ├── EndpointGoneError       nothing answers where a Batch API batch was sent (an
    │   │                           emulator that stopped): resuming it cannot go on
    │   └── RequestRefused          a generator's request refused when reached; those taken
    │                               before it ran to their end; carries `.results`
    └── BatchInterrupted            Ctrl-C / kernel interrupt / cancel; carries `.results`
        └── CallLogFailed           the call log could not be written, or stayed held (store/)

`BackendError` is not part of the public tree: the backend raises it at the boundary, converting
the SDK's and the transport's exceptions into one shape the retry policy reads. Nor is
`QuotaLedgerError`, which the engine catches to pace alone when a shared quota ledger fails.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from .values import FailureKind, Result


class ScriptgenError(Exception):
    """Base class of every exception scriptgen_nb raises on purpose."""


class ConfigurationError(ScriptgenError, ValueError):
    """The call cannot run as configured; the message says what to change."""


class MissingApiKeyError(ConfigurationError):
    """No key to send with. `base_url`: the endpoint the call was to go to (a base URL given,
    or GOOGLE_GEMINI_BASE_URL), None for Google; the message says which, since advice to run on
    an emulator misleads a user whose base URL already names one."""

    def __init__(self, base_url: str | None = None) -> None:
        self.base_url = base_url
        if base_url is not None:
            super().__init__(
                f"No Gemini API key to send to {base_url} (the base URL given, or "
                "GOOGLE_GEMINI_BASE_URL): set GEMINI_API_KEY (or GOOGLE_API_KEY) to a key that "
                "endpoint accepts (an emulator from `scriptgen emulator` takes any non-empty "
                "key unless started with --api-key), or pass api_key=..."
            )
            return
        super().__init__(
            "No Gemini API key found. Set GEMINI_API_KEY (or GOOGLE_API_KEY), pass api_key=..., "
            "or run against the local emulator: `with scriptgen_nb.Emulator() as emu: "
            "batch_generate(..., base_url=emu.base_url, api_key='test-key')` "
            "(or `scriptgen demo`, which starts it for you)."
        )


class InvalidApiKeyError(ConfigurationError):
    def __init__(self, detail: str) -> None:
        super().__init__(
            f"The service rejected the API key ({detail}). Check GEMINI_API_KEY / GOOGLE_API_KEY "
            "or the api_key argument; the batch was stopped before sending more requests."
        )


RefusalReason = Literal["billing", "permission", "location"]

_REFUSAL_ADVICE: dict[str, str] = {
    "billing": "This is a billing stop, not a rate limit: no wait fixes it. Add credits or fix "
    "the project's billing in AI Studio (https://aistudio.google.com), then re-run.",
    "permission": "The key or its project may not call the Gemini API (a suspended or disabled "
    "key, or the API not enabled for the project). Check it in AI Studio or the Cloud console, "
    "then re-run.",
    "location": "The service does not serve requests from this location for this project. "
    "Enable billing for the project, or run from a supported region, then re-run.",
}


class ServiceRefusedError(ConfigurationError):
    """The service refuses every call of this project; `reason` says which kind of refusal."""

    def __init__(self, reason: RefusalReason, detail: str) -> None:
        super().__init__(
            f"The Gemini API refused to serve this project ({reason}): {detail} "
            f"{_REFUSAL_ADVICE[reason]} The batch stopped; what did not run is marked not_run "
            "and a re-run sends only that."
        )
        self.reason = reason


class UnknownModelError(ConfigurationError):
    """A name neither the endpoint's model list nor the catalogue knows; `close` are the known
    names nearest to it (a likely typo). `name`, `known` and `close` stay on the exception, so a
    command can say it in its own words."""

    def __init__(self, name: str, known: Sequence[str], *, close: Sequence[str] = ()) -> None:
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        shown = ", ".join(known[:40]) + (f", … ({len(known)} in all)" if len(known) > 40 else "")
        super().__init__(
            f"Unknown model {name!r}; nothing was sent.{hint} Known models: {shown}. Pass a "
            "ModelSpec for it (scriptgen_nb.ModelSpec(name=..., rpm=..., ...)) or add it to a "
            "catalogue file (SCRIPTGEN_CATALOGUE)."
        )
        self.name = name
        self.known = tuple(known)
        self.close = tuple(close)


class EndpointGoneError(ConfigurationError):
    """Nothing answers (connection refused) at `base_url`, where a Batch API batch was sent.

    An emulator keeps its jobs in memory, so when it has stopped (`lost`) they are gone and
    the batch's open jobs were recorded ended, their requests not run (for a retry); any other
    endpoint (a proxy in front of Google) may come back, and a resume then goes on.
    """

    def __init__(self, base_url: str, batch_id: str | None = None, *, lost: bool = False) -> None:
        batch = f"batch {batch_id}" if batch_id else "the batch"
        if lost:
            then = (
                "it was a local emulator, whose jobs end when it stops, so they cannot be "
                f"collected: their requests are in the call log as not run, and `scriptgen "
                f"retry {batch_id}` (`%scriptgen retry --batch {batch_id}`) runs them again."
            )
        else:
            then = "start it again and resume, or pass base_url= where the batch can be reached."
        super().__init__(
            f"Nothing answers at {base_url}, where {batch}'s Batch API jobs were sent "
            f"(connection refused): {then}"
        )
        self.base_url = base_url
        self.batch_id = batch_id
        self.lost = lost


class RequestRefused(ConfigurationError):
    """A request from a generator was refused when the batch reached it (a bad setting, text
    that cannot be encoded). The batch took nothing after it and let the requests taken before
    it run to their end, so calls already paid for are not cut off; `.results` holds theirs
    (empty from `iter_generate` and `aiter_generate`, which yielded them). `refusal` is the
    request's own error."""

    def __init__(
        self, refusal: ConfigurationError, taken: int, results: Sequence[Result] = ()
    ) -> None:
        if not taken:
            after = "Nothing was sent."
        else:
            kept = "are in this exception's .results" if results else "were handed out"
            after = (
                f"The batch took no request after it; the {taken} taken before it ran to their "
                f"end and their results {kept} (and are in the call log, if one is kept, so a "
                "re-run with the request fixed does not pay for them again)."
            )
        super().__init__(f"{refusal} {after}")
        self.refusal = refusal
        self.taken = taken
        self.results = list(results)


class BatchInterrupted(ScriptgenError):
    """The batch was interrupted; `.results` holds every request, unfinished ones as not run;
    `.reason` says what stopped it (the message's start, which the terminal words its own way);
    `.done` counts the requests that finished."""

    def __init__(self, results: Sequence[Result], reason: str = "Batch interrupted") -> None:
        self.done = sum(1 for r in results if r.error is None or r.error.kind != "not_run")
        super().__init__(
            f"{reason} after {self.done} of {len(results)} requests; the rest are marked "
            "not_run. The finished results are in this exception's .results."
        )
        self.results = list(results)
        self.reason = reason


class BatchApiWaitFailed(BatchInterrupted):
    """Waiting for Batch API jobs gave up: the service kept failing to report a job (or to hand
    over its results) past the bounds of `BatchApiSettings`. The jobs are left as they are at
    the service and in the log, so `resume_batch_job` (`scriptgen jobs resume`) tries again
    later; `.results` and `.reason` as for `BatchInterrupted`."""


QuotaScope = Literal["minute", "day", "tokens"]


@dataclass(frozen=True, slots=True)
class QuotaViolation:
    """One entry of a 429's `google.rpc.QuotaFailure`, reduced to what the engine acts on."""

    quota_id: str
    scope: QuotaScope
    limit: int | None  # `quotaValue`, which the service sometimes omits
    from_message: bool = False  # the limit was read from the message, not quotaValue


@dataclass(frozen=True)
class BackendError(Exception):
    """One failed call, as the backend saw it, in a transport-independent shape.

    `retry_delay_s` is the server's `RetryInfo.retryDelay`; `violations` its `QuotaFailure`.
    `refusal` marks a refusal of the whole project (billing, permission, location) and
    `model_gone` a model the service no longer serves (404, or "not supported").
    """

    kind: FailureKind
    message: str
    http_status: int | None = None
    retry_delay_s: float | None = None
    violations: tuple[QuotaViolation, ...] = ()
    api_key_invalid: bool = False
    refusal: RefusalReason | None = None
    model_gone: bool = False

    def __str__(self) -> str:
        status = f"HTTP {self.http_status} " if self.http_status else ""
        return f"{status}{self.kind}: {self.message}"


class QuotaLedgerError(Exception):
    """The shared quota ledger (engine/ledger.py) failed: its file or server cannot be used.

    Not part of the public tree: the engine catches it, says so once and paces alone, as it
    would without a ledger (a failing ledger must not stop a batch the service would serve).
    """
