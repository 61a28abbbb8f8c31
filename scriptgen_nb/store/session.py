"""One batch's link to the call log: its cache lookups, its quota history (with the limits
remembered for its quota identity), its recorder.

`BatchSession.requests()` wraps the batch's requests: in chunks, it computes their cache keys
and (with `cache="use"`) finds earlier successful answers in one query per chunk, so a huge or
endless generator costs a bounded look-ahead. The engine calls `resolve()` as it takes each
request up: the request is written down, and a cached answer is served instead of a call.
While another process holds the log's file, a lookup waits for it for as long as the batch runs
(giving up only when it is cancelled), like the recorder's flusher. No duckdb here.
"""

from __future__ import annotations

import itertools
import math
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from ..engine.models import ModelSpec
from ..engine.policy import day_reset_delay
from ..engine.values import GenerationRequest, ModelHistory, RememberedLimit, Result
from ..engine.verdict import parse_structured
from . import keys
from .database import Database, StoreError
from .limits import remembered_limits
from .lock_wait import LockWait
from .recorder import BatchInfo, Recorder

CacheMode = Literal["use", "refresh", "off"]
CACHE_MODES = ("use", "refresh", "off")
LOOKAHEAD = 256  # requests keyed and looked up per query
QUOTA_ERRORS = ("rate_limited", "quota_exhausted")


@dataclass(frozen=True, slots=True)
class Earlier:
    """A recorded successful answer that a request with the same cache key may reuse."""

    text: str
    model: str | None
    model_version: str | None
    finish_reason: str | None


class BatchSession:
    """Cache, request log and recorder for one batch; `close()` when the batch is over."""

    def __init__(
        self,
        db: Database,
        info: BatchInfo,
        ladder: Sequence[str],
        *,
        flush_s: float = 0.25,
        wait: LockWait | None = None,
    ) -> None:
        """`wait`: how the batch waits for its log's file while another process holds it
        (the recorder's first and last writes as it says; lookups with no time limit)."""
        self.db = db
        self.info = info
        self.ladder = list(ladder)
        self.recorder = Recorder(db, info, flush_s=flush_s, wait=wait)
        self._lookup_wait = replace(wait or LockWait(), timeout_s=math.inf)
        self._keyed: deque[tuple[GenerationRequest, str, Earlier | None]] = deque()
        self._lookup_error: StoreError | None = None

    def requests(self, requests: Iterable[GenerationRequest]) -> Iterator[GenerationRequest]:
        """The same requests, keyed (and looked up in the cache) a chunk at a time."""
        source = iter(requests)
        while chunk := list(itertools.islice(source, LOOKAHEAD)):
            keyed = [(r, self._key(r)) for r in chunk]
            earlier = self._earlier([k for _, k in keyed])
            for request, key in keyed:
                self._keyed.append((request, key, earlier.get(key)))
                yield request

    def resolve(self, index: int, request: GenerationRequest) -> Result | None:
        """Write the request down; return its earlier answer when the cache has one."""
        if self._lookup_error is not None:
            raise self._lookup_error
        queued, key, earlier = self._keyed.popleft()
        if queued is not request:
            raise RuntimeError("BatchSession.resolve was called out of step with requests()")
        self.recorder.record_request(index, request, key)
        if earlier is None:
            return None
        return cached_result(index, request, earlier, simulated=self.info.simulated)

    def close(self, *, failed: bool = False) -> None:
        self.recorder.close(failed=failed)

    def unlogged(self) -> list[str]:
        """After a failed `close()`: the answered requests whose results the log lacks."""
        return self.recorder.unlogged()

    def _key(self, request: GenerationRequest) -> str:
        if self.info.cache_mode == "off":  # neither reads nor writes the cache
            return keys.uncached_key(self.info.batch_id, request.id)
        source = keys.answer_source(self.info.endpoint, self.info.simulated)
        return keys.content_key(request, self.ladder, source)

    def _earlier(self, cache_keys: list[str]) -> dict[str, Earlier]:
        """The cache's answers for a chunk. A failed lookup is raised from `resolve` (so the
        engine stops the batch), not from here: this generator must go on, so that the engine
        can mark every request it did not take up as not run."""
        if self.info.cache_mode != "use" or self._lookup_error is not None:
            return {}
        try:
            return earlier_answers(self.db, cache_keys, self._lookup_wait)
        except StoreError as exc:
            self._lookup_error = exc
            return {}


def earlier_answers(
    db: Database, cache_keys: list[str], wait: LockWait | None = None
) -> dict[str, Earlier]:
    """The newest successful recorded answer for each of `cache_keys` that has one (`wait`:
    how long to wait while another process holds the file; default: the log's own)."""
    rows = db.rows(
        "SELECT cache_key, text, model, model_version, finish_reason FROM result "
        "WHERE success AND text IS NOT NULL AND cache_key IN (SELECT unnest(?)) "
        "QUALIFY row_number() OVER (PARTITION BY cache_key ORDER BY finished_at DESC) = 1",
        [cache_keys],
        wait=wait,
    )
    return {key: Earlier(*earlier) for key, *earlier in rows}


def cached_result(
    index: int, request: GenerationRequest, earlier: Earlier, *, simulated: bool = False
) -> Result | None:
    """`request`'s result served from its earlier answer; None when that answer no longer
    fits the request's schema (the schema changed shape since: ask again). `simulated`: the
    answer came from an emulator (the batch's cache keys name one)."""
    data = None
    if request.schema is not None:
        try:
            data = parse_structured(earlier.text, request.schema)
        except ValueError:
            return None
    return Result(
        id=request.id,
        index=index,
        success=True,
        text=earlier.text,
        data=data,
        finish_reason=earlier.finish_reason,
        model=earlier.model,
        model_version=earlier.model_version,
        metadata=request.metadata,
        cached=True,
        simulated=simulated,
    )


def quota_history(
    db: Database,
    ladder: Sequence[ModelSpec],
    endpoint: str,
    key_fingerprint: str | None = None,
    *,
    now: float | None = None,
) -> dict[str, ModelHistory]:
    """What each model of `ladder` already used at `endpoint`, per the log (quota memory), and
    the limits remembered for the quota identity (`endpoint`, `key_fingerprint`).

    Requests refused with a 429 did not use quota and are left out; a per-day 429 still in
    force carries over as an exhaustion. `limits` holds, per metric, the latest limit learned
    at this identity within `limits.REMEMBER_LIMITS_S` and not forgotten; without a
    fingerprint (no key known) nothing is remembered.
    """
    now = time.time() if now is None else now
    specs = {spec.name: spec for spec in ladder}
    horizon = {n: s.day_s if s.rpd is not None else s.minute_s for n, s in specs.items()}
    rows = db.rows(
        "SELECT c.model, epoch(c.created_at), coalesce(c.input_tokens, 0), c.error_kind, "
        "c.retry_delay_s, epoch(c.finished_at) FROM ai_api_call c "
        "JOIN batch_log b USING (batch_id) WHERE b.endpoint = ? "
        "AND c.model IN (SELECT unnest(?)) AND c.created_at >= to_timestamp(?)",
        [endpoint, list(specs), now - max(horizon.values(), default=0.0)],
    )
    sent: dict[str, list[tuple[float, int]]] = {name: [] for name in specs}
    out_for: dict[str, float] = {}
    for model, sent_at, tokens, kind, retry_delay_s, finished_at in rows:
        if kind == "quota_exhausted":
            moment = datetime.fromtimestamp(finished_at).astimezone()
            until = finished_at + day_reset_delay(retry_delay_s, specs[model], moment)
            if until > now:
                out_for[model] = max(out_for.get(model, 0.0), until - now)
        elif kind not in QUOTA_ERRORS and sent_at >= now - horizon[model]:
            sent[model].append((now - sent_at, int(tokens)))
    limits: dict[str, dict[str, RememberedLimit]] = {}
    if key_fingerprint is not None:
        remembered = remembered_limits(
            db, endpoint=endpoint, key_fingerprint=key_fingerprint, models=list(specs), now=now
        )
        columns = (remembered[c] for c in ("model", "metric", "limit", "source"))
        for model, metric, limit, source in zip(*columns, strict=True):
            limits.setdefault(model, {})[metric] = RememberedLimit(int(limit), source)
    return {
        name: ModelHistory(tuple(sent[name]), out_for.get(name), limits.get(name, {}))
        for name in specs
        if sent[name] or name in out_for or name in limits
    }
