"""A project's contents out: DataFrames, a JSON document, and one Markdown file per chapter.

Owns `chapters_frame` (the outline, ready for `%%scriptgen batch --over`), `project_status`
(each chapter's current script version, how many versions, image prompts, last failure),
`scripts_frame`, `export_json` and `export_markdown`. Everything here reads the store: the
current (latest) script version of each chapter and the image prompts made for that version.
Must not import duckdb, IPython or anything from `jupyter/`; sends no request.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from ..store import projects
from ..store.projects import Chapter, Project, ProjectState, ScriptVersion
from .scripts import GENERATE_SCRIPT, ProjectDb, Script, project_database

SCRIPT_COLUMNS = [
    "chapter",
    "chapter_title",
    "version",
    "title",
    "scenes",
    "estimated_duration_s",
    "word_count",
    "image_prompts",
    "script",
    "batch_id",
    "request_id",
]


# A documentary narrator's pace; the model's own `estimated_duration_s` and `word_count` are
# guesses about text it wrote, often wrong, so exports count the narration themselves.
NARRATION_WORDS_PER_MINUTE = 150


def narration_figures(script: Script) -> tuple[int, int]:
    """(words, seconds) of a script's narration, counted from its text at the narrator's pace."""
    words = sum(len(scene.narration.split()) for scene in script.scenes)
    return words, round(words * 60 / NARRATION_WORDS_PER_MINUTE)


def chapters_frame(project_id: str, *, db: ProjectDb = None) -> pd.DataFrame:
    """The outline: `id` (the workflow's request id, "ch-N"), `number`, `title`, `summary`."""
    state = projects.read_project(project_database(db, read_only=True), project_id)
    rows = [
        {"id": f"ch-{c.number}", "number": c.number, "title": c.title, "summary": c.summary}
        for c in state.chapters
    ]
    return pd.DataFrame(rows, columns=["id", "number", "title", "summary"])


def project_status(project_id: str, *, db: ProjectDb = None) -> pd.DataFrame:
    """Per chapter: `version` (current script), `versions`, `image_prompts`, `last_failure`.

    `last_failure` is the error of the chapter's last script request when that request failed.
    """
    return projects.status(project_database(db, read_only=True), project_id, GENERATE_SCRIPT)


def scripts_frame(project_id: str, *, db: ProjectDb = None) -> pd.DataFrame:
    """One row per chapter with a script: its current version and the script's figures (words
    and seconds counted from its narration, not the model's own estimate)."""
    content = _read(project_id, db)
    rows = []
    for chapter in content.chapters:
        stored = content.scripts.get(chapter.number)
        if stored is None:
            continue
        script = json.loads(stored.script_json)
        words, seconds = narration_figures(Script.model_validate(script))
        rows.append(
            {
                "chapter": chapter.number,
                "chapter_title": chapter.title,
                "version": stored.version,
                "title": script["title"],
                "scenes": len(script["scenes"]),
                "estimated_duration_s": seconds,
                "word_count": words,
                "image_prompts": len(content.image_prompts.get(chapter.number, ())),
                "script": script,
                "batch_id": stored.call.batch_id,
                "request_id": stored.call.request_id,
            }
        )
    return pd.DataFrame(rows, columns=SCRIPT_COLUMNS)


def export_json(project_id: str, path: str | os.PathLike[str], *, db: ProjectDb = None) -> Path:
    """Write the project, its chapters and their current scripts and image prompts as JSON."""
    content = _read(project_id, db)
    chapters = []
    for chapter in content.chapters:
        stored = content.scripts.get(chapter.number)
        chapters.append(
            asdict(chapter)
            | {
                "version": stored.version if stored else None,
                "script": json.loads(stored.script_json) if stored else None,
                "image_prompts": content.image_prompts.get(chapter.number, ()),
            }
        )
    target = Path(path)
    document = {"project": asdict(content.project), "chapters": chapters}
    target.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return target


def export_markdown(
    project_id: str, folder: str | os.PathLike[str], *, db: ProjectDb = None
) -> list[Path]:
    """Write one Markdown file per chapter with a script (its current version); return them.

    Files are named `01-chapter-title.md`; each scene is a section with its narration, what is
    on screen and, when there are image prompts for this version, the scene's prompt.
    """
    content = _read(project_id, db)
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    width = max(2, len(str(max((c.number for c in content.chapters), default=0))))
    written = []
    for chapter in content.chapters:
        stored = content.scripts.get(chapter.number)
        if stored is None:
            continue
        path = target / f"{chapter.number:0{width}d}-{projects.slug(chapter.title)}.md"
        text = chapter_markdown(
            content.project, chapter, stored, content.image_prompts.get(chapter.number, ())
        )
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def chapter_markdown(
    project: Project,
    chapter: Chapter,
    stored: ScriptVersion,
    prompts: Sequence[Mapping[str, Any]],
) -> str:
    """A chapter's current script as Markdown: a heading per scene, image prompts if any."""
    script = Script.model_validate_json(stored.script_json)
    words, seconds = narration_figures(script)
    lines = [
        f"# {chapter.number}. {script.title}",
        "",
        f"{project.title}, chapter {chapter.number}: {chapter.title}. Script version "
        f"{stored.version}, about {seconds} seconds of narration, {words} words.",
    ]
    for number, scene in enumerate(script.scenes, 1):
        lines += ["", f"## Scene {number}: {scene.heading}", "", scene.narration, ""]
        lines.append(f"*On screen:* {scene.visual_description}")
        if number <= len(prompts):
            image = prompts[number - 1]
            lines += [
                "",
                f"**Image prompt** ({image['aspect_ratio']}, {image['style']}): {image['prompt']}",
                f"*Negative prompt:* {image['negative_prompt']}",
            ]
    return "\n".join(lines) + "\n"


def _read(project_id: str, db: ProjectDb) -> ProjectState:
    return projects.read_project(project_database(db, read_only=True), project_id)
