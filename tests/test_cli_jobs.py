"""`scriptgen run --mode batch_api|auto` and `scriptgen jobs`, run for real in subprocesses
against the emulator's Batch API.

The emulator's jobs end as soon as they are read (no pending or running time), so a run or a
resume finds them done at its first poll; the cancel test makes one job wait instead. Each
command pays about a second to start; independent ones run side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from subprocess import PIPE

import duckdb
import pytest

import scriptgen_nb as sg
from scriptgen_nb.emulator import Emulator, EmulatorConfig
from scriptgen_nb.emulator.config import BatchConfig

from .test_cli_run import SCRIPTGEN, Call, jsonl, one, requests_seen, scriptgen

pytestmark = pytest.mark.integration

MODEL = "gemini-2.5-flash"
KEY = "jobs-key"
INSTANT = BatchConfig(pending_s=0.0, running_s=0.0)
PROMPTS = "Write about tides\nWrite about moss\nWrite about fog\nWrite about kelp\n"


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator(EmulatorConfig(seed=11, latency_scale=0.01, batch=INSTANT)) as emu:
        yield emu


@pytest.fixture
def env(emulator: Emulator) -> Iterator[dict[str, str]]:
    clean = {k: v for k, v in os.environ.items() if k not in ("GOOGLE_API_KEY", "SCRIPTGEN_MODELS")}
    yield {
        **clean,
        "GEMINI_API_KEY": KEY,
        "GOOGLE_GEMINI_BASE_URL": emulator.base_url,
        "SCRIPTGEN_TIER": "tier1",
    }
    emulator.update_batch(pending_s=0.0, running_s=0.0)


def batch_counters(emulator: Emulator) -> dict[str, int]:
    return emulator.counters()["batches"]


def plan_costs(text: str) -> dict[str, float]:
    """The plan's rows on stderr: option -> expected cost (the chosen one marked `->`)."""
    rows = re.findall(r"^ (->|  ) (live calls|Batch API)\s.*?~\$([0-9.]+)", text, re.M)
    return {
        (f"{option} (chosen)" if mark == "->" else option): float(c) for mark, option, c in rows
    }


def test_batch_api_and_auto_show_the_plan_before_sending_and_a_summary_after(
    tmp_path: Path, env: dict[str, str], emulator: Emulator
) -> None:
    (tmp_path / "p.txt").write_text(PROMPTS)
    jobs_before = batch_counters(emulator)["jobs_created"]
    tokens = ("--max-tokens", "1000")  # output dominates: the costs compare cleanly
    batch, auto = scriptgen(
        env,
        Call(
            ("run", "p.txt", "--mode", "batch_api", "-m", MODEL, *tokens, "--out", "b.jsonl"),
            cwd=tmp_path,
        ),
        Call(
            (
                "run",
                "p.txt",
                "--mode",
                "auto",
                "--deadline",
                "1d",
                "-m",
                MODEL,
                *tokens,
                "--db",
                "auto.duckdb",
                "--out",
                "a.jsonl",
            ),
            cwd=tmp_path,
        ),
    )
    assert batch.returncode == 0, batch.stderr
    err = batch.stderr
    costs = plan_costs(err)
    assert set(costs) == {"live calls", "Batch API (chosen)"}, err
    assert costs["Batch API (chosen)"] == pytest.approx(costs["live calls"] / 2, abs=1e-4)
    assert costs["live calls"] > 0
    plan_at = err.index("plan: Google's Batch API, as asked (mode='batch_api')")
    submitted_at = err.index("Submitted batch ")
    summary = re.search(r"^scriptgen batch (\w+) by the Batch API: 4/4 succeeded.*", err, re.M)
    assert summary is not None, err
    assert plan_at < submitted_at < summary.start()  # the plan before anything was sent
    assert f"scriptgen jobs resume {summary.group(1)}" in err
    rows = jsonl(tmp_path / "b.jsonl")
    assert [r["success"] for r in rows] == [True] * 4 and {r["model"] for r in rows} == {MODEL}
    assert batch_counters(emulator)["jobs_created"] == jobs_before + 1
    with duckdb.connect(str(tmp_path / "scriptgen.duckdb"), read_only=True) as con:
        assert con.sql("SELECT mode, status FROM batch_log").fetchall() == [
            ("batch_api", "finished")
        ]
    # auto with a day to spare: live calls fit; the plan says so, then the live summary.
    assert auto.returncode == 0, auto.stderr
    assert set(plan_costs(auto.stderr)) == {"live calls (chosen)", "Batch API"}, auto.stderr
    assert re.search(r"^scriptgen batch \w+ finished: 4/4 done", auto.stderr, re.M), auto.stderr
    assert "Submitted batch" not in auto.stderr
    assert [r["success"] for r in jsonl(tmp_path / "a.jsonl")] == [True] * 4


def test_a_dry_run_shows_the_plan_and_sends_nothing_nor_starts_an_emulator(
    tmp_path: Path, env: dict[str, str], emulator: Emulator
) -> None:
    (tmp_path / "p.txt").write_text(PROMPTS)
    keyless = {
        k: v
        for k, v in env.items()
        if k not in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL")
    }
    jobs_before, seen_before = batch_counters(emulator)["jobs_created"], requests_seen(emulator)
    dry = ("p.txt", "--dry-run", "-m", MODEL)
    batch, auto, local, local_auto = scriptgen(
        env,
        Call(("run", *dry, "--mode", "batch_api"), cwd=tmp_path),
        Call(("run", *dry, "--mode", "auto", "--deadline", "2h"), cwd=tmp_path),
        Call(("run", *dry, "--emulator"), cwd=tmp_path, env=keyless),
        Call(("run", *dry, "--emulator", "--mode", "auto"), cwd=tmp_path, env=keyless),
    )
    for done in (batch, auto, local, local_auto):
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("dry run: ") and "nothing was sent" in done.stdout
        assert "emulator at" not in done.stderr  # none was started
    assert "plan: Google's Batch API, as asked (mode='batch_api')" in batch.stdout
    assert set(plan_costs(batch.stdout)) == {"live calls", "Batch API (chosen)"}
    assert "plan (mode='auto', chosen automatically)" in auto.stdout
    assert "deadline of 2.0 h" in auto.stdout
    assert f"on {MODEL}" in local.stdout and "plan" not in local.stdout  # live: the estimate
    # The emulator's jobs end in about a second: auto plans the Batch API, priced at half.
    assert set(plan_costs(local_auto.stdout)) == {"live calls", "Batch API (chosen)"}
    assert batch_counters(emulator)["jobs_created"] == jobs_before
    assert requests_seen(emulator) == seen_before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.txt"]  # no log, no output


def submit(emulator: Emulator, db: Path, *prompts: str) -> str:
    requests = sg.create_batch_requests(list(prompts))
    handle = sg.submit_batch_job(
        requests, base_url=emulator.base_url, api_key=KEY, models=MODEL, db=str(db)
    )
    handle.close()
    return handle.batch_id


def test_jobs_lists_resumes_once_and_cancels(
    tmp_path: Path, env: dict[str, str], emulator: Emulator
) -> None:
    db = tmp_path / "calls.duckdb"
    done_id = submit(emulator, db, "Write about tides", "Write about moss")
    emulator.update_batch(pending_s=60_000.0)  # 10 min at latency_scale 0.01: still pending
    waiting_id = submit(emulator, db, "Write about gulls")
    log = ("--db", str(db))
    listed, missing, no_batch = scriptgen(
        env,
        Call(("jobs", *log)),
        Call(("jobs", "--db", str(tmp_path / "nowhere.duckdb"))),
        Call(("jobs", "resume", *log)),
    )
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split()[:4] == ["batch_id", "chunk", "job_name", "state"]
    assert sorted(row.split()[0] for row in rows) == sorted([done_id, waiting_id])
    assert all(row.split()[3] == "pending" for row in rows) and "batches/" in listed.stdout
    assert "expires_in_h" in header and all(" 48.0 " in row for row in rows)  # hours left
    assert missing.returncode == 2 and "no call log at" in missing.stderr
    assert no_batch.returncode == 2 and "jobs resume needs a batch id" in no_batch.stderr
    assert not (tmp_path / "nowhere.duckdb").exists()

    resumed = one(env, "jobs", "resume", done_id, *log, "--out", str(tmp_path / "r.jsonl"))
    assert resumed.returncode == 0, resumed.stderr
    assert f"scriptgen batch {done_id} by the Batch API: 2/2 succeeded" in resumed.stderr
    rows_out = jsonl(tmp_path / "r.jsonl")
    assert [r["id"] for r in rows_out] == ["0", "1"] and all(r["success"] for r in rows_out)
    again, cancelled = scriptgen(
        env,
        Call(("jobs", "resume", done_id, *log, "-q", "--out", "-")),
        Call(("jobs", "cancel", waiting_id, *log)),
    )
    assert again.returncode == 0, again.stderr
    assert [r["text"] for r in jsonl_text(again.stdout)] == [r["text"] for r in rows_out]
    with duckdb.connect(str(db), read_only=True) as con:  # ingested once
        calls = con.sql(f"SELECT count(*) FROM ai_api_call WHERE batch_id = '{done_id}'")
        assert calls.fetchall() == [(2,)]
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.startswith("cancelled 1 job(s): batches/")
    assert batch_counters(emulator)["jobs_cancelled"] >= 1
    # The log says so at once (before, "pending" until a resume), and a retry is offered them.
    after = one(env, "jobs", *log)
    [row] = [r.split() for r in after.stdout.splitlines() if r.startswith(waiting_id)]
    assert row[3] == "cancelled" and row[7] == "True", after.stdout
    retried = one(env, "retry", waiting_id, *log, "-m", MODEL, "-q", "--out", "-")
    assert retried.returncode == 0, retried.stderr
    assert [r["success"] for r in jsonl_text(retried.stdout)] == [True]


def jsonl_text(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines()]


def test_a_wait_that_gave_up_says_why_and_how_to_resume_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # What `scriptgen jobs resume` (and `run --mode batch_api`) print when the library stopped
    # waiting because the service kept failing to report a job: its reason, not "interrupted".
    from scriptgen_nb.cli.run import FAILED, Outcome, deliver
    from scriptgen_nb.engine.values import Failure, Result

    unfinished = [Result("0", 0, False, error=Failure("not_run", "its job had not ended"))]
    gave_up = sg.BatchApiWaitFailed(
        unfinished, "Stopped waiting: the service failed to report batches/b1 20 times\nin a row"
    )
    outcome = Outcome(sg.ResultList(unfinished), gave_up, "b1", by_batch_api=True)
    args = argparse.Namespace(out=None, quiet=True, allow_failures=False)
    assert deliver("jobs", args, outcome) == FAILED
    said = capsys.readouterr().err.strip().splitlines()
    assert said == [
        "scriptgen jobs: Stopped waiting: the service failed to report batches/b1 20 times in a row"
    ]


def keyless(env: dict[str, str]) -> dict[str, str]:
    return {
        k: v
        for k, v in env.items()
        if k not in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL")
    }


def test_an_interrupted_wait_on_its_own_emulator_says_its_jobs_end_with_it(
    tmp_path: Path, env: dict[str, str]
) -> None:
    # Before: "Ctrl-C stops waiting (the jobs keep running): `scriptgen jobs resume ...`", but
    # the jobs ran on the command's own emulator, which died with it: nothing could resume them,
    # and the log called them pending for 48 h. Now they are cancelled and recorded not run.
    (tmp_path / "p.txt").write_text(PROMPTS)
    command = [*SCRIPTGEN, "run", "p.txt", "--mode", "batch_api", "--emulator"]
    process = subprocess.Popen(
        command, cwd=tmp_path, env=keyless(env), text=True, stdout=PIPE, stderr=PIPE
    )
    said = []
    assert process.stderr is not None
    for line in process.stderr:  # the wait's first progress line: the job is pending
        said.append(line)
        if "Batch API job (1 pending)" in line:
            process.send_signal(signal.SIGINT)
            break
    out, rest = process.communicate(timeout=60)
    err = "".join(said) + rest
    assert process.returncode == 130, err
    submitted = re.search(
        r"^Submitted batch (\w+) to the Batch API of this command's emulator", err, re.M
    )
    assert submitted is not None, err
    batch = submitted.group(1)
    assert "jobs resume" not in err
    assert err.endswith(
        f"scriptgen run: interrupted while waiting; batch {batch}'s jobs ran on this command's "
        "emulator, which stops with it, so they were cancelled: 4 request(s) are in the call log "
        f"as not run: run the same again, or `scriptgen retry {batch}`.\n"
    )
    assert out.count("not_run: the Batch API job was cancelled") == 4
    listed = one(env, "jobs", cwd=tmp_path)
    assert listed.stdout.splitlines()[1].split()[3] == "cancelled", listed.stdout


def test_resuming_at_an_emulator_that_stopped_exits_2_at_once(
    tmp_path: Path, env: dict[str, str]
) -> None:
    # Before: the resume polled the dead port for ten minutes; without a key it asked for one.
    db = tmp_path / "calls.duckdb"
    with Emulator(EmulatorConfig(seed=11, batch=BatchConfig(pending_s=600.0))) as gone:
        batches = [submit(gone, db, "Write about tides"), submit(gone, db, "Write about moss")]
        url = gone.base_url
    keyed, unkeyed = scriptgen(
        env,
        Call(("jobs", "resume", batches[0], "--db", str(db))),
        Call(("jobs", "resume", batches[1], "--db", str(db)), env=keyless(env)),
    )
    for done, batch in zip((keyed, unkeyed), batches, strict=True):
        assert done.returncode == 2, done.stderr
        assert f"scriptgen jobs: Nothing answers at {url}, where batch {batch}'s" in done.stderr
        assert f"`scriptgen retry {batch}`" in done.stderr
    listed = one(env, "jobs", "--db", str(db))
    assert [row.split()[3] for row in listed.stdout.splitlines()[1:]] == ["cancelled"] * 2
    again = one(env, "jobs", "resume", batches[0], "--db", str(db))  # collected: from the log
    assert again.returncode == 1 and "(1 not run)" in again.stderr, again.stderr
