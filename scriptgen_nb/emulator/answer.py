"""The model's answer: its words, finish reason and token usage, and its wire form.

Owns `Answer`, `compose` (prose or schema-conforming JSON for a request, cut by stop sequences,
`maxOutputTokens` or an injected truncation, or replaced by a safety block) and the
GenerateContentResponse bodies built from it: one JSON object, or the SSE chunks of a stream
with the finish reason and final usage on the last chunk. Usage always agrees with the text
returned. Imports nothing from the engine.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from .config import ModelConfig
from .content import keywords, script_text
from .determinism import rng
from .request import GenerateRequest
from .schema import SchemaError, conforming_value
from .tokens import count_tokens, truncate_to_tokens

__all__ = ["Answer", "SchemaError", "compose", "natural_text", "response_body", "stream_chunks"]

_HARM_CATEGORIES = (
    "HARM_CATEGORY_SEXUALLY_EXPLICIT",
    "HARM_CATEGORY_HATE_SPEECH",
    "HARM_CATEGORY_HARASSMENT",
    "HARM_CATEGORY_DANGEROUS_CONTENT",
)

# Streams arrive in pieces of roughly this many tokens, like the real service's chunks.
_CHUNK_TOKENS = 40


@dataclass(frozen=True, slots=True)
class Answer:
    """One candidate's outcome; `text` is None for a safety block."""

    text: str | None
    finish_reason: str
    prompt_tokens: int
    candidates_tokens: int
    thoughts_tokens: int
    blocked_category: str | None = None

    @property
    def output_tokens(self) -> int:
        """Tokens the model generated (answer plus thinking): what latency is charged for."""
        return self.candidates_tokens + self.thoughts_tokens


def natural_text(request: GenerateRequest, model: str, seed: int) -> str:
    """The full answer before any cut; raises `SchemaError` for an unsatisfiable schema."""
    r = rng(seed, "answer", model, request.fingerprint)
    schema = request.response_schema
    if schema is None:
        return script_text(r, request.prompt_text)
    if request.response_mime_type == "text/x.enum":
        values = schema.get("enum")
        if not isinstance(values, list) or not values:
            raise SchemaError("response_mime_type text/x.enum requires a schema with an enum")
        return str(r.choice(values))
    value = conforming_value(schema, r, keywords(request.prompt_text))
    return json.dumps(value, ensure_ascii=False)


def _thoughts(
    request: GenerateRequest, model_name: str, model: ModelConfig, seed: int, out: int
) -> int:
    if not model.thinking or request.thinking_budget == 0:
        return 0
    r = rng(seed, "thoughts", model_name, request.fingerprint)
    thoughts = r.randint(max(32, out // 4), max(64, out))
    if request.thinking_budget is not None and request.thinking_budget > 0:
        thoughts = min(thoughts, request.thinking_budget)
    return thoughts


def compose(
    request: GenerateRequest,
    text: str,
    model_name: str,
    model: ModelConfig,
    seed: int,
    *,
    truncate_to: float | None = None,
    blocked_draw: float | None = None,
) -> Answer:
    """The answer to `request` whose `natural_text` is `text`.

    `truncate_to` (a fraction in (0, 1)) cuts the answer short with MAX_TOKENS, as an injected
    fault; `blocked_draw` (in [0, 1)) replaces it with a safety block on a category it picks.
    """
    prompt_tokens = request.prompt_tokens
    if blocked_draw is not None:
        category = _HARM_CATEGORIES[int(blocked_draw * len(_HARM_CATEGORIES))]
        return Answer(None, "SAFETY", prompt_tokens, 0, 0, blocked_category=category)
    cuts = [text.find(stop) for stop in request.stop_sequences]
    hits = [i for i in cuts if i >= 0]
    if hits:
        text = text[: min(hits)]
    finish = "STOP"
    tokens = count_tokens(text)
    limit = min(request.max_output_tokens or model.output_token_limit, model.output_token_limit)
    if truncate_to is not None:
        limit = min(limit, max(1, int(tokens * truncate_to)))
    if tokens > limit:
        text = truncate_to_tokens(text, limit)
        tokens = count_tokens(text)
        finish = "MAX_TOKENS"
    thoughts = _thoughts(request, model_name, model, seed, tokens)
    return Answer(text, finish, prompt_tokens, tokens, thoughts)


def _usage(answer: Answer) -> dict[str, Any]:
    # Like Google, counts that are zero are left out rather than sent as 0.
    usage: dict[str, Any] = {"promptTokenCount": answer.prompt_tokens}
    if answer.candidates_tokens:
        usage["candidatesTokenCount"] = answer.candidates_tokens
    usage["totalTokenCount"] = answer.prompt_tokens + answer.output_tokens
    if answer.thoughts_tokens:
        usage["thoughtsTokenCount"] = answer.thoughts_tokens
    usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": answer.prompt_tokens}]
    return usage


def _candidate(answer: Answer, text: str | None, final: bool) -> dict[str, Any]:
    candidate: dict[str, Any] = {"index": 0}
    if text is not None:
        candidate["content"] = {"parts": [{"text": text}], "role": "model"}
    if final:
        candidate["finishReason"] = answer.finish_reason
    if answer.blocked_category is not None:
        candidate["safetyRatings"] = [
            {"category": c, "probability": "HIGH", "blocked": True}
            if c == answer.blocked_category
            else {"category": c, "probability": "NEGLIGIBLE"}
            for c in _HARM_CATEGORIES
        ]
    return candidate


def response_body(answer: Answer, model_name: str, response_id: str) -> dict[str, Any]:
    """The GenerateContentResponse for a non-streaming call."""
    return {
        "candidates": [_candidate(answer, answer.text, final=True)],
        "usageMetadata": _usage(answer),
        "modelVersion": model_name,
        "responseId": response_id,
    }


def stream_chunks(
    answer: Answer, model_name: str, response_id: str
) -> list[tuple[dict[str, Any], int]]:
    """The SSE events of a streamed answer, each with the number of output tokens it carries."""
    pieces: list[str] = []
    if answer.text:
        current = ""
        for m in re.finditer(r"\s*\S+\s*", answer.text):
            current += m.group()
            if count_tokens(current) >= _CHUNK_TOKENS:
                pieces.append(current)
                current = ""
        if current:
            pieces.append(current)
    texts: list[str | None] = list(pieces) if pieces else [answer.text]
    chunks: list[tuple[dict[str, Any], int]] = []
    for i, text in enumerate(texts):
        final = i == len(texts) - 1
        chunk: dict[str, Any] = {"candidates": [_candidate(answer, text, final)]}
        if final:
            chunk["usageMetadata"] = _usage(answer)
        chunk["modelVersion"] = model_name
        chunk["responseId"] = response_id
        chunks.append((chunk, count_tokens(text or "")))
    return chunks
