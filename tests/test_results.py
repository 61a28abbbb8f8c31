"""Results beside their inputs: the DataFrame's columns, cached rows, expanded data.

The layout is checked on hand-made results (fast); the paths that bring a request's input back
(a fresh call, an answer served from the call log, a failed request rebuilt from the log and
run again) with the real SDK against the emulator and a real DuckDB file.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from pydantic import BaseModel

import scriptgen_nb as sg
from scriptgen_nb.emulator import Emulator, EmulatorConfig, FaultConfig, ModelConfig
from scriptgen_nb.engine.values import Failure, Result, Usage
from scriptgen_nb.results import RESULT_COLUMNS, ResultList

KEY = "test-key"


class Title(BaseModel):
    title: str
    model: str  # named like a result column


def answered(index: int, row: dict[str, Any] | None = None, **fields: Any) -> Result:
    metadata = {"template_hash": "t1"} | ({"row": row} if row is not None else {})
    given: dict[str, Any] = {
        "id": f"r{index}",
        "index": index,
        "success": True,
        "text": "an answer",
        "model": "m",
        "attempts": 1,
        "usage": Usage(input=3, output=5),
        "metadata": metadata,
    }
    return Result(**(given | fields))


def test_the_inputs_columns_come_first_and_one_named_like_a_result_column_is_input_name() -> None:
    rows = [
        {"id": 7, "topic": "tides", "audience": "children", "text": "the row's own text"},
        {"id": 8, "topic": "moss", "audience": "sailors", "text": "another", "input_text": "x"},
    ]
    frame = ResultList([answered(0, rows[0]), answered(1, rows[1])]).to_dataframe()
    assert list(frame.columns) == [
        "input_id",
        "topic",
        "audience",
        "input_input_text",  # `input_text` was the input's own: the renamed `text` went further
        "input_text",
        *RESULT_COLUMNS,
    ]
    assert frame["topic"].tolist() == ["tides", "moss"]
    assert frame["input_id"].tolist() == [7, 8] and frame["id"].tolist() == ["r0", "r1"]
    assert frame["input_input_text"].tolist() == ["the row's own text", "another"]
    assert frame["input_text"].tolist()[1] == "x" and frame["text"].tolist() == ["an answer"] * 2
    # The row has columns of its own: `metadata` keeps the rest, and is no longer dropped.
    assert frame["metadata"].tolist() == [{"template_hash": "t1"}] * 2


def test_a_result_made_from_a_prompt_alone_has_no_input_columns() -> None:
    frame = ResultList([answered(0)]).to_dataframe()
    assert list(frame.columns) == RESULT_COLUMNS
    assert frame[["cached", "metadata"]].to_dict("records") == [
        {"cached": False, "metadata": {"template_hash": "t1"}}
    ]


def test_a_cached_row_says_so_and_its_figures_are_this_runs() -> None:
    served = answered(0, {"topic": "tides"}, attempts=0, usage=Usage(), cached=True)
    sent = answered(1, {"topic": "moss"}, cost_usd=0.002, latency_ms=812.0)
    frame = ResultList([served, sent]).to_dataframe()
    assert frame["cached"].tolist() == [True, False]
    cached = frame.iloc[0]
    assert cached["attempts"] == 0 and cached["cost_usd"] == 0.0
    assert cached["output_tokens"] == 0 and math.isnan(cached["latency_ms"])
    assert frame.iloc[1]["latency_ms"] == 812.0


def test_expand_data_spreads_the_fields_and_renames_those_named_like_other_columns() -> None:
    results = ResultList(
        [
            answered(0, {"title": "row title"}, data=Title(title="Tides", model="gpt")),
            answered(1, {"title": "row title 2"}, data={"title": "Moss", "model": "m2"}),
            answered(
                2,
                {"title": "failed"},
                success=False,
                text=None,
                error=Failure("truncated", "cut short"),
            ),
        ]
    )
    plain = results.to_dataframe()
    assert plain["data"].tolist()[:2] == [
        {"title": "Tides", "model": "gpt"},
        {"title": "Moss", "model": "m2"},
    ]
    frame = results.to_dataframe(expand_data=True)
    assert "data" not in frame.columns
    at = list(frame.columns).index("text")
    assert list(frame.columns)[at + 1 : at + 3] == ["data_title", "data_model"]
    assert frame["title"].tolist() == ["row title", "row title 2", "failed"]
    assert frame["data_title"].tolist()[:2] == ["Tides", "Moss"] and frame["data_title"].isna()[2]
    assert frame["data_model"].tolist()[:2] == ["gpt", "m2"] and frame["model"].tolist()[0] == "m"


def test_expand_data_keeps_answers_that_are_not_objects_in_data() -> None:
    results = ResultList([answered(0, data={"a": 1}), answered(1, data=["x", "y"])])
    frame = results.to_dataframe(expand_data=True)
    assert frame["a"].tolist()[0] == 1 and frame["data"].tolist() == [None, ["x", "y"]]


def test_inputs_come_back_from_the_service_the_call_log_and_a_rebuilt_retry(
    tmp_path: Path,
) -> None:
    """Fresh answers, answers served from the log and failures rebuilt from it and run again
    all come back with their input rows (the row travels in the request's metadata)."""
    config = EmulatorConfig(
        seed=1,
        api_keys=(KEY,),
        latency_scale=0.0,
        models={"good": ModelConfig(), "blocky": ModelConfig(faults=FaultConfig(p_block=1.0))},
    )
    db = tmp_path / "log.duckdb"
    rows = [{"topic": "tides", "text": "row text"}, {"topic": "moss", "text": "more"}]
    prompts = [{"prompt": f"Write about {row['topic']}", "metadata": {"row": row}} for row in rows]

    def ladder(name: str) -> list[sg.ModelSpec]:
        return [sg.ModelSpec(name, priority=1, input_usd_per_1m=0.3, output_usd_per_1m=2.5)]

    with Emulator(config) as emu:
        where: dict[str, Any] = {"base_url": emu.base_url, "api_key": KEY, "db": db}
        fresh = sg.batch_generate(prompts, models=ladder("good"), **where).to_dataframe()
        again = sg.batch_generate(prompts, models=ladder("good"), **where).to_dataframe()
        blocked = sg.batch_generate(prompts, models=ladder("blocky"), **where)
        log = sg.CallStore(db)
        batch_id = log.batches()["batch_id"].iloc[0]
        retried = sg.batch_generate(log.failed_requests(batch_id), models=ladder("good"), **where)
    for frame in (fresh, again, retried.to_dataframe()):
        assert frame["topic"].tolist() == ["tides", "moss"]
        assert frame["input_text"].tolist() == ["row text", "more"]
        assert frame["success"].all()
    assert not fresh["cached"].any() and again["cached"].all()
    assert again["attempts"].tolist() == [0, 0] and again["cost_usd"].tolist() == [0.0, 0.0]
    assert not any(r.success for r in blocked)
