"""A fake model for the chapter workflow: valid JSON for each operation, made from the request.

Its answers depend only on the request id (and the sampling seed, which a regeneration sets, so
a new take reads differently), which keeps exported files exact; the ids in `fail` get a 400.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

import scriptgen_nb as sg
from scriptgen_nb.engine.backend import FakeBackend
from scriptgen_nb.engine.errors import BackendError
from scriptgen_nb.engine.values import GenerationRequest, Reply, Usage
from scriptgen_nb.engine.verdict import json_schema_of

LADDER = [sg.ModelSpec("fake-model", priority=1, input_usd_per_1m=1.0, output_usd_per_1m=2.0)]


def fake(fail: Collection[str] = (), latency_s: float = 0.0) -> FakeBackend:
    return FakeBackend(default=Writer(fail), latency_s=latency_s)


class Writer:
    def __init__(self, fail: Collection[str] = ()) -> None:
        self.fail = set(fail)

    def __call__(self, request: GenerationRequest, model: str) -> Reply:
        if request.id in self.fail:
            raise BackendError("invalid_request", f"cannot write {request.id}", 400)
        if request.operation == "GENERATE_OUTLINE":
            data = outline(sized(request, "chapters"))
        elif request.operation == "GENERATE_IMAGE_PROMPTS":
            data = image_prompts(request.id, sized(request, "prompts"))
        else:
            data = script(request.id, request.seed)
        return Reply(json.dumps(data), "STOP", Usage(20, 40))


def sized(request: GenerationRequest, list_field: str) -> int:
    return int(json_schema_of(request.schema)["properties"][list_field]["minItems"])


def outline(count: int) -> dict[str, Any]:
    return {"chapters": [{"title": f"Part {i}", "summary": f"Part {i}."} for i in range(count)]}


def image_prompts(rid: str, count: int) -> dict[str, Any]:
    frames = [
        {
            "prompt": f"Frame {i} of {rid}",
            "style": "watercolour",
            "aspect_ratio": "16:9",
            "negative_prompt": "text",
        }
        for i in range(1, count + 1)
    ]
    return {"prompts": frames}


def script(rid: str, seed: int | None) -> dict[str, Any]:
    scenes = [
        {
            "heading": f"{part} of {rid}",
            "narration": f"Narration {n} of {rid}.",
            "visual_description": f"Picture {n} of {rid}.",
        }
        for part, n in (("Opening", "one"), ("Ending", "two"))
    ]
    take = "" if seed is None else f", take {seed}"
    return {
        "title": f"Script of {rid}{take}",
        "scenes": scenes,
        "estimated_duration_s": 60,  # a model's guesses about its own text, both wrong: the
        "word_count": 120,  # exports count the narration (8 words, about 3 s)
    }
