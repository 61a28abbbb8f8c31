"""Deterministic prose: the video-script-like answers and the phrases JSON strings are made of.

Owns the phrasebook (settings, shots, narration templates), keyword extraction from a prompt (its
subject, not its instructions: the words of a prompt template and of the phrasebook's own titles
are left out, and `subjects` puts the nouns first) and `script_text`, which writes a title and a
few scenes of narration of a few hundred tokens. Titles inside a list follow an arc
(`arc_title`: "Where Lighthouses Began", "How Pharos Worked", ...), so a generated outline reads
as one. Every
choice comes from the `random.Random` the caller passes in (seeded by `determinism.rng`), so the
same request always gets the same words. Imports nothing from the engine.
"""

from __future__ import annotations

import random
import re

from .tokens import count_tokens

__all__ = [
    "arc_title",
    "heading_phrase",
    "keywords",
    "name_phrase",
    "script_text",
    "sentence",
    "short_phrase",
    "subjects",
    "title_phrase",
]

_STOPWORD_TEXT = """
    about above after again against also among and another any are around because been before
    being below between both but can could does doing down during each either every from
    further have having here into itself just more most much must need only other over please
    same should some such than that their them then there these they this those through under
    until very want were what when where which while with within without would write your
    yours make give short long video script scene scenes story tell using based
    answer audience beginning chapter chapters conclusion content covers describe description
    develop duration english estimated exactly explain first great heading language lasts list
    narration outline plan premise repeating screen second seconds series spoken split style
    suggest summary title titles together videos word words built kept made found began
    educational name names ideas facts items examples reasons questions tips ways things
    haiku haikus limerick limericks poem poems verse sonnet rhyme tagline slogan headline
    line lines sentence sentences paragraph paragraphs summarize summarise minutes hours
    one two three four five six seven eight nine ten eleven twelve fifteen twenty dozen
    worked people behind pressure today leaves
    anyone anything anybody everyone everything everybody someone something somebody nothing
    nobody visual image images prompt prompts frame scene's
    general clear simple
"""

_NOUN_ENDING = re.compile(r"(?<!s)s$|tion$|sion$|ment$|ness$|ity$|ism$|ship$|ance$|ence$|ery$")

_ARC = (
    "Where {subject} Began",
    "The First {subject}",
    "How {subject} Worked",
    "The People Behind {subject}",
    "{subject} Under Pressure",
    "The Turn of {subject}",
    "{subject} Today",
    "What {subject} Leaves Behind",
)

_FALLBACK_WORDS = ("lighthouse", "journey", "harbour", "signal", "winter", "archive")

_SETTINGS = (
    "EXT. HARBOUR WALL — DAWN",
    "INT. CLUTTERED WORKSHOP — NIGHT",
    "EXT. MOUNTAIN ROAD — GOLDEN HOUR",
    "INT. MUSEUM ARCHIVE — DAY",
    "EXT. CITY ROOFTOP — DUSK",
    "INT. KITCHEN TABLE — MORNING",
    "EXT. COASTAL CLIFFS — STORM",
    "INT. LECTURE HALL — AFTERNOON",
    "EXT. DESERT HIGHWAY — MIDDAY",
    "INT. TRAIN CARRIAGE — EVENING",
)

_SHOTS = (
    "Slow push-in on",
    "Wide aerial shot of",
    "Handheld close-up of",
    "Time-lapse of",
    "Macro detail of",
    "Tracking shot following",
    "Split screen comparing",
    "Archival footage of",
)

_SUBJECTS = (
    "weathered hands turning old photographs",
    "a map spread across a wooden table",
    "light falling through a dusty window",
    "a crowd gathering at the water's edge",
    "pages of a notebook filling with sketches",
    "a single lamp left burning late",
    "rain tracing lines down the glass",
    "a path disappearing into the fog",
)

_NARRATION = (
    "Every story about {topic} begins with a question nobody thought to ask.",
    "At first glance, {kw} looks ordinary, but look closer and the details start to matter.",
    "For years, people believed they understood {kw}; they were only half right.",
    "Here is the part most accounts of {topic} leave out.",
    "The numbers tell one story, and the people behind {kw} tell another.",
    "What changed was not the idea itself but the way people looked at {kw}.",
    "It took patience, a few mistakes and one stubborn experiment to get here.",
    "To understand {topic}, we have to go back to where it quietly started.",
    "Nobody planned it this way, yet {kw} ended up shaping everything that followed.",
    "The turning point came on an unremarkable afternoon, with {kw} on the table.",
    "Ask anyone who has worked with {kw}, and they will describe the same moment.",
    "This is where the evidence gets interesting, and a little uncomfortable.",
    "The simplest explanation for {kw} turns out to be the most surprising one.",
    "Step by step, the pieces of {topic} begin to fit together.",
    "Keep that detail in mind; it comes back at the very end.",
    "By the time anyone noticed, {kw} had already changed the landscape.",
    "In the end, {topic} is less about answers than about better questions.",
    "And that is why {kw} still matters today.",
)

_ADJECTIVES = (
    "Hidden",
    "Quiet",
    "Forgotten",
    "Unexpected",
    "Secret",
    "Brilliant",
    "Restless",
    "Electric",
    "Lost",
    "Curious",
)

_TITLE_NOUNS = (
    "History",
    "Science",
    "Story",
    "Mystery",
    "Life",
    "Journey",
    "Legacy",
    "Map",
    "Question",
    "Revolution",
)

_NAMES = (
    "Mara Vale",
    "Theo Lindqvist",
    "Ada Okafor",
    "Jonas Brandt",
    "Lucía Ferrer",
    "Kenji Arai",
    "Priya Raman",
    "Elliot Shaw",
)


# The phrasebook's own title words: a prompt that quotes an earlier answer's title ("The Lost
# Journey of Pharos") is about Pharos, not about journeys.
_STOPWORDS = frozenset(
    (*_STOPWORD_TEXT.split(), *(w.lower() for w in (*_ADJECTIVES, *_TITLE_NOUNS)))
)


def keywords(prompt: str, limit: int = 6) -> list[str]:
    """Distinctive words of the prompt in order of appearance, for answers that sound on-topic
    (instructions and the phrasebook's own title words left out)."""
    found: dict[str, str] = {}  # lower-cased -> as first written, so "Scotland" keeps its capital
    for word in re.findall(r"[^\W\d_][\w'-]*", prompt):
        word = word.strip("'-")
        lowered = word.lower()
        if len(word) >= 4 and not _instruction(lowered) and lowered not in found:
            found[lowered] = word
            if len(found) == limit:
                break
    return list(found.values()) or list(_FALLBACK_WORDS[:3])


def _instruction(lowered: str) -> bool:
    """Whether a lower-cased word belongs to the prompt's instructions: a stopword, or a compound
    with one ("two-sentence", "long-form"), which is how a template says a shape, not a topic."""
    return any(part in _STOPWORDS for part in lowered.split("-"))


def _topic(words: list[str]) -> str:
    return " ".join(words[:2])


def subjects(words: list[str]) -> list[str]:
    """`words` with the likely nouns first (names, plurals, -tion words ...), in order."""
    nouny = [w for w in words if w[0].isupper() or _NOUN_ENDING.search(w)]
    return nouny + [w for w in words if w not in nouny]


def _capital(word: str) -> str:
    return word[0].upper() + word[1:]


def title_phrase(r: random.Random, words: list[str]) -> str:
    """A title such as "The Hidden History of Lighthouses"."""
    subject = _capital(r.choice(subjects(words)[:3]))
    return f"The {r.choice(_ADJECTIVES)} {r.choice(_TITLE_NOUNS)} of {subject}"


def arc_title(position: int, words: list[str]) -> str:
    """The title of the `position`-th (from 0) item of a list, such as an outline's chapters:
    they follow the subject from its beginning to today, each about one of its nouns."""
    nouns = subjects(words)
    subject = _capital(nouns[position % len(nouns)])
    return _ARC[position % len(_ARC)].format(subject=subject)


def heading_phrase(r: random.Random, words: list[str]) -> str:
    """A short heading, such as "Quiet Lighthouses"."""
    return f"{r.choice(_ADJECTIVES)} {_capital(r.choice(subjects(words)[:3]))}"


def sentence(r: random.Random, words: list[str]) -> str:
    """One narration sentence mentioning the prompt's words."""
    return r.choice(_NARRATION).format(topic=_topic(words), kw=r.choice(words))


def short_phrase(r: random.Random, words: list[str]) -> str:
    """A few words, e.g. for a label or a tag."""
    return f"{r.choice(_ADJECTIVES).lower()} {r.choice(words)}"


def name_phrase(r: random.Random) -> str:
    """A person's name."""
    return r.choice(_NAMES)


def script_text(r: random.Random, prompt: str) -> str:
    """A title and scenes of narration, about 200 to 650 tokens long depending on the draw."""
    words = keywords(prompt)
    # The last scene overshoots the target by up to ~150 tokens.
    target = r.randint(120, 500)
    lines = [f"Title: {title_phrase(r, words)}", ""]
    used = count_tokens(lines[0])
    scene = 0
    while used < target:
        scene += 1
        block = [
            f"SCENE {scene} — {r.choice(_SETTINGS)}",
            f"[VISUAL: {r.choice(_SHOTS)} {r.choice(_SUBJECTS)}.]",
        ]
        for _ in range(r.randint(1, 2)):
            narration = " ".join(sentence(r, words) for _ in range(r.randint(2, 4)))
            block.append(f"NARRATOR: {narration}")
        block.append("")
        lines.extend(block)
        used += sum(count_tokens(line) for line in block)
    lines.append("FADE OUT.")
    return "\n".join(lines)
