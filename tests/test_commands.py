"""What the magic and the command share: `--tier`, the quota identity, `limits`, models."""

from __future__ import annotations

import sqlite3
import time
import tomllib
from importlib import resources
from pathlib import Path

import pytest

from scriptgen_nb import commands
from scriptgen_nb.engine.backend import GOOGLE_ENDPOINT
from scriptgen_nb.engine.errors import ConfigurationError
from scriptgen_nb.engine.identity import key_fingerprint
from scriptgen_nb.engine.ledger import windows_at
from scriptgen_nb.engine.limits import Metric
from scriptgen_nb.engine.models import default_catalogue
from scriptgen_nb.quota import LocalLedger, quota_identity
from scriptgen_nb.store import Database
from tests.call_log_rows import remember

FLASH = "gemini-3.8-flash"


@pytest.fixture
def google_key(monkeypatch: pytest.MonkeyPatch) -> str:
    """A user of Google with GEMINI_API_KEY set (no other endpoint, no other key)."""
    for name in ("GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL", "SCRIPTGEN_TIER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GEMINI_API_KEY", "the-users-key")
    return key_fingerprint("the-users-key")


def test_the_tiers_offered_are_the_bundled_catalogues() -> None:
    text = resources.files("scriptgen_nb.engine").joinpath("catalogue.toml").read_text()
    models = tomllib.loads(text)["models"].values()
    assert {tier for model in models for tier in model.get("limits", {})} == set(commands.TIERS)


def test_tier_picks_the_catalogues_limits_and_keeps_an_emulators_windows() -> None:
    assert commands.with_tier({"cache": "use"}, None) == {"cache": "use"}
    paid = commands.with_tier({"cache": "use"}, "tier1")["catalogue"]
    assert paid.tier == "tier1" and paid.get(FLASH).rpm == default_catalogue("tier1").get(FLASH).rpm
    assert paid.get(FLASH).rpm != default_catalogue("free").get(FLASH).rpm
    compressed = {"catalogue": default_catalogue("free").with_windows(2.0, 60.0)}
    spec = commands.with_tier(compressed, "tier1")["catalogue"].get(FLASH)
    assert (spec.rpm, spec.minute_s, spec.day_s) == (paid.get(FLASH).rpm, 2.0, 60.0)


def test_an_unknown_tier_is_one_line_naming_the_tiers() -> None:
    with pytest.raises(ConfigurationError) as caught:
        commands.with_tier({}, "gold")
    assert str(caught.value) == "--tier 'gold': use one of free, tier1."


def test_the_quota_identity_is_the_endpoint_and_the_keys_fingerprint(
    google_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = commands.quota_identity({})
    assert mine == commands.QuotaIdentity("google", google_key)
    assert str(mine) == f"google, key {google_key}" and "the-users-key" not in str(mine)
    local = commands.quota_identity({"base_url": "http://127.0.0.1:9/", "api_key": "k"})
    assert local == commands.QuotaIdentity("http://127.0.0.1:9", key_fingerprint("k"))
    assert str(commands.quota_identity({}, every=True)) == "every endpoint and key"
    monkeypatch.delenv("GEMINI_API_KEY")
    assert str(commands.quota_identity({})) == "google, every key (no API key set)"


def test_limits_shows_the_identitys_and_forgets_them(tmp_path: Path, google_key: str) -> None:
    db = Database(tmp_path / "log.duckdb")
    remember(db, FLASH, 150, fingerprint=google_key)
    remember(db, FLASH, 40, metric="tpm", source="raised", fingerprint=google_key)
    remember(db, FLASH, 9, fingerprint="someone-else")
    mine = commands.quota_identity({})
    said, frame = commands.limits_action(db, mine)
    assert said == (
        f"limits remembered for google, key {google_key} (each for 7 days from when it was learned)"
    )
    assert sorted(zip(frame["metric"], frame["limit"], strict=True)) == [("rpm", 150), ("tpm", 40)]
    said, frame = commands.limits_action(db, mine, forget=FLASH)
    assert said == (
        f"forgot 2 remembered limit(s) of {FLASH} for google, key {google_key}; still remembered"
    )
    assert frame.empty
    every = commands.quota_identity({}, every=True)
    said, frame = commands.limits_action(db, every, forget_all=True)
    assert said.startswith("forgot 1 remembered limit(s) for every endpoint and key")
    assert frame.empty


def test_the_models_table_shows_the_remembered_limits_beside_the_catalogues(
    tmp_path: Path, google_key: str
) -> None:
    db = Database(tmp_path / "log.duckdb")
    remember(db, FLASH, 150, fingerprint=google_key)
    remember(db, FLASH, 20, metric="rpd", source="lowered", fingerprint=google_key)
    remember(db, "gemini-2.5-flash-lite", 99, fingerprint="someone-else")
    table = commands.models_frame(db).set_index("model")
    today = time.strftime("%Y-%m-%d")
    assert table.loc[FLASH, "learned"] == (
        f"rpd 20 (lowered: 429s without a figure, learned {today}); "
        f"rpm 150 (stated by the service, learned {today})"
    )
    assert table.loc[FLASH, "rpm"] == default_catalogue().get(FLASH).rpm  # the catalogue's
    assert table["learned"].drop(FLASH).isna().all()  # not another key's
    assert list(table.columns[:5]) == ["priority", "rpm", "tpm", "rpd", "learned"]
    assert commands.models_frame(None)["learned"].isna().all()


def test_the_models_table_shows_what_every_process_took_of_the_shared_quota(
    google_key: str, quota_ledger_in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert commands.models_frame(None)["quota_this_minute"].isna().all()  # no ledger yet
    quota = quota_identity(GOOGLE_ENDPOINT, google_key)
    now = time.time()
    ledger = LocalLedger(quota_ledger_in_tmp, quota)
    windows = windows_at(default_catalogue().get(FLASH), now, 0.3)  # Google's day
    limits: dict[Metric, int | None] = {"rpm": 10, "tpm": None, "rpd": None}
    slots = [
        ledger.admit(FLASH, now=now, tokens=50, limits=limits, windows=windows, seen=0).slot
        for _ in range(3)
    ]
    ledger.close()
    with sqlite3.connect(quota_ledger_in_tmp) as db:  # one of them came from another process
        db.execute("UPDATE slot SET process = 'elsewhere:7' WHERE id = ?", (slots[0],))
    table = commands.models_frame(None).set_index("model")
    assert table.loc[FLASH, ["quota_this_minute", "quota_today", "other_processes"]].tolist() == [
        3,
        3,
        1,
    ]
    assert (table["quota_this_minute"].drop(FLASH) == 0).all()
    monkeypatch.setenv("SCRIPTGEN_QUOTA", "off")
    assert commands.models_frame(None)["quota_this_minute"].isna().all()
