"""The quota ledger on Redis (quota/redis.py) beyond the contract tests it shares with the SQLite
one (tests/test_quota_ledger.py runs those on both): the two make the same decisions on the same
operations, its keys stay together and age out, and a server that cannot be used says so
without the URL's password.
"""

from __future__ import annotations

import math
import random
import sys
import tempfile
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scriptgen_nb.engine.ledger import Admission, QuotaLedger, Windows
from scriptgen_nb.engine.limits import METRICS
from scriptgen_nb.quota import LocalLedger, open_ledger
from scriptgen_nb.quota.redis import RedisLedger, open_redis_ledger, redacted_url

QUOTA = "http://127.0.0.1:1#abc 0123456789abcdef"
T0 = 1_000_000.0
MINUTE_S, MARGIN_S = 10.0, 0.25
SLIDING_DAY_S = 120.0  # model "a": a compressed day that slides
GOOGLE_DAY_S = 300.0  # model "b": days that start and end together, like Google's
MODELS = ("a", "b")
BATCHES = 3


def windows(model: str, now: float) -> Windows:
    if model == "a":
        return Windows(MINUTE_S, MARGIN_S, now - SLIDING_DAY_S - MARGIN_S, math.inf)
    day_from = math.floor(now / GOOGLE_DAY_S) * GOOGLE_DAY_S
    return Windows(MINUTE_S, MARGIN_S, day_from, day_from + GOOGLE_DAY_S)


def fake_ledgers(n: int) -> list[QuotaLedger]:
    server = fakeredis.FakeServer()
    return [
        RedisLedger(fakeredis.FakeRedis(server=server, decode_responses=True), QUOTA, "fake")
        for _ in range(n)
    ]


# --- the same answers as the SQLite ledger ------------------------------------------------------

limit = st.one_of(st.none(), st.integers(0, 8))
limits = st.tuples(limit, st.one_of(st.none(), st.integers(50, 400)), limit)
admission = st.tuples(
    st.just("admit"),
    st.integers(0, BATCHES - 1),
    st.sampled_from(MODELS),
    st.integers(1, 120),  # input tokens
    st.one_of(st.none(), limits),  # None: the model's own (most of the time, as in a batch)
    st.one_of(st.just(1), st.integers(1, 5)),  # slots wanted: a burst's, now and then
)
others = st.one_of(
    st.tuples(st.just("settle"), st.integers(0, BATCHES - 1), st.integers(0, 40), st.floats(-2, 3)),
    st.tuples(st.just("forget"), st.integers(0, BATCHES - 1), st.integers(0, 40)),
    st.tuples(st.just("flush"), st.integers(0, BATCHES - 1)),
    st.tuples(
        st.just("learn"),
        st.integers(0, BATCHES - 1),
        st.sampled_from(MODELS),
        st.sampled_from(METRICS),
        st.integers(0, 10),
    ),
    st.tuples(
        st.just("hold"),
        st.integers(0, BATCHES - 1),
        st.sampled_from(MODELS),
        st.sampled_from(["parked", "backing_off", "exhausted"]),
        st.floats(-5, 40),
    ),
    st.tuples(st.just("close"), st.integers(0, BATCHES - 1)),
    st.tuples(st.just("usage"), st.sampled_from(MODELS)),
)
# Mostly admissions, as in a batch.
operation = st.integers(0, 9).flatmap(lambda n: admission if n < 7 else others)
# Time between two operations: often none (a burst), else a moment or most of a window.
step = st.one_of(st.just(0.0), st.floats(0, 0.5), st.floats(0, 3 * MINUTE_S))


@dataclass
class Batch:
    """What one batch knows: the newest version it adopted, and its slots not forgotten."""

    seen: int = 0
    slots: list[int] = field(default_factory=list)


def play(
    ledgers: list[QuotaLedger],
    own: dict[str, tuple[int | None, ...]],
    script: list[tuple[float, tuple[Any, ...]]],
) -> list[Any]:
    """Run `script` ((time step, operation) pairs) on `ledgers` (batches of one store), as the
    engine would: adopting news, settling and forgetting only its own slots; every answer.
    An admission without limits of its own takes its model's (`own`)."""
    batches = [Batch() for _ in ledgers]
    answers: list[Any] = []
    now = T0
    for dt, (kind, *args) in script:
        now += dt
        if kind == "usage":
            (model,) = args
            answers.append(ledgers[0].usage(model, now=now, windows=windows(model, now)))
            continue
        batch, ledger = batches[args[0]], ledgers[args[0]]
        if kind == "admit":
            _, model, tokens, asked, want = args
            rpm, tpm, rpd = own[model] if asked is None else asked
            answer: Any = ledger.admit(
                model,
                now=now,
                tokens=tokens,
                limits={"rpm": rpm, "tpm": tpm, "rpd": rpd},
                windows=windows(model, now),
                seen=batch.seen,
                want=want,
            )
            assert isinstance(answer, Admission)
            batch.seen = max(batch.seen, answer.version)
            if answer.slot is not None:
                batch.slots.extend((answer.slot, *answer.more))
        elif kind in ("settle", "forget"):
            if not batch.slots:
                continue
            slot = batch.slots[-1 - args[1] % min(len(batch.slots), 4)]  # one in flight
            if kind == "settle":
                answer = ledger.settle(slot, at=now + args[2], tokens=args[1] * 7)
            else:
                batch.slots.remove(slot)
                answer = ledger.forget(slot)
        elif kind == "flush":
            answer = ledger.flush()
        elif kind == "learn":
            answer = ledger.learn(args[1], args[2], args[3], "stated")
        elif kind == "hold":
            answer = ledger.hold(args[1], args[2], now + args[3])
        else:
            answer = ledger.close()
        answers.append(answer)
    return answers


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.fixed_dictionaries(
        {model: st.tuples(st.integers(1, 6), st.none(), limit) for model in MODELS}
    ),
    st.lists(st.tuples(step, operation), min_size=20, max_size=100),
)
def test_redis_and_sqlite_give_the_same_answers(
    own: dict[str, tuple[int | None, ...]], script: list[tuple[float, Any]]
) -> None:
    """Any sequence of operations from several batches gets exactly the same answers (slot
    ids, waits to the last bit, news, usage) from both ledgers: they must not drift."""
    with tempfile.TemporaryDirectory() as folder:
        local = [LocalLedger(Path(folder) / "quota.sqlite", QUOTA) for _ in range(BATCHES)]
        on_redis = fake_ledgers(BATCHES)
        try:
            assert play(on_redis, own, script) == play(local, own, script)
        finally:
            for one in (*local, *on_redis):
                one.close()


def long_script(seed: int, n: int) -> list[tuple[float, tuple[Any, ...]]]:
    """`n` operations drawn with `seed`: three batches that mostly admit, a moment apart (now
    and then a pause, so contenders lapse), so windows fill, contenders wait and shares bind
    (states a short example rarely reaches)."""
    pick = random.Random(seed)
    script: list[tuple[float, tuple[Any, ...]]] = []
    for _ in range(n):
        batch, model = pick.randrange(BATCHES), pick.choice(MODELS)
        roll = pick.random()
        if roll < 0.8:
            want = pick.randint(1, 4) if pick.random() < 0.2 else 1
            op: tuple[Any, ...] = ("admit", batch, model, pick.randint(1, 120), None, want)
        elif roll < 0.88:
            op = ("settle", batch, pick.randrange(40), pick.uniform(-2, 2))
        elif roll < 0.9:
            op = ("flush", batch)
        elif roll < 0.95:
            op = ("forget", batch, pick.randrange(40))
        elif roll < 0.97:
            op = ("hold", batch, model, "parked", pick.uniform(0, 5))
        elif roll < 0.98:
            op = ("learn", batch, model, "rpm", pick.randint(3, 8))
        else:
            op = ("close", batch)
        pause = pick.uniform(5, 15) if pick.random() < 0.03 else pick.expovariate(4.0)
        script.append((pause, op))
    return script


@pytest.mark.parametrize("seed", [1, 2])
def test_a_long_contended_run_gets_the_same_answers(seed: int) -> None:
    """Thousands of operations, deterministic: the seeded companion of the test above."""
    own: dict[str, tuple[int | None, ...]] = {"a": (6, 600, None), "b": (4, None, 40)}
    script = long_script(seed, 1500)
    with tempfile.TemporaryDirectory() as folder:
        local = [LocalLedger(Path(folder) / "quota.sqlite", QUOTA) for _ in range(BATCHES)]
        on_redis = fake_ledgers(BATCHES)
        try:
            expected = play(local, own, script)
            shares = sum(
                isinstance(a, Admission) and a.wait_s > 0 and a.metric is None for a in expected
            )
            assert shares > 20  # the run reaches the contenders' rule, not only full windows
            assert play(on_redis, own, script) == expected
        finally:
            for one in (*local, *on_redis):
                one.close()


# --- keys: one hash tag per quota, and every one expires -----------------------------------


@pytest.fixture(params=["fakeredis", "redis"])
def client(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A Redis client (fakeredis, or the session's real server emptied) for a test's ledgers."""
    if request.param == "redis":
        import redis

        made: Any = redis.Redis.from_url(
            request.getfixturevalue("empty_redis"), decode_responses=True
        )
    else:
        made = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    with closing(made):
        yield made


def test_a_quotas_keys_share_one_hash_tag_and_all_expire(client: Any) -> None:
    """A Redis Cluster keeps one quota's keys in one slot (one hash tag), and nothing lives on
    in the user's Redis: the slots go a day window after the last admission, what was learned
    a week after."""
    ledger = RedisLedger(client, QUOTA, "here")
    other = RedisLedger(client, "another quota", "here")
    limits = {"rpm": 1, "tpm": 1000, "rpd": 5}
    for model in MODELS:
        slot = ledger.admit(
            model, now=T0, tokens=5, limits=limits, windows=windows(model, T0), seen=0
        )
        assert slot.slot is not None
        ledger.settle(slot.slot, at=T0 + 1, tokens=3)
        ledger.admit(model, now=T0 + 1, tokens=5, limits=limits, windows=windows(model, T0), seen=0)
    ledger.learn("a", "rpm", 2, "stated")
    ledger.hold("b", "parked", T0 + 5)
    other.admit("a", now=T0, tokens=5, limits=limits, windows=windows("a", T0), seen=0)
    keys = client.keys("*")
    tags = {key.partition("{")[2].partition("}")[0] for key in keys}
    assert len(tags) == 2 and all(key.startswith("scriptgen_nb:{") for key in keys)
    assert all(client.ttl(key) > 0 for key in keys), {key: client.ttl(key) for key in keys}
    mine = [key for key in keys if key.startswith(ledger.key_prefix)]
    ttls = {key.removeprefix(ledger.key_prefix): client.ttl(key) for key in mine}
    # The longest day window among the models asked about (Google's), and a minute's slack.
    assert 0 < ttls["at:b"] <= GOOGLE_DAY_S + 60 and ttls["slot"] >= ttls["at:b"]
    assert 7 * 86_400 - 10 < ttls["news"] <= 7 * 86_400


# --- a server that cannot be used --------------------------------------------------------------


def closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # closed again: nothing listens there


def test_urls_are_told_without_their_password() -> None:
    assert redacted_url("redis://me:s3cret@host:6379/0") == "redis://me@host:6379/0"
    assert redacted_url("rediss://:s3cret@host:6380/2") == "rediss://host:6380/2"
    assert redacted_url("unix:///run/redis.sock?db=1&password=s3cret") == (
        "unix:///run/redis.sock?db=1"
    )
    assert redacted_url("redis://host:6379/0") == "redis://host:6379/0"
    ledger = open_redis_ledger("redis://:s3cret@host:6379/0", QUOTA)
    assert ledger.description == "redis://host:6379/0"


def test_a_server_that_is_not_there_makes_batches_pace_alone_said_once() -> None:
    url = f"redis://:s3cret@127.0.0.1:{closed_port()}/0"
    ledger, notice = open_ledger(url, "e", "f")
    assert ledger is None and notice is not None
    assert "paces alone" in notice and "s3cret" not in notice
    assert f"the quota ledger {redacted_url(url)} failed" in notice
    assert "Connection refused; each batch paces alone" in notice  # one sentence, no ".;"
    assert "a Redis server that answers" in notice
    assert open_ledger(url, "e", "f") == (None, None)  # said once per process


def test_a_wrong_password_is_told_without_it(empty_redis: str) -> None:
    """The server answers, but refuses the password: the error is Redis's, and the notice
    names the URL without the password."""
    import redis

    admin = redis.Redis.from_url(empty_redis)
    admin.acl_setuser("scriptgen", enabled=True, passwords=["+the-password"], commands=["+@all"])
    try:
        url = empty_redis.replace("redis://", "redis://scriptgen:not-the-password@")
        ledger, notice = open_ledger(url, "e", "g")
        assert ledger is None and notice is not None, "the wrong password was let in"
        assert "not-the-password" not in notice
        assert empty_redis.replace("redis://", "redis://scriptgen@") in notice
    finally:
        admin.acl_deluser("scriptgen")
        admin.close()


def test_without_the_redis_package_the_notice_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)  # `import redis` raises ImportError
    ledger, notice = open_ledger("redis://127.0.0.1:1/0", "e", "h")
    assert ledger is None and notice is not None
    assert "pip install 'scriptgen_nb[redis]'" in notice and "paces alone" in notice


def test_a_server_lost_mid_batch_is_a_ledger_error_naming_it() -> None:
    from scriptgen_nb.engine.errors import QuotaLedgerError

    url = f"redis://:s3cret@127.0.0.1:{closed_port()}/0"
    ledger = open_redis_ledger(url, QUOTA)
    with pytest.raises(QuotaLedgerError, match=r"redis://127\.0\.0\.1:\d+/0 failed") as caught:
        ledger.admit("a", now=T0, tokens=1, limits={"rpm": 1}, windows=windows("a", T0), seen=0)
    assert "s3cret" not in str(caught.value)
    ledger.close()  # never raises
