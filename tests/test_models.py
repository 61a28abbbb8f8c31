"""ModelSpec validation and pricing; catalogues from mappings, files and the bundled TOML."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from scriptgen_nb.engine.errors import ConfigurationError, UnknownModelError
from scriptgen_nb.engine.models import (
    ENV_CATALOGUE,
    ENV_TIER,
    ListedModel,
    ModelCatalogue,
    ModelSpec,
    default_catalogue,
    ladder_notices,
    seed_models,
)
from scriptgen_nb.engine.policy import seed_concurrency
from scriptgen_nb.engine.pricing import ENV_TODAY
from scriptgen_nb.engine.values import Usage


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_TIER, raising=False)
    monkeypatch.delenv(ENV_CATALOGUE, raising=False)
    monkeypatch.delenv(ENV_TODAY, raising=False)


# --- ModelSpec -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        ({"name": ""}, "not a Gemini model name"),
        ({"name": "publishers/google/gemini"}, "not a Gemini model name"),
        ({"name": "m", "rpm": -1}, "rpm must be >= 0"),
        ({"name": "m", "tpm": -5}, "tpm must be >= 0"),
        ({"name": "m", "rpd": -1}, "rpd must be >= 0"),
        ({"name": "m", "minute_s": 0.0}, "window lengths"),
        ({"name": "m", "day_s": -1.0}, "window lengths"),
        ({"name": "m", "batch_discount": 1.5}, "batch_discount"),
        ({"name": "m", "batch_discount": -0.1}, "batch_discount"),
    ],
)
def test_a_bad_spec_is_a_configuration_error(fields: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ConfigurationError, match=complaint):
        ModelSpec(**fields)


def test_configuration_errors_are_value_errors() -> None:
    with pytest.raises(ValueError):
        ModelSpec("m", rpm=-1)


def test_a_models_prefixed_name_is_accepted_and_shortened() -> None:
    assert ModelSpec("models/gemini-2.5-flash").name == "gemini-2.5-flash"


def test_a_limit_of_zero_makes_a_model_unusable_and_none_does_not() -> None:
    assert ModelSpec("m").usable
    assert ModelSpec("m", rpm=10, tpm=250_000, rpd=20).usable
    assert not ModelSpec("m", rpm=0).usable
    assert not ModelSpec("m", rpm=10, tpm=0).usable
    assert not ModelSpec("m", rpd=0).usable
    assert ModelSpec("m", rpm=0, discover=True).usable  # a guessed 0 is worth one try


PRICED = ModelSpec(
    "m",
    input_usd_per_1m=1.0,
    output_usd_per_1m=4.0,
    input_usd_per_1m_long=2.0,
    output_usd_per_1m_long=6.0,
    long_context_tokens=200_000,
    batch_discount=0.5,
)


def test_cost_bills_thoughts_as_output() -> None:
    # 1000 in at $1/M; (500 out + 1500 thoughts) at $4/M.
    assert PRICED.cost_usd(Usage(1000, 500, 1500)) == pytest.approx(0.001 + 0.008)
    assert PRICED.cost_usd(Usage(0, 0, 1_000_000)) == pytest.approx(4.0)


def test_long_context_prices_apply_to_the_whole_request_above_the_threshold() -> None:
    assert PRICED.cost_usd(Usage(200_000, 1000)) == pytest.approx(0.2 + 0.004)
    assert PRICED.cost_usd(Usage(200_001, 1000)) == pytest.approx(200_001 * 2.0 / 1e6 + 0.006)


def test_without_long_context_prices_the_standard_ones_apply() -> None:
    spec = ModelSpec("m", input_usd_per_1m=0.3, output_usd_per_1m=2.5)
    assert spec.cost_usd(Usage(1_000_000, 1_000_000)) == pytest.approx(2.8)


def test_batch_calls_cost_the_batch_share() -> None:
    usage = Usage(300_000, 2000, 1000)
    assert PRICED.cost_usd(usage, batch=True) == pytest.approx(PRICED.cost_usd(usage) * 0.5)
    free = ModelSpec("m", input_usd_per_1m=1.0, output_usd_per_1m=2.0, batch_discount=1.0)
    assert free.cost_usd(Usage(1_000_000), batch=True) == pytest.approx(1.0)


def test_no_usage_costs_nothing() -> None:
    assert PRICED.cost_usd(Usage()) == 0.0


def test_with_windows_changes_only_the_windows() -> None:
    spec = ModelSpec("m", priority=2, rpm=10, input_usd_per_1m=1.0)
    fast = spec.with_windows(1.0, 30.0)
    assert (fast.minute_s, fast.day_s) == (1.0, 30.0)
    assert (fast.name, fast.priority, fast.rpm, fast.input_usd_per_1m) == ("m", 2, 10, 1.0)
    assert (spec.minute_s, spec.day_s) == (60.0, 86_400.0)


# --- catalogues from mappings ----------------------------------------------------------------


def mapping(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "as_of": "2026-11-28",
        "default_tier": "free",
        "models": {
            "alpha": {
                "priority": 2,
                "input_usd_per_1m": 0.3,
                "limits": {"free": {"rpm": 10, "rpd": 20}, "tier1": {"rpm": 1000}},
            },
            "beta": {
                "priority": 1,
                "limits": {"free": {"rpm": 15}, "tier1": {"rpm": 4000}},
            },
            "gamma": {"limits": {"free": {"rpm": 0, "tpm": 0}, "tier1": {"rpm": 150}}},
            "delta": {"priority": 3, "limits": {"free": {"rpm": 0}, "tier1": {"rpm": 5}}},
        },
    }
    data.update(overrides)
    return data


def test_a_catalogue_takes_the_default_tiers_limits() -> None:
    catalogue = ModelCatalogue.from_mapping(mapping())
    assert (catalogue.tier, catalogue.as_of) == ("free", "2026-11-28")
    alpha = catalogue.get("alpha")
    assert (alpha.rpm, alpha.rpd, alpha.tpm, alpha.input_usd_per_1m) == (10, 20, None, 0.3)
    assert [s.name for s in catalogue] == ["alpha", "beta", "gamma", "delta"]
    assert len(catalogue) == 4


def test_an_explicit_tier_wins_over_the_environment_and_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV_TIER, "free")
    catalogue = ModelCatalogue.from_mapping(mapping(), tier="tier1")
    assert catalogue.tier == "tier1"
    assert catalogue.get("alpha").rpm == 1000
    assert catalogue.get("alpha").rpd is None


def test_the_tier_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_TIER, "tier1")
    catalogue = ModelCatalogue.from_mapping(mapping())
    assert (catalogue.tier, catalogue.get("beta").rpm) == ("tier1", 4000)


def test_a_missing_tier_names_the_tiers_there_are() -> None:
    with pytest.raises(ConfigurationError, match=r"'alpha' has no limits for tier 'tier9'") as info:
        ModelCatalogue.from_mapping(mapping(), tier="tier9")
    assert "free, tier1" in str(info.value)
    assert ENV_TIER in str(info.value)


def test_a_model_without_limits_needs_no_tier() -> None:
    catalogue = ModelCatalogue.from_mapping({"models": {"m": {"rpm": 3}}}, tier="anything")
    assert catalogue.get("m").rpm == 3


def test_an_unknown_field_is_named_with_the_allowed_ones() -> None:
    data = mapping()
    data["models"]["alpha"]["rpmm"] = 5
    with pytest.raises(ConfigurationError, match=r"'alpha' has unknown fields \['rpmm'\]") as info:
        ModelCatalogue.from_mapping(data)
    assert "input_usd_per_1m" in str(info.value)


def test_an_unknown_field_inside_a_tier_is_caught_too() -> None:
    data = {"models": {"m": {"limits": {"free": {"rpm": 1, "requests_per_minute": 2}}}}}
    with pytest.raises(ConfigurationError, match="requests_per_minute"):
        ModelCatalogue.from_mapping(data)


def test_a_name_field_inside_a_model_table_is_an_unknown_field() -> None:
    with pytest.raises(ConfigurationError, match=r"unknown fields \['name'\]"):
        ModelCatalogue.from_mapping({"models": {"m": {"name": "other"}}})


@pytest.mark.parametrize(
    "models",
    [
        {"m": 5},
        {"m": {"rpm": "ten"}},
        {"m": {"limits": {"free": 10}}},
        {"m": {"limits": ["free"]}},
    ],
    ids=["entry-not-a-table", "wrong-type", "tier-not-a-table", "limits-not-a-table"],
)
def test_a_malformed_model_entry_is_a_configuration_error(models: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="'m'"):
        ModelCatalogue.from_mapping({"models": models})


def test_a_bad_spec_value_in_a_catalogue_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="rpm must be >= 0"):
        ModelCatalogue.from_mapping({"models": {"m": {"rpm": -1}}})


@pytest.mark.parametrize("models", [None, {}, ["alpha"]])
def test_a_catalogue_needs_models(models: Any) -> None:
    with pytest.raises(ConfigurationError, match="non-empty"):
        ModelCatalogue.from_mapping({"models": models})


def test_get_accepts_the_models_prefix_and_names_known_models() -> None:
    catalogue = ModelCatalogue.from_mapping(mapping())
    assert catalogue.get("models/beta").name == "beta"
    assert "models/beta" in catalogue
    assert "beta" in catalogue
    assert "omega" not in catalogue
    assert 3 not in catalogue
    with pytest.raises(UnknownModelError, match=r"'omega'.*alpha, beta, gamma, delta"):
        catalogue.get("omega")


def test_the_ladder_is_usable_prioritised_models_in_priority_order() -> None:
    assert [s.name for s in ModelCatalogue.from_mapping(mapping()).ladder()] == ["beta", "alpha"]
    tier1 = ModelCatalogue.from_mapping(mapping(), tier="tier1")
    assert [s.name for s in tier1.ladder()] == ["beta", "alpha", "delta"]


def test_catalogue_with_windows_compresses_every_model() -> None:
    catalogue = ModelCatalogue.from_mapping(mapping()).with_windows(1.0, 20.0)
    assert {(s.minute_s, s.day_s) for s in catalogue} == {(1.0, 20.0)}
    assert (catalogue.tier, catalogue.as_of, len(catalogue)) == ("free", "2026-11-28", 4)


# --- resolve ---------------------------------------------------------------------------------


@pytest.fixture
def catalogue() -> ModelCatalogue:
    return ModelCatalogue.from_mapping(mapping())


def names(specs: list[ModelSpec]) -> list[str]:
    return [s.name for s in specs]


def test_resolve_none_is_the_default_ladder(catalogue: ModelCatalogue) -> None:
    assert names(catalogue.resolve(None)) == ["beta", "alpha"]


def test_resolve_none_without_a_ladder_says_to_pass_models() -> None:
    catalogue = ModelCatalogue.from_mapping({"models": {"m": {"rpm": 3}}})
    with pytest.raises(ConfigurationError, match="models="):
        catalogue.resolve(None)


def test_resolve_keeps_the_callers_order(catalogue: ModelCatalogue) -> None:
    assert names(catalogue.resolve(["alpha", "beta"])) == ["alpha", "beta"]
    assert names(catalogue.resolve("alpha")) == ["alpha"]


def test_resolve_reads_a_comma_separated_ladder(catalogue: ModelCatalogue) -> None:
    assert names(catalogue.resolve(" alpha , models/beta,")) == ["alpha", "beta"]


def test_resolve_takes_model_specs_as_they_are(catalogue: ModelCatalogue) -> None:
    mine = ModelSpec("my-tuned-model", rpm=3)
    assert catalogue.resolve(mine) == [mine]
    ladder = catalogue.resolve([mine, "beta"])
    assert ladder[0] is mine
    assert ladder[1] == catalogue.get("beta")


def test_resolve_rejects_a_model_named_twice(catalogue: ModelCatalogue) -> None:
    with pytest.raises(ConfigurationError, match="twice"):
        catalogue.resolve("alpha,beta,alpha")
    with pytest.raises(ConfigurationError, match="twice"):
        catalogue.resolve(["beta", "models/beta"])
    with pytest.raises(ConfigurationError, match="twice"):
        catalogue.resolve([ModelSpec("alpha", rpm=1), "alpha"])


@pytest.mark.parametrize("models", [[], "", " , "])
def test_resolve_rejects_an_empty_ladder(catalogue: ModelCatalogue, models: Any) -> None:
    with pytest.raises(ConfigurationError, match="empty"):
        catalogue.resolve(models)


def test_resolve_rejects_unknown_names(catalogue: ModelCatalogue) -> None:
    with pytest.raises(UnknownModelError, match="omega"):
        catalogue.resolve("beta,omega")


def test_resolve_refuses_a_ladder_of_only_unusable_models(catalogue: ModelCatalogue) -> None:
    with pytest.raises(ConfigurationError, match=r"No quota for gamma, delta in tier free") as info:
        catalogue.resolve("gamma,delta")
    assert f"{ENV_TIER}=tier1" in str(info.value)


def test_resolve_keeps_an_unusable_model_beside_usable_ones(catalogue: ModelCatalogue) -> None:
    # The runner skips it; the ladder still says what the caller asked for.
    assert names(catalogue.resolve("gamma,alpha")) == ["gamma", "alpha"]


# --- catalogue files -------------------------------------------------------------------------

TOML = """
as_of = "2026-01-01"
default_tier = "free"

[models."gemini-x"]
priority = 1
input_usd_per_1m = 0.5
limits.free = { rpm = 4, tpm = 1000 }
limits.paid = { rpm = 400 }
"""


def test_a_toml_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text(TOML, encoding="utf-8")
    catalogue = ModelCatalogue.from_file(path)
    spec = catalogue.get("gemini-x")
    assert (spec.rpm, spec.tpm, spec.input_usd_per_1m) == (4, 1000, 0.5)
    assert catalogue.as_of == "2026-01-01"
    assert ModelCatalogue.from_file(str(path), tier="paid").get("gemini-x").rpm == 400


def test_a_json_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "models.json"
    data = {"default_tier": "paid", "models": {"gemini-y": {"limits": {"paid": {"rpd": 9}}}}}
    path.write_text(json.dumps(data), encoding="utf-8")
    catalogue = ModelCatalogue.from_file(path)
    assert (catalogue.tier, catalogue.get("gemini-y").rpd) == ("paid", 9)


def test_a_missing_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="Cannot read model catalogue"):
        ModelCatalogue.from_file(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    ("filename", "content"),
    [
        ("bad.toml", 'as_of = "2026\n[models'),
        ("bad.json", '{"models": {'),
        ("list.json", '[{"name": "gemini-x"}]'),
        ("text.json", '"gemini-x"'),
    ],
)
def test_an_invalid_file_is_a_configuration_error(
    tmp_path: Path, filename: str, content: str
) -> None:
    path = tmp_path / filename
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigurationError, match=re.escape(filename)):
        ModelCatalogue.from_file(path)


def test_a_binary_file_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ConfigurationError, match=r"models\.toml"):
        ModelCatalogue.from_file(path)


def test_a_directory_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="Cannot read"):
        ModelCatalogue.from_file(tmp_path)


# --- the bundled catalogue -------------------------------------------------------------------


def test_the_bundled_catalogue_loads_on_the_free_tier() -> None:
    catalogue = default_catalogue()
    assert catalogue.tier == "free"
    assert catalogue.as_of == "2026-12-04"
    assert names(catalogue.ladder()) == [
        "gemini-3.8-flash",
        "gemini-3.5-flash-lite",
        "gemini-2.5-flash-lite",
    ]
    flash = catalogue.get("gemini-2.5-flash")
    assert (flash.rpm, flash.tpm, flash.rpd) == (10, 250_000, 20)
    # The free tier's 0 for gemini-2.5-pro is a guess: one try tells (discovery), not a refusal.
    assert catalogue.get("gemini-2.5-pro").usable and catalogue.get("gemini-2.5-pro").discover
    for spec in catalogue:
        assert spec.input_token_limit and spec.output_token_limit
        assert (
            spec.priced and (spec.input_usd_per_1m or 0) > 0 and (spec.output_usd_per_1m or 0) > 0
        )
        assert spec.cached_input_usd_per_1m == pytest.approx((spec.input_usd_per_1m or 0) / 10)
        assert spec.discover  # the bundled limits are guesses


def test_the_bundled_catalogue_follows_scriptgen_tier(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_TIER, "tier1")
    catalogue = default_catalogue()
    assert catalogue.tier == "tier1"
    assert catalogue.get("gemini-3.8-flash").rpm == 1000
    assert catalogue.get("gemini-2.5-pro").usable
    assert default_catalogue(tier="free").get("gemini-3.8-flash").rpm == 5


def test_an_unknown_tier_for_the_bundled_catalogue_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV_TIER, "enterprise")
    with pytest.raises(ConfigurationError, match="enterprise"):
        default_catalogue()


def _user_catalogue(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, text: str) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(text, encoding="utf-8")
    monkeypatch.setenv(ENV_CATALOGUE, str(path))


def test_scriptgen_catalogue_adds_its_models_to_the_bundled_ones(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _user_catalogue(monkeypatch, tmp_path, TOML)
    catalogue = default_catalogue()
    assert "gemini-x" in catalogue and "gemini-3.8-flash" in catalogue
    mine = catalogue.get("gemini-x")
    assert (mine.rpm, mine.tpm, mine.input_usd_per_1m) == (4, 1000, 0.5)
    assert not mine.discover  # stated limits are trusted
    assert catalogue.get("gemini-3.8-flash").discover  # the bundled ones stay guesses
    assert catalogue.as_of == "2026-01-01"  # the file's top-level fields win


def test_scriptgen_catalogue_overrides_a_bundled_model_field_by_field(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _user_catalogue(
        monkeypatch,
        tmp_path,
        '[models."gemini-3.8-flash"]\nstatus = "ours"\nlimits.free = { rpm = 50 }\n'
        '[models."gemini-3.5-flash-lite"]\noutput_usd_per_1m = 9.0\n',
    )
    catalogue = default_catalogue()
    flash = catalogue.get("gemini-3.8-flash")
    assert (flash.rpm, flash.tpm, flash.rpd, flash.status) == (50, 250_000, 20, "ours")
    assert flash.prices and flash.input_usd_per_1m == 1.50  # what it did not state stays
    assert not flash.discover  # it stated a limit: trusted
    lite = catalogue.get("gemini-3.5-flash-lite")
    assert (lite.output_usd_per_1m, lite.input_usd_per_1m, lite.rpm) == (9.0, 0.30, 15)
    assert lite.discover  # no limit stated: the bundled guesses are still guesses
    assert default_catalogue(tier="tier1").get("gemini-3.8-flash").rpm == 1000


def test_a_flat_limit_in_scriptgen_catalogue_applies_to_every_tier(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _user_catalogue(
        monkeypatch, tmp_path, '[models."gemini-3.8-flash"]\nrpm = 2000\ndiscover = true\n'
    )
    for tier in ("free", "tier1"):
        flash = default_catalogue(tier=tier).get("gemini-3.8-flash")
        assert flash.rpm == 2000 and flash.discover  # asked to keep discovering
    assert default_catalogue(tier="tier1").get("gemini-3.8-flash").tpm == 1_000_000


def test_a_malformed_scriptgen_catalogue_entry_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _user_catalogue(monkeypatch, tmp_path, '[models]\n"gemini-3.8-flash" = 3\n')
    with pytest.raises(ConfigurationError, match="must be a table of fields"):
        default_catalogue()


def test_a_bad_scriptgen_catalogue_path_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(ENV_CATALOGUE, str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigurationError, match=r"missing\.toml"):
        default_catalogue()


def test_seed_models_are_the_seeds_three_with_its_rpm() -> None:
    models = seed_models(minute_s=1.0, day_s=20.0)
    assert [(m.name, m.priority, m.rpm) for m in models] == [
        ("gemini-2.5-pro", 1, 2),
        ("gemini-2.5-flash", 2, 10),
        ("gemini-2.0-flash-lite", 3, 30),
    ]
    assert all(m.usable for m in models)  # gemini-2.5-pro has no free tier; the seed's table does
    assert not any(m.discover for m in models)  # the table's limits are stated: not probed above
    assert {(m.tpm, m.rpd, m.minute_s, m.day_s) for m in models} == {(250_000, None, 1.0, 20.0)}
    assert [seed_concurrency(m.rpm) for m in models] == [3, 3, 3]
    assert models[0].input_usd_per_1m == 1.25  # prices come from the catalogue


def test_seed_models_ignore_scriptgen_tier(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_TIER, "tier1")
    assert [m.rpm for m in seed_models()] == [2, 10, 30]


def test_a_zero_long_context_price_is_honoured() -> None:
    spec = ModelSpec(
        "m",
        input_usd_per_1m=1.0,
        output_usd_per_1m=1.0,
        input_usd_per_1m_long=0.0,
        long_context_tokens=10,
    )
    assert spec.cost_usd(Usage(input=100)) == 0.0


# --- shutdown dates, notices -----------------------------------------------------------------

DEC_4 = date(2026, 12, 4)


def dated(**entries: dict[str, Any]) -> ModelCatalogue:
    return ModelCatalogue.from_mapping({"models": entries})


def test_a_model_is_retired_from_its_shutdown_day_on() -> None:
    spec = ModelSpec("m", shutdown="2026-12-01")
    assert spec.shutdown == date(2026, 12, 1)
    assert not spec.retired_on(date(2026, 11, 30))
    assert spec.retired_on(date(2026, 12, 1)) and spec.retired_on(DEC_4)
    assert not ModelSpec("m").retired_on(date(2999, 1, 1))
    with pytest.raises(ConfigurationError, match="shutdown must be a date"):
        ModelSpec("m", shutdown="next winter")


def test_default_ladders_skip_models_past_their_shutdown_day() -> None:
    catalogue = dated(
        old={"priority": 1, "shutdown": date(2026, 12, 1)},
        new={"priority": 2},
        later={"priority": 3, "shutdown": date(2027, 5, 7)},
    )
    assert names(catalogue.ladder(today=date(2026, 11, 30))) == ["old", "new", "later"]
    assert names(catalogue.ladder(today=DEC_4)) == ["new", "later"]
    assert names(catalogue.resolve(None, today=date(2027, 5, 7))) == ["new"]


def test_a_default_ladder_of_only_retired_models_says_which_and_why() -> None:
    catalogue = dated(old={"priority": 1, "shutdown": date(2026, 12, 1)})
    with pytest.raises(ConfigurationError, match=r"old \(shut down 2026-12-01\)"):
        catalogue.resolve(None, today=DEC_4)


def test_naming_a_retired_model_still_works_and_is_noticed() -> None:
    catalogue = dated(
        old={
            "priority": 1,
            "shutdown": date(2026, 12, 1),
            "input_usd_per_1m": 1.0,
            "output_usd_per_1m": 1.0,
        },
    )
    ladder = catalogue.resolve("old", today=DEC_4)
    assert names(ladder) == ["old"]
    notices = ladder_notices(ladder, today=DEC_4)
    assert len(notices) == 1 and "shut it down on 2026-12-01" in notices[0]
    assert ladder_notices(ladder, today=date(2026, 11, 1)) == []


def test_a_model_of_unknown_price_is_noticed() -> None:
    (notice,) = ladder_notices([ModelSpec("mine", rpm=3)], today=DEC_4)
    assert "mine: price unknown" in notice


def test_the_catalogue_day_decides_the_default_ladder(monkeypatch: pytest.MonkeyPatch) -> None:
    catalogue = dated(old={"priority": 1, "shutdown": date(2026, 12, 1)}, new={"priority": 2})
    monkeypatch.setenv(ENV_TODAY, "2026-11-28")
    assert names(catalogue.ladder()) == ["old", "new"]
    monkeypatch.setenv(ENV_TODAY, "2026-12-04")
    assert names(catalogue.ladder()) == ["new"]


def test_the_bundled_shutdown_dates(monkeypatch: pytest.MonkeyPatch) -> None:
    catalogue = default_catalogue()
    shutdowns = {s.name: s.shutdown for s in catalogue if s.shutdown}
    assert shutdowns == {
        "gemini-3.1-flash-lite": date(2027, 5, 7),
        "gemini-2.5-pro": date(2026, 12, 1),
        "gemini-2.5-flash": date(2026, 12, 1),
        "gemini-2.0-flash-lite": date(2026, 6, 1),
    }
    monkeypatch.setenv(ENV_TIER, "tier1")
    tier1 = default_catalogue()
    assert "gemini-2.5-pro" not in names(tier1.ladder(today=DEC_4))


def test_seed_models_say_they_are_retired_on_google() -> None:
    for spec in seed_models():
        assert spec.retired_on(DEC_4)
        assert "retired on Google" in spec.status and "emulator" in spec.status
    assert "retired on Google" in (seed_models.__doc__ or "")


# --- the endpoint's model list decides first -------------------------------------------------

LISTED = {
    "beta": ListedModel("beta", 1000, 100),
    "gemini-4-argon": ListedModel("gemini-4-argon", 2_000_000, 65_536),
    "gemini-4-carbon": ListedModel("gemini-4-carbon"),
}


def test_a_name_only_the_endpoint_lists_gets_careful_limits_and_no_price(
    catalogue: ModelCatalogue,
) -> None:
    (spec,) = catalogue.resolve("gemini-4-argon", listed=LISTED)
    assert (spec.rpm, spec.tpm, spec.rpd) == (5, 250_000, None)
    assert (spec.input_token_limit, spec.output_token_limit) == (2_000_000, 65_536)
    assert spec.discover and not spec.priced and spec.cost_usd(Usage(10, 10)) is None
    assert "not in the catalogue" in spec.status
    compressed = catalogue.with_windows(1.0, 20.0).named("gemini-4-carbon", LISTED)
    assert (compressed.minute_s, compressed.day_s) == (1.0, 20.0)
    assert compressed.input_token_limit is None


def test_a_listed_catalogue_model_is_the_catalogues(catalogue: ModelCatalogue) -> None:
    assert catalogue.resolve("models/beta", listed=LISTED) == [catalogue.get("beta")]


def test_a_catalogue_model_the_endpoint_does_not_list_fails_before_sending(
    catalogue: ModelCatalogue,
) -> None:
    with pytest.raises(
        ConfigurationError, match="'alpha' is not in the endpoint's model list"
    ) as e:
        catalogue.resolve("alpha", listed=LISTED)
    assert "It lists beta, gemini-4-argon, gemini-4-carbon." in str(e.value)


def test_in_a_ladder_a_model_the_endpoint_does_not_list_is_left_out_and_said(
    catalogue: ModelCatalogue,
) -> None:
    left_out: list[str] = []
    ladder = catalogue.resolve("alpha,beta", listed=LISTED, left_out=left_out)
    assert names(ladder) == ["beta"]
    assert left_out == [
        "alpha: not in the endpoint's model list (retired, or not available to this key): "
        "left out of the ladder before any call"
    ]


def test_a_name_nobody_knows_suggests_the_closest_listed_ones(catalogue: ModelCatalogue) -> None:
    with pytest.raises(UnknownModelError, match=r"Did you mean 'gemini-4-argon'") as info:
        catalogue.resolve("gemini-4-argn", listed=LISTED)
    assert "nothing was sent" in str(info.value)
    with pytest.raises(UnknownModelError, match=r"Did you mean 'beta'"):
        catalogue.resolve("betta")  # without the list, the catalogue's names


def test_default_ladders_skip_catalogue_models_the_endpoint_does_not_list(
    catalogue: ModelCatalogue,
) -> None:
    assert names(catalogue.resolve(None, listed=LISTED)) == ["beta"]
    assert names(catalogue.resolve(None, listed=None)) == ["beta", "alpha"]  # no list: all
    with pytest.raises(ConfigurationError, match=r"alpha \(not listed\), beta \(not listed\)"):
        catalogue.resolve(None, listed={})
