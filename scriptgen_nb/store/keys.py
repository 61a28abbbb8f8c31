"""What identifies a request's answer (the cache key) and how a request is written down.

The key covers everything that shapes the answer: the rendered prompt, system instruction,
schema, generation settings, operation, the requested model ladder (or pinned model), and where
answers come from (`answer_source`: Google or another real endpoint by its name, every emulator
as one), so an emulator's output is never served to a real run, while a re-run on a new local
emulator (another port) is served what an earlier one answered. It does not cover the model that
happened to serve the answer. Pure functions; no duckdb.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from ..engine.values import GenerationRequest
from ..engine.verdict import json_schema_of

KEY_VERSION = 1  # bump when what the key covers changes, so old entries stop matching
EMULATOR_SOURCE = "emulator"  # every emulator's answers, whatever its address


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def generation_settings(request: GenerationRequest) -> dict[str, Any]:
    """The settings that shape an answer, unset ones left out."""
    settings = {
        "temperature": request.temperature,
        "max_output_tokens": request.max_output_tokens,
        "top_p": request.top_p,
        "top_k": request.top_k,
        "seed": request.seed,
        "stop_sequences": list(request.stop_sequences) or None,
        "thinking_budget": request.thinking_budget,
        "thinking_level": request.thinking_level,
        "safety_settings": [dict(s) for s in request.safety_settings] or None,
    }
    return {k: v for k, v in settings.items() if v is not None}


def schema_of(request: GenerationRequest) -> dict[str, Any] | None:
    return None if request.schema is None else json_schema_of(request.schema)


def schema_name(request: GenerationRequest) -> str | None:
    """`module:QualName` of a Pydantic schema, so a later process can find the class again."""
    schema = request.schema
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        return f"{schema.__module__}:{schema.__qualname__}"
    return None


def uncached_key(batch_id: str, request_id: str) -> str:
    """The key of a request logged with `cache="off"`: never matched (lookups ask for content
    keys) and distinct per request (one key shared by every row made a degenerate index entry
    whose checkpoints grew with the log: 750 MB at 150,000 requests)."""
    return f"off:{batch_id}/{request_id}"


def answer_source(endpoint: str, simulated: bool) -> str:
    """Where a batch's answers come from, as its cache keys name it: "emulator" for any
    emulator (its port changes from run to run; its answers are simulated either way), else
    the endpoint ("google" or a base URL). Learned limits stay per endpoint, not per source."""
    return EMULATOR_SOURCE if simulated else endpoint


def content_key(request: GenerationRequest, ladder: Sequence[str], endpoint: str) -> str:
    """The cache key of a request's answer (hex sha256); `endpoint` is the `answer_source`."""
    payload = {
        "v": KEY_VERSION,
        "prompt": request.prompt,
        "system": request.system,
        "schema": schema_of(request),
        "settings": generation_settings(request),
        "operation": request.operation,
        "models": [request.model] if request.model else list(ladder),
        "endpoint": endpoint,
    }
    return sha256(_canonical(payload))


def request_config(request: GenerationRequest) -> str:
    """The request's settings, pinned model and metadata as JSON (the `request.config` column)."""
    return _canonical(
        {
            "settings": generation_settings(request),
            "model": request.model,
            "metadata": dict(request.metadata),
        }
    )


def template_hash(request: GenerationRequest) -> str | None:
    """The prompt template's hash, when the request was rendered from one."""
    value = request.metadata.get("template_hash")
    return None if value is None else str(value)


def data_json(data: Any) -> str | None:
    """Parsed structured output as JSON text (Pydantic instances dumped)."""
    if data is None:
        return None
    if isinstance(data, BaseModel):
        return data.model_dump_json()
    return _canonical(data)
