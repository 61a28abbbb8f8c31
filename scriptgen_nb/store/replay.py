"""Rebuilding a logged batch's requests, e.g. to re-run only its failed or unfinished ones
(`replayed_requests` keeps how each ended, so a retry can choose what is worth sending).

Everything needed is in the `request` table, so another process (a restarted kernel, the
`scriptgen retry` command) can do it: the prompt, system instruction, settings, pinned model,
metadata, and the schema, as the Pydantic class when it can still be imported by name and as
its JSON Schema otherwise. No duckdb here.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from ..engine.errors import ConfigurationError
from ..engine.values import GenerationRequest
from .database import Database

Outcome = Literal["succeeded", "failed", "not_run"]

# Modules whose classes older logs name at their former paths (`module:QualName`): the seed's
# workflow moved into `scriptgen_nb.projects`, and its Pydantic schemas must still replay.
MOVED_MODULES = {
    f"scriptgen_nb.{name}": f"scriptgen_nb.projects.{name}"
    for name in ("scripts", "outline", "prompts", "export")
}


@dataclass(frozen=True, slots=True)
class Replayed:
    """A logged request rebuilt, with how it ended: its outcome and, unless it succeeded, the
    failure kind (`not_run` for one not run), so a retry can choose what is worth sending."""

    request: GenerationRequest
    outcome: Outcome
    kind: str | None


def stored_requests(
    db: Database, batch_id: str, outcomes: Collection[Outcome] = ("failed", "not_run")
) -> list[GenerationRequest]:
    """The batch's requests whose outcome is in `outcomes`, in their original order.

    A request with no result at all (its process was killed) counts as not run.
    """
    return [replayed.request for replayed in replayed_requests(db, batch_id, outcomes)]


def replayed_requests(
    db: Database, batch_id: str, outcomes: Collection[Outcome] = ("failed", "not_run")
) -> list[Replayed]:
    """`stored_requests`, each with its outcome and failure kind."""
    rows = db.rows(
        "SELECT q.request_id, q.operation, q.project_id, q.prompt, q.system, q.config, "
        "q.response_schema, q.schema_name, r.success, r.error_kind "
        "FROM request q LEFT JOIN result r USING (batch_id, request_id) "
        "WHERE q.batch_id = ? ORDER BY q.request_index",
        [batch_id],
    )
    if not rows and not db.rows("SELECT 1 FROM batch_log WHERE batch_id = ?", [batch_id]):
        raise ConfigurationError(f"No batch {batch_id!r} in the call log {db.path}.")
    rebuilt = []
    for request_id, operation, project, prompt, system, config, schema, name, ok, kind in rows:
        outcome: Outcome = (
            "succeeded" if ok else "not_run" if ok is None or kind == "not_run" else "failed"
        )
        if outcome not in outcomes:
            continue
        if prompt is None:
            raise ConfigurationError(
                f"Batch {batch_id} was logged without text (store_text=False): its prompts "
                "cannot be rebuilt from the log."
            )
        request = _request(request_id, operation, project, prompt, system, config, schema, name)
        failure = None if outcome == "succeeded" else "not_run" if outcome == "not_run" else kind
        rebuilt.append(Replayed(request, outcome, failure))
    return rebuilt


def _request(
    request_id: str,
    operation: str,
    project_id: str | None,
    prompt: str,
    system: str | None,
    config: str,
    schema: str | None,
    schema_name: str | None,
) -> GenerationRequest:
    stored = json.loads(config)
    settings: dict[str, Any] = dict(stored.get("settings", {}))
    for name in ("stop_sequences", "safety_settings"):
        if name in settings:
            settings[name] = tuple(settings[name])
    return GenerationRequest(
        id=request_id,
        prompt=prompt,
        operation=operation,
        project_id=project_id,
        system=system,
        schema=_schema(schema, schema_name),
        model=stored.get("model"),
        metadata=stored.get("metadata", {}),
        **settings,
    )


def _schema(schema: str | None, schema_name: str | None) -> Any:
    """The Pydantic class by name when it still imports; else the stored JSON Schema."""
    if schema is None:
        return None
    if schema_name:
        module, _, qualname = schema_name.partition(":")
        module = MOVED_MODULES.get(module, module)
        try:
            found: Any = importlib.import_module(module)
            for part in qualname.split("."):
                found = getattr(found, part)
        except (ImportError, AttributeError):
            found = None
        if isinstance(found, type) and issubclass(found, BaseModel):
            return found
    return json.loads(schema)
