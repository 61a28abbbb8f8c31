"""Prompt templates: `str.format` text with `{field}`s, bundled per operation or the user's own.

Owns `PromptTemplate` (its text, hash and fields, and rendering with a clear error for a field
that has no value), `load_template` (the package's editable file for an operation, e.g.
`scriptgen_nb/projects/templates/generate_script.txt`, or a string or file the user passes) and
`render`, which the `--over` cells use too. `{{` and `}}` stand for literal braces. A template
UTF-8 cannot encode (a lone surrogate: bytes that were not UTF-8, from a command line or a
file, decoded leniently) or a file that is not UTF-8 text is refused as it is made, naming
where. Imports only `engine/`: no store, no duckdb, no IPython.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ..engine.errors import ConfigurationError
from ..engine.values import check_encodable

TemplateSource = str | os.PathLike[str]


def template_fields(template: str) -> list[str]:
    """The `{field}` names a template uses, in order, without repeats."""
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name]
    except ValueError as exc:
        raise ConfigurationError(
            f"The template is malformed ({exc}); write {{{{ for a brace."
        ) from exc
    return list(dict.fromkeys(names))


def some_names(names: Sequence[str], likely: Sequence[str] = (), limit: int = 20) -> str:
    """`names` for a message: the `likely` ones first, at most `limit`, then how many more."""
    shown = [*likely, *(n for n in names if n not in likely)]
    more = f", and {len(shown) - limit} more" if len(shown) > limit else ""
    return ", ".join(shown[:limit]) + more


def render(template: str, values: Mapping[str, Any], *, what: str) -> str:
    """`template` with `{name}` filled from `values`; a clear error for a missing name."""
    missing = [n for n in template_fields(template) if n.split(".")[0].split("[")[0] not in values]
    if missing:
        names = sorted(map(str, values))
        close = difflib.get_close_matches(missing[0], names, n=3)
        available = some_names(names, close) or "none"
        meant = f"; did you mean {{{close[0]}}}?" if close else ""
        raise ConfigurationError(
            f"The template uses {{{missing[0]}}}, which is not in {what} (available: "
            f"{available}{meant}). Write {{{{ and }}}} for literal braces."
        )
    try:
        return template.format_map(values)
    except (ValueError, IndexError, KeyError) as exc:  # {}, {0}, a bad conversion or format spec
        raise ConfigurationError(
            f"The template cannot be filled ({exc}): name each field, e.g. {{title}}; write "
            "{{ and }} for literal braces."
        ) from None


def template_hash(text: str) -> str:
    """A short, stable id of a template's text (recorded with every request rendered from it)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class PromptTemplate:
    """A prompt template and where it came from (`origin`: a bundled file's name, a path, ...)."""

    text: str
    origin: str

    def __post_init__(self) -> None:
        # Its hash, its requests and the log all need the text as UTF-8.
        check_encodable(self.text, self.origin, "Prompt template")

    @property
    def hash(self) -> str:
        return template_hash(self.text)

    @property
    def fields(self) -> list[str]:
        return template_fields(self.text)

    def render(self, values: Mapping[str, Any]) -> str:
        return render(self.text, values, what=f"the fields of {self.origin}")


def bundled_template(operation: str) -> PromptTemplate:
    """The package's template for an operation (`GENERATE_SCRIPT` -> generate_script.txt)."""
    name = f"{operation.lower()}.txt"
    path = resources.files("scriptgen_nb.projects") / "templates" / name
    if not path.is_file():
        raise ConfigurationError(f"No bundled prompt template for {operation} ({name}).")
    return PromptTemplate(path.read_text(encoding="utf-8"), f"the bundled {name}")


def load_template(operation: str, template: TemplateSource | None = None) -> PromptTemplate:
    """The template to render: the bundled one, or the user's (its text, or a file's path).

    A path object is always a file. A string holding `{` or a line break is the template text
    itself; any other string names a file, which must exist.
    """
    if template is None:
        return bundled_template(operation)
    if isinstance(template, str) and ("{" in template or "\n" in template):
        return PromptTemplate(template, "your template")
    path = Path(template)
    if not path.is_file():
        raise ConfigurationError(
            f"template={str(template)!r}: no such file. Pass the template's text (with "
            "{fields}) or the path of a text file holding it."
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigurationError(
            f"The template file {str(path)!r} is not UTF-8 text (byte {exc.start} is "
            f"{exc.object[exc.start : exc.start + 1]!r}): save it as UTF-8."
        ) from None
    except OSError as exc:
        raise ConfigurationError(
            f"The template file {str(path)!r} cannot be read: {exc.strerror}."
        ) from None
    return PromptTemplate(text, str(path))
