"""What a 200 reply means: a success (with parsed data), or a failure of its own kind.

The service answers 200 for truncated answers (finish reason MAX_TOKENS), safety blocks (of the
answer, or of the prompt alone: `promptFeedback.blockReason` and no candidates), answers in a
language it does not support (LANGUAGE), answers that ended for another or a new reason (OTHER,
MALFORMED_FUNCTION_CALL, reasons added after this was written), empty candidates, and usage
figures that cannot be true; and a model may return text that does not fit the requested schema.
These are judged here, before the engine counts a request as done: only STOP (or no reason at
all) with text is a success. Imports nothing outside `engine/`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, PydanticUserError, ValidationError

from .errors import ConfigurationError
from .values import Failure, Reply, Schema, check_encodable

# Finish reasons by what they mean; any other is `unexpected_finish` (retried: another attempt
# may end normally). The SDK's FinishReason lists them all (tests check that none is missed).
SUCCESS_REASONS = frozenset({"STOP"})
BLOCK_REASONS = frozenset(
    {
        "SAFETY",
        "PROHIBITED_CONTENT",
        "BLOCKLIST",
        "SPII",
        "RECITATION",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
        "MODEL_ARMOR",
    }
)
TRUNCATED_REASONS = frozenset({"MAX_TOKENS"})
LANGUAGE_REASONS = frozenset({"LANGUAGE"})


@dataclass(frozen=True, slots=True)
class Verdict:
    """`failure` None means success; `retryable` says whether another attempt may do better."""

    failure: Failure | None
    data: Any = None
    retryable: bool = False


def judge_reply(reply: Reply, schema: Schema) -> Verdict:
    """Judge a reply: blocked, truncated and unsupported-language are final; impossible usage,
    an unexpected finish reason, an empty answer and invalid JSON may be retried."""
    problem = reply.usage.problem
    if problem is not None:
        return Verdict(
            Failure("malformed_response", f"the reply's usage is impossible: {problem}", 200),
            retryable=True,
        )
    finish = (reply.finish_reason or "").upper()
    if reply.block_reason or finish in BLOCK_REASONS:
        return Verdict(
            Failure("blocked", f"blocked by the service ({reply.block_reason or finish})")
        )
    if finish in TRUNCATED_REASONS:
        return Verdict(
            Failure(
                "truncated",
                "the answer hit its output-token cap (finish reason MAX_TOKENS; thinking "
                "tokens count against it too); raise the cap (--max-tokens N in a magic or "
                "`scriptgen`, max_output_tokens= in Python) or shorten the task",
            )
        )
    if finish in LANGUAGE_REASONS:
        return Verdict(
            Failure(
                "unsupported_language",
                "the model stopped: the prompt or answer is in a language it does not support "
                "(finish reason LANGUAGE); ask in a supported language or use another model",
            )
        )
    if finish and finish not in SUCCESS_REASONS:
        unexpected = Failure(
            "unexpected_finish",
            f"the answer ended for a reason other than STOP (finish reason {finish})",
            200,
        )
        return Verdict(unexpected, retryable=True)
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
    """The JSON Schema for a Pydantic model class or a JSON Schema dict (sent, stored, keyed).

    Anything else is a `ConfigurationError` saying what a schema may be: it is caught when the
    requests are made, before anything is sent, rather than failing every request's answer.
    """
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        try:
            written = schema.model_json_schema()
        except PydanticUserError as exc:  # e.g. a field of a type with no JSON Schema
            raise ConfigurationError(
                f"schema {schema.__name__} has no JSON Schema ({exc}); use JSON-compatible "
                "field types (str, int, float, bool, lists, nested models)."
            ) from None
        check_encodable(written, "its JSON Schema", f"schema {schema.__name__}")
        return written
    if isinstance(schema, BaseModel):
        raise ConfigurationError(
            f"schema is an instance of {type(schema).__name__}; pass the class itself "
            f"(schema={type(schema).__name__})."
        )
    if isinstance(schema, Mapping):
        problem = _json_schema_problem(schema)
        if problem:
            raise ConfigurationError(
                f"schema is not a valid JSON Schema object: {problem}. Use a Pydantic model "
                "class, or a dict such as {'type': 'object', 'properties': {'title': "
                "{'type': 'string'}}}."
            )
        check_encodable(schema, "the schema", "schema")
        return dict(schema)
    raise ConfigurationError(
        f"schema must be a Pydantic model class or a JSON Schema dict, not "
        f"{type(schema).__name__} {schema!r:.80}."
    )


JSON_TYPES = frozenset({"string", "number", "integer", "boolean", "array", "object", "null"})
# Keywords one of which a schema must use to say anything about the answer.
_SHAPING = frozenset(
    {"type", "properties", "items", "enum", "const", "anyOf", "oneOf", "allOf", "$ref"}
)


def _json_schema_problem(schema: Mapping[Any, Any], path: str = "the schema") -> str | None:
    """What makes `schema` unusable as a (sub)schema, or None. Checks structure, not semantics."""
    if not all(isinstance(key, str) for key in schema):
        return f"{path} has keys that are not strings"
    if path == "the schema":
        try:
            json.dumps(schema, allow_nan=False)
        except (TypeError, ValueError) as exc:
            return f"it cannot be written as JSON ({exc})"
        if not _SHAPING & set(schema):
            return f"it uses none of the keywords {', '.join(sorted(_SHAPING))}"
    kind = schema.get("type")
    if kind is not None:
        kinds = kind if isinstance(kind, list) else [kind]
        bad = [k for k in kinds if not isinstance(k, str) or k.lower() not in JSON_TYPES]
        if bad or not kinds:
            return f"{path} has type {kind!r}; use one of {', '.join(sorted(JSON_TYPES))}"
    properties = schema.get("properties")
    if properties is not None:
        if not isinstance(properties, Mapping):
            return f"{path}'s properties must be a mapping of names to schemas"
        for name, sub in properties.items():
            if not isinstance(sub, Mapping):
                return f"property {name!r} of {path} is {sub!r}, not a schema (a dict)"
            problem = _json_schema_problem(sub, f"property {name!r}")
            if problem:
                return problem
    items = schema.get("items")
    if items is not None and not isinstance(items, Mapping | bool):
        return f"{path}'s items must be a schema (a dict)"
    if isinstance(items, Mapping):
        problem = _json_schema_problem(items, f"the items of {path}")
        if problem:
            return problem
    required = schema.get("required")
    if required is not None and (
        not isinstance(required, list) or not all(isinstance(r, str) for r in required)
    ):
        return f"{path}'s required must be a list of property names"
    for keyword in ("anyOf", "oneOf", "allOf"):
        options = schema.get(keyword)
        if options is not None and (
            not isinstance(options, list)
            or not options
            or not all(isinstance(o, Mapping) for o in options)
        ):
            return f"{path}'s {keyword} must be a non-empty list of schemas"
    enum = schema.get("enum")
    if enum is not None and (not isinstance(enum, list) or not enum):
        return f"{path}'s enum must be a non-empty list"
    return None


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
