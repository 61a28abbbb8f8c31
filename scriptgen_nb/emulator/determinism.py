"""Seeded, order-independent randomness: every "random" choice is a hash of what it depends on.

Owns the hashing that makes text, latency jitter, faults and 429 detail order repeat exactly for
the same (seed, model, prompt, attempt). Python's `hash()` is salted per process and a shared
`random.Random` would depend on request interleaving, so neither is used. Imports nothing from
the engine.
"""

from __future__ import annotations

import hashlib
import random

__all__ = ["digest", "prompt_key", "rng", "unit"]


def digest(*parts: object) -> bytes:
    """A 32-byte BLAKE2b digest of the parts; the separator keeps ("ab", "c") != ("a", "bc")."""
    h = hashlib.blake2b(digest_size=32)
    for part in parts:
        h.update(str(part).encode("utf-8", "surrogatepass"))
        h.update(b"\x1f")
    return h.digest()


def unit(*parts: object) -> float:
    """A number in [0, 1), uniformly distributed over the hash of the parts."""
    return int.from_bytes(digest(*parts)[:8], "big") / 2.0**64


def rng(*parts: object) -> random.Random:
    """A private generator seeded from the parts, for choices that need many draws."""
    return random.Random(int.from_bytes(digest(*parts)[:16], "big"))


def prompt_key(prompt_text: str) -> str:
    """The key prompts are counted under, so the counters never hold a prompt's text."""
    return digest("prompt", prompt_text).hex()[:32]
