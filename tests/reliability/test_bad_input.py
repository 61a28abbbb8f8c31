"""Bad input on every entry path: a clear error naming the problem, nothing sent, nothing written.

Each case of `API_CASES` is tried through every Python entry (create_batch_requests with
batch_generate, iter_generate, abatch_generate and aiter_generate, and requests built by hand);
`MAGIC_CASES` through `%%scriptgen batch` in an in-process IPython shell against the session's
emulator; `PROJECT_CASES` through the project workflow; `CLI_CASES` through the `scriptgen`
command in a subprocess. Every one asserts the error and its message, that the backend (or the
emulator) saw no call, and that the call log holds no row. What is data rather than misuse (a
prompt over the model's input limit) ends as a result, also checked here. Property-based tests
(hypothesis) then throw random request lists and catalogue values at the same code.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from IPython.core.error import UsageError
from pydantic import BaseModel

import scriptgen_nb as sg
from scriptgen_nb.emulator import Emulator, EmulatorConfig, ModelConfig
from scriptgen_nb.engine.backend import FakeBackend
from scriptgen_nb.engine.errors import (
    BackendError,
    ConfigurationError,
    InvalidApiKeyError,
    MissingApiKeyError,
    UnknownModelError,
)
from scriptgen_nb.engine.models import ModelCatalogue
from scriptgen_nb.engine.policy import Backoff, RetryPolicy, plan_concurrency
from scriptgen_nb.engine.runner import EngineConfig
from scriptgen_nb.engine.values import GenerationRequest, Usage
from scriptgen_nb.jupyter import cells
from scriptgen_nb.jupyter.endpoint import SESSION
from scriptgen_nb.store import Database, StoreError
from scriptgen_nb.store.session import LOOKAHEAD
from scriptgen_nb.wiring import BatchOptions
from tests.script_writer import fake

LADDER = [sg.ModelSpec("fake-model", priority=1, input_usd_per_1m=1.0, output_usd_per_1m=2.0)]
EMULATED = "gemini-3.5-flash-lite"  # served by the magic's emulator and in the default catalogue
LOG_TABLES = ("batch_log", "request", "ai_api_call", "result")
NO_BACKOFF = Backoff(0.0, 1.0, 0.0)


class Caption(BaseModel):
    caption: str


class NotAModel:
    pass


def log_rows(path: Path) -> int:
    """Rows in the call log's tables (0 when the file was never created)."""
    if not path.exists():
        return 0
    with duckdb.connect(str(path), read_only=True) as con:
        tables = {
            row[0] for row in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()
        }
        return sum(
            con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # type: ignore[index]
            for table in LOG_TABLES
            if table in tables
        )


# --- the Python API ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """Bad input for the Python API: prompts and request settings, or batch options."""

    name: str
    match: str  # a regex the message must match: it names the problem
    prompts: Any = ("Write about tides.", "Write about moss.")
    settings: Mapping[str, Any] = field(default_factory=dict)  # create_batch_requests(**)
    options: Mapping[str, Any] = field(default_factory=dict)  # batch_generate(**)
    error: type[Exception] = ConfigurationError
    by_hand: str | None = ""  # the match when built as GenerationRequests ("" = same; None = n/a)


API_CASES = [
    Case("no-requests", "no requests", prompts=[]),
    Case("empty-prompt", "empty", prompts=["Write about tides.", ""]),
    Case("whitespace-prompt", "empty", prompts=[" \n\t "]),
    Case("non-string-prompt", "int", prompts=[42], by_hand="not text"),
    Case("non-string-prompt-field", "not text", prompts=[{"id": "a", "prompt": ["a", "list"]}]),
    Case("prompts-is-one-string", "single string", prompts="Write about tides.", by_hand=None),
    Case("prompts-is-none", "must be a list", prompts=None, by_hand=None),
    Case("prompts-is-one-mapping", "single dict", prompts={"prompt": "x"}, by_hand=None),
    Case(
        "duplicate-ids",
        "share the id 'a'",
        prompts=[{"id": "a", "prompt": "one"}, {"id": "a", "prompt": "two"}],
    ),
    Case(
        "duplicate-ids-int-and-string",
        "share the id '1'",
        prompts=[{"id": 1, "prompt": "one"}, {"id": "1", "prompt": "two"}],
        by_hand="non-empty string",  # by hand an int id is refused outright
    ),
    Case(
        "position-id-clash",
        "share the id '1'",
        prompts=[{"id": "1", "prompt": "one"}, "two"],
        by_hand=None,
    ),
    Case("float-id", "id 1.5", prompts=[{"id": 1.5, "prompt": "x"}], by_hand="non-empty string"),
    Case("list-id", r"id \['a'\]", prompts=[{"id": ["a"], "prompt": "x"}], by_hand="string"),
    Case("explicit-none-id", "id None", prompts=[{"id": None, "prompt": "x"}], by_hand="string"),
    Case("bool-id", "id True", prompts=[{"id": True, "prompt": "x"}], by_hand="string"),
    Case("empty-id", "id ''", prompts=[{"id": "", "prompt": "x"}], by_hand="string"),
    Case("zero-concurrency", "at least 1", options={"max_concurrency": 0}),
    Case("negative-concurrency", "at least 1", options={"max_concurrency": -4}),
    Case("absurd-concurrency", "absurd.*10,000", options={"max_concurrency": 10_001}),
    Case("fractional-concurrency", "positive integer", options={"max_concurrency": 2.5}),
    Case("word-concurrency", "'lots'", options={"max_concurrency": "lots"}),
    Case(
        "unknown-model",
        "Unknown model 'gemini-0-nowhere'.*Known models",
        options={"models": "gemini-0-nowhere"},
        error=UnknownModelError,
    ),
    Case(
        "pinned-model-outside-the-ladder",
        "pinned to model 'gemini-0-nowhere'.*add it to models=",
        settings={"model": "gemini-0-nowhere"},
    ),
    Case(
        "ladder-without-quota",
        "No quota for no-quota",
        options={"models": [sg.ModelSpec("no-quota", rpm=0)]},
    ),
    Case("empty-ladder", "models= is empty", options={"models": []}),
    Case("ladder-of-the-wrong-type", "models=42", options={"models": 42}),
    Case("schema-a-number", "schema must be a Pydantic model class", settings={"schema": 42}),
    Case("schema-a-string", "schema must be", settings={"schema": "object"}),
    Case("schema-an-instance", "pass the class itself", settings={"schema": Caption(caption="x")}),
    Case("schema-another-class", "schema must be a Pydantic", settings={"schema": NotAModel}),
    Case("schema-without-keywords", "none of the keywords", settings={"schema": {"title": "x"}}),
    Case("schema-unknown-type", "type 'objekt'", settings={"schema": {"type": "objekt"}}),
    Case(
        "schema-properties-a-list",
        "properties must be a mapping",
        settings={"schema": {"type": "object", "properties": ["a"]}},
    ),
    Case(
        "schema-not-json",
        "cannot be written as JSON",
        settings={"schema": {"type": "object", "default": object()}},
    ),
    Case("negative-budget", "budget_usd must not be negative", options={"budget_usd": -1.0}),
    Case(
        "max-output-tokens-above-the-models-limit",
        r"Request 'r?0': max_output_tokens=100000 is more than capped can give \(at most 8,192",
        settings={"max_output_tokens": 100_000},
        options={"models": [replace(LADDER[0], name="capped", output_token_limit=8192)]},
    ),
    Case("temperature-too-high", r"temperature=2\.5.*0 to 2", settings={"temperature": 2.5}),
    Case("temperature-negative", r"temperature=-0\.1", settings={"temperature": -0.1}),
    Case("temperature-nan", "temperature=nan", settings={"temperature": math.nan}),
    Case("temperature-text", "temperature='hot'", settings={"temperature": "hot"}),
    Case("top-p-above-one", r"top_p=1\.5.*0 to 1", settings={"top_p": 1.5}),
    Case("top-p-negative", r"top_p=-0\.01", settings={"top_p": -0.01}),
    Case("max-output-tokens-zero", "max_output_tokens=0", settings={"max_output_tokens": 0}),
    Case("max-output-tokens-negative", "max_output_tokens=-9", settings={"max_output_tokens": -9}),
    Case(
        "max-output-tokens-fraction", r"max_output_tokens=1\.5", settings={"max_output_tokens": 1.5}
    ),
    Case("top-k-zero", "top_k=0", settings={"top_k": 0}),
    Case("seed-text", "seed='abc'", settings={"seed": "abc"}),
    Case("seed-beyond-int32", "seed=1099511627776", settings={"seed": 2**40}),
    Case("thinking-budget-below-minus-one", "thinking_budget=-2", settings={"thinking_budget": -2}),
    Case("thinking-level-unknown", "thinking_level='deep'", settings={"thinking_level": "deep"}),
    Case("thinking-level-a-number", "thinking_level=3", settings={"thinking_level": 3}),
    Case(
        "thinking-level-and-budget",
        "cannot be set together",
        settings={"thinking_level": "low", "thinking_budget": 1024},
    ),
    Case("stop-sequences-one-string", "one string", settings={"stop_sequences": "END"}),
    Case(
        "too-many-stop-sequences",
        "at most 5",
        settings={"stop_sequences": ["a", "b", "c", "d", "e", "f"]},
    ),
    Case(
        "safety-setting-malformed",
        "safety setting",
        settings={"safety_settings": [{"category": "HARM_CATEGORY_HARASSMENT"}]},
    ),
    Case(
        "safety-category-unknown",
        "Unknown safety category 'HARM_CATEGORY_NOPE'",
        settings={
            "safety_settings": [{"category": "HARM_CATEGORY_NOPE", "threshold": "BLOCK_NONE"}]
        },
    ),
    Case("system-not-text", "system must be", settings={"system": 5}),
    Case("system-empty", "system must be a non-empty string", settings={"system": " "}),
    Case("operation-empty", "operation must be a non-empty name", settings={"operation": ""}),
    Case("metadata-not-a-mapping", "metadata must be a mapping", settings={"metadata": [1]}),
    Case(
        "unknown-request-setting",
        r"Unknown request settings \['temprature'\]",
        settings={"temprature": 0.2},
        by_hand=None,
    ),
    # Lone surrogates (text decoded with errors="surrogateescape", JSON's unpaired "\ud800"):
    # UTF-8 cannot encode them, so hashing, logging or sending such a request used to crash
    # the batch; they are refused, naming the request, its position, the field and the place.
    Case(
        "lone-surrogate-in-a-prompt",
        r"Prompt #1: Request '1': prompt holds a lone surrogate \(U\+D800\) at character 7",
        prompts=["Write about tides.", "Write \ud800 about moss."],
        by_hand=r"Request 'r1': prompt holds a lone surrogate \(U\+D800\) at character 7",
    ),
    Case(
        "lone-surrogate-in-an-id",
        r"Request 'a\\udcff': id holds a lone surrogate \(U\+DCFF\)",
        prompts=[{"id": "a\udcff", "prompt": "Write about tides."}],
    ),
    Case(
        "lone-surrogate-in-the-system-instruction",
        "system holds a lone surrogate",
        settings={"system": "Be \udcff brief."},
    ),
    Case(
        "lone-surrogate-in-metadata",
        r"metadata\['title'\] holds a lone surrogate",
        settings={"metadata": {"title": "Tides \ud83d"}},
    ),
    Case(
        "lone-surrogate-in-a-stop-sequence",
        r"stop_sequences\[1\] holds a lone surrogate",
        settings={"stop_sequences": ["END", "\udfff"]},
    ),
    Case(
        "lone-surrogate-in-the-schema",
        r"schema: the schema\['description'\] holds a lone surrogate",
        settings={"schema": {"type": "object", "description": "A \ud800 caption"}},
    ),
    Case("timeout-zero", "timeout_s must be positive", options={"timeout_s": 0}),
    Case("max-attempts-zero", "max_attempts must be at least 1", options={"max_attempts": 0}),
    Case("routing-unknown", "routing='fast'", options={"routing": "fast"}),
    Case("cache-mode-unknown", "cache='yes'", options={"cache": "yes"}),
    Case("progress-unknown", "progress='fancy'", options={"progress": "fancy"}),
    Case("chunk-size-zero", "chunk_size must be at least 1", options={"chunk_size": 0}),
    Case("log-path-a-number", "must be a file path", options={"db": 123}),
    Case("log-path-true", "must be a file path", options={"db": True}),
    Case("log-path-empty", "must be a file path", options={"db": " "}),
]


def _drain(results: Any) -> list[Any]:
    async def collect() -> list[Any]:
        return [r async for r in results]

    return asyncio.run(collect())


def _by_hand(case: Case) -> list[Any]:
    """The case's prompts as hand-built GenerationRequests (as a script might make them)."""
    built = []
    for i, prompt in enumerate(case.prompts):
        item = prompt if isinstance(prompt, Mapping) else {"prompt": prompt}
        fields = {"id": f"r{i}", **item, **case.settings}
        built.append(GenerationRequest(**fields))
    return built


ENTRIES: dict[str, Callable[[Callable[[], Any], dict[str, Any]], Any]] = {
    "batch_generate": lambda make, options: sg.batch_generate(make(), **options),
    "iter_generate": lambda make, options: list(sg.iter_generate(make(), **options)),
    "abatch_generate": lambda make, options: asyncio.run(sg.abatch_generate(make(), **options)),
    "aiter_generate": lambda make, options: _drain(sg.aiter_generate(make(), **options)),
}


@pytest.mark.parametrize("entry", [*ENTRIES, "by_hand", "given_directly"])
@pytest.mark.parametrize("case", API_CASES, ids=[c.name for c in API_CASES])
def test_bad_input_through_the_python_api_is_refused_before_anything_is_sent(
    case: Case, entry: str, tmp_path: Path
) -> None:
    backend = FakeBackend()
    db = tmp_path / "log.duckdb"
    options = {"backend": backend, "db": db, "models": LADDER, **case.options}
    if entry == "by_hand":
        if case.by_hand is None:
            pytest.skip("this input cannot be written as a GenerationRequest")
        with pytest.raises(case.error, match=case.by_hand or case.match) as caught:
            sg.batch_generate(_by_hand(case), **options)
    elif entry == "given_directly":  # the prompts themselves, as batch_generate takes them
        if case.settings:
            pytest.skip("request settings are create_batch_requests's arguments")
        with pytest.raises(case.error, match=case.match) as caught:
            sg.batch_generate(case.prompts, **options)
    else:

        def make() -> Any:
            return sg.create_batch_requests(case.prompts, **case.settings)

        with pytest.raises(case.error, match=case.match) as caught:
            ENTRIES[entry](make, options)
    assert len(str(caught.value)) > 20  # a sentence, not a bare value
    assert backend.calls == []
    assert log_rows(db) == 0


def test_at_least_25_distinct_bad_inputs_are_covered() -> None:
    named = {c.name for c in API_CASES} | {c[0] for c in MAGIC_CASES} | {c[0] for c in CLI_CASES}
    assert len(named) >= 25


def test_plain_prompts_go_to_every_entry_as_create_batch_requests_makes_them() -> None:
    """Strings (their id is their position) and mappings, mixed with GenerationRequests, from
    a list or from a generator, which is pulled as the batch goes, never read whole first."""
    ready = GenerationRequest(id="ready", prompt="Write about fog.")
    for entry, run in ENTRIES.items():
        options = {"backend": FakeBackend(), "db": False, "models": LADDER}
        mixed = run(lambda: ["Write about tides.", {"id": "m", "prompt": "Moss."}, ready], options)
        assert sorted((r.id, r.text) for r in mixed) == [
            ("0", "[fake-model] Write about tides."),
            ("m", "[fake-model] Moss."),
            ("ready", "[fake-model] Write about fog."),
        ], entry
        streamed = run(lambda: (f"Write about item {i}." for i in range(3)), options)
        assert sorted(r.id for r in streamed) == ["0", "1", "2"], entry
    pulled = 0

    def many() -> Iterator[str]:
        nonlocal pulled
        for i in range(10_000):
            pulled += 1
            yield f"Write about item {i}."

    stream = sg.iter_generate(
        many(), backend=FakeBackend(latency_s=0.001), db=False, models=LADDER, max_concurrency=4
    )
    first = [next(stream) for _ in range(3)]
    pulled_then = pulled
    stream.close()  # type: ignore[attr-defined]
    assert [r.success for r in first] == [True] * 3
    assert pulled_then <= 4 + 1024 + 2  # in flight and the hand-off queue: never read whole


def test_a_bad_request_from_a_generator_is_refused_when_it_is_reached(tmp_path: Path) -> None:
    """A generator is checked as it is pulled (it may be endless): a bad first item stops the
    batch before anything is sent. Duplicate ids in a generator are not checked: remembering
    every id would defeat the bounded memory a generator is for."""
    backend = FakeBackend()

    def prompts() -> Iterator[Any]:
        yield {"id": "a", "prompt": "fine", "temperature": 9.0}
        yield "never reached"

    with pytest.raises(ConfigurationError, match=r"temperature=9\.0"):
        sg.batch_generate(sg.create_batch_requests(prompts()), backend=backend, db=False)
    with pytest.raises(ConfigurationError, match="Prompt #0 is a int; use a string"):
        sg.batch_generate((p for p in [42, "x"]), backend=backend, db=False)  # type: ignore[misc]
    assert backend.calls == []


def _prompts_then_one_that_cannot_be_encoded(fine: int) -> Iterator[str]:
    """`fine` prompts, then one holding a lone surrogate, then one more that must never be taken."""
    yield from (f"Write about item {i}." for i in range(fine))
    yield "Write about \ud800."
    yield "Never taken."


def test_a_request_a_generator_cannot_encode_keeps_the_results_taken_before_it(
    tmp_path: Path,
) -> None:
    """Decided (docs/reliability.md): a list is refused whole before anything is sent; from a
    generator, the refused request ends the batch's intake there, and what was taken before it
    runs to its end (calls in flight are not cut off: they are paid for), is logged, and comes
    back in `RequestRefused.results`. Nothing after it is taken."""
    fine = LOOKAHEAD + 44  # read in the call log's second lookahead, with calls in flight
    backend = FakeBackend(latency_s=0.02)
    db = tmp_path / "log.duckdb"
    requests = sg.create_batch_requests(_prompts_then_one_that_cannot_be_encoded(fine))
    with pytest.raises(sg.RequestRefused, match=f"Prompt #{fine}: .*lone surrogate") as refused:
        sg.batch_generate(requests, backend=backend, db=db, models=LADDER, max_concurrency=16)
    assert isinstance(refused.value, ConfigurationError)
    assert f"the {fine} taken before it ran to their end" in str(refused.value)
    results = refused.value.results
    assert [r.id for r in results] == [str(i) for i in range(fine)]
    assert all(r.success for r in results)  # none was cut off in flight
    assert sorted(int(rid) for _, rid in backend.calls) == list(range(fine))  # each sent once
    log = Database(db)
    assert log.rows("SELECT status, request_count FROM batch_log") == [("failed", fine)]
    assert log.rows("SELECT count(*), count(*) FILTER (WHERE success) FROM result") == [
        (fine, fine)
    ]
    # Without a call log, and streamed: what came before is handed out, then the refusal.
    streamed: list[Any] = []
    with pytest.raises(sg.RequestRefused, match=r"Prompt #3: .*were handed out"):
        requests = sg.create_batch_requests(_prompts_then_one_that_cannot_be_encoded(3))
        streamed.extend(sg.iter_generate(requests, backend=FakeBackend(), db=False, models=LADDER))
    assert sorted(r.id for r in streamed) == ["0", "1", "2"] and all(r.success for r in streamed)


def test_a_prompt_over_the_input_limit_is_a_too_large_result_and_is_never_sent(
    tmp_path: Path,
) -> None:
    """Not misuse but data (DESIGN rule 3): the limit belongs to the model, other requests of
    the batch may fit, and a ladder may hold a larger model. The request ends as `too_large`,
    unsent, logged like any result; the rest of the batch runs."""
    small = [sg.ModelSpec("small", priority=1, input_token_limit=40)]
    requests = sg.create_batch_requests(["short one", "word " * 200, "short two"])
    for entry, run in ENTRIES.items():
        backend = FakeBackend()
        db = tmp_path / f"{entry}.duckdb"
        options = {"backend": backend, "db": db, "models": small}
        results = sorted(run(lambda: requests, options), key=lambda r: r.index)
        assert [r.success for r in results] == [True, False, True]
        error = results[1].error
        assert error is not None and error.kind == "too_large" and "input" in error.message
        assert sorted(rid for _, rid in backend.calls) == ["0", "2"]
        rows = Database(db).rows("SELECT request_id, error_kind FROM result ORDER BY request_id")
        assert rows == [("0", None), ("1", "too_large"), ("2", None)]


def test_an_invalid_api_key_stops_at_the_first_call(tmp_path: Path) -> None:
    config = EmulatorConfig(
        api_keys=("the-right-key",), latency_scale=0.0, models={EMULATED: ModelConfig()}
    )
    db = tmp_path / "log.duckdb"
    requests = sg.create_batch_requests([f"prompt {i}" for i in range(20)])
    with Emulator(config) as emu:
        for run in ENTRIES.values():
            emu.reset()
            options = {
                "base_url": emu.base_url,
                "api_key": "a-wrong-key",
                "models": EMULATED,
                "max_concurrency": 1,
                "db": db,
            }
            with pytest.raises(InvalidApiKeyError, match=r"rejected the API key.*GEMINI_API_KEY"):
                run(lambda: requests, options)
            assert emu.counters()["models"][EMULATED]["requests"] == 1
    # Logged whole: each batch failed, its one attempt recorded, every request ended once.
    log = Database(db)
    assert log.rows("SELECT DISTINCT status FROM batch_log") == [("failed",)]
    assert log.rows("SELECT count(*) FROM ai_api_call") == [(4,)]
    per_batch = log.rows(
        "SELECT count(DISTINCT request_id), count(*) FROM result GROUP BY batch_id"
    )
    assert per_batch == [(20, 20)] * 4


def test_no_api_key_and_no_emulator_names_the_variable_and_the_emulator(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    db = tmp_path / "log.duckdb"
    requests = sg.create_batch_requests(["Write about tides."])
    for run in ENTRIES.values():
        with pytest.raises(MissingApiKeyError, match=r"GEMINI_API_KEY.*emulator"):
            run(lambda: requests, {"db": db, "models": EMULATED})
    assert log_rows(db) == 0


def _corrupt(path: Path) -> Path:
    path.write_bytes(b"\x00garbage, not a database\xff" * 300)
    return path


def _newer(path: Path) -> Path:
    Database(path)  # a current log ...
    with duckdb.connect(str(path)) as con:  # ... that a later version migrated further
        con.execute("INSERT INTO schema_migration VALUES (999, 'from the future', now())")
    return path


def _foreign(path: Path) -> Path:
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE result (x INTEGER)")
    return path


def _bad_logs(folder: Path, mentions: str) -> tuple[Path, Path]:
    """The corrupt and the newer log files a case names (made only when it names them)."""
    corrupt, newer = folder / "corrupt.duckdb", folder / "newer.duckdb"
    if "corrupt" in mentions:
        _corrupt(corrupt)
    if "newer" in mentions:
        _newer(newer)
    return corrupt, newer


BAD_LOGS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "corrupt": (_corrupt, "not a DuckDB database.*move it aside"),
    "newer-schema": (_newer, "newer scriptgen_nb.*version 999.*Upgrade"),
    "not-a-call-log": (_foreign, "not a scriptgen_nb call log"),
}


@pytest.mark.parametrize("kind", BAD_LOGS)
def test_a_call_log_that_cannot_be_used_is_refused_and_left_untouched(
    kind: str, tmp_path: Path
) -> None:
    make, message = BAD_LOGS[kind]
    path = make(tmp_path / "log.duckdb")
    before = path.read_bytes()
    files = sorted(tmp_path.iterdir())
    backend = FakeBackend()
    requests = sg.create_batch_requests(["Write about tides."])
    for run in ENTRIES.values():
        with pytest.raises(StoreError, match=message):
            run(lambda: requests, {"backend": backend, "db": path, "models": LADDER})
    with pytest.raises(StoreError, match=message):
        sg.CallStore(path)
    assert backend.calls == []
    assert path.read_bytes() == before
    assert sorted(tmp_path.iterdir()) == files  # no WAL or sibling left behind


DUCKDB_HEADERS = 3 * 4096  # the file's header, then two database headers; blocks follow
BLOCK_CHECKSUM = 8  # each block starts with the checksum of the rest
DAMAGED = "is damaged.*move it aside"


def _damaged(path: Path, *, spare_schema: bool, cut_short: bool = False) -> str:
    """Log a batch at `path`, then overwrite its blocks past the file's headers as a disk fault
    would; the batch's id. DuckDB's catalogue (its metadata blocks) is spared, so the file
    still opens and the damage shows when a block is read (DuckDB checks each block's checksum).
    `spare_schema` spares the schema_migration table's blocks too: opening then succeeds and
    only reading the log's rows fails. `cut_short` cuts the file off after the blocks spared
    instead (a copy or a disk that stopped half-way): the rows' blocks are not there at all."""
    requests = sg.create_batch_requests(["Write about tides."])
    sg.batch_generate(requests, backend=FakeBackend(), db=path, models=LADDER)
    with duckdb.connect(str(path), read_only=True) as con:
        batch_id = con.execute("SELECT batch_id FROM batch_log").fetchall()[0][0]
        block_size, blocks = con.execute(
            "SELECT block_size, total_blocks FROM pragma_database_size()"
        ).fetchall()[0]
        spared = "SELECT block_id FROM pragma_metadata_info()"
        if spare_schema:
            spared += " UNION SELECT block_id FROM pragma_storage_info('schema_migration')"
        whole = {row[0] for row in con.execute(spared).fetchall()}
    with path.open("r+b") as file:
        if cut_short:
            assert max(whole) + 1 < blocks  # the rows' blocks come after the spared ones
            file.truncate(DUCKDB_HEADERS + (max(whole) + 1) * block_size)
            return str(batch_id)
        for block in set(range(blocks)) - whole:
            file.seek(DUCKDB_HEADERS + block * block_size + BLOCK_CHECKSUM)
            file.write(b"\xde\xad" * 2048)
    return str(batch_id)


@pytest.mark.parametrize(
    ("spare_schema", "cut_short"),
    [(True, False), (False, False), (True, True)],
    ids=["rows", "rows-and-schema", "cut-short"],
)
def test_a_log_damaged_past_its_header_gives_a_clear_store_error_on_every_path(
    spare_schema: bool, cut_short: bool, tmp_path: Path
) -> None:
    """Before: the reports, `batch_generate` and `scriptgen run/stats/batches` raised DuckDB's
    own error ("Corrupt database file: ... checksum") with a traceback; the header case already
    said which file and what to do. Now every path says that, as a StoreError. A file cut short
    said "Reading the call log failed: IO Error: Could not read enough bytes" (and `sql` blamed
    the user's query), `scriptgen jobs` printed a traceback: now they say damaged too."""
    path = tmp_path / "log.duckdb"
    batch_id = _damaged(path, spare_schema=spare_schema, cut_short=cut_short)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Write about moss.\n")
    before = path.read_bytes()
    files = sorted(tmp_path.iterdir())
    commands = [["stats"], ["batches"], ["run", "--emulator", str(prompts)]]
    if not spare_schema:  # the jobs' own table is empty and whole: only the schema's damage shows
        commands.append(["jobs"])
    children = [
        subprocess.Popen(
            [*SCRIPTGEN, *command, "--db", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for command in commands
    ]
    try:
        reads: dict[str, Callable[[sg.CallStore], Any]] = {
            "batches": lambda log: log.batches(),
            "usage_report": lambda log: log.usage_report(),
            "results": lambda log: log.results(batch_id),
            "sql": lambda log: log.sql("SELECT * FROM result"),
        }
        for name, read in reads.items():
            for open_log in (
                lambda: sg.CallStore(path),
                lambda: sg.CallStore(path, read_only=True),
            ):
                with pytest.raises(StoreError, match=DAMAGED) as raised:
                    read(open_log())
                assert str(path) in str(raised.value) and "Writing" not in str(raised.value), name
        backend = FakeBackend()
        requests = sg.create_batch_requests(["Write about tides."])
        for run in ENTRIES.values():
            with pytest.raises(StoreError, match=DAMAGED):
                run(lambda: requests, {"backend": backend, "db": path, "models": LADDER})
        assert backend.calls == []
        for command, child in zip(commands, children, strict=True):
            out, err = child.communicate(timeout=60)
            assert child.returncode == 1, (command, err)
            assert re.search(DAMAGED, err) and str(path) in err, (command, err)
            assert "Traceback" not in out + err, command
    finally:
        for child in children:  # a failed assertion must not leave a command running
            if child.poll() is None:
                child.kill()
                child.communicate()
    assert path.read_bytes() == before
    assert sorted(tmp_path.iterdir()) == files  # no WAL or sibling left behind


UNREADABLE_CATALOGUES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "missing": (lambda d: d / "nowhere.toml", "Cannot read model catalogue"),
    "a-folder": (lambda d: d, "Cannot read model catalogue"),
    "not-utf8": (lambda d: _write(d / "c.toml", b"\xff\xfe\x00rpm"), "not UTF-8"),
    "bad-toml": (lambda d: _write(d / "c.toml", b"[models\nrpm = "), "is not valid"),
    "json-list": (lambda d: _write(d / "c.json", b"[1, 2]"), "top level must be an object"),
    "no-models": (lambda d: _write(d / "c.toml", b"as_of = '2026'"), "non-empty \\[models\\]"),
    "bad-value": (
        lambda d: _write(d / "c.toml", b"[models.m]\npriority = 1\nrpm = 'ten'"),
        "rpm must be >= 0",
    ),
}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("kind", UNREADABLE_CATALOGUES)
def test_an_unreadable_catalogue_file_is_a_configuration_error(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make, message = UNREADABLE_CATALOGUES[kind]
    path = make(tmp_path)
    with pytest.raises(ConfigurationError, match=message):
        ModelCatalogue.from_file(path)
    monkeypatch.setenv("SCRIPTGEN_CATALOGUE", str(path))
    backend = FakeBackend()
    db = tmp_path / "log.duckdb"
    requests = sg.create_batch_requests(["Write about tides."])
    for run in ENTRIES.values():
        with pytest.raises(ConfigurationError, match=message):
            run(lambda: requests, {"backend": backend, "db": db})
    assert backend.calls == [] and log_rows(db) == 0


@pytest.mark.parametrize(
    "options",
    [
        {"budget_usd": math.nan},
        {"budget_usd": "5"},
        {"timeout_s": "60"},
        {"frobnicate": 1},
        {"on_progress": 5},
        {"listeners": [5]},
        {"cancel": "yes"},
    ],
    ids=[
        "nan-budget",
        "text-budget",
        "text-timeout",
        "unknown-option",
        "on-progress-not-callable",
        "listener-not-callable",
        "cancel-not-a-token",
    ],
)
def test_bad_batch_option_values_are_configuration_errors(options: dict[str, Any]) -> None:
    backend = FakeBackend()
    with pytest.raises(ConfigurationError):
        sg.batch_generate(
            sg.create_batch_requests(["x"]), backend=backend, db=False, models=LADDER, **options
        )
    assert backend.calls == []


# Every numeric option, where it is given: (option, value, what the message must say). Each
# message names the option, the value's problem and the allowed range.
NUMERIC_OPTIONS: list[tuple[str, Any, str]] = [
    (
        "max_attempts",
        math.nan,
        r"max_attempts=nan is not a number \(NaN\): "
        r"max_attempts must be at least 1 \(a whole number of attempts\)",
    ),
    (
        "max_attempts",
        "3",
        r"max_attempts='3' is text, not a number \(pass 3 without quotes\): "
        r"max_attempts must be at least 1",
    ),
    (
        "max_attempts",
        True,
        r"max_attempts=True is True or False, not a number: max_attempts must be at least 1",
    ),
    ("max_attempts", 2.5, r"max_attempts=2\.5 is not whole: max_attempts must be at least 1"),
    ("max_attempts", math.inf, r"max_attempts=inf is infinite: max_attempts must be at least 1"),
    (
        "timeout_s",
        math.nan,
        r"timeout_s=nan is not a number \(NaN\): "
        r"timeout_s must be positive \(a number of seconds\)",
    ),
    ("timeout_s", math.inf, r"timeout_s=inf is infinite: timeout_s must be positive"),
    ("overload_patience_s", "600", r"overload_patience_s='600' is text, not a number"),
    (
        "overload_patience_s",
        -1,
        r"overload_patience_s=-1 is out of range: overload_patience_s must be positive",
    ),
    (
        "chunk_size",
        2.0,
        r"chunk_size=2\.0 is a float; pass 2: "
        r"chunk_size must be at least 1 \(a whole number\) or None",
    ),
    ("chunk_size", math.nan, r"chunk_size=nan is not a number \(NaN\)"),
    (
        "budget_usd",
        math.inf,
        r"budget_usd=inf is infinite: budget_usd must not b"
        r"e negative \(a number of US dollars\) or None",
    ),
    ("budget_usd", [5], r"budget_usd=\[5\] is a list, not a number"),
    ("max_concurrency", math.nan, r"max_concurrency=nan: use None or 'auto'"),
]


@pytest.mark.parametrize(
    ("option", "value", "message"),
    NUMERIC_OPTIONS,
    ids=[f"{o}={v!r}" for o, v, _ in NUMERIC_OPTIONS],
)
def test_every_numeric_batch_option_is_checked_where_it_is_given(
    option: str, value: Any, message: str, tmp_path: Path
) -> None:
    backend = FakeBackend()
    db = tmp_path / "log.duckdb"
    requests = sg.create_batch_requests(["Write about tides."])
    for run in ENTRIES.values():
        with pytest.raises(ConfigurationError, match=message):
            run(lambda: requests, {"backend": backend, "db": db, "models": LADDER, option: value})
    with pytest.raises(ConfigurationError, match=message):  # the wiring itself
        BatchOptions(**{option: value}).prepare(requests)
    assert backend.calls == [] and log_rows(db) == 0


# The numeric fields of the public objects that hold options: (make it, what the message says).
NUMERIC_FIELDS: list[tuple[Callable[[], object], str]] = [
    (lambda: RetryPolicy(max_attempts=math.nan), r"max_attempts=nan is not a number"),
    (
        lambda: RetryPolicy(max_quota_waits=-1),
        r"max_quota_waits=-1 is out of range: "
        r"max_quota_waits must not be negative \(a whole number\)",
    ),
    (
        lambda: RetryPolicy(max_park_s=math.nan),
        r"max_park_s=nan is not a number \(NaN\): "
        r"max_park_s must be positive \(a number of seconds\)",
    ),
    (
        lambda: RetryPolicy(default_park_s=0),
        r"default_park_s=0 is out of range: default_park_s must be positive \(a number\) or None",
    ),
    (lambda: RetryPolicy(overload_patience_s=math.inf), r"overload_patience_s=inf is infinite"),
    (
        lambda: Backoff(initial_s=math.nan),
        r"Backoff: initial_s=nan is not a number \(NaN\): "
        r"initial_s must not be negative \(a number of seconds\)",
    ),
    (
        lambda: Backoff(factor=0.5),
        r"Backoff: factor=0\.5 is out of range: factor must be at least 1 \(a number\)",
    ),
    (
        lambda: Backoff(max_s="30"),
        r"Backoff: max_s='30' is text, not a number \(pass 30 without quotes\)",
    ),
    (
        lambda: sg.BatchApiSettings(poll_factor=math.nan),
        r"BatchApiSettings: poll_factor=nan is not a number \(NaN\): "
        r"poll_factor must be at least 1",
    ),
    (
        lambda: sg.BatchApiSettings(poll_initial_s=math.inf),
        r"BatchApiSettings: poll_initial_s=inf is infinite",
    ),
    (
        lambda: sg.BatchApiSettings(timeout_s=0),
        r"BatchApiSettings: timeout_s=0 is out of range: "
        r"timeout_s must be positive \(a number of seconds\)",
    ),
    (
        lambda: sg.BatchApiSettings(turnaround_s=-5),
        r"BatchApiSettings: turnaround_s=-5 is out of range: "
        r"turnaround_s must be positive \(a number\) or None",
    ),
    (
        lambda: sg.BatchApiSettings(inline_limit_bytes=1.5),
        r"BatchApiSettings: inline_limit_bytes=1\.5 is not whole: "
        r"inline_limit_bytes must be positive \(a whole number\)",
    ),
    (
        lambda: EngineConfig(LADDER, plan_concurrency(None, LADDER), expected_output_tokens=-1),
        r"expected_output_tokens=-1 is out of range: expected_output_tokens must not be negative",
    ),
    (
        lambda: EngineConfig(LADDER, plan_concurrency(None, LADDER), timeout_s=math.nan),
        r"timeout_s=nan is not a number \(NaN\)",
    ),
    (
        lambda: GenerationRequest("a", "x", top_k=True),
        r"Request 'a': top_k=True is True or False, not a number: "
        r"top_k must be at least 1 \(a whole number\) or None",
    ),
    (
        lambda: GenerationRequest("a", "x", seed=2**40),
        r"seed must be from -2,147,483,648 to 2,147,483,647",
    ),
    (
        lambda: sg.create_project("x", target_length_s=math.nan, db=False),
        r"target_length_s=nan is not a number \(NaN\): "
        r"target_length_s must be positive \(a whole number of seconds\)",
    ),
]


@pytest.mark.parametrize(
    ("make", "message"), NUMERIC_FIELDS, ids=[m.split(" is ")[0] for _, m in NUMERIC_FIELDS]
)
def test_every_numeric_field_of_the_option_objects_is_checked(
    make: Callable[[], object], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message) as refused:
        make()
    assert "\n" not in str(refused.value)  # one line, as the magic and the command print it


# The arguments of `CallStore`'s methods: (call it, what the message says).
STORE_ARGUMENTS: dict[str, tuple[Callable[[sg.CallStore], object], str]] = {
    "purge-text": (lambda log: log.purge("3"), r"older_than_days='3' is text, not a number"),
    "purge-nan": (lambda log: log.purge(math.nan), r"older_than_days=nan is not a number"),
    "purge-huge": (lambda log: log.purge(1e308), r"older_than_days=1e\+308 is out of range"),
    "purge-bool": (lambda log: log.purge(True), r"older_than_days=True is True or False"),
    "limit-text": (lambda log: log.batches(limit="5"), r"limit='5' is text, not a number"),
    "limit-nan": (lambda log: log.batches(limit=math.nan), r"limit=nan is not a number"),
    "limit-huge": (lambda log: log.batches(limit=10**30), r"limit=10+ is out of range"),
    "since-number": (lambda log: log.usage_report(since=-1), r"since=-1 \(int\) is not a time"),
    "until-number": (lambda log: log.costs(until=3.5), r"until=3\.5 \(float\) is not a time"),
    "since-too-far": (
        lambda log: log.usage_report(since="99999999999d"),
        r"since='99999999999d' reaches back before the year 1",
    ),
    "batch-id-number": (lambda log: log.results(5), r"batch_id=5 \(int\) is not text"),
    "errors-number": (lambda log: log.errors(5), r"batch_id=5 \(int\) is not text"),
    "sql-number": (lambda log: log.sql(5), r"query=5 \(int\) is not text"),  # type: ignore[arg-type]
    "forget-number": (lambda log: log.forget_limits(5), r"model=5 \(int\) is not text"),
    "costs-by-number": (lambda log: log.costs(by=5), r"costs\(by=5\): group by one or more"),
    "bucket-text": (lambda log: log.throughput(bucket_s="5"), r"bucket_s='5' is text"),
    "log-wait": (lambda log: sg.CallStore(log.db.path, log_wait_s=-1), r"log_wait_s=-1 is out"),
}


@pytest.mark.parametrize("call", STORE_ARGUMENTS)
def test_call_store_arguments_of_the_wrong_kind_are_one_line_configuration_errors(
    call: str, tmp_path: Path
) -> None:
    """Before: `purge("3")` and `batches(limit="5")` raised a bare TypeError, `purge(nan)` and
    `purge(1e308)` "Writing the call log ... failed: Conversion Error", `usage_report(since=-1)`
    a TypeError, `batches(limit=nan)` an empty frame, `results(5)` DuckDB's conversion error.
    Now each names the argument and what it takes, and the log is left as it was."""
    path = tmp_path / "log.duckdb"
    sg.batch_generate(
        sg.create_batch_requests(["x"]), models=LADDER, backend=FakeBackend(), db=path
    )
    before = path.read_bytes()
    run, message = STORE_ARGUMENTS[call]
    with pytest.raises(ConfigurationError, match=message) as refused:
        run(sg.CallStore(path))
    assert "\n" not in str(refused.value)
    assert path.read_bytes() == before


def test_a_nan_max_attempts_never_reaches_a_failing_server() -> None:
    """`nan < 1` and `failures >= nan` are both False: the bound never held, and a failing
    server was retried 103 times in 5 s. Now nothing is sent."""
    calls = 0

    def fails_ten_times(request: GenerationRequest, model: str) -> Any:
        nonlocal calls
        calls += 1
        if calls <= 10:
            raise BackendError("server_error", "unavailable", 503)
        return FakeBackend.echo(request, model)

    backend = FakeBackend(fails_ten_times)
    with pytest.raises(ConfigurationError, match="max_attempts=nan"):
        sg.batch_generate(
            sg.create_batch_requests(["Write about tides."]),
            backend=backend,
            db=False,
            models=LADDER,
            max_attempts=math.nan,
            backoff=NO_BACKOFF,
        )
    assert calls == 0


@pytest.mark.parametrize("template", ["{}", "{title!x}", "{title:>>>}"])
def test_a_template_field_python_cannot_fill_is_a_configuration_error(template: str) -> None:
    with pytest.raises(ConfigurationError, match="template"):
        cells.templated_prompts(template, [{"title": "Tides"}])


# --- the magic -----------------------------------------------------------------------------------


@pytest.fixture
def magic_emulator(monkeypatch: pytest.MonkeyPatch, shell: Any) -> Iterator[Emulator]:
    for name in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    config = EmulatorConfig(
        latency_scale=0.0, minute_s=2.0, day_s=60.0, models={EMULATED: ModelConfig()}
    )
    emulator = SESSION.start(config)
    SESSION.announced = True
    yield emulator
    SESSION.stop()


NAMESPACE: dict[str, Any] = {
    "not_a_schema": 42,
    "loose_schema": {"title": "x"},
    "not_a_table": 42,
    "a_string": "chapters",
    "chapters": pd.DataFrame({"id": ["c1", "c2"], "title": ["Tides", "Moss"]}),
    "twin_chapters": pd.DataFrame({"id": ["c1", "c1"], "title": ["Tides", "Moss"]}),
    "gappy_chapters": pd.DataFrame({"id": [1.0, math.nan], "title": ["Tides", "Moss"]}),
    "no_chapters": [],
}

# (name, options, cell, exception, message); `{db}` and `{model}` are filled in.
MAGIC_CASES: list[tuple[str, str, str, type[Exception], str]] = [
    ("magic-temperature-too-high", "--temperature 3", "Tides", UsageError, "--temperature=3"),
    ("magic-temperature-text", "--temperature hot", "Tides", UsageError, "invalid float"),
    ("magic-max-tokens-zero", "--max-tokens 0", "Tides", UsageError, "--max-tokens=0"),
    ("magic-max-tokens-text", "--max-tokens many", "Tides", UsageError, "invalid int"),
    (
        "magic-max-tokens-above-the-models-limit",
        "--max-tokens 100000",
        "Tides",
        UsageError,
        rf"--max-tokens=100000 is more than {EMULATED} can give \(at most 65,536",
    ),
    ("magic-thinking-level", "--thinking-level deep", "Tides", UsageError, "minimal"),
    ("magic-concurrency-zero", "--concurrency 0", "Tides", UsageError, "from 1 to 10,000"),
    ("magic-concurrency-negative", "--concurrency -3", "Tides", UsageError, "from 1 to 10,000"),
    ("magic-concurrency-absurd", "--concurrency 50000", "Tides", UsageError, "from 1 to 10,000"),
    ("magic-concurrency-word", "--concurrency lots", "Tides", UsageError, "--concurrency"),
    ("magic-unknown-model", "--model gemini-0-nowhere", "Tides", UsageError, "Unknown model"),
    ("magic-empty-ladder", "--model ,", "Tides", UsageError, "--model ',' names no model"),
    ("magic-negative-budget", "--budget -1", "Tides", UsageError, "must not be negative"),
    ("magic-nan-budget", "--budget nan", "Tides", UsageError, r"--budget=nan is not a"),
    ("magic-schema-a-number", "--schema not_a_schema", "Tides", UsageError, "holds int 42"),
    ("magic-schema-loose", "--schema loose_schema", "Tides", UsageError, "keywords"),
    ("magic-schema-missing", "--schema nowhere", "Tides", UsageError, "no variable"),
    ("magic-over-a-number", "--over not_a_table", "{title}", UsageError, "DataFrame"),
    ("magic-over-a-string", "--over a_string", "{title}", UsageError, "not str"),
    ("magic-over-empty", "--over no_chapters", "{title}", UsageError, "empty table"),
    ("magic-over-missing", "--over nowhere", "{title}", UsageError, "no variable"),
    ("magic-template-missing-column", "--over chapters", "{summary}", UsageError, "of chapters"),
    ("magic-over-duplicate-ids", "--over twin_chapters", "{title}", UsageError, "share"),
    ("magic-over-float-ids", "--over gappy_chapters", "{title}", UsageError, "id 1.0"),
    ("magic-empty-template", "--over chapters", "  \n", UsageError, "cell is empty"),
    (
        "magic-template-lone-surrogate",
        "--over chapters",
        "About {title} \udc80",
        UsageError,
        r"the template over chapters holds a lone surrogate \(U\+DC80\) at character 15",
    ),
    ("magic-empty-cell", "", "  \n\n", UsageError, "holds no prompt"),
    ("magic-vars-missing", "--vars", "About {nowhere}", UsageError, "your variables"),
    ("magic-empty-system", "--system ''", "Tides", UsageError, "--system is empty"),
    ("magic-empty-operation", "--operation ''", "Tides", UsageError, "--operation is empty"),
    ("magic-cache-unknown", "--cache sometimes", "Tides", UsageError, "invalid choice"),
    ("magic-unknown-option", "--temprature 0.2", "Tides", UsageError, "unrecognized"),
    # A --db that is no log this version can use: one line naming --db (not a traceback).
    ("magic-corrupt-log", "--db {corrupt}", "Tides", UsageError, "not a DuckDB.*pass --db"),
    ("magic-newer-log", "--db {newer}", "Tides", UsageError, "newer scriptgen_nb.*pass --db"),
]


@pytest.mark.parametrize(
    ("name", "options", "body", "error", "message"), MAGIC_CASES, ids=[c[0] for c in MAGIC_CASES]
)
def test_bad_input_through_the_magic_is_refused_before_anything_is_sent(
    name: str,
    options: str,
    body: str,
    error: type[Exception],
    message: str,
    shell: Any,
    magic_emulator: Emulator,
    tmp_path: Path,
) -> None:
    shell.user_ns.update(NAMESPACE)
    db = tmp_path / "log.duckdb"
    corrupt, newer = _bad_logs(tmp_path, options)
    if "--db" not in options:
        options += f" --db {db}"
    if "--model" not in options:
        options += f" --model {EMULATED}"
    line = "batch " + options.format(corrupt=corrupt, newer=newer)
    before = [(p, p.read_bytes()) for p in (corrupt, newer) if p.exists()]
    with pytest.raises(error, match=message):
        shell.run_cell_magic("scriptgen", line, body)
    # Nothing was generated (reading the endpoint's model list, to check names, is not sending).
    assert all(m["requests"] == 0 for m in magic_emulator.counters()["models"].values())
    assert log_rows(db) == 0
    assert [(p, p.read_bytes()) for p, _ in before] == before  # a bad log is left as it was


# --- the project workflow ------------------------------------------------------------------------

PROJECT_CASES: list[tuple[str, dict[str, Any], type[Exception], str]] = [
    ("temperature", {"temperature": 3.0}, ConfigurationError, "temperature=3.0"),
    ("max-output-tokens", {"max_output_tokens": 0}, ConfigurationError, "max_output_tokens=0"),
    ("stop-sequences", {"stop_sequences": "END"}, ConfigurationError, "one string"),
    ("unknown-model", {"models": "gemini-0-nowhere"}, UnknownModelError, "Unknown model"),
    ("pinned-model", {"model": "gemini-0-nowhere"}, ConfigurationError, "pinned to model"),
    (
        "batch-concurrency-zero",
        {"mode": "batch", "max_concurrency": 0},
        ConfigurationError,
        "at least 1",
    ),
    (
        "batch-concurrency-absurd",
        {"mode": "batch", "max_concurrency": 99_999},
        ConfigurationError,
        "absurd",
    ),
    ("negative-budget", {"budget_usd": -2.0}, ConfigurationError, "must not be negative"),
    ("template-missing-field", {"template": "About {nowhere}"}, ConfigurationError, "nowhere"),
    ("unknown-mode", {"mode": "fast"}, ConfigurationError, "mode='fast'"),
]


@pytest.mark.parametrize(
    ("name", "options", "error", "message"), PROJECT_CASES, ids=[c[0] for c in PROJECT_CASES]
)
def test_bad_input_through_the_project_workflow_is_refused_before_anything_is_sent(
    name: str, options: dict[str, Any], error: type[Exception], message: str, tmp_path: Path
) -> None:
    db = tmp_path / "projects.duckdb"
    pid = sg.create_project("Small things", chapters=[{"title": "Tides"}, {"title": "Moss"}], db=db)
    backend = fake()
    settings = {"backend": backend, "db": db, "models": LADDER, **options}
    with pytest.raises(error, match=message):
        sg.generate_scripts(pid, **settings)
    assert backend.calls == []
    assert log_rows(db) == 0
    assert sg.scripts_frame(pid, db=db).empty


# --- the command line ----------------------------------------------------------------------------

SCRIPTGEN = [sys.executable, "-m", "scriptgen_nb.cli"]

# (name, arguments, environment changes, exit status, message on stderr)
CLI_CASES: list[tuple[str, list[str], dict[str, str], int, str]] = [
    ("cli-demo-zero-requests", ["demo", "-n", "0"], {}, 2, "--requests must be at least 1"),
    ("cli-demo-negative-requests", ["demo", "-n", "-5"], {}, 2, "--requests must be at least 1"),
    ("cli-demo-word-requests", ["demo", "-n", "many"], {}, 2, "invalid int value"),
    ("cli-demo-real-without-key", ["demo", "--real", "-n", "1"], {}, 1, "GEMINI_API_KEY"),
    ("cli-demo-unreadable-catalogue", ["demo", "-n", "1"], {"cat": "1"}, 1, "model catalogue"),
    ("cli-demo-corrupt-log", ["demo", "-n", "1"], {"db": "corrupt"}, 1, "not a DuckDB database"),
    ("cli-stats-corrupt-log", ["stats", "--db", "{corrupt}"], {}, 2, "not a DuckDB database"),
    ("cli-stats-newer-log", ["stats", "--db", "{newer}"], {}, 2, "newer scriptgen_nb"),
    ("cli-stats-bad-time", ["stats", "--db", "{newer}", "--since", "soonish"], {}, 2, "soonish"),
    ("cli-batches-zero-limit", ["batches", "--db", "{newer}", "-n", "0"], {}, 2, "at least 1"),
    ("cli-emulator-remote-host", ["emulator", "--host", "0.0.0.0"], {}, 2, "--allow-remote"),
    ("cli-emulator-bad-port", ["emulator", "--port", "70000"], {}, 2, "not a port"),
    ("cli-emulator-bad-latency", ["emulator", "--latency-scale", "-1"], {}, 2, "non-negative"),
]


@pytest.mark.parametrize(
    ("name", "args", "env", "status", "message"), CLI_CASES, ids=[c[0] for c in CLI_CASES]
)
def test_bad_input_through_the_command_line_exits_with_a_message_and_no_traceback(
    name: str, args: list[str], env: dict[str, str], status: int, message: str, tmp_path: Path
) -> None:
    corrupt, newer = _bad_logs(tmp_path, " ".join([*args, *env.values()]))
    log = tmp_path / "log.duckdb"
    environment = {
        k: v
        for k, v in os.environ.items()
        if k not in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL")
    }
    environment["SCRIPTGEN_DB"] = str(corrupt if env.get("db") == "corrupt" else log)
    if env.get("cat"):
        environment["SCRIPTGEN_CATALOGUE"] = str(tmp_path / "no-such-catalogue.toml")
    argv = [a.format(corrupt=corrupt, newer=newer) for a in args]
    done = subprocess.run(
        [*SCRIPTGEN, *argv], capture_output=True, text=True, timeout=60, env=environment
    )
    assert done.returncode == status, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert log_rows(log) == 0


# --- property-based ------------------------------------------------------------------------------

# Requests: mostly valid values, so that many lists run, and one bad value now and then in
# any place (a prompt, an id, a request's setting, a default, the concurrency).
GOOD_PROMPTS = st.text(st.characters(codec="utf-8"), min_size=1, max_size=40).map("p {}".format)
BAD_PROMPTS = st.one_of(
    st.sampled_from(["", " ", "\n\t"]),
    st.integers(),
    st.none(),
    st.floats(),
    st.binary(max_size=4),
    st.lists(st.text(max_size=3), max_size=2),
)
# Ids that seldom collide with each other or with positions (a collision is a refusal too).
GOOD_IDS = st.one_of(st.text(min_size=1, max_size=6).map("id-{}".format), st.integers(100, 10**6))
BAD_IDS = st.one_of(
    st.sampled_from(["", " "]),
    st.floats(),
    st.none(),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
)
GOOD_SETTINGS: dict[str, st.SearchStrategy[Any]] = {
    "temperature": st.floats(0.0, 2.0),
    "top_p": st.floats(0.0, 1.0),
    "max_output_tokens": st.integers(1, 100),
    "top_k": st.integers(1, 50),
    "seed": st.integers(-(2**31), 2**31 - 1),
    "stop_sequences": st.lists(st.text(min_size=1, max_size=4), max_size=5),
    "system": st.text(min_size=1, max_size=10).map("s {}".format),
    "schema": st.sampled_from([Caption, {"type": "object"}]),
}
BAD_SETTINGS: dict[str, st.SearchStrategy[Any]] = {
    "temperature": st.one_of(
        st.floats(2.0, 9.0, exclude_min=True),
        st.floats(-9.0, 0.0, exclude_max=True),
        st.sampled_from([math.nan, math.inf, "hot", True]),
    ),
    "top_p": st.one_of(st.floats(1.0, 2.0, exclude_min=True), st.sampled_from([-0.5, math.nan])),
    "max_output_tokens": st.one_of(st.integers(-3, 0), st.floats(0, 5), st.text(max_size=2)),
    "top_k": st.integers(-2, 0),
    "seed": st.one_of(st.integers(2**31, 2**33), st.text(max_size=2)),
    "stop_sequences": st.one_of(
        st.text(max_size=4), st.lists(st.text(min_size=1), min_size=6, max_size=7)
    ),
    "system": st.one_of(st.just(""), st.integers()),
    "schema": st.sampled_from([{"title": "x"}, {"type": "objekt"}, 42, "object", NotAModel]),
}


@st.composite
def maybe_bad(draw: st.DrawFn, good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> Any:
    return draw(bad) if draw(st.integers(0, 29)) == 0 else draw(good)


@st.composite
def request_settings(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.lists(st.sampled_from(sorted(GOOD_SETTINGS)), unique=True, max_size=3))
    return {n: draw(maybe_bad(GOOD_SETTINGS[n], BAD_SETTINGS[n])) for n in names}


@st.composite
def prompt_items(draw: st.DrawFn) -> Any:
    prompt = draw(maybe_bad(GOOD_PROMPTS, BAD_PROMPTS))
    if draw(st.booleans()):
        return prompt
    item = {"prompt": prompt, **draw(request_settings())}
    if draw(st.booleans()):
        item["id"] = draw(maybe_bad(GOOD_IDS, BAD_IDS))
    return item


CONCURRENCY = maybe_bad(
    st.sampled_from([None, "auto", "seed", 1, 3, 16, 10_000]),
    st.sampled_from(["lots", 0, -1, 10_001, 2.5, True]),
)
# Small enough that longer prompts end as `too_large`.
SMALL = [sg.ModelSpec("small", priority=1, rpm=10_000, input_token_limit=12)]


@settings(max_examples=100, deadline=None, database=None)
@given(
    items=st.lists(prompt_items(), max_size=6),
    defaults=request_settings(),
    concurrency=CONCURRENCY,
)
def test_any_request_list_is_refused_before_sending_or_every_request_ends_exactly_once(
    items: list[Any], defaults: dict[str, Any], concurrency: Any
) -> None:
    backend = FakeBackend()
    try:
        requests = sg.create_batch_requests(items, **defaults)
        results = sg.batch_generate(
            requests,
            backend=backend,
            db=False,
            models=SMALL,
            max_concurrency=concurrency,
            backoff=NO_BACKOFF,
            max_attempts=2,
        )
    except ConfigurationError as exc:
        event("refused")
        assert backend.calls == []
        assert len(str(exc)) > 20
        return
    event("ran")
    assert isinstance(requests, list)
    assert [r.index for r in results] == list(range(len(requests)))
    assert [r.id for r in results] == [q.id for q in requests]
    assert len({r.id for r in results}) == len(results)
    sent = Counter(rid for _, rid in backend.calls)
    for result in results:
        kind = result.error.kind if result.error else None
        assert result.success or kind in ("too_large", "invalid_json"), result.error
        assert sent[result.id] == (0 if kind == "too_large" else result.attempts)


VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10**7),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
ENTRY_KEYS = st.sampled_from(
    [
        "priority",
        "rpm",
        "tpm",
        "rpd",
        "input_token_limit",
        "output_token_limit",
        "input_usd_per_1m",
        "output_usd_per_1m",
        "input_usd_per_1m_long",
        "output_usd_per_1m_long",
        "cached_input_usd_per_1m",
        "prices",
        "shutdown",
        "long_context_tokens",
        "batch_discount",
        "minute_s",
        "day_s",
        "status",
        "name",
        "bogus",
    ]
)
TIERS = st.dictionaries(
    st.sampled_from(["free", "tier1"]),
    st.one_of(st.dictionaries(ENTRY_KEYS, VALUES, max_size=3), VALUES),
    max_size=2,
)
MODEL_ENTRIES = st.one_of(
    st.dictionaries(ENTRY_KEYS, VALUES, max_size=5),
    st.builds(
        lambda entry, limits: {**entry, "limits": limits},
        st.dictionaries(ENTRY_KEYS, VALUES, max_size=4),
        TIERS,
    ),
    VALUES,
)
CATALOGUES = st.fixed_dictionaries(
    {
        "models": st.one_of(
            st.dictionaries(
                st.one_of(st.text(max_size=14), st.integers()), MODEL_ENTRIES, max_size=4
            ),
            VALUES,
        )
    },
    optional={"as_of": VALUES, "default_tier": VALUES},
)


@settings(max_examples=100, deadline=None, database=None)
@given(data=CATALOGUES, tier=st.sampled_from(["free", "tier1"]))
def test_any_catalogue_mapping_is_a_configuration_error_or_a_usable_catalogue(
    data: dict[str, Any], tier: str
) -> None:
    try:
        catalogue = ModelCatalogue.from_mapping(data, tier=tier)
    except ConfigurationError as exc:
        assert len(str(exc)) > 20
        return
    assert len(catalogue) >= 1
    for spec in catalogue:
        cost = spec.cost_usd(Usage(300_000, 1_000, 10, 20_000))
        assert (cost is None) == (not spec.priced)  # unknown, never a made-up $0
        assert cost is None or (math.isfinite(cost) and cost >= 0)
        assert isinstance(spec.usable, bool) and spec.minute_s > 0 and spec.day_s > 0
    try:
        ladder = catalogue.resolve(None)
    except ConfigurationError:
        return
    assert ladder and all(spec.usable for spec in ladder)
    assert [s.name for s in catalogue.with_windows(1.0, 2.0).resolve(None)] == [
        s.name for s in ladder
    ]
