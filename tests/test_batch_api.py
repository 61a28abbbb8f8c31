"""The Batch API mode end to end: the real google-genai SDK against the emulator over HTTP.

Inline and file jobs, answers out of order or without their keys, failed rows, a job that
fails or expires, cancel, resume after a restart and after a crash between `batches.create`
and recording its answer (one job created, results ingested once), the `auto` choice on both
sides of its threshold, and costs at the Batch API price.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from google import genai
from google.genai import types

import scriptgen_nb as sg
from scriptgen_nb.batch_api.jobs import UPLOAD_MIME_TYPES
from scriptgen_nb.commands import retry_plan
from scriptgen_nb.emulator import Emulator, EmulatorConfig
from scriptgen_nb.emulator.config import BatchConfig
from scriptgen_nb.emulator.tokens import count_tokens
from scriptgen_nb.engine.values import Usage
from scriptgen_nb.store import open_database

KEY = "batch-key"
MODEL = "gemini-2.5-flash"
FAST = sg.BatchApiSettings(poll_initial_s=0.05, poll_max_s=0.2)
QUICK = BatchConfig(pending_s=0.1, running_s=0.2)
TOPICS = ["tides", "moss", "salt marshes", "sea glass", "lighthouses", "fog", "kelp", "gulls"]


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator(EmulatorConfig(seed=3, api_keys=(KEY,), batch=QUICK)) as emu:
        yield emu


@pytest.fixture
def emu(emulator: Emulator) -> Iterator[Emulator]:
    emulator.update_batch(**{f: getattr(QUICK, f) for f in QUICK.__dataclass_fields__})
    emulator.reset()
    yield emulator
    emulator.update_batch(**{f: getattr(QUICK, f) for f in QUICK.__dataclass_fields__})


def _requests(n: int = 4) -> list[sg.GenerationRequest]:
    prompts = [f"Write one line about {topic}." for topic in TOPICS[:n]]
    return sg.create_batch_requests(prompts, operation="GENERATE_SCRIPT")  # type: ignore[return-value]


def _run(emu: Emulator, requests: list[sg.GenerationRequest], **options: object) -> sg.ResultList:
    options = {"models": MODEL, "batch_api": FAST, "mode": "batch_api", **options}
    return sg.batch_generate(requests, base_url=emu.base_url, api_key=KEY, **options)


def _batch_counts(emu: Emulator) -> dict[str, int]:
    return emu.counters()["batches"]


def _log_rows(sql: str) -> list[tuple[object, ...]]:
    return open_database().rows(sql)


def test_a_job_at_the_batch_price_from_a_file_by_default(emu: Emulator) -> None:
    results = _run(emu, _requests())
    assert [r.id for r in results] == ["0", "1", "2", "3"]
    assert all(r.success and r.text for r in results), [r.error for r in results]
    spec = sg.default_catalogue().get(MODEL)
    for r in results:
        assert r.model == MODEL and r.attempts == 1
        assert r.cost_usd == pytest.approx(spec.cost_usd(r.usage, batch=True))
        assert r.cost_usd == pytest.approx(spec.cost_usd(r.usage) / 2)
    assert _batch_counts(emu)["jobs_created"] == 1
    [(mode, status, cost, ok)] = _log_rows(
        "SELECT mode, status, estimated_cost, success_count FROM batch_log"
    )
    assert (mode, status, ok) == ("batch_api", "finished", 4)
    assert cost == pytest.approx(sum(r.cost_usd for r in results))
    calls = _log_rows("SELECT sum(estimated_cost), count(*) FROM ai_api_call")
    assert calls[0][0] == pytest.approx(cost) and calls[0][1] == 4
    jobs = sg.list_batch_jobs()
    assert list(jobs["state"]) == ["succeeded"] and bool(jobs["ingested"].iloc[0])
    assert list(jobs["input"]) == ["file"] and list(jobs["matched_by"]) == ["key"]
    assert jobs["turnaround_s"].iloc[0] > 0


def test_earlier_answers_come_from_the_cache_and_only_the_rest_is_submitted(
    emu: Emulator,
) -> None:
    first = _run(emu, _requests(2))
    plan = sg.batch_plan(
        _requests(4), mode="batch_api", models=MODEL, base_url=emu.base_url, api_key=KEY
    )
    assert (plan.cached, plan.batch_api.requests, plan.batch_count) == (2, 2, 2)
    assert "2 more answered by earlier runs" in str(plan)
    again = _run(emu, _requests(4))
    assert [(r.id, r.cached, r.success) for r in again] == [
        ("0", True, True),
        ("1", True, True),
        ("2", False, True),
        ("3", False, True),
    ]
    assert [r.text for r in again[:2]] == [r.text for r in first]
    assert again[0].cost_usd == 0 and again[0].usage == Usage()  # not paid for again
    jobs = sg.list_batch_jobs()  # newest first: the second run submitted only the other two
    assert list(jobs["requests"]) == [2, 2] and _batch_counts(emu)["jobs_created"] == 2

    whole = _run(emu, _requests(4))  # every answer is in the log: no job at all
    assert all(r.cached and r.success for r in whole)
    assert [r.text for r in whole] == [r.text for r in again]
    assert _batch_counts(emu)["jobs_created"] == 2 and len(sg.list_batch_jobs()) == 2
    [(batch_id, status, ok, cached)] = _log_rows(
        "SELECT batch_id, status, success_count, cached_count FROM batch_log "
        "ORDER BY started_at DESC LIMIT 1"
    )
    assert (status, ok, cached) == ("finished", 4, 4)
    resumed = sg.resume_batch_job(batch_id, api_key=KEY, base_url=emu.base_url)
    assert [(r.text, r.cached) for r in resumed] == [(r.text, True) for r in whole]
    # cache="refresh" asks again even so.
    _run(emu, _requests(1), cache="refresh")
    assert _batch_counts(emu)["jobs_created"] == 3


def test_the_cache_is_looked_up_once_for_plan_and_submission(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scriptgen_nb.batch_api import run as batch_run

    lookups: list[int] = []
    real = batch_run.earlier_answers

    def counted(db: object, cache_keys: list[str]) -> object:
        lookups.append(len(cache_keys))
        return real(db, cache_keys)  # type: ignore[arg-type]

    monkeypatch.setattr(batch_run, "earlier_answers", counted)
    assert all(r.success for r in _run(emu, _requests(2)))
    assert lookups == [2]  # the plan's lookup is the submission's


def test_a_file_job_is_ingested_a_slice_at_a_time_and_whole(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("scriptgen_nb.store.batch_jobs.INSERT_ROWS", 3)  # 8 answers: 3 slices
    results = _run(emu, _requests(8), batch_api=replace(FAST, input="file"))
    assert [r.id for r in results] == [str(i) for i in range(8)]
    assert all(r.success and r.text for r in results), [r.error for r in results]
    assert _log_rows("SELECT count(*), count(DISTINCT request_id) FROM result") == [(8, 8)]
    assert _log_rows("SELECT count(*) FROM ai_api_call") == [(8,)]
    assert list(sg.list_batch_jobs()["input"]) == ["file"]


def test_an_upload_refused_for_its_mime_type_is_tried_again(emu: Emulator) -> None:
    # Google refuses a JSONL upload now and then with "Unsupported MIME type", whichever type
    # is named (python-genai #1547). Before, the first refusal failed the job's every request.
    emu.update_batch(mime_refusals=2)
    results = _run(emu, _requests(3), batch_api=replace(FAST, input="file"))
    assert all(r.success for r in results), [r.error for r in results]
    assert emu.counters()["errors"].get("400") == 2  # both refusals met, then accepted
    assert list(sg.list_batch_jobs()["input"]) == ["file"]


def test_an_upload_declares_jsonl_and_is_staged_as_windows_allows(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Google's docs name `jsonl`; `application/jsonl` (sent before) was refused more often.
    # On Windows `tempfile.TemporaryFile` is `NamedTemporaryFile`, whose wrapper is not the
    # `io.IOBase` the SDK reads: an input staged in one could not be uploaded there. Made so
    # here on every platform.
    monkeypatch.setattr(tempfile, "TemporaryFile", tempfile.NamedTemporaryFile)
    results = _run(emu, _requests(2))
    assert all(r.success for r in results), [r.error for r in results]
    [job_key] = sg.list_batch_jobs()["job_key"]
    client = genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=emu.base_url))
    with contextlib.closing(client):
        uploaded = [f for f in client.files.list() if f.display_name == f"scriptgen-{job_key}"]
    assert [f.mime_type for f in uploaded] == ["jsonl"]


def test_an_upload_refused_every_time_fails_its_requests_saying_why(emu: Emulator) -> None:
    emu.update_batch(mime_refusals=len(UPLOAD_MIME_TYPES))
    results = _run(emu, _requests(2), batch_api=replace(FAST, input="file"))
    assert [r.success for r in results] == [False, False]
    assert all("Unsupported MIME type" in (r.error.message if r.error else "") for r in results)
    assert _batch_counts(emu)["jobs_created"] == 0


def test_a_job_the_service_keeps_failing_to_report_ends_the_wait_resumably(
    emu: Emulator,
) -> None:
    # Google has answered `batches.get` with 503 for good for finished inline jobs with large
    # outputs. Before, the wait polled forever; now it stops past its bounds, leaving the job
    # to be collected later.
    emu.update_batch(get_503_over_bytes=0)
    patient = replace(FAST, input="inline", poll_failures=3, poll_failures_s=0.01)
    with pytest.raises(sg.BatchApiWaitFailed) as gave_up:
        _run(emu, _requests(2), batch_api=patient)
    stopped = gave_up.value
    assert [r.error.kind if r.error else None for r in stopped.results] == ["not_run"] * 2
    assert "failed to report batches/" in str(stopped) and "3 times in a row" in str(stopped)
    batch_id = sg.list_batch_jobs()["batch_id"].iloc[0]
    assert f"resume_batch_job('{batch_id}')" in str(stopped)
    emu.update_batch(get_503_over_bytes=None)  # the service recovers
    results = sg.resume_batch_job(batch_id, api_key=KEY, batch_api=FAST)
    assert [r.success for r in results] == [True, True]
    assert _batch_counts(emu)["jobs_created"] == 1


def test_a_lost_results_file_fails_its_requests_once_and_a_resume_does_not_retry_it(
    emu: Emulator,
) -> None:
    # The results file of a finished job expired or was deleted before it was read (403/404).
    # Before, the download's error escaped the wait with nothing recorded, and every resume
    # met it again. Now the job's requests fail saying why, and the job counts as collected.
    emu.update_batch(lose_output=True)
    results = _run(emu, _requests(2), batch_api=replace(FAST, input="file"))
    assert [r.error.kind if r.error else None for r in results] == ["server_error"] * 2
    said = results[0].error.message if results[0].error else ""
    # Google answers a file that is gone as one you may not read: 403 (or 404)
    assert re.search(r"its results file files/\S+ could not be downloaded \(40[34]: ", said)
    assert said.endswith("run the request again")
    batch_id = sg.list_batch_jobs()["batch_id"].iloc[0]
    refused_before = emu.counters()["errors"]
    again = sg.resume_batch_job(batch_id, api_key=KEY, batch_api=FAST)
    assert [r.error.kind if r.error else None for r in again] == ["server_error"] * 2
    assert emu.counters()["errors"] == refused_before  # the file was not asked for again


def test_a_create_refused_with_429_waits_and_is_made_while_the_others_are_polled(
    emu: Emulator,
) -> None:
    # The service refuses `batches.create` with 429 while its enqueued-token quota is full
    # (around the fourth job at once). Before, the job was marked FAILED and its requests
    # failed as server_error; now it waits, and is created once a job has finished.
    emu.update_batch(max_active_jobs=1)
    several = replace(FAST, input="inline", inline_limit_bytes=700, create_wait_initial_s=0.05)
    handle = sg.submit_batch_job(
        _requests(6), base_url=emu.base_url, api_key=KEY, models=MODEL, batch_api=several
    )
    try:
        assert len(handle.jobs) > 1 and len(handle.waiting) == len(handle.jobs) - 1
        assert "waiting to be created" in repr(handle)
        assert all(
            v.startswith("the service refused to create it for now (429: You exceeded your")
            for v in handle.waiting.values()
        )
        said: list[str] = []
        handle.on_wait = lambda status: said.append(str(status))
        results = handle.wait()
    finally:
        handle.close()
    assert all(r.success for r in results), [r.error for r in results]
    assert _batch_counts(emu)["jobs_created"] == len(handle.jobs)
    refused = f"; the service refused to create {len(handle.jobs) - 1} for now (429: its queue"
    assert refused in said[0]  # the progress line says why those jobs wait
    assert "refused" not in said[-1]  # the last line: all created
    assert set(sg.list_batch_jobs()["state"]) == {"succeeded"} and not handle.waiting


def test_a_job_past_the_enqueued_token_quota_waits_for_another_batchs_job_to_end(
    emu: Emulator,
) -> None:
    # Google queues at most so many input tokens of Batch API jobs per model: a second batch's
    # job past them is refused with 429 and waits to be created until the first one's ends.
    first, second = _requests(4)[:2], _requests(4)[2:]
    tokens = [sum(count_tokens(r.prompt) for r in part) for part in (first, second)]
    emu.update_batch(pending_s=30.0, max_enqueued_tokens=sum(tokens) - 1)
    options = {"base_url": emu.base_url, "api_key": KEY, "models": MODEL}
    earlier = sg.submit_batch_job(first, batch_api=FAST, **options)
    earlier.close()
    emu.update_batch(pending_s=QUICK.pending_s)
    patient = replace(FAST, create_wait_initial_s=0.05)
    handle = sg.submit_batch_job(second, batch_api=patient, **options)
    try:
        assert list(handle.waiting) == [j.display_name for j in handle.jobs]
        sg.cancel_batch_job(earlier.batch_id, api_key=KEY)  # its tokens leave the queue
        results = handle.wait()
    finally:
        handle.close()
    assert all(r.success for r in results), [r.error for r in results]
    assert _batch_counts(emu)["jobs_created"] == 2


def test_the_plan_counts_the_jobs_still_out_at_the_endpoint(emu: Emulator) -> None:
    emu.update_batch(pending_s=30.0)
    handle = sg.submit_batch_job(
        _requests(2), base_url=emu.base_url, api_key=KEY, models=MODEL, batch_api=FAST
    )
    handle.close()
    options = {"mode": "batch_api", "models": MODEL, "api_key": KEY}
    plan = sg.batch_plan(_requests(4)[2:], base_url=emu.base_url, **options)
    assert "1 Batch API job created earlier at this endpoint had not ended" in str(plan)
    sg.cancel_batch_job(handle.batch_id, api_key=KEY)
    plan = sg.batch_plan(_requests(4)[2:], base_url=emu.base_url, **options)
    assert "created earlier" not in str(plan)  # cancelled: no longer in the queue


def test_a_job_left_waiting_to_be_created_is_created_once_by_a_later_resume(
    emu: Emulator,
) -> None:
    # The process that met the 429 goes away while a job waits (the kernel restarted): the job
    # is still an intent in the log, so a resume elsewhere creates it, once, and collects all.
    emu.update_batch(max_active_jobs=1)
    several = replace(FAST, input="inline", inline_limit_bytes=700, create_wait_initial_s=0.05)
    handle = sg.submit_batch_job(
        _requests(6), base_url=emu.base_url, api_key=KEY, models=MODEL, batch_api=several
    )
    handle.close()  # gone without waiting
    jobs = len(handle.jobs)
    assert jobs > 1 and _batch_counts(emu)["jobs_created"] == 1
    results = sg.resume_batch_job(handle.batch_id, api_key=KEY, batch_api=several)
    assert all(r.success for r in results), [r.error for r in results]
    assert _batch_counts(emu)["jobs_created"] == jobs  # each job created exactly once
    names = sg.list_batch_jobs()["job_name"]
    assert names.notna().all() and names.is_unique


def test_answers_out_of_order_or_without_keys_never_land_on_the_wrong_request(
    emu: Emulator,
) -> None:
    # The service drops inline answers' keys (python-genai #2008) and reorders them (#1909).
    # Before, inline input was the default and keyless answers were paired by their place:
    # both together silently handed requests each other's answers.
    requests = _requests(8)
    baseline = {r.id: r.text for r in _run(emu, requests, cache="off")}
    emu.update_batch(shuffle=True, drop_metadata=True)
    by_file = _run(emu, requests, cache="off")  # the default: keys kept line by line
    assert {r.id: r.text for r in by_file} == baseline
    inline = replace(FAST, input="inline")
    keyless = _run(emu, requests, cache="off", batch_api=inline)
    assert not any(r.success and r.text != baseline[r.id] for r in keyless)  # no wrong pairing
    assert {r.error.kind if r.error else None for r in keyless} == {"unmatched"}
    assert "nothing was guessed, run it again" in (keyless[0].error.message or "")
    trusting = _run(emu, requests, cache="off", batch_api=replace(inline, match_by_position=True))
    assert all(r.success for r in trusting)  # paired by place, as the caller chose
    jobs = sg.list_batch_jobs()
    assert sorted(zip(jobs["input"], jobs["matched_by"], strict=True)) == [
        ("file", "key"),
        ("file", "key"),
        ("inline", "position"),
        ("inline", "unmatched"),
    ]


def test_failed_rows_are_failed_requests_and_the_rest_succeed(emu: Emulator) -> None:
    emu.update_batch(error_keys=("1", "3"))
    results = _run(emu, _requests())
    assert [r.success for r in results] == [True, False, True, False]
    failure = results[1].error
    assert failure is not None and failure.kind == "invalid_request"
    assert results[1].cost_usd == 0 and results[1].usage == Usage()
    [(status, ok, failed)] = _log_rows("SELECT status, success_count, failure_count FROM batch_log")
    assert (status, ok, failed) == ("finished", 2, 2)


@pytest.mark.parametrize(
    ("outcome", "kind", "status"),
    [("failed", "server_error", "failed"), ("expired", "not_run", "finished")],
)
def test_a_job_that_fails_or_expires(
    emu: Emulator, call_log_in_tmp: Path, outcome: str, kind: str, status: str
) -> None:
    emu.update_batch(outcome=outcome)
    results = _run(emu, _requests(3))
    assert not any(r.success for r in results)
    assert {r.error.kind for r in results if r.error} == {kind}
    assert _log_rows("SELECT status FROM batch_log") == [(status,)]
    # Its requests are offered to `retry`, live or as a new batch (what the plan promises).
    [batch_id] = sg.list_batch_jobs()["batch_id"]
    plan = retry_plan(sg.CallStore(call_log_in_tmp), batch_id)
    assert [r.id for r in plan.requests] == ["0", "1", "2"] and not plan.left_out
    emu.update_batch(outcome="succeeded")
    for mode in ("live", "batch_api"):
        again = _run(emu, plan.requests, mode=mode, **plan.options(MODEL))
        assert all(r.success for r in again), (mode, [r.error for r in again])


def test_file_jobs_and_inline_jobs_split_by_size(emu: Emulator) -> None:
    requests = _requests(6)
    by_file = _run(emu, requests, batch_api=replace(FAST, input="file"), cache="off")
    assert all(r.success for r in by_file)
    assert emu.counters()["files"]["uploaded"] == 1
    # Past the inline limit, "auto" uploads a file; "inline" splits into several jobs.
    small = replace(FAST, input="auto", inline_limit_bytes=700)
    _run(emu, requests, batch_api=small, cache="off")
    split = _run(emu, requests, batch_api=replace(small, input="inline"), cache="off")
    assert {r.id: r.text for r in split} == {r.id: r.text for r in by_file}
    jobs = sg.list_batch_jobs()
    assert (jobs["input"] == "file").sum() == 2
    inline = jobs[jobs["input"] == "inline"]
    assert len(inline) > 1 and inline["requests"].sum() == 6
    assert _batch_counts(emu)["jobs_created"] == 2 + len(inline)


def test_plain_prompts_go_to_the_batch_api_and_come_back_beside_their_input_rows(
    emu: Emulator,
) -> None:
    """submit_batch_job and batch_plan take prompts as create_batch_requests does; the rows
    travel through the jobs and the log, and lead the DataFrame of what was collected."""
    prompts = [
        {"prompt": f"Write one line about {topic}.", "metadata": {"row": {"topic": topic}}}
        for topic in TOPICS[:2]
    ]
    where = {"base_url": emu.base_url, "api_key": KEY, "models": MODEL}
    plan = sg.batch_plan(["Write one line about fog.", *prompts], mode="batch_api", **where)
    assert plan.batch_api.requests == 3
    handle = sg.submit_batch_job(prompts, batch_api=FAST, **where)
    try:
        results = handle.wait()
    finally:
        handle.close()
    frame = sg.resume_batch_job(handle.batch_id, api_key=KEY).to_dataframe()
    for collected in (results.to_dataframe(), frame):
        assert collected["topic"].tolist() == TOPICS[:2] and collected["success"].all()
        assert collected["id"].tolist() == ["0", "1"]


def test_cancel_leaves_what_did_not_run_as_not_run(emu: Emulator) -> None:
    emu.update_batch(pending_s=30.0, running_s=30.0)
    handle = sg.submit_batch_job(
        _requests(3), base_url=emu.base_url, api_key=KEY, models=MODEL, batch_api=FAST
    )
    handle.close()
    listed = sg.list_batch_jobs()
    assert listed["state"].tolist() == ["pending"]
    assert 47.9 <= listed["expires_in_h"].iloc[0] <= 48.0  # the service's 48 h, said
    names = sg.cancel_batch_job(handle.batch_id, api_key=KEY)
    assert len(names) == 1 and names[0].startswith("batches/")
    results = sg.resume_batch_job(handle.batch_id, api_key=KEY, batch_api=FAST)
    assert {r.error.kind for r in results if r.error} == {"not_run"}
    assert _batch_counts(emu)["jobs_cancelled"] == 1
    assert _log_rows("SELECT status FROM batch_log") == [("cancelled",)]
    assert sg.list_batch_jobs()["expires_in_h"].isna().all()  # ended: nothing to expire


SUBMITTER = """
import os, sys
import scriptgen_nb as sg
from scriptgen_nb.store import batch_jobs

if sys.argv[3] == "crash":
    # The process dies the moment batches.create has answered, before the job's name is
    # recorded: the worst moment for a duplicate submission.
    batch_jobs.mark_submitted = lambda *args, **kwargs: os._exit(17)
requests = sg.create_batch_requests([f"Write one line about {t}." for t in ("tides", "moss")])
handle = sg.submit_batch_job(requests, base_url=sys.argv[1], api_key=sys.argv[2],
                             models="gemini-2.5-flash")
print(handle.batch_id)
"""


def _submit_in_a_process(emu: Emulator, how: str, db: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, SCRIPTGEN_DB=str(db))
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SUBMITTER), emu.base_url, KEY, how],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_resume_after_a_restart_ingests_once(emu: Emulator, call_log_in_tmp: Path) -> None:
    done = _submit_in_a_process(emu, "submit", call_log_in_tmp)
    assert done.returncode == 0, done.stderr
    batch_id = done.stdout.strip().splitlines()[-1]
    results = sg.resume_batch_job(batch_id, api_key=KEY, batch_api=FAST)
    assert [r.success for r in results] == [True, True]
    job_name = sg.list_batch_jobs()["job_name"].iloc[0]
    again = sg.resume_batch_job(job_name, api_key=KEY, batch_api=FAST)  # by the job's name
    assert [r.text for r in again] == [r.text for r in results]
    assert _log_rows("SELECT count(*) FROM result") == [(2,)]
    assert _log_rows("SELECT count(*) FROM ai_api_call") == [(2,)]
    assert _batch_counts(emu)["jobs_created"] == 1


def test_a_crash_between_create_and_recording_never_submits_twice(
    emu: Emulator, call_log_in_tmp: Path
) -> None:
    crashed = _submit_in_a_process(emu, "crash", call_log_in_tmp)
    assert crashed.returncode == 17, crashed.stderr
    assert _batch_counts(emu)["jobs_created"] == 1
    jobs = sg.list_batch_jobs()
    assert jobs["state"].tolist() == ["waiting to be created"] and jobs["job_name"].isna().all()
    results = sg.resume_batch_job(jobs["batch_id"].iloc[0], api_key=KEY, batch_api=FAST)
    assert [r.success for r in results] == [True, True]
    assert _batch_counts(emu)["jobs_created"] == 1  # adopted by its display name, not re-sent
    assert sg.list_batch_jobs()["job_name"].iloc[0].startswith("batches/")


def test_auto_chooses_by_the_deadline_and_the_measured_turnaround(emu: Emulator) -> None:
    ladder = [sg.ModelSpec(MODEL, rpm=5, minute_s=1.0, input_usd_per_1m=0.3, output_usd_per_1m=2.5)]
    _run(emu, _requests(1), models=ladder)  # one job measured: the turnaround auto will use
    measured = sg.list_batch_jobs()["turnaround_s"].iloc[0]
    options = {"models": ladder, "mode": "auto", "deadline": 10.5}
    # 5 requests: one window of the 5-RPM model plus a typical 10 s latency: live fits 10.5 s.
    fits = sg.batch_plan(_requests(5), base_url=emu.base_url, batch_api=FAST, **options)
    assert fits.choice == "live" and fits.live.seconds == pytest.approx(10.0)
    # 6 requests need a second window: 11 s; the measured turnaround fits, so the Batch API.
    over = sg.batch_plan(_requests(6), base_url=emu.base_url, batch_api=FAST, **options)
    assert over.choice == "batch_api" and over.live.seconds == pytest.approx(11.0)
    assert over.turnaround.seconds == pytest.approx(measured)
    assert "measured" in over.turnaround.source
    assert over.batch_api.cost_usd == pytest.approx(over.live.cost_usd / 2)
    live = _run(emu, _requests(5), cache="off", **options)
    batch = _run(emu, _requests(6), cache="off", **options)
    assert all(r.success for r in live) and all(r.success for r in batch)
    modes = _log_rows("SELECT mode, request_count FROM batch_log ORDER BY started_at")
    assert modes[1:] == [("live", 5), ("batch_api", 6)]


def _reserved(requests: list[sg.GenerationRequest], spec: sg.ModelSpec, batch: bool) -> list[float]:
    """Each request's reserved cost: input estimate plus 1,024 output tokens (no cap set)."""
    from scriptgen_nb.engine.runner import estimate_tokens

    return [spec.cost_usd(Usage(estimate_tokens(r), 1024), batch=batch) or 0.0 for r in requests]


def test_a_budget_submits_only_the_requests_whose_reserved_cost_fits(emu: Emulator) -> None:
    requests = _requests(8)
    reserved = _reserved(requests, sg.default_catalogue().get(MODEL), batch=True)
    budget = sum(reserved[:3]) + reserved[3] / 2  # three fit, the fourth would cross it
    results = _run(emu, requests, budget_usd=budget, cache="off")
    assert _batch_counts(emu)["rows_submitted"] == 3
    assert [r.success for r in results] == [True] * 3 + [False] * 5
    assert sum(r.cost_usd or 0.0 for r in results) <= budget
    for r in results[3:]:
        assert r.error is not None and r.error.kind == "not_run"
        assert "budget" in r.error.message and "not sent" in r.error.message
    [(status, ok, not_run)] = _log_rows(
        "SELECT status, success_count, not_run_count FROM batch_log"
    )
    assert (status, ok, not_run) == ("finished", 3, 5)
    nothing = _run(emu, requests, budget_usd=reserved[0] / 2, cache="off")  # not even one
    assert {r.error.kind for r in nothing if r.error} == {"not_run"} and not any(
        r.success for r in nothing
    )
    assert _batch_counts(emu)["jobs_created"] == 1  # no job for a batch the budget left out
    plan = sg.batch_plan(
        requests, mode="batch_api", budget_usd=budget, models=MODEL, base_url=emu.base_url
    )
    assert (plan.batch_budget_usd, plan.over_budget) == (budget, 5)
    assert "only the first 3 of the 8 requests" in str(plan) and "5 are not sent" in str(plan)
    assert "5 are not sent" in plan._repr_html_()


def test_auto_keeps_a_budget_across_its_live_and_batch_api_parts(emu: Emulator) -> None:
    spec = sg.ModelSpec(MODEL, rpm=5, minute_s=1.0, input_usd_per_1m=0.3, output_usd_per_1m=2.5)
    requests = _requests(8)
    live, batch = _reserved(requests[:5], spec, False), _reserved(requests[5:], spec, True)
    budget = sum(live) + batch[0] * 1.5  # the live part, then one request by the Batch API
    options = {"models": [spec], "mode": "auto", "deadline": 10.5, "budget_usd": budget}
    settings = replace(FAST, turnaround_s=60.0)  # neither fits 10.5 s: a split, 5 live
    results = _run(emu, requests, cache="off", batch_api=settings, **options)
    assert _batch_counts(emu)["rows_submitted"] == 1
    assert [r.success for r in results] == [True] * 6 + [False] * 2
    assert sum(r.cost_usd or 0.0 for r in results) <= budget
    plan = sg.batch_plan(requests, base_url=emu.base_url, batch_api=settings, **options)
    assert (plan.choice, plan.live_count, plan.over_budget) == ("split", 5, 2)
    assert plan.live_budget_usd == pytest.approx(sum(live))
    assert "of it for the Batch API part" in str(plan)


def test_options_are_checked_before_anything_is_sent(emu: Emulator) -> None:
    with pytest.raises(sg.ConfigurationError, match="mode="):
        _run(emu, _requests(1), mode="later")
    with pytest.raises(sg.ConfigurationError, match="deadline="):
        _run(emu, _requests(1), mode="auto", deadline="soon")
    with pytest.raises(sg.ConfigurationError, match="mode='auto'"):
        _run(emu, _requests(1), deadline="1h")
    with pytest.raises(sg.ConfigurationError, match="call log"):
        _run(emu, _requests(1), db=False)
    with pytest.raises(sg.ConfigurationError, match="No Batch API job"):
        sg.resume_batch_job("nothing-like-it", api_key=KEY)
    assert _batch_counts(emu)["jobs_created"] == 0


def test_the_magic_runs_lists_and_resumes_batch_api_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    from IPython import get_ipython
    from IPython.core.error import UsageError
    from IPython.testing.globalipapp import start_ipython

    from scriptgen_nb.emulator import ModelConfig
    from scriptgen_nb.jupyter.endpoint import SESSION

    shell = start_ipython() or get_ipython()  # the global test shell, shared with test_magic
    shell.run_line_magic("load_ext", "scriptgen_nb")
    for name in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    # latency_scale 0: jobs end as soon as they are created, so the first poll finds them done.
    config = EmulatorConfig(api_keys=(), latency_scale=0.0, models={MODEL: ModelConfig()})
    SESSION.start(config)
    SESSION.announced = True
    try:
        frame = shell.run_cell_magic(
            "scriptgen", f"batch --mode batch_api --model {MODEL}", "Tides.\nMoss.\n"
        )
        assert frame["success"].all() and len(frame) == 2
        jobs = shell.run_line_magic("scriptgen", "jobs")
        assert jobs["state"].tolist() == ["succeeded"]
        again = shell.run_line_magic("scriptgen", f"jobs resume {jobs['batch_id'].iloc[0]}")
        assert again["text"].tolist() == frame["text"].tolist()
        with pytest.raises(UsageError, match="--deadline is for --mode auto"):
            shell.run_cell_magic("scriptgen", f"batch --deadline 2h --model {MODEL}", "Fog.\n")
        planned = shell.run_cell_magic(
            "scriptgen", f"batch --mode auto --deadline 1d --dry-run --model {MODEL}", "Fog.\n"
        )
        assert isinstance(planned, sg.BatchPlan) and planned.chosen.requests == 1
    finally:
        SESSION.stop()


def test_a_retired_model_named_for_the_batch_api_is_noticed_in_the_log(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCRIPTGEN_TODAY", "2026-12-04")  # gemini-2.5-flash shut down 2026-12-01
    results = _run(emu, _requests(2))  # the emulator still lists it: it runs
    assert all(r.success for r in results)
    [(notices, unpriced)] = _log_rows("SELECT notices, unpriced_count FROM batch_log")
    assert any("gemini-2.5-flash: Google shut it down on 2026-12-01" in n for n in notices)
    assert unpriced == 0


def test_a_wait_says_its_jobs_states_and_its_failed_polls(emu: Emulator) -> None:
    # Before, a wait said nothing between the plan and the summary, however long it took.
    emu.update_batch(get_503_over_bytes=0)
    patient = replace(FAST, input="inline", poll_failures=3, poll_failures_s=0.01)
    handle = sg.submit_batch_job(
        _requests(2), base_url=emu.base_url, api_key=KEY, models=MODEL, batch_api=patient
    )
    said: list[str] = []
    handle.on_wait = lambda status: said.append(str(status))
    try:
        with pytest.raises(sg.BatchApiWaitFailed):
            handle.wait()
    finally:
        handle.close()
    batch = handle.batch_id
    assert said[0] == f"batch {batch}: 1 Batch API job (1 pending), 0 of 2 requests done"
    assert said[-1].endswith("; 2 polls failed, retrying")  # the third ended the wait


def test_a_create_refused_for_now_is_tried_again_as_soon_as_a_job_ends(emu: Emulator) -> None:
    # A create refused with 429 (the queue is full) waited out its backoff even after a job
    # had ended and freed room: with the backoff at an hour, the batch waited an hour.
    emu.update_batch(max_active_jobs=1)
    hour = replace(FAST, input="inline", inline_limit_bytes=700, create_wait_initial_s=3600.0)
    handle = sg.submit_batch_job(
        _requests(4), base_url=emu.base_url, api_key=KEY, models=MODEL, batch_api=hour
    )
    rounds: list[float] = []

    def sleep(seconds: float) -> None:
        rounds.append(seconds)
        assert len(rounds) < 200, "the refused job was not created once room was freed"
        time.sleep(seconds)

    try:
        assert handle.waiting
        results = handle.wait(sleep=sleep)
    finally:
        handle.close()
    assert all(r.success for r in results), [r.error for r in results]
    assert _batch_counts(emu)["jobs_created"] == len(handle.jobs) > 1


def test_jobs_not_created_yet_read_waiting_to_be_created(emu: Emulator) -> None:
    emu.update_batch(max_active_jobs=1, pending_s=30.0)
    several = replace(FAST, input="inline", inline_limit_bytes=700)
    handle = sg.submit_batch_job(
        _requests(4), base_url=emu.base_url, api_key=KEY, models=MODEL, batch_api=several
    )
    handle.close()
    states = sg.list_batch_jobs().sort_values("chunk")["state"].tolist()
    assert states[0] == "pending" and set(states[1:]) == {"waiting to be created"}
    assert "intent" not in repr(handle) and "waiting to be created" in repr(handle)
    sg.cancel_batch_job(handle.batch_id, api_key=KEY)  # not left for the other tests


def test_cancel_records_each_job_as_cancelled_and_its_requests_as_not_run(emu: Emulator) -> None:
    # Before, a cancel left the log saying "pending" (and the not-created jobs to be created by
    # a later resume) until someone resumed the batch; `retry` found nothing to offer.
    emu.update_batch(max_active_jobs=1, pending_s=30.0)
    several = replace(FAST, input="inline", inline_limit_bytes=700)
    handle = sg.submit_batch_job(
        _requests(4), base_url=emu.base_url, api_key=KEY, models=MODEL, batch_api=several
    )
    handle.close()
    assert sg.cancel_batch_job(handle.batch_id, api_key=KEY) == [handle.jobs[0].job_name]
    listed = sg.list_batch_jobs()
    assert set(listed["state"]) == {"cancelled"} and listed["ingested"].all()
    assert "cancelled before the service created it" in set(listed["error"])
    [(status, not_run)] = _log_rows("SELECT status, not_run_count FROM batch_log")
    assert (status, not_run) == ("cancelled", 4)
    results = sg.resume_batch_job(handle.batch_id, api_key=KEY, batch_api=several)
    assert {r.error.kind for r in results if r.error} == {"not_run"}
    assert _batch_counts(emu)["jobs_created"] == 1  # the others are never created


def test_resuming_at_an_emulator_that_stopped_says_so_at_once() -> None:
    # Before, the resume polled the dead port for ten minutes (20 failed polls, 600 s).
    with Emulator(EmulatorConfig(seed=3, api_keys=(KEY,), batch=QUICK)) as gone:
        gone.update_batch(pending_s=600.0)
        url = gone.base_url
        handle = sg.submit_batch_job(
            _requests(2), base_url=url, api_key=KEY, models=MODEL, batch_api=FAST
        )
        handle.close()
    with pytest.raises(sg.EndpointGoneError) as stopped:
        sg.resume_batch_job(handle.batch_id, api_key=KEY, batch_api=FAST)
    said = str(stopped.value)
    assert said.startswith(f"Nothing answers at {url}, where batch {handle.batch_id}")
    assert f"`scriptgen retry {handle.batch_id}`" in said
    listed = sg.list_batch_jobs()
    assert listed["state"].tolist() == ["cancelled"]
    assert listed["error"].iloc[0] == f"the emulator at {url} stopped, and its jobs with it"
    assert _log_rows("SELECT not_run_count FROM batch_log") == [(2,)]


def test_a_plan_reads_as_text_in_ipython_and_says_who_chose_the_mode(emu: Emulator) -> None:
    from IPython.lib.pretty import pretty

    where = {"models": MODEL, "base_url": emu.base_url, "api_key": KEY, "db": False}
    asked = sg.batch_plan(_requests(2), mode="batch_api", **where)
    chosen = sg.batch_plan(_requests(2), mode="auto", deadline="1d", **where)
    assert pretty(asked) == str(asked)  # not the dataclass's fields
    assert str(asked).startswith("plan: Google's Batch API, as asked (mode='batch_api')")
    assert str(chosen).startswith("plan (mode='auto', chosen automatically): live calls fit")


class _InterruptOn(io.StringIO):
    """A stdout that interrupts the process (SIGINT, as the kernel's stop button does) once a
    line holding `marker` is written: the interrupt lands while the magic waits, not by a
    timer."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker
        self.fired = False

    def write(self, text: str) -> int:
        written = super().write(text)
        if not self.fired and text.endswith("\n") and self.marker in self.getvalue():
            self.fired = True
            os.kill(os.getpid(), signal.SIGINT)
        return written


def test_the_magic_says_what_it_waits_for_and_an_interrupt_in_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Before: the plan as a dataclass repr, nothing while waiting, no summary; an interrupt
    # said "Stopped waiting: Stopped waiting; ... resume_batch_job(...) ... .results.." in the
    # library's words; `jobs cancel` left the jobs "pending"; a dry run wrote a call log.
    from IPython import get_ipython
    from IPython.core.error import UsageError
    from IPython.testing.globalipapp import start_ipython

    from scriptgen_nb.emulator import ModelConfig
    from scriptgen_nb.jupyter.endpoint import SESSION

    shell = start_ipython() or get_ipython()
    shell.run_line_magic("load_ext", "scriptgen_nb")
    for name in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    slow = BatchConfig(pending_s=600.0, running_s=0.0)
    config = EmulatorConfig(api_keys=(), models={MODEL: ModelConfig()}, batch=slow)
    SESSION.start(config)
    SESSION.announced = True
    try:
        out = _InterruptOn("Batch API job (1 pending)")
        with contextlib.redirect_stdout(out):
            frame = shell.run_cell_magic(
                "scriptgen", f"batch --mode batch_api --model {MODEL}", "Tides.\nMoss.\n"
            )
        said = out.getvalue().splitlines()
        assert out.fired and "Traceback" not in out.getvalue()
        batch = said[-1].split("of batch ", 1)[1].split()[0]
        assert said[-3:-1] == [
            f"Submitted batch {batch} to the Batch API of this kernel's emulator (1 job); waiting "
            f"for its results. An interrupt stops the wait, not the jobs: `%scriptgen jobs "
            f"resume {batch}` collects them while this kernel runs (they end with it).",
            f"batch {batch}: 1 Batch API job (1 pending), 0 of 2 requests done (waited 0.0s)",
        ]
        assert said[-1:] == [
            f"Interrupted while waiting; the Batch API jobs of batch {batch} keep running on "
            f"this kernel's emulator: `%scriptgen jobs resume {batch}` collects them, "
            f"`%scriptgen jobs cancel {batch}` cancels them.",
        ]
        assert frame["error_kind"].tolist() == ["not_run", "not_run"]
        assert shell.run_line_magic("scriptgen", f"jobs cancel {batch}").startswith("cancelled 1")
        assert shell.run_line_magic("scriptgen", "jobs")["state"].tolist() == ["cancelled"]

        dry = tmp_path / "dry.duckdb"
        plan = shell.run_cell_magic(
            "scriptgen", f"batch --mode batch_api --dry-run --db {dry} --model {MODEL}", "Fog.\n"
        )
        assert isinstance(plan, sg.BatchPlan) and plan.batch_count == 1 and not dry.exists()

        handle = sg.submit_batch_job(sg.create_batch_requests(["Kelp."]), models=MODEL)
        handle.close()
        SESSION.stop()  # the kernel's emulator, and its jobs, are gone
        with pytest.raises(UsageError, match=r"Nothing answers at http://127\.0\.0\.1:"):
            shell.run_line_magic("scriptgen", f"jobs resume {handle.batch_id}")
    finally:
        SESSION.stop()


def test_the_magic_summarises_a_batch_api_run_as_the_terminal_does(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from IPython import get_ipython
    from IPython.testing.globalipapp import start_ipython

    from scriptgen_nb.emulator import ModelConfig
    from scriptgen_nb.jupyter.endpoint import SESSION

    shell = start_ipython() or get_ipython()
    shell.run_line_magic("load_ext", "scriptgen_nb")
    for name in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    SESSION.start(EmulatorConfig(api_keys=(), latency_scale=0.0, models={MODEL: ModelConfig()}))
    SESSION.announced = True
    try:
        shell.run_cell_magic("scriptgen", f"batch --mode batch_api --model {MODEL}", "Tides.\n")
    finally:
        SESSION.stop()
    said = capsys.readouterr().out
    assert re.search(r"^plan: Google's Batch API, as asked \(mode='batch_api'\)$", said, re.M)
    assert re.search(
        r"^Submitted batch (\w+) to the Batch API of this kernel's emulator", said, re.M
    )
    assert re.search(
        r"^scriptgen batch \w+ by the Batch API: 1/1 succeeded, .*\(0 not run\) in ", said, re.M
    )
