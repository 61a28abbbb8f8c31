"""Schema-conforming JSON: a deterministic value for a `responseJsonSchema` or `responseSchema`.

Owns `conforming_value`, which walks either dialect the SDK sends: JSON Schema as Pydantic's
`model_json_schema()` writes it (`$defs`/`$ref`, `anyOf`, `allOf`, `enum`, `const`, `type`
lists with "null", `items`/`prefixItems`, `required`, `minItems`/`maxItems`,
`minimum`/`maximum`, `additionalProperties`) and the OpenAPI-style Schema the SDK derives from a
Pydantic class (upper-case `"OBJECT"`, `nullable`, `property_ordering`, snake_case `min_items`).
Strings come from the prose phrasebook, chosen by property name. Imports nothing from the engine.
"""

from __future__ import annotations

import math
import random
import re
import uuid
from collections.abc import Mapping
from typing import Any

from .casing import either_case
from .content import arc_title, heading_phrase, name_phrase, sentence, short_phrase, title_phrase

__all__ = ["SchemaError", "conforming_value"]

# Self-referencing models (trees, linked scenes) would otherwise recurse without end.
_MAX_DEPTH = 8
# Past this even required, non-nullable fields are nested too deep to ever end.
_GIVE_UP_DEPTH = 4 * _MAX_DEPTH
_P_NULL = 0.2
_P_OPTIONAL = 0.8


class SchemaError(ValueError):
    """The schema cannot be satisfied or is malformed (e.g. an unresolvable `$ref`)."""


def _types(schema: Mapping[str, Any]) -> list[str]:
    declared = schema.get("type")
    if declared is None:
        return []
    listed = declared if isinstance(declared, list) else [declared]
    return [str(t).lower() for t in listed if str(t).upper() != "TYPE_UNSPECIFIED"]


def conforming_value(schema: Mapping[str, Any], r: random.Random, words: list[str]) -> Any:
    """A JSON-compatible value that validates against `schema` (JSON Schema or OpenAPI style)."""
    return _Walker(schema, r, words).value(schema, name="", depth=0, position=None, root=True)


class _Walker:
    def __init__(self, root: Mapping[str, Any], r: random.Random, words: list[str]) -> None:
        self.root = root
        self.r = r
        self.words = words

    def resolve(self, schema: Mapping[str, Any], seen: tuple[str, ...] = ()) -> Mapping[str, Any]:
        ref = schema.get("$ref")
        if not isinstance(ref, str):
            return schema
        if not ref.startswith("#/"):
            raise SchemaError(f"only local $ref values are supported, got {ref!r}")
        if ref in seen:
            raise SchemaError(f"$ref cycle without an object in between: {ref!r}")
        target: Any = self.root
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, Mapping) or part not in target:
                raise SchemaError(f"unresolvable $ref {ref!r}")
            target = target[part]
        if not isinstance(target, Mapping):
            raise SchemaError(f"$ref {ref!r} does not point at a schema")
        siblings = {k: v for k, v in schema.items() if k != "$ref"}
        return self.resolve({**target, **siblings}, (*seen, ref))

    def merge_all_of(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        parts = either_case(schema, "allOf")
        if not parts:
            return schema
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k not in ("allOf", "all_of")}
        properties: dict[str, Any] = dict(merged.get("properties") or {})
        required: list[str] = list(merged.get("required") or [])
        for part in parts:
            sub = self.merge_all_of(self.resolve(part))
            properties.update(sub.get("properties") or {})
            required.extend(sub.get("required") or [])
            for key, value in sub.items():
                merged.setdefault(key, value)
        if properties:
            merged["properties"] = properties
        if required:
            merged["required"] = list(dict.fromkeys(required))
        return merged

    def value(
        self, schema: Any, *, name: str, depth: int, position: int | None, root: bool = False
    ) -> Any:
        """A value for `schema`; `position` is the index of the list item it is in (None:
        in none), so numbers can count items and titles follow the list's arc."""
        if not isinstance(schema, Mapping):
            if schema is False:
                raise SchemaError(f"property {name!r} has the schema `false`: no value is valid")
            return self.string({}, name, position)
        if depth > _GIVE_UP_DEPTH:
            raise SchemaError(f"{name or 'the response'}: the schema nests without end")
        schema = self.merge_all_of(self.resolve(schema))
        if "const" in schema:
            return schema["const"]
        options = either_case(schema, "anyOf") or either_case(schema, "oneOf")
        types = _types(schema)
        nullable = bool(schema.get("nullable")) or "null" in types
        if options:
            resolved = [self.merge_all_of(self.resolve(o)) for o in options]
            non_null = [o for o in resolved if _types(o) != ["null"]]
            nullable = nullable or len(non_null) < len(resolved)
            if not non_null or (nullable and self.null_now(depth, root)):
                return None
            chosen = dict(self.r.choice(non_null))
            return self.value(chosen, name=name, depth=depth + 1, position=position)
        if nullable and self.null_now(depth, root):
            return None
        enum = schema.get("enum")
        if enum:
            choices = [e for e in enum if e is not None] or list(enum)
            return self.r.choice(choices)
        kind = next((t for t in types if t != "null"), None)
        if kind is None:
            if "properties" in schema or "additionalProperties" in schema:
                kind = "object"
            elif "items" in schema or "prefixItems" in schema:
                kind = "array"
            elif types == ["null"]:
                return None
            else:
                kind = "string"
        if kind == "object":
            return self.object(schema, depth, position)
        if kind == "array":
            return self.array(schema, name, depth)
        if kind == "integer":
            return self.integer(schema, name, position)
        if kind == "number":
            return self.number(schema, name)
        if kind == "boolean":
            return self.r.random() < 0.5
        if kind == "string":
            return self.string(schema, name, position)
        raise SchemaError(f"unsupported schema type {kind!r} for {name or 'the response'!r}")

    def null_now(self, depth: int, root: bool) -> bool:
        if root:
            return False
        return depth >= _MAX_DEPTH or self.r.random() < _P_NULL

    def object(self, schema: Mapping[str, Any], depth: int, position: int | None) -> dict[str, Any]:
        # `position` is the object's index in its array, so a `number` field can count scenes.
        properties: Mapping[str, Any] = schema.get("properties") or {}
        required = set(schema.get("required") or [])
        ordering = [p for p in (either_case(schema, "propertyOrdering") or []) if p in properties]
        names = ordering + [p for p in properties if p not in ordering]
        out: dict[str, Any] = {}
        for prop in names:
            optional = prop not in required
            if optional and (depth >= _MAX_DEPTH or self.r.random() >= _P_OPTIONAL):
                continue
            out[prop] = self.value(properties[prop], name=prop, depth=depth + 1, position=position)
        extra = either_case(schema, "additionalProperties")
        if not properties and isinstance(extra, Mapping) and depth < _MAX_DEPTH:
            for i in range(self.r.randint(1, 3)):
                key = f"{self.r.choice(self.words)}_{i + 1}"
                out[key] = self.value(extra, name=key, depth=depth + 1, position=i)
        return out

    def array(self, schema: Mapping[str, Any], name: str, depth: int) -> list[Any]:
        low = int(either_case(schema, "minItems") or 0)
        high_raw = either_case(schema, "maxItems")
        prefix = either_case(schema, "prefixItems")
        if isinstance(prefix, list):
            return [
                self.value(item, name=name, depth=depth + 1, position=i)
                for i, item in enumerate(prefix)
            ]
        if depth >= _MAX_DEPTH:
            count = low
        else:
            high = int(high_raw) if high_raw is not None else max(low, 4)
            if high < low:
                raise SchemaError(f"{name or 'array'}: maxItems {high} is below minItems {low}")
            count = self.r.randint(min(max(low, 1), high), high)
        items = schema.get("items") or {}
        unique = bool(either_case(schema, "uniqueItems"))
        out: list[Any] = []
        tries = 0
        while len(out) < count:
            item = self.value(items, name=name, depth=depth + 1, position=len(out))
            tries += 1
            if unique and item in out:
                if tries > 20 * count:
                    if len(out) >= low:
                        break
                    raise SchemaError(f"{name or 'array'}: cannot draw {low} unique items")
                continue
            out.append(item)
        return out

    def bounds(self, schema: Mapping[str, Any]) -> tuple[float | None, float | None, bool, bool]:
        """(low, high, low_exclusive, high_exclusive) from either dialect's keywords."""
        low = either_case(schema, "minimum")
        high = either_case(schema, "maximum")
        ex_low = either_case(schema, "exclusiveMinimum")
        ex_high = either_case(schema, "exclusiveMaximum")
        low_excl = high_excl = False
        # Draft 2020 (Pydantic) gives numbers; OpenAPI 3.0 gives booleans next to min/max.
        if isinstance(ex_low, bool):
            low_excl = ex_low
        elif isinstance(ex_low, int | float):
            low, low_excl = ex_low, True
        if isinstance(ex_high, bool):
            high_excl = ex_high
        elif isinstance(ex_high, int | float):
            high, high_excl = ex_high, True
        return low, high, low_excl, high_excl

    def integer(self, schema: Mapping[str, Any], name: str, position: int | None) -> int:
        low_raw, high_raw, low_excl, high_excl = self.bounds(schema)
        low = (
            None if low_raw is None else math.floor(low_raw) + 1 if low_excl else math.ceil(low_raw)
        )
        high = (
            None
            if high_raw is None
            else math.ceil(high_raw) - 1
            if high_excl
            else math.floor(high_raw)
        )
        lowered = name.lower()
        if re.search(r"number|index|order|position|step|rank|episode|chapter|scene", lowered):
            preferred = (position or 0) + 1
        elif "year" in lowered:
            preferred = self.r.randint(2018, 2026)
        elif re.search(r"second|duration|length|minute", lowered):
            preferred = self.r.randint(5, 180)
        else:
            preferred = self.r.randint(1, 100)
        if low is not None and high is not None and low > high:
            raise SchemaError(f"{name or 'integer'}: no integer between {low_raw} and {high_raw}")
        if (low is None or preferred >= low) and (high is None or preferred <= high):
            value = preferred
        else:
            lo = low if low is not None else (high - 100 if high is not None else 1)
            hi = high if high is not None else lo + 100
            value = self.r.randint(lo, hi)
        multiple = either_case(schema, "multipleOf")
        if isinstance(multiple, int) and multiple > 0 and value % multiple:
            value = self.multiple_within(value, multiple, low, high, name)
        return value

    @staticmethod
    def multiple_within(
        value: int, multiple: int, low: int | None, high: int | None, name: str
    ) -> int:
        up = value + (multiple - value % multiple)
        down = value - value % multiple
        for candidate in (up, down):
            if (low is None or candidate >= low) and (high is None or candidate <= high):
                return candidate
        raise SchemaError(f"{name or 'integer'}: no multiple of {multiple} within the bounds")

    def number(self, schema: Mapping[str, Any], name: str) -> float:
        low, high, low_excl, high_excl = self.bounds(schema)
        lowered = name.lower()
        if low is None and high is None:
            if re.search(r"confidence|probability|ratio|share|fraction", lowered):
                low, high = 0.0, 1.0
            elif re.search(r"rating|score|stars", lowered):
                low, high = 1.0, 5.0
        lo = float(low) if low is not None else (float(high) - 100.0 if high is not None else 0.0)
        hi = float(high) if high is not None else lo + 100.0
        if lo > hi or (lo == hi and (low_excl or high_excl)):
            raise SchemaError(f"{name or 'number'}: no number between {low} and {high}")
        if lo == hi:
            return lo
        value = round(self.r.uniform(lo, hi), 2)
        # Rounding may land on an excluded or outside bound; the midpoint is always inside.
        if value < lo or value > hi or (low_excl and value == lo) or (high_excl and value == hi):
            value = (lo + hi) / 2
        return value

    def string(self, schema: Mapping[str, Any], name: str, position: int | None) -> str:
        fmt = str(schema.get("format") or "").lower()
        lowered = name.lower()
        r = self.r
        day = f"2026-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}"
        clock = f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:00"
        if fmt == "date-time":
            text = f"{day}T{clock}Z"
        elif fmt == "date":
            text = day
        elif fmt == "time":
            text = clock
        elif fmt == "duration":
            text = f"PT{r.randint(5, 600)}S"
        elif fmt == "uuid":
            text = str(uuid.UUID(int=r.getrandbits(128), version=4))
        elif fmt == "email" or "email" in lowered:
            text = f"{r.choice(self.words)}@example.com"
        elif fmt in ("uri", "url") or lowered.endswith("url") or lowered.endswith("uri"):
            text = f"https://example.com/{r.choice(self.words)}/{r.randint(1, 999)}"
        elif re.search(r"(^|_)(id|slug|key)$", lowered):
            text = f"{r.choice(self.words)}-{r.randint(1, 9999)}"
        elif re.search(r"title|headline", lowered):
            if position is None:
                text = title_phrase(r, self.words)
            else:  # one of a list's titles: an outline's chapters follow one arc
                text = arc_title(position, self.words)
        elif re.search(r"heading|label|caption", lowered):
            text = heading_phrase(r, self.words)
        elif re.search(r"(^|_)name$|character|author|speaker|narrator", lowered):
            text = name_phrase(r)
        elif re.search(
            r"narration|description|summary|text|content|script|prompt|body|dialogue"
            r"|voice|logline|premise|synopsis|hook|intro|outro|line|sentence|paragraph|reason",
            lowered,
        ):
            text = " ".join(sentence(r, self.words) for _ in range(r.randint(1, 3)))
        else:
            text = short_phrase(r, self.words)
        min_length = int(either_case(schema, "minLength") or 0)
        while len(text) < min_length:
            text = f"{text} {sentence(r, self.words)}"
        max_length = either_case(schema, "maxLength")
        if max_length is not None:
            text = text[: int(max_length)]
        return text
