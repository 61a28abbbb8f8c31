"""`scriptgen run`, `retry` and `models`, run for real in subprocesses against the emulator.

The subprocesses find the emulator as a user would: GOOGLE_GEMINI_BASE_URL and an API key in
their environment (SCRIPTGEN_TIER=tier1, so the catalogue's limits never slow a test down).
Independent commands start together and are collected afterwards: each pays about a second to
start, and two cores run them side by side.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest

from scriptgen_nb.cli import _parser
from scriptgen_nb.emulator import Emulator, EmulatorConfig, FaultConfig, ModelConfig
from scriptgen_nb.store import open_database

pytestmark = pytest.mark.integration

SCRIPTGEN = [sys.executable, "-m", "scriptgen_nb.cli"]
OK_MODEL = "gemini-3.5-flash-lite"
BAD_MODEL = "gemini-2.5-flash-lite"  # every answer is a safety block: failed, not retried
SLOW_MODEL = "gemini-3.8-flash"  # answers after 20 s: still in flight when interrupted
BLOCKED = FaultConfig(p_block=1.0)


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    config = EmulatorConfig(
        seed=5,
        models={
            OK_MODEL: ModelConfig(),
            BAD_MODEL: ModelConfig(faults=BLOCKED),
            SLOW_MODEL: ModelConfig(latency_base_s=20.0),
        },
    )
    with Emulator(config) as emu:
        yield emu


@pytest.fixture
def env(emulator: Emulator) -> dict[str, str]:
    """The environment of a user pointed at the emulator (SCRIPTGEN_DB: this test's log)."""
    clean = {k: v for k, v in os.environ.items() if k not in ("GOOGLE_API_KEY", "SCRIPTGEN_MODELS")}
    return {
        **clean,
        "GEMINI_API_KEY": "test-key",
        "GOOGLE_GEMINI_BASE_URL": emulator.base_url,
        "SCRIPTGEN_TIER": "tier1",
    }


@dataclass
class Call:
    args: tuple[str, ...]
    stdin: str | None = None
    cwd: Path | None = None
    env: dict[str, str] | None = None


def scriptgen(env: dict[str, str], *calls: Call) -> list[subprocess.CompletedProcess[str]]:
    """Run the commands side by side; their outcomes in the same order."""
    started = [
        (
            call,
            subprocess.Popen(
                [*SCRIPTGEN, *call.args],
                stdin=subprocess.PIPE if call.stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=call.cwd,
                env=call.env if call.env is not None else env,
            ),
        )
        for call in calls
    ]
    done = []
    for call, process in started:
        out, err = process.communicate(call.stdin, timeout=60)
        done.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    return done


def one(env: dict[str, str], *args: str, **more: Any) -> subprocess.CompletedProcess[str]:
    return scriptgen(env, Call(args, **more))[0]


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def requests_seen(emulator: Emulator) -> int:
    return sum(m["requests"] for m in emulator.counters()["models"].values())


# --- inputs and outputs ------------------------------------------------------------------------


def test_text_csv_jsonl_and_stdin_in_jsonl_csv_parquet_and_stdout_out(
    tmp_path: Path, env: dict[str, str], emulator: Emulator
) -> None:
    (tmp_path / "prompts.txt").write_text("Write about tides\n\n  Write about moss  \n")
    (tmp_path / "chapters.csv").write_text(
        'id,topic,audience\nc1,lighthouses,children\nc2,"tides, and moons",sailors\n'
    )
    title = {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}
    (tmp_path / "title.json").write_text(json.dumps(title))
    (tmp_path / "shapes.py").write_text(
        "from pydantic import BaseModel\n\nclass Title(BaseModel):\n    title: str\n"
    )
    (tmp_path / "requests.jsonl").write_text(
        '{"id": "a", "prompt": "A title for a film about moss", "metadata": {"n": 1}}\n'
        "\n"
        '{"id": "b", "prompt": "A title for a film about fog", "system": "Be brief."}\n'
    )
    piped = '{"id": "x", "prompt": "Piped prompt one"}\n{"prompt": "Piped prompt two"}\n'
    (tmp_path / "out").mkdir()
    models = ("--models", OK_MODEL)
    text, table, frame, stdin = scriptgen(
        env,
        Call(("run", "prompts.txt", *models, "--out", "out/text.jsonl"), cwd=tmp_path),
        Call(
            (
                "run",
                "chapters.csv",
                *models,
                "--template",
                "Write about {topic} for {audience}",
                "--schema",
                "title.json",
                "--db",
                "csv.duckdb",
                "--out",
                "out/chapters.csv",
            ),
            cwd=tmp_path,
        ),
        Call(
            (
                *("run", "requests.jsonl", *models, "--schema", "shapes:Title"),
                *("--db", "p.duckdb", "--out", "out/titles.parquet", "--operation", "TITLE"),
            ),
            cwd=tmp_path,
        ),
        Call(("run", "-", *models, "--quiet", "--db", "s.duckdb", "--out", "-"), stdin=piped),
    )

    for done in (text, table, frame, stdin):
        assert done.returncode == 0, done.stderr
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["chapters.csv", "text.jsonl", "titles.parquet"]

    rows = jsonl(out / "text.jsonl")  # text: one prompt per line, blank lines skipped
    assert [(r["id"], r["success"], r["model"]) for r in rows] == [
        ("0", True, OK_MODEL),
        ("1", True, OK_MODEL),
    ]
    assert all(r["text"] and r["error_kind"] is None and r["attempts"] == 1 for r in rows)
    assert emulator.attempts_for("Write about moss") == 1  # stripped, as a cell's lines are
    assert "finished: 2/2 done, 2 ok" in text.stderr  # the summary, though stderr is no TTY
    assert "wrote 2 results to out/text.jsonl" in text.stderr and "%|" not in text.stderr

    with (out / "chapters.csv").open(newline="") as f:  # CSV + template + JSON Schema file
        chapters = list(csv.DictReader(f))
    assert [(r["id"], r["success"]) for r in chapters] == [("c1", "True"), ("c2", "True")]
    assert "title" in json.loads(chapters[0]["data"])
    # The CSV's row comes back as fields (its `id` as input_id), not as one JSON string.
    assert [(r["input_id"], r["topic"], r["audience"]) for r in chapters] == [
        ("c1", "lighthouses", "children"),
        ("c2", "tides, and moons", "sailors"),
    ]
    assert "row" not in json.loads(chapters[1]["metadata"])
    assert emulator.attempts_for("Write about tides, and moons for sailors") == 1

    with duckdb.connect() as con:  # JSONL + a Pydantic model by module:Class, to Parquet
        parquet = con.execute(
            "SELECT id, success, data, metadata, error_kind FROM read_parquet(?) ORDER BY id",
            [str(out / "titles.parquet")],
        ).fetchall()
    assert [row[:2] for row in parquet] == [("a", True), ("b", True)]
    assert set(json.loads(parquet[0][2])) == {"title"} and json.loads(parquet[0][3]) == {"n": 1}
    assert parquet[1][4] is None

    assert stdin.stderr == ""  # --quiet
    piped_rows = [json.loads(line) for line in stdin.stdout.splitlines()]
    assert [(r["id"], r["success"]) for r in piped_rows] == [("x", True), ("1", True)]


def test_a_failed_request_exits_1_unless_allowed_and_retry_reruns_only_the_failures(
    tmp_path: Path, env: dict[str, str], emulator: Emulator, call_log_in_tmp: Path
) -> None:
    (tmp_path / "requests.jsonl").write_text(
        "".join(
            json.dumps(r) + "\n"
            for r in [
                {"id": "fine-1", "prompt": "Retry test: a fine prompt"},
                {"id": "bad", "prompt": "Retry test: a blocked prompt", "model": BAD_MODEL},
                {"id": "fine-2", "prompt": "Retry test: another fine prompt"},
            ]
        )
    )
    ladder = f"{OK_MODEL},{BAD_MODEL}"
    failing, allowed = scriptgen(
        env,
        Call(
            ("run", "requests.jsonl", "-m", ladder, "--out", "r.jsonl", "--progress"), cwd=tmp_path
        ),
        Call(
            ("run", "requests.jsonl", "-m", ladder, "--allow-failures", "--db", "other.duckdb"),
            cwd=tmp_path,
        ),
    )
    assert failing.returncode == 1, failing.stderr
    # A safety block meets the same answer again: the retry line says how to send it anyway.
    assert (
        "1 of 3 requests did not succeed (blocked); 1 blocked (a new attempt meets the same "
        in (failing.stderr)
    )
    assert " --all` includes them" in failing.stderr
    # The tqdm bar (forced onto a pipe): done/total and each model's state.
    assert "3/3" in failing.stderr and "3.5-flash-lite: ready (" in failing.stderr
    assert "2.5-flash-lite: ready (1 attempt)" in failing.stderr and "1 failed" in failing.stderr
    results = {r["id"]: r for r in jsonl(tmp_path / "r.jsonl")}
    assert results["bad"]["error_kind"] == "blocked" and results["fine-1"]["success"]

    assert allowed.returncode == 0, allowed.stderr
    table = allowed.stdout.splitlines()
    assert table[0].split()[:3] == ["id", "ok", "model"]
    assert any(line.split()[:2] == ["bad", "no"] and "blocked" in line for line in table)

    emulator.update_model(BAD_MODEL, faults=FaultConfig())  # the service has recovered
    try:
        batch_id = failing.stderr.split("scriptgen retry ")[1].split()[0]
        again, left, latest = scriptgen(
            env,
            Call(("retry", batch_id, "--all", "--out", "again.jsonl"), cwd=tmp_path),
            Call(("retry", batch_id, "--failed"), cwd=tmp_path),  # the default: not the block
            Call(("retry", "--failed", "--db", "nowhere.duckdb"), cwd=tmp_path),
        )
    finally:
        emulator.update_model(BAD_MODEL, faults=BLOCKED)
    assert left.returncode == 0 and left.stderr == (
        f"scriptgen retry: batch {batch_id}: nothing to retry with these settings; left out 1 "
        "blocked (a new attempt meets the same answer); --all includes them.\n"
    )
    assert again.returncode == 0, again.stderr
    assert [(r["id"], r["success"]) for r in jsonl(tmp_path / "again.jsonl")] == [("bad", True)]
    assert emulator.attempts_for("Retry test: a blocked prompt") == 3  # twice, then the retry
    assert emulator.attempts_for("Retry test: a fine prompt") == 2  # once per run, not retried
    assert latest.returncode == 2 and "no call log at nowhere.duckdb" in latest.stderr

    retried = again.stderr.split("scriptgen batch ")[1].split()[0]  # from its summary line
    nothing, models = scriptgen(env, Call(("retry", retried, "--failed")), Call(("models",)))
    assert nothing.returncode == 0 and "has no failed or not-run requests" in nothing.stderr
    # `models`: the catalogue, with what this log used at the emulator.
    assert models.returncode == 0, models.stderr
    said, header, *rows = models.stdout.splitlines()
    assert said.startswith(f"learned: the limits remembered for {emulator.base_url}, key ")
    assert header.split()[:7] == [
        "model",
        "priority",
        "rpm",
        "tpm",
        "rpd",
        "learned",
        "input_usd_per_1m",
    ]
    # sent_this_minute, sent_today, exhausted_for_s (this log), then every process's use of
    # the quota through the shared ledger: at least what this log sent, by other processes.
    used = {row.split()[0]: row.split()[-6:] for row in rows}
    assert used[OK_MODEL][:3] == ["2", "2", "-"] and used[BAD_MODEL][:3] == ["2", "2", "-"]
    assert int(used[OK_MODEL][3]) >= 2 and int(used[OK_MODEL][5]) >= 1
    assert "gemini-2.5-pro" in used and call_log_in_tmp.exists()


def test_a_dry_run_estimates_and_sends_nothing(
    tmp_path: Path, env: dict[str, str], emulator: Emulator
) -> None:
    (tmp_path / "p.txt").write_text("Dry one\nDry two\nDry three\n")
    before = requests_seen(emulator)
    done = one(
        env, "run", "p.txt", "--dry-run", "-m", OK_MODEL, "--max-tokens", "100", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert (
        done.stdout.startswith("dry run: 3 requests") and "up to 300 output tokens" in done.stdout
    )
    assert f"on {OK_MODEL}" in done.stdout and "(nothing was sent)" in done.stdout
    assert requests_seen(emulator) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.txt"]  # no log, no output


def test_a_rerun_with_emulator_is_served_from_the_cache(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """Each `--emulator` run starts its own emulator on a new port; the second is still served
    what the first answered (every emulator is one source of answers) and sends nothing."""
    keyless = {
        k: v for k, v in env.items() if k not in ("GEMINI_API_KEY", "GOOGLE_GEMINI_BASE_URL")
    }
    (tmp_path / "p.txt").write_text("A haiku about tides\nList 3 facts about moss\n")
    run = ("run", "p.txt", "--emulator", "--models", OK_MODEL, "-q")
    first = one(keyless, *run, "--out", "first.jsonl", cwd=tmp_path)
    again = one(keyless, *run, "--out", "again.jsonl", cwd=tmp_path)
    assert first.returncode == again.returncode == 0, first.stderr + again.stderr
    before, after = jsonl(tmp_path / "first.jsonl"), jsonl(tmp_path / "again.jsonl")
    assert [r["cached"] for r in before] == [False, False]
    assert [r["cached"] for r in after] == [True, True]
    assert [r["text"] for r in after] == [r["text"] for r in before]
    assert all(r["simulated"] for r in before + after)


def test_quota_says_where_the_batch_shares_its_quota(
    tmp_path: Path, env: dict[str, str], quota_ledger_in_tmp: Path
) -> None:
    """`--quota FILE` paces with the processes naming that file, `--quota off` alone; without
    it, SCRIPTGEN_QUOTA (here the test's own file) says where."""
    (tmp_path / "p.txt").write_text("A haiku about tides\n")
    run = ("run", "p.txt", "--models", OK_MODEL, "-q", "--cache", "off", "--out", "r.jsonl")
    mine = one(env, *run, "--quota", "mine.sqlite", cwd=tmp_path)
    assert mine.returncode == 0, mine.stderr
    assert (tmp_path / "mine.sqlite").exists() and not quota_ledger_in_tmp.exists()
    alone = one(env, *run, "--quota", "off", cwd=tmp_path)
    assert alone.returncode == 0, alone.stderr
    assert not quota_ledger_in_tmp.exists()
    default = one(env, *run, cwd=tmp_path)
    assert default.returncode == 0, default.stderr
    assert quota_ledger_in_tmp.exists()


def test_bad_input_exits_2_with_one_line_saying_what_to_do(
    tmp_path: Path, env: dict[str, str], emulator: Emulator, call_log_in_tmp: Path
) -> None:
    (tmp_path / "bad.jsonl").write_text('{"prompt": "fine"}\n{"prompt": "oops",}\n')
    (tmp_path / "typo.jsonl").write_text('{"prompt": "fine"}\n\n{"promt": "oops"}\n')
    (tmp_path / "empty.jsonl").write_text('{"prompt": "fine"}\n{"prompt": " "}\n')
    (tmp_path / "surrogate.jsonl").write_text('{"prompt": "fine"}\n{"prompt": "bad \\ud800"}\n')
    (tmp_path / "t.csv").write_text("topic\nlighthouses\n")
    (tmp_path / "latin1.txt").write_bytes(b"About {topic} \xe9t\xe9\n")
    (tmp_path / "p.txt").write_text("A prompt\n")
    hidden = ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL")
    nowhere = {k: v for k, v in env.items() if k not in hidden}  # no key, no endpoint
    out = ("--out", "r.jsonl")
    cases = {
        ("run", "nowhere.txt", *out): "nowhere.txt: no such file; pass a JSONL, CSV or text file",
        ("run", "bad.jsonl", *out): "bad.jsonl line 2: not valid JSON (Expecting property name",
        ("run", "typo.jsonl", *out): "typo.jsonl line 3: unknown field(s) promt; a line holds",
        ("run", "empty.jsonl", *out): "empty.jsonl line 2: prompt #1 is empty",
        ("run", "surrogate.jsonl", *out): (
            "surrogate.jsonl line 2: prompt #1: Request '1': prompt holds a lone surrogate "
            "(U+D800) at character 5, which UTF-8 cannot encode"
        ),
        ("run", "t.csv", "--template", "{topic} for {audience}", *out): (
            "t.csv has no column 'audience' (its columns: topic): fix --template or the header"
        ),
        ("run", "t.csv", *out): "t.csv has no column 'prompt' (its columns: topic): add one, or",
        ("run", "p.txt", "--template", "{x}", *out): "--template fills {column}s from CSV or",
        # Arguments and files that are not UTF-8 (argv's \xff arrives as a lone surrogate).
        ("run", "t.csv", "--template", "about {topic} \udcff", *out): (
            "Prompt template: your template holds a lone surrogate (U+DCFF) at character 15"
        ),
        ("run", "t.csv", "--template", "latin1.txt", *out): (
            "The template file 'latin1.txt' is not UTF-8 text (byte 14 is b'\\xe9'): save it"
        ),
        ("run", "p.txt", "--db", "s\udcff.duckdb", *out): (
            "The call log's path 's\\udcff.duckdb' holds a lone surrogate (U+DCFF) at character "
        ),
        ("run", "p.txt", "--cache", "maybe", *out): "argument --cache: invalid choice: 'maybe'",
        ("run", "p.txt", "-c", "lots", *out): "argument -c/--concurrency: 'lots': use a number",
        ("run", "p.txt", "--out", "r.xlsx"): "--out r.xlsx: unknown format .xlsx; name the file",
        ("run", "p.txt", "--out", "no/r.csv"): "--out no/r.csv: the folder no does not exist",
        ("run", "p.txt", "-m", "gemini-9-ultra", *out): (
            "Unknown model 'gemini-9-ultra': neither the endpoint nor the catalogue knows it"
        ),
        ("run", "p.txt", "--deadline", "2h", *out): "--deadline is for --mode auto",
        ("run", "p.txt", "--timeout", "nan", *out): (
            "--timeout=nan is not a number (NaN): --timeout must be positive (a number of seconds)"
        ),
        ("run", "p.txt", "--max-attempts", "0", *out): (
            "--max-attempts=0 is out of range: --max-attempts must be at least 1"
        ),
        ("run", "p.txt", "--budget", "inf", *out): "--budget=inf is infinite: --budget must",
        ("run", "p.txt", "--temperature", "9", *out): "--temperature=9.0 is out of range",
        ("run", "p.txt", "--max-tokens", "99999999999999999999999", *out): (
            "--max-tokens=99999999999999999999999 is more than"
        ),
        ("run", "p.txt", "--schema", "nothing:Here", *out): "--schema nothing:Here: cannot import",
        ("retry", "b-nope", "--failed"): "no call log at",
        ("retry", "b-nope", "--top-p", "3"): "--top-p=3.0 is out of range: --top-p must be from",
    }
    before = requests_seen(emulator)
    calls = [Call(args, cwd=tmp_path) for args in cases]
    calls.append(Call(("run", "p.txt", *out), cwd=tmp_path, env=nowhere))
    done = scriptgen(env, *calls)
    messages = [
        *cases.values(),
        "no Gemini API key: set GEMINI_API_KEY (or GOOGLE_API_KEY), point GOOGLE_GEMINI_BASE_URL",
    ]
    assert_refused(calls, done, messages)
    assert requests_seen(emulator) == before
    assert not (tmp_path / "r.jsonl").exists() and not call_log_in_tmp.exists()


def assert_refused(
    calls: list[Call], done: list[subprocess.CompletedProcess[str]], messages: list[str]
) -> None:
    """Each call exited 2 with one line on stderr, saying its message, and nothing on stdout."""
    for call, result, message in zip(calls, done, messages, strict=True):
        assert result.returncode == 2, (call.args, result.stderr)
        assert message in result.stderr, (call.args, result.stderr)
        assert result.stderr.count("\n") == 1 and result.stdout == "", result.stderr  # one line
        assert result.stderr.startswith(f"scriptgen {call.args[0]}")


def test_a_bad_db_out_or_missing_key_exits_2_before_an_emulator_starts(
    tmp_path: Path, env: dict[str, str], emulator: Emulator, call_log_in_tmp: Path
) -> None:
    """Before: `--emulator` started (and said) a local emulator, then the call log was refused
    (a file that is no DuckDB log with exit status 1), saying `db=`; a key missing beside
    GOOGLE_GEMINI_BASE_URL was told to point GOOGLE_GEMINI_BASE_URL at an emulator; `--out`
    under a file was a folder to create; `--log-wait -1` was `log_wait_s=-1.0`."""
    (tmp_path / "p.txt").write_text("A prompt\n")
    (tmp_path / "logs").mkdir()
    keyless = {k: v for k, v in env.items() if k not in ("GEMINI_API_KEY", "GOOGLE_API_KEY")}
    out = ("--out", "r.jsonl")
    local = ("--emulator", *out)  # one line: said before the local emulator would start
    cases = {
        ("run", "p.txt", "--out", "p.txt/r.csv"): "--out p.txt/r.csv: p.txt is a file, not a",
        ("run", "p.txt", "--db", "logs", *local): "logs is a folder, not a file: pass --db a",
        ("run", "p.txt", "--db", "p.txt", *local): (
            "The call log p.txt cannot be opened: it is not a DuckDB database this version can read"
        ),
        ("run", "p.txt", "--db", "p.txt/x.duckdb", *local): (
            "p.txt is a file, not a folder. Pass --db a path in a folder you can write to."
        ),
        ("run", "p.txt", "--log-wait", "-1", *out): "--log-wait=-1.0 is out of range: --log-wait",
    }
    before = requests_seen(emulator)
    calls = [Call(args, cwd=tmp_path) for args in cases]
    calls.append(Call(("run", "p.txt", *out), cwd=tmp_path, env=keyless))
    done = scriptgen(env, *calls)
    messages = [
        *cases.values(),
        f"no Gemini API key to send to {emulator.base_url} (GOOGLE_GEMINI_BASE_URL): set "
        "GEMINI_API_KEY (or GOOGLE_API_KEY) to a key it accepts",
    ]
    assert_refused(calls, done, messages)
    assert requests_seen(emulator) == before
    assert not (tmp_path / "r.jsonl").exists() and not call_log_in_tmp.exists()
    assert (tmp_path / "p.txt").read_text() == "A prompt\n"  # the --db that was no log: as it was


def test_an_output_that_cannot_be_written_says_where_the_answers_are(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: `cannot write X: [Errno 2] ...` alone, though the answers were paid for and kept
    in the call log."""
    from scriptgen_nb.cli.run import FAILED, Outcome, deliver
    from scriptgen_nb.engine.values import Result
    from scriptgen_nb.results import ResultList

    results = ResultList([Result("0", 0, True, text="an answer")])
    gone = str(tmp_path / "gone" / "r.jsonl")  # its folder went away during the batch
    db = str(tmp_path / "calls.duckdb")
    for command, cache, again in (
        ("run", "use", "the same command with another --out writes them from there"),
        ("run", "off", None),
        ("retry", "use", None),  # a retry asks the service again: no re-run advice
    ):
        args = argparse.Namespace(out=gone, quiet=True, allow_failures=False, db=db, cache=cache)
        assert deliver(command, args, Outcome(results, batch_id="b-1")) == FAILED
        [said] = capsys.readouterr().err.splitlines()
        assert said.startswith(f"scriptgen {command}: cannot write {gone} (")
        assert f"the answers are kept in the call log {db} (batch b-1): " in said
        assert f"`scriptgen_nb.CallStore({db!r}).results('b-1')` in Python reads them" in said
        assert (again in said) if again else "another --out" not in said


def test_truncated_answers_are_retried_only_with_a_higher_max_tokens(
    tmp_path: Path, env: dict[str, str], emulator: Emulator
) -> None:
    """Before: the failure line said `scriptgen retry ID --failed`, which sent the truncated
    answers again unchanged (and paid for them again)."""
    prompts = ["Truncated test: tides", "Truncated test: moss"]
    (tmp_path / "p.txt").write_text("\n".join(prompts) + "\n")
    cut = one(env, "run", "p.txt", "-m", OK_MODEL, "--max-tokens", "5", cwd=tmp_path)
    assert cut.returncode == 1, cut.stderr
    batch_id = cut.stderr.split("scriptgen retry ")[1].split()[0]
    assert (
        f"2 of 2 requests did not succeed (truncated); re-run them with `scriptgen retry "
        f"{batch_id} --max-tokens N` (N above 5)"
    ) in cut.stderr
    same, more = scriptgen(
        env,
        Call(("retry", batch_id), cwd=tmp_path),
        Call(("retry", batch_id, "--max-tokens", "4000", "--out", "more.jsonl"), cwd=tmp_path),
    )
    assert same.returncode == 0 and same.stderr == (
        f"scriptgen retry: batch {batch_id}: nothing to retry with these settings; left out 2 "
        "truncated (raise --max-tokens above 5); --all includes them.\n"
    )
    assert more.returncode == 0, more.stderr
    assert [r["success"] for r in jsonl(tmp_path / "more.jsonl")] == [True, True]
    assert [emulator.attempts_for(p) for p in prompts] == [2, 2]  # once cut, once in full


def test_run_and_retry_take_the_same_settings_flags() -> None:
    """Both take --model and --models; retry takes the settings to change and --all."""
    parser = _parser()
    for flag in ("--model", "--models", "-m"):
        assert parser.parse_args(["run", "p.txt", flag, "a,b"]).models == "a,b"
    settings = "--model a --max-tokens 900 --top-p 0.5 --seed 3 --temperature 0.1"
    retry = parser.parse_args(
        [
            "retry",
            "B",
            *settings.split(),
            "--thinking-level",
            "low",
            "--system",
            "Be brief.",
            "--all",
        ]
    )
    assert (retry.models, retry.max_output_tokens, retry.top_p, retry.seed) == ("a", 900, 0.5, 3)
    assert (retry.temperature, retry.thinking_level, retry.system, retry.all) == (
        0.1,
        "low",
        "Be brief.",
        True,
    )
    assert parser.parse_args(["retry"]).failed is False  # --failed is the default, not required
    run = parser.parse_args(["run", "p.txt", "--top-p", "0.9", "--seed", "4"])
    assert (run.top_p, run.seed) == (0.9, 4)


def test_ctrl_c_writes_the_results_so_far_exits_130_and_says_what_to_run_next(
    tmp_path: Path, env: dict[str, str], emulator: Emulator
) -> None:
    (tmp_path / "p.txt").write_text("Slow prompt one\nSlow prompt two\n")
    process = subprocess.Popen(
        [*SCRIPTGEN, "run", "p.txt", "-m", SLOW_MODEL, "--out", "r.csv"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while emulator.counters()["models"][SLOW_MODEL]["in_flight"] < 2:  # both on the wire
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    said = err.strip().splitlines()[-1]
    assert said.startswith(
        "scriptgen run: interrupted after 0 of 2 requests (2 not run); the results so far were "
        "written to r.csv; `scriptgen retry "
    ), err
    assert said.endswith("` runs the rest.") and ".results" not in err  # Python's terms
    assert "--failed" not in said  # the default
    with (tmp_path / "r.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["id"], r["error_kind"]) for r in rows] == [("0", "not_run"), ("1", "not_run")]


# --- help ----------------------------------------------------------------------------------------


def test_help_of_each_command_lists_every_option_with_its_default_and_an_example(
    env: dict[str, str],
) -> None:
    subcommands = next(
        a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)
    ).choices
    names = ["run", "retry", "models", "limits", "stats", "batches", "demo", "jobs"]
    helps = scriptgen(env, *(Call((name, "--help")) for name in names))
    for name, shown in zip(names, helps, strict=True):
        assert shown.returncode == 0 and shown.stdout.startswith(f"usage: scriptgen {name}")
        assert "example" in shown.stdout.split("options:")[-1], name  # in the epilog
        for action in subcommands[name]._actions:
            if "-h" in action.option_strings:
                continue
            assert action.help, (name, action.dest)
            for option in action.option_strings:
                assert option in shown.stdout, (name, option)
            flag = isinstance(action, argparse._StoreTrueAction)
            positional = not action.option_strings
            if not (flag or positional):
                assert "default" in action.help, (name, action.dest)  # and what it means
    run = " ".join(helps[0].stdout.split())  # as if argparse had not wrapped it
    for words in ("(default: auto)", "(default: use)", "(default: 60)", "(default: 6)"):
        assert words in run
    assert "JSONL" in run and "--template" in run and "exit status: 0 all succeeded" in run


def test_models_accepts_a_name_only_the_endpoint_lists(
    tmp_path: Path, env: dict[str, str], emulator: Emulator
) -> None:
    emulator.set_model("gemini-4-argon", ModelConfig())
    (tmp_path / "p.txt").write_text("About kelp\n")
    dry = one(env, "run", "p.txt", "--dry-run", "-m", "gemini-4-argon", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert "cost unknown on gemini-4-argon" in dry.stdout
    done = one(env, "run", "p.txt", "-m", "gemini-4-argon", "--out", "out.jsonl", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (row,) = jsonl(tmp_path / "out.jsonl")
    assert row["success"] and row["model"] == "gemini-4-argon" and row["cost_usd"] is None
    typo = one(env, "run", "p.txt", "-m", "gemini-4-argn", cwd=tmp_path)
    assert typo.returncode == 2 and "Did you mean 'gemini-4-argon'" in typo.stderr


def test_thinking_level_reaches_the_requests_and_a_bad_one_exits_2(
    tmp_path: Path, env: dict[str, str], call_log_in_tmp: Path
) -> None:
    (tmp_path / "p.txt").write_text("About fog\n")
    done = one(env, "run", "p.txt", "-m", OK_MODEL, "--thinking-level", "high", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (config,) = open_database(call_log_in_tmp).rows("SELECT config FROM request")[0]
    assert '"thinking_level":"high"' in config
    bad = one(env, "run", "p.txt", "-m", OK_MODEL, "--thinking-level", "deep", cwd=tmp_path)
    assert bad.returncode == 2 and "--thinking-level 'deep': use minimal" in bad.stderr


def test_the_retry_a_failure_line_names_runs_as_copied_on_the_emulator_and_log_it_used(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """Before, a batch run with `--emulator --db PATH` ended with `scriptgen retry ID`, which
    looked for the batch in the default log and, without a key, could not send anything."""
    keyless = {
        k: v for k, v in env.items() if k not in ("GEMINI_API_KEY", "GOOGLE_GEMINI_BASE_URL")
    }
    (tmp_path / "p.txt").write_text("Copied hint: tides\n")
    log = "my log.duckdb"  # a path that needs quoting in a shell
    cut = one(
        keyless,
        "run",
        "p.txt",
        "--emulator",
        "--db",
        log,
        "-m",
        OK_MODEL,
        "--max-tokens",
        "5",
        cwd=tmp_path,
    )
    assert cut.returncode == 1, cut.stderr
    batch_id = cut.stderr.split("scriptgen retry ")[1].split()[0]
    hint = f"scriptgen retry {batch_id} --db 'my log.duckdb' --emulator --max-tokens N"
    assert f"re-run them with `{hint}` (N above 5)" in cut.stderr
    copied = shlex.split(hint.replace("N", "4000"))[1:]
    again = one(keyless, *copied, "--out", "again.jsonl", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert [r["success"] for r in jsonl(tmp_path / "again.jsonl")] == [True]
