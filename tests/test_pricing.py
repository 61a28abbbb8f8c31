"""Cost as billed: cached input at its own price, dated prices by the Pacific day, unknown prices
as None (never $0), sums that say what they leave out, impossible usage billed as nothing."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from scriptgen_nb.engine.errors import ConfigurationError
from scriptgen_nb.engine.models import ModelSpec, default_catalogue
from scriptgen_nb.engine.pricing import (
    ENV_TODAY,
    CostTotal,
    Price,
    catalogue_day,
    format_usd,
    pacific_date,
)
from scriptgen_nb.engine.values import Usage

DATED = ModelSpec(
    "m",
    input_usd_per_1m=1.50,
    output_usd_per_1m=7.50,
    cached_input_usd_per_1m=0.15,
    prices=[
        {"until": date(2026, 12, 31), "input_usd_per_1m": 0.75, "output_usd_per_1m": 3.75},
    ],
)
MILLION = Usage(1_000_000, 1_000_000)


def at(moment: str) -> float:
    """POSIX seconds of an ISO moment with its offset."""
    return datetime.fromisoformat(moment).timestamp()


@pytest.fixture(autouse=True)
def real_today(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_TODAY, raising=False)


# --- the Pacific calendar ----------------------------------------------------------------------


def test_the_billing_day_is_the_pacific_date() -> None:
    # 07:59 UTC on Jan 1 is still Dec 31 in Los Angeles (PST, UTC-8); 08:00 is Jan 1.
    assert pacific_date(at("2027-01-01T07:59:59+00:00")) == date(2026, 12, 31)
    assert pacific_date(at("2027-01-01T08:00:00+00:00")) == date(2027, 1, 1)
    # In summer (PDT, UTC-7) the day turns at 07:00 UTC.
    assert pacific_date(at("2026-07-01T06:59:59+00:00")) == date(2026, 6, 30)
    assert pacific_date(at("2026-07-01T07:00:00+00:00")) == date(2026, 7, 1)


def test_scriptgen_today_pins_the_catalogues_day(monkeypatch: pytest.MonkeyPatch) -> None:
    assert catalogue_day(at("2027-03-01T12:00:00+00:00")) == date(2027, 3, 1)
    monkeypatch.setenv(ENV_TODAY, "2026-11-28")
    assert catalogue_day() == catalogue_day(at("2027-03-01T12:00:00+00:00")) == date(2026, 11, 28)
    monkeypatch.setenv(ENV_TODAY, "someday")
    with pytest.raises(ConfigurationError, match="SCRIPTGEN_TODAY must be a date"):
        catalogue_day()


# --- dated prices ------------------------------------------------------------------------------


def test_the_introductory_price_holds_through_its_last_pacific_day() -> None:
    last_evening = at("2026-12-31T23:59:00-08:00")
    next_morning = at("2027-01-01T00:00:00-08:00")
    assert DATED.cost_usd(MILLION, at=last_evening) == pytest.approx(0.75 + 3.75)
    assert DATED.cost_usd(MILLION, at=next_morning) == pytest.approx(1.50 + 7.50)
    # UTC already says 2027 at the first moment; Google's calendar does not.
    assert datetime.fromtimestamp(last_evening, UTC).year == 2027


def test_the_bundled_gemini_3_8_flash_has_its_introductory_price_until_2026_12_31() -> None:
    flash = default_catalogue().get("gemini-3.8-flash")
    before, after = at("2026-12-15T12:00:00-08:00"), at("2027-01-02T12:00:00-08:00")
    assert flash.cost_usd(MILLION, at=before) == pytest.approx(0.75 + 3.75)
    assert flash.cost_usd(MILLION, at=after) == pytest.approx(1.50 + 7.50)
    assert flash.cost_usd(MILLION, batch=True, at=after) == pytest.approx((1.50 + 7.50) / 2)


def test_without_at_the_pinned_day_prices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_TODAY, "2027-02-01")
    assert DATED.cost_usd(MILLION) == pytest.approx(9.0)
    monkeypatch.setenv(ENV_TODAY, "2026-12-01")
    assert DATED.cost_usd(MILLION) == pytest.approx(4.5)


def test_dated_prices_are_sorted_and_read_from_json_text() -> None:
    spec = ModelSpec(
        "m",
        input_usd_per_1m=3.0,
        output_usd_per_1m=3.0,
        prices=[
            {"until": "2027-06-30", "input_usd_per_1m": 2.0, "output_usd_per_1m": 2.0},
            Price(1.0, 1.0, until=date(2026, 12, 31)),
        ],
    )
    assert [p.until for p in spec.prices] == [date(2026, 12, 31), date(2027, 6, 30)]
    assert spec.price_on(date(2027, 1, 1)).input_usd_per_1m == 2.0
    assert spec.price_on(date(2027, 7, 1)).input_usd_per_1m == 3.0


@pytest.mark.parametrize(
    ("prices", "complaint"),
    [
        ([{"input_usd_per_1m": 1.0, "output_usd_per_1m": 1.0}], "needs `until`"),
        ([{"until": "2026-12-31", "input_usd_per_1m": 1.0}], "both input_usd_per_1m"),
        ([{"until": "soon", "input_usd_per_1m": 1.0, "output_usd_per_1m": 1.0}], "a date"),
        ([{"until": "2026-12-31", "input": 1.0}], "unknown fields"),
        ([{"until": "2026-12-31", "input_usd_per_1m": -1, "output_usd_per_1m": 1}], ">= 0"),
        ([42], "list of tables"),
        ({"until": "2026-12-31"}, "list of dated prices"),
        (
            [
                {"until": "2026-12-31", "input_usd_per_1m": 1, "output_usd_per_1m": 1},
                {"until": "2026-12-31", "input_usd_per_1m": 2, "output_usd_per_1m": 2},
            ],
            "two dated prices end on one day",
        ),
    ],
)
def test_a_bad_dated_price_is_a_configuration_error(prices: Any, complaint: str) -> None:
    with pytest.raises(ConfigurationError, match=complaint):
        ModelSpec("m", input_usd_per_1m=1.0, output_usd_per_1m=1.0, prices=prices)


# --- cached input, unknown prices, impossible usage --------------------------------------------


def test_cached_input_is_billed_at_the_cached_price_and_the_rest_at_the_input_price() -> None:
    spec = ModelSpec(
        "m", input_usd_per_1m=0.50, output_usd_per_1m=3.0, cached_input_usd_per_1m=0.05
    )
    usage = Usage(input=1_000_000, output=0, thoughts=0, cached=800_000)
    assert spec.cost_usd(usage) == pytest.approx(0.2 * 0.50 + 0.8 * 0.05)


def test_without_a_cached_price_cached_input_costs_the_input_price() -> None:
    spec = ModelSpec("m", input_usd_per_1m=0.50, output_usd_per_1m=3.0)
    assert spec.cost_usd(Usage(1_000_000, cached=1_000_000)) == pytest.approx(0.50)


def test_thoughts_are_billed_as_output() -> None:
    spec = ModelSpec("m", input_usd_per_1m=1.0, output_usd_per_1m=10.0)
    assert spec.cost_usd(Usage(0, 100_000, 100_000)) == pytest.approx(2.0)


@pytest.mark.parametrize(
    "spec",
    [
        ModelSpec("m"),
        ModelSpec("m", input_usd_per_1m=1.0),
        ModelSpec("m", output_usd_per_1m=1.0),
    ],
)
def test_an_unknown_price_costs_none_never_zero(spec: ModelSpec) -> None:
    assert not spec.priced
    assert spec.cost_usd(Usage(100, 100)) is None
    assert spec.cost_usd(Usage(100, 100), batch=True) is None


@pytest.mark.parametrize(
    "usage",
    [
        Usage(-5, 10),
        Usage(10, -1),
        Usage(10, 10, -3),
        Usage(10, 10, 0, -1),
        Usage(10, 10, 0, 11),  # more cached than the whole prompt
        Usage(20_000_000, 10),
    ],
)
def test_impossible_usage_is_named_and_bills_nothing(usage: Usage) -> None:
    assert usage.problem is not None
    assert usage.billable == Usage()
    spec = ModelSpec("m", input_usd_per_1m=1.0, output_usd_per_1m=1.0)
    assert spec.cost_usd(usage) == 0.0


def test_possible_usage_has_no_problem_and_adds_up() -> None:
    total = Usage(10, 5, 2, 4) + Usage(1, 1, 1, 1)
    assert total == Usage(11, 6, 3, 5)
    assert total.problem is None and total.billable is total
    assert total.total == 20  # cached is part of the input, not added to it


# --- sums and their text -----------------------------------------------------------------------


def test_a_sum_of_known_costs_is_dollars() -> None:
    total = CostTotal.of([0.01, 0.0025, 0.0])
    assert (total.usd, total.priced, total.unpriced) == (pytest.approx(0.0125), 3, 0)
    assert str(total) == "$0.0125"


def test_a_sum_with_unknown_prices_says_at_least() -> None:
    assert str(CostTotal.of([0.01, None, 0.0025, None])) == (
        "at least $0.0125 (2 requests of unknown price)"
    )
    assert str(CostTotal.of([0.5, None])) == "at least $0.5000 (1 request of unknown price)"


def test_a_sum_of_unknown_prices_only_is_unknown() -> None:
    assert str(CostTotal.of([None, None])) == "cost unknown"
    assert format_usd(None) == "cost unknown" and format_usd(0.1) == "$0.1000"
