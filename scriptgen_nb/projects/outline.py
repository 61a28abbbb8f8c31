"""Reading a project's outline: chapters from a DataFrame, a CSV or JSON file, or a list.

Owns `read_outline`, which turns any of those into checked `Chapter`s or raises one
`ConfigurationError` listing every problem (an empty outline, missing titles, numbers that are
not positive whole numbers, duplicate numbers, text UTF-8 cannot encode), so nothing is ever
written half. Each row has
`title`, optionally `summary`, and `number`; when no row gives a number, chapters are numbered
in order. Reads files and values only: no store, no requests, no IPython.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..engine.errors import ConfigurationError
from ..engine.values import surrogate_problem
from ..store.projects import Chapter

OutlineSource = pd.DataFrame | str | os.PathLike[str] | Sequence[Mapping[str, Any]]

_SHOWN_PROBLEMS = 10


def read_outline(source: OutlineSource) -> list[Chapter]:
    """The chapters `source` describes, checked and ordered by number."""
    return checked_chapters(outline_rows(source))


def outline_rows(source: OutlineSource) -> list[dict[str, Any]]:
    """The rows of an outline source, before any checking."""
    if isinstance(source, pd.DataFrame):
        return _records(source)
    if isinstance(source, str | os.PathLike):
        return _file_rows(Path(source))
    if isinstance(source, Sequence):
        rows = [dict(row) for row in source if isinstance(row, Mapping)]
        if len(rows) == len(source):
            return rows
    raise ConfigurationError(
        f"An outline is a DataFrame, a .csv or .json path, or a list of dicts with number, "
        f"title and summary; not {type(source).__name__}."
    )


def _file_rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise ConfigurationError(f"The outline file {path} does not exist.")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        # Read every cell as text, so "3", "three" and "" are all judged the same way.
        return _records(pd.read_csv(path, dtype=str, keep_default_na=False))
    if suffix == ".json":
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ConfigurationError(f"The outline file {path} is not valid JSON: {exc}") from exc
        if isinstance(document, Mapping) and "chapters" in document:
            document = document["chapters"]
        if not isinstance(document, list) or not all(isinstance(r, Mapping) for r in document):
            raise ConfigurationError(
                f"The outline file {path} must hold a list of chapters (or an object with "
                "'chapters'), each an object with number, title and summary."
            )
        return [dict(row) for row in document]
    raise ConfigurationError(f"The outline file {path} must be .csv or .json, not {suffix!r}.")


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): v for k, v in row.items()} for row in frame.to_dict("records")]


def checked_chapters(rows: Sequence[Mapping[str, Any]]) -> list[Chapter]:
    """Check every row, then either return all chapters or raise listing every problem."""
    if not rows:
        raise ConfigurationError(
            "The outline is empty: give at least one chapter (number, title, summary)."
        )
    problems: list[str] = []
    numbered = any(not _blank(row.get("number")) for row in rows)
    chapters: list[Chapter] = []
    for position, row in enumerate(rows, start=1):
        where = f"row {position}"
        number = _number(row.get("number"), where, problems) if numbered else position
        title = _text(row.get("title"))
        if not title:
            problems.append(f"{where}: missing title")
        for name in ("title", "summary"):
            problem = surrogate_problem(_text(row.get(name)), name)
            if problem is not None:
                problems.append(f"{where}: {problem}")
        if number is not None and title:
            chapters.append(Chapter(number, title, _text(row.get("summary"))))
    for number, times in sorted(Counter(c.number for c in chapters).items()):
        if times > 1:
            problems.append(f"chapter number {number} appears {times} times")
    if problems:
        shown = problems[:_SHOWN_PROBLEMS]
        more = len(problems) - len(shown)
        listing = "\n".join(f"- {p}" for p in shown) + (f"\n- and {more} more" if more else "")
        raise ConfigurationError(
            f"The outline has {len(problems)} problem(s); nothing was written:\n{listing}"
        )
    return sorted(chapters, key=lambda c: c.number)


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value == ""


def _text(value: Any) -> str:
    return "" if _blank(value) else str(value).strip()


def _number(value: Any, where: str, problems: list[str]) -> int | None:
    """A positive whole chapter number (3, 3.0, "3"), else None with the problem noted."""
    number: int | None = None
    if isinstance(value, numbers.Real | str) and not isinstance(value, bool):
        try:
            as_float = float(value)
        except ValueError:
            as_float = math.nan
        if as_float.is_integer() and as_float >= 1:
            number = int(as_float)
    if number is None:
        shown = "missing" if _blank(value) else repr(value)
        problems.append(f"{where}: chapter number {shown} is not a positive whole number")
    return number
