"""The `scriptgen` command, run for real in a subprocess."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from scriptgen_nb.engine.identity import key_fingerprint
from scriptgen_nb.store import CallStore, Database, StoreError, schema
from tests.call_log_rows import FLASH, IMAGES, LITE, SCRIPT, fill, remember

SCRIPTGEN = [sys.executable, "-m", "scriptgen_nb.cli"]


def scriptgen(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SCRIPTGEN, *args], capture_output=True, text=True, timeout=120, env=env, check=False
    )


def test_demo_runs_a_batch_across_models_on_the_emulator_without_a_key() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("GEMINI_API_KEY", "GOOGLE_API_KEY")}
    done = scriptgen("demo", env=env)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "embedded Gemini emulator" in out
    rows = re.findall(r"^(gemini-[\w.-]+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s", out, re.MULTILINE)
    assert len(rows) >= 2  # figures for at least two models
    assert sum(int(ok) for _, _, ok, _, _ in rows) == 40
    assert re.search(r"^total: 40/40 requests succeeded", out, re.MULTILINE)
    assert "exhausted" in out  # the first model's day quota ran out and the batch rotated


def test_demo_rejects_a_bad_count() -> None:
    done = scriptgen("demo", "-n", "0")
    assert done.returncode == 2 and "--requests must be at least 1" in done.stderr


def output_to_a_closed_pipe(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a command whose stdout's reader is gone before it writes a byte (`| head` done)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [*SCRIPTGEN, *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            cwd=cwd,
            check=False,
        )
    finally:
        os.close(write_end)


# Every command that prints to stdout; {log} is a call log with two batches.
PRINTING = [
    ("models",),
    ("stats", "--db", "{log}"),
    ("batches", "--db", "{log}"),
    ("limits", "--db", "{log}"),
    ("jobs", "--db", "{log}"),
    ("run", "p.txt", "--dry-run"),
    ("run", "p.txt", "--emulator", "--quiet", "--db", "run.duckdb", "--out", "-"),
    ("run", "p.txt", "--emulator", "--quiet", "--db", "run.duckdb"),  # the results' table
]


@pytest.mark.parametrize("command", PRINTING, ids=" ".join)
def test_a_reader_that_closed_the_pipe_ends_the_command_quietly(
    command: tuple[str, ...], call_log: str, tmp_path: Path
) -> None:
    (tmp_path / "p.txt").write_text("A prompt\nAnother prompt\n")
    args = [arg.format(log=call_log) for arg in command]
    done = output_to_a_closed_pipe(*args, cwd=tmp_path)
    assert (done.returncode, done.stderr) == (1, "")  # no traceback, no "Exception ignored"


@pytest.mark.parametrize("mode", ["live", "auto"])
def test_a_dry_run_needs_no_key_and_leaves_nothing_behind(
    mode: str, tmp_path: Path, call_log_in_tmp: Path
) -> None:
    (tmp_path / "p.txt").write_text("A prompt\nAnother prompt\n")
    unset = ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL")
    keyless = {k: v for k, v in os.environ.items() if k not in unset}
    done = scriptgen("run", str(tmp_path / "p.txt"), "--dry-run", "--mode", mode, env=keyless)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("dry run: ") and "(nothing was sent)" in done.stdout
    assert "2 requests" in done.stdout and "on gemini-" in done.stdout
    assert not call_log_in_tmp.exists()  # SCRIPTGEN_DB: no call log created


def test_run_writes_parquet_that_pandas_reads_with_the_umasks_mode(tmp_path: Path) -> None:
    import pandas as pd

    (tmp_path / "p.txt").write_text("A prompt\nAnother prompt\n")
    out = tmp_path / "r.parquet"
    run = ("run", str(tmp_path / "p.txt"), "--emulator", "--quiet", "--out", str(out))
    done = subprocess.run(  # under umask 027: a group may read, others nothing
        ["sh", "-c", 'umask 027 && exec "$@"', "sh", *SCRIPTGEN, *run],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    frame = pd.read_parquet(out)  # pyarrow, a dependency: no engine to install
    assert frame["id"].tolist() == ["0", "1"] and frame["success"].all()


def test_main_leaves_the_interpreters_sigpipe_handling_alone(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from scriptgen_nb.cli import main

    before = signal.getsignal(signal.SIGPIPE)
    assert main(["models"]) == 0
    assert "gemini-" in capsys.readouterr().out
    # Restoring SIG_DFL here once let a later write to a closed socket kill the test run.
    assert signal.getsignal(signal.SIGPIPE) == before


def test_run_hands_back_the_sigterm_and_sighup_handlers_it_found(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from scriptgen_nb.cli import main

    (tmp_path / "p.txt").write_text("A prompt\n")
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    args = ["run", str(tmp_path / "p.txt"), "--dry-run", "--emulator", "-m", "gemini-2.5-flash"]
    assert main(args) == 0
    assert "dry run: 1 request" in capsys.readouterr().out
    assert {s: signal.getsignal(s) for s in before} == before


def test_help_lists_the_commands_and_the_emulators_own_options() -> None:
    top = scriptgen("--help")
    assert top.returncode == 0 and "demo" in top.stdout and "emulator" in top.stdout
    emulator = scriptgen("emulator", "--help")
    assert emulator.returncode == 0
    assert "usage: scriptgen emulator" in emulator.stdout and "--minute-s" in emulator.stdout


def test_emulator_command_rejects_a_bad_config_file(tmp_path: Path) -> None:
    bad = tmp_path / "emu.toml"
    bad.write_text("[models.m]\nrpm = 'ten'\n")
    done = scriptgen("emulator", "--port", "0", "--config", str(bad))
    assert done.returncode == 2 and "rpm" in done.stderr


# --- reading the call log ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def call_log(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A log file holding the two batches of tests/call_log_rows.py."""
    path = tmp_path_factory.mktemp("cli-log") / "calls.duckdb"
    fill(Database(path))
    return str(path)


def rows(out: str, title: str) -> list[list[str]]:
    """The whitespace-split rows of the printed table whose title starts with `title`."""
    (section,) = [block for block in out.split("\n\n") if block.startswith(title)]
    return [line.split() for line in section.splitlines()[2:]]  # after the title and header


def test_stats_prints_the_usage_report_and_the_last_batches(call_log: str) -> None:
    done = scriptgen("stats", "--db", call_log)
    assert done.returncode == 0, done.stderr
    assert rows(done.stdout, "real usage per operation and model, all time") == [  # costliest
        # operation, model, requests, successes, input, cached, output, thought, cost, unpriced
        [SCRIPT, FLASH, "3", "1", "100", "0", "200", "10", "0.001000", "0"],
        [IMAGES, FLASH, "3", "2", "110", "0", "170", "20", "0.000700", "0"],
        [SCRIPT, LITE, "4", "2", "210", "0", "330", "0", "0.000300", "0"],
        [IMAGES, LITE, "1", "1", "40", "0", "60", "0", "0.000050", "0"],
    ]
    # Newest first: id, state, operation, started, duration, the five counts, cost.
    assert [" ".join(row[:12]) for row in rows(done.stdout, "last batches")] == [
        f"b-images finished {IMAGES} 2026-03-02 11:00:00 3.5 3 3 0 0 0 0.000750",
        f"b-script finished {SCRIPT} 2026-03-02 10:00:00 7.0 4 3 1 0 0 0.001300",
    ]


def test_stats_keeps_simulated_spend_apart_from_real_spend(tmp_path: Path) -> None:
    """The images batch answered by an emulator: its figures are their own table, never in
    the real one, and the batches table says which batch was simulated."""
    path = tmp_path / "mixed.duckdb"
    db = Database(path)
    fill(db)
    with db.write() as con:
        con.execute("UPDATE batch_log SET simulated = true WHERE batch_id = 'b-images'")
    done = scriptgen("stats", "--db", str(path))
    assert done.returncode == 0, done.stderr
    real = rows(done.stdout, "real usage per operation and model, all time")
    simulated = rows(done.stdout, "simulated usage per operation and model (emulators")
    assert {row[0] for row in real} == {SCRIPT} and {row[0] for row in simulated} == {IMAGES}
    batches = {row[0]: row[12] for row in rows(done.stdout, "last batches")}
    assert batches == {"b-images": "True", "b-script": "False"}


def test_stats_for_one_batch_since_a_time_adds_its_summary_and_errors(call_log: str) -> None:
    done = scriptgen(
        "stats", "--db", call_log, "--since", "2026-03-02T10:30", "--batch", "b-script"
    )
    assert done.returncode == 0, done.stderr
    usage = rows(done.stdout, "real usage per operation and model, since 2026-03-02 10:30:00")
    assert [row[:2] for row in usage] == [[IMAGES, FLASH], [IMAGES, LITE]]
    summary = {row[0]: row[1:] for row in rows(done.stdout, "batch b-script:")}
    assert summary["requests_sent"] == ["7"] and summary["rate_limited"] == ["2"]
    assert summary["state"] == ["finished"] and summary["cost"] == ["0.001300"]
    assert sorted(row[:3] for row in rows(done.stdout, "errors in batch b-script:")) == [
        ["invalid_request", LITE, "1"],
        ["quota_exhausted", FLASH, "1"],
        ["rate_limited", FLASH, "1"],
        ["server_error", LITE, "1"],
    ]


def test_stats_refuses_an_unknown_batch_and_a_bad_time(call_log: str) -> None:
    unknown = scriptgen("stats", "--db", call_log, "--batch", "b-nope")
    assert unknown.returncode == 2 and unknown.stderr == (
        f"scriptgen stats: --batch b-nope: no batch in the call log {call_log}; "
        "`scriptgen batches` lists the batches.\n"
    )
    bad = scriptgen("stats", "--db", call_log, "--since", "yesterday")
    assert bad.returncode == 2 and "--since: Cannot read 'yesterday'" in bad.stderr


def test_batches_lists_the_newest_batches(call_log: str) -> None:
    done = scriptgen("batches", "--db", call_log, "-n", "1")
    assert done.returncode == 0, done.stderr
    assert [row[:2] for row in rows(done.stdout, "last batches")] == [["b-images", "finished"]]


def test_stats_on_an_empty_call_log_says_there_is_nothing_yet(tmp_path: Path) -> None:
    Database(tmp_path / "empty.duckdb")
    done = scriptgen("stats", "--db", str(tmp_path / "empty.duckdb"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("(none)") == 2  # the usage report and the batches


def test_a_missing_call_log_is_reported_and_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.duckdb"
    by_flag = scriptgen("stats", "--db", str(missing))
    by_env = scriptgen("batches", env={**os.environ, "SCRIPTGEN_DB": str(missing)})
    for done in (by_flag, by_env):
        assert done.returncode == 1 and done.stdout == ""
        assert f"no call log at {missing} yet; run a batch first or pass --db" in done.stderr
    assert not missing.exists()


def test_the_reading_commands_never_change_a_log_and_ask_to_migrate_an_older_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: `stats` and `batches` migrated (wrote) whatever log they opened, so a log on a
    read-only place could not be read, and one an older version still writes was changed under
    it. Now they open it read-only, leave it as it is, and say what to run to migrate it."""
    path = tmp_path / "old.duckdb"
    previous = schema.MIGRATIONS[:-1]
    with monkeypatch.context() as older:  # the log as the previous version left it
        older.setattr("scriptgen_nb.store.database.MIGRATIONS", previous)
        Database(path)
    before = path.read_bytes()
    said = (
        f"older schema (version {max(m.version for m in previous)}; this scriptgen_nb reads "
        f"version {schema.MIGRATIONS[-1].version})"
    )
    for command in ("stats", "batches", "models"):
        done = scriptgen(command, "--db", str(path))
        assert done.returncode == 2, (command, done.stdout)  # the --db to change: a usage error
        assert said in done.stderr and f"`scriptgen migrate --db {path}`" in done.stderr
    with pytest.raises(StoreError, match=re.escape(said)):
        CallStore(path, read_only=True)
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]  # no WAL beside it either
    migrated = scriptgen("migrate", "--db", str(path))
    assert migrated.returncode == 0, migrated.stderr
    assert rows(migrated.stdout, "schema (current):") == [[str(schema.MIGRATIONS[-1].version)]]
    assert scriptgen("stats", "--db", str(path)).returncode == 0


def test_help_of_the_log_commands_lists_their_options() -> None:
    stats, batches = scriptgen("stats", "--help"), scriptgen("batches", "--help")
    assert stats.returncode == batches.returncode == 0
    for option in ("--db PATH", "--since WHEN", "--batch ID", "30m, 1h, 2d", "SCRIPTGEN_DB"):
        assert option in stats.stdout
    for option in ("--db PATH", "-n LIMIT, --limit LIMIT", "(default: 20)"):
        assert option in batches.stdout


# --- limits: what was learned for this endpoint and key -----------------------------------------


def user_env(**more: str) -> dict[str, str]:
    """A Google user's environment: GEMINI_API_KEY set, no other key or endpoint."""
    hidden = ("GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL", "SCRIPTGEN_TIER", "SCRIPTGEN_DB")
    clean = {k: v for k, v in os.environ.items() if k not in hidden}
    return {**clean, "GEMINI_API_KEY": "the-users-key", **more}


def test_limits_shows_this_keys_remembered_limits_and_forgets_them(tmp_path: Path) -> None:
    path = str(tmp_path / "calls.duckdb")
    mine = key_fingerprint("the-users-key")
    db = Database(path)
    remember(db, "gemini-3.8-flash", 150, fingerprint=mine)
    remember(db, "gemini-3.8-flash", 40, metric="tpm", source="raised", fingerprint=mine)
    remember(db, "gemini-2.5-flash-lite", 9, fingerprint="someone-else")
    del db
    env = user_env()
    shown = scriptgen("limits", "--db", path, env=env)
    assert shown.returncode == 0, shown.stderr
    title = f"limits remembered for google, key {mine} (each for 7 days from when it was learned)"
    assert [row[:5] for row in rows(shown.stdout, title)] == [
        ["gemini-3.8-flash", "rpm", "150", "stated", "5"],
        ["gemini-3.8-flash", "tpm", "40", "raised", "5"],
    ]
    assert "the-users-key" not in shown.stdout
    every = scriptgen("limits", "--db", path, "--all", env=env)
    assert len(rows(every.stdout, "limits remembered for every endpoint and key")) == 3
    forgot = scriptgen("limits", "--db", path, "--forget", "gemini-3.8-flash", env=env)
    assert forgot.returncode == 0, forgot.stderr
    said = f"forgot 2 remembered limit(s) of gemini-3.8-flash for google, key {mine}"
    assert rows(forgot.stdout, said) == []  # "(none)" is left
    assert "(none)" in forgot.stdout
    others = scriptgen("limits", "--db", path, "--all", "--forget-all", env=env)
    assert "forgot 1 remembered limit(s) for every endpoint and key" in others.stdout


def test_a_db_that_is_no_call_log_is_a_usage_error_of_every_log_command(tmp_path: Path) -> None:
    """Before: exit status 1 (as for a damaged log), and the message said `db=`."""
    (tmp_path / "notes.txt").write_text("not a log\n")
    for db, said in ((tmp_path, "is a folder, not a file"), (tmp_path / "notes.txt", "DuckDB")):
        for command in ("stats", "batches", "models", "limits", "migrate"):
            done = scriptgen(command, "--db", str(db))
            assert done.returncode == 2, (command, done.stderr)
            [line] = done.stderr.splitlines()
            assert said in line and "--db" in line and "db=" not in line, line


def test_limits_refuses_to_forget_a_model_with_nothing_remembered(tmp_path: Path) -> None:
    """Before: `forgot 0 remembered limit(s) of gemini-3.8-flsh`, exit status 0."""
    path = str(tmp_path / "calls.duckdb")
    remember(Database(path), "gemini-3.8-flash", 150, fingerprint=key_fingerprint("the-users-key"))
    typo = scriptgen("limits", "--db", path, "--forget", "gemini-3.8-flsh", env=user_env())
    assert typo.returncode == 2 and typo.stdout == ""
    [line] = typo.stderr.splitlines()
    assert line.startswith(
        "scriptgen limits: --forget gemini-3.8-flsh: no limits are remembered for "
        "gemini-3.8-flsh at google, key "
    )
    assert "Did you mean gemini-3.8-flash" in line and "(Remembered for: gemini-3.8-flash.)" in line


def test_limits_refuses_a_missing_log_and_two_ways_to_forget(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.duckdb"
    absent = scriptgen("limits", "--db", str(missing), env=user_env())
    assert absent.returncode == 1 and "no call log at" in absent.stderr
    assert not missing.exists()
    both = scriptgen("limits", "--forget", "m", "--forget-all", env=user_env())
    assert both.returncode == 2 and len(both.stderr.splitlines()) == 1
    assert "not allowed with argument --forget" in both.stderr


def test_models_shows_the_remembered_limits_and_the_tiers_figures(tmp_path: Path) -> None:
    path = str(tmp_path / "calls.duckdb")
    remember(Database(path), "gemini-3.8-flash", 150, fingerprint=key_fingerprint("the-users-key"))
    free, paid, wrong = (
        scriptgen("models", "--db", path, *tier, env=user_env())
        for tier in ([], ["--tier", "tier1"], ["--tier", "gold"])
    )
    assert free.returncode == paid.returncode == 0, free.stderr + paid.stderr
    mine = key_fingerprint("the-users-key")
    assert free.stdout.startswith(f"learned: the limits remembered for google, key {mine}\n")
    flash = next(line for line in free.stdout.splitlines() if "gemini-3.8-flash " in line)
    assert "rpm 150 (stated by the service, learned " in flash
    rpm = {out: next(line.split()[2] for line in out.splitlines() if "3.8-flash " in line)
           for out in (free.stdout, paid.stdout)}  # fmt: skip
    assert rpm[free.stdout] != rpm[paid.stdout]
    assert wrong.returncode == 2
    assert wrong.stderr == "scriptgen models: --tier 'gold': use one of free, tier1.\n"


# --- run: what reaches the library -------------------------------------------------------------


class FakePlanned:  # mode batch_api|auto: the plan is shown, then run
    plan = "plan (mode=auto): live calls fit"

    def run(self, on_submitted: object = None) -> Any:
        from scriptgen_nb.results import ResultList

        return ResultList()


@pytest.fixture
def handed(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The options `scriptgen run` hands the library (`batch_generate`, `planned_batch`), in
    order; nothing is sent. GEMINI_API_KEY is set."""
    import scriptgen_nb.api
    from scriptgen_nb.results import ResultList

    seen: list[dict[str, Any]] = []

    def fake_batch_generate(requests: object, **options: Any) -> ResultList:
        seen.append(options)
        return ResultList()

    def fake_planned_batch(requests: object, **options: Any) -> FakePlanned:
        seen.append(options)
        return FakePlanned()

    monkeypatch.setattr(scriptgen_nb.api, "batch_generate", fake_batch_generate)
    monkeypatch.setattr(scriptgen_nb.api, "planned_batch", fake_planned_batch)
    monkeypatch.setenv("GEMINI_API_KEY", "test-key")
    return seen


def test_run_passes_mode_and_deadline_only_when_given(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    handed: list[dict[str, Any]],
) -> None:
    from scriptgen_nb.cli import main

    monkeypatch.setenv("SCRIPTGEN_MODELS", "gemini-2.5-flash-lite")
    (tmp_path / "p.txt").write_text("one\n")
    prompts = str(tmp_path / "p.txt")
    assert main(["run", prompts, "-q"]) == 0
    assert main(["run", prompts, "--mode", "auto", "--deadline", "2h", "-c", "4"]) == 0
    plain, chosen = handed
    assert "mode" not in plain and "deadline" not in plain
    assert plain["models"] == "gemini-2.5-flash-lite" and plain["cache"] == "use"
    assert "max_concurrency" not in plain and plain["timeout_s"] == 60.0  # the library's auto
    assert (chosen["mode"], chosen["deadline"], chosen["max_concurrency"]) == ("auto", "2h", 4)
    shown = capsys.readouterr()
    assert shown.out.count("(none)") == 2  # the (empty) results table
    assert shown.err.startswith("plan (mode=auto)")  # on stderr, before anything is sent


def test_jobs_offers_the_shared_job_actions() -> None:
    from scriptgen_nb.cli.jobs import JOB_ACTIONS
    from scriptgen_nb.commands import JOB_ACTIONS as SHARED

    assert JOB_ACTIONS == SHARED


def test_run_offers_the_call_logs_cache_modes() -> None:
    from scriptgen_nb.cli.options import CACHE_CHOICES
    from scriptgen_nb.store.session import CACHE_MODES

    assert CACHE_CHOICES == CACHE_MODES


def test_run_and_retry_take_a_tier_and_refuse_an_unknown_one_in_a_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], handed: list[dict[str, Any]]
) -> None:
    from scriptgen_nb.cli import main

    (tmp_path / "p.txt").write_text("one\n")
    prompts = str(tmp_path / "p.txt")
    assert main(["run", prompts, "-q", "--tier", "tier1"]) == 0
    assert main(["run", prompts, "-q", "--tier", "tier1", "--emulator"]) == 0
    assert main(["run", prompts, "-q"]) == 0
    paid, local, plain = handed
    assert paid["catalogue"].tier == local["catalogue"].tier == "tier1"
    assert next(iter(local["catalogue"])).minute_s < 60  # the local emulator's windows kept
    assert "catalogue" not in plain  # the library's: $SCRIPTGEN_TIER, else free
    capsys.readouterr()
    for command in (["run", prompts], ["retry", "--failed", "--db", str(tmp_path / "x.duckdb")]):
        assert main([*command, "--tier", "gold"]) == 2
        assert capsys.readouterr().err == (
            f"scriptgen {command[0]}: --tier 'gold': use one of free, tier1.\n"
        )


def _all_parsers(parser: Any) -> list[Any]:
    """`parser` and every sub-command's parser under it."""
    import argparse

    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found.extend(_all_parsers(sub))
    return found


def test_no_parser_takes_an_abbreviation_for_an_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before, `--max 5` silently meant `--max-tokens 5` (argparse's prefix matching), and
    `--max-a` `--max-attempts`: a typo or a guess became a setting nobody asked for."""
    from scriptgen_nb.cli import _parser, main
    from scriptgen_nb.emulator.__main__ import _parser as emulator_parser

    parsers = [*_all_parsers(_parser()), emulator_parser("scriptgen emulator")]
    assert len(parsers) > 10 and not [p.prog for p in parsers if p.allow_abbrev]
    (tmp_path / "p.txt").write_text("one\n")
    with pytest.raises(SystemExit) as exited:
        main(["run", str(tmp_path / "p.txt"), "--max", "5", "--dry-run"])
    assert exited.value.code == 2
    assert "unrecognized arguments: --max 5" in capsys.readouterr().err


def test_the_demo_says_each_figure_with_its_unit() -> None:
    """Before, the demo said `the service allows 15 rpm, not 15; pacing lowered` (the same
    figure twice, lowered to itself) and `parked for 3.296s: ...-FreeTier (limit 5)`."""
    import io

    from scriptgen_nb.demo import DemoReporter
    from scriptgen_nb.engine.errors import BackendError, QuotaViolation
    from scriptgen_nb.engine.policy import quota_summary
    from scriptgen_nb.engine.values import LimitLearned, ModelStateChanged

    per_minute = QuotaViolation("GenerateRequestsPerMinutePerProjectPerModel-FreeTier", "minute", 5)
    per_day = QuotaViolation("GenerateRequestsPerDayPerProjectPerModel-FreeTier", "day", 6)
    tokens = QuotaViolation("GenerateContentInputTokensPerModelPerMinute-FreeTier", "tokens", 9000)
    out = io.StringIO()
    say = DemoReporter(out, started=0.0)
    say(
        ModelStateChanged(
            "m",
            "parked",
            3.296,
            quota_summary(BackendError("rate_limited", "", violations=(per_minute,))),
        )
    )
    say(
        ModelStateChanged(
            "m",
            "exhausted",
            80.0,
            quota_summary(BackendError("quota_exhausted", "", violations=(per_day, tokens))),
        )
    )
    say(ModelStateChanged("m", "gone", None, "models/m is not found"))
    say(LimitLearned("m", "rpm", 15, 15, "stated"))
    say(LimitLearned("m", "rpm", 10, 5, "stated"))
    say(LimitLearned("m", "tpm", 250_000, 300_000, "raised"))
    said = [line.split("] ", 1)[1] for line in out.getvalue().splitlines()]
    assert said == [
        "m parked for 3.3s: GenerateRequestsPerMinutePerProjectPerModel-FreeTier (limit 5 "
        "requests per minute)",
        "m exhausted for 1m20s: GenerateRequestsPerDayPerProjectPerModel-FreeTier (limit 6 "
        "requests per day), GenerateContentInputTokensPerModelPerMinute-FreeTier (limit 9,000 "
        "input tokens per minute)",
        "m gone: models/m is not found",
        "m: the service allows 15 requests per minute, as the catalogue says; paced at that",
        "m: the service allows 5 requests per minute, not the catalogue's 10; paced at that",
        "m: paced at 300,000 input tokens per minute (raised: discovery; the catalogue says "
        "250,000)",
    ]
