"""Retry policy: Google's error details, day resets, backoff, decisions and concurrency plans."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from scriptgen_nb.engine.errors import BackendError, ConfigurationError, QuotaViolation
from scriptgen_nb.engine.models import ModelSpec
from scriptgen_nb.engine.policy import (
    AUTO_MAX_IN_FLIGHT,
    Backoff,
    ConcurrencyPlan,
    Decision,
    RetryPolicy,
    day_reset_delay,
    next_pacific_midnight,
    parse_duration,
    plan_concurrency,
    quota_scope,
    read_error_details,
    retry_delay_from_message,
    seed_concurrency,
)
from tests.google_errors import (
    HELP,
    INPUT_TOKENS,
    PER_DAY,
    PER_MINUTE,
    REQUESTS_METRIC,
    TOKENS_METRIC,
    quota_failure,
    retry_info,
    violation,
)

PACIFIC = ZoneInfo("America/Los_Angeles")


# --- durations and quota ids -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("21s", 21.0), ("40s", 40.0), ("1.234s", 1.234), ("0.5s", 0.5), (" 3s ", 3.0), ("0s", 0.0)],
)
def test_parse_duration_reads_whole_and_fractional_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["21", "21ms", "-1s", "1m", "soon", "", None, 21, 1.5])
def test_parse_duration_rejects_what_is_not_a_duration(text: object) -> None:
    assert parse_duration(text) is None


@pytest.mark.parametrize(
    ("quota_id", "scope"),
    [
        (PER_MINUTE, "minute"),
        (PER_DAY, "day"),
        (INPUT_TOKENS, "tokens"),
        ("GenerateContentPaidTierInputTokensPerModelPerMinute", "tokens"),
        ("GenerateRequestsPerMinutePerProjectPerModel", "minute"),
        ("GenerateContentInputTokensPerModelPerDay-FreeTier", "day"),
        ("", "minute"),
    ],
)
def test_quota_scope_tells_per_day_from_per_minute_and_tokens(quota_id: str, scope: str) -> None:
    assert quota_scope(quota_id) == scope


# --- reading a 429's details -----------------------------------------------------------------


@pytest.mark.parametrize(
    "order",
    list(itertools.permutations(["help", "quota", "retry"])),
    ids=lambda order: "-".join(order),
)
def test_error_details_are_read_in_any_order(order: tuple[str, ...]) -> None:
    parts = {
        "help": HELP,
        "quota": quota_failure(violation(PER_MINUTE)),
        "retry": retry_info("21s"),
    }
    delay, violations = read_error_details([parts[name] for name in order])
    assert delay == 21.0
    assert violations == (QuotaViolation(PER_MINUTE, "minute", 10),)


def test_a_fractional_retry_delay_is_kept_exactly() -> None:
    delay, _ = read_error_details([retry_info("1.234s")])
    assert delay == pytest.approx(1.234)


def test_a_missing_quota_value_leaves_the_limit_unknown() -> None:
    _, violations = read_error_details([quota_failure(violation(INPUT_TOKENS, value=None))])
    assert violations == (QuotaViolation(INPUT_TOKENS, "tokens", None),)


def test_a_missing_quota_value_is_read_from_the_message_when_it_names_the_metric_once() -> None:
    message = (
        "You exceeded your current quota. \n* Quota exceeded for metric: "
        f"{TOKENS_METRIC}, limit: 250000, model: gemini-2.5-flash\nPlease retry in 9s."
    )
    _, violations = read_error_details(
        [quota_failure(violation(INPUT_TOKENS, value=None))], message
    )
    assert violations == (QuotaViolation(INPUT_TOKENS, "tokens", 250_000, from_message=True),)
    # The service's own quotaValue wins over the message.
    _, stated = read_error_details([quota_failure(violation(INPUT_TOKENS, "1000"))], message)
    assert stated == (QuotaViolation(INPUT_TOKENS, "tokens", 1000),)


def test_a_message_limit_that_could_be_either_window_is_not_guessed() -> None:
    # Per-minute and per-day request quotas share one metric: the message cannot say which
    # limit is which, so neither violation takes one.
    message = (
        f"\n* Quota exceeded for metric: {REQUESTS_METRIC}, limit: 10, model: m"
        f"\n* Quota exceeded for metric: {REQUESTS_METRIC}, limit: 20, model: m"
    )
    both = quota_failure(violation(PER_MINUTE, value=None), violation(PER_DAY, value=None))
    _, violations = read_error_details([both], message)
    assert violations == (
        QuotaViolation(PER_MINUTE, "minute", None),
        QuotaViolation(PER_DAY, "day", None),
    )
    one_line = f"\n* Quota exceeded for metric: {REQUESTS_METRIC}, limit: 10, model: m"
    _, violations = read_error_details([both], one_line)
    assert [v.limit for v in violations] == [None, None]


def test_several_violations_in_one_429_are_all_read() -> None:
    detail = quota_failure(
        violation(PER_MINUTE, "10"), violation(INPUT_TOKENS, "250000"), violation(PER_DAY, "20")
    )
    delay, violations = read_error_details([detail])
    assert delay is None
    assert violations == (
        QuotaViolation(PER_MINUTE, "minute", 10),
        QuotaViolation(INPUT_TOKENS, "tokens", 250_000),
        QuotaViolation(PER_DAY, "day", 20),
    )


def test_odd_details_are_skipped_rather_than_trusted() -> None:
    details = [
        "not a mapping",
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "soon"},
        quota_failure(violation(PER_MINUTE, "ten"), "not a mapping"),  # type: ignore[arg-type]
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure"},
    ]
    delay, violations = read_error_details(details)
    assert delay is None
    assert violations == (QuotaViolation(PER_MINUTE, "minute", None),)


def test_a_numeric_quota_value_is_read_too() -> None:
    _, violations = read_error_details([quota_failure({"quotaId": PER_DAY, "quotaValue": 250})])
    assert violations == (QuotaViolation(PER_DAY, "day", 250),)


@pytest.mark.parametrize(
    ("message", "seconds"),
    [
        ("You exceeded your current quota ...\nPlease retry in 40.609213465s.", 40.609213465),
        ("Please retry in 21.5s.", 21.5),
        ("please RETRY IN 7s", 7.0),
        ("Please retry in 250ms.", 0.25),
    ],
)
def test_the_retry_delay_is_read_from_the_message(message: str, seconds: float) -> None:
    assert retry_delay_from_message(message) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "message", ["You exceeded your current quota.", "retry in a while", "retry in 5 minutes", ""]
)
def test_a_message_without_a_delay_gives_none(message: str) -> None:
    assert retry_delay_from_message(message) is None


# --- the daily reset -------------------------------------------------------------------------


def test_the_next_pacific_midnight_is_the_start_of_the_next_pacific_day() -> None:
    now = datetime(2026, 11, 28, 19, 2, tzinfo=UTC)  # 11:02 PST
    midnight = next_pacific_midnight(now)
    assert midnight == datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
    assert midnight.astimezone(PACIFIC).hour == 0


def test_the_pacific_day_can_differ_from_the_utc_day() -> None:
    now = datetime(2026, 11, 29, 7, 30, tzinfo=UTC)  # still 23:30 on the 28th in Pacific time
    assert next_pacific_midnight(now) == datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
    just_after = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)  # exactly midnight: the next one
    assert next_pacific_midnight(just_after) == datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def test_the_next_pacific_midnight_follows_summer_time() -> None:
    now = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)  # 05:00 PDT (UTC-7)
    assert next_pacific_midnight(now) == datetime(2026, 7, 2, 7, 0, tzinfo=UTC)


def exhausted(delay: float | None = None) -> BackendError:
    return BackendError(
        "quota_exhausted", "quota", 429, delay, (QuotaViolation(PER_DAY, "day", 20),)
    )


def test_a_short_per_day_retry_delay_waits_for_pacific_midnight_on_real_days() -> None:
    # 38 s on a per-day quota is on record: waiting it would only earn another 429.
    now = datetime(2026, 11, 28, 19, 2, tzinfo=UTC)  # 11:02 PST
    midnight = timedelta(hours=12, minutes=58).total_seconds()
    assert day_reset_delay(38.0, ModelSpec("m"), now) == pytest.approx(midnight)
    assert day_reset_delay(90_000.0, ModelSpec("m"), now) == 90_000.0  # a later reset stands


def test_day_reset_uses_the_servers_retry_delay_on_compressed_days() -> None:
    now = datetime(2026, 11, 28, 19, 2, tzinfo=UTC)
    compressed = ModelSpec("m", minute_s=1.0, day_s=60.0)
    assert day_reset_delay(exhausted(3.5).retry_delay_s, compressed, now) == 3.5
    assert day_reset_delay(None, compressed, now) == 60.0


def test_day_reset_waits_for_pacific_midnight_with_real_windows() -> None:
    now = datetime(2026, 11, 28, 19, 2, tzinfo=UTC)
    expected = timedelta(hours=12, minutes=58).total_seconds()
    assert day_reset_delay(exhausted().retry_delay_s, ModelSpec("m"), now) == pytest.approx(
        expected
    )
    # The same instant in another zone waits just as long.
    tokyo = now.astimezone(ZoneInfo("Asia/Tokyo"))
    assert day_reset_delay(exhausted().retry_delay_s, ModelSpec("m"), tokyo) == pytest.approx(
        expected
    )


def test_day_reset_counts_real_seconds_across_a_clock_change() -> None:
    # 2026-03-08 00:30 PST; clocks spring forward at 02:00, so the next midnight is 22.5 h away.
    now = datetime(2026, 3, 8, 0, 30, tzinfo=PACIFIC)
    assert day_reset_delay(exhausted().retry_delay_s, ModelSpec("m"), now) == pytest.approx(
        22.5 * 3600
    )
    fall = datetime(2026, 11, 1, 0, 30, tzinfo=PACIFIC)  # falls back at 02:00: 24.5 h
    assert day_reset_delay(exhausted().retry_delay_s, ModelSpec("m"), fall) == pytest.approx(
        24.5 * 3600
    )


def test_day_reset_is_one_configured_day_with_compressed_windows() -> None:
    spec = ModelSpec("m", minute_s=1.0, day_s=30.0)
    assert (
        day_reset_delay(exhausted().retry_delay_s, spec, datetime(2026, 1, 1, tzinfo=UTC)) == 30.0
    )


# --- backoff ---------------------------------------------------------------------------------


def test_backoff_grows_exponentially_within_half_jitter() -> None:
    backoff = Backoff(initial_s=1.0, factor=2.0, max_s=30.0)
    rng = random.Random(1)
    for failures, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 16.0)]:
        for _ in range(50):
            assert ceiling / 2 <= backoff.delay(failures, rng) <= ceiling


def test_backoff_is_capped() -> None:
    rng = random.Random(2)
    delays = [Backoff(1.0, 2.0, 30.0).delay(40, rng) for _ in range(100)]
    assert all(15.0 <= d <= 30.0 for d in delays)
    assert max(delays) > 25.0  # spread over the interval, not pinned at its bottom


@pytest.mark.parametrize(
    ("backoff", "failures"),
    [(Backoff(0.001, 2.0, 0.002), 1_100), (Backoff(0.001, 1e200, 0.01), 3), (Backoff(), 10**9)],
    ids=["a-thousand-doublings", "an-absurd-factor", "a-billion-failures"],
)
def test_backoff_never_overflows_whatever_the_failures_or_the_factor(
    backoff: Backoff, failures: int
) -> None:
    # factor ** (failures - 1) is past a float's range here: the cap must be decided first.
    assert backoff.max_s / 2 <= backoff.delay(failures, random.Random(3)) <= backoff.max_s


def test_backoff_treats_zero_failures_as_the_first() -> None:
    assert Backoff(3.0).delay(0, random.Random(5)) == Backoff(3.0).delay(1, random.Random(5))


def test_backoff_is_reproducible_from_the_seed() -> None:
    backoff = Backoff(0.5, 3.0, 10.0)
    first = [backoff.delay(n, random.Random(42)) for n in range(1, 6)]
    again = [backoff.delay(n, random.Random(42)) for n in range(1, 6)]
    other = [backoff.delay(n, random.Random(43)) for n in range(1, 6)]
    assert first == again
    assert first != other


# --- decisions -------------------------------------------------------------------------------

SPEC = ModelSpec("m", rpm=10, minute_s=60.0)


def decide(error: BackendError, failures: int = 1, **policy: Any) -> Decision:
    return RetryPolicy(**policy).decide(error, failures, SPEC, random.Random(0))


def test_an_invalid_key_aborts_whatever_its_kind() -> None:
    assert decide(
        BackendError("invalid_request", "API key not valid", 400, api_key_invalid=True)
    ) == (Decision("abort"))
    assert decide(BackendError("permission_denied", "key", 403, api_key_invalid=True)).action == (
        "abort"
    )


def test_a_per_day_429_exhausts_the_model() -> None:
    assert decide(exhausted(50.0)).action == "exhaust"


def test_a_per_minute_429_parks_for_the_servers_delay() -> None:
    error = BackendError(
        "rate_limited", "quota", 429, 21.0, (QuotaViolation(PER_MINUTE, "minute", 10),)
    )
    assert decide(error, failures=99) == Decision("park", 21.0, "rpm")


def test_a_token_429_parks_and_names_tpm() -> None:
    error = BackendError(
        "rate_limited",
        "quota",
        429,
        1.5,
        (QuotaViolation(PER_MINUTE, "minute", 10), QuotaViolation(INPUT_TOKENS, "tokens", None)),
    )
    assert decide(error) == Decision("park", 1.5, "tpm")


def test_a_429_without_a_delay_parks_for_one_window_or_the_configured_default() -> None:
    error = BackendError(
        "rate_limited", "quota", 429, None, (QuotaViolation(PER_MINUTE, "minute", None),)
    )
    assert decide(error) == Decision("park", 60.0, "rpm")
    assert decide(error, default_park_s=5.0) == Decision("park", 5.0, "rpm")


def test_a_429_without_details_backs_off_exponentially_and_learns_no_limit() -> None:
    bare = BackendError("rate_limited", "Resource has been exhausted (e.g. check quota).", 429)
    delays = [RetryPolicy().decide(bare, 1, SPEC, random.Random(0), overloads=n) for n in (1, 4, 9)]
    assert [d.action for d in delays] == ["back_off"] * 3
    assert 0.5 <= delays[0].delay_s <= 1.0  # from about a second
    assert 4.0 <= delays[1].delay_s <= 8.0
    assert 30.0 <= delays[2].delay_s <= 60.0  # capped at about a minute
    assert all(d.metric == "" for d in delays)  # no metric: nothing is read into it
    # A delay the service gives is honoured.
    hinted = BackendError("rate_limited", "busy", 429, 7.0)
    assert decide(hinted) == Decision("back_off", 7.0)


def test_a_per_minute_429_parking_for_long_exhausts_the_model_instead() -> None:
    long = BackendError(
        "rate_limited", "quota", 429, 3_600.0, (QuotaViolation(PER_MINUTE, "minute", 10),)
    )
    assert decide(long) == Decision("exhaust", 3_600.0, "minute")
    assert decide(long, max_park_s=7_200.0) == Decision("park", 3_600.0, "rpm")


@pytest.mark.parametrize("refusal", ["billing", "permission", "location"])
def test_a_refusal_of_the_project_ends_the_batch(refusal: str) -> None:
    error = BackendError("permission_denied", "no", 403, refusal=refusal)  # type: ignore[arg-type]
    assert decide(error) == Decision("refuse")


def test_a_model_that_is_gone_is_dropped() -> None:
    assert decide(BackendError("not_found", "gone", 404, model_gone=True)) == Decision("drop")


@pytest.mark.parametrize("kind", ["server_error", "timeout", "connection", "malformed_response"])
def test_transient_failures_retry_with_backoff(kind: str) -> None:
    error = BackendError(kind, "boom", 503)  # type: ignore[arg-type]
    backoff = Backoff(2.0, 2.0, 60.0)
    decision = decide(error, failures=3, backoff=backoff)
    assert decision.action == "retry"
    assert decision.delay_s == backoff.delay(3, random.Random(0))
    assert 4.0 <= decision.delay_s <= 8.0


def test_a_transient_failure_with_a_server_delay_retries_after_it() -> None:
    assert decide(BackendError("server_error", "busy", 503, 7.0)) == Decision("retry", 7.0)


def test_transient_failures_stop_at_max_attempts() -> None:
    error = BackendError("server_error", "boom", 500)
    assert decide(error, failures=2, max_attempts=3).action == "retry"
    assert decide(error, failures=3, max_attempts=3) == Decision("fail")
    assert decide(error, failures=1, max_attempts=1) == Decision("fail")


@pytest.mark.parametrize(
    "kind", ["invalid_request", "permission_denied", "not_found", "truncated", "blocked"]
)
def test_request_faults_fail_at_once(kind: str) -> None:
    assert decide(BackendError(kind, "no", 400)) == Decision("fail")  # type: ignore[arg-type]


def test_max_attempts_must_be_positive() -> None:
    with pytest.raises(ConfigurationError, match="max_attempts"):
        RetryPolicy(max_attempts=0)


# --- concurrency -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rpm", "expected"),
    [(2, 3), (10, 3), (30, 3), (60, 3), (80, 4), (100, 5), (140, 7), (1000, 10), (None, 3), (0, 3)],
)
def test_seed_concurrency_is_the_formula_as_written(rpm: int | None, expected: int) -> None:
    assert seed_concurrency(rpm) == expected


def test_no_concurrency_or_auto_paces_by_the_limits() -> None:
    ladder = [ModelSpec("m", rpm=10)]
    expected = ConcurrencyPlan("auto", AUTO_MAX_IN_FLIGHT, paced=True)
    assert plan_concurrency(None, ladder) == expected
    assert plan_concurrency("auto", ladder) == expected


def test_an_integer_caps_in_flight_and_keeps_pacing() -> None:
    assert plan_concurrency(4, [ModelSpec("m")]) == ConcurrencyPlan("fixed", 4, paced=True)


def test_seed_mode_uses_the_primary_models_rpm_without_pacing() -> None:
    ladder = [ModelSpec("a", rpm=1000), ModelSpec("b", rpm=2)]
    assert plan_concurrency("seed", ladder) == ConcurrencyPlan("seed", 10, paced=False)


@pytest.mark.parametrize("value", [0, -1, True, "fast", 2.5, "4"])
def test_a_bad_concurrency_is_a_configuration_error(value: Any) -> None:
    with pytest.raises(ConfigurationError, match="max_concurrency"):
        plan_concurrency(value, [ModelSpec("m")])
