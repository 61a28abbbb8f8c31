"""The seed's workflow: a project's chapters get video scripts, and scripts get image prompts.

Owns the Pydantic models of what is generated (`Scene`, `Script`, `ImagePrompt`,
`ChapterImagePrompts`, `Outline`); making projects (`create_project`, `import_outline`,
`generate_outline`); generating (`generate_scripts`: the seed's queue of 5, its batch, or its
rule choosing between them; `generate_scripts_batch`, `generate_image_prompts`, `regenerate`,
re-runs of what is missing or failed); and what a run returns (`ScriptRun`, `ImagePromptRun`,
`OutlineRun`: the seed's success flag, what was made, and each failed chapter's error).
Requests go through the public API (`api.py`) with the seed's operation names and the project's
id, so the usage report groups by them; prompts come from editable templates (`prompts.py`);
what worked is kept next to the call log (`store.projects`) when the batch ends, even when it
was interrupted. Must not import duckdb, IPython or anything from `jupyter/`.
"""

from __future__ import annotations

import functools
import os
import typing
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field, conlist, create_model

from ..api import batch_generate, create_batch_requests
from ..engine.checks import check_number
from ..engine.errors import BatchInterrupted, ConfigurationError
from ..engine.values import BatchFinished, BatchStarted, Event, Failure, Result, check_encodable
from ..store import Database, open_database, projects
from ..store.lock_wait import waiting_up_to
from ..store.projects import CallRef, Chapter, Project
from ..store.recorder import LOG_WAIT_S
from .outline import OutlineSource, read_outline
from .prompts import PromptTemplate, TemplateSource, load_template

GENERATE_OUTLINE = "GENERATE_OUTLINE"
GENERATE_SCRIPT = "GENERATE_SCRIPT"
GENERATE_IMAGE_PROMPTS = "GENERATE_IMAGE_PROMPTS"
SEQUENTIAL_CONCURRENCY = 5  # the seed's queue (p-queue) runs five at a time
BATCH_ABOVE = 5  # the seed's rule of thumb: batch when there are more than five chapters

Mode = Literal["sequential", "batch", "auto"]
Only = Literal["missing", "failed"]
ProjectDb = str | os.PathLike[str] | Database | None
Done = list[tuple[Result, CallRef]]  # a batch's successes and the calls that made them
AspectRatio = Literal["16:9", "9:16", "1:1", "4:3", "3:4"]  # what image models take

# Options that shape each request; every other option goes to the batch (`batch_generate`).
REQUEST_SETTINGS = frozenset(
    {
        "system",
        "max_output_tokens",
        "top_p",
        "top_k",
        "seed",
        "stop_sequences",
        "thinking_budget",
        "safety_settings",
        "model",
    }
)


# --- what is generated -------------------------------------------------------------------------


class Scene(BaseModel):
    heading: str = Field(description="a short heading for the scene")
    narration: str = Field(description="the words the narrator speaks")
    visual_description: str = Field(description="what is on screen")


class Script(BaseModel):
    """A chapter's video script (the seed's GENERATE_SCRIPT answer)."""

    title: str
    scenes: list[Scene] = Field(min_length=1)
    estimated_duration_s: int = Field(ge=0, description="the video's length in seconds")
    word_count: int = Field(ge=0, description="words of narration")


class ImagePrompt(BaseModel):
    """An image-generation prompt for one scene (the seed's GENERATE_IMAGE_PROMPTS answer)."""

    prompt: str
    style: str
    aspect_ratio: AspectRatio
    negative_prompt: str = Field(description="what must not appear")


class ChapterImagePrompts(BaseModel):
    """A chapter's image prompts: one per scene of its script, in scene order."""

    prompts: list[ImagePrompt]


class OutlineChapter(BaseModel):
    title: str = Field(min_length=1)
    summary: str


class Outline(BaseModel):
    """A generated outline: the chapters in order (they are numbered 1, 2, ...)."""

    chapters: list[OutlineChapter]


@functools.cache
def _sized(model: type[BaseModel], list_field: str, count: int) -> type[BaseModel]:
    """`model` whose list `list_field` must hold exactly `count` items.

    The bounds travel in the schema (minItems / maxItems), and an answer that misses them is
    invalid JSON for the engine, which asks again.
    """
    (item,) = typing.get_args(model.model_fields[list_field].annotation)
    sized_list = conlist(item, min_length=count, max_length=count)
    fields: dict[str, Any] = {list_field: (sized_list, ...)}
    return create_model(model.__name__, __base__=model, __module__=model.__module__, **fields)


# --- what a run returns ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChapterRun:
    """What a generation over chapters did: the seed's `{success, ..., errors}`.

    `errors` maps each failed chapter to its error (kind and message); the chapters that
    worked are stored whatever happened to the others. `mode` is the one used ("sequential" or
    "batch"), `batch_id` leads to the call log, `duration_s` is the batch's own measure.
    """

    project_id: str
    mode: str
    errors: Mapping[int, Failure]
    batch_id: str | None
    duration_s: float

    @property
    def success(self) -> bool:
        return not self.errors


@dataclass(frozen=True, slots=True)
class ScriptRun(ChapterRun):
    """`scripts` per chapter that got one; `versions`: the version each chapter has now."""

    scripts: Mapping[int, Script] = field(default_factory=dict)
    versions: Mapping[int, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ImagePromptRun(ChapterRun):
    """`prompts` per chapter that got them: one per scene of its current script."""

    prompts: Mapping[int, tuple[ImagePrompt, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OutlineRun:
    """What `generate_outline` did: the chapters it stored, or the request's error."""

    project_id: str
    chapters: tuple[Chapter, ...]
    error: Failure | None
    batch_id: str | None
    duration_s: float

    @property
    def success(self) -> bool:
        return self.error is None


# --- projects ----------------------------------------------------------------------------------


def project_database(
    db: ProjectDb, *, read_only: bool = False, options: Mapping[str, Any] | None = None
) -> Database:
    """The file holding the projects: the call log's (None: the default file).

    A path opens the file anew on each call (`read_only`: to read it only, so a log on a
    read-only place can be read); pass a `Database` to share one (in memory too). A run's
    batch `options` say how long to wait while another process holds the file: their
    `log_wait_s`, the batch's default otherwise, for the opening and the writes after the batch
    as for the batch itself (without `options`, the store's default).
    """
    if db is False:
        raise ConfigurationError(
            "Projects are kept in the call log's file; db=False keeps no file. Pass a path, "
            "a Database, or None for the default file."
        )
    if isinstance(db, Database):
        return db
    wait = None if options is None else waiting_up_to(options.get("log_wait_s", LOG_WAIT_S))
    return open_database(db, read_only=read_only, wait=wait)


def create_project(
    title: str,
    premise: str = "",
    chapters: OutlineSource | None = None,
    *,
    audience: str = "",
    style: str = "",
    language: str = "English",
    target_length_s: int = 60,
    project_id: str | None = None,
    db: ProjectDb = None,
) -> str:
    """Create a project (optionally with its outline) and return its id.

    `chapters` is an outline in any form `import_outline` reads; it is checked before anything
    is written. The id is `project_id`, or the title as a slug ("the-keepers-of-the-light",
    with "-2" when taken). Without an `audience` or a `style` the prompts ask for a general
    audience and a clear and simple style.
    """
    if not isinstance(title, str) or not title.strip():
        raise ConfigurationError("A project needs a title.")
    texts: dict[str, str | None] = {"title": title, "premise": premise, "audience": audience}
    texts.update(style=style, language=language, project_id=project_id)
    for name, text in texts.items():  # the log stores them as UTF-8: refused before any write
        check_encodable(text, name, "create_project")
    check_number("target_length_s", target_length_s, low=0, above=True, whole=True, unit="seconds")
    outline = read_outline(chapters) if chapters is not None else []
    database = project_database(db)
    pid = project_id or projects.new_project_id(database, title)
    project = Project(pid, title.strip(), premise, audience, style, language, target_length_s)
    projects.insert_project(database, project, outline)
    return pid


def import_outline(
    project_id: str, source: OutlineSource, *, db: ProjectDb = None
) -> list[Chapter]:
    """Give a project its chapters from a DataFrame, a .csv or .json file, or a list of dicts.

    Every row is checked first (missing titles, bad or duplicate numbers, an empty outline);
    any problem raises a `ConfigurationError` listing them all, and nothing is written.
    """
    chapters = read_outline(source)
    database = project_database(db)
    projects.read_project(database, project_id)
    projects.add_chapters(database, project_id, chapters)
    return chapters


def generate_outline(
    project_id: str,
    n_chapters: int,
    *,
    template: TemplateSource | None = None,
    temperature: float = 0.7,
    db: ProjectDb = None,
    **options: Any,
) -> OutlineRun:
    """Ask for an outline of `n_chapters` chapters (one structured request) and store it."""
    if isinstance(n_chapters, bool) or not isinstance(n_chapters, int) or n_chapters < 1:
        raise ConfigurationError(f"n_chapters must be a positive whole number, not {n_chapters!r}")
    database = project_database(db, options=options)
    state = projects.read_project(database, project_id)
    if state.chapters:
        raise ConfigurationError(
            f"Project {project_id!r} has an outline already; create a new project for another."
        )
    prompt = load_template(GENERATE_OUTLINE, template)
    item = _item("outline", prompt, _project_fields(state.project) | {"n_chapters": n_chapters})
    stored: list[Chapter] = []

    def keep(done: Done) -> None:
        for result, _ in done:  # the one request: the outline
            chapters = enumerate(result.data.chapters, 1)
            stored.extend(Chapter(n, c.title, c.summary) for n, c in chapters)
        if stored:
            projects.add_chapters(database, project_id, stored)

    ran = _run(
        database,
        project_id,
        GENERATE_OUTLINE,
        [item | {"schema": _sized(Outline, "chapters", n_chapters)}],
        mode="auto",
        temperature=temperature,
        options=options,
        keep=keep,
    )
    error = next(iter(ran.failures.values()), None)
    return OutlineRun(project_id, tuple(stored), error, ran.batch_id, ran.duration_s)


# --- scripts -----------------------------------------------------------------------------------


def generate_scripts(
    project_id: str,
    mode: Mode = "sequential",
    *,
    chapters: Iterable[int] | None = None,
    only: Only | None = None,
    template: TemplateSource | None = None,
    temperature: float = 0.7,
    db: ProjectDb = None,
    **options: Any,
) -> ScriptRun:
    """Generate a script for each chapter (seed: `generateScripts`) and store what worked.

    `mode="sequential"` is the seed's queue: five requests in flight at most, paced by the
    limits. `"batch"` is the seed's batch path: the engine's automatic pacing and rotation
    (`max_concurrency=` may cap it). `"auto"` is the seed's rule: batch for more than five
    chapters. `chapters=[...]` restricts the run; `only="missing"` takes the chapters without a
    script, `only="failed"` those whose last script request failed. A chapter's new script is
    a new version (the latest is current); one equal to the current script adds nothing.
    With `cache="refresh"` (what `regenerate` uses) each request also carries the sampling
    seed of the version it would become, so the answer is new text, not the same one again.

    Other options: request settings (`max_output_tokens`, `model`, `system`, `seed`, ...) and
    anything `batch_generate` takes (`models`, `on_progress`, `progress`, `cache`, `base_url`,
    `api_key`, `budget_usd`, `chunk_size`, ...). Ctrl-C stops the run, keeps what finished and
    raises `BatchInterrupted`; each answer is also in the call log, so running again resumes.
    """
    database = project_database(db, options=options)
    state = projects.read_project(database, project_id)
    outline, current = _outline(state), state.scripts
    selected = _select(outline, chapters, only, done=current, failed=state.failed(GENERATE_SCRIPT))
    prompt = load_template(GENERATE_SCRIPT, template)
    items = []
    for chapter in selected:
        values = _script_fields(state.project, chapter, outline)
        item = _item(_request_id(chapter.number), prompt, values)
        item["metadata"]["chapter"] = chapter.number
        if options.get("cache") == "refresh" and "seed" not in options:
            item["seed"] = current[chapter.number].version + 1 if chapter.number in current else 1
        items.append(item | {"schema": Script})
    scripts: dict[int, Script] = {}
    versions = {n: v.version for n, v in current.items() if n in {c.number for c in selected}}

    def keep(done: Done) -> None:
        made = {int(result.metadata["chapter"]): (result.data, call) for result, call in done}
        new = [projects.NewScript(n, s.model_dump_json(), call) for n, (s, call) in made.items()]
        versions.update(projects.add_script_versions(database, project_id, new))
        scripts.update({number: script for number, (script, _) in made.items()})

    ran = _run(
        database,
        project_id,
        GENERATE_SCRIPT,
        items,
        mode=mode,
        temperature=temperature,
        options=options,
        keep=keep,
    )
    return ScriptRun(
        project_id=project_id,
        mode=ran.mode,
        errors=ran.chapter_errors(),
        batch_id=ran.batch_id,
        duration_s=ran.duration_s,
        scripts=dict(sorted(scripts.items())),
        versions=dict(sorted(versions.items())),
    )


def generate_scripts_batch(project_id: str, **kwargs: Any) -> ScriptRun:
    """The seed's `generateScriptsBatch`: `generate_scripts(project_id, mode="batch", ...)`."""
    return generate_scripts(project_id, mode="batch", **kwargs)


def regenerate(
    project_id: str, chapters: Iterable[int] | None = None, *, mode: Mode = "auto", **kwargs: Any
) -> ScriptRun:
    """New scripts for `chapters` (None: all): asked again, never served from the cache.

    Each gets a new version when the answer differs from its current script; the earlier
    versions stay. Takes the options of `generate_scripts` except `cache`.
    """
    if "cache" in kwargs:
        raise ConfigurationError("regenerate always asks again (cache='refresh'); drop cache=.")
    return generate_scripts(project_id, mode, chapters=chapters, cache="refresh", **kwargs)


# --- image prompts -----------------------------------------------------------------------------


def generate_image_prompts(
    project_id: str,
    mode: Mode = "auto",
    *,
    chapters: Iterable[int] | None = None,
    only: Only | None = None,
    template: TemplateSource | None = None,
    temperature: float = 0.8,
    db: ProjectDb = None,
    **options: Any,
) -> ImagePromptRun:
    """Image prompts for each scene of each chapter's current script (GENERATE_IMAGE_PROMPTS).

    Chapters without a script are skipped (naming one in `chapters=` is an error). The prompts
    are stored with the script version they illustrate, replacing earlier ones for it.
    `only="missing"` takes the chapters whose current script has none yet, `only="failed"`
    those whose last image-prompt request failed. Options as for `generate_scripts`.
    """
    database = project_database(db, options=options)
    state = projects.read_project(database, project_id)
    outline, current = _outline(state), state.scripts
    if not current:
        raise ConfigurationError(f"Project {project_id!r} has no scripts yet: generate them first.")
    selected = _select(
        outline,
        chapters,
        only,
        done=state.image_prompts,
        failed=state.failed(GENERATE_IMAGE_PROMPTS),
    )
    unscripted = [c.number for c in selected if c.number not in current]
    if unscripted and chapters is not None:
        raise ConfigurationError(f"Chapters {unscripted} have no script yet: generate them first.")
    selected = [c for c in selected if c.number in current]
    prompt = load_template(GENERATE_IMAGE_PROMPTS, template)
    items = []
    for chapter in selected:
        stored = current[chapter.number]
        script = Script.model_validate_json(stored.script_json)
        values = _script_fields(state.project, chapter, outline) | _scene_fields(script)
        item = _item(_request_id(chapter.number), prompt, values)
        item["metadata"] |= {"chapter": chapter.number, "script_version": stored.version}
        schema = _sized(ChapterImagePrompts, "prompts", len(script.scenes))
        items.append(item | {"schema": schema})
    made: dict[int, tuple[ImagePrompt, ...]] = {}

    def keep(done: Done) -> None:
        sets = []
        for result, call in done:
            number, prompts = int(result.metadata["chapter"]), tuple(result.data.prompts)
            version = int(result.metadata["script_version"])
            dumped = tuple(p.model_dump() for p in prompts)
            sets.append(projects.PromptSet(number, version, dumped, call))
            made[number] = prompts
        projects.replace_image_prompts(database, project_id, sets)

    ran = _run(
        database,
        project_id,
        GENERATE_IMAGE_PROMPTS,
        items,
        mode=mode,
        temperature=temperature,
        options=options,
        keep=keep,
    )
    return ImagePromptRun(
        project_id=project_id,
        mode=ran.mode,
        errors=ran.chapter_errors(),
        batch_id=ran.batch_id,
        duration_s=ran.duration_s,
        prompts=dict(sorted(made.items())),
    )


# --- running a batch over chapters -------------------------------------------------------------


@dataclass(slots=True)
class _BatchWatch:
    """A listener noting the batch's id (for the stored call ids) and its duration."""

    batch_id: str | None = None
    duration_s: float = 0.0

    def __call__(self, event: Event) -> None:
        if isinstance(event, BatchStarted):
            self.batch_id = event.batch_id
        elif isinstance(event, BatchFinished):
            self.duration_s = event.duration_s


@dataclass(frozen=True, slots=True)
class _Ran:
    mode: str
    failures: Mapping[str, Failure]  # by request id
    batch_id: str | None
    duration_s: float

    def chapter_errors(self) -> dict[int, Failure]:
        return {_chapter_of(rid): failure for rid, failure in sorted(self.failures.items())}


def _run(
    db: Database,
    project_id: str,
    operation: str,
    items: Sequence[dict[str, Any]],
    *,
    mode: Mode,
    temperature: float,
    options: dict[str, Any],
    keep: Callable[[Done], None],
) -> _Ran:
    """Run `items` as one batch, then `keep` the successes and collect the failures.

    Stored once the batch is over (also when interrupted): while it runs, the call log's
    recorder writes from its own thread, and this process keeps off the file meanwhile.
    """
    options = dict(options)
    settings = {name: options.pop(name) for name in list(options) if name in REQUEST_SETTINGS}
    chosen = _choose_mode(mode, len(items))
    concurrency = _concurrency(chosen, mode, options)
    watch = _BatchWatch()
    if not items:
        return _Ran(chosen, {}, None, 0.0)
    requests = create_batch_requests(
        items, operation=operation, project_id=project_id, temperature=temperature, **settings
    )
    listeners = [*options.pop("listeners", ()), watch]
    try:
        results = batch_generate(
            requests, db=db, max_concurrency=concurrency, listeners=listeners, **options
        )
    except BatchInterrupted as stopped:
        keep([(r, CallRef(watch.batch_id, r.id)) for r in stopped.results if r.success])
        raise
    keep([(r, CallRef(watch.batch_id, r.id)) for r in results if r.success])
    failures = {r.id: r.error for r in results if r.error is not None}
    return _Ran(chosen, failures, watch.batch_id, watch.duration_s)


def _choose_mode(mode: Mode, count: int) -> str:
    if mode not in ("sequential", "batch", "auto"):
        raise ConfigurationError(f"mode={mode!r}: use 'sequential', 'batch' or 'auto'.")
    if mode == "auto":
        return "batch" if count > BATCH_ABOVE else "sequential"
    return mode


def _concurrency(chosen: str, mode: Mode, options: dict[str, Any]) -> int | str | None:
    """The cap in flight: the seed's fixed 5 when sequential, else the caller's or automatic."""
    if "max_concurrency" in options and mode != "batch":
        raise ConfigurationError(
            "max_concurrency applies to mode='batch'; the sequential mode is the seed's queue "
            f"of {SEQUENTIAL_CONCURRENCY}."
        )
    if chosen == "sequential":
        return SEQUENTIAL_CONCURRENCY
    concurrency: int | str | None = options.pop("max_concurrency", None)
    return concurrency


def _item(request_id: str, template: PromptTemplate, values: Mapping[str, Any]) -> dict[str, Any]:
    """A prompt item for `create_batch_requests`, carrying its template's hash."""
    return {
        "id": request_id,
        "prompt": template.render(values),
        "metadata": {"template_hash": template.hash},
    }


def _request_id(number: int) -> str:
    return f"ch-{number}"


def _chapter_of(request_id: str) -> int:
    return int(request_id.removeprefix("ch-"))


def _outline(state: projects.ProjectState) -> tuple[Chapter, ...]:
    if not state.chapters:
        raise ConfigurationError(
            f"Project {state.project.project_id!r} has no chapters yet: import_outline() or "
            "generate_outline() first."
        )
    return state.chapters


def _select(
    outline: Sequence[Chapter],
    wanted: Iterable[int] | None,
    only: Only | None,
    *,
    done: Collection[int],
    failed: Collection[int],
) -> list[Chapter]:
    """The chapters a run takes: `wanted` (all by default), then `only` missing or failed."""
    if only not in (None, "missing", "failed"):
        raise ConfigurationError(f"only={only!r}: use 'missing', 'failed' or None (all).")
    chosen = list(outline)
    if wanted is not None:
        numbers = set(wanted)
        unknown = sorted(numbers - {c.number for c in outline})
        if unknown:
            known = ", ".join(str(c.number) for c in outline)
            raise ConfigurationError(f"No chapter {unknown}; the chapters are {known}.")
        chosen = [c for c in chosen if c.number in numbers]
    if only == "missing":
        return [c for c in chosen if c.number not in done]
    if only == "failed":
        return [c for c in chosen if c.number in failed]
    return chosen


# --- prompt fields -----------------------------------------------------------------------------


# What the prompts say for a project created without an audience or a style ("Audience: .
# Style: ." would read as a broken template to the model and to anyone reading the log).
ANY_AUDIENCE = "a general audience"
ANY_STYLE = "clear and simple"


def _project_fields(project: Project) -> dict[str, Any]:
    return {
        "project_title": project.title,
        "premise": project.premise,
        "audience": project.audience or ANY_AUDIENCE,
        "style": project.style or ANY_STYLE,
        "language": project.language,
        "target_length_s": project.target_length_s,
    }


def _script_fields(
    project: Project, chapter: Chapter, outline: Sequence[Chapter]
) -> dict[str, Any]:
    return _project_fields(project) | {
        "number": chapter.number,
        "title": chapter.title,
        "summary": chapter.summary,
        "chapter_count": len(outline),
        "outline": "\n".join(f"{c.number}. {c.title}" for c in outline),
    }


def _scene_fields(script: Script) -> dict[str, Any]:
    scenes = "\n\n".join(
        f"Scene {i}: {s.heading}\nNarration: {s.narration}\nOn screen: {s.visual_description}"
        for i, s in enumerate(script.scenes, 1)
    )
    return {"script_title": script.title, "scene_count": len(script.scenes), "scenes": scenes}
