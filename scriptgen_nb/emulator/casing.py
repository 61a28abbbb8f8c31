"""Reading proto3 JSON field names in either spelling (camelCase or snake_case).

The SDK sends most fields in camelCase but some nested ones in snake_case (`thinking_budget`,
`property_ordering`), and proto3 JSON parsers accept both, so the emulator does too. Imports
nothing from the engine.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any


@functools.cache
def snake(camel: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", camel).lower()


def either_case(obj: Mapping[str, Any], camel: str) -> Any:
    """`obj[camel]`, else `obj[snake(camel)]`, else None."""
    if camel in obj:
        return obj[camel]
    return obj.get(snake(camel))
