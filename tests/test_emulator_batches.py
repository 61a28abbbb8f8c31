"""The emulator's Batch API and Files API, driven by the real google-genai SDK over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from google import genai
from google.genai import errors, types

from scriptgen_nb.emulator import BatchConfig, ConfigError, Emulator, EmulatorConfig, ModelConfig
from scriptgen_nb.emulator.batches import BatchBook, BatchState
from scriptgen_nb.emulator.counters import Counters
from scriptgen_nb.emulator.files import FileStore
from scriptgen_nb.emulator.tokens import count_tokens
from tests.test_emulator import FLASH, KEY, raw, sdk

pytestmark = pytest.mark.integration

JobState = types.JobState
SCHEMA = {
    "type": "object",
    "properties": {"title": {"type": "string"}, "scenes": {"type": "integer"}},
    "required": ["title", "scenes"],
}


def batch_config(**batch: Any) -> EmulatorConfig:
    """Jobs that finish at once (latency_scale 0) unless timings are given; one key, one model."""
    scale = 1.0 if "pending_s" in batch else 0.0
    return EmulatorConfig(
        latency_scale=scale,
        api_keys=(KEY,),
        models={FLASH: ModelConfig(thinking=True)},
        batch=BatchConfig(**batch),
    )


@contextlib.contextmanager
def serving(**batch: Any) -> Iterator[tuple[Emulator, genai.Client]]:
    with Emulator(batch_config(**batch)) as emu, sdk(emu) as client:
        yield emu, client


@pytest.fixture
def emu_and_client() -> Iterator[tuple[Emulator, genai.Client]]:
    with serving() as pair:
        yield pair


def rows(n: int) -> list[dict[str, Any]]:
    return [
        {"contents": f"Chapter {i}: the lighthouse keeper", "metadata": {"key": f"k{i}"}}
        for i in range(n)
    ]


def finished(client: genai.Client, name: str, deadline_s: float = 5.0) -> types.BatchJob:
    """Poll until the job is done, failing the test at the deadline."""
    end = time.monotonic() + deadline_s
    while True:
        job = client.batches.get(name=name)
        if job.done:
            return job
        assert time.monotonic() < end, f"{name} still {job.state} after {deadline_s}s"
        time.sleep(0.02)


def operation(emu: Emulator, name: str) -> dict[str, Any]:
    status, _, data = raw(emu, "GET", f"/v1beta/{name}")
    assert status == 200
    body: dict[str, Any] = json.loads(data)
    return body


def upload_jsonl(client: genai.Client, lines: list[object]) -> types.File:
    data = b"".join(
        (line if isinstance(line, bytes) else json.dumps(line).encode()) + b"\n" for line in lines
    )
    return client.files.upload(file=io.BytesIO(data), config={"mime_type": "jsonl"})


# -- inline jobs ------------------------------------------------------------------------------


def test_inline_job_goes_pending_running_succeeded_on_time() -> None:
    with serving(pending_s=0.3, running_s=0.3) as (_, client):
        started = time.monotonic()
        job = client.batches.create(model=FLASH, src=rows(3), config={"display_name": "idem-1"})
        assert job.state == JobState.JOB_STATE_PENDING and job.display_name == "idem-1"
        assert job.name is not None and job.name.startswith("batches/")
        first_seen: dict[JobState, float] = {}
        end = started + 5.0
        while JobState.JOB_STATE_SUCCEEDED not in first_seen:
            state = client.batches.get(name=job.name).state
            assert state is not None
            first_seen.setdefault(state, time.monotonic() - started)
            assert time.monotonic() < end, first_seen
            time.sleep(0.02)
    assert list(first_seen) == [
        JobState.JOB_STATE_PENDING,
        JobState.JOB_STATE_RUNNING,
        JobState.JOB_STATE_SUCCEEDED,
    ]
    assert first_seen[JobState.JOB_STATE_RUNNING] >= 0.3
    assert first_seen[JobState.JOB_STATE_SUCCEEDED] >= 0.6


def test_inline_results_are_the_live_answers_with_keys_usage_and_schema() -> None:
    schema_row = {
        "contents": "Outline chapter 9",
        "metadata": {"key": "json"},
        "config": {"response_mime_type": "application/json", "response_json_schema": SCHEMA},
    }
    with serving() as (emu, client):
        job = client.batches.create(model=FLASH, src=[*rows(2), schema_row])
        assert job.name is not None
        done = finished(client, job.name)
        assert done.state == JobState.JOB_STATE_SUCCEEDED
        assert done.dest is not None and done.dest.inlined_responses is not None
        results = done.dest.inlined_responses
        assert [r.metadata for r in results] == [{"key": "k0"}, {"key": "k1"}, {"key": "json"}]
        for result in results:
            assert result.error is None and result.response is not None
            usage = result.response.usage_metadata
            assert usage is not None and usage.prompt_token_count and usage.candidates_token_count
        data = json.loads(results[2].response.text or "")  # type: ignore[union-attr]
        assert isinstance(data["title"], str) and isinstance(data["scenes"], int)
        # Batch rows use the separate batch service: no live request, no live tokens.
        counters = emu.counters()
        assert counters["models"][FLASH]["requests"] == 0
        assert counters["batches"]["jobs_created"] == 1
        assert counters["batches"]["rows_submitted"] == 3
        assert counters["batches"]["rows_succeeded"] == 3
        assert counters["batches"]["models"][FLASH]["output_tokens"] > 0
        # The same generator as the live endpoint: the same words for the same request.
        live = client.models.generate_content(
            model=FLASH, contents="Chapter 0: the lighthouse keeper"
        )
        assert results[0].response.text == live.text  # type: ignore[union-attr]
        raw_op = operation(emu, job.name)
    assert raw_op["done"] is True
    assert (
        raw_op["response"]["inlinedResponses"] == raw_op["metadata"]["output"]["inlinedResponses"]
    )
    assert raw_op["metadata"]["batchStats"] == {"requestCount": "3", "successfulRequestCount": "3"}
    assert {"createTime", "updateTime", "endTime"} <= set(raw_op["metadata"])


def test_batch_rows_do_not_spend_live_quota() -> None:
    config = EmulatorConfig(
        latency_scale=0, api_keys=(KEY,), models={FLASH: ModelConfig(rpm=1, rpd=1)}
    )
    with Emulator(config) as emu, sdk(emu) as client:
        job = client.batches.create(model=FLASH, src=rows(5))
        assert job.name is not None
        assert finished(client, job.name).state == JobState.JOB_STATE_SUCCEEDED
        assert client.models.generate_content(model=FLASH, contents="live").text
        with pytest.raises(errors.ClientError) as caught:
            client.models.generate_content(model=FLASH, contents="live again")
    assert caught.value.code == 429


def test_list_returns_display_names_across_pages(
    emu_and_client: tuple[Emulator, genai.Client],
) -> None:
    emu, client = emu_and_client
    for name in ("idem-a", "idem-b", "idem-c"):
        client.batches.create(model=FLASH, src=rows(1), config={"display_name": name})
    listed = [job.display_name for job in client.batches.list(config={"page_size": 2})]
    assert listed == ["idem-a", "idem-b", "idem-c"]
    status, _, data = raw(emu, "GET", "/v1beta/batches?pageSize=2")
    body = json.loads(data)
    assert status == 200 and len(body["operations"]) == 2 and body["nextPageToken"]


def test_cancel_a_pending_job_and_not_an_ended_one() -> None:
    with serving(pending_s=30.0, running_s=30.0) as (emu, client):
        job = client.batches.create(model=FLASH, src=rows(2))
        assert job.name is not None
        client.batches.cancel(name=job.name)
        cancelled = client.batches.get(name=job.name)
        assert cancelled.state == JobState.JOB_STATE_CANCELLED and cancelled.done
        assert cancelled.dest is None
        assert emu.counters()["batches"]["jobs_cancelled"] == 1
        assert emu.counters()["batches"]["rows_succeeded"] == 0
    with serving() as (emu, client):
        job = client.batches.create(model=FLASH, src=rows(1))
        assert job.name is not None
        finished(client, job.name)
        client.batches.cancel(name=job.name)
        assert client.batches.get(name=job.name).state == JobState.JOB_STATE_SUCCEEDED


def test_delete_forgets_the_job(emu_and_client: tuple[Emulator, genai.Client]) -> None:
    emu, client = emu_and_client
    kept = client.batches.create(model=FLASH, src=rows(1), config={"display_name": "kept"})
    gone = client.batches.create(model=FLASH, src=rows(1), config={"display_name": "gone"})
    assert gone.name is not None
    client.batches.delete(name=gone.name)
    with pytest.raises(errors.ClientError) as caught:
        client.batches.get(name=gone.name)
    assert caught.value.code == 404
    assert [job.name for job in client.batches.list()] == [kept.name]
    assert emu.counters()["batches"]["jobs_deleted"] == 1


@pytest.mark.parametrize(
    ("outcome", "state", "code"),
    [("failed", JobState.JOB_STATE_FAILED, 13), ("expired", JobState.JOB_STATE_EXPIRED, 4)],
)
def test_jobs_that_end_failed_or_expired(outcome: str, state: JobState, code: int) -> None:
    with serving(outcome=outcome) as (emu, client):
        job = client.batches.create(model=FLASH, src=rows(2))
        assert job.name is not None
        done = finished(client, job.name)
        assert done.state == state and done.dest is None
        raw_op = operation(emu, job.name)
        assert emu.counters()["batches"]["rows_succeeded"] == 0
    assert raw_op["done"] is True and raw_op["error"]["code"] == code
    assert "response" not in raw_op and "output" not in raw_op["metadata"]


# -- Google's quirks --------------------------------------------------------------------------


def test_chosen_rows_fail_while_the_job_succeeds() -> None:
    bad_row = {"contents": "too hot", "metadata": {"key": "hot"}, "config": {"temperature": 5.0}}
    with serving(error_keys=("k1",)) as (emu, client):
        job = client.batches.create(model=FLASH, src=[*rows(3), bad_row])
        assert job.name is not None
        done = finished(client, job.name)
        stats = operation(emu, job.name)["metadata"]["batchStats"]
        counters = emu.counters()["batches"]
    assert done.state == JobState.JOB_STATE_SUCCEEDED
    assert done.dest is not None and done.dest.inlined_responses is not None
    by_key = {r.metadata["key"]: r for r in done.dest.inlined_responses if r.metadata}
    assert by_key["k1"].response is None and by_key["k1"].error is not None
    assert by_key["k1"].error.code == 3
    # A row the live endpoint would refuse with a 400 fails alone, with Google's text.
    assert by_key["hot"].error is not None and by_key["hot"].error.code == 3
    assert "temperature" in (by_key["hot"].error.message or "")
    assert by_key["k0"].response is not None and by_key["k2"].response is not None
    assert stats == {"requestCount": "4", "successfulRequestCount": "2", "failedRequestCount": "2"}
    assert (counters["rows_succeeded"], counters["rows_failed"]) == (2, 2)


def test_row_error_rate_is_deterministic() -> None:
    def failed_keys() -> set[str]:
        with serving(row_error_rate=0.5) as (_, client):
            job = client.batches.create(model=FLASH, src=rows(20))
            assert job.name is not None
            done = finished(client, job.name)
        assert done.dest is not None and done.dest.inlined_responses is not None
        return {r.metadata["key"] for r in done.dest.inlined_responses if r.error and r.metadata}

    first = failed_keys()
    assert 0 < len(first) < 20
    assert failed_keys() == first


def test_shuffled_results_keep_their_keys() -> None:
    def results(**batch: Any) -> list[tuple[str, str]]:
        with serving(**batch) as (_, client):
            job = client.batches.create(model=FLASH, src=rows(12))
            assert job.name is not None
            done = finished(client, job.name)
        assert done.dest is not None and done.dest.inlined_responses is not None
        return [
            (r.metadata["key"], r.response.text or "")
            for r in done.dest.inlined_responses
            if r.metadata and r.response
        ]

    in_order, shuffled = results(), results(shuffle=True)
    assert [key for key, _ in in_order] == [f"k{i}" for i in range(12)]
    assert [key for key, _ in shuffled] != [key for key, _ in in_order]
    assert sorted(shuffled) == sorted(in_order)


def test_results_without_metadata() -> None:
    with serving(drop_metadata=True) as (_, client):
        job = client.batches.create(model=FLASH, src=rows(3))
        assert job.name is not None
        done = finished(client, job.name)
    assert done.dest is not None and done.dest.inlined_responses is not None
    assert [r.metadata for r in done.dest.inlined_responses] == [None, None, None]
    assert all(r.response and r.response.text for r in done.dest.inlined_responses)


def test_settings_change_for_new_jobs_only() -> None:
    with serving() as (emu, client):
        before = client.batches.create(model=FLASH, src=rows(1))
        emu.update_batch(outcome="failed")
        after = client.batches.create(model=FLASH, src=rows(1))
        assert before.name is not None and after.name is not None
        assert finished(client, before.name).state == JobState.JOB_STATE_SUCCEEDED
        assert finished(client, after.name).state == JobState.JOB_STATE_FAILED
        assert emu.config.batch.outcome == "failed"
        with pytest.raises(ConfigError):
            emu.update_batch(outcome="exploded")


def test_active_jobs_per_model_are_capped() -> None:
    with serving(pending_s=30.0, running_s=30.0, max_active_jobs=1) as (_, client):
        first = client.batches.create(model=FLASH, src=rows(1))
        with pytest.raises(errors.ClientError) as caught:
            client.batches.create(model=FLASH, src=rows(1))
        # Google's words when its enqueued-token quota is full: any quota's, with only a Help
        # link (no QuotaFailure, no RetryInfo). Before: "Too many batch jobs in progress ...".
        assert caught.value.code == 429 and caught.value.status == "RESOURCE_EXHAUSTED"
        said = caught.value.message or ""
        assert said.startswith("You exceeded your current quota, please check your plan and")
        details = caught.value.details["error"]["details"]
        assert [d["@type"].rsplit(".", 1)[-1] for d in details] == ["Help"]
        assert first.name is not None
        client.batches.cancel(name=first.name)
        assert client.batches.create(model=FLASH, src=rows(1)).state == JobState.JOB_STATE_PENDING


def test_jobs_past_the_enqueued_token_quota_are_refused_until_the_queue_drains() -> None:
    # Google's Batch API queues at most so many input tokens per model; a create that would
    # pass them is refused with its quota 429 (forum thread 112624).
    row = count_tokens("Chapter 0: the lighthouse keeper")  # what each of rows(n) holds
    with serving(pending_s=30.0, running_s=30.0, max_enqueued_tokens=3 * row) as (_, client):
        first = client.batches.create(model=FLASH, src=rows(2))
        with pytest.raises(errors.ClientError) as caught:
            client.batches.create(model=FLASH, src=rows(2))  # 4 rows' tokens: one too many
        assert caught.value.code == 429
        assert (caught.value.message or "").startswith("You exceeded your current quota")
        line = {"key": "a", "request": {"contents": [{"parts": [{"text": "Chapter 0: the x"}]}]}}
        small = upload_jsonl(client, [line, {"key": "bad"}])  # a file's rows count; bad: none
        assert client.batches.create(model=FLASH, src=small.name).name is not None
        with pytest.raises(errors.ClientError):
            client.batches.create(model=FLASH, src=rows(1))
        assert first.name is not None
        client.batches.cancel(name=first.name)  # its tokens leave the queue
        assert client.batches.create(model=FLASH, src=rows(2)).state == JobState.JOB_STATE_PENDING


def test_refusals_keys_models_and_bodies(emu_and_client: tuple[Emulator, genai.Client]) -> None:
    emu, client = emu_and_client
    inline = {"batch": {"inputConfig": {"requests": {"requests": [{"request": {"contents": []}}]}}}}
    create = f"/v1beta/models/{FLASH}:batchGenerateContent"
    status, _, data = raw(emu, "POST", create, inline, {"x-goog-api-key": "wrong"})
    assert status == 400 and b"API_KEY_INVALID" in data
    status, _, _ = raw(emu, "GET", "/v1beta/batches", headers={"x-goog-api-key": ""})
    assert status == 403
    with pytest.raises(errors.ClientError) as caught:
        client.batches.create(model="no-such-model", src=rows(1))
    assert caught.value.code == 404
    for body in ({}, {"batch": {"inputConfig": {}}}, {"batch": {"inputConfig": {"requests": {}}}}):
        status, _, data = raw(emu, "POST", create, body)
        assert status == 400, (body, data)
    assert emu.counters()["batches"]["jobs_created"] == 0


def test_state_machine_on_a_fake_clock() -> None:
    now = [100.0]
    counters = Counters()

    def answer(model: str, request: Any) -> dict[str, Any]:
        return {"response": {"candidates": [], "modelVersion": model}}

    book = BatchBook(FileStore(1024), counters, answer, seed=0, clock=lambda: now[0])
    body = json.dumps(
        {"batch": {"inputConfig": {"requests": {"requests": [{"request": {"contents": "x"}}]}}}}
    ).encode()
    created = book.create("m", body, BatchConfig(pending_s=10, running_s=20), scale=0.5)
    batch_id = created["name"].removeprefix("batches/")
    assert created["metadata"]["state"] == BatchState.PENDING

    def state_at(t: float) -> str:
        now[0] = t
        return str(book.get(batch_id)["metadata"]["state"])

    assert state_at(104.9) == BatchState.PENDING
    assert state_at(105.0) == BatchState.RUNNING
    assert state_at(114.9) == BatchState.RUNNING
    assert counters.snapshot()["batches"]["rows_succeeded"] == 0  # nothing answered early
    assert state_at(115.0) == BatchState.SUCCEEDED
    assert counters.snapshot()["batches"]["rows_succeeded"] == 1
    assert state_at(999.0) == BatchState.SUCCEEDED
    assert counters.snapshot()["batches"]["rows_succeeded"] == 1  # answered once
    op = book.get(batch_id)
    assert op["metadata"]["endTime"] == op["metadata"]["updateTime"]

    late = book.create("m", body, BatchConfig(pending_s=10, running_s=20), scale=1.0)["name"]
    now[0] = 1010.0
    book.cancel(late.removeprefix("batches/"))
    now[0] = 5000.0
    assert book.get(late.removeprefix("batches/"))["metadata"]["state"] == BatchState.CANCELLED


def test_batch_table_in_a_config_mapping() -> None:
    config = EmulatorConfig.from_mapping(
        {"batch": {"pending_s": 2, "outcome": "expired", "error_keys": ["a"], "shuffle": True}}
    )
    assert config.batch == BatchConfig(
        pending_s=2.0, outcome="expired", error_keys=("a",), shuffle=True
    )
    with pytest.raises(ConfigError, match=r"batch\.row_error_rate"):
        EmulatorConfig.from_mapping({"batch": {"row_error_rate": 2}})
    with pytest.raises(ConfigError, match=r"batch\.nope"):
        EmulatorConfig.from_mapping({"batch": {"nope": 1}})
    assert EmulatorConfig.from_mapping({"batch": {"mime_refusals": 2}}).batch.mime_refusals == 2
    tokens = EmulatorConfig.from_mapping({"batch": {"max_enqueued_tokens": 9}}).batch
    assert tokens.max_enqueued_tokens == 9
    with pytest.raises(ConfigError, match=r"batch\.max_enqueued_tokens must be a positive"):
        EmulatorConfig.from_mapping({"batch": {"max_enqueued_tokens": 0}})
    with pytest.raises(ConfigError, match=r"batch\.mime_refusals must be a whole number"):
        EmulatorConfig.from_mapping({"batch": {"mime_refusals": -1}})


# -- file jobs and the Files API --------------------------------------------------------------


def test_file_job_round_trip() -> None:
    requests = [
        {"key": f"f{i}", "request": {"contents": [{"parts": [{"text": f"q{i}"}]}]}}
        for i in range(4)
    ]
    with serving() as (emu, client):
        uploaded = upload_jsonl(client, [*requests, b"{not json", {"key": "norequest"}])
        assert uploaded.name is not None and uploaded.name.startswith("files/")
        assert uploaded.source == types.FileSource.UPLOADED
        fetched = client.files.get(name=uploaded.name)
        assert fetched.size_bytes == uploaded.size_bytes and fetched.size_bytes
        job = client.batches.create(model=FLASH, src=uploaded.name, config={"display_name": "f"})
        assert job.name is not None
        done = finished(client, job.name)
        assert done.state == JobState.JOB_STATE_SUCCEEDED
        assert done.dest is not None and done.dest.file_name is not None
        result = client.files.get(name=done.dest.file_name)
        assert result.source == types.FileSource.GENERATED and result.download_uri
        lines = [
            json.loads(line)
            for line in client.files.download(file=done.dest.file_name).splitlines()
        ]
        counters = emu.counters()
    assert [line.get("key") for line in lines] == ["f0", "f1", "f2", "f3", None, "norequest"]
    assert all(
        line["response"]["candidates"][0]["content"]["parts"][0]["text"] for line in lines[:4]
    )
    assert lines[4]["error"]["code"] == 3 and lines[5]["error"]["code"] == 3
    assert counters["files"]["uploaded"] == 1 and counters["files"]["downloaded"] == 1
    assert (counters["batches"]["rows_succeeded"], counters["batches"]["rows_failed"]) == (4, 2)


def test_uploaded_files_are_deleted_and_not_downloadable(
    emu_and_client: tuple[Emulator, genai.Client],
) -> None:
    _, client = emu_and_client
    uploaded = upload_jsonl(client, [{"key": "a", "request": {"contents": "x"}}])
    assert uploaded.name is not None
    with pytest.raises(errors.ClientError) as caught:
        client.files.download(file=uploaded.name)
    assert caught.value.code == 400
    assert [f.name for f in client.files.list()] == [uploaded.name]
    client.files.delete(name=uploaded.name)
    with pytest.raises(errors.ClientError) as caught:
        client.files.get(name=uploaded.name)
    assert caught.value.code == 403  # Google's answer for a file that is not there


def test_a_job_whose_input_file_is_deleted_fails() -> None:
    with serving(pending_s=0.2, running_s=0.0) as (_, client):
        uploaded = upload_jsonl(client, [{"key": "a", "request": {"contents": "x"}}])
        assert uploaded.name is not None
        job = client.batches.create(model=FLASH, src=uploaded.name)
        client.files.delete(name=uploaded.name)
        assert job.name is not None
        assert finished(client, job.name).state == JobState.JOB_STATE_FAILED


def test_upload_url_carries_no_key_and_the_session_id_is_the_credential() -> None:
    with serving() as (emu, _):
        data = b'{"key": "a", "request": {"contents": "x"}}\n'
        start_headers = {
            "X-Goog-Upload-Protocol": "resumable",
            "X-Goog-Upload-Command": "start",
            "X-Goog-Upload-Header-Content-Length": str(len(data)),
            "X-Goog-Upload-Header-Content-Type": "jsonl",
        }
        status, headers, _ = raw(emu, "POST", "/upload/v1beta/files", {"file": {}}, start_headers)
        assert status == 200
        url = headers["x-goog-upload-url"]
        assert url.startswith(emu.base_url) and KEY not in url and "key=" not in url
        path = url.removeprefix(emu.base_url)
        chunk = {
            "x-goog-api-key": "",
            "X-Goog-Upload-Command": "upload, finalize",
            "X-Goog-Upload-Offset": "0",
        }
        guessed = path.replace("upload_id=", "upload_id=x")
        status, headers, _ = raw(emu, "POST", guessed, data, chunk)
        assert status == 404 and headers["x-goog-upload-status"] == "final"
        status, headers, body = raw(emu, "POST", path, data, chunk)
        assert status == 200 and headers["x-goog-upload-status"] == "final"
        assert json.loads(body)["file"]["sizeBytes"] == str(len(data))
        status, _, _ = raw(emu, "POST", path, data, chunk)
        assert status == 404  # a finished session takes no more bytes
        # Starting an upload needs a key like any other call.
        status, _, _ = raw(
            emu, "POST", "/upload/v1beta/files", {}, {**start_headers, "x-goog-api-key": ""}
        )
        assert status == 403


def test_uploads_may_exceed_the_body_limit_but_not_max_file_bytes() -> None:
    config = EmulatorConfig(
        latency_scale=0,
        api_keys=(KEY,),
        models={FLASH: ModelConfig()},
        max_body_bytes=1024,
        max_file_bytes=8192,
    )
    line = {"key": "k", "request": {"contents": "x" * 200}}
    with Emulator(config) as emu, sdk(emu) as client:
        fits = upload_jsonl(client, [line] * 20)  # ~5 KB: over the body limit, under the cap
        assert fits.size_bytes is not None and 1024 < fits.size_bytes <= 8192
        started = time.monotonic()
        with pytest.raises(errors.ClientError) as caught:
            upload_jsonl(client, [line] * 60)
        assert caught.value.code == 400 and time.monotonic() - started < 1.0


# -- the async client -------------------------------------------------------------------------


def test_async_client_create_get_list_upload_download() -> None:
    async def run(
        client: genai.Client,
    ) -> tuple[types.BatchJob, types.BatchJob, bytes, list[str | None]]:
        created = await client.aio.batches.create(
            model=FLASH, src=rows(2), config={"display_name": "aio"}
        )
        assert created.name is not None
        got = await client.aio.batches.get(name=created.name)
        uploaded = await client.aio.files.upload(
            file=io.BytesIO(b'{"key": "a", "request": {"contents": "x"}}\n'),
            config={"mime_type": "jsonl"},
        )
        assert uploaded.name is not None
        file_job = await client.aio.batches.create(model=FLASH, src=uploaded.name)
        assert file_job.name is not None
        file_done = await client.aio.batches.get(name=file_job.name)
        assert file_done.dest is not None and file_done.dest.file_name is not None
        data = await client.aio.files.download(file=file_done.dest.file_name)
        names = [job.display_name async for job in await client.aio.batches.list()]
        await client.aio.aclose()
        return created, got, data, names

    with serving() as (_, client):
        created, got, data, names = asyncio.run(run(client))
    assert created.state == JobState.JOB_STATE_PENDING
    assert got.state == JobState.JOB_STATE_SUCCEEDED and got.display_name == "aio"
    assert got.dest is not None and got.dest.inlined_responses is not None
    assert [r.metadata for r in got.dest.inlined_responses] == [{"key": "k0"}, {"key": "k1"}]
    assert json.loads(data)["key"] == "a"
    assert names == ["aio", None]
