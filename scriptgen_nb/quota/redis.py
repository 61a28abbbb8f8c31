"""The quota ledger on a Redis server, for processes on many machines (the `redis` extra).

The same decisions as quota/local.py, rule for rule, made by one Lua script
(`redis_ledger.lua`, registered with redis-py's `register_script`) that runs each operation
atomically on the server in one round trip: an admission hands over news, drops what left the
windows, counts the minute and the day, weighs the contenders' shares and takes a slot or says
when to ask again, as one `BEGIN IMMEDIATE` transaction does in the SQLite file. Keys are per
quota identity under one hash tag (a Redis Cluster keeps them in one slot) and expire: the
slots a day window after the last admission, what was learned a week after, so a dead
process's data ages out and nothing lives forever in the user's Redis. Times are the client's
wall clock, passed in. Redis's errors are `QuotaLedgerError`s naming the URL without its
password. Imports `redis` only when a ledger is opened; no duckdb here.
"""

from __future__ import annotations

import hashlib
import math
import time
import uuid
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qsl, urlencode, urlsplit

from ..engine.errors import QuotaLedgerError
from ..engine.ledger import Admission, HoldState, SharedHold, SharedLimit, Windows
from ..engine.limits import METRICS, Metric
from ..engine.values import LimitSource
from .local import (
    CONTENDER_GRACE_S,
    GATHER,
    NEWS_KEPT_S,
    OTHERS_EVERY_S,
    PROCESS,
    SHARE_RECHECK,
)

if TYPE_CHECKING:
    import redis

Arg = str | int | float  # what the script is given

INSTALL = "pip install 'scriptgen_nb[redis]'"
# A ledger call blocks the batch's loop: a server that does not answer fails fast, and the
# batch paces alone (said once) rather than stalling.
CONNECT_TIMEOUT_S = 2.0
REPLY_TIMEOUT_S = 5.0

_SCRIPT = resources.files(__package__).joinpath("redis_ledger.lua").read_text(encoding="utf-8")


def redacted_url(url: str) -> str:
    """`url` without its password (in the user part, or a `password=` query), for messages."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k.lower() != "password"]
    if parts.password is None and len(query) == len(parse_qsl(parts.query)):
        return url
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{parts.username}@{host}" if parts.username else host
    text = f"{parts.scheme}://{netloc}{parts.path}"
    return text + (f"?{urlencode(query)}" if query else "")


def open_redis_ledger(url: str, quota: str) -> RedisLedger:
    """The ledger at the Redis server `url` for one quota identity (connected on first use);
    `QuotaLedgerError` when the `redis` package is not installed."""
    try:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry
    except ImportError as exc:
        raise QuotaLedgerError(
            f"the quota ledger {redacted_url(url)} needs the redis package: {INSTALL}"
        ) from exc
    client = redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=REPLY_TIMEOUT_S,
        retry=Retry(NoBackoff(), 1),  # once, at once: a connection the server dropped
    )
    return RedisLedger(client, quota, redacted_url(url))


class RedisLedger:
    """A `QuotaLedger` (engine/ledger.py) on the Redis server of `client`, for one quota
    identity; `description` says where (no password). One per batch, like `LocalLedger`.

    `client` must decode responses (`decode_responses=True`); tests pass a fakeredis one.
    """

    def __init__(self, client: redis.Redis, quota: str, description: str) -> None:
        self.quota = quota
        self.description = description
        self.owner = uuid.uuid4().hex
        self._client = client
        self._failures = _failures()
        self._script = client.register_script(_SCRIPT)
        digest = hashlib.sha256(quota.encode("utf-8")).hexdigest()[:20]
        self.key_prefix = f"scriptgen_nb:{{{digest}}}:"  # every key of this quota
        self._others = 0
        self._others_at = -math.inf
        # slot id -> (sent at, tokens), written with the next admission
        self._settled: dict[int, tuple[float, int]] = {}

    # --- the contract -------------------------------------------------------------------------

    def check(self) -> None:
        self._run("check")

    def admit(
        self,
        model: str,
        *,
        now: float,
        tokens: int,
        limits: Mapping[Metric, int | None],
        windows: Windows,
        seen: int,
        want: int = 1,
    ) -> Admission:
        count = now - self._others_at >= OTHERS_EVERY_S
        reply = self._run(
            "admit",
            model,
            repr(now),
            tokens,
            *(_limit(limits.get(metric)) for metric in METRICS),
            repr(windows.minute_s),
            repr(windows.margin_s),
            repr(windows.day_from),
            repr(windows.day_ends) if math.isfinite(windows.day_ends) else "",
            seen,
            self.owner,
            PROCESS,
            int(count),
            repr(NEWS_KEPT_S),
            repr(CONTENDER_GRACE_S),
            repr(SHARE_RECHECK),
            want,
            repr(GATHER),
            *self._take_settled(),
        )
        kind, others, *rest = reply
        if int(others) >= 0:
            self._others, self._others_at = int(others), now
        if kind == "news":
            version, *items = rest
            return Admission(None, news=_news(items), version=int(version), others=self._others)
        if kind == "held":
            return Admission(None, wait_s=float(rest[0]), version=seen, others=self._others)
        wait, metric, needed, *ids = rest  # refused; or granted, with the rest's wait if short
        slot, *more = (int(value) for value in ids) if kind == "slot" else (None,)
        return Admission(
            slot,
            more=tuple(more),
            wait_s=float(wait),
            metric=metric or None,
            needed=int(needed),
            version=seen,
            others=self._others,
        )

    def settle(self, slot: int, *, at: float, tokens: int) -> None:
        self._settled[slot] = (at, tokens)  # written with the next admission, flush or close

    def flush(self) -> None:
        if self._settled:
            self._run("settle", *self._take_settled())

    def forget(self, slot: int) -> None:
        self._run("forget", slot)

    def learn(self, model: str, metric: Metric, value: int, source: LimitSource) -> int:
        return self._publish(model, metric, float(value), source)

    def hold(self, model: str, state: HoldState, until: float) -> int:
        return self._publish(model, "hold", until, state)

    def close(self) -> None:
        try:
            self._run("close", self.owner, *self._take_settled())
        except QuotaLedgerError:
            pass  # leaving: token counts are estimates, and a contender left behind lapses
        finally:
            self._client.close()

    # --- reading (for `%scriptgen models`) -----------------------------------------------------

    def usage(self, model: str, *, now: float, windows: Windows) -> tuple[int, int, int, int]:
        """(requests this minute, input tokens this minute, requests today, other processes)
        for `model`, as every process together has used it."""
        reply = self._run(
            "usage",
            model,
            repr(now),
            repr(windows.minute_s),
            repr(windows.margin_s),
            repr(windows.day_from),
            repr(windows.day_ends) if math.isfinite(windows.day_ends) else "",
            PROCESS,
        )
        count, tokens, day, others = (int(value) for value in reply)
        return count, tokens, day, others

    # --- internals ----------------------------------------------------------------------------

    def _run(self, operation: str, *args: Arg) -> Any:
        """One operation of the script, atomically on the server; any Redis failure is a
        `QuotaLedgerError` saying where (never the password)."""
        try:
            # One key named, so a cluster client sends the script to the node of the quota's slot.
            return self._script(
                keys=[self.key_prefix + "ids"], args=[operation, self.key_prefix, *args]
            )
        except self._failures as exc:
            raise QuotaLedgerError(f"the quota ledger {self.description} failed: {exc}") from exc

    def _take_settled(self) -> list[Arg]:
        """The slots settled since the last admission, as the script's (id, at, tokens)."""
        settled: list[Arg] = [
            value
            for slot, (at, tokens) in self._settled.items()
            for value in (slot, repr(at), tokens)
        ]
        self._settled.clear()
        return settled

    def _publish(self, model: str, kind: str, value: float, source: str) -> int:
        """Record news (a limit, or a hold that only ever lengthens) under a new version."""
        return int(
            self._run(
                "publish", model, kind, repr(value), source, repr(time.time()), repr(NEWS_KEPT_S)
            )
        )


def _limit(value: int | None) -> Arg:
    """A limit as the script takes it: "" when not limited."""
    return "" if value is None else value


def _failures() -> tuple[type[Exception], ...]:
    """What a call to the server raises when it fails (connection, auth, timeout, script)."""
    import redis

    return (redis.RedisError, OSError)


def _news(items: Sequence[str]) -> tuple[SharedLimit | SharedHold, ...]:
    """The script's news items (model, kind, value, source, version each) as the contract's."""
    news: list[SharedLimit | SharedHold] = []
    for i in range(0, len(items), 5):
        model, kind, value, source, version = items[i : i + 5]
        if kind == "hold":
            state = cast(HoldState, source)
            news.append(SharedHold(model, state, float(value), int(version)))
        else:
            metric, learned_by = cast(Metric, kind), cast(LimitSource, source)
            news.append(SharedLimit(model, metric, int(float(value)), learned_by, int(version)))
    return tuple(news)
