"""Turning a `%%scriptgen batch` cell into prompts: literal lines, `---` blocks, or a template.

A cell without `--over` holds prompts, one per line, or blocks separated by lines of `---`
(so a prompt may span lines). They are taken literally unless `--vars` asks to fill `{name}`
from the user's namespace. With `--over VAR` the cell is one template rendered per row of a
DataFrame or list of dicts with `{column}`; `{{` and `}}` stand for literal braces. Errors name
what is missing and what is available. Pure functions: no IPython, no widgets.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from typing import Any

from ..engine.errors import ConfigurationError
from ..projects.prompts import PromptTemplate, render
from ..results import INPUT_KEY

_SEPARATOR = re.compile(r"^\s*---+\s*$", re.MULTILINE)


def literal_prompts(cell: str) -> list[str]:
    """The prompts a cell holds: `---`-separated blocks if any, else one per non-empty line."""
    if _SEPARATOR.search(cell):
        prompts = [block.strip() for block in _SEPARATOR.split(cell)]
    else:
        prompts = [line.strip() for line in cell.splitlines()]
    prompts = [p for p in prompts if p]
    if not prompts:
        raise ConfigurationError(
            "The cell holds no prompt: write one per line, or blocks separated by `---` lines."
        )
    return prompts


def fill_names(prompts: list[str], variables: Mapping[str, Any]) -> list[str]:
    """`--vars`: fill `{name}` in each prompt from the user's variables (`user_variables`)."""
    return [render(p, variables, what="your variables") for p in prompts]


def user_variables(namespace: Mapping[str, Any], hidden: Mapping[str, Any]) -> dict[str, Any]:
    """The user's own variables in a shell's namespace, as `%who` shows them: not IPython's
    (`hidden`: In, Out, exit, ...), no `_` names (`_`, `_10`, `_i3`), no modules, functions or
    classes (`pd`, `print`, a Pydantic model), so an error lists what a prompt could use."""
    return {
        name: value
        for name, value in namespace.items()
        if not name.startswith("_")
        and not (name in hidden and hidden[name] is value)
        and not (inspect.ismodule(value) or inspect.isroutine(value) or inspect.isclass(value))
    }


def rows_of(table: Any) -> list[dict[str, Any]]:
    """The rows of `--over VAR`: a pandas DataFrame or a list of dicts."""
    if hasattr(table, "to_dict") and hasattr(table, "columns"):
        records: list[dict[str, Any]] = table.to_dict("records")
        return records
    if isinstance(table, list | tuple) and all(isinstance(r, Mapping) for r in table):
        return [dict(r) for r in table]
    raise ConfigurationError(
        f"--over needs a DataFrame or a list of dicts, not {type(table).__name__}."
    )


def templated_prompts(template: str, table: Any, name: str = "the table") -> list[dict[str, Any]]:
    """`--over`: one prompt per row of `table` (the variable `name`), as `{id, prompt,
    metadata}` items.

    The id is the row's `id` column when it has one, else its position; the row itself (the
    request's input: its columns lead the results' DataFrame) and the template's hash go into
    the metadata, so results and the log lead back to both.
    """
    template = template.strip()
    if not template:
        raise ConfigurationError("The cell is empty: with --over, it holds the prompt template.")
    digest = PromptTemplate(template, f"the template over {name}").hash  # checked as it is made
    rows = rows_of(table)
    if not rows:
        raise ConfigurationError("--over names an empty table: there is nothing to generate.")
    framed = hasattr(table, "columns")  # every row has the frame's columns; dicts may differ
    items = []
    for position, row in enumerate(rows):
        what = f"the columns of {name}" if framed else f"the keys of row {position} of {name}"
        values = {str(k): v for k, v in row.items()}
        items.append(
            {
                # The row's own id as it is: create_batch_requests takes strings and integers
                # and refuses the rest (a float id is usually a missing value, NaN).
                "id": values.get("id", position),
                "prompt": render(template, values, what=what),
                "metadata": {INPUT_KEY: values, "template_hash": digest},
            }
        )
    return items
