"""Parsing and validating request bodies: generateContent, streamGenerateContent, countTokens.

Owns `GenerateRequest` and the rules for reading the wire format leniently where Google is
lenient (camelCase or snake_case for every field, as proto3 JSON allows) and strictly where
Google is strict (unknown field names, missing `contents`, values out of range are 400
INVALID_ARGUMENT), so that a client which sends a misspelt field learns it here rather than in
production. Imports nothing from the engine.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .casing import either_case, snake
from .tokens import count_tokens

__all__ = [
    "GenerateRequest",
    "RequestError",
    "load_object",
    "parse_count_tokens",
    "parse_generate",
]

_TOP_LEVEL_TEXT = (
    "model contents systemInstruction generationConfig safetySettings tools toolConfig "
    "cachedContent labels serviceTier store"
)

_GENERATION_CONFIG_TEXT = (
    "candidateCount maxOutputTokens temperature topP topK seed presencePenalty frequencyPenalty "
    "responseLogprobs logprobs stopSequences responseMimeType responseSchema responseJsonSchema "
    "responseModalities mediaResolution speechConfig audioTimestamp thinkingConfig imageConfig "
    "enableEnhancedCivicAnswers routingConfig modelSelectionConfig"
)

_MIME_TYPES = (
    "text/plain",
    "application/json",
    "application/xml",
    "application/yaml",
    "text/x.enum",
)

_MAX_STOP_SEQUENCES = 5

# thinkingConfig.thinkingLevel values (any case, as Google's own examples send "low");
# UNSPECIFIED means the model's default.
_THINKING_LEVELS = ("MINIMAL", "LOW", "MEDIUM", "HIGH", "XHIGH")
_UNSPECIFIED_LEVEL = "THINKING_LEVEL_UNSPECIFIED"


class RequestError(ValueError):
    """The body is not a valid request; the message is what the 400 response says."""


def _field_names(camel_names: str) -> frozenset[str]:
    """The accepted spellings of space-separated camelCase field names."""
    names = camel_names.split()
    return frozenset(names) | {snake(name) for name in names}


_TOP_LEVEL = _field_names(_TOP_LEVEL_TEXT)
_GENERATION_CONFIG = _field_names(_GENERATION_CONFIG_TEXT)
_COUNT_TOKENS = _field_names("contents generateContentRequest")


def _reject_unknown(obj: Mapping[str, Any], known: frozenset[str], where: str) -> None:
    for key in obj:
        if key not in known:
            at = f" at '{where}'" if where else ""
            raise RequestError(
                f'Invalid JSON payload received. Unknown name "{key}"{at}: Cannot find field.'
            )


def load_object(body: bytes) -> dict[str, Any]:
    """A body that must be one JSON object."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(f"Invalid JSON payload received. {exc}") from exc
    if not isinstance(data, dict):
        raise RequestError("Invalid JSON payload received. Expected an object.")
    return data


def _content_texts(content: Any, where: str) -> tuple[str, list[str]]:
    """(role, texts) of one Content; non-text parts (images, calls) carry no text here."""
    if isinstance(content, str):
        return "user", [content]
    if not isinstance(content, dict):
        raise RequestError(f"* GenerateContentRequest.{where}: must be an object\n")
    parts = content.get("parts")
    if not isinstance(parts, list) or not parts:
        raise RequestError(
            f"* GenerateContentRequest.{where}.parts: contents.parts must not be empty.\n"
        )
    texts: list[str] = []
    for i, part in enumerate(parts):
        if not isinstance(part, dict):
            raise RequestError(f"* GenerateContentRequest.{where}.parts[{i}]: must be an object\n")
        text = part.get("text")
        if text is not None and not isinstance(text, str):
            raise RequestError(
                f"* GenerateContentRequest.{where}.parts[{i}].text: must be a string\n"
            )
        if text is not None and not part.get("thought"):
            texts.append(text)
    role = content.get("role") or "user"
    return str(role), texts


def _number(config: Mapping[str, Any], camel: str, low: float, high: float) -> float | None:
    value = either_case(config, camel)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RequestError(
            f"* GenerateContentRequest.generation_config.{snake(camel)}: must be a number\n"
        )
    if not low <= value <= high:
        raise RequestError(
            f"Unable to submit request because it has a {camel} value of {value:g} but the "
            f"supported range is from {low:g} (inclusive) to {high:g} (inclusive). "
            "Update the value and try again."
        )
    return float(value)


def _integer(config: Mapping[str, Any], camel: str, where: str) -> int | None:
    value = either_case(config, camel)
    if value is None:
        return None
    # JSON has one number type and some clients send 64.0 for 64.
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise RequestError(f"* GenerateContentRequest.{where}.{snake(camel)}: must be an integer\n")
    return int(value)


@dataclass(frozen=True, slots=True)
class GenerateRequest:
    """What the emulator needs from a generateContent body, normalised."""

    prompt_text: str  # the user-visible text of `contents`, turns joined by newlines
    system_text: str
    max_output_tokens: int | None
    stop_sequences: tuple[str, ...]
    response_mime_type: str
    response_schema: Mapping[str, Any] | None  # either dialect; the generator reads both
    thinking_budget: int | None
    thinking_level: str | None  # one of _THINKING_LEVELS, upper case
    include_thoughts: bool
    fingerprint: str  # canonical form of everything that shapes the answer's words

    @property
    def prompt_tokens(self) -> int:
        return count_tokens(self.system_text) + count_tokens(self.prompt_text)


def _contents(data: Mapping[str, Any]) -> tuple[list[tuple[str, str]], str]:
    contents = data.get("contents")
    if contents is None or contents == []:
        raise RequestError("* GenerateContentRequest.contents: contents is not specified\n")
    if not isinstance(contents, list):
        raise RequestError("* GenerateContentRequest.contents: must be a list of Content objects\n")
    turns: list[tuple[str, str]] = []
    for i, content in enumerate(contents):
        role, texts = _content_texts(content, f"contents[{i}]")
        turns.append((role, "\n".join(texts)))
    system = either_case(data, "systemInstruction")
    system_text = ""
    if system is not None:
        system_text = "\n".join(_content_texts(system, "system_instruction")[1])
    return turns, system_text


def _thinking(config: Mapping[str, Any]) -> tuple[int | None, str | None, bool]:
    """(thinkingBudget, thinkingLevel, includeThoughts) of a generationConfig."""
    where = "* GenerateContentRequest.generation_config.thinking_config"
    thinking = either_case(config, "thinkingConfig") or {}
    if not isinstance(thinking, dict):
        raise RequestError(f"{where}: must be an object\n")
    budget = _integer(thinking, "thinkingBudget", "generation_config.thinking_config")
    if budget is not None and budget < -1:
        raise RequestError(f"{where}.thinking_budget: must be -1 (dynamic), 0 (off) or positive\n")
    level = either_case(thinking, "thinkingLevel")
    if level is not None:
        named = level.upper() if isinstance(level, str) else None
        if named not in (*_THINKING_LEVELS, _UNSPECIFIED_LEVEL):
            raise RequestError(
                f"{where}.thinking_level: must be one of {', '.join(_THINKING_LEVELS)}\n"
            )
        level = None if named == _UNSPECIFIED_LEVEL else named
    if level is not None and budget is not None:
        raise RequestError(
            f"{where}: thinking_budget and thinking_level cannot both be set; use one.\n"
        )
    include = either_case(thinking, "includeThoughts")
    if include is not None and not isinstance(include, bool):
        raise RequestError(f"{where}.include_thoughts: must be true or false\n")
    return budget, level, bool(include)


def parse_generate(body: bytes | Mapping[str, Any]) -> GenerateRequest:
    """Parse and validate a generateContent / streamGenerateContent body (or a batch's row)."""
    data = body if isinstance(body, Mapping) else load_object(body)
    _reject_unknown(data, _TOP_LEVEL, "")
    turns, system_text = _contents(data)
    config = either_case(data, "generationConfig") or {}
    if not isinstance(config, dict):
        raise RequestError("* GenerateContentRequest.generation_config: must be an object\n")
    _reject_unknown(config, _GENERATION_CONFIG, "generation_config")
    safety = either_case(data, "safetySettings")
    if safety is not None and not (
        isinstance(safety, list) and all(isinstance(s, dict) and "category" in s for s in safety)
    ):
        raise RequestError(
            "* GenerateContentRequest.safety_settings: must be a list of {category, threshold}\n"
        )

    temperature = _number(config, "temperature", 0.0, 2.0)
    top_p = _number(config, "topP", 0.0, 1.0)
    top_k = _integer(config, "topK", "generation_config")
    seed = _integer(config, "seed", "generation_config")
    max_output_tokens = _integer(config, "maxOutputTokens", "generation_config")
    if max_output_tokens is not None and max_output_tokens < 1:
        raise RequestError(
            "* GenerateContentRequest.generation_config.max_output_tokens: must be positive\n"
        )

    stops = either_case(config, "stopSequences") or []
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise RequestError(
            "* GenerateContentRequest.generation_config.stop_sequences: must be a list of "
            "non-empty strings\n"
        )
    if len(stops) > _MAX_STOP_SEQUENCES:
        raise RequestError(
            "* GenerateContentRequest.generation_config.stop_sequences: at most "
            f"{_MAX_STOP_SEQUENCES} stop sequences are allowed\n"
        )

    mime = either_case(config, "responseMimeType") or "text/plain"
    if mime not in _MIME_TYPES:
        raise RequestError(
            "* GenerateContentRequest.generation_config.response_mime_type: allowed mimetypes are "
            "`text/plain`, `application/json`, `application/xml`, `application/yaml` and "
            "`text/x.enum`.\n"
        )
    openapi_schema = either_case(config, "responseSchema")
    json_schema = either_case(config, "responseJsonSchema")
    if openapi_schema is not None and json_schema is not None:
        raise RequestError(
            "* GenerateContentRequest.generation_config: response_schema and "
            "response_json_schema cannot both be set\n"
        )
    schema = json_schema if json_schema is not None else openapi_schema
    if schema is not None:
        if not isinstance(schema, dict):
            raise RequestError(
                "* GenerateContentRequest.generation_config.response_schema: must be an object\n"
            )
        if mime not in ("application/json", "text/x.enum"):
            raise RequestError(
                "* GenerateContentRequest.generation_config.response_mime_type: a response "
                "schema requires response_mime_type `application/json` or `text/x.enum`\n"
            )

    budget, level, include_thoughts = _thinking(config)

    fingerprint = json.dumps(
        {
            "turns": turns,
            "system": system_text,
            "temperature": temperature,
            "top_p": top_p,
            "top_k": top_k,
            "seed": seed,
            "mime": mime,
            "schema": schema,
        },
        sort_keys=True,
        ensure_ascii=False,
    )
    return GenerateRequest(
        prompt_text="\n".join(text for _, text in turns),
        system_text=system_text,
        max_output_tokens=max_output_tokens,
        stop_sequences=tuple(stops),
        response_mime_type=mime,
        response_schema=schema,
        thinking_budget=budget,
        thinking_level=level,
        include_thoughts=include_thoughts,
        fingerprint=fingerprint,
    )


def parse_count_tokens(body: bytes) -> int:
    """The token count for a countTokens body: `contents` or a whole `generateContentRequest`."""
    data = load_object(body)
    _reject_unknown(data, _COUNT_TOKENS, "")
    inner = either_case(data, "generateContentRequest")
    if inner is not None:
        if not isinstance(inner, dict):
            raise RequestError("* CountTokensRequest.generate_content_request: must be an object\n")
        return parse_generate(inner).prompt_tokens
    turns, system_text = _contents(data)
    return count_tokens(system_text) + count_tokens("\n".join(text for _, text in turns))
