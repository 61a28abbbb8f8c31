"""What the emulator has seen and done, for tests and benchmarks to check clients from outside.

Owns `Counters`: per model requests, in-flight (now and high-water mark), answers by finish
reason, 429s by quotaId, 429s without details (`bare_429`), billing stops (`billing_429`), calls
refused because the model is retired (`retired`), blocked prompts (`prompt_blocks`), faults by
kind, errors by HTTP status, tokens (input, output, thoughts, implicitly cached); overall
errors, non-transient refusals by kind (`refused`) and requests by the API version in their
path (`api_versions`, so a test can prove which version a client sent); and how
often each prompt was seen, keyed by a hash so prompts are not stored. It also hands out the
per-(model, prompt) attempt numbers that faults and jitter are drawn from. The Batch API and the
Files API are counted apart (`batches`, overall and per model, and `files`), so a test can check
that a batch was submitted once and that batch rows never count as live requests. Never records
an API key. Imports nothing from the engine.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from .determinism import prompt_key

__all__ = ["BATCH_COUNTS", "FILE_COUNTS", "Counters", "Mark"]

# A model's plain counts of the real service's ugly cases.
Mark = Literal["bare_429", "billing_429", "retired", "prompt_blocks"]

# Listed at zero before they first happen, so readers need no defaults.
BATCH_COUNTS = (
    "jobs_created",
    "rows_submitted",
    "rows_succeeded",
    "rows_failed",
    "jobs_cancelled",
    "jobs_deleted",
    "input_tokens",
    "output_tokens",
    "thoughts_tokens",
)
FILE_COUNTS = ("uploaded", "uploaded_bytes", "downloaded", "deleted")


@dataclass(slots=True)
class _ModelCounters:
    requests: int = 0
    count_tokens: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    successes: int = 0
    finish_reasons: Counter[str] = field(default_factory=Counter)
    rate_limited: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    bare_429: int = 0
    billing_429: int = 0
    retired: int = 0
    prompt_blocks: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    thoughts_tokens: int = 0
    cached_tokens: int = 0

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "count_tokens": self.count_tokens,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "successes": self.successes,
            "finish_reasons": dict(self.finish_reasons),
            "rate_limited": dict(self.rate_limited),
            "faults": dict(self.faults),
            "errors": dict(self.errors),
            "bare_429": self.bare_429,
            "billing_429": self.billing_429,
            "retired": self.retired,
            "prompt_blocks": self.prompt_blocks,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "thoughts_tokens": self.thoughts_tokens,
            "cached_tokens": self.cached_tokens,
        }


class Counters:
    """Thread-safe counters; every method takes the one lock briefly."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._models: dict[str, _ModelCounters] = {}
        self._requests = 0
        self._errors: Counter[str] = Counter()
        self._refused: Counter[str] = Counter()
        self._api_versions: Counter[str] = Counter()
        self._seen: Counter[str] = Counter()  # prompt key -> generate requests, any model
        self._seen_on: Counter[tuple[str, str]] = Counter()  # (model, prompt key) -> requests
        self._admitted: Counter[tuple[str, str]] = Counter()  # (model, prompt key) -> attempts
        self._batches: dict[str, Counter[str]] = {}  # model -> BATCH_COUNTS
        self._files: Counter[str] = Counter()

    def _model(self, model: str) -> _ModelCounters:
        return self._models.setdefault(model, _ModelCounters())

    def http_request(self) -> None:
        with self._lock:
            self._requests += 1

    def api_version(self, version: str) -> None:
        """A request whose path named `version` (v1, v1beta, v1alpha)."""
        with self._lock:
            self._api_versions[version] += 1

    def refused(self, kind: str) -> None:
        """A call refused for good ("suspended", "service_disabled", "location")."""
        with self._lock:
            self._refused[kind] += 1

    def mark(self, model: str, name: Mark) -> None:
        """One more of a model's plain counts: bare_429, billing_429, retired, prompt_blocks."""
        with self._lock:
            c = self._model(model)
            setattr(c, name, getattr(c, name) + 1)

    def error(self, status: int, model: str | None = None) -> None:
        with self._lock:
            self._errors[str(status)] += 1
            if model is not None:
                self._model(model).errors[str(status)] += 1

    def model_request(self, model: str, *, count_tokens: bool = False) -> None:
        with self._lock:
            c = self._model(model)
            if count_tokens:
                c.count_tokens += 1
            else:
                c.requests += 1

    def enter(self, model: str) -> None:
        """A generate request for `model` is being worked on."""
        with self._lock:
            c = self._model(model)
            c.in_flight += 1
            c.max_in_flight = max(c.max_in_flight, c.in_flight)

    def leave(self, model: str) -> None:
        """The request's outcome is about to reach the client (or the request was dropped)."""
        with self._lock:
            self._model(model).in_flight -= 1

    def prompt_seen(self, model: str, prompt: str) -> None:
        key = prompt_key(prompt)
        with self._lock:
            self._seen[key] += 1
            self._seen_on[model, key] += 1

    def admit(self, model: str, prompt: str, input_tokens: int) -> int:
        """Record an admitted request; returns its 0-based attempt number for (model, prompt).

        Only admitted attempts are numbered: how many 429s a prompt met depends on timing, and
        the fault drawn for an attempt must not.
        """
        key = prompt_key(prompt)
        with self._lock:
            attempt = self._admitted[model, key]
            self._admitted[model, key] += 1
            self._model(model).input_tokens += input_tokens
            return attempt

    def rate_limited(self, model: str, quota_ids: Iterable[str]) -> None:
        with self._lock:
            c = self._model(model)
            for quota_id in quota_ids:
                c.rate_limited[quota_id] += 1
            c.errors["429"] += 1
            self._errors["429"] += 1

    def fault(self, model: str, kind: str) -> None:
        with self._lock:
            self._model(model).faults[kind] += 1

    def answered(
        self, model: str, finish_reason: str, output_tokens: int, thoughts: int, cached: int
    ) -> None:
        with self._lock:
            c = self._model(model)
            c.successes += 1
            c.finish_reasons[finish_reason] += 1
            c.output_tokens += output_tokens
            c.thoughts_tokens += thoughts
            c.cached_tokens += cached

    def batch(self, model: str, **amounts: int) -> None:
        """Add to the Batch API's counts for `model` (names from BATCH_COUNTS)."""
        with self._lock:
            self._batches.setdefault(model, Counter()).update(amounts)

    def files(self, **amounts: int) -> None:
        """Add to the Files API's counts (names from FILE_COUNTS)."""
        with self._lock:
            self._files.update(amounts)

    def attempts_for(self, prompt: str, model: str | None = None) -> int:
        """Generate requests seen carrying `prompt` (on `model`, or on any model)."""
        key = prompt_key(prompt)
        with self._lock:
            return self._seen[key] if model is None else self._seen_on[model, key]

    def snapshot(self, models: Iterable[str] = ()) -> dict[str, Any]:
        """A JSON-ready copy; `models` are listed even before their first request."""
        with self._lock:
            names = list(dict.fromkeys([*models, *self._models]))
            return {
                "requests": self._requests,
                "errors": dict(self._errors),
                "refused": dict(self._refused),
                "api_versions": dict(self._api_versions),
                "prompts": {"distinct": len(self._seen), "requests": sum(self._seen.values())},
                "models": {name: self._model(name).snapshot() for name in names},
                "batches": {
                    **{name: sum(c[name] for c in self._batches.values()) for name in BATCH_COUNTS},
                    "models": {
                        model: {name: c[name] for name in BATCH_COUNTS}
                        for model, c in self._batches.items()
                    },
                },
                "files": {name: self._files[name] for name in FILE_COUNTS},
            }

    def reset(self) -> None:
        """Zero everything except what is in flight right now."""
        with self._lock:
            self._models = {
                name: _ModelCounters(in_flight=c.in_flight, max_in_flight=c.in_flight)
                for name, c in self._models.items()
            }
            self._requests = 0
            self._errors.clear()
            self._refused.clear()
            self._api_versions.clear()
            self._seen.clear()
            self._seen_on.clear()
            self._admitted.clear()
            self._batches.clear()
            self._files.clear()
