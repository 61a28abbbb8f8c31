"""The emulator's configuration: frozen dataclasses, the default model catalogue, file loading.

Owns `FaultConfig`, `ModelConfig`, `EmulatorConfig`, the default catalogue per usage tier
(`default_models`), Google's retirements (`google_retirements`), `default_config()` and the
TOML/JSON reader. Imports nothing from the engine (or anything else in scriptgen_nb outside
`scriptgen_nb.emulator`): the emulator exists to catch the engine's bugs, so the two must not
share assumptions through shared code.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "BATCH_OUTCOMES",
    "BILLING_STATES",
    "GOOGLE_SHUT_DOWN",
    "LIVE_FIELDS",
    "MAX_BODY_BYTES",
    "MAX_FILE_BYTES",
    "QUOTA_ERRORS",
    "REFUSALS",
    "RETIREMENTS",
    "TIERS",
    "BatchConfig",
    "ConfigError",
    "EmulatorConfig",
    "FaultConfig",
    "ModelConfig",
    "default_config",
    "default_models",
    "google_retirements",
]


# Google refuses a request payload over 20 MiB ("Request payload size exceeds the limit").
MAX_BODY_BYTES = 20 * 1024 * 1024
# Google accepts Files API uploads (a batch's JSONL input among them) of up to 2 GB.
MAX_FILE_BYTES = 2 * 1024 * 1024 * 1024
# How a batch job that is neither cancelled nor broken ends.
BATCH_OUTCOMES = ("succeeded", "failed", "expired")
# The usage tier whose quota names the 429s carry: the free tier, or Tier 1 (billing linked).
TIERS = ("free", "tier1")
# How quota 429s look: Google's QuotaFailure + RetryInfo, or the bare body without details.
QUOTA_ERRORS = ("detailed", "bare")
# The project's billing: fine, or prepayment credits used up (every generate call is a 429).
BILLING_STATES = ("ok", "depleted")
# Non-transient refusals of every keyed call: a suspended key, the API not enabled for the
# project, or a region the API does not serve.
REFUSALS = ("suspended", "service_disabled", "location")
# How a retired model answers: 404 NOT_FOUND, or 400 INVALID_ARGUMENT "not supported".
RETIREMENTS = ("not_found", "unsupported")
# Models the seed uses that Google has shut down (2.5 Pro and Flash on 2026-12-01, 2.0
# Flash-Lite earlier): `google_retirements` marks them retired.
GOOGLE_SHUT_DOWN = ("gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.0-flash-lite")
# The EmulatorConfig fields `update_config` may change while the emulator runs.
LIVE_FIELDS = ("tier", "quota_errors", "storms", "billing", "refusal", "day_retry_delay_s")


class ConfigError(ValueError):
    """A configuration value or file is invalid; the message names the key and the value."""


def _check_probability(owner: str, name: str, value: float) -> None:
    if not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
        raise ConfigError(f"{owner}.{name} must be a probability in [0, 1], got {value!r}")


def _check_non_negative(owner: str, name: str, value: float | None) -> None:
    if value is not None and not (
        isinstance(value, int | float) and math.isfinite(value) and value >= 0
    ):
        raise ConfigError(f"{owner}.{name} must be a non-negative number, got {value!r}")


def _check_positive(owner: str, name: str, value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ConfigError(f"{owner}.{name} must be a positive number, got {value!r}")


def _check_choice(owner: str, name: str, value: object, choices: tuple[object, ...]) -> None:
    if value not in choices:
        shown = ", ".join("none" if c is None else repr(c) for c in choices)
        raise ConfigError(f"{owner}.{name} must be one of {shown}, got {value!r}")


def _storms(value: object) -> tuple[tuple[float, float], ...]:
    """`storms` as a tuple of (start_s, end_s) pairs, checked: 0 <= start < end (end may be inf)."""
    if isinstance(value, str | bytes) or not isinstance(value, tuple | list):
        raise ConfigError(
            f"emulator.storms must be a list of [start_s, end_s] pairs, got {value!r}"
        )
    pairs = []
    for pair in value:
        numbers = isinstance(pair, tuple | list) and all(
            isinstance(x, int | float) and not isinstance(x, bool) for x in pair
        )
        if not numbers or len(pair) != 2 or not (0 <= pair[0] < pair[1]) or math.isinf(pair[0]):
            raise ConfigError(
                f"emulator.storms: each storm must be [start_s, end_s] with "
                f"0 <= start_s < end_s, got {pair!r}"
            )
        pairs.append((float(pair[0]), float(pair[1])))
    return tuple(pairs)


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """Per-model probabilities of injected faults, drawn per admitted attempt (sum at most 1).

    `p_500` internal error, `p_503` "model is overloaded", `p_hang` hold the request for
    `EmulatorConfig.hang_s` then drop the connection, `p_malformed` a 200 whose JSON is broken,
    `p_truncate` a 200 cut short with finishReason MAX_TOKENS, `p_block` a 200 safety block,
    `p_reset` the connection is reset half-way through the response, `p_429` a per-minute 429
    although the windows had room (the project's quota used elsewhere), retry after a quarter
    of a window. The real service's uglier answers: `p_429_bare` a 429 without any details
    (no QuotaFailure, no RetryInfo), `p_prompt_block` a 200 whose prompt was blocked
    (`promptFeedback.blockReason` PROHIBITED_CONTENT, no candidates), `p_504` DEADLINE_EXCEEDED,
    `p_499` CANCELLED, `p_finish_other` a 200 cut short with finishReason OTHER,
    `p_finish_language` a 200 with finishReason LANGUAGE and no text.
    """

    p_500: float = 0.0
    p_503: float = 0.0
    p_hang: float = 0.0
    p_malformed: float = 0.0
    p_truncate: float = 0.0
    p_block: float = 0.0
    p_reset: float = 0.0
    p_429: float = 0.0
    p_429_bare: float = 0.0
    p_prompt_block: float = 0.0
    p_504: float = 0.0
    p_499: float = 0.0
    p_finish_other: float = 0.0
    p_finish_language: float = 0.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _check_probability("faults", f.name, getattr(self, f.name))
        total = sum(getattr(self, f.name) for f in dataclasses.fields(self))
        if total > 1.0 + 1e-9:
            raise ConfigError(f"faults: the probabilities add up to {total:g}, more than 1")


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """One emulated model: its limits (None = unlimited), latency, thinking and faults.

    Latency of an answer is `latency_base_s + latency_per_output_token_s * output_tokens +
    uniform(0, latency_jitter_s)`, times `EmulatorConfig.latency_scale`. A `thinking` model
    reports thoughts; with `thoughts_share_max_output` (the default) they come out of
    `maxOutputTokens` (or the output limit) before the answer does, as on Google, so a small
    budget can leave a MAX_TOKENS answer with no text; False adds them on top of it, as the
    emulator did before. Implicit caching: a prompt (system
    instruction, then contents) that repeats at least `implicit_cache_min_tokens` leading
    tokens of an earlier prompt to this model, seen within `implicit_cache_ttl_s`, reports the
    shared length (in steps of 256 tokens) as `cachedContentTokenCount` (None: no caching). A
    `retired` model is shut down: it is left out of the model list and every call naming it
    answers 404 NOT_FOUND (`retired_as="not_found"`) or 400 INVALID_ARGUMENT "not supported"
    (`retired_as="unsupported"`).
    """

    rpm: int | None = None
    tpm: int | None = None
    rpd: int | None = None
    latency_base_s: float = 0.0
    latency_per_output_token_s: float = 0.0
    latency_jitter_s: float = 0.0
    thinking: bool = False
    thoughts_share_max_output: bool = True
    input_token_limit: int = 1_048_576
    output_token_limit: int = 65_536
    display_name: str = ""
    version: str = "001"
    implicit_cache_min_tokens: int | None = 1024
    implicit_cache_ttl_s: float = 300.0
    retired: bool = False
    retired_as: str = "not_found"
    faults: FaultConfig = field(default_factory=FaultConfig)

    def __post_init__(self) -> None:
        for name in ("rpm", "tpm", "rpd", "implicit_cache_min_tokens"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ConfigError(f"model.{name} must be an integer or None, got {value!r}")
            _check_non_negative("model", name, value)
        _check_positive("model", "implicit_cache_ttl_s", self.implicit_cache_ttl_s)
        for name in ("thinking", "thoughts_share_max_output", "retired"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(
                    f"model.{name} must be true or false, got {getattr(self, name)!r}"
                )
        _check_choice("model", "retired_as", self.retired_as, RETIREMENTS)
        for name in ("latency_base_s", "latency_per_output_token_s", "latency_jitter_s"):
            _check_non_negative("model", name, getattr(self, name))
        for name in ("input_token_limit", "output_token_limit"):
            _check_positive("model", name, getattr(self, name))
        if not isinstance(self.faults, FaultConfig):
            raise ConfigError(f"model.faults must be a FaultConfig, got {self.faults!r}")


@dataclass(frozen=True, slots=True)
class BatchConfig:
    """The Batch API's timing and its faults; a job keeps the settings it was created under.

    A job is PENDING for `pending_s`, RUNNING for `running_s` (both times
    `EmulatorConfig.latency_scale`, so 0 finishes jobs at once), then ends as `outcome`:
    "succeeded", "failed" or "expired". Google's quirks, each off by default: rows whose
    metadata key is in `error_keys`, or drawn with probability `row_error_rate`, answer with an
    INVALID_ARGUMENT status while the job still succeeds (python-genai #2693); `shuffle` returns
    results out of input order (#1909); `drop_metadata` leaves inline results without their
    `metadata` (#1886, #2008). `max_enqueued_tokens` is Google's enqueued-token quota: the
    input tokens of a model's pending and running jobs; a job that would take them past it is
    refused with the 429 Google sends then (its words for any quota, a Help link, no
    RetryInfo). `max_active_jobs` refuses so one job more than this many pending or running
    per model (Google's quota has been met around the fourth job at once). None: no cap.
    `mime_refusals`: the next N Files API uploads are refused with 400 "Unsupported MIME
    type: <type>", whatever the type (python-genai #1547: Google refuses `jsonl` and
    `application/jsonl` alike now and then).
    `get_503_over_bytes`: while set, a succeeded inline job whose results exceed this size
    answers every `batches.get` with 503 (reported, for good, for large inline outputs); unlike
    the other settings, the current value applies to every job, so the service can recover.
    `lose_output`: a file job's results file is gone (expired, deleted) before it is read, so
    downloading it answers 403, as Google does for a file that is gone.
    """

    pending_s: float = 1.0
    running_s: float = 4.0
    outcome: str = "succeeded"
    row_error_rate: float = 0.0
    error_keys: tuple[str, ...] = ()
    shuffle: bool = False
    drop_metadata: bool = False
    max_active_jobs: int | None = None
    max_enqueued_tokens: int | None = None
    mime_refusals: int = 0
    get_503_over_bytes: int | None = None
    lose_output: bool = False

    def __post_init__(self) -> None:
        _check_non_negative("batch", "pending_s", self.pending_s)
        _check_non_negative("batch", "running_s", self.running_s)
        if self.outcome not in BATCH_OUTCOMES:
            raise ConfigError(
                f"batch.outcome must be one of {', '.join(BATCH_OUTCOMES)}, got {self.outcome!r}"
            )
        _check_probability("batch", "row_error_rate", self.row_error_rate)
        if isinstance(self.error_keys, str) or not all(isinstance(k, str) for k in self.error_keys):
            raise ConfigError(
                f"batch.error_keys must be a list of strings, got {self.error_keys!r}"
            )
        object.__setattr__(self, "error_keys", tuple(self.error_keys))
        for name in ("shuffle", "drop_metadata", "lose_output"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(
                    f"batch.{name} must be true or false, got {getattr(self, name)!r}"
                )
        for name in ("max_active_jobs", "max_enqueued_tokens"):
            cap = getattr(self, name)
            if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
                raise ConfigError(f"batch.{name} must be a positive integer, got {cap!r}")
        over = self.get_503_over_bytes
        if over is not None and (isinstance(over, bool) or not isinstance(over, int) or over < 0):
            raise ConfigError(
                f"batch.get_503_over_bytes must be a whole number of bytes, got {over!r}"
            )
        refusals = self.mime_refusals
        if isinstance(refusals, bool) or not isinstance(refusals, int) or refusals < 0:
            raise ConfigError(
                f"batch.mime_refusals must be a whole number, 0 or more, got {refusals!r}"
            )


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    """Everything the emulator needs; `models` defaults to the free-tier-like catalogue.

    `api_keys`: accepted keys; empty accepts any non-empty key (they are left out of the
    repr). `minute_s` / `day_s`: lengths of the sliding RPM/TPM and RPD windows (compress them
    to test quotas in seconds). `latency_scale` multiplies every simulated latency (0 =
    instant). `hang_s`: how long a `p_hang` fault holds the connection before dropping it.
    `max_body_bytes`: a larger request body is refused unread with Google's 400 for an
    oversized payload (20 MiB, Google's limit for inline requests). `max_file_bytes`: the
    largest Files API upload (2 GiB, Google's limit); uploads are streamed to a temporary
    directory, not held in memory. `batch`: the Batch API's timing and faults.

    The real service's ugly cases, each off by default: `tier` ("free" or "tier1") picks the
    quota names 429s carry (the limits are the models' own, whatever the client believes);
    `quota_errors="bare"` answers every quota 429 without details; `storms` are (start_s,
    end_s) intervals, in seconds since the service was created or last reset, during which
    every generate call answers that bare 429 and charges nothing; `billing="depleted"` answers
    every generate call (live or batch) with the prepayment-credits 429; `refusal`
    ("suspended", "service_disabled", "location") refuses every call that carries a key with
    Google's 403 or 400 FAILED_PRECONDITION; `day_retry_delay_s` is the RetryInfo a per-day
    429 carries instead of the time until the day resets. With real days (`day_s` 86400)
    requests per day are counted per Pacific calendar day, as Google does; a compressed day
    slides. The fields in `LIVE_FIELDS` can be changed while running (`update_config`).
    """

    seed: int = 0
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    minute_s: float = 60.0
    day_s: float = 86_400.0
    latency_scale: float = 1.0
    hang_s: float = 30.0
    max_body_bytes: int = MAX_BODY_BYTES
    max_file_bytes: int = MAX_FILE_BYTES
    batch: BatchConfig = field(default_factory=BatchConfig)
    tier: str = "free"
    quota_errors: str = "detailed"
    storms: tuple[tuple[float, float], ...] = ()
    billing: str = "ok"
    refusal: str | None = None
    day_retry_delay_s: float | None = None
    models: Mapping[str, ModelConfig] = field(default_factory=lambda: default_models())

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"seed must be an integer, got {self.seed!r}")
        if isinstance(self.api_keys, str) or not all(
            isinstance(k, str) and k for k in self.api_keys
        ):
            raise ConfigError("api_keys must be a sequence of non-empty strings")
        object.__setattr__(self, "api_keys", tuple(self.api_keys))
        _check_positive("emulator", "minute_s", self.minute_s)
        _check_positive("emulator", "day_s", self.day_s)
        _check_non_negative("emulator", "latency_scale", self.latency_scale)
        _check_non_negative("emulator", "hang_s", self.hang_s)
        for name in ("max_body_bytes", "max_file_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"emulator.{name} must be a positive integer, got {value!r}")
        if not isinstance(self.batch, BatchConfig):
            raise ConfigError(f"batch must be a BatchConfig, got {self.batch!r}")
        _check_choice("emulator", "tier", self.tier, TIERS)
        _check_choice("emulator", "quota_errors", self.quota_errors, QUOTA_ERRORS)
        _check_choice("emulator", "billing", self.billing, BILLING_STATES)
        _check_choice("emulator", "refusal", self.refusal, (None, *REFUSALS))
        _check_non_negative("emulator", "day_retry_delay_s", self.day_retry_delay_s)
        object.__setattr__(self, "storms", _storms(self.storms))
        for name, model in self.models.items():
            if not isinstance(name, str) or not name or "/" in name or ":" in name:
                raise ConfigError(f"model names must be plain names like 'gemini-x', got {name!r}")
            if not isinstance(model, ModelConfig):
                raise ConfigError(f"models[{name!r}] must be a ModelConfig, got {model!r}")
        # A read-only view keeps the frozen promise for the mapping as well.
        object.__setattr__(self, "models", types.MappingProxyType(dict(self.models)))

    @classmethod
    def from_file(cls, path: str | Path) -> EmulatorConfig:
        """Read a TOML (`.toml`) or JSON file; see `from_mapping` for the layout."""
        path = Path(path)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read emulator config {path}: {exc.strerror}") from exc
        try:
            if path.suffix.lower() == ".json":
                data = json.loads(raw)
            else:
                data = tomllib.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"{path}: not valid {path.suffix.lstrip('.') or 'TOML'}: {exc}"
            ) from exc
        try:
            return cls.from_mapping(data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from exc

    @classmethod
    def from_mapping(cls, data: object) -> EmulatorConfig:
        """Build a config from plain data (parsed TOML/JSON).

        Top-level keys are `EmulatorConfig` fields; `models` maps a model name to a table of
        `ModelConfig` fields, with an optional `faults` table of `FaultConfig` fields; an
        optional `batch` table holds `BatchConfig` fields. A limit
        left out is unlimited (JSON may also say null). Without a `models` table the default
        catalogue of the `tier` is used. `storms` is a list of [start_s, end_s] pairs.
        Unknown keys and wrongly typed values raise `ConfigError`.
        """
        top = _expect_table("config", data)
        kwargs = _convert_fields(cls, "", top, skip={"models", "batch"})
        if "batch" in top:
            batch_table = _expect_table("batch", top["batch"])
            batch_kwargs = _convert_fields(BatchConfig, "batch", batch_table)
            kwargs["batch"] = _build(BatchConfig, "batch", batch_kwargs)
        if "models" in top:
            models_table = _expect_table("models", top["models"])
            models: dict[str, ModelConfig] = {}
            for name, spec in models_table.items():
                where = f"models.{name}"
                table = _expect_table(where, spec)
                model_kwargs = _convert_fields(ModelConfig, where, table, skip={"faults"})
                if "faults" in table:
                    fault_table = _expect_table(f"{where}.faults", table["faults"])
                    fault_kwargs = _convert_fields(FaultConfig, f"{where}.faults", fault_table)
                    model_kwargs["faults"] = _build(FaultConfig, f"{where}.faults", fault_kwargs)
                models[name] = _build(ModelConfig, where, model_kwargs)
            kwargs["models"] = models
        else:
            kwargs["models"] = default_models(kwargs.get("tier", "free"))
        return _build(cls, "", kwargs)


_T = typing.TypeVar("_T")


def _build(cls: type[_T], where: str, kwargs: dict[str, Any]) -> _T:
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}" if where else str(exc)) from exc


def _expect_table(where: str, value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a table/object, got {value!r}")
    return value


def _convert_fields(
    cls: type, where: str, table: Mapping[str, Any], skip: frozenset[str] | set[str] = frozenset()
) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    out: dict[str, Any] = {}
    for key, value in table.items():
        path = f"{where}.{key}" if where else key
        if key not in names:
            raise ConfigError(f"unknown key {path!r} (expected one of: {', '.join(names)})")
        if key in skip:
            continue
        out[key] = _convert_value(path, hints[key], value)
    return out


def _convert_value(path: str, hint: object, value: object) -> object:
    optional = hint in (int | None, float | None, str | None)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{path} may not be null")
    base = typing.get_args(hint)[0] if optional else hint
    if base is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{path} must be true or false, got {value!r}")
    if base is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{path} must be an integer, got {value!r}")
    if base is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{path} must be a number, got {value!r}")
    if base is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{path} must be a string, got {value!r}")
    if base == tuple[str, ...]:
        if isinstance(value, list) and all(isinstance(v, str) and v for v in value):
            return tuple(value)
        raise ConfigError(f"{path} must be a list of non-empty strings, got {value!r}")
    if base == tuple[tuple[float, float], ...]:
        return value  # checked by the dataclass, which knows what a storm is
    raise AssertionError(f"no converter for {path}: {hint!r}")  # a new field needs a case here


@dataclass(frozen=True, slots=True)
class _Catalogued:
    """A default model's character; its limits depend on the tier."""

    display_name: str
    latency_s: float
    per_token_s: float
    thinking: bool = True
    output_limit: int = 65_536


# Limits (RPM / input TPM / RPD; None: no daily limit) per tier. Free: the free tier as it
# was published before Google stopped publishing per-model tables. Tier 1 (billing linked):
# the published Tier 1 figures for the 2.5 models (notes/genai_sdk.md section 6), carried
# over to the newer models of the same size; Flash-Lite models publish no daily limit.
_Limits = tuple[int, int, int | None]
_FLASH: dict[str, _Limits] = {"free": (10, 250_000, 250), "tier1": (1000, 1_000_000, 10_000)}
_LITE: dict[str, _Limits] = {"free": (15, 250_000, 1000), "tier1": (4000, 4_000_000, None)}
_PRO: dict[str, _Limits] = {"free": (5, 250_000, 100), "tier1": (150, 2_000_000, 10_000)}
_OLD_LITE: dict[str, _Limits] = {"free": (30, 1_000_000, 1500), "tier1": (4000, 4_000_000, None)}

_CATALOGUE: dict[str, tuple[_Catalogued, dict[str, _Limits]]] = {
    "gemini-3.8-flash": (_Catalogued("Gemini 3.8 Flash", 1.5, 0.004), _FLASH),
    "gemini-3.5-flash": (_Catalogued("Gemini 3.5 Flash", 1.5, 0.004), _FLASH),
    "gemini-3.5-flash-lite": (_Catalogued("Gemini 3.5 Flash-Lite", 1.0, 0.002), _LITE),
    "gemini-3.1-flash-lite": (_Catalogued("Gemini 3.1 Flash-Lite", 1.0, 0.002), _LITE),
    "gemini-3.1-pro-preview": (_Catalogued("Gemini 3.1 Pro Preview", 3.0, 0.008), _PRO),
    "gemini-2.5-pro": (_Catalogued("Gemini 2.5 Pro", 2.5, 0.008), _PRO),
    "gemini-2.5-flash": (_Catalogued("Gemini 2.5 Flash", 1.5, 0.004), _FLASH),
    "gemini-2.5-flash-lite": (
        _Catalogued("Gemini 2.5 Flash-Lite", 1.0, 0.002, thinking=False),
        _LITE,
    ),
    "gemini-2.0-flash-lite": (
        _Catalogued("Gemini 2.0 Flash-Lite", 1.0, 0.002, thinking=False, output_limit=8_192),
        _OLD_LITE,
    ),
}


def default_models(tier: str = "free") -> dict[str, ModelConfig]:
    """The catalogue with `tier`'s limits (RPM / input TPM / RPD) and realistic latency.

    "free": free-tier-like limits; "tier1": about 100 times more (e.g. gemini-3.8-flash 1000
    RPM, 1,000,000 TPM, 10,000 RPD; the Flash-Lite models 4000 RPM, 4,000,000 TPM). The models
    Google has shut down are served (demos rely on them); see `google_retirements`.
    """
    _check_choice("emulator", "tier", tier, TIERS)
    models = {}
    for name, (model, limits) in _CATALOGUE.items():
        rpm, tpm, rpd = limits[tier]
        models[name] = ModelConfig(
            rpm=rpm,
            tpm=tpm,
            rpd=rpd,
            latency_base_s=model.latency_s,
            latency_per_output_token_s=model.per_token_s,
            latency_jitter_s=model.latency_s / 2,
            thinking=model.thinking,
            output_token_limit=model.output_limit,
            display_name=model.display_name,
        )
    return models


def google_retirements(
    models: Mapping[str, ModelConfig], retired_as: str = "not_found"
) -> dict[str, ModelConfig]:
    """`models` with those Google has shut down (`GOOGLE_SHUT_DOWN`) marked retired.

    `EmulatorConfig(models=google_retirements(default_models()))` serves the catalogue as
    Google does after December 2026: gemini-2.5-pro, gemini-2.5-flash and
    gemini-2.0-flash-lite answer 404 (or, with `retired_as="unsupported"`, 400).
    """
    return {
        name: dataclasses.replace(model, retired=True, retired_as=retired_as)
        if name in GOOGLE_SHUT_DOWN
        else model
        for name, model in models.items()
    }


def default_config() -> EmulatorConfig:
    """The default configuration: real window lengths, the full catalogue, no faults, any key."""
    return EmulatorConfig()
