"""The emulated Gemini API, independent of HTTP: what to answer, when, and what to count.

Owns `GeminiService`, which turns a request (method, model, key, body) into a `Reply`: checks the
API key, the model, the body and the model's limits, admits or rejects it against the quota
windows, draws faults and latency, composes the answer and records everything in the counters.
The HTTP layer (`server.py`) only delivers replies. A model's configuration can be replaced
while requests are running. Imports nothing from the engine.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import threading
from dataclasses import dataclass
from typing import Any

from . import errors
from .answer import Answer, SchemaError, compose, natural_text, response_body, stream_chunks
from .config import ConfigError, EmulatorConfig, ModelConfig
from .counters import Counters
from .determinism import digest, rng, unit
from .faults import Fault, draw_fault
from .quota import Limits, QuotaBook, QuotaKind, Violation
from .request import GenerateRequest, RequestError, parse_count_tokens, parse_generate

__all__ = ["Breakage", "GeminiService", "HangReply", "JsonReply", "Reply", "StreamReply"]

_DEFAULT_PAGE_SIZE = 50
_MAX_PAGE_SIZE = 1000
_GENERATION_METHODS = ["generateContent", "streamGenerateContent", "countTokens"]


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


@dataclass(frozen=True, slots=True)
class StreamReply:
    events: list[dict[str, Any]]
    delays_s: list[float]  # wait before each event
    breakage: Breakage | None = None


@dataclass(frozen=True, slots=True)
class HangReply:
    """Hold the connection this long, then drop it without a response."""

    seconds: float


Reply = JsonReply | StreamReply | HangReply


class GeminiService:
    """The API's behaviour and state: live model configs, quota windows and counters."""

    def __init__(self, config: EmulatorConfig) -> None:
        self._base = config
        self._models: dict[str, ModelConfig] = dict(config.models)
        self._models_lock = threading.Lock()
        self.quota = QuotaBook(config.minute_s, config.day_s)
        self.counters = Counters()

    # -- configuration -------------------------------------------------------------------------

    @property
    def config(self) -> EmulatorConfig:
        """The configuration in force, including live model changes."""
        with self._models_lock:
            return dataclasses.replace(self._base, models=dict(self._models))

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

    def reset(self) -> None:
        """Empty the quota windows and zero the counters."""
        self.quota.reset()
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
        return None

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
        denied = self.authenticate(key, model_name if model is not None else None)
        if denied is not None:
            return denied
        if model is None:
            return self._error(errors.model_not_found(model_name, api_version, method))
        try:
            request = parse_generate(body)
        except RequestError as exc:
            return self._error(errors.bad_request(str(exc)), model_name)
        prompt = request.prompt_text
        self.counters.prompt_seen(model_name, prompt)
        invalid = self._check_against_model(request, model)
        if invalid is not None:
            return self._error(errors.bad_request(invalid), model_name)
        seed = self._base.seed
        try:
            text = natural_text(request, model_name, seed)
        except SchemaError as exc:
            message = f"* GenerateContentRequest.generation_config.response_schema: {exc}\n"
            return self._error(errors.bad_request(message), model_name)

        tokens = request.prompt_tokens
        violations = self.quota.admit(model_name, Limits(model.rpm, model.tpm, model.rpd), tokens)
        if violations:
            self.counters.rate_limited(model_name, [v.kind.quota_id for v in violations])
            variant = rng(
                seed, "429", model_name, prompt, self.counters.attempts_for(prompt, model_name)
            )
            whole = self._base.minute_s == 60.0
            return JsonReply(429, errors.rate_limited(model_name, violations, whole, variant))

        attempt = self.counters.admit(model_name, prompt, tokens)
        fault = draw_fault(model.faults, seed, model_name, prompt, attempt)
        jitter = unit(seed, "latency", model_name, prompt, attempt)
        if fault is not None:
            self.counters.fault(model_name, fault.value)
        if fault is Fault.HANG:
            return HangReply(self._base.hang_s)
        if fault is Fault.RATE_LIMITED:
            limit = -1 if model.rpm is None else model.rpm  # -1: no value to state
            quota = Violation(QuotaKind.RPM, limit, self._base.minute_s / 4)
            self.counters.rate_limited(model_name, [QuotaKind.RPM.quota_id])
            variant = rng(seed, "429", model_name, prompt, attempt)
            whole = self._base.minute_s == 60.0
            return JsonReply(429, errors.rate_limited(model_name, [quota], whole, variant))
        if fault in (Fault.INTERNAL, Fault.OVERLOADED):
            error = errors.internal_error() if fault is Fault.INTERNAL else errors.overloaded()
            reply = self._error(error, model_name)
            return dataclasses.replace(reply, delay_s=self._latency(model, jitter, 0))

        truncate_to = blocked_draw = None
        if fault is Fault.TRUNCATE:
            truncate_to = 0.3 + 0.4 * unit(seed, "truncate", model_name, prompt, attempt)
        elif fault is Fault.BLOCK:
            blocked_draw = unit(seed, "block", model_name, prompt, attempt)
        answer = compose(
            request,
            text,
            model_name,
            model,
            seed,
            truncate_to=truncate_to,
            blocked_draw=blocked_draw,
        )
        breakage = None
        if fault is Fault.MALFORMED:
            breakage = Breakage.MALFORMED
        elif fault is Fault.RESET:
            breakage = Breakage.RESET
        if breakage is None:
            self.counters.answered(
                model_name, answer.finish_reason, answer.candidates_tokens, answer.thoughts_tokens
            )
        response_id = base64.urlsafe_b64encode(
            digest(seed, "response", model_name, prompt, attempt)[:15]
        ).decode()
        if stream:
            return self._stream_reply(answer, model_name, model, response_id, jitter, breakage)
        return JsonReply(
            200,
            response_body(answer, model_name, response_id),
            self._latency(model, jitter, answer.output_tokens),
            breakage,
        )

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
        denied = self.authenticate(key, model_name if model is not None else None)
        if denied is not None:
            return denied
        if model is None:
            return self._error(errors.model_not_found(model_name, api_version, "countTokens"))
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
        try:
            size = int(page_size) if page_size else _DEFAULT_PAGE_SIZE
            start = int(base64.urlsafe_b64decode(page_token.encode()).decode()) if page_token else 0
        except (ValueError, binascii.Error):
            return self._error(errors.bad_request("Invalid page_size or page_token."))
        if size <= 0:
            size = _DEFAULT_PAGE_SIZE
        size = min(size, _MAX_PAGE_SIZE)
        with self._models_lock:
            items = list(self._models.items())
        page = [self._resource(name, model) for name, model in items[start : start + size]]
        body: dict[str, Any] = {"models": page}
        if start + size < len(items):
            body["nextPageToken"] = base64.urlsafe_b64encode(str(start + size).encode()).decode()
        return JsonReply(200, body)

    def get_model(self, api_version: str, model_name: str, key: str | None) -> JsonReply:
        denied = self.authenticate(key)
        if denied is not None:
            return denied
        model = self.model(model_name)
        if model is None:
            return self._error(errors.model_not_found(model_name, api_version, "get"))
        return JsonReply(200, self._resource(model_name, model))
