"""The model's answer: its words, thoughts, finish reason and token usage, and its wire form.

Owns `Answer`, `Damage` (how an injected fault changes an answer), `compose` (text of the
shape the prompt asks for (asks.py) or schema-conforming JSON for a request, cut by stop
sequences, `maxOutputTokens` or an injected fault, or replaced by a safety block) and the
GenerateContentResponse bodies built from it: one JSON object, or the SSE chunks of a stream
with the finish reason and final usage on the last chunk; and the body of a blocked prompt
(`promptFeedback`, no candidates). A thinking model's thoughts are drawn in proportion to the
answer's length and no larger than its prompt warrants (a short ask thinks little);
`thinkingBudget` caps them and `thinkingLevel` scales them; `includeThoughts` adds a thought
part (`"thought": true`) before the answer. As on Google (`ModelConfig.thoughts_share_max_output`,
the default) the thoughts come first and share `maxOutputTokens` with the answer, so thoughts
that use it all leave a MAX_TOKENS answer without text, as real thinking models do. Usage
always agrees with the text returned. Imports nothing from the engine.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from .asks import answer_text
from .config import ModelConfig
from .content import keywords
from .determinism import rng
from .request import GenerateRequest
from .schema import SchemaError, conforming_value
from .tokens import count_tokens, truncate_to_tokens

__all__ = [
    "Answer",
    "Damage",
    "SchemaError",
    "compose",
    "natural_text",
    "prompt_blocked_body",
    "response_body",
    "stream_chunks",
]

_HARM_CATEGORIES = (
    "HARM_CATEGORY_SEXUALLY_EXPLICIT",
    "HARM_CATEGORY_HATE_SPEECH",
    "HARM_CATEGORY_HARASSMENT",
    "HARM_CATEGORY_DANGEROUS_CONTENT",
)

# Streams arrive in pieces of roughly this many tokens, like the real service's chunks.
_CHUNK_TOKENS = 40

# The most a model thinks of its own accord (no thinking level or budget asked): this many
# tokens, and this many more per token of the prompt.
_THOUGHTS_BASE = 64
_THOUGHTS_PER_PROMPT_TOKEN = 8

# How many thoughts a thinking level asks for, against the model's own (dynamic) choice.
_LEVEL_SCALE = {"MINIMAL": 0.1, "LOW": 0.5, "MEDIUM": 1.0, "HIGH": 2.0, "XHIGH": 3.0}


@dataclass(frozen=True, slots=True)
class Damage:
    """How an injected fault changes an answer.

    `finish_reason` replaces STOP; `keep` (a fraction in (0, 1)) cuts the answer to that share
    of its tokens, None leaves no text at all; `blocked_draw` (in [0, 1)) makes it a safety
    block on the harm category it picks.
    """

    finish_reason: str
    keep: float | None = None
    blocked_draw: float | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    """One candidate's outcome; `text` is None when there is no answer part (a safety block,
    a LANGUAGE stop, or thoughts that used the whole output budget)."""

    text: str | None
    finish_reason: str
    prompt_tokens: int
    candidates_tokens: int
    thoughts_tokens: int
    blocked_category: str | None = None
    thought_summary: str | None = None  # includeThoughts: the thought part's text
    cached_tokens: int = 0  # implicit caching: the prompt's tokens served from the cache

    @property
    def output_tokens(self) -> int:
        """Tokens the model generated (answer plus thinking): what latency is charged for."""
        return self.candidates_tokens + self.thoughts_tokens


def natural_text(request: GenerateRequest, model: str, seed: int) -> str:
    """The full answer before any cut; raises `SchemaError` for an unsatisfiable schema."""
    r = rng(seed, "answer", model, request.fingerprint)
    schema = request.response_schema
    if schema is None:
        return answer_text(r, request.prompt_text)
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
    """How many tokens the model thinks before an answer of `out` tokens."""
    if not model.thinking or request.thinking_budget == 0:
        return 0
    r = rng(seed, "thoughts", model_name, request.fingerprint)
    # In proportion to the answer, a quarter to a half of it: a haiku takes a few, a script a
    # hundred or two; and no more than the prompt gives to think about (a dozen words asking
    # for a script do not take 400).
    thoughts = r.randint(max(8, out // 4), max(16, out // 2))
    thoughts = min(thoughts, _THOUGHTS_BASE + _THOUGHTS_PER_PROMPT_TOKEN * request.prompt_tokens)
    if request.thinking_level is not None:
        thoughts = max(1, round(thoughts * _LEVEL_SCALE[request.thinking_level]))
    if request.thinking_budget is not None and request.thinking_budget > 0:
        thoughts = min(thoughts, request.thinking_budget)
    return thoughts


def _thought_summary(request: GenerateRequest) -> str:
    topics = ", ".join(keywords(request.prompt_text)[:3]) or "the request"
    return (
        f"**Planning the answer**\n\nI am working out what the user wants about {topics}, "
        "then I will lay the answer out step by step."
    )


def compose(
    request: GenerateRequest,
    text: str,
    model_name: str,
    model: ModelConfig,
    seed: int,
    *,
    damage: Damage | None = None,
) -> Answer:
    """The answer to `request` whose `natural_text` is `text`, damaged as a fault asks."""
    prompt_tokens = request.prompt_tokens
    if damage is not None and damage.blocked_draw is not None:
        category = _HARM_CATEGORIES[int(damage.blocked_draw * len(_HARM_CATEGORIES))]
        return Answer(None, "SAFETY", prompt_tokens, 0, 0, blocked_category=category)
    if damage is not None and damage.keep is None:
        return Answer(None, damage.finish_reason, prompt_tokens, 0, 0)
    cuts = [text.find(stop) for stop in request.stop_sequences]
    hits = [i for i in cuts if i >= 0]
    if hits:
        text = text[: min(hits)]
    finish = "STOP"
    tokens = count_tokens(text)
    if damage is not None and damage.keep is not None:
        kept = max(1, int(tokens * damage.keep))
        if tokens > kept:
            text, finish = _cut(text, kept), damage.finish_reason
            tokens = count_tokens(text)
    budget = min(request.max_output_tokens or model.output_token_limit, model.output_token_limit)
    shared = model.thoughts_share_max_output
    # Thoughts come first; sharing the budget, they leave the answer only what they did not use.
    thoughts = min(_thoughts(request, model_name, model, seed, tokens), budget) if shared else 0
    if tokens > budget - thoughts:
        text, finish = _cut(text, budget - thoughts), "MAX_TOKENS"
        tokens = count_tokens(text)
    if not shared:
        thoughts = _thoughts(request, model_name, model, seed, tokens)
    summary = _thought_summary(request) if thoughts and request.include_thoughts else None
    return Answer(text or None, finish, prompt_tokens, tokens, thoughts, thought_summary=summary)


def _cut(text: str, limit: int) -> str:
    return truncate_to_tokens(text, limit) if limit > 0 else ""


def _usage(answer: Answer) -> dict[str, Any]:
    # Like Google, counts that are zero are left out rather than sent as 0.
    usage: dict[str, Any] = {"promptTokenCount": answer.prompt_tokens}
    if answer.candidates_tokens:
        usage["candidatesTokenCount"] = answer.candidates_tokens
    usage["totalTokenCount"] = answer.prompt_tokens + answer.output_tokens
    if answer.cached_tokens:
        usage["cachedContentTokenCount"] = answer.cached_tokens
    if answer.thoughts_tokens:
        usage["thoughtsTokenCount"] = answer.thoughts_tokens
    usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": answer.prompt_tokens}]
    if answer.cached_tokens:
        usage["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": answer.cached_tokens}]
    return usage


def _candidate(answer: Answer, text: str | None, final: bool, first: bool) -> dict[str, Any]:
    """The candidate of one chunk: the thought part on the first, the answer's `text`."""
    candidate: dict[str, Any] = {"index": 0}
    parts: list[dict[str, Any]] = []
    if first and answer.thought_summary is not None:
        parts.append({"text": answer.thought_summary, "thought": True})
    if text:
        parts.append({"text": text})
    if parts:
        candidate["content"] = {"parts": parts, "role": "model"}
    elif answer.finish_reason == "MAX_TOKENS":
        candidate["content"] = {"role": "model"}  # the thoughts used the whole budget
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
        "candidates": [_candidate(answer, answer.text, final=True, first=True)],
        "usageMetadata": _usage(answer),
        "modelVersion": model_name,
        "responseId": response_id,
    }


def prompt_blocked_body(prompt_tokens: int, model_name: str, response_id: str) -> dict[str, Any]:
    """A 200 whose prompt was blocked: `promptFeedback.blockReason`, no candidates."""
    return {
        "promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
        "usageMetadata": {
            "promptTokenCount": prompt_tokens,
            "totalTokenCount": prompt_tokens,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_tokens}],
        },
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
        chunk: dict[str, Any] = {"candidates": [_candidate(answer, text, final, first=i == 0)]}
        if final:
            chunk["usageMetadata"] = _usage(answer)
        chunk["modelVersion"] = model_name
        chunk["responseId"] = response_id
        chunks.append((chunk, count_tokens(text or "")))
    return chunks
