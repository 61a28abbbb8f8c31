"""The emulator's token arithmetic: counting and cutting text at a token budget.

Owns the heuristic that stands in for Gemini's tokenizer: a short word is one token, longer words
one more per six letters, every three digits and every other symbol one token. It is applied the
same way to prompts (promptTokenCount, countTokens, TPM quota) and answers
(candidatesTokenCount, maxOutputTokens), so the numbers the emulator reports always agree with
each other. Imports nothing from the engine.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

__all__ = ["count_tokens", "token_pieces", "truncate_to_tokens"]

_PIECE = re.compile(r"[^\W\d_]+|\d{1,3}|[^\w\s]|_", re.UNICODE)
_LONG_WORD = re.compile(r"[^\W\d_]{7,}", re.UNICODE)


def _piece_tokens(piece: str) -> int:
    if piece[0].isalpha():
        return 1 + (len(piece) - 1) // 6
    return 1


def count_tokens(text: str) -> int:
    """Tokens in `text` (0 for empty or whitespace-only text)."""
    # Same result as summing _piece_tokens over the pieces, but the common one-token pieces are
    # counted by the regex engine: this runs for every request and every streamed chunk.
    extra = sum((len(word) - 1) // 6 for word in _LONG_WORD.findall(text))
    return len(_PIECE.findall(text)) + extra


def token_pieces(text: str) -> Iterator[tuple[int, int]]:
    """(end offset, tokens) of each piece of `text`, in order; the tokens add up to the count."""
    for m in _PIECE.finditer(text):
        yield m.end(), _piece_tokens(m.group())


def truncate_to_tokens(text: str, limit: int) -> str:
    """The longest prefix of `text`, ending on a whole piece, that has at most `limit` tokens."""
    used = 0
    end = 0
    for piece_end, tokens in token_pieces(text):
        used += tokens
        if used > limit:
            break
        end = piece_end
    return text[:end]
