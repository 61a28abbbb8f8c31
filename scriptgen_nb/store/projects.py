"""Projects, chapters, script versions and image prompts, next to the call log (migration 2).

Owns the reads and writes of the tables `project`, `chapter`, `script_version` and
`image_prompt`, and the one query that reads a project's outcomes back out of the call log
(each chapter's latest request for an operation, found by the `chapter` the workflow puts in
each request's metadata). Scripts and image prompts travel as JSON text and plain mappings: this
module knows nothing of their Pydantic models (`scripts.py` does) and sends no request. No
duckdb here: everything goes through `Database`.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from ..engine.errors import ConfigurationError
from .database import Database

IMAGE_PROMPT_FIELDS = ("prompt", "style", "aspect_ratio", "negative_prompt")


@dataclass(frozen=True, slots=True)
class Project:
    """A series of videos: what every chapter's prompt is told about it."""

    project_id: str
    title: str
    premise: str = ""
    audience: str = ""
    style: str = ""
    language: str = "English"
    target_length_s: int = 60


@dataclass(frozen=True, slots=True)
class Chapter:
    """One chapter of a project's outline; `number` is unique within the project."""

    number: int
    title: str
    summary: str = ""


@dataclass(frozen=True, slots=True)
class CallRef:
    """The call that produced something: its batch and request in the call log."""

    batch_id: str | None
    request_id: str | None


@dataclass(frozen=True, slots=True)
class NewScript:
    """A chapter's script as it came back, to be stored as a version."""

    chapter: int
    script_json: str
    call: CallRef


@dataclass(frozen=True, slots=True)
class PromptSet:
    """A chapter's image prompts (one mapping per scene) for one of its script versions."""

    chapter: int
    script_version: int
    prompts: tuple[Mapping[str, Any], ...]
    call: CallRef


@dataclass(frozen=True, slots=True)
class ScriptVersion:
    """One stored version of a chapter's script; the highest version is the current one."""

    chapter: int
    version: int
    script_json: str
    call: CallRef


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a chapter's latest request for an operation ended, per the call log."""

    success: bool
    error_kind: str | None
    error_message: str | None


@dataclass(frozen=True, slots=True)
class ProjectState:
    """A project as stored now: its outline, current scripts, their image prompts, outcomes.

    `scripts` holds each chapter's current (latest) version; `image_prompts` those made for
    that version, in scene order; `outcomes` how the latest request ended per (operation,
    chapter), per the call log.
    """

    project: Project
    chapters: tuple[Chapter, ...]
    scripts: Mapping[int, ScriptVersion]
    image_prompts: Mapping[int, tuple[dict[str, Any], ...]]
    outcomes: Mapping[tuple[str, int], Outcome]

    def failed(self, operation: str) -> set[int]:
        """Chapters whose latest `operation` request failed."""
        return {
            n
            for (op, n), outcome in self.outcomes.items()
            if op == operation and not outcome.success
        }


# --- projects and chapters ---------------------------------------------------------------------


def slug(text: str) -> str:
    """A readable id from a title: lower case, words joined by dashes, at most 40 characters."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    return "-".join(words)[:40].strip("-") or "project"


def new_project_id(db: Database, title: str) -> str:
    """The title's slug, with `-2`, `-3`, ... when the file already holds that id."""
    base = slug(title)
    taken = {
        row[0]
        for row in db.rows(
            "SELECT project_id FROM project WHERE project_id = ? OR project_id LIKE ?",
            [base, f"{base}-%"],
        )
    }
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def insert_project(db: Database, project: Project, chapters: Sequence[Chapter]) -> None:
    """Write a project and its chapters in one transaction (all or nothing)."""
    with db.write() as con:
        if con.execute(
            "SELECT 1 FROM project WHERE project_id = ?", [project.project_id]
        ).fetchall():
            raise ConfigurationError(
                f"A project {project.project_id!r} exists already; choose another project_id."
            )
        row = asdict(project)
        con.execute(
            f"INSERT INTO project ({', '.join(row)}, created_at) "
            f"VALUES ({', '.join('?' for _ in row)}, current_timestamp)",
            list(row.values()),
        )
        _insert_chapters(con, project.project_id, chapters)


def add_chapters(db: Database, project_id: str, chapters: Sequence[Chapter]) -> None:
    """Give a project without chapters its outline, in one transaction."""
    with db.write() as con:
        [(count,)] = con.execute(
            "SELECT count(*) FROM chapter WHERE project_id = ?", [project_id]
        ).fetchall()
        if count:
            raise ConfigurationError(
                f"Project {project_id!r} has an outline already ({count} chapters); an outline "
                "is set once. Create a new project for another outline."
            )
        _insert_chapters(con, project_id, chapters)


def _insert_chapters(con: Any, project_id: str, chapters: Sequence[Chapter]) -> None:
    rows = [{"project_id": project_id, **asdict(c)} for c in chapters]
    Database.insert(con, "chapter", rows)


# --- scripts and image prompts -----------------------------------------------------------------


def add_script_versions(
    db: Database, project_id: str, scripts: Sequence[NewScript]
) -> dict[int, int]:
    """Store chapters' new scripts in one transaction; returns each chapter's version now.

    A script equal to its chapter's current one (an answer served again from the cache) adds
    nothing: the current version stays.
    """
    if not scripts:
        return {}
    versions: dict[int, int] = {}
    with db.write() as con:
        latest = {
            chapter: (int(version), script)
            for chapter, version, script in con.execute(
                "SELECT chapter, version, script FROM script_version "
                "WHERE project_id = ? AND chapter IN (SELECT unnest(?)) "
                "QUALIFY row_number() OVER (PARTITION BY chapter ORDER BY version DESC) = 1",
                [project_id, [new.chapter for new in scripts]],
            ).fetchall()
        }
        for new in scripts:
            version, script = latest.get(new.chapter, (0, None))
            if script is None or not _same_json(script, new.script_json):
                version += 1
                con.execute(
                    "INSERT INTO script_version VALUES (?, ?, ?, ?, ?, ?, current_timestamp)",
                    [
                        project_id,
                        new.chapter,
                        version,
                        new.script_json,
                        new.call.batch_id,
                        new.call.request_id,
                    ],
                )
            versions[new.chapter] = version
    return versions


def _same_json(stored: str, new: str) -> bool:
    return bool(json.loads(stored) == json.loads(new))


def replace_image_prompts(db: Database, project_id: str, sets: Sequence[PromptSet]) -> None:
    """Store script versions' image prompts in one transaction, replacing earlier ones."""
    if not sets:
        return
    now = time.time()
    rows = [
        {
            "project_id": project_id,
            "chapter": made.chapter,
            "script_version": made.script_version,
            "scene": scene,
            **{name: prompt[name] for name in IMAGE_PROMPT_FIELDS},
            "batch_id": made.call.batch_id,
            "request_id": made.call.request_id,
            "created_at": now,
        }
        for made in sets
        for scene, prompt in enumerate(made.prompts, start=1)
    ]
    with db.write() as con:
        for made in sets:
            con.execute(
                "DELETE FROM image_prompt "
                "WHERE project_id = ? AND chapter = ? AND script_version = ?",
                [project_id, made.chapter, made.script_version],
            )
        Database.insert(con, "image_prompt", rows, frozenset({"created_at"}))


# --- reading ----------------------------------------------------------------------------------

_LATEST_OUTCOMES = """
SELECT q.operation,
       TRY_CAST(json_extract_string(q.config, '$.metadata.chapter') AS INTEGER) AS chapter,
       r.success, r.error_kind, r.error_message
FROM request q JOIN result r USING (batch_id, request_id)
WHERE q.project_id = $1 AND chapter IS NOT NULL
QUALIFY row_number() OVER (PARTITION BY q.operation, chapter ORDER BY r.finished_at DESC) = 1
"""


def read_project(db: Database, project_id: str) -> ProjectState:
    """A project as stored now, read over one connection; an unknown id raises."""
    with db.connect() as con:
        project = Project(*_known(con, db, project_id))
        chapters = con.execute(
            "SELECT number, title, coalesce(summary, '') FROM chapter WHERE project_id = ? "
            "ORDER BY number",
            [project_id],
        ).fetchall()
        scripts = con.execute(
            "SELECT chapter, version, script, batch_id, request_id FROM script_version "
            "WHERE project_id = ? "
            "QUALIFY row_number() OVER (PARTITION BY chapter ORDER BY version DESC) = 1",
            [project_id],
        ).fetchall()
        prompts = con.execute(
            f"SELECT i.chapter, {', '.join(f'i.{f}' for f in IMAGE_PROMPT_FIELDS)} "
            "FROM image_prompt i JOIN (SELECT chapter, max(version) AS version "
            "FROM script_version WHERE project_id = $1 GROUP BY chapter) v "
            "ON i.chapter = v.chapter AND i.script_version = v.version "
            "WHERE i.project_id = $1 ORDER BY i.chapter, i.scene",
            [project_id],
        ).fetchall()
        outcomes = con.execute(_LATEST_OUTCOMES, [project_id]).fetchall()
    image_prompts: dict[int, list[dict[str, Any]]] = {}
    for chapter, *values in prompts:
        image_prompts.setdefault(chapter, []).append(
            dict(zip(IMAGE_PROMPT_FIELDS, values, strict=True))
        )
    return ProjectState(
        project=project,
        chapters=tuple(Chapter(*row) for row in chapters),
        scripts={n: ScriptVersion(n, v, script, CallRef(b, r)) for n, v, script, b, r in scripts},
        image_prompts={n: tuple(p) for n, p in image_prompts.items()},
        outcomes={(op, n): Outcome(bool(ok), kind, msg) for op, n, ok, kind, msg in outcomes},
    )


def _known(con: Any, db: Database, project_id: str) -> tuple[Any, ...]:
    """The project's row; an unknown id raises, naming the projects the file holds."""
    found = con.execute(
        "SELECT project_id, title, premise, audience, style, language, target_length_s "
        "FROM project WHERE project_id = ?",
        [project_id],
    ).fetchall()
    if not found:
        listed = con.execute("SELECT project_id FROM project ORDER BY created_at").fetchall()
        known = [row[0] for row in listed]
        raise ConfigurationError(
            f"No project {project_id!r} in {db.path}; known: {', '.join(known) or 'none'}."
        )
    return tuple(found[0])


def status(db: Database, project_id: str, operation: str) -> pd.DataFrame:
    """One row per chapter: its current script version, how many, image prompts, last failure.

    `last_failure` is the error of the chapter's latest `operation` request, when that failed.
    """
    with db.connect() as con:
        _known(con, db, project_id)
        frame = con.execute(
            f"""
            WITH versions AS (
                SELECT chapter, max(version) AS version, count(*) AS versions
                FROM script_version WHERE project_id = $1 GROUP BY chapter),
            prompts AS (
                SELECT chapter, script_version, count(*) AS image_prompts
                FROM image_prompt WHERE project_id = $1 GROUP BY chapter, script_version),
            outcomes AS ({_LATEST_OUTCOMES})
            SELECT c.number AS chapter, c.title, v.version,
                   coalesce(v.versions, 0) AS versions,
                   coalesce(p.image_prompts, 0) AS image_prompts,
                   CASE WHEN NOT o.success THEN o.error_kind || ': ' || o.error_message END
                       AS last_failure
            FROM chapter c
            LEFT JOIN versions v ON v.chapter = c.number
            LEFT JOIN prompts p ON p.chapter = c.number AND p.script_version = v.version
            LEFT JOIN outcomes o ON o.chapter = c.number AND o.operation = $2
            WHERE c.project_id = $1 ORDER BY c.number
            """,
            [project_id, operation],
        ).df()
    frame["last_failure"] = (
        frame["last_failure"].astype(object).where(frame["last_failure"].notna(), None)
    )
    return frame.astype({"version": "Int64", "versions": "int64", "image_prompts": "int64"})
