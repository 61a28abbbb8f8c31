"""Security: the API key never leaks, user values reach SQL only as parameters, user SQL is
read-only, and the emulator is exposed to this machine only, with a bounded request size.

Keys are distinctive strings, so a scan of every place a user or a log could see finds them if
they are there: the call log file, results and their DataFrame, reprs, exception messages and
tracebacks, everything logged at DEBUG by every logger, what the magics print and return, the
progress panel and text bar, and the committed notebooks.
"""

from __future__ import annotations

import http.client
import io
import json
import logging
import os
import re
import socket
import subprocess
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from IPython.core.error import UsageError

import scriptgen_nb as sg
from scriptgen_nb.emulator import Emulator, EmulatorConfig, FaultConfig, ModelConfig
from scriptgen_nb.emulator.config import MAX_BODY_BYTES
from scriptgen_nb.engine.backend import FakeBackend, GeminiBackend
from scriptgen_nb.engine.errors import ConfigurationError, InvalidApiKeyError
from scriptgen_nb.engine.policy import Backoff
from scriptgen_nb.jupyter.endpoint import EMULATOR_KEY, SESSION
from scriptgen_nb.jupyter.panel import ProgressPanel
from scriptgen_nb.progress import TextProgress, format_line, format_summary
from scriptgen_nb.store import CallStore, Database
from scriptgen_nb.wiring import BatchOptions
from tests.reliability.children import child_report

KEY = "AIzaSy-SCRIPTGEN-test-SECRET-0d5c1b7e9a"  # accepted by the emulator
WRONG_KEY = "AIzaSy-SCRIPTGEN-wrong-SECRET-61f0a4c2"  # refused by it
MODEL = "gemini-3.5-flash-lite"  # in the default catalogue, so the magics can name it
LADDER = [sg.ModelSpec(MODEL, priority=1, input_usd_per_1m=0.1, output_usd_per_1m=0.4)]
NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def leaks(text: str | bytes, *keys: str) -> list[str]:
    """The keys found in `text` (also as bytes, as UTF-16 and as the key's tail)."""
    blob = text if isinstance(text, bytes) else text.encode("utf-8", "replace")
    found = []
    for key in keys or (KEY, WRONG_KEY):
        forms = [key.encode(), key.encode("utf-16-le"), key[-16:].encode()]
        if any(form in blob for form in forms):
            found.append(key)
    return found


@pytest.fixture
def debug_log() -> Iterator[io.StringIO]:
    """Everything every logger says at DEBUG, tracebacks included."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    faults = FaultConfig(p_500=0.15, p_malformed=0.1, p_block=0.2, p_truncate=0.2)
    config = EmulatorConfig(
        api_keys=(KEY,),
        latency_scale=0.0,
        minute_s=2.0,
        models={MODEL: ModelConfig(faults=faults)},
    )
    with Emulator(config) as emu:
        yield emu


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- the key never leaks -------------------------------------------------------------------------


def test_the_api_key_never_reaches_the_log_results_reprs_errors_logging_or_the_panel(
    emulator: Emulator, debug_log: io.StringIO, tmp_path: Path
) -> None:
    db = tmp_path / "log.duckdb"
    seen: list[str] = []
    requests = sg.create_batch_requests(
        [f"Write about item {i}." for i in range(12)], operation="LEAK_CHECK", project_id="p"
    )
    panel = ProgressPanel(refresh_s=None)
    bar = io.StringIO()
    text = TextProgress(stream=bar, refresh_s=None)
    common: dict[str, Any] = {"models": LADDER, "db": db, "max_attempts": 3}
    fast = Backoff(0.0, 1.0, 0.0)
    results = sg.batch_generate(
        requests,
        base_url=emulator.base_url,
        api_key=KEY,
        listeners=[panel, text],
        backoff=fast,
        **common,
    )
    assert any(r.success for r in results) and any(not r.success for r in results)
    seen += [repr(results), str(results.to_dataframe().to_dict("records"))]
    seen += [results.to_dataframe().to_csv(), results.summary(), *map(repr, results)]

    # A refused key: the exception, its chain and its traceback.
    with pytest.raises(InvalidApiKeyError) as refused:
        sg.batch_generate(
            requests, base_url=emulator.base_url, api_key=WRONG_KEY, max_concurrency=1, **common
        )
    seen.append("".join(traceback.format_exception(refused.value)))
    seen += [str(refused.value), repr(refused.value)]
    # An endpoint that is down: connection errors in results and log.
    down = sg.batch_generate(
        requests[:2],
        base_url=f"http://127.0.0.1:{_closed_port()}",
        api_key=KEY,
        backoff=fast,
        **common,
    )
    assert all(r.error is not None and r.error.kind == "connection" for r in down)
    seen += [repr(down), down.to_dataframe().to_csv()]

    # Every public object that held a key.
    options = BatchOptions(api_key=KEY, base_url=emulator.base_url, models=LADDER, db=False)
    prepared = options.prepare(requests)
    seen += [repr(options), str(options), repr(prepared), repr(prepared.engine.backend)]
    seen += [repr(GeminiBackend(KEY)), repr(emulator), repr(emulator.config)]

    # What users read afterwards: the panel, the text bar, the log's reports.
    snapshot = panel.state.snapshot()
    seen += [format_line(snapshot), format_summary(snapshot), repr(panel), bar.getvalue()]
    seen += [str(w.value) for w in (panel.title, panel.summary, panel.usage, panel.models)]
    seen += [panel.errors.value, json.dumps(panel._repr_mimebundle_(), default=str)]
    log = CallStore(db)
    for table in ("batch_log", "request", "ai_api_call", "result"):
        seen.append(log.sql(f"SELECT * FROM {table}").to_csv())
    seen += [log.usage_report().to_csv(), log.errors().to_csv(), log.batches().to_csv()]
    seen.append(debug_log.getvalue())

    assert "HTTP Request" in debug_log.getvalue()  # the transport did log at DEBUG
    assert leaks(repr(vars(GeminiBackend(KEY)))) == [KEY]  # the scan finds a key that is there
    assert leaks("\n".join(seen)) == []
    files = [p for p in tmp_path.iterdir() if p.name.startswith("log.duckdb")]
    assert files and all(leaks(p.read_bytes()) == [] for p in files)


def test_a_key_from_the_environment_never_leaks_either(
    emulator: Emulator,
    debug_log: io.StringIO,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", emulator.base_url)
    db = tmp_path / "env.duckdb"
    results = sg.batch_generate(
        sg.create_batch_requests(["From the environment."]), models=LADDER, db=db
    )
    assert results[0].attempts >= 1  # sent with the environment's key (answered or faulted)
    assert leaks(db.read_bytes()) == []
    assert leaks(debug_log.getvalue() + repr(results) + results.to_dataframe().to_csv()) == []


def test_the_magics_never_show_the_key(
    shell: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    debug_log: io.StringIO,
) -> None:
    """With GEMINI_API_KEY set and GOOGLE_GEMINI_BASE_URL pointing at an emulator started for the
    test, the magics use the environment's key: nothing they print, display or return holds it."""
    SESSION.stop()  # no session emulator: the environment's endpoint and key are used
    config = EmulatorConfig(api_keys=(KEY,), latency_scale=0.0, models={MODEL: ModelConfig()})
    db = tmp_path / "magic.duckdb"
    with Emulator(config) as emu:
        monkeypatch.setenv("GEMINI_API_KEY", KEY)
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", emu.base_url)
        returned = [
            shell.run_cell_magic("scriptgen", f"batch --model {MODEL} --db {db}", "One\nTwo"),
            shell.run_cell_magic("scriptgen", f"batch -o out --model {MODEL} --db {db}", "Three"),
            shell.run_line_magic("scriptgen", f"stats --db {db}"),
            shell.run_line_magic("scriptgen", f"sql --db {db} SELECT * FROM batch_log"),
            shell.run_line_magic("scriptgen", f"sql --db {db} SELECT * FROM ai_api_call"),
            shell.run_line_magic("scriptgen", f"models --db {db}"),
            shell.user_ns["out"],
        ]
        assert emu.counters()["models"][MODEL]["requests"] == 3
        monkeypatch.setenv("GEMINI_API_KEY", WRONG_KEY)
        with pytest.raises(UsageError, match="rejected the API key") as refused:
            shell.run_cell_magic("scriptgen", f"batch --model {MODEL} --db {db}", "Four")
    assert returned[0]["success"].all()
    printed = capsys.readouterr()
    shown = [printed.out, printed.err, debug_log.getvalue(), str(refused.value)]
    shown += [f.to_csv() if isinstance(f, pd.DataFrame) else repr(f) for f in returned]
    shown.append("".join(traceback.format_exception(refused.value)))
    assert leaks("\n".join(shown)) == []
    assert leaks(db.read_bytes()) == []


def test_the_committed_notebooks_hold_no_key() -> None:
    """The tutorials' committed outputs: no Google-looking key, nor the emulator keys."""
    notebooks = sorted(NOTEBOOKS.glob("*.ipynb"))
    assert notebooks
    google_key = re.compile(r"AIza[0-9A-Za-z_\-]{35}")
    for notebook in notebooks:
        outputs = json.dumps(
            [cell.get("outputs", []) for cell in json.loads(notebook.read_text())["cells"]]
        )
        assert not google_key.search(outputs), notebook.name
        assert leaks(outputs, EMULATOR_KEY, "demo-key", "test-key") == [], notebook.name


# --- a pasted key ---------------------------------------------------------------------------------

# Whitespace around a key is what a paste adds (a trailing newline from a file or a terminal).
PASTED = [KEY + "\n", f"  {KEY}\r\n", "\t" + KEY]
# Inside a key, characters no HTTP header can carry: the transport used to refuse the header
# with the key in its message ("Illegal header value b'AIza...'"), and that message was the
# request's error, stored and shown; a non-ASCII one raised a UnicodeEncodeError holding it.
MALFORMED = {
    "line-feed": KEY[:12] + "\n" + KEY[12:],
    "carriage-return": KEY[:12] + "\r" + KEY[12:],
    "nul": KEY[:20] + "\x00" + KEY[20:],
    "non-ascii": KEY[:-1] + "\u00e9",
    "zero-width-space": KEY[:6] + "\u200b" + KEY[6:],
}


@pytest.fixture
def plain_emulator() -> Iterator[Emulator]:
    """An emulator without faults that accepts `KEY` only."""
    config = EmulatorConfig(api_keys=(KEY,), latency_scale=0.0, models={MODEL: ModelConfig()})
    with Emulator(config) as emu:
        yield emu


def _without_key_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


def test_a_pasted_key_with_whitespace_around_it_works_end_to_end(
    plain_emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """google-genai strips the key it sends; the key's quota identity must be stripped too."""
    _without_key_variables(monkeypatch)
    requests = sg.create_batch_requests(["Pasted."])
    common: dict[str, Any] = {"models": LADDER, "db": tmp_path / "log.duckdb", "cache": "off"}
    for pasted in PASTED:
        given = sg.batch_generate(
            requests, api_key=pasted, base_url=plain_emulator.base_url, **common
        )
        monkeypatch.setenv("GEMINI_API_KEY", pasted)
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", plain_emulator.base_url)
        from_environment = sg.batch_generate(requests, **common)
        _without_key_variables(monkeypatch)
        for results in (given, from_environment):
            assert results[0].success, (repr(pasted), results[0].error)
            assert results[0].attempts == 1  # not retried as a connection fault
    assert plain_emulator.counters()["models"][MODEL]["successes"] == 2 * len(PASTED)
    # One key, one quota identity: limits learned with a pasted key are the clean key's.
    fingerprints = {BatchOptions(api_key=key).key_fingerprint() for key in [KEY, *PASTED]}
    assert len(fingerprints) == 1


@pytest.mark.parametrize("name", MALFORMED)
def test_a_key_no_http_header_can_carry_is_refused_before_any_request(
    name: str, plain_emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through `api_key=` and both environment variables: a clear error naming where the key
    came from, never the key; no HTTP request (not even for the model list) and no call log."""
    _without_key_variables(monkeypatch)
    malformed = MALFORMED[name]
    requests = sg.create_batch_requests(["Never sent."])
    db = tmp_path / "log.duckdb"
    refusals: list[BaseException] = []
    variables = ["GEMINI_API_KEY", "GOOGLE_API_KEY"] if "\x00" not in malformed else []
    for source in ["api_key=", *variables]:  # (no environment variable can hold a NUL)
        options: dict[str, Any] = {"models": MODEL, "db": db}
        if source == "api_key=":
            options.update(api_key=malformed, base_url=plain_emulator.base_url)
        else:
            monkeypatch.setenv(source, malformed)
            monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", plain_emulator.base_url)
        message = f"API key from {source} holds .* at character .*nothing was sent"
        with pytest.raises(ConfigurationError, match=message) as refused:
            sg.batch_generate(requests, **options)
        _without_key_variables(monkeypatch)
        refusals.append(refused.value)
    for refusal in refusals:
        shown = [str(refusal), repr(refusal), "".join(traceback.format_exception(refusal))]
        assert leaks("\n".join(shown), malformed, KEY) == []
        assert refusal.__context__ is None  # no chained transport error holding it either
    assert plain_emulator.counters()["requests"] == 0
    assert not db.exists()


def test_a_malformed_key_in_the_magic_and_the_command_line_is_one_clear_line(
    plain_emulator: Emulator,
    shell: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The magic raises the same refusal; `scriptgen run` exits 2 with one line and no
    traceback, and runs with a key that only has a newline after it. So do `scriptgen limits`
    (a traceback before) and `models` (exit 1 before): the key names whose limits they show."""
    SESSION.stop()  # the environment's endpoint and key, not a session emulator
    malformed = MALFORMED["line-feed"]
    monkeypatch.setenv("GEMINI_API_KEY", malformed)
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", plain_emulator.base_url)
    with pytest.raises(UsageError, match="API key from GEMINI_API_KEY holds a line feed"):
        shell.run_cell_magic("scriptgen", f"batch --model {MODEL} --db {tmp_path / 'm.db'}", "x")
    printed = capsys.readouterr()
    assert leaks(printed.out + printed.err, malformed) == []
    (tmp_path / "p.txt").write_text("A prompt\n")
    environment = {**os.environ, "SCRIPTGEN_DB": str(tmp_path / "cli.duckdb")}

    def scriptgen(key: str, *command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "scriptgen_nb.cli", *command],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
            env={**environment, "GEMINI_API_KEY": key},
        )

    Database(tmp_path / "cli.duckdb")  # a log for `limits` to read
    for command in (
        ["run", "p.txt", "-m", MODEL, "-o", "r.jsonl"],
        ["limits"],
        ["limits", "--forget-all"],
        ["models"],
    ):
        refused = scriptgen(malformed, *command)
        assert refused.returncode == 2, (command, refused.stderr)
        assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr, command
        said = f"scriptgen {command[0]}: The API key from GEMINI_API_KEY holds a line feed at "
        assert refused.stderr.startswith(said + "character 13"), refused.stderr
        assert leaks(refused.stdout + refused.stderr, malformed) == [], command
    assert plain_emulator.counters()["requests"] == 0  # the magic and the command sent nothing
    pasted = scriptgen(KEY + "\n", "run", "p.txt", "-m", MODEL, "-o", "r.jsonl")
    assert pasted.returncode == 0, pasted.stderr
    assert json.loads((tmp_path / "r.jsonl").read_text())["success"] is True


def test_a_transport_error_quoting_the_key_is_stored_redacted(
    plain_emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defence in depth: were a key the transport refuses to get past the check, the
    transport's error quotes the header ("Illegal header value b'...'"). The backend takes the
    value out before the message becomes a result's error or an attempt's row."""
    from scriptgen_nb.engine import backend as backend_module

    monkeypatch.setattr(backend_module, "checked_api_key", lambda key, _: key, raising=False)
    malformed = MALFORMED["line-feed"]
    db = tmp_path / "log.duckdb"
    results = sg.batch_generate(
        sg.create_batch_requests(["Quoted?"]),
        backend=GeminiBackend(malformed, base_url=plain_emulator.base_url),
        models=LADDER,
        db=db,
        max_attempts=2,
        backoff=Backoff(0.0, 1.0, 0.0),
    )
    error = results[0].error
    assert error is not None and error.kind == "connection"
    assert error.message == "LocalProtocolError: Illegal header value [redacted]"
    frame = results.to_dataframe()
    assert leaks(repr(results) + frame.to_csv() + frame.to_json(), malformed, KEY) == []
    stored = CallStore(db).sql("SELECT error_message FROM ai_api_call")["error_message"]
    assert list(stored) == [error.message] * 2
    files = [p for p in tmp_path.iterdir() if p.name.startswith("log.duckdb")]
    assert files and all(leaks(p.read_bytes(), malformed, KEY) == [] for p in files)
    assert plain_emulator.counters()["requests"] == 0


# --- user values reach SQL only as parameters ----------------------------------------------------

INJECTIONS = [
    "'; DROP TABLE result; --",
    "x' OR '1'='1",
    '"); DELETE FROM batch_log; --',
    "Robert'); DROP TABLE request;--",
    "$1 ? :name %s {0}",
    "\\'; TRUNCATE ai_api_call; --",
    "ünïcødé ‘quotes’ \u202e and a NUL \x00 byte",
]
TABLES = ("batch_log", "request", "ai_api_call", "result", "schema_migration")


def _table_counts(db: Database) -> dict[str, int]:
    return {t: int(db.rows(f"SELECT count(*) FROM {t}")[0][0]) for t in TABLES}


def test_hostile_values_are_stored_verbatim_and_the_tables_stay_intact(tmp_path: Path) -> None:
    hostile_model = "gemini'); DROP TABLE batch_log; --"
    prompts = [
        {
            "id": f"{text} #{i}",
            "prompt": f"{text} prompt",
            "system": f"{text} system",
            "metadata": {text: text},
        }
        for i, text in enumerate(INJECTIONS)
    ]
    db_path = tmp_path / "log.duckdb"
    backend = FakeBackend()
    results = sg.batch_generate(
        sg.create_batch_requests(prompts, operation=INJECTIONS[0], project_id=INJECTIONS[1]),
        backend=backend,
        db=db_path,
        models=[sg.ModelSpec(hostile_model, priority=1)],
    )
    assert all(r.success for r in results)
    db = Database(db_path)
    assert _table_counts(db) == {
        "batch_log": 1,
        "request": len(INJECTIONS),
        "ai_api_call": len(INJECTIONS),
        "result": len(INJECTIONS),
        "schema_migration": len(db.rows("SELECT version FROM schema_migration")),
    }
    stored = db.rows(
        "SELECT request_id, prompt, system, operation, project_id, config FROM request "
        "ORDER BY request_index"
    )
    for (rid, prompt, system, operation, project, config), item in zip(
        stored, prompts, strict=True
    ):
        assert (rid, prompt, system) == (item["id"], item["prompt"], item["system"])
        assert (operation, project) == (INJECTIONS[0], INJECTIONS[1])
        assert json.loads(config)["metadata"] == item["metadata"]
    assert {row[0] for row in db.rows("SELECT model FROM ai_api_call")} == {hostile_model}
    assert db.rows("SELECT models FROM batch_log") == [([hostile_model],)]
    texts = db.rows("SELECT text FROM result ORDER BY request_index")
    assert [t for (t,) in texts] == [r.text for r in results]

    # The reports take user values too: as parameters, or checked against an allow-list.
    log = CallStore(db_path)
    for hostile in INJECTIONS:
        assert log.results(hostile).empty
        assert log.errors(hostile).empty
        assert log.throughput(hostile).empty
        assert log.latency(hostile).empty
        with pytest.raises(ConfigurationError):
            log.batch_summary(hostile)
        with pytest.raises(ConfigurationError):
            log.failed_requests(hostile)
        with pytest.raises(ConfigurationError):
            log.usage_report(since=hostile)
        with pytest.raises(ConfigurationError):
            log.costs(by=[hostile])
    assert _table_counts(db)["result"] == len(INJECTIONS)
    assert _table_counts(Database(db_path)) == _table_counts(db)  # reopened: still whole


def test_hostile_project_and_chapter_names_are_stored_verbatim(tmp_path: Path) -> None:
    db = tmp_path / "projects.duckdb"
    chapters = [{"title": text, "summary": text} for text in INJECTIONS]
    pid = sg.create_project(INJECTIONS[0], INJECTIONS[2], chapters, style=INJECTIONS[3], db=db)
    frame = sg.chapters_frame(pid, db=db)
    assert frame["title"].tolist() == INJECTIONS
    assert frame["summary"].tolist() == INJECTIONS
    assert sg.chapters_frame(sg.create_project(INJECTIONS[1], db=db), db=db).empty
    with pytest.raises(ConfigurationError):
        sg.chapters_frame("x' OR '1'='1", db=db)
    assert _table_counts(Database(db))["batch_log"] == 0


# --- user SQL is read-only -----------------------------------------------------------------------

# tests/test_store_queries.py::test_sql_runs_selects_and_refuses_writes_and_files covers DROP,
# DELETE, ATTACH, a SELECT followed by a DELETE, and read_csv of a file; these add the rest.
REFUSED_STATEMENTS = [
    "COPY result TO 'stolen.csv'",
    "COPY result FROM 'planted.csv'",
    "EXPORT DATABASE 'elsewhere'",
    "IMPORT DATABASE 'elsewhere'",
    "PRAGMA database_list",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET enable_external_access = true",
    "SET threads = 1",
    "RESET threads",
    "CREATE TABLE stolen AS SELECT * FROM result",
    "CREATE VIEW v AS SELECT 1",
    "CREATE MACRO m(a) AS a",
    "CREATE SECRET s (TYPE s3, KEY_ID 'k', SECRET 's')",
    "INSERT INTO result (batch_id) VALUES ('x')",
    "UPDATE batch_log SET status = 'hacked'",
    "ALTER TABLE result ADD COLUMN evil INTEGER",
    "DETACH log",
    "USE memory",
    "VACUUM",
    "CHECKPOINT",
    "CALL pragma_version()",
    "BEGIN TRANSACTION",
    "COMMIT",
    "SELECT 1; COMMIT; DROP TABLE result",
    "SELECT 1; UPDATE batch_log SET status = 'hacked'",
    "EXPLAIN ANALYZE DELETE FROM result",
    "EXPLAIN ANALYZE SET threads = 1",
    "explain   analyse UPDATE batch_log SET status = 'hacked'",
]
FAILING_SELECTS = [
    "WITH d AS (DELETE FROM result RETURNING *) SELECT * FROM d",  # a write inside a SELECT
    "WITH u AS (UPDATE batch_log SET status = 'hacked' RETURNING *) SELECT * FROM u",
    "SELECT * FROM read_text('/etc/hostname')",
    "SELECT * FROM read_blob('/etc/hostname')",
    "SELECT * FROM glob('/etc/*')",
    "SELECT * FROM sniff_csv('/etc/passwd')",
    "SELECT * FROM '/etc/passwd'",
    "SELECT * FROM query('DELETE FROM result')",
    "SELECT * FROM duckdb_secrets()",
    "SELECT getenv('GEMINI_API_KEY')",
]


@pytest.fixture(params=["file", "memory"])
def filled_log(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    db = Database(tmp_path / "log.duckdb" if request.param == "file" else ":memory:")
    sg.batch_generate(
        sg.create_batch_requests(["one", "two", "three"]),
        backend=FakeBackend(),
        db=db,
        models=[sg.ModelSpec("m", priority=1)],
    )
    return db


def test_user_sql_refuses_every_statement_that_is_not_a_select(filled_log: Database) -> None:
    before = _table_counts(filled_log)
    for statement in REFUSED_STATEMENTS:
        with pytest.raises(ConfigurationError, match="Only SELECT"):
            filled_log.sandboxed_select(statement)
    assert _table_counts(filled_log) == before


def test_a_select_can_neither_write_nor_reach_files(filled_log: Database) -> None:
    before = _table_counts(filled_log)
    status = filled_log.rows("SELECT status FROM batch_log")
    for statement in FAILING_SELECTS:
        try:
            filled_log.sandboxed_select(statement)
        except ConfigurationError:
            pass
        else:  # only the in-memory log runs a DML CTE, inside a transaction rolled back
            assert statement.startswith("WITH") and filled_log.path == ":memory:", statement
    assert _table_counts(filled_log) == before
    assert filled_log.rows("SELECT status FROM batch_log") == status
    assert filled_log.sandboxed_select("SELECT count(*) AS n FROM result")["n"].iloc[0] == 3


# SELECTs calling functions that act on DuckDB itself rather than read the log. Logging to a
# file aborted the interpreter (SIGABRT: a dead kernel) at the next query; the others changed
# the connection's state, which outlived the query's rollback; query() and
# json_execute_serialized_sql() run SQL given as text. {folder} is the test's own folder.
INSTANCE_CHANGING_SELECTS = [
    "SELECT * FROM enable_logging(storage='file', storage_path='{folder}/duckdb-log')",
    "SELECT * FROM \"Enable_Logging\" /* a comment */ (storage='file', storage_path='{folder}/b')",
    "SELECT * FROM enable_profiling()",
    "SELECT * FROM disable_logging()",
    "SELECT * FROM truncate_duckdb_logs()",
    "SELECT * FROM checkpoint()",
    "SELECT * FROM force_checkpoint()",
    "SELECT count(*) FROM result, main.checkpoint()",
    "SELECT * FROM query('SELECT * FROM enable_profiling()')",
    "SELECT * FROM json_execute_serialized_sql(json_serialize_sql('SELECT 1'))",
    "SELECT setseed(0.5)",
    "EXPLAIN SELECT * FROM enable_logging(storage='file', storage_path='{folder}/c')",
]

# Runs each statement on a log, then a plain query (where the abort struck), in a process of its
# own: an abort fails the test instead of killing pytest. Prints what each statement did and
# whether the log and DuckDB's settings stayed as they were.
INSTANCE_CHANGING_CHILD = """
import json, sys
import scriptgen_nb as sg
from scriptgen_nb.engine.backend import FakeBackend
from scriptgen_nb.engine.errors import ConfigurationError
from scriptgen_nb.store import Database

path, statements = sys.argv[1], json.loads(sys.argv[2])
db = Database(path)
requests = sg.create_batch_requests(["one", "two", "three"])
sg.batch_generate(requests, backend=FakeBackend(), db=db, models=[sg.ModelSpec("m", priority=1)])

def state():
    return [db.rows("SELECT name, value FROM duckdb_settings() ORDER BY name"),
            db.rows("SELECT batch_id, status FROM batch_log"),
            db.rows("SELECT count(*) FROM result")]

before = state()
outcomes = []
for statement in statements:
    try:
        db.sandboxed_select(statement)
        said = "ran"
    except ConfigurationError as exc:
        said = str(exc)
    outcomes.append([said, db.sandboxed_select("SELECT 1 AS one")["one"].tolist()])
print(json.dumps({"outcomes": outcomes, "unchanged": state() == before}))
"""


@pytest.mark.parametrize("where", ["file", "memory"])
def test_user_sql_cannot_change_duckdbs_state_or_take_the_process_down(
    where: str, tmp_path: Path
) -> None:
    """Before: `enable_logging(storage='file', ...)` passed the SELECT-only check, and the next
    query aborted the interpreter (SIGABRT, exit -6); enable_profiling(), checkpoint() and the
    rest ran. Now each is refused before it runs, the process lives on, nothing changed."""
    statements = [s.format(folder=tmp_path) for s in INSTANCE_CHANGING_SELECTS]
    path = str(tmp_path / "log.duckdb") if where == "file" else ":memory:"
    report = child_report(INSTANCE_CHANGING_CHILD, path, json.dumps(statements))
    for statement, (said, then) in zip(statements, report["outcomes"], strict=True):
        assert said.startswith("Only SELECT queries that read the call log"), (statement, said)
        assert then == [1], statement
    assert report["unchanged"]
    assert sorted(p.name for p in tmp_path.iterdir()) == (
        ["log.duckdb"] if path != ":memory:" else []
    )


def test_user_sql_may_call_the_table_functions_that_read(filled_log: Database) -> None:
    """What the refusal above leaves allowed: functions that make rows or describe the log, and
    a refused function's name inside a string or a comment."""
    allowed = {
        "SELECT count(*) AS n FROM range(4)": 4,
        "SELECT count(*) AS n FROM generate_series(1, 3)": 3,
        "SELECT count(*) AS n FROM (SELECT unnest([1, 2]))": 2,
        "SELECT count(*) AS n FROM json_each('[1, 2, 3]')": 3,
        "SELECT count(*) AS n FROM duckdb_tables() WHERE table_name = 'result'": 1,
        "SELECT count(*) AS n FROM pragma_table_info('result') WHERE name = 'text'": 1,
        "SELECT count(*) AS n FROM result WHERE text <> 'checkpoint()' -- enable_logging()": 3,
    }
    for statement, rows in allowed.items():
        assert filled_log.sandboxed_select(statement)["n"].iloc[0] == rows, statement


# --- the emulator's exposure ---------------------------------------------------------------------


def test_the_emulator_binds_loopback_by_default() -> None:
    with Emulator(EmulatorConfig(latency_scale=0.0)) as emu:
        assert emu.host == "127.0.0.1" and emu.base_url.startswith("http://127.0.0.1:")
        assert emu._server is not None and emu._server.server_address[0] == "127.0.0.1"


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "example.com", ""])
def test_the_emulator_refuses_a_non_loopback_host_unless_allowed(host: str) -> None:
    with pytest.raises(ValueError, match="allow_remote=True"):
        Emulator(EmulatorConfig(latency_scale=0.0), host=host)
    Emulator(EmulatorConfig(latency_scale=0.0), host=host, allow_remote=True)  # not started


def test_remote_serving_binds_all_interfaces_only_when_asked() -> None:
    with Emulator(EmulatorConfig(latency_scale=0.0), host="0.0.0.0", allow_remote=True) as emu:
        assert emu._server is not None and emu._server.server_address[0] == "0.0.0.0"


def test_the_emulator_command_refuses_a_remote_host_without_allow_remote() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "scriptgen_nb.emulator", "--host", "0.0.0.0", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and "--allow-remote" in done.stderr


def _post(emu: Emulator, headers: dict[str, str], body: bytes = b"") -> tuple[int, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=10)
    try:
        connection.request("POST", f"/v1beta/models/{MODEL}:generateContent", body, headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


GOOD_BODY = json.dumps({"contents": [{"parts": [{"text": "hello"}]}]}).encode()


def test_configured_keys_are_required(emulator: Emulator) -> None:
    status, body = _post(emulator, {}, GOOD_BODY)  # no key at all
    assert (status, body["error"]["status"]) == (403, "PERMISSION_DENIED")
    status, body = _post(emulator, {"x-goog-api-key": WRONG_KEY}, GOOD_BODY)
    assert (status, body["error"]["status"]) == (400, "INVALID_ARGUMENT")
    assert "API_KEY_INVALID" in json.dumps(body) and WRONG_KEY not in json.dumps(body)
    assert emulator.counters()["models"][MODEL]["successes"] == 0


def test_without_configured_keys_any_non_empty_key_passes_but_none_does_not() -> None:
    config = EmulatorConfig(latency_scale=0.0, models={MODEL: ModelConfig()})
    with Emulator(config) as emu:
        assert _post(emu, {"x-goog-api-key": "anything"}, GOOD_BODY)[0] == 200
        status, body = _post(emu, {}, GOOD_BODY)
        assert (status, body["error"]["status"]) == (403, "PERMISSION_DENIED")


def test_a_body_just_over_the_limit_is_refused_with_googles_error() -> None:
    limit = 64 * 1024
    config = EmulatorConfig(latency_scale=0.0, max_body_bytes=limit, models={MODEL: ModelConfig()})
    with Emulator(config) as emu:
        padded = GOOD_BODY[:-1] + b"," + b'"pad": "' + b"x" * limit + b'"}'
        over = padded[: limit + 1]
        status, body = _post(emu, {"x-goog-api-key": KEY}, over)
        assert status == 400 and body["error"]["status"] == "INVALID_ARGUMENT"
        assert body["error"]["message"] == f"Request payload size exceeds the limit: {limit} bytes."
        assert _post(emu, {"x-goog-api-key": KEY}, GOOD_BODY)[0] == 200  # still serving
        assert emu.counters()["models"][MODEL]["requests"] == 1  # the big one never reached it


def test_the_default_limit_is_20_mib_and_an_oversized_body_is_not_read() -> None:
    """Only the headers are sent: the answer comes at once, without waiting for 20 MiB."""
    assert MAX_BODY_BYTES == 20 * 1024 * 1024
    with Emulator(EmulatorConfig(latency_scale=0.0)) as emu:
        with socket.create_connection(("127.0.0.1", emu.port), timeout=10) as raw:
            raw.sendall(
                b"POST /v1beta/models/gemini-2.5-flash:generateContent HTTP/1.1\r\n"
                b"Host: localhost\r\nx-goog-api-key: k\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % (MAX_BODY_BYTES + 1)
            )
            answer = b""
            while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
                chunk = raw.recv(4096)
                if not chunk:
                    break
                answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400") and b"Connection: close" in head
        assert json.loads(body)["error"]["message"].endswith(f"{MAX_BODY_BYTES} bytes.")
