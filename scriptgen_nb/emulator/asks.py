"""What a prompt asks for, and a plain-text answer of that shape.

Owns `read_ask` (a haiku, a limerick, a poem, a list of N things, a video script, a single line,
a paragraph, a short answer or a few paragraphs, read from the prompt's words) and
`answer_text`, which writes the answer of that shape: a haiku is three short lines, "list 5
facts" five numbered facts, a summary a paragraph, a question a few sentences, a script request
the scenes of `content.script_text`. So the emulator's token counts (and the thoughts drawn
from them) are of the size a real model's would be, and its figures mean something. Every
choice comes from the `random.Random` the caller passes in. Imports nothing from the engine.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from .content import keywords, name_phrase, script_text, sentence, short_phrase, title_phrase

__all__ = ["Ask", "answer_text", "read_ask"]

_NUMBER_WORDS = (
    "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty"
)
_NUMBERS = {word: n for n, word in enumerate(_NUMBER_WORDS.split(), start=1)} | {"dozen": 12}
_COUNT = r"(\d{1,2}|" + "|".join(_NUMBERS) + r")"
# "5 ideas", "three short facts", "ten catchy video titles", "in 3 sentences"
_COUNTED = re.compile(_COUNT + r"[\s-]+(?:[\w-]+\s+){0,3}?([a-z]+s)\b", re.IGNORECASE)
_LISTED = re.compile(r"\blist\s+(?:of\s+)?" + _COUNT + r"\b", re.IGNORECASE)
# Counted things that measure an answer rather than list one ("in 3 sentences", "2 minutes").
_MEASURES = ("sentences", "lines", "paragraphs", "words")
_TIMES = ("seconds", "minutes", "hours", "days", "weeks", "months", "years")
_SHORT_WORDS = 24  # a prompt this short, asking for nothing in particular, gets a short answer
_MOST_ITEMS = 50


@dataclass(frozen=True, slots=True)
class Ask:
    """The shape of answer a prompt asks for: `kind` (haiku, limerick, poem, list, measured,
    script, line, paragraph, short, prose); for a list, how many items of what (`count`,
    `things`), and for a measured answer how many sentences, lines, paragraphs or words."""

    kind: str
    count: int = 0
    things: str = ""


def read_ask(prompt: str) -> Ask:
    """The shape of answer `prompt` asks for: a script when it speaks of scripts or scenes
    (the seed's prompts do), else the form it names, the things it counts, a single line, a
    paragraph for a summary or an explanation, or by its length a short answer or a few
    paragraphs."""
    text = prompt.lower()
    if re.search(r"\bscript\b|\bscenes?\b|\bscreenplay\b", text):
        return Ask("script")
    for kind in ("haiku", "limerick"):
        if re.search(rf"\b{kind}s?\b", text):
            return Ask(kind)
    if re.search(r"\b(poem|verse|sonnet|rhyme)s?\b", text):
        return Ask("poem")
    counted = _counted(prompt)
    if counted is not None:
        return counted
    if re.search(r"\b(one|a single) (sentence|line)\b|\b(tagline|slogan|headline)\b", text):
        return Ask("line")
    if re.search(r"\b(title|name)\b", text) and len(text.split()) <= _SHORT_WORDS:
        return Ask("line", things="title")
    if re.search(r"\b(summari[sz]e|summary|explain|describe|overview|history of)\b", text):
        return Ask("paragraph")
    if len(text.split()) <= _SHORT_WORDS:
        return Ask("short")
    return Ask("prose")


def _counted(prompt: str) -> Ask | None:
    """A list of N things, or an answer measured in N sentences, lines, paragraphs or words;
    None when the prompt counts nothing (or only time: "a 2 minutes read")."""
    listed = _LISTED.search(prompt)
    if listed is not None:
        return _of(listed.group(1), "items")
    for match in _COUNTED.finditer(prompt):
        things = match.group(2).lower()
        if things not in _TIMES:
            return _of(match.group(1), things)
    return None


def _of(number: str, things: str) -> Ask | None:
    count = int(number) if number.isdigit() else _NUMBERS[number.lower()]
    if not 1 <= count <= _MOST_ITEMS:
        return None
    return Ask("measured" if things in _MEASURES else "list", count, things)


def answer_text(r: random.Random, prompt: str) -> str:
    """An answer to `prompt` of the shape it asks for."""
    ask = read_ask(prompt)
    if ask.kind == "script":
        return script_text(r, prompt)
    words = keywords(prompt)
    if ask.kind == "haiku":
        return _haiku(r, words)
    if ask.kind == "limerick":
        return _limerick(r, words)
    if ask.kind == "poem":
        return "\n\n".join(_stanza(r, words) for _ in range(2))
    if ask.kind == "list":
        return "\n".join(f"{i}. {_item(r, ask.things, words)}" for i in range(1, ask.count + 1))
    if ask.kind == "measured":
        return _measured(r, ask, words)
    if ask.kind == "line":
        return title_phrase(r, words) if ask.things == "title" else sentence(r, words)
    if ask.kind == "short":
        return " ".join(sentence(r, words) for _ in range(r.randint(1, 3)))
    if ask.kind == "paragraph":
        return " ".join(sentence(r, words) for _ in range(r.randint(3, 5)))
    paragraphs = r.randint(2, 3)
    return "\n\n".join(
        " ".join(sentence(r, words) for _ in range(r.randint(3, 4))) for _ in range(paragraphs)
    )


_HAIKU = (
    (
        "{Kw} at first light",
        "Morning over the {kw}",
        "Cold wind on the {kw}",
        "Slow {kw}, grey sky",
    ),
    (
        "a quiet sound rises from the {kw2}",
        "the old {kw2} remembers it all",
        "small waves carry the {kw2} home",
        "one lamp still burns by the {kw2}",
    ),
    ("then silence again", "the day lets it go", "and the light goes out", "nothing more is said"),
)

_LIMERICK = (
    "There once was a keeper of {kw}",
    "Who counted the days by the {kw2}",
    "When the wind came to call",
    "It was nothing at all,",
    "And the {kw} kept on with the {kw2}.",
)


def _fill(line: str, r: random.Random, words: list[str]) -> str:
    kw, kw2 = r.choice(words), r.choice(words)
    return line.format(kw=kw, Kw=kw[0].upper() + kw[1:], kw2=kw2)


def _measured(r: random.Random, ask: Ask, words: list[str]) -> str:
    """Exactly `ask.count` sentences, lines or paragraphs, or about that many words."""
    if ask.things == "sentences":
        return " ".join(sentence(r, words) for _ in range(ask.count))
    if ask.things == "lines":
        return "\n".join(sentence(r, words) for _ in range(ask.count))
    if ask.things == "paragraphs":
        return "\n\n".join(
            " ".join(sentence(r, words) for _ in range(r.randint(2, 4))) for _ in range(ask.count)
        )
    said: list[str] = []
    while len(said) < ask.count:
        said.extend(sentence(r, words).split())
    return " ".join(said[: ask.count]).rstrip(",;") + "."


def _haiku(r: random.Random, words: list[str]) -> str:
    return "\n".join(_fill(r.choice(lines), r, words) for lines in _HAIKU)


def _limerick(r: random.Random, words: list[str]) -> str:
    return "\n".join(_fill(line, r, words) for line in _LIMERICK)


def _stanza(r: random.Random, words: list[str]) -> str:
    lines = (_fill(r.choice(choices), r, words) for choices in (*_HAIKU, _HAIKU[1]))
    return "\n".join(lines)


def _item(r: random.Random, things: str, words: list[str]) -> str:
    """One item of a list of `things` (titles, names, questions, words, or anything else)."""
    if re.search(r"titles?$|headlines?$", things):
        return title_phrase(r, words)
    if things in ("names", "characters", "people"):
        return name_phrase(r)
    if things == "questions":
        return f"What does {r.choice(words).lower()} tell us about {short_phrase(r, words)}?"
    if things in ("words", "keywords", "tags", "hashtags"):
        return short_phrase(r, words)
    return sentence(r, words)
