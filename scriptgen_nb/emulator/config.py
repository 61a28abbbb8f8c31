"""The emulator's configuration: frozen dataclasses, the default model catalogue, file loading.

Owns `FaultConfig`, `ModelConfig`, `EmulatorConfig`, `default_config()` and the TOML/JSON
reader. Imports nothing from the engine (or anything else in scriptgen_nb outside
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
    "MAX_BODY_BYTES",
    "MAX_FILE_BYTES",
    "BatchConfig",
    "ConfigError",
    "EmulatorConfig",
    "FaultConfig",
    "ModelConfig",
    "default_config",
    "default_models",
]


# Google refuses a request payload over 20 MiB ("Request payload size exceeds the limit").
MAX_BODY_BYTES = 20 * 1024 * 1024
# Google accepts Files API uploads (a batch's JSONL input among them) of up to 2 GB.
MAX_FILE_BYTES = 2 * 1024 * 1024 * 1024
# How a batch job that is neither cancelled nor broken ends.
BATCH_OUTCOMES = ("succeeded", "failed", "expired")


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


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """Per-model probabilities of injected faults, drawn per admitted attempt (sum at most 1).

    `p_500` internal error, `p_503` "model is overloaded", `p_hang` hold the request for
    `EmulatorConfig.hang_s` then drop the connection, `p_malformed` a 200 whose JSON is broken,
    `p_truncate` a 200 cut short with finishReason MAX_TOKENS, `p_block` a 200 safety block,
    `p_reset` the connection is reset half-way through the response, `p_429` a per-minute 429
    although the windows had room (the project's quota used elsewhere), retry after a quarter
    of a window.
    """

    p_500: float = 0.0
    p_503: float = 0.0
    p_hang: float = 0.0
    p_malformed: float = 0.0
    p_truncate: float = 0.0
    p_block: float = 0.0
    p_reset: float = 0.0
    p_429: float = 0.0

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
    uniform(0, latency_jitter_s)`, times `EmulatorConfig.latency_scale`.
    """

    rpm: int | None = None
    tpm: int | None = None
    rpd: int | None = None
    latency_base_s: float = 0.0
    latency_per_output_token_s: float = 0.0
    latency_jitter_s: float = 0.0
    thinking: bool = False
    input_token_limit: int = 1_048_576
    output_token_limit: int = 65_536
    display_name: str = ""
    version: str = "001"
    faults: FaultConfig = field(default_factory=FaultConfig)

    def __post_init__(self) -> None:
        for name in ("rpm", "tpm", "rpd"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ConfigError(f"model.{name} must be an integer or None, got {value!r}")
            _check_non_negative("model", name, value)
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
    `metadata` (#1886, #2008). `max_active_jobs` caps the pending and running jobs per model
    (None: no cap); one more is refused with a 429.
    """

    pending_s: float = 1.0
    running_s: float = 4.0
    outcome: str = "succeeded"
    row_error_rate: float = 0.0
    error_keys: tuple[str, ...] = ()
    shuffle: bool = False
    drop_metadata: bool = False
    max_active_jobs: int | None = None

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
        for name in ("shuffle", "drop_metadata"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(
                    f"batch.{name} must be true or false, got {getattr(self, name)!r}"
                )
        cap = self.max_active_jobs
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
            raise ConfigError(f"batch.max_active_jobs must be a positive integer, got {cap!r}")


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
        catalogue is used. Unknown keys and wrongly typed values raise `ConfigError`.
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
    optional = hint in (int | None, float | None)
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
    raise AssertionError(f"no converter for {path}: {hint!r}")  # a new field needs a case here


def _model(
    rpm: int,
    tpm: int,
    rpd: int,
    base: float,
    per_token: float,
    *,
    thinking: bool = True,
    output_limit: int = 65_536,
    display_name: str,
) -> ModelConfig:
    return ModelConfig(
        rpm=rpm,
        tpm=tpm,
        rpd=rpd,
        latency_base_s=base,
        latency_per_output_token_s=per_token,
        latency_jitter_s=base / 2,
        thinking=thinking,
        output_token_limit=output_limit,
        display_name=display_name,
    )


def default_models() -> dict[str, ModelConfig]:
    """The catalogue: free-tier-like limits (RPM / input TPM / RPD) and realistic latency."""
    return {
        "gemini-3.8-flash": _model(10, 250_000, 250, 1.5, 0.004, display_name="Gemini 3.8 Flash"),
        "gemini-3.5-flash": _model(10, 250_000, 250, 1.5, 0.004, display_name="Gemini 3.5 Flash"),
        "gemini-3.5-flash-lite": _model(
            15, 250_000, 1000, 1.0, 0.002, display_name="Gemini 3.5 Flash-Lite"
        ),
        "gemini-3.1-flash-lite": _model(
            15, 250_000, 1000, 1.0, 0.002, display_name="Gemini 3.1 Flash-Lite"
        ),
        "gemini-3.1-pro-preview": _model(
            5, 250_000, 100, 3.0, 0.008, display_name="Gemini 3.1 Pro Preview"
        ),
        "gemini-2.5-pro": _model(5, 250_000, 100, 2.5, 0.008, display_name="Gemini 2.5 Pro"),
        "gemini-2.5-flash": _model(10, 250_000, 250, 1.5, 0.004, display_name="Gemini 2.5 Flash"),
        "gemini-2.5-flash-lite": _model(
            15, 250_000, 1000, 1.0, 0.002, thinking=False, display_name="Gemini 2.5 Flash-Lite"
        ),
        "gemini-2.0-flash-lite": _model(
            30,
            1_000_000,
            1500,
            1.0,
            0.002,
            thinking=False,
            output_limit=8_192,
            display_name="Gemini 2.0 Flash-Lite",
        ),
    }


def default_config() -> EmulatorConfig:
    """The default configuration: real window lengths, the full catalogue, no faults, any key."""
    return EmulatorConfig()
