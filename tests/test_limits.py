"""ModelLimiter: sliding windows, learned limits and park/exhaust/cool state, on plain numbers."""

from __future__ import annotations

import math
from typing import Any

import pytest

from scriptgen_nb.engine.limits import Learned, ModelLimiter
from scriptgen_nb.engine.models import ModelSpec
from scriptgen_nb.engine.values import LimitSource, RememberedLimit
from scriptgen_nb.engine.window import Slot

MARGIN = 0.5


def limiter(**limits: Any) -> ModelLimiter:
    """A limiter with real 60 s / 1 day windows (unless overridden) and a round margin."""
    return ModelLimiter(ModelSpec("m", **limits), margin_s=MARGIN)


# --- requests per minute ---------------------------------------------------------------------


def test_requests_up_to_rpm_go_at_once() -> None:
    lim = limiter(rpm=3)
    for t in (0.0, 10.0, 20.0):
        assert lim.wait_s(t, 10) == 0.0
        lim.admit(t, 10)
    assert lim.used(20.0) == (3, 30, 0)  # no rpd: no day window is kept


def test_a_request_beyond_rpm_waits_until_the_oldest_slot_leaves_the_window() -> None:
    lim = limiter(rpm=3)
    for t in (0.0, 10.0, 20.0):
        lim.admit(t, 10)
    # The slot taken at t=0 is held until 0 + 60 + margin.
    assert lim.wait_s(20.0, 10) == pytest.approx(60.0 + MARGIN - 20.0)
    assert lim.wait_s(45.0, 10) == pytest.approx(60.0 + MARGIN - 45.0)
    assert lim.wait_s(60.0 + MARGIN, 10) == 0.0
    assert lim.used(60.0 + MARGIN) == (2, 20, 0)


def test_the_window_slides_slot_by_slot() -> None:
    lim = limiter(rpm=3)
    for t in (0.0, 10.0, 20.0):
        lim.admit(t, 10)
    lim.admit(60.5, 10)  # took the place of the slot from t=0
    assert lim.wait_s(61.0, 10) == pytest.approx(70.0 + MARGIN - 61.0)


def test_a_window_over_a_lowered_limit_waits_for_every_excess_slot_to_leave() -> None:
    lim = limiter(rpm=10)
    for t in (0.0, 10.0, 20.0, 30.0):
        lim.admit(t, 10)
    lim.limits[
        "rpm"
    ].value = 2  # e.g. learned: four in the window, room for one more once only one remains
    assert lim.wait_s(31.0, 10) == pytest.approx(80.0 + MARGIN - 31.0)


def test_the_default_margin_is_half_a_percent_of_the_minute_with_a_floor() -> None:
    assert ModelLimiter(ModelSpec("m", rpm=1)).margin_s == pytest.approx(0.3)
    lim = ModelLimiter(ModelSpec("m", rpm=1, minute_s=1.0))
    assert lim.margin_s > 1.0 * 0.005  # compressed windows still get a usable margin
    lim.admit(0.0, 1)
    assert lim.wait_s(0.5, 1) == pytest.approx(1.0 + lim.margin_s - 0.5)


def test_no_limits_never_wait() -> None:
    lim = limiter()
    for i in range(1000):
        lim.admit(float(i) / 100, 10_000)
    assert lim.wait_s(10.0, 10_000) == 0.0


# --- input tokens per minute -----------------------------------------------------------------


def test_a_request_waits_until_enough_tokens_leave_the_window() -> None:
    lim = limiter(tpm=1000)
    lim.admit(0.0, 400)
    lim.admit(10.0, 400)
    lim.admit(20.0, 100)
    assert lim.wait_s(30.0, 100) == 0.0  # 900 + 100 fits exactly
    # 900 + 500 is 400 over: the first slot (400) must leave.
    assert lim.wait_s(30.0, 500) == pytest.approx(60.0 + MARGIN - 30.0)
    # 900 + 800 is 700 over: the first two slots (800) must leave.
    assert lim.wait_s(30.0, 800) == pytest.approx(70.0 + MARGIN - 30.0)


def test_settle_replaces_the_token_estimate_with_the_reported_count() -> None:
    lim = limiter(tpm=1000)
    slot = lim.admit(0.0, 900)
    assert lim.wait_s(1.0, 200) == pytest.approx(60.0 + MARGIN - 1.0)
    lim.settle(slot, 100)
    assert lim.wait_s(1.0, 200) == 0.0
    assert lim.used(1.0) == (1, 100, 0)
    lim.settle(slot, 950)
    assert lim.wait_s(1.0, 200) == pytest.approx(60.0 + MARGIN - 1.0)


def test_forgetting_a_slot_forgets_that_slot_not_an_equal_one() -> None:
    lim = limiter(rpm=10, tpm=10_000, rpd=100)
    first = lim.admit(0.0, 100)
    second = lim.admit(0.0, 100)  # same time, same estimate: equal values, different requests
    lim.rate_limited(1.0, second, 5.0, "rpm", None)
    lim.settle(first, 500)  # the request still in the window reports its real count
    assert lim.used(2.0) == (1, 500, 1)


def test_sent_restamps_a_slot_when_its_request_leaves() -> None:
    lim = limiter(rpm=1)
    slot = lim.admit(0.0, 10)
    lim.sent(slot, 0.4)  # admitted at 0, on the wire at 0.4: the service counts from then
    assert lim.wait_s(1.0, 10) == pytest.approx(60.4 + MARGIN - 1.0)
    lim.sent(slot, 0.1)  # a stamp never moves back
    assert slot.at == 0.4


def test_slots_sent_out_of_admission_order_leave_in_send_order() -> None:
    lim = limiter(rpm=10)
    a, b, c = lim.admit(0.0, 10), lim.admit(0.1, 10), lim.admit(0.2, 10)
    lim.sent(a, 0.5)  # a's task was slow to start; b and c went first
    lim.sent(b, 0.2)
    lim.sent(c, 0.3)
    rejected = lim.admit(0.3, 10)
    lim.sent(rejected, 0.35)
    assert lim.rate_limited(0.4, rejected, 30.0, "rpm", 2) == Learned("rpm", 10, 2, "stated")
    # Three in the window, limit two: two must leave, and the second to leave is c (0.3).
    assert lim.wait_s(40.0, 10) == pytest.approx(60.3 + MARGIN - 40.0)
    assert lim.used(60.2 + MARGIN)[0] == 2  # b has left although a, admitted first, has not
    assert lim.wait_s(60.2 + MARGIN, 10) == pytest.approx(0.1)


# --- requests per day ------------------------------------------------------------------------


def test_requests_per_day_are_counted_over_the_day_window() -> None:
    lim = limiter(rpd=2, day_s=1000.0)
    lim.admit(0.0, 10)
    lim.admit(100.0, 10)
    # The minute window has long emptied; the day window still holds both.
    assert lim.used(500.0) == (0, 0, 2)
    assert lim.wait_s(500.0, 10) == pytest.approx(1000.0 + MARGIN - 500.0)
    assert lim.wait_s(1000.0 + MARGIN, 10) == 0.0
    assert lim.used(1000.0 + MARGIN) == (0, 0, 1)


def test_the_longest_of_the_waits_applies() -> None:
    lim = limiter(rpm=5, tpm=1000, rpd=3, day_s=600.0)
    lim.admit(0.0, 900)
    lim.admit(50.0, 50)
    lim.admit(55.0, 50)
    # rpm has room; tpm frees at 60.5 (the 900 leaves); rpd frees only at 600.5.
    assert lim.wait_s(56.0, 200) == pytest.approx(600.0 + MARGIN - 56.0)


def test_an_unpaced_wait_ignores_the_windows_but_not_the_model_state() -> None:
    lim = limiter(rpm=1)
    slot = lim.admit(0.0, 10)
    assert lim.wait_s(1.0, 10, paced=False) == 0.0
    lim.rate_limited(1.0, slot, 20.0, "rpm", None)
    assert lim.wait_s(2.0, 10, paced=False) == pytest.approx(19.0)


# --- learning from 429s ----------------------------------------------------------------------


def test_rate_limited_forgets_the_rejected_slot_parks_and_lowers_rpm_to_what_remains() -> None:
    lim = limiter(rpm=10, rpd=100)
    for t in (0.0, 1.0, 2.0):
        lim.admit(t, 10)
    rejected = lim.admit(3.0, 10)
    learned = lim.rate_limited(3.5, rejected, 20.0, "rpm", None)
    # Three remained, but without a quotaValue one 429 may at most halve the limit.
    assert learned == Learned("rpm", 10, 5, "lowered")
    assert lim.rpm == 5
    assert lim.used(3.5) == (3, 30, 3)
    assert lim.state(3.5) == "parked"
    assert lim.parked_until == pytest.approx(23.5)
    assert lim.wait_s(10.0, 10, paced=False) == pytest.approx(13.5)  # the park alone
    assert lim.state(23.5) == "ready"
    # A second refusal with the same evidence lowers it to what the window held.
    again = lim.rate_limited(24.0, lim.admit(24.0, 10), 20.0, "rpm", None)
    assert again == Learned("rpm", 10, 3, "lowered")
    assert lim.wait_s(44.0, 10) == pytest.approx(60.0 + MARGIN - 44.0)


def test_rate_limited_learns_nothing_when_the_window_held_at_least_the_limit() -> None:
    lim = limiter(rpm=2)
    for t in (0.0, 1.0):
        lim.admit(t, 10)
    rejected = lim.admit(2.0, 10)  # sent unpaced, beyond our own limit
    assert lim.rate_limited(2.0, rejected, 7.0, "rpm", None) is None
    assert lim.rpm == 2
    assert lim.state(8.9) == "parked"
    assert lim.state(9.0) == "ready"


def test_rate_limited_on_tokens_lowers_tpm_to_the_tokens_that_remain() -> None:
    lim = limiter(rpm=100, tpm=10_000)
    lim.admit(0.0, 3000)
    lim.admit(1.0, 2000)
    rejected = lim.admit(2.0, 4000)
    assert lim.rate_limited(2.0, rejected, 30.0, "tpm", None) == Learned(
        "tpm", 10_000, 5000, "lowered"
    )
    assert (lim.tpm, lim.rpm) == (5000, 100)


def test_an_unlimited_model_keeps_no_windows() -> None:
    lim = limiter()
    for i in range(1000):
        lim.admit(i / 100, 10)
    assert lim.used(10.0) == (0, 0, 0)
    rejected = lim.admit(10.0, 10)
    assert lim.rate_limited(10.0, rejected, 30.0, "rpm", None) is None  # nothing to learn from
    assert lim.rpm is None
    assert lim.state(10.0) == "parked"


def test_a_limit_not_configured_is_learned_from_a_stated_quota_value() -> None:
    lim = limiter()
    rejected = lim.admit(0.0, 10)
    assert lim.rate_limited(0.0, rejected, 30.0, "rpm", 2) == Learned("rpm", None, 2, "stated")
    # From now on the minute is paced.
    lim.admit(30.0, 10)
    lim.admit(31.0, 10)
    assert lim.wait_s(32.0, 10) == pytest.approx(90.0 + MARGIN - 32.0)


def test_the_quota_value_the_service_states_is_the_limit_learned() -> None:
    lim = limiter(rpm=10, tpm=100_000)
    for t in (0.0, 1.0, 2.0, 3.0, 4.0):
        lim.admit(t, 10)
    rejected = lim.admit(5.0, 10)
    # Four remain in our window, but the service says its limit is 3: believe the service.
    assert lim.rate_limited(5.0, rejected, 30.0, "rpm", 3) == Learned("rpm", 10, 3, "stated")
    assert lim.rpm == 3
    # Five in the window against a limit of 3: three must leave, the third (t=2) last.
    assert lim.wait_s(40.0, 10) == pytest.approx(62.0 + MARGIN - 40.0)
    rejected = lim.admit(70.0, 10)
    assert lim.rate_limited(70.0, rejected, 30.0, "tpm", 2000) == Learned(
        "tpm", 100_000, 2000, "stated"
    )


def test_a_stated_quota_value_never_raises_a_limit() -> None:
    lim = limiter(rpm=10)
    rejected = lim.admit(0.0, 10)
    assert lim.rate_limited(0.0, rejected, 30.0, "rpm", 15) is None
    assert lim.rpm == 10


def test_a_429_that_clears_in_a_sliver_of_the_window_parks_but_teaches_nothing() -> None:
    lim = limiter(rpm=10)
    lim.admit(0.0, 10)
    rejected = lim.admit(1.0, 10)
    # A 0.4 s delay: the service stamped a request a little later than we did, at the edge.
    assert lim.rate_limited(1.0, rejected, 0.4, "rpm", None) is None
    assert lim.rpm == 10
    assert lim.state(1.2) == "parked"
    assert lim.state(1.4) == "ready"


def test_a_park_is_never_shortened_by_a_later_shorter_delay() -> None:
    lim = limiter(rpm=10)
    a, b = lim.admit(0.0, 1), lim.admit(0.0, 1)
    lim.rate_limited(1.0, a, 30.0, "rpm", None)
    lim.rate_limited(2.0, b, 5.0, "rpm", None)
    assert lim.parked_until == pytest.approx(31.0)


def test_a_request_above_a_learned_tpm_waits_for_an_empty_window_instead_of_never_fitting() -> None:
    lim = limiter(tpm=100_000)
    lim.admit(0.0, 300)
    rejected = lim.admit(1.0, 300)
    # Someone else used the project's quota: our window held little when the 429 came.
    assert lim.rate_limited(1.0, rejected, 10.0, "tpm", 300) == Learned(
        "tpm", 100_000, 300, "stated"
    )
    assert not lim.never_fits(5000)  # the configured limit is what "never" means
    # It goes alone: once the slot from t=0 has left.
    assert lim.wait_s(11.0, 5000) == pytest.approx(60.0 + MARGIN - 11.0)
    assert lim.wait_s(60.0 + MARGIN, 5000) == 0.0


def test_exhausted_sets_the_state_until_the_reset_and_learns_rpd() -> None:
    lim = limiter(rpm=100, rpd=50)
    for t in (0.0, 1.0):
        lim.admit(t, 10)
    rejected = lim.admit(2.0, 10)
    assert lim.exhausted(2.0, rejected, until=500.0) == Learned(
        "rpd", 50, 25, "lowered"
    )  # at most halved
    assert lim.used(2.0) == (2, 20, 2)
    assert lim.state(2.0) == "exhausted"
    assert lim.state(499.9) == "exhausted"
    assert lim.state(500.0) == "ready"
    assert lim.unavailable_until(3.0) == 500.0
    assert lim.wait_s(100.0, 10, paced=False) == pytest.approx(400.0)
    assert lim.wait_s(100.0, 10) >= 400.0


def test_exhausted_believes_a_stated_daily_limit() -> None:
    lim = limiter(rpd=1000)
    lim.admit(0.0, 10)
    assert lim.exhausted(0.0, None, until=100.0, server_limit=20) == Learned(
        "rpd", 1000, 20, "stated"
    )
    assert lim.rpd == 20


def test_exhausted_without_a_slot_still_blocks_the_model() -> None:
    lim = limiter(rpd=50)
    lim.admit(0.0, 10)
    lim.exhausted(1.0, None, until=100.0)
    assert lim.used(1.0) == (0, 0, 1)
    assert lim.state(50.0) == "exhausted"


def test_exhausted_takes_precedence_over_parked_and_cooling() -> None:
    lim = limiter(rpm=10)
    slot = lim.admit(0.0, 1)
    lim.rate_limited(0.0, slot, 50.0, "rpm", None)
    for _ in range(3):
        lim.record_server_failure(0.0, 80.0)
    lim.exhausted(0.0, None, until=100.0)
    assert lim.state(10.0) == "exhausted"
    assert lim.unavailable_until(10.0) == 100.0


# --- cooling after server failures -----------------------------------------------------------


def test_three_server_failures_in_a_row_cool_the_model() -> None:
    lim = limiter(rpm=10)
    assert lim.record_server_failure(0.0, 5.0) is False
    assert lim.record_server_failure(1.0, 5.0) is False
    assert lim.state(1.0) == "ready"
    assert lim.record_server_failure(2.0, 5.0) is True
    assert lim.state(2.0) == "cooling"
    assert lim.wait_s(3.0, 10) == pytest.approx(4.0)
    assert lim.state(7.0) == "ready"


def test_a_failure_while_cooling_does_not_extend_the_cooldown() -> None:
    lim = limiter()
    for t in (0.0, 0.0, 0.0):
        lim.record_server_failure(t, 5.0)
    assert lim.record_server_failure(1.0, 60.0) is False
    assert lim.cooling_until == 5.0


def test_a_success_resets_the_failure_count() -> None:
    lim = limiter()
    lim.record_server_failure(0.0, 5.0)
    lim.record_server_failure(0.0, 5.0)
    lim.record_success(lim.admit(0.0, 10))
    assert lim.consecutive_failures == 0
    assert lim.record_server_failure(0.0, 5.0) is False
    assert lim.record_server_failure(0.0, 5.0) is False
    assert lim.state(0.0) == "ready"


# --- never fits, preload ---------------------------------------------------------------------


def test_a_prompt_above_the_input_token_limit_or_tpm_never_fits() -> None:
    lim = limiter(tpm=5000, input_token_limit=8000)
    assert not lim.never_fits(5000)
    assert lim.never_fits(5001)
    assert lim.wait_s(0.0, 5001) == math.inf
    lim = limiter(input_token_limit=8000)
    assert not lim.never_fits(8000)
    assert lim.never_fits(8001)
    assert lim.wait_s(0.0, 8001, paced=False) == math.inf
    assert not limiter().never_fits(10**9)


def test_preload_starts_from_requests_already_sent() -> None:
    lim = limiter(rpm=2)
    lim.preload([Slot(30.0, 10), Slot(20.0, 10)])  # the call log need not be sorted
    assert lim.used(40.0) == (2, 20, 0)
    assert lim.wait_s(40.0, 10) == pytest.approx(80.0 + MARGIN - 40.0)


def test_preloaded_slots_count_against_the_day_and_expire_from_it() -> None:
    lim = limiter(rpm=2, rpd=3, day_s=1000.0)
    lim.preload([Slot(30.0, 10), Slot(-500.0, 10), Slot(20.0, 10)])
    assert lim.used(40.0) == (2, 20, 3)
    # The day is full until the slot from t=-500 leaves it at 500.5.
    assert lim.wait_s(40.0, 10) == pytest.approx(500.0 + MARGIN - 40.0)
    assert lim.used(500.0 + MARGIN) == (0, 0, 2)
    assert lim.wait_s(500.0 + MARGIN, 10) == 0.0


def test_a_fresh_limiter_starts_at_the_spec_and_ready() -> None:
    lim = limiter(rpm=7, tpm=700, rpd=70)
    assert (lim.rpm, lim.tpm, lim.rpd) == (7, 700, 70)
    assert lim.state(0.0) == "ready"
    assert lim.unavailable_until(0.0) == -math.inf
    assert lim.used(0.0) == (0, 0, 0)


def test_without_a_quota_value_one_429_at_most_halves_the_limit() -> None:
    limiter = ModelLimiter(ModelSpec("m", rpm=40, minute_s=60.0))
    slot = limiter.admit(0.0, 10)
    learned = limiter.rate_limited(1.0, slot, 30.0, "rpm", None)
    assert (
        learned is not None and learned.learned == 20
    )  # the window held nothing: evidence is weak
    again = limiter.rate_limited(2.0, limiter.admit(2.0, 10), 30.0, "rpm", None)
    assert again is not None and again.learned == 10


def test_the_day_window_empties_when_the_day_quota_resets() -> None:
    limiter = ModelLimiter(ModelSpec("m", rpd=3, minute_s=1.0, day_s=1000.0))
    for t in (0.0, 1.0, 2.0):
        limiter.admit(t, 10)
    limiter.exhausted(3.0, None, 50.0)
    assert limiter.wait_s(10.0, 10) == pytest.approx(40.0)  # exhausted until the reset
    assert limiter.wait_s(50.0, 10) == 0.0  # not 1000 s: the reset frees the whole day at once


# --- remembered limits -----------------------------------------------------------------------


def admitted_at_once(lim: ModelLimiter, now: float = 0.0) -> int:
    """How many requests the limiter admits at `now` with nothing answered yet."""
    count = 0
    while lim.wait_s(now, 10) == 0.0 and count < 1000:
        lim.admit(now, 10)
        count += 1
    return count


@pytest.mark.parametrize(
    ("source", "at_once"),
    [
        ("stated", 10),  # known: the window, then one probe at a time as answers come
        ("lowered", 10),
        ("raised", 20),  # a floor: discovery goes on with the doubling it had banked
    ],
)
def test_a_remembered_limit_is_trusted_as_far_as_how_it_was_learned(
    source: LimitSource, at_once: int
) -> None:
    spec = ModelSpec("m", rpm=5, discover=True)
    lim = ModelLimiter(spec, margin_s=MARGIN, remembered={"rpm": RememberedLimit(10, source)})
    assert lim.rpm == 10
    assert admitted_at_once(lim) == at_once


def test_a_trusted_spec_takes_a_remembered_limit_only_lower() -> None:
    lim = ModelLimiter(
        ModelSpec("m", rpm=5), margin_s=MARGIN, remembered={"rpm": RememberedLimit(10, "raised")}
    )
    assert lim.rpm == 5 and admitted_at_once(lim) == 5


def test_above_a_known_limit_one_probe_at_a_time_confirmed_by_its_own_answer() -> None:
    # Every answer earns a little credit; answers to requests sent before the probe must not
    # let a second request go above the limit while the probe is still out.
    spec = ModelSpec("m", rpm=5, discover=True)
    lim = ModelLimiter(spec, margin_s=MARGIN, remembered={"rpm": RememberedLimit(20, "stated")})
    slots = [lim.admit(0.0, 10) for _ in range(20)]
    probes = []
    for slot in slots:
        lim.release(slot)
        lim.record_success(slot)
        if lim.wait_s(1.0, 10) == 0.0:
            probes.append(lim.admit(1.0, 10))
    assert len(probes) == 1  # 20 answers earned two requests' worth; one goes
    assert lim.wait_s(1.0, 10) > 0.0
    lim.release(probes[0])
    lim.record_success(probes[0])
    assert lim.wait_s(1.0, 10) == 0.0  # its answer came: the next may go


def test_a_raise_for_a_shared_window_is_one_probe_at_a_time_too() -> None:
    # With a quota ledger the shared window is full first: the ledger asks for the raise, then
    # the request is admitted into a local window that now has room. That request is the
    # probe; a second raise waits for its answer (scenario 8's second batch met 6-27 x 429 so).
    spec = ModelSpec("m", rpm=5, discover=True)
    lim = ModelLimiter(spec, margin_s=MARGIN, remembered={"rpm": RememberedLimit(20, "stated")})
    slots = [lim.admit(0.0, 10) for _ in range(20)]
    for slot in slots:
        lim.release(slot)
        lim.record_success(slot)  # 20 answers: two requests' worth of credit
    assert lim.raise_for("rpm", 1)
    assert not lim.raise_for("rpm", 1)  # raised, its request not yet admitted
    probe = lim.admit(1.0, 10)
    assert lim.rpm == 21
    assert not lim.raise_for("rpm", 1)  # the probe is out
    lim.release(probe)
    lim.record_success(probe)
    assert lim.raise_for("rpm", 1) and lim.rpm == 22  # its answer came: the next may go
