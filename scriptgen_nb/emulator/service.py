"""The emulated Gemini API, independent of HTTP: what to answer, when, and what to count.

Owns `GeminiService`, which turns a request (method, model, key, body) into a `Reply`: checks the
API key and the account (a non-transient refusal, a billing stop), the model (unknown or
retired), the body and the model's limits, answers a quota storm, admits or rejects the request
against the quota windows (429s named after the usage tier, detailed or bare), draws faults and
latency, reports implicitly cached prompt tokens, composes the answer and records everything in
the counters. It also fronts the Batch API (`batches.BatchBook`, whose rows it answers with the
live generator but without quotas, caching or live faults) and the Files API
(`files.FileStore`): the key check and the error replies are here, the state is there. The
HTTP layer (`server.py`) only delivers replies. A model's configuration, the batch settings new
jobs get and the account's settings (`config.LIVE_FIELDS`) can be changed while requests are
running. Both clocks are injectable: the monotonic one (windows, storms, caching, batch jobs)
and the wall clock (Google's Pacific days). Imports nothing from the engine.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from . import errors
from .answer import (
    Answer,
    Damage,
    SchemaError,
    compose,
    natural_text,
    prompt_blocked_body,
    response_body,
    stream_chunks,
)
from .batches import BatchBook
from .caching import PrefixCache
from .casing import either_case
from .config import LIVE_FIELDS, BatchConfig, ConfigError, EmulatorConfig, ModelConfig
from .counters import Counters
from .determinism import digest, rng, unit
from .errors import ApiFailure, rpc_status
from .faults import Fault, draw_fault
from .files import FileStore
from .quota import Limits, QuotaBook, QuotaKind, Violation
from .request import (
    GenerateRequest,
    RequestError,
    load_object,
    parse_count_tokens,
    parse_generate,
)
from .wire import page

__all__ = [
    "Breakage",
    "FileReply",
    "GeminiService",
    "HangReply",
    "JsonReply",
    "Reply",
    "StreamReply",
]

_GENERATION_METHODS = ["generateContent", "streamGenerateContent", "countTokens"]

# Faults that replace the answer with one of Google's error bodies.
_FAULT_ERRORS = {
    Fault.INTERNAL: errors.internal_error,
    Fault.OVERLOADED: errors.overloaded,
    Fault.DEADLINE: errors.deadline_exceeded,
    Fault.CANCELLED: errors.cancelled,
}


class Breakage(enum.Enum):
    """How an otherwise good reply is damaged on the wire by an injected fault."""

    MALFORMED = "malformed"  # the JSON is cut off, the status still 200
    RESET = "reset"  # the connection is reset half-way through the body


@dataclass(frozen=True, slots=True)
class JsonReply:
    status: int
    body: dict[str, Any]
    delay_s: float = 0.0
    breakage: Breakage | None = None
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class FileReply:
    """A file's raw bytes (a download); the deliverer reads and closes `handle`."""

    handle: BinaryIO
    size: int
    content_type: str


@dataclass(frozen=True, slots=True)
class StreamReply:
    events: list[dict[str, Any]]
    delays_s: list[float]  # wait before each event
    breakage: Breakage | None = None


@dataclass(frozen=True, slots=True)
class HangReply:
    """Hold the connection this long, then drop it without a response."""

    seconds: float


Reply = JsonReply | StreamReply | HangReply | FileReply


class GeminiService:
    """The API's behaviour and state: live model configs, quota windows and counters."""

    def __init__(
        self,
        config: EmulatorConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._base = config
        self._models: dict[str, ModelConfig] = dict(config.models)
        self._batch = config.batch
        self._mime_refusals_left = config.batch.mime_refusals
        self._models_lock = threading.Lock()
        self._clock = clock
        self._started = clock()  # storms are timed from here (and from each reset)
        # Which life of the quota windows this is: a client's shared quota ledger keys its rows
        # by it, so windows emptied by a reset (or a new emulator on an old port) start empty.
        self.instance = uuid.uuid4().hex[:12]
        self.quota = QuotaBook(config.minute_s, config.day_s, clock, wall_clock)
        self.cache = PrefixCache(clock)
        self.counters = Counters()
        self.files = FileStore(config.max_file_bytes)
        self.batches = BatchBook(self.files, self.counters, self.answer_row, config.seed, clock)

    # -- configuration -------------------------------------------------------------------------

    @property
    def config(self) -> EmulatorConfig:
        """The configuration in force, including live model changes."""
        with self._models_lock:
            return dataclasses.replace(self._base, models=dict(self._models), batch=self._batch)

    def model(self, name: str) -> ModelConfig | None:
        with self._models_lock:
            return self._models.get(name)

    def set_model(self, name: str, model: ModelConfig) -> None:
        """Add a model or replace its configuration; windows and counters carry over."""
        if not isinstance(model, ModelConfig):
            raise ConfigError(f"set_model needs a ModelConfig, got {model!r}")
        # Validate the name the same way a config file's names are validated.
        EmulatorConfig(models={name: model})
        with self._models_lock:
            self._models[name] = model

    def update_model(self, name: str, **changes: Any) -> ModelConfig:
        """Change some fields of a model's configuration (e.g. `rpd=3`); returns the new one."""
        with self._models_lock:
            if name not in self._models:
                raise KeyError(f"no model named {name!r}; known: {', '.join(self._models)}")
            try:
                updated = dataclasses.replace(self._models[name], **changes)
            except TypeError as exc:
                raise ConfigError(f"update_model({name!r}): {exc}") from exc
            self._models[name] = updated
            return updated

    def update_batch(self, **changes: Any) -> BatchConfig:
        """Change the batch settings that jobs created from now on get (e.g. `shuffle=True`)."""
        with self._models_lock:
            try:
                self._batch = dataclasses.replace(self._batch, **changes)
            except TypeError as exc:
                raise ConfigError(f"update_batch: {exc}") from exc
            if "mime_refusals" in changes:
                self._mime_refusals_left = self._batch.mime_refusals
            return self._batch

    def update_config(self, **changes: Any) -> EmulatorConfig:
        """Change the account's settings while running (`config.LIVE_FIELDS`: tier,
        quota_errors, storms, billing, refusal, day_retry_delay_s); returns the new config."""
        fixed = sorted(set(changes) - set(LIVE_FIELDS))
        if fixed:
            raise ConfigError(
                f"update_config: {', '.join(fixed)} cannot change while running "
                f"(live fields: {', '.join(LIVE_FIELDS)})"
            )
        with self._models_lock:
            self._base = dataclasses.replace(self._base, **changes)
        return self.config

    def counters_reply(self) -> dict[str, Any]:
        """The counters, with which life of the quota windows they count (`instance`)."""
        return {**self.counters.snapshot(self.config.models), "instance": self.instance}

    def reset(self) -> None:
        """Empty the quota windows and the implicit cache, zero the counters and restart the
        storm clock (batch jobs and files stay): each run after a reset meets the same storms,
        whenever the service was created."""
        self._started = self._clock()
        self.instance = uuid.uuid4().hex[:12]
        self.quota.reset()
        self.cache.reset()
        self.counters.reset()

    # -- helpers -------------------------------------------------------------------------------

    def _error(self, body: dict[str, Any], model: str | None = None) -> JsonReply:
        status = int(body["error"]["code"])
        self.counters.error(status, model)
        return JsonReply(status, body)

    def authenticate(self, key: str | None, model: str | None = None) -> JsonReply | None:
        """None if `key` is acceptable, else the 403 (missing) or 400 (invalid) reply."""
        if not key:
            return self._error(errors.missing_api_key(), model)
        if self._base.api_keys and key not in self._base.api_keys:
            return self._error(errors.invalid_api_key(), model)
        refusal = self._base.refusal
        if refusal is not None:
            self.counters.refused(refusal)
            return self._error(errors.refused(refusal), model)
        return None

    def _model_refusal(
        self, model_name: str, model: ModelConfig | None, api_version: str, method: str
    ) -> JsonReply | None:
        """The error for a call naming an unknown or retired model; None if it can serve."""
        body = _unavailable(model_name, model, api_version, method)
        if body is None:
            return None
        if model is None:
            return self._error(body)
        self.counters.mark(model_name, "retired")
        return self._error(body, model_name)

    def _billing_stop(self, model_name: str) -> JsonReply | None:
        """The prepayment-credits 429 when billing is depleted; None when it is fine."""
        if self._base.billing != "depleted":
            return None
        self.counters.mark(model_name, "billing_429")
        return self._error(errors.billing_depleted(), model_name)

    def _in_storm(self) -> bool:
        elapsed = self._clock() - self._started
        return any(start <= elapsed < end for start, end in self._base.storms)

    def _bare_429(self, model_name: str) -> JsonReply:
        self.counters.mark(model_name, "bare_429")
        return self._error(errors.quota_exhausted_bare(), model_name)

    def _quota_429(
        self, model_name: str, violations: Sequence[Violation], variant: random.Random
    ) -> JsonReply:
        """The 429 for exceeded limits, as detailed or as bare as the config says."""
        base = self._base
        self.counters.rate_limited(model_name, [v.kind.names(base.tier)[0] for v in violations])
        if base.quota_errors == "bare":
            self.counters.mark(model_name, "bare_429")
            return JsonReply(429, errors.quota_exhausted_bare())
        if base.day_retry_delay_s is not None:
            violations = [
                dataclasses.replace(v, retry_after_s=base.day_retry_delay_s)
                if v.kind is QuotaKind.RPD
                else v
                for v in violations
            ]
        whole = base.minute_s == 60.0
        return JsonReply(
            429, errors.rate_limited(model_name, violations, base.tier, whole, variant)
        )

    def _latency(self, model: ModelConfig, jitter_draw: float, output_tokens: int) -> float:
        return self._base.latency_scale * (
            model.latency_base_s
            + model.latency_per_output_token_s * output_tokens
            + model.latency_jitter_s * jitter_draw
        )

    # -- endpoints -----------------------------------------------------------------------------

    def generate(
        self, api_version: str, model_name: str, key: str | None, body: bytes, *, stream: bool
    ) -> Reply:
        """generateContent, or streamGenerateContent when `stream`."""
        method = "streamGenerateContent" if stream else "generateContent"
        model = self.model(model_name)
        if model is not None:
            self.counters.model_request(model_name)
        denied = (
            self.authenticate(key, model_name if model is not None else None)
            or self._model_refusal(model_name, model, api_version, method)
            or self._billing_stop(model_name)
        )
        if denied is not None:
            return denied
        assert model is not None  # an unknown model was refused
        try:
            request = parse_generate(body)
        except RequestError as exc:
            return self._error(errors.bad_request(str(exc)), model_name)
        prompt = request.prompt_text
        self.counters.prompt_seen(model_name, prompt)
        seed = self._base.seed
        try:
            text = self._natural_text(request, model_name, model)
        except ApiFailure as exc:
            return self._error(exc.body, model_name)
        if self._in_storm():
            return self._bare_429(model_name)

        tokens = request.prompt_tokens
        violations = self.quota.admit(model_name, Limits(model.rpm, model.tpm, model.rpd), tokens)
        if violations:
            seen = self.counters.attempts_for(prompt, model_name)
            return self._quota_429(
                model_name, violations, rng(seed, "429", model_name, prompt, seen)
            )

        attempt = self.counters.admit(model_name, prompt, tokens)
        cached = self.cache.serve(
            model_name,
            (request.system_text, prompt),
            tokens,
            model.implicit_cache_min_tokens,
            model.implicit_cache_ttl_s,
        )
        fault = draw_fault(model.faults, seed, model_name, prompt, attempt)
        jitter = unit(seed, "latency", model_name, prompt, attempt)
        if fault is not None:
            self.counters.fault(model_name, fault.value)
        failed = self._failure(fault, model_name, model, prompt, attempt, jitter)
        if failed is not None:
            return failed

        response_id = base64.urlsafe_b64encode(
            digest(seed, "response", model_name, prompt, attempt)[:15]
        ).decode()
        if fault is Fault.PROMPT_BLOCK:
            self.counters.mark(model_name, "prompt_blocks")
            blocked = prompt_blocked_body(tokens, model_name, response_id)
            delay = self._latency(model, jitter, 0)
            return StreamReply([blocked], [delay]) if stream else JsonReply(200, blocked, delay)
        damage = self._damage(fault, model_name, prompt, attempt)
        answer = compose(request, text, model_name, model, seed, damage=damage)
        answer = dataclasses.replace(answer, cached_tokens=cached)
        breakage = None
        if fault is Fault.MALFORMED:
            breakage = Breakage.MALFORMED
        elif fault is Fault.RESET:
            breakage = Breakage.RESET
        if breakage is None:
            self.counters.answered(
                model_name,
                answer.finish_reason,
                answer.candidates_tokens,
                answer.thoughts_tokens,
                answer.cached_tokens,
            )
        if stream:
            return self._stream_reply(answer, model_name, model, response_id, jitter, breakage)
        return JsonReply(
            200,
            response_body(answer, model_name, response_id),
            self._latency(model, jitter, answer.output_tokens),
            breakage,
        )

    def _failure(
        self,
        fault: Fault | None,
        model_name: str,
        model: ModelConfig,
        prompt: str,
        attempt: int,
        jitter: float,
    ) -> Reply | None:
        """The reply that replaces the answer for a fault that is an error or a hang."""
        if fault is Fault.HANG:
            return HangReply(self._base.hang_s)
        if fault is Fault.RATE_LIMITED:
            limit = -1 if model.rpm is None else model.rpm  # -1: no value to state
            quota = Violation(QuotaKind.RPM, limit, self._base.minute_s / 4)
            variant = rng(self._base.seed, "429", model_name, prompt, attempt)
            return self._quota_429(model_name, [quota], variant)
        if fault is Fault.RATE_LIMITED_BARE:
            return self._bare_429(model_name)
        error = _FAULT_ERRORS.get(fault) if fault is not None else None
        if error is None:
            return None
        reply = self._error(error(), model_name)
        return dataclasses.replace(reply, delay_s=self._latency(model, jitter, 0))

    def _damage(
        self, fault: Fault | None, model_name: str, prompt: str, attempt: int
    ) -> Damage | None:
        """How a fault that still answers 200 changes the answer."""
        seed = self._base.seed
        if fault is Fault.TRUNCATE:
            keep = 0.3 + 0.4 * unit(seed, "truncate", model_name, prompt, attempt)
            return Damage("MAX_TOKENS", keep=keep)
        if fault is Fault.FINISH_OTHER:
            keep = 0.3 + 0.4 * unit(seed, "finish_other", model_name, prompt, attempt)
            return Damage("OTHER", keep=keep)
        if fault is Fault.BLOCK:
            return Damage("SAFETY", blocked_draw=unit(seed, "block", model_name, prompt, attempt))
        if fault is Fault.FINISH_LANGUAGE:
            return Damage("LANGUAGE")
        return None

    def _stream_reply(
        self,
        answer: Answer,
        model_name: str,
        model: ModelConfig,
        response_id: str,
        jitter: float,
        breakage: Breakage | None,
    ) -> StreamReply:
        chunks = stream_chunks(answer, model_name, response_id)
        scale = self._base.latency_scale
        per_token = model.latency_per_output_token_s
        # Thinking happens before the first visible token, so its time goes to the first event.
        delays = [scale * per_token * tokens for _, tokens in chunks]
        delays[0] += self._latency(model, jitter, answer.thoughts_tokens)
        return StreamReply([event for event, _ in chunks], delays, breakage)

    def _natural_text(self, request: GenerateRequest, model_name: str, model: ModelConfig) -> str:
        """The answer's words before any cut; `ApiFailure` (400) if the model cannot answer."""
        invalid = self._check_against_model(request, model)
        if invalid is not None:
            raise ApiFailure(400, invalid)
        try:
            return natural_text(request, model_name, self._base.seed)
        except SchemaError as exc:
            message = f"* GenerateContentRequest.generation_config.response_schema: {exc}\n"
            raise ApiFailure(400, message) from None

    def _check_against_model(self, request: GenerateRequest, model: ModelConfig) -> str | None:
        limit = model.output_token_limit
        if request.max_output_tokens is not None and request.max_output_tokens > limit:
            return (
                "Unable to submit request because it has a maxOutputTokens value of "
                f"{request.max_output_tokens} but the supported range is from 1 (inclusive) to "
                f"{limit + 1} (exclusive). Update the value and try again."
            )
        if request.prompt_tokens > model.input_token_limit:
            return (
                f"The input token count ({request.prompt_tokens}) exceeds the maximum number of "
                f"tokens allowed ({model.input_token_limit})."
            )
        return None

    def count_tokens(
        self, api_version: str, model_name: str, key: str | None, body: bytes
    ) -> JsonReply:
        model = self.model(model_name)
        if model is not None:
            self.counters.model_request(model_name, count_tokens=True)
        denied = self.authenticate(
            key, model_name if model is not None else None
        ) or self._model_refusal(model_name, model, api_version, "countTokens")
        if denied is not None:
            return denied
        try:
            total = parse_count_tokens(body)
        except RequestError as exc:
            return self._error(errors.bad_request(str(exc)), model_name)
        return JsonReply(
            200,
            {
                "totalTokens": total,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": total}],
            },
        )

    def _resource(self, name: str, model: ModelConfig) -> dict[str, Any]:
        return {
            "name": f"models/{name}",
            "baseModelId": name,
            "version": model.version,
            "displayName": model.display_name or name,
            "description": f"{model.display_name or name}, emulated by scriptgen_nb.",
            "inputTokenLimit": model.input_token_limit,
            "outputTokenLimit": model.output_token_limit,
            "supportedGenerationMethods": list(_GENERATION_METHODS),
            "temperature": 1.0,
            "topP": 0.95,
            "topK": 64,
            "maxTemperature": 2.0,
            "thinking": model.thinking,
        }

    def list_models(
        self, key: str | None, page_size: str | None, page_token: str | None
    ) -> JsonReply:
        denied = self.authenticate(key)
        if denied is not None:
            return denied
        with self._models_lock:
            items = [(name, model) for name, model in self._models.items() if not model.retired]
        try:
            chosen, token = page(items, page_size, page_token)
        except ApiFailure as exc:
            return self._error(exc.body)
        body: dict[str, Any] = {"models": [self._resource(name, model) for name, model in chosen]}
        if token is not None:
            body["nextPageToken"] = token
        return JsonReply(200, body)

    def get_model(self, api_version: str, model_name: str, key: str | None) -> JsonReply:
        denied = self.authenticate(key)
        if denied is not None:
            return denied
        model = self.model(model_name)
        if model is None or model.retired:
            return self._error(errors.model_not_found(model_name, api_version, "get"))
        return JsonReply(200, self._resource(model_name, model))

    # -- Batch API and Files API ---------------------------------------------------------------

    def guarded(self, key: str | None, action: Callable[[], dict[str, Any]]) -> JsonReply:
        """Check the key, run `action` and answer its body, or the error it raised."""
        return self.authenticate(key) or self._attempt(action)

    def _attempt(self, action: Callable[[], dict[str, Any]]) -> JsonReply:
        try:
            return JsonReply(200, action())
        except ApiFailure as exc:
            return self._error(exc.body)

    def answer_row(self, model_name: str, request: Mapping[str, Any]) -> dict[str, Any]:
        """One batch row, answered by the live generator without quotas or live faults.

        `{"response": GenerateContentResponse}`, or `{"error": Status}` for a row the live
        endpoint would refuse with a 400. Tokens go to the batch counters only.
        """
        model = self.model(model_name)
        unavailable = _unavailable(model_name, model, "v1beta", "batchGenerateContent")
        if unavailable is not None:  # removed or retired while the job waited
            return {"error": rpc_status(unavailable)}
        assert model is not None
        try:
            parsed = parse_generate(request)
            text = self._natural_text(parsed, model_name, model)
        except RequestError as exc:
            return {"error": rpc_status(errors.bad_request(str(exc)))}
        except ApiFailure as exc:
            return {"error": rpc_status(exc.body)}
        seed = self._base.seed
        answer = compose(parsed, text, model_name, model, seed)
        self.counters.batch(
            model_name,
            input_tokens=answer.prompt_tokens,
            output_tokens=answer.candidates_tokens,
            thoughts_tokens=answer.thoughts_tokens,
        )
        response_id = base64.urlsafe_b64encode(
            digest(seed, "batch-response", model_name, parsed.fingerprint)[:15]
        ).decode()
        return {"response": response_body(answer, model_name, response_id)}

    def create_batch(
        self, api_version: str, model_name: str, key: str | None, body: bytes
    ) -> JsonReply:
        """batchGenerateContent: a new job under the batch settings in force now."""

        def create() -> dict[str, Any]:
            with self._models_lock:
                settings = self._batch
            return self.batches.create(model_name, body, settings, self._base.latency_scale)

        method = "batchGenerateContent"
        return (
            self.authenticate(key)
            or self._model_refusal(model_name, self.model(model_name), api_version, method)
            or self._billing_stop(model_name)
            or self._attempt(create)
        )

    def start_upload(
        self,
        key: str | None,
        headers: Mapping[str, str],
        body: bytes,
        upload_url: Callable[[str], str],
    ) -> JsonReply:
        """Open a resumable upload (`X-Goog-Upload-Command: start`); `upload_url(id)` is its URL.

        `headers` are the request's, with lower-case names.
        Only the resumable protocol the SDK uses is spoken. The URL carries the session's id,
        never the API key.
        """
        denied = self.authenticate(key)
        if denied is not None:
            return denied
        try:
            upload_id = self._start_upload(headers, body)
        except ApiFailure as exc:
            return self._error(exc.body)
        return JsonReply(
            200,
            {},
            headers=(
                ("X-Goog-Upload-URL", upload_url(upload_id)),
                ("X-Goog-Upload-Status", "active"),
            ),
        )

    def _start_upload(self, headers: Mapping[str, str], body: bytes) -> str:
        protocol = headers.get("x-goog-upload-protocol", "")
        command = headers.get("x-goog-upload-command", "")
        if protocol.lower() != "resumable" or command.strip().lower() != "start":
            raise ApiFailure(
                400, "Only resumable uploads are supported (X-Goog-Upload-Protocol: resumable)."
            )
        try:
            data = load_object(body) if body else {}
        except RequestError as exc:
            raise ApiFailure(400, str(exc)) from None
        file = either_case(data, "file") or {}
        if not isinstance(file, dict):
            raise ApiFailure(400, "* CreateFileRequest.file: must be an object\n")
        size = headers.get("x-goog-upload-header-content-length") or either_case(file, "sizeBytes")
        try:
            declared = None if size is None else int(size)
        except ValueError:
            raise ApiFailure(400, f"Invalid upload size {size!r}.") from None
        mime = headers.get("x-goog-upload-header-content-type") or either_case(file, "mimeType")
        if self._refuse_mime_type():
            raise ApiFailure(400, f"Unsupported MIME type: {mime}")
        name = either_case(file, "name")
        return self.files.start_upload(
            None if name is None else str(name),
            str(either_case(file, "displayName") or ""),
            str(mime or ""),
            declared,
        )

    def _refuse_mime_type(self) -> bool:
        """Whether this upload is one of the `mime_refusals` still to make."""
        with self._models_lock:
            if self._mime_refusals_left <= 0:
                return False
            self._mime_refusals_left -= 1
            return True

    def upload_chunk(
        self,
        upload_id: str,
        headers: Mapping[str, str],
        length: int,
        read: Callable[[int], bytes],
        origin: str,
        api_version: str,
    ) -> JsonReply:
        """One chunk of a resumable upload; no API key, the session id is the credential.

        `headers` are the request's, with lower-case names.
        Every answer carries `X-Goog-Upload-Status` (`active`, or `final` once finalized or
        refused), so the SDK neither retries a refusal nor waits before reporting it.
        """
        try:
            offset = int(headers.get("x-goog-upload-offset") or 0)
            stored = self.files.receive(
                upload_id, headers.get("x-goog-upload-command", ""), offset, length, read
            )
        except ValueError:
            reply = self._error(errors.bad_request("Invalid X-Goog-Upload-Offset."))
            return dataclasses.replace(reply, headers=(("X-Goog-Upload-Status", "final"),))
        except ApiFailure as exc:
            return dataclasses.replace(
                self._error(exc.body), headers=(("X-Goog-Upload-Status", "final"),)
            )
        if stored is None:
            return JsonReply(200, {}, headers=(("X-Goog-Upload-Status", "active"),))
        self.counters.files(uploaded=1, uploaded_bytes=stored.size)
        return JsonReply(
            200,
            {"file": stored.resource(origin, api_version)},
            headers=(("X-Goog-Upload-Status", "final"),),
        )

    def get_file(self, key: str | None, name: str, origin: str, api_version: str) -> JsonReply:
        return self.guarded(key, lambda: self.files.get(name).resource(origin, api_version))

    def list_files(
        self,
        key: str | None,
        page_size: str | None,
        page_token: str | None,
        origin: str,
        api_version: str,
    ) -> JsonReply:
        def listing() -> dict[str, Any]:
            chosen, token = page(self.files.files(), page_size, page_token)
            body: dict[str, Any] = {"files": [f.resource(origin, api_version) for f in chosen]}
            if token is not None:
                body["nextPageToken"] = token
            return body

        return self.guarded(key, listing)

    def delete_file(self, key: str | None, name: str) -> JsonReply:
        def delete() -> dict[str, Any]:
            self.files.delete(name)
            self.counters.files(deleted=1)
            return {}

        return self.guarded(key, delete)

    def download_file(self, key: str | None, name: str) -> JsonReply | FileReply:
        """A generated file's bytes; uploaded files cannot be downloaded, as with Google."""
        denied = self.authenticate(key)
        if denied is not None:
            return denied
        try:
            stored, handle = self.files.open(name)
        except ApiFailure as exc:
            return self._error(exc.body)
        if not stored.generated:
            handle.close()
            return self._error(
                errors.bad_request(
                    "Only generated files can be downloaded; uploaded files cannot be."
                )
            )
        self.counters.files(downloaded=1)
        return FileReply(handle, os.fstat(handle.fileno()).st_size, stored.mime_type)


def _unavailable(
    model_name: str, model: ModelConfig | None, api_version: str, method: str
) -> dict[str, Any] | None:
    """Google's error body for a call naming an unknown or retired model; None if it serves."""
    if model is None or (model.retired and model.retired_as == "not_found"):
        return errors.model_not_found(model_name, api_version, method)
    if model.retired:
        return errors.model_unsupported(model_name, method)
    return None
