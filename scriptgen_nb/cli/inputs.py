"""`scriptgen run INPUT`: reading prompts from JSONL, CSV or text (a file or stdin), and schemas.

Owns `read_prompts` (INPUT into the items `create_batch_requests` takes, each with where it
came from, so an error can name the line) and `load_schema` (`--schema`: a JSON Schema file or
`module:Class` for a Pydantic model). Templates over rows are filled by the same code as the
magic's `--over` (`jupyter/cells.py`, which imports no IPython), and text is split like a
`%%scriptgen batch` cell. Every problem is a `ConfigurationError` naming the input, the line
and what to do; nothing here sends or writes anything.
"""

from __future__ import annotations

import csv
import importlib
import io
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ..engine.errors import ConfigurationError
from ..engine.values import GenerationRequest
from ..jupyter.cells import literal_prompts, templated_prompts
from ..projects.prompts import load_template, template_fields
from ..results import INPUT_KEY

FORMATS = ("auto", "jsonl", "csv", "text")
SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv"}
REQUEST_FIELDS = sorted(GenerationRequest.__dataclass_fields__)


@dataclass(frozen=True, slots=True)
class Prompts:
    """The prompts read from INPUT, and where each came from (`line 3`, `row 2`)."""

    name: str  # the file's path, or "stdin"
    items: list[Any]  # strings or {id, prompt, ...} mappings
    places: list[str]

    def locate(self, message: str) -> str:
        """`Prompt #4 is empty` from create_batch_requests, as `INPUT line 6: prompt #4 ...`."""
        found = re.match(r"Prompt #(\d+)", message)
        if found is None or int(found.group(1)) >= len(self.places):
            return message
        place = self.places[int(found.group(1))]
        return f"{self.name} {place}: {message[0].lower()}{message[1:]}"


def read_prompts(
    source: str, fmt: str = "auto", template: str | None = None, stdin: TextIO | None = None
) -> Prompts:
    """INPUT (a path, or `-` for stdin) as prompts; `template` fills `{column}` from rows."""
    name, text = _read_text(source, stdin or sys.stdin)
    fmt = _format(fmt, source, text)
    if template is not None:
        template = load_template("GENERATE", template).text  # its text, or a file holding it
    if fmt == "text":
        if template is not None:
            raise ConfigurationError(
                f"--template fills {{column}}s from CSV or JSONL rows, and {name} is read as "
                "text (one prompt per line): pass a .csv or .jsonl file, or --format csv/jsonl."
            )
        return _text(name, text)
    rows, places = _jsonl(name, text) if fmt == "jsonl" else _csv(name, text, template)
    if not rows:
        raise ConfigurationError(f"{name} holds no prompt: it has no {fmt} rows.")
    if template is not None:
        return Prompts(name, templated_prompts(template, rows), places)
    if fmt == "csv":
        return Prompts(name, [_csv_prompt(row) for row in rows], places)
    for row, place in zip(rows, places, strict=True):
        unknown = sorted(set(row) - set(REQUEST_FIELDS))
        if unknown:
            raise ConfigurationError(
                f"{name} {place}: unknown field(s) {', '.join(unknown)}; a line holds a "
                f"request's fields ({', '.join(REQUEST_FIELDS)}), or pass --template to fill "
                "a prompt from each line's values."
            )
    return Prompts(name, rows, places)


def _read_text(source: str, stdin: TextIO) -> tuple[str, str]:
    if source == "-":
        return "stdin", stdin.read()
    path = Path(source)
    if not path.exists():
        raise ConfigurationError(f"{source}: no such file; pass a JSONL, CSV or text file, or -.")
    if not path.is_file():
        raise ConfigurationError(f"{source} is not a file; pass a JSONL, CSV or text file, or -.")
    try:
        return source, path.read_text(encoding="utf-8-sig")  # a BOM from Excel is not data
    except UnicodeDecodeError as exc:
        raise ConfigurationError(
            f"{source} is not UTF-8 text (byte {exc.start}): save it as UTF-8."
        ) from None
    except OSError as exc:
        raise ConfigurationError(f"{source} cannot be read: {exc.strerror}.") from None


def _format(fmt: str, source: str, text: str) -> str:
    if fmt != "auto":
        return fmt
    suffix = Path(source).suffix.lower() if source != "-" else ""
    if suffix in SUFFIXES:
        return SUFFIXES[suffix]
    first = text.lstrip()[:1]
    return "jsonl" if first == "{" else "text"  # e.g. stdin: JSON objects, or prompts


def _text(name: str, text: str) -> Prompts:
    if not text.strip():
        raise ConfigurationError(f"{name} holds no prompt: write one per line.")
    items = literal_prompts(text)  # one per line, or blocks between `---` lines, as in a cell
    if len(items) == len([line for line in text.splitlines() if line.strip()]):
        numbers = [n for n, line in enumerate(text.splitlines(), 1) if line.strip()]
        places = [f"line {n}" for n in numbers]
    else:
        places = [f"block {n}" for n in range(1, len(items) + 1)]
    return Prompts(name, items, places)


def _jsonl(name: str, text: str) -> tuple[list[dict[str, Any]], list[str]]:
    rows, places = [], []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(
                f"{name} line {number}: not valid JSON ({exc.msg}, column {exc.colno}); each "
                'line must be one JSON object, e.g. {"id": "a", "prompt": "..."}.'
            ) from None
        if not isinstance(row, dict):
            raise ConfigurationError(
                f"{name} line {number}: a JSON {type(row).__name__}, not an object; each line "
                'must be one JSON object, e.g. {"id": "a", "prompt": "..."}.'
            )
        rows.append(row)
        places.append(f"line {number}")
    return rows, places


def _csv(name: str, text: str, template: str | None) -> tuple[list[dict[str, Any]], list[str]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    columns = reader.fieldnames or []
    if not columns:
        raise ConfigurationError(f"{name} holds no prompt: the CSV has no header row.")
    needed = template_fields(template) if template is not None else ["prompt"]
    missing = [f for f in needed if f.split(".")[0].split("[")[0] not in columns]
    if missing:
        hint = (
            "fix --template or the header"
            if template is not None
            else "add one, or pass --template 'Write about {" + columns[0] + "}'"
        )
        raise ConfigurationError(
            f"{name} has no column {missing[0]!r} (its columns: {', '.join(columns)}): {hint}."
        )
    rows, places = [], []
    try:
        for row in reader:
            if None in row:
                raise ConfigurationError(
                    f"{name} row {reader.line_num}: more values than the header has columns; "
                    "quote values that hold commas."
                )
            rows.append(row)
            places.append(f"line {reader.line_num}")
    except csv.Error as exc:
        raise ConfigurationError(f"{name} line {reader.line_num}: not valid CSV ({exc}).") from None
    return rows, places


def _csv_prompt(row: dict[str, str]) -> dict[str, Any]:
    """A row with a `prompt` column: its own `id` when it has one; the other columns are the
    request's input (its fields come back beside the result's)."""
    item: dict[str, Any] = {"prompt": row["prompt"]}
    if row.get("id", "").strip():
        item["id"] = row["id"]
    rest = {k: v for k, v in row.items() if k not in ("prompt", "id")}
    if rest:
        item["metadata"] = {INPUT_KEY: rest}
    return item


def load_schema(spec: str) -> Any:
    """`--schema`: a JSON Schema file (a dict), or `module:Class` naming a Pydantic model."""
    path = Path(spec)
    if path.is_file():
        try:
            schema = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"--schema {spec}: not a JSON file ({exc}).") from None
        if not isinstance(schema, dict):
            raise ConfigurationError(f"--schema {spec}: a JSON Schema is an object, not a list.")
        return schema
    module_name, colon, qualname = spec.partition(":")
    if not colon or not module_name or not qualname:
        raise ConfigurationError(
            f"--schema {spec}: no such file; give a JSON Schema file or module:Class for a "
            "Pydantic model (e.g. myschemas:Script)."
        )
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))  # as `python -m` would: your modules here
    try:
        found: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            found = getattr(found, part)
    except ImportError as exc:
        raise ConfigurationError(f"--schema {spec}: cannot import {module_name} ({exc}).") from None
    except AttributeError:
        raise ConfigurationError(f"--schema {spec}: {module_name} has no {qualname}.") from None
    return found
