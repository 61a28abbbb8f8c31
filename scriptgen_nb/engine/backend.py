"""Backends: how one request becomes one call. `GeminiBackend` speaks google-genai; `FakeBackend`
answers from a script for unit tests.

The backend is the boundary where the SDK's and the transport's exceptions become one typed
`BackendError` (kind, HTTP status, retryDelay, quota violations), so the retry policy never sees
google-genai or httpx2 types. The SDK's own retries are off (`HttpRetryOptions(attempts=1)`): the
engine decides every retry. The client is created lazily inside the event loop that uses it, and
its connection pool is sized to the engine's in-flight cap. Imports nothing outside `engine/`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import re
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from contextvars import ContextVar
from typing import Any, Protocol

import httpx2
from google.genai import Client, errors, types
from pydantic import ValidationError as PydanticValidationError

from .errors import BackendError
from .identity import checked_api_key, redacted
from .policy import ERROR_INFO, read_error_details, retry_delay_from_message
from .values import FailureKind, GenerationRequest, Reply, Usage
from .verdict import json_schema_of

GOOGLE_ENDPOINT = "google"
# The Gemini API version every client of the package speaks (explicit `api_version=` wins).
# google-genai 3.x defaults to v1, but the Batch and Files APIs are documented only under v1beta
# and v1 rejects fields the SDK writes (js-genai#1746): one version everywhere.
API_VERSION = "v1beta"

# Set by the engine in each attempt's task; a backend calls `mark_sent()` the moment the request
# goes on the wire, so the rate windows are stamped when the service will count the request.
SEND_HOOK: ContextVar[Callable[[], None] | None] = ContextVar("scriptgen_send_hook", default=None)


def mark_sent() -> None:
    hook = SEND_HOOK.get()
    if hook is not None:
        hook()


class Backend(Protocol):
    """Sends one request to one model and returns the reply or raises `BackendError`."""

    @property
    def endpoint(self) -> str:
        """Where calls go: "google" or the base URL of an emulator (part of cache keys)."""
        ...

    async def open(self) -> None:
        """Prepare clients and pools on the running loop before the first request."""
        ...

    async def generate(self, request: GenerationRequest, model: str) -> Reply: ...

    async def aclose(self) -> None: ...


def generation_config(request: GenerationRequest) -> types.GenerateContentConfig | None:
    """The SDK config for a request; unset fields stay unset so the service's defaults apply.

    None when the request sets nothing: the SDK spends about half a millisecond of CPU turning
    any config into its wire form, which is most of its per-call cost for a bare prompt. The
    timeout is the client's (set once in `GeminiBackend`), not repeated per call.
    """
    config: dict[str, Any] = {
        "system_instruction": request.system,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "top_k": request.top_k,
        "max_output_tokens": request.max_output_tokens,
        "seed": request.seed,
        "stop_sequences": list(request.stop_sequences) or None,
    }
    if request.thinking_budget is not None:
        config["thinking_config"] = types.ThinkingConfig(thinking_budget=request.thinking_budget)
    if request.thinking_level is not None:
        level = types.ThinkingLevel(request.thinking_level.upper())
        config["thinking_config"] = types.ThinkingConfig(thinking_level=level)
    if request.safety_settings:
        config["safety_settings"] = [
            types.SafetySetting.model_validate(s) for s in request.safety_settings
        ]
    if request.schema is not None:
        config["response_mime_type"] = "application/json"
        config["response_json_schema"] = json_schema_of(request.schema)
    settings = {k: v for k, v in config.items() if v is not None}
    return types.GenerateContentConfig(**settings) if settings else None


def _enum_name(value: Any) -> str | None:
    if value is None:
        return None
    return str(getattr(value, "name", value))


def reply_from_response(response: types.GenerateContentResponse) -> Reply:
    """The reply in a response, as reported: text without thought parts, the finish reason (or
    the prompt's block reason), usage with `cachedContentTokenCount` as `cached` (part of the
    input). Impossible figures are kept as they came; `verdict.judge_reply` calls them out."""
    usage = response.usage_metadata
    candidate = response.candidates[0] if response.candidates else None
    feedback = response.prompt_feedback
    return Reply(
        text=response.text if candidate is not None else None,
        finish_reason=_enum_name(candidate.finish_reason) if candidate else None,
        usage=Usage(
            input=(usage.prompt_token_count or 0) if usage else 0,
            output=(usage.candidates_token_count or 0) if usage else 0,
            thoughts=(usage.thoughts_token_count or 0) if usage else 0,
            cached=(usage.cached_content_token_count or 0) if usage else 0,
        ),
        model_version=response.model_version,
        response_id=response.response_id,
        block_reason=_enum_name(feedback.block_reason) if feedback else None,
    )


_KEY_REASONS = {"API_KEY_INVALID", "API_KEY_EXPIRED", "API_KEY_SERVICE_BLOCKED"}
# A 429 that no wait fixes: the project's money ran out or its billing was stopped. The
# ordinary free-tier 429 ("... please check your plan and billing details") is a rate limit and
# must not match.
_BILLING_STOP = re.compile(
    r"prepayment credits? (?:are|is|have been) depleted|billing (?:account )?(?:is |has been )?"
    r"(?:disabled|closed|suspended)|spend(?:ing)? cap|BILLING_DISABLED",
    re.IGNORECASE,
)
# A model the service no longer serves: "models/x is not found for API version v1beta, or is
# not supported for generateContent", or a 400 saying the model is not supported.
_MODEL_GONE = re.compile(
    r"is not (?:found|supported) for (?:API version|generateContent|streamGenerateContent)"
    r"|model (?:\S+ )?is not supported|model (?:\S+ )?(?:has been|was) (?:shut down|retired)",
    re.IGNORECASE,
)
_LOCATION = re.compile(r"location is not supported|not available in your country", re.IGNORECASE)


def backend_error_from_api_error(exc: errors.APIError) -> BackendError:
    """Convert google-genai's `APIError` (any HTTP status) into a `BackendError`.

    Besides the kind, it marks what the engine must treat apart from a failed request: an
    invalid key, a refusal of the whole project (a billing stop, a suspended or disabled key
    or API, an unsupported location: no wait fixes those), and a model that is gone.
    """
    code = exc.code
    body = exc.details if isinstance(exc.details, Mapping) else {}
    error = body.get("error", {}) if isinstance(body.get("error"), Mapping) else {}
    details = error.get("details") or []
    message = str(exc.message or error.get("message") or exc.status or "")
    status = str(error.get("status") or exc.status or "")
    delay, violations = read_error_details(details if isinstance(details, list) else [], message)
    reasons = {
        d.get("reason") for d in details if isinstance(d, Mapping) and d.get("@type") == ERROR_INFO
    }
    key_problem = bool(reasons & _KEY_REASONS) or (
        code in (400, 401, 403) and ("API key" in message or "unregistered callers" in message)
    )
    if code == 429:
        if not violations and (_BILLING_STOP.search(message) or "BILLING_DISABLED" in reasons):
            return BackendError("billing", message, code, refusal="billing")
        if delay is None:
            delay = retry_delay_from_message(message)
        day = any(v.scope == "day" for v in violations)
        kind: FailureKind = "quota_exhausted" if day else "rate_limited"
        return BackendError(kind, message, code, delay, violations)
    if code == 400:
        if key_problem:
            return BackendError("invalid_request", message, code, api_key_invalid=True)
        if _LOCATION.search(message) or status == "FAILED_PRECONDITION":
            return BackendError("permission_denied", message, code, refusal="location")
        gone = bool(_MODEL_GONE.search(message))
        return BackendError("invalid_request", message, code, model_gone=gone)
    if code in (401, 403):
        if key_problem:
            return BackendError("permission_denied", message, code, api_key_invalid=True)
        if "BILLING_DISABLED" in reasons:
            return BackendError("billing", message, code, refusal="billing")
        return BackendError("permission_denied", message, code, refusal="permission")
    if code == 404:
        return BackendError("not_found", message, code, model_gone=True)
    if code in (408, 504):
        return BackendError("timeout", message, code)
    if code >= 500:
        return BackendError("server_error", message, code, delay)
    return BackendError("invalid_request", message, code)


def backend_error_from(exc: BaseException) -> BackendError:
    """Convert anything a call can raise into a `BackendError` (the boundary)."""
    if isinstance(exc, errors.APIError):
        return backend_error_from_api_error(exc)
    if isinstance(exc, httpx2.TimeoutException | TimeoutError):
        return BackendError("timeout", f"no response in time ({type(exc).__name__})")
    if isinstance(exc, httpx2.TransportError | ConnectionError):
        return BackendError("connection", f"{type(exc).__name__}: {exc}")
    if isinstance(
        exc, errors.UnknownApiResponseError | json.JSONDecodeError | PydanticValidationError
    ):
        return BackendError("malformed_response", f"unreadable response: {exc}"[:500], 200)
    raise exc


def scrubbed(error: BackendError, api_key: str) -> BackendError:
    """The error with the key, and any header value the transport quoted, taken out of its
    message, which is stored in the call log and shown in results (identity.redacted)."""
    message = redacted(error.message, api_key)
    return error if message == error.message else dataclasses.replace(error, message=message)


# At most this many calls are between entering the SDK and their last byte written. A burst
# admitted at once would otherwise interleave the SDK's ~2 ms of work per call, so the first
# request would reach the wire only after the whole burst's work: every slot would be stamped
# late and the next window's burst would start late, a drift that grows window after window.
SENDING_AT_ONCE = 4
_WRITTEN: ContextVar[Callable[[], None] | None] = ContextVar("scriptgen_written", default=None)


async def _stamp_request(request: httpx2.Request) -> None:
    """Stamp the slot as the request is handed to the transport, then again once its last byte
    is written (the service counts a request from its arrival; `ModelLimiter.sent` only moves
    later), and then let the next call into the SDK.
    """
    stamp, written = SEND_HOOK.get(), _WRITTEN.get()
    if stamp is not None:
        stamp()

    async def on_transport_step(step: str, info: Mapping[str, Any]) -> None:
        if step.endswith("send_request_body.complete"):
            if stamp is not None:
                stamp()
            if written is not None:
                written()

    request.extensions["trace"] = on_transport_step


@contextlib.asynccontextmanager
async def _until_written(gate: asyncio.Semaphore) -> AsyncIterator[None]:
    """Hold a place at the sending gate until the request is written (or the call has ended)."""
    await gate.acquire()
    released = False

    def release() -> None:
        nonlocal released
        if not released:
            released = True
            gate.release()

    token = _WRITTEN.set(release)
    try:
        yield
    finally:
        _WRITTEN.reset(token)
        release()


class GeminiBackend:
    """google-genai's async client over httpx2, one per event loop, SDK retries off, speaking
    `API_VERSION` unless `api_version` says otherwise."""

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str | None = None,
        api_version: str | None = None,
        timeout_s: float = 60.0,
        max_connections: int = 256,
    ) -> None:
        # Name-mangled and never in repr: keys must not leak. Checked here too, for a backend
        # made by hand (BatchOptions checks the key it resolves before anything else).
        self.__api_key = checked_api_key(api_key, "GeminiBackend(api_key=...)")
        self._base_url = base_url.rstrip("/") if base_url else None
        self._api_version = api_version or API_VERSION
        # The engine's own timeout fires first; the SDK's is a backstop one second later.
        self._timeout_ms = int((timeout_s + 1.0) * 1000)
        self._max_connections = max_connections
        self._client: Client | None = None
        self._http: httpx2.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sending: asyncio.Semaphore | None = None

    def __repr__(self) -> str:
        return f"GeminiBackend(endpoint={self.endpoint!r})"

    @property
    def endpoint(self) -> str:
        return self._base_url or GOOGLE_ENDPOINT

    def _aio(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            limits = httpx2.Limits(
                max_connections=self._max_connections,
                max_keepalive_connections=self._max_connections,
            )
            # Passing our own httpx2 client pins the transport (google-genai would otherwise
            # switch to aiohttp whenever it is importable) and sizes the pool to our cap.
            self._http = httpx2.AsyncClient(
                limits=limits,
                timeout=self._timeout_ms / 1000,
                event_hooks={"request": [_stamp_request]},
            )
            options = types.HttpOptions(
                base_url=self._base_url,
                api_version=self._api_version,
                timeout=self._timeout_ms,
                retry_options=types.HttpRetryOptions(attempts=1),
                httpx_async_client=self._http,
            )
            self._client = Client(api_key=self.__api_key, http_options=options)
            self._sending = asyncio.Semaphore(SENDING_AT_ONCE)
            self._loop = loop
        return self._client.aio

    async def open(self) -> None:
        self._aio()

    async def generate(self, request: GenerationRequest, model: str) -> Reply:
        aio = self._aio()
        assert self._sending is not None  # made with the client
        try:
            async with _until_written(self._sending):
                response = await aio.models.generate_content(
                    model=model,
                    contents=request.prompt,
                    config=generation_config(request),
                )
            return reply_from_response(response)
        except BackendError:
            raise
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise scrubbed(backend_error_from(exc), self.__api_key) from None

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
        self._client = self._http = self._loop = self._sending = None


FakeOutcome = Reply | BackendError | Callable[[GenerationRequest, str], Reply]


class FakeBackend:
    """A scripted backend for unit tests: replies are queued per model or produced by a function.

    `enqueue(model, *outcomes)` queues replies or `BackendError`s for a model; when a model's
    queue is empty, `default` answers (an echo of the prompt unless given). `latency_s` is
    awaited with `asyncio.sleep`, so on a virtual-time loop it costs no real time. Every call is
    kept in `calls` as (model, request id).
    """

    endpoint = "fake"

    def __init__(
        self,
        default: Callable[[GenerationRequest, str], Reply] | None = None,
        latency_s: float | Callable[[GenerationRequest, str], float] = 0.0,
        *,
        keep_calls: bool = True,
    ) -> None:
        self._keep_calls = keep_calls
        self._queues: dict[str, deque[FakeOutcome]] = {}
        self._default = default or self.echo
        self._latency = latency_s
        self.calls: list[tuple[str, str]] = []
        self.in_flight = 0
        self.max_in_flight = 0

    @staticmethod
    def echo(request: GenerationRequest, model: str) -> Reply:
        text = f"[{model}] {request.prompt}"
        return Reply(text, "STOP", Usage(len(request.prompt) // 4 + 1, len(text) // 4 + 1))

    def enqueue(self, model: str, *outcomes: FakeOutcome) -> None:
        self._queues.setdefault(model, deque()).extend(outcomes)

    async def open(self) -> None:
        return None

    async def generate(self, request: GenerationRequest, model: str) -> Reply:
        mark_sent()
        if self._keep_calls:
            self.calls.append((model, request.id))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            latency = self._latency(request, model) if callable(self._latency) else self._latency
            if latency:
                await asyncio.sleep(latency)
            queue = self._queues.get(model)
            outcome: FakeOutcome = queue.popleft() if queue else self._default
            if isinstance(outcome, BackendError):
                raise outcome
            return outcome if isinstance(outcome, Reply) else outcome(request, model)
        finally:
            self.in_flight -= 1

    async def aclose(self) -> None:
        return None
