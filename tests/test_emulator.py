"""The Gemini emulator over real HTTP, driven by the real google-genai SDK and by raw HTTP."""

from __future__ import annotations

import ast
import contextlib
import enum
import http.client
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pydantic
import pytest
from google import genai
from google.genai import errors, types

from scriptgen_nb.emulator import (
    ConfigError,
    Emulator,
    EmulatorConfig,
    FaultConfig,
    ModelConfig,
    content,
    default_config,
)
from scriptgen_nb.emulator.__main__ import main as cli_main
from scriptgen_nb.emulator.quota import Limits, QuotaBook, QuotaKind

pytestmark = pytest.mark.integration

KEY = "test-key"
FLASH = "gemini-2.5-flash"
LITE = "gemini-2.0-flash-lite"
RPM_ID = "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
RPD_ID = "GenerateRequestsPerDayPerProjectPerModel-FreeTier"
TPM_ID = "GenerateContentInputTokensPerModelPerMinute-FreeTier"
PROMPT = "Write a short video script about the lighthouses of Scotland."


def config(**models: ModelConfig) -> EmulatorConfig:
    """Instant answers, one accepted key; FLASH (thinking) and LITE unless models are given."""
    chosen = models or {FLASH: ModelConfig(thinking=True), LITE: ModelConfig()}
    return EmulatorConfig(latency_scale=0, api_keys=(KEY,), models=chosen)


@contextlib.contextmanager
def sdk(emu: Emulator, **options: Any) -> Iterator[genai.Client]:
    retry = types.HttpRetryOptions(attempts=1)
    options.setdefault("api_key", KEY)
    key = options.pop("api_key")
    client = genai.Client(
        api_key=key,
        http_options=types.HttpOptions(base_url=emu.base_url, retry_options=retry, **options),
    )
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(config()) as emulator:
        yield emulator


@pytest.fixture
def client(emu: Emulator) -> Iterator[genai.Client]:
    with sdk(emu) as c:
        yield c


def raw(
    emu: Emulator,
    method: str,
    path: str,
    body: object = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection: (status, lower-cased headers, body bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=10)
    try:
        data = (
            body if isinstance(body, bytes) else None if body is None else json.dumps(body).encode()
        )
        sent = {"x-goog-api-key": KEY, "Content-Type": "application/json"}
        sent.update(headers or {})
        conn.request(method, path, body=data, headers={k: v for k, v in sent.items() if v})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def generate_raw(emu: Emulator, prompt: str, model: str = FLASH, **extra: Any) -> tuple[int, Any]:
    body = {"contents": [{"role": "user", "parts": [{"text": prompt}]}], **extra}
    status, _, data = raw(emu, "POST", f"/v1beta/models/{model}:generateContent", body)
    return status, json.loads(data)


def detail(error_body: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(d for d in error_body["error"]["details"] if d["@type"].endswith(kind))


# -- generateContent, paths, request formats --------------------------------------------------


def answer(client: genai.Client, prompt: str) -> tuple[str, int, int]:
    """The answer's text, its tokens and its thought tokens (FLASH thinks)."""
    reply = client.models.generate_content(model=FLASH, contents=prompt)
    usage = reply.usage_metadata
    assert reply.text and usage
    return reply.text, usage.candidates_token_count or 0, usage.thoughts_token_count or 0


def test_answers_take_the_shape_the_prompt_asks_for(client: genai.Client) -> None:
    haiku, haiku_tokens, haiku_thoughts = answer(client, "Write a haiku about the tides.")
    lines = haiku.splitlines()
    assert len(lines) == 3 and all(0 < len(line.split()) <= 8 for line in lines)
    assert "tides" in haiku.lower()
    facts = answer(client, "List 5 facts about moss.")[0].splitlines()
    assert [line.split(".")[0] for line in facts] == ["1", "2", "3", "4", "5"]
    assert all("moss" in line for line in facts)
    ideas = answer(client, "Give me three video ideas about volcanoes")[0].splitlines()
    assert len(ideas) == 3 and ideas[2].startswith("3. ")
    summary = answer(client, "Summarize how tides work in 2 sentences.")[0]
    assert summary.count(". ") + summary.endswith(".") == 2
    history = answer(client, "Summarise the history of lighthouses.")[0]
    assert "\n" not in history and 3 <= history.count(". ") + 1 <= 5  # one paragraph
    question, question_tokens, question_thoughts = answer(client, "What makes the tides?")
    assert "\n" not in question and question_tokens < 80
    script, script_tokens, script_thoughts = answer(client, PROMPT)
    assert "SCENE 1" in script and script_tokens > 150  # the seed's script prompts are scripts
    # A short ask thinks little: its thoughts are of its answer's size, not a script's.
    assert haiku_thoughts <= max(16, haiku_tokens) and question_thoughts <= max(16, question_tokens)
    assert script_thoughts >= script_tokens // 4 > max(haiku_thoughts, question_thoughts)
    assert answer(client, "Write a haiku about the tides.")[0] == haiku  # deterministic


def test_an_answer_quoted_back_is_about_its_subject_not_the_emulators_own_words() -> None:
    # A chapter's script quotes the previous one, whose stock narration says "Ask anyone who
    # has worked with ...": a pronoun is not a topic ("most accounts of Keepers anyone leave").
    quoted = "Continue from: Ask anyone who has worked with lighthouses, and everyone agrees."
    assert content.keywords(quoted) == ["Continue", "lighthouses", "agrees"]
    # Nor are the image-prompt template's own words ("restless Visual").
    asked = "The Lamp: image prompts. Visual style: calm. One prompt per frame, the scene's mood."
    assert content.keywords(asked) == ["Lamp", "calm", "mood"]


def test_generate_returns_deterministic_text_with_consistent_usage(client: genai.Client) -> None:
    first = client.models.generate_content(model=FLASH, contents=PROMPT)
    again = client.models.generate_content(model=FLASH, contents=PROMPT)
    other = client.models.generate_content(model=FLASH, contents="A script about volcanoes.")
    assert first.text and "SCENE 1" in first.text and "Scotland" in first.text
    assert first.text == again.text
    assert other.text != first.text
    usage = first.usage_metadata
    assert usage is not None and usage.prompt_token_count and usage.candidates_token_count
    assert usage.thoughts_token_count  # FLASH is configured with thinking
    assert usage.total_token_count == (
        usage.prompt_token_count + usage.candidates_token_count + usage.thoughts_token_count
    )
    assert 100 < usage.candidates_token_count < 1000
    assert first.candidates and first.candidates[0].finish_reason == types.FinishReason.STOP
    assert first.model_version == FLASH and first.response_id


def test_non_thinking_model_and_thinking_budget(client: genai.Client) -> None:
    lite = client.models.generate_content(model=LITE, contents=PROMPT)
    assert lite.usage_metadata and not lite.usage_metadata.thoughts_token_count
    off = client.models.generate_content(
        model=FLASH,
        contents=PROMPT,
        config=types.GenerateContentConfig(thinking_config=types.ThinkingConfig(thinking_budget=0)),
    )
    assert off.usage_metadata and not off.usage_metadata.thoughts_token_count
    capped = client.models.generate_content(
        model=FLASH,
        contents=PROMPT,
        config=types.GenerateContentConfig(thinking_config=types.ThinkingConfig(thinking_budget=7)),
    )
    assert capped.usage_metadata and capped.usage_metadata.thoughts_token_count == 7


def test_v1_v1beta_and_v1alpha_paths(emu: Emulator) -> None:
    texts = []
    for version in ("v1", "v1beta"):
        with sdk(emu, api_version=version) as c:
            texts.append(c.models.generate_content(model=FLASH, contents=PROMPT).text)
    status, _, data = raw(
        emu,
        "POST",
        f"/v1alpha/models/{FLASH}:generateContent",
        {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}]},
    )
    body = json.loads(data)
    assert status == 200
    assert texts[0] == texts[1] == body["candidates"][0]["content"]["parts"][0]["text"]


def test_snake_case_body_and_query_key_accepted(emu: Emulator) -> None:
    body = {
        "contents": [{"role": "user", "parts": [{"text": PROMPT}]}],
        "system_instruction": {"parts": [{"text": "You write documentary scripts."}]},
        "safety_settings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
        "generation_config": {
            "temperature": 0.4,
            "top_p": 0.9,
            "top_k": 40.0,
            "seed": 7,
            "max_output_tokens": 30,
            "stop_sequences": ["ZZZ"],
            "response_mime_type": "text/plain",
            "thinking_config": {"thinking_budget": 0},
        },
    }
    status, headers, data = raw(
        emu,
        "POST",
        f"/v1beta/models/{FLASH}:generateContent?key={KEY}",
        body,
        headers={"x-goog-api-key": ""},
    )
    assert status == 200 and headers["content-type"].startswith("application/json")
    answer = json.loads(data)
    assert answer["candidates"][0]["finishReason"] == "MAX_TOKENS"
    assert answer["usageMetadata"]["candidatesTokenCount"] <= 30
    assert "thoughtsTokenCount" not in answer["usageMetadata"]
    status, again = generate_raw(
        emu,
        PROMPT,
        systemInstruction=body["system_instruction"],
        generationConfig={
            "temperature": 0.4,
            "topP": 0.9,
            "topK": 40,
            "seed": 7,
            "maxOutputTokens": 30,
            "stopSequences": ["ZZZ"],
            "responseMimeType": "text/plain",
            "thinkingConfig": {"thinkingBudget": 0},
        },
    )
    assert status == 200 and again["candidates"] == answer["candidates"]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"{not json", "Invalid JSON payload"),
        ({"generationConfig": {"temperature": 0.5}}, "contents is not specified"),
        ({"contents": []}, "contents is not specified"),
        (
            {"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"max_tokens": 5}},
            'Unknown name "max_tokens"',
        ),
        ({"contents": [{"parts": [{"text": "x"}]}], "generation_config": {"temperature": 3}}, "2"),
    ],
)
def test_invalid_bodies_are_400_invalid_argument(emu: Emulator, body: object, needle: str) -> None:
    status, headers, data = raw(emu, "POST", f"/v1beta/models/{FLASH}:generateContent", body)
    error = json.loads(data)["error"]
    assert status == 400 and headers["content-type"].startswith("application/json")
    assert error["status"] == "INVALID_ARGUMENT" and needle in error["message"]


def test_stop_sequence_cuts_the_answer(client: genai.Client) -> None:
    full = client.models.generate_content(model=LITE, contents=PROMPT).text
    assert full is not None
    cut = client.models.generate_content(
        model=LITE, contents=PROMPT, config=types.GenerateContentConfig(stop_sequences=["SCENE 2"])
    )
    assert cut.text is not None and full.startswith(cut.text) and "SCENE 2" not in cut.text
    assert cut.candidates and cut.candidates[0].finish_reason == types.FinishReason.STOP


def test_max_output_tokens_truncates_with_max_tokens(client: genai.Client) -> None:
    full = client.models.generate_content(model=LITE, contents=PROMPT).text
    short = client.models.generate_content(
        model=LITE, contents=PROMPT, config=types.GenerateContentConfig(max_output_tokens=25)
    )
    assert full and short.text and full.startswith(short.text) and len(short.text) < len(full)
    assert short.candidates and short.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    assert short.usage_metadata and 0 < (short.usage_metadata.candidates_token_count or 0) <= 25


def test_limits_of_the_model_are_400(emu: Emulator) -> None:
    emu.update_model(LITE, input_token_limit=10, output_token_limit=100)
    status, body = generate_raw(emu, PROMPT * 3, LITE)
    assert status == 400 and "input token count" in body["error"]["message"]
    status, body = generate_raw(emu, "hi", LITE, generationConfig={"maxOutputTokens": 500})
    assert status == 400 and "maxOutputTokens" in body["error"]["message"]


# -- streaming, countTokens, models ----------------------------------------------------------


def test_stream_chunks_join_to_the_full_text(client: genai.Client) -> None:
    full = client.models.generate_content(model=FLASH, contents=PROMPT)
    chunks = list(client.models.generate_content_stream(model=FLASH, contents=PROMPT))
    assert len(chunks) > 2
    assert "".join(c.text or "" for c in chunks) == full.text
    assert all(c.usage_metadata is None for c in chunks[:-1])
    assert chunks[-1].usage_metadata == full.usage_metadata
    assert (
        chunks[-1].candidates and chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    )
    assert chunks[0].candidates and chunks[0].candidates[0].finish_reason is None
    # The chunked stream ended cleanly, so the pooled keep-alive connection is reusable.
    assert client.models.generate_content(model=FLASH, contents=PROMPT).text == full.text


def test_stream_is_server_sent_events(emu: Emulator) -> None:
    body = {"contents": [{"parts": [{"text": PROMPT}]}]}
    status, headers, data = raw(
        emu, "POST", f"/v1beta/models/{FLASH}:streamGenerateContent?alt=sse", body
    )
    events = data.decode().split("\r\n\r\n")
    assert status == 200 and headers["content-type"] == "text/event-stream"
    assert events[-1] == "" and all(e.startswith("data: {") for e in events[:-1])


def test_count_tokens_matches_prompt_token_count(client: genai.Client, emu: Emulator) -> None:
    counted = client.models.count_tokens(model=FLASH, contents=PROMPT)
    answer = client.models.generate_content(model=FLASH, contents=PROMPT)
    assert (
        answer.usage_metadata and counted.total_tokens == answer.usage_metadata.prompt_token_count
    )
    system = {"parts": [{"text": "You write documentary scripts for a young audience."}]}
    contents = [{"role": "user", "parts": [{"text": PROMPT}]}]
    status, _, data = raw(
        emu,
        "POST",
        f"/v1beta/models/{FLASH}:countTokens",
        {"generateContentRequest": {"contents": contents, "systemInstruction": system}},
    )
    _, generated = generate_raw(emu, PROMPT, systemInstruction=system)
    assert status == 200
    assert json.loads(data)["totalTokens"] == generated["usageMetadata"]["promptTokenCount"]
    assert json.loads(data)["totalTokens"] > (counted.total_tokens or 0)


def test_models_list_pages_and_get() -> None:
    with Emulator(EmulatorConfig(latency_scale=0)) as emu, sdk(emu) as client:
        status, _, data = raw(emu, "GET", "/v1beta/models?pageSize=4")
        first = json.loads(data)
        assert status == 200 and len(first["models"]) == 4 and first["nextPageToken"]
        status, _, data = raw(
            emu, "GET", f"/v1beta/models?pageSize=4&pageToken={first['nextPageToken']}"
        )
        assert status == 200 and len(json.loads(data)["models"]) == 4
        names = [m.name for m in client.models.list(config={"page_size": 2})]
        assert names == [f"models/{n}" for n in default_config().models]
        got = client.models.get(model="gemini-2.5-pro")
        assert got.name == "models/gemini-2.5-pro" and got.display_name == "Gemini 2.5 Pro"
        assert got.input_token_limit == 1_048_576 and got.output_token_limit == 65_536
        assert got.supported_actions and "generateContent" in got.supported_actions
        assert got.version
        with pytest.raises(errors.ClientError) as info:
            client.models.get(model="gemini-0-nothing")
        assert info.value.code == 404


def test_default_catalogue_has_the_required_models() -> None:
    models = default_config().models
    for name in (
        "gemini-3.8-flash",
        "gemini-3.5-flash",
        "gemini-3.5-flash-lite",
        "gemini-3.1-flash-lite",
        "gemini-3.1-pro-preview",
        "gemini-2.5-pro",
        "gemini-2.5-flash",
        "gemini-2.5-flash-lite",
        "gemini-2.0-flash-lite",
    ):
        assert name in models and 1.0 <= models[name].latency_base_s <= 3.0
    assert (models[FLASH].rpm, models[FLASH].tpm, models[FLASH].rpd) == (10, 250_000, 250)
    assert (models[LITE].rpm, models[LITE].tpm, models[LITE].rpd) == (30, 1_000_000, 1500)


# -- errors and keys ---------------------------------------------------------------------------


def test_unknown_model_and_unknown_path_are_404(client: genai.Client, emu: Emulator) -> None:
    with pytest.raises(errors.ClientError) as info:
        client.models.generate_content(model="gemini-9-imaginary", contents="hi")
    assert info.value.code == 404 and info.value.status == "NOT_FOUND"
    assert info.value.message and info.value.message.startswith(
        "models/gemini-9-imaginary is not found for API version v1,"
    )
    status, headers, data = raw(emu, "GET", "/v1beta/tunedModels/x")
    assert status == 404 and headers["content-type"].startswith("application/json")
    assert json.loads(data)["error"]["status"] == "NOT_FOUND"


def test_wrong_key_is_400_api_key_invalid(emu: Emulator) -> None:
    with sdk(emu, api_key="wrong-key") as bad, pytest.raises(errors.ClientError) as info:
        bad.models.generate_content(model=FLASH, contents=PROMPT)
    assert info.value.code == 400 and info.value.status == "INVALID_ARGUMENT"
    assert info.value.message == "API key not valid. Please pass a valid API key."
    reasons = [d.get("reason") for d in info.value.details["error"]["details"]]
    assert "API_KEY_INVALID" in reasons
    assert "wrong-key" not in json.dumps(info.value.details)


def test_missing_key_is_403(emu: Emulator) -> None:
    status, _, data = raw(
        emu,
        "POST",
        f"/v1beta/models/{FLASH}:generateContent",
        {"contents": []},
        {"x-goog-api-key": ""},
    )
    error = json.loads(data)["error"]
    assert status == 403 and error["status"] == "PERMISSION_DENIED"
    assert "unregistered callers" in error["message"]


def test_any_non_empty_key_when_no_keys_configured() -> None:
    cfg = EmulatorConfig(latency_scale=0, models={FLASH: ModelConfig()})
    with Emulator(cfg) as emu:
        status, _ = generate_raw(emu, "hi")
        assert status == 200


def test_key_never_reaches_counters_or_logs(
    emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "sk-very-secret-value"
    caplog.set_level(logging.DEBUG, logger="scriptgen_nb.emulator")
    raw(
        emu,
        "POST",
        f"/v1beta/models/{FLASH}:generateContent?key={secret}",
        b"{",
        {"x-goog-api-key": ""},
    )
    raw(emu, "GET", f"/v1beta/models?key={secret}", headers={"x-goog-api-key": secret})
    raw(emu, "GET", f"/nowhere?key={secret}")
    assert caplog.records  # requests were logged ...
    assert secret not in caplog.text  # ... without the key
    assert secret not in json.dumps(emu.counters())


# -- quotas --------------------------------------------------------------------------------------


def test_rpm_429_with_fractional_retry_delay_under_compressed_windows() -> None:
    cfg = EmulatorConfig(
        latency_scale=0, api_keys=(KEY,), minute_s=2.0, models={FLASH: ModelConfig(rpm=2)}
    )
    with Emulator(cfg) as emu, sdk(emu) as client:
        client.models.generate_content(model=FLASH, contents="one")
        client.models.generate_content(model=FLASH, contents="two")
        with pytest.raises(errors.ClientError) as info:
            client.models.generate_content(model=FLASH, contents="three")
    error = info.value
    assert error.code == 429 and error.status == "RESOURCE_EXHAUSTED"
    body = error.details
    violation = detail(body, "QuotaFailure")["violations"][0]
    assert violation["quotaId"] == RPM_ID
    assert violation["quotaMetric"].endswith("generate_content_free_tier_requests")
    assert violation["quotaDimensions"] == {"location": "global", "model": FLASH}
    delay = detail(body, "RetryInfo")["retryDelay"]
    assert re.fullmatch(r"\d+\.\d{3}s", delay) and 0 < float(delay[:-1]) <= 2.0
    assert re.search(r"Please retry in \d+(\.\d+)?s\.$", body["error"]["message"])
    assert "limit: 2, model: gemini-2.5-flash" in body["error"]["message"]
    assert detail(body, "Help")["links"][0]["url"].startswith("https://ai.google.dev/")


def test_rpm_429_with_whole_seconds_under_real_windows() -> None:
    cfg = EmulatorConfig(latency_scale=0, api_keys=(KEY,), models={FLASH: ModelConfig(rpm=1)})
    with Emulator(cfg) as emu:
        assert generate_raw(emu, "one")[0] == 200
        status, body = generate_raw(emu, "two")
    assert status == 429
    delay = detail(body, "RetryInfo")["retryDelay"]
    assert re.fullmatch(r"\d+s", delay) and 59 <= int(delay[:-1]) <= 60


def test_tpm_violation() -> None:
    cfg = config(**{FLASH: ModelConfig(tpm=25)})
    with Emulator(cfg) as emu:
        assert generate_raw(emu, PROMPT)[0] == 200  # 12 tokens
        status, body = generate_raw(emu, PROMPT)
    assert status == 429
    (violation,) = detail(body, "QuotaFailure")["violations"]
    assert violation["quotaId"] == TPM_ID
    assert violation["quotaMetric"].endswith("generate_content_free_tier_input_token_count")


def test_rpd_violation_with_compressed_day() -> None:
    cfg = EmulatorConfig(
        latency_scale=0,
        api_keys=(KEY,),
        minute_s=1.0,
        day_s=30.0,
        models={FLASH: ModelConfig(rpd=2)},
    )
    with Emulator(cfg) as emu:
        assert [generate_raw(emu, p)[0] for p in ("a", "b")] == [200, 200]
        status, body = generate_raw(emu, "c")
    assert status == 429
    (violation,) = detail(body, "QuotaFailure")["violations"]
    assert violation["quotaId"] == RPD_ID
    assert 29.0 < float(detail(body, "RetryInfo")["retryDelay"][:-1]) <= 30.0


def test_several_violations_in_one_429() -> None:
    cfg = EmulatorConfig(
        latency_scale=0,
        api_keys=(KEY,),
        minute_s=1.0,
        day_s=20.0,
        models={FLASH: ModelConfig(rpm=1, tpm=15, rpd=1)},
    )
    with Emulator(cfg) as emu:
        assert generate_raw(emu, PROMPT)[0] == 200
        status, body = generate_raw(emu, PROMPT)
    assert status == 429
    ids = {v["quotaId"] for v in detail(body, "QuotaFailure")["violations"]}
    assert ids == {RPM_ID, TPM_ID, RPD_ID}
    assert float(detail(body, "RetryInfo")["retryDelay"][:-1]) > 19.0  # the day's, the longest
    assert body["error"]["message"].count("* Quota exceeded for metric") == 3


def test_429_detail_order_and_quota_value_vary_deterministically() -> None:
    def shapes() -> list[tuple[tuple[str, ...], bool]]:
        with Emulator(config(**{FLASH: ModelConfig(rpm=0)})) as emu:
            seen = []
            for i in range(30):
                status, body = generate_raw(emu, f"prompt {i}")
                assert status == 429
                order = tuple(d["@type"].rsplit(".", 1)[1] for d in body["error"]["details"])
                has_value = "quotaValue" in detail(body, "QuotaFailure")["violations"][0]
                seen.append((order, has_value))
            return seen

    first = shapes()
    assert len({order for order, _ in first}) > 1
    assert {has_value for _, has_value in first} == {True, False}
    assert shapes() == first


def test_capacity_returns_after_retry_delay() -> None:
    cfg = EmulatorConfig(
        latency_scale=0, api_keys=(KEY,), minute_s=0.5, models={FLASH: ModelConfig(rpm=1)}
    )
    with Emulator(cfg) as emu:
        assert generate_raw(emu, "first")[0] == 200
        status, body = generate_raw(emu, "second")
        assert status == 429
        time.sleep(float(detail(body, "RetryInfo")["retryDelay"][:-1]))
        # Had the rejected request been charged, the window would still be full now.
        assert generate_raw(emu, "third")[0] == 200
        counted = emu.counters()["models"][FLASH]
    assert counted["rate_limited"] == {RPM_ID: 1} and counted["successes"] == 2


def test_quota_book_arithmetic_with_a_fake_clock() -> None:
    now = [100.0]
    book = QuotaBook(minute_s=60.0, day_s=1000.0, clock=lambda: now[0])
    limits = Limits(rpm=2, tpm=100, rpd=3)
    assert book.admit("m", limits, 40) == []
    now[0] += 10
    assert book.admit("m", limits, 40) == []
    (rpm,) = book.admit("m", limits, 10)
    assert rpm.kind is QuotaKind.RPM and rpm.retry_after_s == pytest.approx(50.0)
    now[0] += 50  # the first request leaves the minute window exactly now
    kinds = {v.kind: v.retry_after_s for v in book.admit("m", limits, 70)}
    assert kinds == {QuotaKind.TPM: pytest.approx(10.0)}
    assert book.admit("m", limits, 60) == []
    now[0] += 100
    (rpd,) = book.admit("m", limits, 1)
    assert rpd.kind is QuotaKind.RPD and rpd.retry_after_s == pytest.approx(840.0)


# -- JSON output ---------------------------------------------------------------------------------


class Mood(enum.StrEnum):
    CALM = "calm"
    TENSE = "tense"
    JOYFUL = "joyful"


class Shot(pydantic.BaseModel):
    description: str
    duration_seconds: int = pydantic.Field(ge=2, le=12)


class Scene(pydantic.BaseModel):
    number: int
    title: str
    narration: str
    mood: Mood
    shots: list[Shot] = pydantic.Field(min_length=1, max_length=3)
    music_cue: str | None = None


class VideoScript(pydantic.BaseModel):
    title: str
    logline: str
    scenes: list[Scene] = pydantic.Field(min_length=2, max_length=5)
    tags: list[str]
    rating: float = pydantic.Field(ge=0, le=5)
    featured: Scene | None
    published: bool


@pytest.mark.parametrize("style", ["response_schema", "response_json_schema"])
def test_json_output_conforms_to_the_schema(client: genai.Client, style: str) -> None:
    schema: Any = VideoScript if style == "response_schema" else VideoScript.model_json_schema()
    texts = []
    for topic in ("lighthouses", "volcanoes", "bees", "the Roman roads", "tea"):
        cfg = types.GenerateContentConfig(response_mime_type="application/json", **{style: schema})
        answer = client.models.generate_content(
            model=LITE, contents=f"A video script about {topic}", config=cfg
        )
        assert answer.text is not None
        script = VideoScript.model_validate_json(answer.text)
        parsed = answer.parsed
        assert parsed == script if style == "response_schema" else parsed == json.loads(answer.text)
        assert 2 <= len(script.scenes) <= 5
        assert [s.number for s in script.scenes] == list(range(1, len(script.scenes) + 1))
        texts.append(answer.text)
    again = client.models.generate_content(
        model=LITE,
        contents="A video script about lighthouses",
        config=types.GenerateContentConfig(
            response_mime_type="application/json", **{style: schema}
        ),
    )
    assert again.text == texts[0] and len(set(texts)) == len(texts)
    assert "lighthouses" in texts[0].lower()


class Topic(pydantic.BaseModel):
    name: str
    subtopics: list[Topic] = []
    weights: dict[str, int] = {}
    pair: tuple[int, str] | None = None


def test_recursive_schema_terminates_and_conforms(client: genai.Client) -> None:
    for prompt in ("history of maps", "ocean currents", "jazz"):
        answer = client.models.generate_content(
            model=LITE,
            contents=prompt,
            config=types.GenerateContentConfig(
                response_mime_type="application/json",
                response_json_schema=Topic.model_json_schema(),
            ),
        )
        assert answer.text and Topic.model_validate_json(answer.text).name


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "array", "items": {"type": "string"}, "minItems": 5, "maxItems": 2},
        {"type": "object", "properties": {"a": {"$ref": "#/$defs/Missing"}}, "required": ["a"]},
    ],
)
def test_unsatisfiable_schema_is_400_and_uses_no_quota(emu: Emulator, schema: object) -> None:
    emu.update_model(LITE, rpm=1)
    status, body = generate_raw(
        emu,
        "x",
        LITE,
        generationConfig={"responseMimeType": "application/json", "responseJsonSchema": schema},
    )
    assert status == 400 and "response_schema" in body["error"]["message"]
    assert generate_raw(emu, "x", LITE)[0] == 200


def test_enum_output_as_plain_text(client: genai.Client) -> None:
    answer = client.models.generate_content(
        model=LITE,
        contents="What mood fits a storm at sea?",
        config=types.GenerateContentConfig(response_mime_type="text/x.enum", response_schema=Mood),
    )
    assert answer.text in {m.value for m in Mood}


# -- faults ----------------------------------------------------------------------------------------


def faulty(hang_s: float = 30.0, **probabilities: float) -> EmulatorConfig:
    faults = FaultConfig(**probabilities)
    return EmulatorConfig(
        latency_scale=0, api_keys=(KEY,), hang_s=hang_s, models={FLASH: ModelConfig(faults=faults)}
    )


@pytest.mark.parametrize(
    ("fault", "code", "status", "message"),
    [
        ("p_500", 500, "INTERNAL", "An internal error has occurred"),
        ("p_503", 503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
    ],
)
def test_server_error_faults(fault: str, code: int, status: str, message: str) -> None:
    with Emulator(faulty(**{fault: 1.0})) as emu:
        with sdk(emu) as client, pytest.raises(errors.ServerError) as info:
            client.models.generate_content(model=FLASH, contents=PROMPT)
        assert info.value.code == code and info.value.status == status
        assert info.value.message and info.value.message.startswith(message)
        counted = emu.counters()["models"][FLASH]
    assert counted["faults"] == {str(code): 1} and counted["errors"] == {str(code): 1}


def test_admitted_requests_use_quota_even_when_a_fault_follows() -> None:
    cfg = EmulatorConfig(
        latency_scale=0,
        api_keys=(KEY,),
        models={FLASH: ModelConfig(rpm=1, faults=FaultConfig(p_500=1.0))},
    )
    with Emulator(cfg) as emu:
        assert [generate_raw(emu, "x")[0] for _ in range(2)] == [500, 429]


def test_malformed_fault_is_a_200_with_broken_json() -> None:
    with Emulator(faulty(p_malformed=1.0)) as emu:
        status, headers, data = raw(
            emu,
            "POST",
            f"/v1beta/models/{FLASH}:generateContent",
            {"contents": [{"parts": [{"text": "x"}]}]},
        )
        assert status == 200 and headers["content-type"].startswith("application/json")
        with pytest.raises(json.JSONDecodeError):
            json.loads(data)
        # google-genai 3.6.1 lets the JSONDecodeError of a non-streamed body escape unwrapped.
        with sdk(emu) as client, pytest.raises(json.JSONDecodeError):
            client.models.generate_content(model=FLASH, contents="x")
        assert emu.counters()["models"][FLASH]["faults"] == {"malformed": 2}


def test_truncate_fault_cuts_the_answer_consistently() -> None:
    with Emulator(config()) as clean, sdk(clean) as client:
        full = client.models.generate_content(model=FLASH, contents=PROMPT)
    with Emulator(faulty(p_truncate=1.0)) as emu, sdk(emu) as client:
        cut = client.models.generate_content(model=FLASH, contents=PROMPT)
    assert full.text and cut.text and full.text.startswith(cut.text) and cut.text != full.text
    assert cut.candidates and cut.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    usage = cut.usage_metadata
    assert usage and full.usage_metadata
    assert (
        0 < (usage.candidates_token_count or 0) < (full.usage_metadata.candidates_token_count or 0)
    )
    assert usage.total_token_count == (
        (usage.prompt_token_count or 0)
        + (usage.candidates_token_count or 0)
        + (usage.thoughts_token_count or 0)
    )


def test_block_fault_is_a_safety_block() -> None:
    with Emulator(faulty(p_block=1.0)) as emu, sdk(emu) as client:
        blocked = client.models.generate_content(model=FLASH, contents=PROMPT)
        streamed = list(client.models.generate_content_stream(model=FLASH, contents="x"))
    assert blocked.text is None
    candidate = blocked.candidates[0] if blocked.candidates else None
    assert candidate and candidate.finish_reason == types.FinishReason.SAFETY
    assert candidate.content is None
    assert candidate.safety_ratings and any(r.blocked for r in candidate.safety_ratings)
    assert blocked.usage_metadata and not blocked.usage_metadata.candidates_token_count
    last = streamed[-1].candidates
    assert last and last[0].finish_reason == types.FinishReason.SAFETY


@pytest.mark.parametrize("stream", [False, True])
def test_reset_fault_breaks_the_connection(stream: bool) -> None:
    with Emulator(faulty(p_reset=1.0)) as emu, sdk(emu) as client:
        with pytest.raises(httpx2.ReadError, match="reset"):
            if stream:
                list(client.models.generate_content_stream(model=FLASH, contents=PROMPT))
            else:
                client.models.generate_content(model=FLASH, contents=PROMPT)
        assert emu.counters()["models"][FLASH]["faults"] == {"reset": 1}


def test_malformed_stream_event() -> None:
    with (
        Emulator(faulty(p_malformed=1.0)) as emu,
        sdk(emu) as client,
        pytest.raises(errors.UnknownApiResponseError),
    ):
        list(client.models.generate_content_stream(model=FLASH, contents=PROMPT))


def test_hang_fault_times_the_client_out_and_stop_releases_it() -> None:
    emu = Emulator(faulty(hang_s=30.0, p_hang=1.0)).start()
    try:
        with sdk(emu, timeout=300) as client:
            started = time.monotonic()
            with pytest.raises(httpx2.ReadTimeout):
                client.models.generate_content(model=FLASH, contents=PROMPT)
            assert 0.25 < time.monotonic() - started < 2.0
        counted = emu.counters()["models"][FLASH]
        assert counted["faults"] == {"hang": 1} and counted["in_flight"] == 1
    finally:
        started = time.monotonic()
        emu.stop()
        assert time.monotonic() - started < 1.0
    assert emu.counters()["models"][FLASH]["in_flight"] == 0


def test_hang_closes_the_connection_after_hang_s() -> None:
    with Emulator(faulty(hang_s=0.2, p_hang=1.0)) as emu:
        started = time.monotonic()
        with pytest.raises(http.client.RemoteDisconnected):
            generate_raw(emu, "x")
        assert time.monotonic() - started >= 0.2


def test_faults_repeat_across_instances_and_retries_succeed() -> None:
    def outcomes() -> list[int]:
        with Emulator(faulty(p_500=0.5)) as emu:
            return [generate_raw(emu, f"prompt {i % 8}")[0] for i in range(32)]

    first = outcomes()
    assert first == outcomes()
    assert set(first) == {200, 500}
    with Emulator(faulty(p_500=0.5)) as emu:
        failing = next(f"prompt {i}" for i, status in enumerate(first[:8]) if status == 500)
        statuses = [generate_raw(emu, failing)[0] for _ in range(12)]
        assert statuses[0] == 500 and 200 in statuses
        assert emu.attempts_for(failing) == 12 and emu.attempts_for(failing, FLASH) == 12
        assert emu.attempts_for("never sent") == 0


# -- counters, concurrency, live changes -------------------------------------------------------


def test_counters_over_http_and_from_python(emu: Emulator) -> None:
    emu.update_model(LITE, rpm=1)
    assert generate_raw(emu, "one", LITE)[0] == 200
    assert generate_raw(emu, "two", LITE)[0] == 429
    assert generate_raw(emu, "x", "gemini-0")[0] == 404
    status, headers, data = raw(emu, "GET", "/emulator/counters", headers={"x-goog-api-key": ""})
    over_http = json.loads(data)
    assert status == 200 and headers["content-type"].startswith("application/json")
    assert over_http == emu.counters()
    lite = over_http["models"][LITE]
    assert (
        lite["requests"] == 2 and lite["successes"] == 1 and lite["finish_reasons"] == {"STOP": 1}
    )
    assert lite["rate_limited"] == {RPM_ID: 1} and lite["errors"] == {"429": 1}
    assert lite["input_tokens"] == 1 and lite["output_tokens"] > 0
    assert over_http["errors"] == {"429": 1, "404": 1} and over_http["requests"] == 3
    assert over_http["models"][FLASH]["requests"] == 0
    status, _, _ = raw(emu, "POST", "/emulator/reset", headers={"x-goog-api-key": ""})
    assert status == 200
    after = emu.counters()
    assert after["models"][LITE]["requests"] == 0 and after["errors"] == {}
    assert generate_raw(emu, "three", LITE)[0] == 200  # the windows were emptied too


def test_burst_of_50_concurrent_requests_is_not_serialised() -> None:
    model = ModelConfig(latency_base_s=0.5)
    cfg = EmulatorConfig(api_keys=(KEY,), models={FLASH: model})
    with Emulator(cfg) as emu:
        statuses: list[int] = []
        lock = threading.Lock()

        def one(i: int) -> None:
            status, _ = generate_raw(emu, f"burst {i}")
            with lock:
                statuses.append(status)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(50)]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started
        counted = emu.counters()["models"][FLASH]
    assert statuses == [200] * 50
    assert 0.5 <= elapsed < 1.5
    assert counted["max_in_flight"] >= 40 and counted["in_flight"] == 0


def test_live_model_changes(emu: Emulator) -> None:
    assert generate_raw(emu, "a", LITE)[0] == 200
    emu.update_model(LITE, rpd=1)
    status, body = generate_raw(emu, "b", LITE)
    assert status == 429
    assert detail(body, "QuotaFailure")["violations"][0]["quotaId"] == RPD_ID
    emu.update_model(FLASH, faults=FaultConfig(p_503=1.0))
    assert generate_raw(emu, "c", FLASH)[0] == 503
    emu.set_model("gemini-new", ModelConfig())
    assert generate_raw(emu, "d", "gemini-new")[0] == 200
    assert emu.config.models[LITE].rpd == 1
    with pytest.raises(ConfigError):
        emu.update_model(LITE, rpm=-1)
    with pytest.raises(KeyError):
        emu.update_model("gemini-missing", rpm=1)


def test_stop_closes_idle_keep_alive_connections_promptly() -> None:
    emu = Emulator(config()).start()
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=5)
    try:
        conn.request("GET", "/v1beta/models", headers={"x-goog-api-key": KEY})
        assert conn.getresponse().read()
        started = time.monotonic()
        emu.stop()
        assert time.monotonic() - started < 1.0
    finally:
        conn.close()


# -- configuration and command line ---------------------------------------------------------------


def test_emulator_imports_only_the_standard_library_and_itself() -> None:
    package = Path(__file__).resolve().parents[1] / "scriptgen_nb" / "emulator"
    for module in package.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                assert not isinstance(node, ast.ImportFrom) or node.level == 1, module.name
                continue
            for name in names:
                root = name.split(".")[0]
                assert root == "__future__" or root in sys.stdlib_module_names, (module.name, name)


def test_config_from_toml_and_json(tmp_path: Path) -> None:
    toml = tmp_path / "emu.toml"
    toml.write_text(
        """
seed = 3
api_keys = ["k1", "k2"]
minute_s = 2
day_s = 30.0
latency_scale = 0.5

[models."gemini-2.5-flash"]
rpm = 4
rpd = 50
latency_base_s = 0.2
thinking = true

[models."gemini-2.5-flash".faults]
p_503 = 0.25
""",
        encoding="utf-8",
    )
    cfg = EmulatorConfig.from_file(toml)
    assert cfg.seed == 3 and cfg.api_keys == ("k1", "k2") and cfg.minute_s == 2.0
    model = cfg.models[FLASH]
    assert (model.rpm, model.tpm, model.rpd, model.thinking) == (4, None, 50, True)
    assert model.faults == FaultConfig(p_503=0.25) and list(cfg.models) == [FLASH]
    as_json = tmp_path / "emu.json"
    as_json.write_text(json.dumps({"seed": 1, "models": {"m": {"rpm": None, "tpm": 5}}}))
    loaded = EmulatorConfig.from_file(as_json)
    assert loaded.models["m"].tpm == 5 and loaded.models["m"].rpm is None
    assert EmulatorConfig.from_mapping({"seed": 9}).models == default_config().models


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ('[models."gemini-2.5-flash"]\nrmp = 4\n', "'models.gemini-2.5-flash.rmp'"),
        (
            '[models."gemini-2.5-flash"]\nrpm = "ten"\n',
            "models.gemini-2.5-flash.rpm must be an integer, got 'ten'",
        ),
        ("[models.m.faults]\np_500 = 1.5\n", "p_500 must be a probability"),
        ("minute_s = -1\n", "minute_s must be a positive number"),
        ("seed = = 1\n", "not valid toml"),
    ],
)
def test_bad_config_file_names_the_key(tmp_path: Path, content: str, needle: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        EmulatorConfig.from_file(path)
    assert needle in str(info.value) and str(path) in str(info.value)


def test_cli_help_is_complete(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli_main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for flag in (
        "--host",
        "--port",
        "--config",
        "--seed",
        "--api-key",
        "--latency-scale",
        "--minute-s",
        "--day-s",
    ):
        assert flag in out


def test_cli_rejects_a_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("colour = 1\n", encoding="utf-8")
    with pytest.raises(SystemExit) as info:
        cli_main(["--port", "0", "--config", str(path)])
    assert info.value.code == 2 and "'colour'" in capsys.readouterr().err


def test_cli_serves_until_sigterm(tmp_path: Path) -> None:
    path = tmp_path / "emu.toml"
    path.write_text('latency_scale = 0\n[models."gemini-2.5-flash"]\nrpm = 5\n', encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, "-m", "scriptgen_nb.emulator", "--port", "0", "--config", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.fullmatch(r"Gemini emulator listening on (http://127\.0\.0\.1:(\d+))\n", line)
        assert match, line
        conn = http.client.HTTPConnection("127.0.0.1", int(match.group(2)), timeout=5)
        try:
            body = json.dumps({"contents": [{"parts": [{"text": "hi"}]}]})
            conn.request(
                "POST", f"/v1beta/models/{FLASH}:generateContent", body, {"x-goog-api-key": "any"}
            )
            assert conn.getresponse().status == 200
        finally:
            conn.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
