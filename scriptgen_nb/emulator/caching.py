"""Implicit caching: which leading tokens of a prompt a model has seen recently.

Owns `PrefixCache`. Google caches the leading part of prompts by itself (on by default for the
2.5 and newer models) and reports the reused part as `cachedContentTokenCount`. The emulator
remembers, per model, a hash of each prompt's prefix at every multiple of `GRANULARITY` tokens
(the system instruction first, then the contents), when it was last seen, and nothing else: at
most `MAX_PREFIXES` hashes per model, the least recently seen forgotten first, so memory stays
bounded and no prompt text is kept. A new prompt's cached tokens are the longest of its
prefixes seen within the model's time to live, if that is at least the model's minimum. The
clock is injectable; the answer depends only on the order of the requests. Imports nothing from
the engine.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from .tokens import token_pieces

__all__ = ["GRANULARITY", "MAX_PREFIXES", "PrefixCache"]

GRANULARITY = 256
MAX_PREFIXES = 4096


def _prefix_keys(segments: Sequence[str]) -> list[tuple[int, bytes]]:
    """(length, hash) of the prompt's prefix at each multiple of GRANULARITY tokens."""
    h = hashlib.blake2b(digest_size=16)
    keys: list[tuple[int, bytes]] = []
    used = 0
    for segment in segments:
        h.update(b"\x00")  # where a segment starts: ("a b", "c") is not ("a", "b c")
        start = 0
        for end, tokens in token_pieces(segment):
            steps_before = used // GRANULARITY
            used += tokens
            if used // GRANULARITY > steps_before:
                h.update(segment[start:end].encode("utf-8", "surrogatepass"))
                start = end
                keys.append((used // GRANULARITY * GRANULARITY, h.copy().digest()))
        h.update(segment[start:].encode("utf-8", "surrogatepass"))
    return keys


class PrefixCache:
    """Every model's recently seen prompt prefixes, thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._models: dict[str, OrderedDict[bytes, float]] = {}

    def serve(
        self,
        model: str,
        segments: Sequence[str],
        prompt_tokens: int,
        min_tokens: int | None,
        ttl_s: float,
    ) -> int:
        """The cached tokens of a prompt made of `segments` (system instruction, contents) of
        `prompt_tokens` tokens, which is then remembered; 0 when caching is off (`min_tokens`
        None) or the prompt is shorter than `min_tokens`."""
        if min_tokens is None or prompt_tokens < max(min_tokens, GRANULARITY):
            return 0
        keys = _prefix_keys(segments)
        now = self._clock()
        cached = 0
        with self._lock:
            seen = self._models.setdefault(model, OrderedDict())
            for length, key in keys:
                at = seen.get(key)
                if at is not None and now - at < ttl_s:
                    cached = length
                seen[key] = now
                seen.move_to_end(key)
            while len(seen) > MAX_PREFIXES:
                seen.popitem(last=False)
        return cached if cached >= min_tokens else 0

    def reset(self) -> None:
        """Forget every prefix."""
        with self._lock:
            self._models.clear()
