"""What a 200 reply means: a success (with parsed data), or a failure of its own kind.

The service answers 200 for truncated answers (finish reason MAX_TOKENS), safety blocks and
empty candidates, and a model may return text that does not fit the requested schema. These are
judged here, before the engine counts a request as done. Imports nothing outside `engine/`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from .values import Failure, Reply, Schema

BLOCK_REASONS = frozenset(
    {"SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "RECITATION", "IMAGE_SAFETY"}
)


@dataclass(frozen=True, slots=True)
class Verdict:
    """`failure` None means success; `retryable` says whether another attempt may do better."""

    failure: Failure | None
    data: Any = None
    retryable: bool = False


def judge_reply(reply: Reply, schema: Schema) -> Verdict:
    """Judge a reply: blocked and truncated are final, empty and invalid JSON may be retried."""
    finish = (reply.finish_reason or "").upper()
    if reply.block_reason or finish in BLOCK_REASONS:
        return Verdict(
            Failure("blocked", f"blocked by the service ({reply.block_reason or finish})")
        )
    if finish == "MAX_TOKENS":
        return Verdict(
            Failure(
                "truncated",
                "the answer hit max_output_tokens (finish reason MAX_TOKENS); raise "
                "max_output_tokens or shorten the task",
            )
        )
    if not reply.text:
        empty = Failure("malformed_response", f"empty answer (finish reason {finish or '?'})", 200)
        return Verdict(empty, retryable=True)
    if schema is None:
        return Verdict(None)
    try:
        return Verdict(None, parse_structured(reply.text, schema))
    except ValueError as exc:
        return Verdict(Failure("invalid_json", str(exc)[:500]), retryable=True)


def json_schema_of(schema: Schema) -> dict[str, Any]:
    """The JSON Schema for a Pydantic model class or a JSON Schema dict (sent, stored, keyed)."""
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        return schema.model_json_schema()
    if isinstance(schema, Mapping):
        return dict(schema)
    raise TypeError(f"schema must be a Pydantic model class or a JSON Schema dict, not {schema!r}")


def parse_structured(text: str, schema: Schema) -> Any:
    """Parse a JSON answer against a Pydantic model class or (leniently) a JSON Schema dict.

    Raises ValueError when the text is not JSON or does not validate against the model.
    """
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        try:
            return schema.model_validate_json(text)
        except ValidationError as exc:
            raise ValueError(f"answer does not match {schema.__name__}: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"answer is not valid JSON: {exc}") from None
