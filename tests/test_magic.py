"""The magics in a real in-process IPython shell, against the session's local emulator."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from IPython.core.error import UsageError
from pydantic import BaseModel

import scriptgen_nb as sg
from scriptgen_nb.emulator import EmulatorConfig, FaultConfig, ModelConfig
from scriptgen_nb.engine.identity import key_fingerprint
from scriptgen_nb.engine.models import default_catalogue
from scriptgen_nb.jupyter import cells
from scriptgen_nb.jupyter.endpoint import EMULATOR_KEY, SESSION, auto_config
from scriptgen_nb.jupyter.magic import BATCH, ScriptgenMagics, await_transformer
from tests.script_writer import LADDER, fake

MODEL = "gemini-3.5-flash-lite"


@pytest.fixture(autouse=True)
def fast_emulator(monkeypatch: pytest.MonkeyPatch, shell: Any) -> Iterator[Any]:
    for name in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    config = EmulatorConfig(
        api_keys=(),
        latency_scale=0.0,
        minute_s=2.0,
        day_s=60.0,
        models={MODEL: ModelConfig(), "gemini-2.5-flash-lite": ModelConfig()},
    )
    emulator = SESSION.start(config)
    SESSION.announced = True
    yield emulator
    SESSION.stop()


def cell(shell: Any, line: str, body: str) -> Any:
    return shell.run_cell_magic("scriptgen", line, body)


def line(shell: Any, text: str) -> Any:
    return shell.run_line_magic("scriptgen", text)


def test_a_cell_of_prompts_runs_as_a_batch_and_returns_a_dataframe(
    shell: Any, fast_emulator: Any
) -> None:
    frame = cell(
        shell,
        f"batch --model {MODEL} --operation GENERATE_SCRIPT",
        "A script about tides\nA script about moss\n\n",
    )
    assert isinstance(frame, pd.DataFrame)
    assert frame["success"].tolist() == [True, True]
    assert fast_emulator.counters()["models"][MODEL]["requests"] == 2


def test_output_variable_blocks_and_the_log(shell: Any, call_log_in_tmp: Path) -> None:
    body = "First prompt\nspans two lines\n---\nSecond prompt\n"
    assert cell(shell, f"batch -o scripts --model {MODEL} --project demo", body) is None
    scripts = shell.user_ns["scripts"]
    assert len(scripts) == 2 and scripts["success"].all()
    stats = line(shell, "stats")
    assert stats.usage["requests"].sum() == 2
    counted = line(shell, "sql SELECT count(*) AS n FROM result WHERE batch_id IS NOT NULL")
    assert counted["n"].iloc[0] == 2


def test_sql_runs_the_query_exactly_as_typed(
    shell: Any, call_log_in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cell(shell, f"batch --model {MODEL}", "A script about tides\nA script about moss\n")

    def first(query: str) -> Any:
        return line(shell, f"sql {query}").iloc[0, 0]

    # A literal that is also a column's name stays a literal (split and re-joined, it compared
    # the column with itself and matched every row).
    assert first("SELECT count(*) FROM result WHERE model = 'model'") == 0
    assert first(f"SELECT count(*) FROM result WHERE model = '{MODEL}'") == 2
    assert first("SELECT count(*) FROM result WHERE error_kind = 'timeout'") == 0
    assert first("SELECT 'it''s  two  spaces' AS said") == "it's  two  spaces"
    db = f"--db '{call_log_in_tmp}'"
    assert first(f"""{db} SELECT count(*) FROM result WHERE text NOT LIKE '%"never"%'""") == 2
    # IPython's variable expansion ($name, {expression}) is off: braces and dollars are DuckDB's.
    monkeypatch.setitem(shell.user_ns, "n", 5)  # taken out again: other tests list variables
    monkeypatch.setitem(shell.user_ns, "x", "PYX")
    assert bool(first("SELECT regexp_matches('aa', 'a{2}') AS m")) is True
    assert first("SELECT '{n*2}' AS a") == "{n*2}"
    assert first("SELECT '$x' || $$ and $x$$ AS a") == "$x and $x"
    assert first("SELECT {'k': 1}.k AS s") == 1
    typed = shell.run_cell("%scriptgen sql SELECT '{n*2}', regexp_matches('aa', 'a{2}') AS m")
    assert typed.success and typed.result.iloc[0].tolist() == ["{n*2}", True]


def test_over_renders_the_cell_per_row(shell: Any, fast_emulator: Any) -> None:
    shell.user_ns["chapters"] = pd.DataFrame(
        {"id": ["c1", "c2"], "title": ["Tides", "Moss"], "n": [1, 2]}
    )
    frame = cell(
        shell,
        f"batch --over chapters --model {MODEL}",
        "Chapter {n}: write about {title}. Keep {{braces}}.",
    )
    assert frame["id"].tolist() == ["c1", "c2"]
    assert fast_emulator.attempts_for("Chapter 2: write about Moss. Keep {braces}.") == 1


def test_over_returns_the_tables_columns_beside_the_results_and_again_when_cached(
    shell: Any, fast_emulator: Any
) -> None:
    shell.user_ns["chapters"] = pd.DataFrame(
        {"id": [1, 2], "topic": ["Tides", "Moss"], "audience": ["children", "sailors"]}
    )
    body = "Write about {topic} for {audience}."
    first = cell(shell, f"batch --over chapters --model {MODEL}", body)
    again = cell(shell, f"batch --over chapters --model {MODEL}", body)
    for frame in (first, again):
        assert list(frame.columns[:5]) == ["input_id", "topic", "audience", "id", "success"]
        assert frame["audience"].tolist() == ["children", "sailors"]
        assert frame["input_id"].tolist() == [1, 2] and frame["id"].tolist() == ["1", "2"]
    assert first["cached"].tolist() == [False, False] and again["cached"].tolist() == [True, True]
    assert fast_emulator.attempts_for("Write about Moss for sailors.") == 1


def test_vars_fill_names_and_schema_parses(shell: Any) -> None:
    class Title(BaseModel):
        title: str

    shell.user_ns.update(topic="lighthouses", Title=Title)
    frame = cell(shell, f"batch --vars --schema Title --model {MODEL}", "A title about {topic}")
    assert isinstance(frame["data"].iloc[0], dict) and "title" in frame["data"].iloc[0]


def test_dry_run_estimates_and_sends_nothing(shell: Any, fast_emulator: Any) -> None:
    estimate = cell(shell, f"batch --dry-run --model {MODEL} --max-tokens 500", "a\nb\nc")
    assert estimate["requests"].iloc[0] == 3 and estimate["max_output_tokens"].iloc[0] == 1500
    assert estimate["cost_usd"].iloc[0] > 0
    assert fast_emulator.counters()["models"][MODEL]["requests"] == 0


def test_a_comment_at_the_end_of_a_magic_line_is_a_comment(
    shell: Any, fast_emulator: Any, tmp_path: Path
) -> None:
    """Before, `%scriptgen models  # which ones?` failed with "unrecognized arguments: #..."; a
    trailing comment reads as it does in Python, and a quoted `#` stays part of its value."""
    estimate = cell(shell, f"batch --dry-run --model {MODEL}  # only an estimate", "a\nb")
    assert estimate["requests"].iloc[0] == 2
    assert line(shell, "models  # which ones?") is not None
    with pytest.raises(UsageError, match=r"no call log at .*#1"):
        line(shell, f"stats --db '{tmp_path}/#1.duckdb'  # quoted, so part of the path")
    assert fast_emulator.counters()["models"][MODEL]["requests"] == 0


def test_quota_says_where_the_batch_shares_its_quota(
    shell: Any, tmp_path: Path, quota_ledger_in_tmp: Path
) -> None:
    cell(shell, f"batch --model {MODEL} --cache off --quota {tmp_path}/mine.sqlite", "a haiku")
    assert (tmp_path / "mine.sqlite").exists() and not quota_ledger_in_tmp.exists()
    cell(shell, f"batch --model {MODEL} --cache off --quota off", "a haiku")
    assert not quota_ledger_in_tmp.exists()
    cell(shell, f"batch --model {MODEL} --cache off", "a haiku")
    assert quota_ledger_in_tmp.exists()


@pytest.mark.parametrize(
    ("magic_line", "body", "message"),
    [
        ("batch --concurrency lots", "x", "--concurrency"),
        ("batch --schema Missing", "x", "no variable"),
        ("batch --over nowhere", "{a}", "no variable"),
        ("batch --bogus", "x", "unrecognized arguments"),
        ("stats", "x", "runs 'batch' only"),
    ],
)
def test_bad_cells_raise_usage_errors(shell: Any, magic_line: str, body: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        cell(shell, magic_line, body)


def test_bad_lines_raise_usage_errors(shell: Any) -> None:
    for text, message in [
        ("", "Say what to do"),
        ("fly", "Unknown command"),
        ("batch", "cell magic"),
        ("chart pie", "invalid choice"),
    ]:
        with pytest.raises(UsageError, match=message):
            line(shell, text)


def test_reading_a_log_that_does_not_exist_says_so_and_creates_none(
    shell: Any, tmp_path: Path
) -> None:
    """Before, `%scriptgen stats` on a mistyped --db created an empty log there and showed
    nothing; now each reading command says there is no log yet, as `scriptgen stats` does."""
    missing = tmp_path / "typo.duckdb"
    for command, rest in (("stats", ""), ("sql", "SELECT 1"), ("chart", "cost"), ("limits", "")):
        with pytest.raises(UsageError, match=rf"%scriptgen {command}: no call log at .*typo"):
            line(shell, f"{command} --db {missing} {rest}")
    assert line(shell, f"models --db {missing}") is not None  # the catalogue alone
    assert list(tmp_path.iterdir()) == []


def test_help_covers_every_command() -> None:
    doc = ScriptgenMagics.scriptgen.__doc__ or ""
    for word in (
        "--over",
        "--dry-run",
        "--await",
        "%scriptgen stats",
        "%scriptgen retry",
        "--failed",
        "--all",
        "--models",
        "--top-p",
        "--seed",
        "--timeout",
        "--max-attempts",
        "%scriptgen project",
        "%scriptgen limits",
        "--forget-all",
        "--tier",
    ):
        assert word in doc


def test_retry_reruns_only_what_failed(shell: Any) -> None:
    line(shell, "emulator start --day-s 1.5 --latency-scale 0")
    emulator = SESSION.emulator
    assert emulator is not None
    emulator.update_model(MODEL, rpd=2)
    first = cell(shell, f"batch --model {MODEL} --concurrency 1", "one\ntwo\nthree\nfour")
    assert first["success"].tolist() == [True, True, False, False]
    deadline = time.monotonic() + 10
    while True:  # the log keeps the model out until its (compressed) day resets
        row = line(shell, "models").set_index("model").loc[MODEL]
        if pd.isna(row["exhausted_for_s"]) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    again = line(shell, "retry --failed")  # the default, still accepted
    assert sorted(again["id"]) == ["2", "3"] and again["success"].all()
    assert emulator.attempts_for("one") == 1  # only the two that had not run were sent again
    assert emulator.attempts_for("three") == 2


def test_models_shows_the_catalogue_with_what_was_used(shell: Any) -> None:
    cell(shell, f"batch --model {MODEL}", "count me")
    models = line(shell, "models")
    row = models[models["model"] == MODEL].iloc[0]
    assert row["sent_today"] >= 1 and row["rpm"] > 0


def test_charts_show_as_images_not_as_a_figures_repr(shell: Any) -> None:
    # A kernel shows a returned Figure as `<Figure size ...>` text unless something gives it a
    # PNG (pyplot's hooks, which the charts never import); the browser test found the
    # quickstart's charts shown so. A chart carries its own PNG.
    from scriptgen_nb.jupyter.charts import Chart

    cell(shell, f"batch --model {MODEL}", "chart me")
    figure = line(shell, "chart throughput")
    assert isinstance(figure, Chart)
    png = shell.display_formatter.formatters["image/png"]
    was = png.enabled
    png.enabled = True  # the terminal test shell leaves image/png off; a kernel has it on
    try:
        assert png(figure)[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        png.enabled = was


def test_emulator_commands(shell: Any) -> None:
    assert "emulator at http://127.0.0.1" in line(shell, "emulator status")
    assert line(shell, "emulator stop") == "stopped"
    assert line(shell, "emulator stop") == "no local emulator was running"
    started = line(shell, "emulator start --minute-s 3 --latency-scale 0")
    assert "a 'minute' is 3s" in started


def test_no_key_starts_the_emulator_and_says_so_once(
    shell: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    SESSION.stop()
    SESSION.announced = False
    SESSION.start(auto_config())
    SESSION.stop()
    _, note = SESSION.options()
    assert note and "No GEMINI_API_KEY set" in note and "local Gemini emulator" in note
    assert SESSION.options()[1] is None  # said once


def test_await_cells_are_rewritten_into_an_await() -> None:
    rewritten = await_transformer(["%%scriptgen batch --await -o out\n", "a prompt\n"])
    assert len(rewritten) == 1 and rewritten[0].startswith("await ")
    assert "run_batch_awaited('batch --await -o out', 'a prompt\\n')" in rewritten[0]
    untouched = ["%%scriptgen batch\n", "a prompt\n"]
    assert await_transformer(untouched) == untouched


def test_an_awaited_cell_runs_on_the_shells_loop(shell: Any) -> None:
    outcome = shell.run_cell(f"%%scriptgen batch --await -o awaited --model {MODEL}\nhello\n")
    assert outcome.success, outcome.error_in_exec
    assert shell.user_ns["awaited"]["success"].tolist() == [True]


def test_reload_and_config(shell: Any) -> None:
    shell.run_line_magic("reload_ext", "scriptgen_nb")
    assert shell.input_transformers_cleanup.count(await_transformer) == 1
    shell.run_line_magic("config", f"ScriptgenMagics.default_models = '{MODEL}'")
    frame = cell(shell, "batch", "uses the configured model")
    assert frame["model"].tolist() == [MODEL]
    shell.run_line_magic("config", "ScriptgenMagics.default_models = ''")


def test_cell_parsing_rules() -> None:
    assert cells.literal_prompts("a\n\n b \n") == ["a", "b"]
    assert cells.literal_prompts("one\ntwo\n---\nthree") == ["one\ntwo", "three"]
    with pytest.raises(ValueError, match="no prompt"):
        cells.literal_prompts("  \n")
    with pytest.raises(ValueError, match=r"\{missing\}.*available: n"):
        cells.templated_prompts("{missing}", [{"n": 1}])
    items = cells.templated_prompts("#{n}", [{"n": 1}, {"n": 2}])
    assert [i["prompt"] for i in items] == ["#1", "#2"]
    assert items[0]["metadata"]["template_hash"] == items[1]["metadata"]["template_hash"]


def test_project_shows_each_chapters_script_versions_and_last_failure(
    shell: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    pid = sg.create_project("Status", chapters=[{"title": t} for t in ("Tides", "Moss", "Light")])
    sg.generate_scripts(pid, backend=fake(fail={"ch-2"}), models=LADDER)
    sg.regenerate(pid, [3], backend=fake(), models=LADDER)
    status = line(shell, f"project {pid}")
    assert status["title"].tolist() == ["Tides", "Moss", "Light"]
    assert status["version"].fillna(0).tolist() == [1, 0, 2]
    assert status["versions"].tolist() == [1, 0, 2]
    assert status["last_failure"].fillna("").tolist() == [
        "",
        "invalid_request: cannot write ch-2",
        "",
    ]
    out = capsys.readouterr().out
    assert f"Project {pid}: 3 chapters, 2 with a script, 1 whose last script request failed." in out
    with pytest.raises(UsageError, match=r"No project 'nowhere'.*known: status"):
        line(shell, "project nowhere")
    with pytest.raises(UsageError, match="project_id"):
        line(shell, "project")


def test_over_renders_a_projects_chapters_frame(shell: Any, fast_emulator: Any) -> None:
    pid = sg.create_project(
        "Over",
        chapters=[{"title": "Tides", "summary": "Sea."}, {"title": "Moss", "summary": "Land."}],
    )
    shell.user_ns["chapters"] = sg.chapters_frame(pid)
    frame = cell(
        shell,
        f"batch --over chapters --model {MODEL} --operation GENERATE_SCRIPT --project {pid}",
        "Chapter {number} ({id}): {title}. {summary}",
    )
    assert frame["id"].tolist() == ["ch-1", "ch-2"] and frame["success"].all()
    assert fast_emulator.attempts_for("Chapter 2 (ch-2): Moss. Land.") == 1
    usage = sg.CallStore().sql(f"SELECT DISTINCT operation FROM request WHERE project_id = '{pid}'")
    assert usage["operation"].tolist() == ["GENERATE_SCRIPT"]


def test_limits_shows_what_a_batch_learned_here_and_forgets_it(
    shell: Any, fast_emulator: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    fast_emulator.update_model(MODEL, rpm=2)  # the catalogue's guess is higher: a 429 states 2
    try:
        frame = cell(shell, f"batch --model {MODEL} --concurrency 4", "one\ntwo\nthree")
    finally:
        fast_emulator.update_model(MODEL, rpm=ModelConfig().rpm)
    assert frame["success"].all()
    capsys.readouterr()
    here = f"{fast_emulator.base_url}, key {key_fingerprint(EMULATOR_KEY)}"
    shown = line(shell, "limits")
    assert capsys.readouterr().out.startswith(f"limits remembered for {here} (each for 7 days")
    assert shown[["model", "metric", "limit"]].values.tolist() == [[MODEL, "rpm", 2]]
    assert shown["endpoint"].tolist() == [fast_emulator.base_url]
    models = line(shell, "models").set_index("model")
    assert models.loc[MODEL, "learned"].startswith("rpm 2 (")
    assert models.loc[MODEL, "rpm"] > 2  # the catalogue's figure, beside it
    # A model with nothing remembered (a typo, or not this endpoint's) is refused, not "forgot 0".
    refused = "--forget gemini-3.5-flash-lit: no limits are remembered for gemini-3.5-flash-lit"
    with pytest.raises(UsageError, match=re.escape(refused)) as typo:
        line(shell, "limits --forget gemini-3.5-flash-lit")
    assert f"Did you mean {MODEL}" in str(typo.value)
    assert f"(Remembered for: {MODEL}.)" in str(typo.value)
    with pytest.raises(UsageError, match=r"no limits are remembered for gemini-2\.5-flash-lite"):
        line(shell, "limits --forget gemini-2.5-flash-lite")
    assert line(shell, f"limits --forget {MODEL}").empty
    assert capsys.readouterr().out.startswith(f"forgot 1 remembered limit(s) of {MODEL} for {here}")
    assert line(shell, "limits --all").empty
    with pytest.raises(UsageError, match="not allowed with argument"):
        line(shell, f"limits --forget {MODEL} --forget-all")


def test_tier_picks_the_catalogues_limits_for_batches_and_models(shell: Any) -> None:
    magics = shell.find_cell_magic("scriptgen").__self__
    _, options = magics.prepare_batch(BATCH.parse_args(["--tier", "tier1"]), "a prompt")
    spec = options["catalogue"].get(MODEL)
    assert spec.rpm == default_catalogue("tier1").get(MODEL).rpm and spec.minute_s == 2.0
    free = line(shell, "models").set_index("model").loc[MODEL, "rpm"]
    paid = line(shell, "models --tier tier1").set_index("model").loc[MODEL, "rpm"]
    assert (free, paid) == (
        default_catalogue("free").get(MODEL).rpm,
        default_catalogue("tier1").get(MODEL).rpm,
    )
    for text in (f"batch --model {MODEL} --tier gold", "batch --tier"):
        with pytest.raises(UsageError, match="--tier"):
            cell(shell, text, "a prompt")
    with pytest.raises(UsageError) as caught:
        cell(shell, "batch --tier gold", "a prompt")
    assert str(caught.value) == "--tier 'gold': use one of free, tier1."
    with pytest.raises(UsageError, match="use one of free, tier1"):
        line(shell, "retry --failed --tier gold")


def test_model_accepts_a_name_only_the_endpoint_lists(shell: Any, fast_emulator: Any) -> None:
    fast_emulator.set_model("gemini-4-argon", ModelConfig())
    frame = cell(shell, "batch --model gemini-4-argon", "A script about tides\n")
    assert frame["success"].tolist() == [True] and frame["model"].tolist() == ["gemini-4-argon"]
    assert frame["cost_usd"].isna().all()  # its price is unknown: NaN, not $0
    estimate = cell(shell, "batch --model gemini-4-argon --dry-run", "A script about moss\n")
    assert estimate["cost_usd"].isna().all() and estimate["model"].tolist() == ["gemini-4-argon"]
    with pytest.raises(UsageError, match="Did you mean 'gemini-4-argon'"):
        cell(shell, "batch --model gemini-4-argn", "A script about gulls\n")


def test_thinking_level_reaches_the_requests(shell: Any, call_log_in_tmp: Path) -> None:
    cell(shell, f"batch --model {MODEL} --thinking-level LOW", "A script about fog\n")
    (config,) = sg.CallStore().sql("SELECT config FROM request")["config"]
    assert '"thinking_level":"low"' in config


# --- %scriptgen stats: one titled result -----------------------------------------------------


def test_stats_returns_one_titled_result_and_shows_nothing_when_assigned(
    shell: Any, capsys: pytest.CaptureFixture[str], call_log_in_tmp: Path
) -> None:
    """Before: `s = %scriptgen stats` displayed the last batches anyway, and `s` held only the
    usage report. Now nothing shows until `s` does, with both tables under headings."""
    cell(shell, f"batch -o done --model {MODEL} --operation GENERATE_SCRIPT", "One\nTwo")
    capsys.readouterr()
    assert shell.run_cell("s = %scriptgen stats").success
    assert capsys.readouterr().out == ""
    report = shell.user_ns["s"]
    assert report.usage["requests"].sum() == 2
    assert report.batches["operation"].tolist() == ["GENERATE_SCRIPT"]
    text = shell.display_formatter.format(report)[0]["text/plain"]
    assert text.startswith(f"scriptgen stats: the call log {call_log_in_tmp}\n")
    assert "Usage per operation and model, all time:" in text
    assert "The last batches, newest first:" in text and "GENERATE_SCRIPT" in text
    html = report._repr_html_()
    assert html.count("<h4>") == 2 and html.count("<table") == 2
    assert "<h4>The last batches, newest first</h4>" in html
    since = line(shell, "stats --since 1h")
    assert since.since.startswith("since ") and since.usage["requests"].sum() == 2


# --- bad input: one UsageError line in the magic's words --------------------------------------

BAD_CELLS = [
    (
        "unknown-model",
        f"batch --model {MODEL[:-1]}",
        "x",
        rf"Unknown model '{MODEL[:-1]}'.*"
        rf"Did you mean '{MODEL}'.*`%scriptgen models` lists the models",
    ),
    (
        "template-column",
        "batch --over topics",
        "About {topik}",
        r"\{topik\}, which is not in "
        r"the columns of topics \(available: topic, audience; did you mean \{topic\}\?\)",
    ),
    (
        "schema-not-a-schema",
        "batch --schema answer",
        "x",
        r"--schema answer: the variable holds "
        r"int 42, not a Pydantic model class or a JSON Schema dict",
    ),
    (
        "schema-shapeless-dict",
        "batch --schema shapeless",
        "x",
        r"--schema shapeless: .*not a "
        r"valid JSON Schema",
    ),
    (
        "temperature",
        "batch --temperature 9",
        "x",
        r"--temperature=9.0 is out of range: "
        r"--temperature must be from 0 to 2",
    ),
    ("budget", "batch --budget -1", "x", r"--budget=-1.0 is out of range"),
    ("deadline-without-auto", "batch --deadline 2h", "x", r"--deadline is for --mode auto"),
    (
        "thinking-level",
        "batch --thinking-level loud",
        "x",
        r"--thinking-level 'loud': use "
        r"minimal, low, medium, high",
    ),
    ("empty-system", "batch --system ''", "x", r"--system is empty"),
    ("over-not-a-table", "batch --over answer", "{a}", r"--over needs a DataFrame"),
    (
        "unknown-option",
        "batch --temprature 0.2",
        "x",
        r"unrecognized arguments: --temprature "
        r"0.2 \(`%%scriptgen\?` lists the options\)",
    ),
]


@pytest.mark.parametrize(
    ("magic_line", "body", "message"),
    [case[1:] for case in BAD_CELLS],
    ids=[case[0] for case in BAD_CELLS],
)
def test_bad_cell_input_is_one_usage_error_line_naming_what_to_change(
    shell: Any, fast_emulator: Any, magic_line: str, body: str, message: str
) -> None:
    """Before, these were tracebacks into the library (ConfigurationError, UnknownModelError)
    or said in Python's names (`budget_usd=-1.0`, `Request '0': temperature=9.0`)."""
    shell.user_ns.update(
        topics=pd.DataFrame({"topic": ["tides"], "audience": ["children"]}),
        answer=42,
        shapeless={"title": "str"},
    )
    with pytest.raises(UsageError, match=message) as caught:
        cell(shell, magic_line, body)
    said = str(caught.value)
    assert "\n" not in said and "budget_usd" not in said and "Request '" not in said
    assert all(m["requests"] == 0 for m in fast_emulator.counters()["models"].values())


BAD_LINES = [
    (
        "retry-unknown-batch",
        "retry --batch nope",
        r"--batch nope: no batch in the call log .*; "
        r"`%scriptgen stats` lists the batches",
    ),
    ("chart-unknown-batch", "chart cost --batch nope", r"--batch nope: no batch in the call log"),
    (
        "stats-since",
        "stats --since yesterday",
        r"%scriptgen stats --since 'yesterday': give a "
        r"duration ago \(90s, 30m, 1h, 2d, 1w\) or an ISO date/time",
    ),
    ("retry-max-tokens", "retry --max-tokens 0", r"--max-tokens=0 is out of range"),
    ("project-unknown", "project nowhere", r"No project 'nowhere'"),
    ("sql-write", "sql DELETE FROM result", r"Only SELECT queries"),
    (
        "emulator-config",
        "emulator start --config /nowhere.toml",
        r"%scriptgen emulator start: "
        r"cannot read emulator config /nowhere.toml",
    ),
    (
        "emulator-minute",
        "emulator start --minute-s -3",
        r"%scriptgen emulator start: "
        r"emulator.minute_s must be a positive number",
    ),
]


@pytest.mark.parametrize(
    ("text", "message"), [case[1:] for case in BAD_LINES], ids=[case[0] for case in BAD_LINES]
)
def test_bad_line_input_is_one_usage_error_line_naming_what_to_change(
    shell: Any, text: str, message: str
) -> None:
    """Before: tracebacks (`retry --batch nope`, `stats --since yesterday`, `project`, `sql`,
    the emulator's config) or, for `chart --batch nope`, an empty chart of no batch."""
    cell(shell, f"batch -o done --model {MODEL}", "a batch in the log")
    with pytest.raises(UsageError, match=message) as caught:
        line(shell, text)
    assert "\n" not in str(caught.value)


def test_vars_errors_list_the_users_variables_not_ipythons(shell: Any) -> None:
    """Before, the list was IPython's namespace: In, Out, _, _ih, exit, get_ipython, ..."""
    shell.run_cell("topic = 'lighthouses'\nimport math\n1 + 1\n")
    with pytest.raises(UsageError, match=r"\{topik\}.*your variables") as caught:
        cell(shell, f"batch --vars --model {MODEL}", "About {topik}")
    available = str(caught.value).split("(available: ")[1].split(";")[0].split(", ")
    assert "topic" in available and "did you mean {topic}?" in str(caught.value)
    hidden = {"In", "Out", "_", "_ih", "_oh", "exit", "quit", "get_ipython", "math", "_i1"}
    assert not hidden & set(available), available
    with pytest.raises(UsageError, match=r"--over nowhere: no variable .*\(yours: .*topic"):
        cell(shell, f"batch --over nowhere --model {MODEL}", "{topic}")


# --- retry: only what can succeed, with settings changed ------------------------------------


def test_retry_leaves_out_truncated_answers_until_max_tokens_is_raised(
    shell: Any, fast_emulator: Any, capsys: pytest.CaptureFixture[str], call_log_in_tmp: Path
) -> None:
    """Before: `retry --failed` sent the truncated answers again unchanged and paid again."""
    prompts = ["A script about tides", "A script about moss"]
    first = cell(shell, f"batch --model {MODEL} --max-tokens 5", "\n".join(prompts))
    assert first["error_kind"].tolist() == ["truncated", "truncated"]
    assert "re-run them with `%scriptgen retry --max-tokens N` (N above 5)" in (
        capsys.readouterr().out
    )
    assert line(shell, "retry") is None  # no --failed needed
    said = capsys.readouterr().out
    assert "nothing to retry with these settings; left out 2 truncated (raise --max-tokens " in said
    assert "above 5); --all includes them." in said
    assert [fast_emulator.attempts_for(p) for p in prompts] == [1, 1]  # nothing was paid again
    again = line(shell, "retry --max-tokens 4000")
    assert again["success"].tolist() == [True, True]
    assert [fast_emulator.attempts_for(p) for p in prompts] == [2, 2]
    configs = sg.CallStore().sql(
        "SELECT config FROM request JOIN batch_log USING (batch_id) ORDER BY started_at"
    )["config"]
    assert ['"max_output_tokens":4000' in c for c in configs] == [False, False, True, True]


def test_retry_leaves_out_safety_blocks_unless_all(
    shell: Any, fast_emulator: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    fast_emulator.update_model(MODEL, faults=FaultConfig(p_block=1.0))
    try:
        blocked = cell(shell, f"batch --model {MODEL}", "Unsafe one\nUnsafe two")
    finally:
        fast_emulator.update_model(MODEL, faults=FaultConfig())
    assert blocked["error_kind"].tolist() == ["blocked", "blocked"]
    assert "2 blocked (a new attempt meets the same answer): `%scriptgen retry --all` " in (
        capsys.readouterr().out
    )
    assert line(shell, "retry") is None
    assert "left out 2 blocked" in capsys.readouterr().out
    assert fast_emulator.attempts_for("Unsafe one") == 1
    assert line(shell, "retry --all")["success"].tolist() == [True, True]
    assert fast_emulator.attempts_for("Unsafe one") == 2


def test_retry_takes_the_batch_options(shell: Any, fast_emulator: Any) -> None:
    """Other models (`--models` too), settings for the requests and the batch's own options."""
    other = "gemini-2.5-flash-lite"
    fast_emulator.update_model(MODEL, faults=FaultConfig(p_500=1.0))
    try:
        failed = cell(shell, f"batch --model {MODEL} --max-attempts 1", "Busy one\nBusy two")
    finally:
        fast_emulator.update_model(MODEL, faults=FaultConfig())
    assert failed["error_kind"].tolist() == ["server_error", "server_error"]
    again = line(
        shell,
        f"retry --failed --models {other} --temperature 0.3 --top-p 0.5 --seed 7 "
        "--timeout 30 --max-attempts 2 --concurrency 2",
    )
    assert again["model"].tolist() == [other, other] and again["success"].all()
    config = sg.CallStore().sql("SELECT config FROM request")["config"].iloc[-1]
    assert '"temperature":0.3' in config and '"top_p":0.5' in config and '"seed":7' in config


def test_batch_takes_timeout_max_attempts_top_p_seed_and_models(
    shell: Any, call_log_in_tmp: Path
) -> None:
    magics = shell.find_cell_magic("scriptgen").__self__
    args = BATCH.parse_args(
        [
            "--models",
            MODEL,
            "--timeout",
            "7",
            "--max-attempts",
            "2",
            "--top-p",
            "0.4",
            "--seed",
            "9",
        ]
    )
    requests, options = magics.prepare_batch(args, "a prompt")
    assert (options["models"], options["timeout_s"], options["max_attempts"]) == (MODEL, 7.0, 2)
    assert (requests[0].top_p, requests[0].seed) == (0.4, 9)
    _, defaults = magics.prepare_batch(BATCH.parse_args([]), "a prompt")
    assert defaults["timeout_s"] == 60.0 and "max_attempts" not in defaults
    frame = cell(shell, f"batch --model {MODEL} --top-p 0.4 --seed 9", "A seeded prompt")
    assert frame["success"].all()
    (config,) = sg.CallStore().sql("SELECT config FROM request")["config"]
    assert '"top_p":0.4' in config and '"seed":9' in config


def test_no_magic_parser_takes_an_abbreviation_for_an_option(shell: Any) -> None:
    """Before, `--max 5` silently meant `--max-tokens 5` in a cell."""
    from scriptgen_nb.jupyter.magic import LINES

    assert not [p.prog for p in (BATCH, *LINES.values()) if p.allow_abbrev]
    with pytest.raises(UsageError, match="unrecognized arguments: --max 5"):
        cell(shell, f"batch --model {MODEL} --max 5 --dry-run", "x")
    with pytest.raises(UsageError, match="unrecognized arguments: --max-a 2"):
        line(shell, "retry --max-a 2")


def failed_batch(shell: Any, emulator: Any, body: str) -> pd.DataFrame:
    """A batch whose every request failed with a server error (one attempt each)."""
    emulator.update_model(MODEL, faults=FaultConfig(p_500=1.0))
    try:
        failed = cell(shell, f"batch --model {MODEL} --max-attempts 1", body)
    finally:
        emulator.update_model(MODEL, faults=FaultConfig())
    assert set(failed["error_kind"]) == {"server_error"}
    return failed


def test_retry_takes_mode_and_deadline_as_the_batch_does(
    shell: Any, fast_emulator: Any, call_log_in_tmp: Path
) -> None:
    """Before, `%scriptgen retry --mode batch_api` was refused: retry lacked the batch's --mode
    and --deadline."""
    failed_batch(shell, fast_emulator, "Busy one\nBusy two")
    with pytest.raises(UsageError, match="--deadline is for --mode auto"):
        line(shell, "retry --deadline 2h")
    again = line(shell, "retry --mode batch_api")
    assert again["success"].tolist() == [True, True]
    modes = sg.CallStore().sql("SELECT mode FROM batch_log ORDER BY started_at")["mode"]
    assert modes.tolist() == ["live", "batch_api"]


def test_an_interrupted_retry_says_in_one_line_what_it_kept_and_how_to_go_on(
    shell: Any,
    fast_emulator: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before, a Ctrl-C while `%scriptgen retry` ran ended in a BatchInterrupted traceback."""
    import _thread

    from scriptgen_nb.jupyter import magic

    failed_batch(shell, fast_emulator, "Busy one\nBusy two\nBusy three")
    capsys.readouterr()

    def interrupted_after_one(requests: Any, **options: Any) -> Any:
        def on_progress(done: int, total: int | None) -> None:
            if done == 1:
                _thread.interrupt_main()  # what the kernel's stop button does

        return sg.batch_generate(requests, on_progress=on_progress, **options)

    monkeypatch.setattr(magic, "batch_generate", interrupted_after_one)
    kept = line(shell, "retry --concurrency 1")
    said = capsys.readouterr().out.strip().splitlines()
    assert said == [
        "%scriptgen retry: with the batch's --max-attempts 1; give them to change them.",
        "Interrupted: 1 of 3 finished; the rest are marked not_run (`%scriptgen retry` runs them).",
    ]
    assert kept["success"].tolist() == [True, False, False]
    assert kept["error_kind"].tolist()[1:] == ["not_run", "not_run"]


def test_a_retry_carries_the_batchs_attempts_and_what_is_left_of_its_budget(
    shell: Any, fast_emulator: Any, capsys: pytest.CaptureFixture[str], call_log_in_tmp: Path
) -> None:
    """Before, a retry ran with the library's 6 attempts and no budget whatever the batch had
    been given, and a batch stopped by its budget was told to plain `%scriptgen retry`."""
    from scriptgen_nb.engine.runner import reserved_usage

    prompts = ["Budget one", "Budget two", "Budget three"]
    (request,) = sg.create_batch_requests([prompts[0]], max_output_tokens=500)
    spec = next(m for m in default_catalogue() if m.name == MODEL)
    one_request = spec.cost_usd(reserved_usage(request)) or 0.0  # what the first one reserves
    budget = round(one_request * 1.01, 8)
    flags = f"--model {MODEL} --max-tokens 500 --concurrency 1 --max-attempts 2"
    first = cell(shell, f"batch {flags} --budget {budget}", "\n".join(prompts))
    assert first["success"].tolist() == [True, False, False]
    said = capsys.readouterr().out
    assert (
        "2 not run: the batch stopped at its budget; `%scriptgen retry --budget USD` runs them "
        "with USD to spend (else what is left of the budget)"
    ) in said
    spent = float(first["cost_usd"].sum())
    again = line(shell, "retry")
    assert "with the batch's --max-attempts 2 and what is left of its --budget " in (
        capsys.readouterr().out
    )
    assert again["error_kind"].tolist() == ["not_run", "not_run"]  # too little left for one
    line(shell, "retry --budget 1")
    rows = (
        sg.CallStore()
        .sql("SELECT budget_usd, max_attempts FROM batch_log ORDER BY started_at")
        .values.tolist()
    )
    assert rows == [[budget, 2], [pytest.approx(budget - spent), 2], [1.0, 2]]


# --- a newcomer's rough edges ----------------------------------------------------------------


def newer_log(path: Path) -> Path:
    """A call log a newer scriptgen_nb migrated further than this one knows."""
    import duckdb

    from scriptgen_nb.store.database import Database, schema_version

    Database(path)
    with duckdb.connect(str(path)) as con:
        con.execute(
            "INSERT INTO schema_migration VALUES (?, 'future', now())", [schema_version() + 1]
        )
    return path


@pytest.mark.parametrize(
    ("make", "said"),
    [
        (lambda tmp: tmp, "is a folder, not a file: pass --db a file in it"),
        (lambda tmp: tmp / "notes.txt" / "x.duckdb", "is a file, not a folder. Pass --db a path"),
        (lambda tmp: tmp / "notes.txt", "not a DuckDB database this version can read"),
        (lambda tmp: newer_log(tmp / "newer.duckdb"), "was written by a newer scriptgen_nb"),
    ],
    ids=["folder", "under-a-file", "not-duckdb", "newer-schema"],
)
def test_a_bad_db_is_one_usage_error_naming_db_with_nothing_sent(
    shell: Any, fast_emulator: Any, tmp_path: Path, make: Any, said: str
) -> None:
    """Before: a file that was no DuckDB log raised a StoreError traceback from inside
    batch_generate (the reading magics too), and the other messages said `db=`."""
    (tmp_path / "notes.txt").write_text("not a log\n")
    db = make(tmp_path)
    before = fast_emulator.counters()["requests"]
    for run in (
        lambda: cell(shell, f"batch --model {MODEL} --db '{db}'", "never sent"),
        lambda: line(shell, f"retry --db '{db}'"),
        lambda: line(shell, f"stats --db '{db}'"),  # under a file: "no call log at ... yet"
    ):
        with pytest.raises(UsageError) as refused:
            run()
        message = str(refused.value)
        assert "--db" in message and "db=" not in message and "\n" not in message, message
        assert said in message or "no call log at" in message, message
    with pytest.raises(UsageError, match=re.escape(said)):
        cell(shell, f"batch --model {MODEL} --db '{db}'", "never sent")
    assert fast_emulator.counters()["requests"] == before


def test_a_base_url_without_a_key_is_named_not_the_local_emulator(
    shell: Any,
    fast_emulator: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Before: GOOGLE_GEMINI_BASE_URL set and no key gave the library's advice to run
    `with scriptgen_nb.Emulator() as emu: ...`, as if no endpoint had been chosen."""
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", fast_emulator.base_url)
    SESSION.announced = False
    with pytest.raises(UsageError) as refused:
        cell(shell, f"batch --model {MODEL}", "never sent")
    message = str(refused.value)
    assert message.startswith(
        f"no Gemini API key to send to {fast_emulator.base_url} (GOOGLE_GEMINI_BASE_URL): set "
        "GEMINI_API_KEY (or GOOGLE_API_KEY) to a key it accepts"
    ), message
    assert "unset GOOGLE_GEMINI_BASE_URL" in message and "Emulator()" not in message
    assert "local Gemini emulator at" not in capsys.readouterr().out


def test_a_chart_shows_the_latest_batch_unless_all_is_asked(shell: Any) -> None:
    """Before: latency, cost and errors charts covered the whole log by default, though the
    README said a chart shows the latest batch."""
    cell(shell, f"batch --model {MODEL}", "the first batch")
    cell(shell, f"batch --model {MODEL}", "the second batch")
    latest = line(shell, "stats").batches["batch_id"].iloc[0]
    for kind in ("throughput", "latency", "cost", "errors"):
        assert f"(batch {latest})" in repr(line(shell, f"chart {kind}")), kind
    assert "(all batches)" in repr(line(shell, "chart latency --all"))
    with pytest.raises(UsageError, match="throughput shows one batch over time"):
        line(shell, "chart throughput --all")
    with pytest.raises(UsageError, match="not allowed with argument"):
        line(shell, f"chart cost --all --batch {latest}")


def test_stats_of_one_batch_and_of_a_batch_nobody_knows(shell: Any) -> None:
    """Before: `%scriptgen stats --batch ID` was an unknown option (the CLI's stats has it)."""
    cell(shell, f"batch --model {MODEL}", "a batch to look at")
    latest = line(shell, "stats").batches["batch_id"].iloc[0]
    report = line(shell, f"stats --batch {latest}")
    assert report.summary["batch_id"].tolist() == [latest]
    assert f"Errors in batch {latest}:" in repr(report)
    with pytest.raises(UsageError) as unknown:
        line(shell, "stats --batch nope")
    assert str(unknown.value).startswith("--batch nope: no batch in the call log ")
    assert str(unknown.value).endswith("`%scriptgen stats` lists the batches.")


def test_sql_runs_one_statement_and_refuses_two(shell: Any) -> None:
    """Before: `SELECT 1; SELECT 2` ran both and showed the second's rows only."""
    cell(shell, f"batch --model {MODEL}", "a row to read")
    frame = line(shell, "sql SELECT '#a; b' AS said, count(*) AS n FROM result;")
    assert frame.values.tolist() == [["#a; b", 1]]
    with pytest.raises(UsageError, match="2 SQL statements given: run one query at a time"):
        line(shell, "sql SELECT 1 AS a; SELECT 2 AS b")


def test_a_truncated_answer_says_the_flag_to_raise(shell: Any, fast_emulator: Any) -> None:
    """Before: the error said `raise max_output_tokens`, a name no magic takes."""
    frame = cell(shell, f"batch --model {MODEL} --max-tokens 5", "Truncated test: tides")
    assert frame["error_kind"].tolist() == ["truncated"]
    assert "--max-tokens N" in frame["error_message"].iloc[0]
