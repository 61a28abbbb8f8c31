"""Learned limits kept per quota identity: what a later batch starts from, shown and forgotten.

Every limit the engine learns (`LimitLearned`, but for "remembered" ones, which are not new
knowledge) is a `limit_learned` row stamped with the batch's quota identity: its endpoint and
the API key's fingerprint (engine/identity.py; never the key). For one identity, model and
metric, the *remembered* limit is the latest row learned within `REMEMBER_LIMITS_S` and not
forgotten. `session.quota_history` hands remembered limits to the engine
(`ModelHistory.limits`), which starts the batch from them, in this process or any other;
`CallStore.limits()` shows them and `CallStore.forget_limits()` forgets them. Forgetting marks the
rows (`forgotten_at`) instead of deleting them: they stay as the history of the batches that
learned them (`CallStore.learned_limits()`). No duckdb here.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import pandas as pd

from .database import Database

REMEMBER_LIMITS_S = 7 * 86_400.0
"""How long a learned limit stays a later batch's starting point: a week. A project's limits
change with its tier (billing, spend), seldom more often; a limit not learned again for a week is
found anew (from the catalogue's figure, then discovery) rather than trusted stale."""


def remembered_limits(
    db: Database,
    *,
    endpoint: str | None = None,
    key_fingerprint: str | None = None,
    models: Sequence[str] | None = None,
    now: float | None = None,
) -> pd.DataFrame:
    """The limits a batch at this identity would start from, one row per (endpoint, key,
    model, metric); None for `endpoint`, `key_fingerprint` or `models` means any.

    Columns: model, metric (rpm | tpm | rpd), limit, source (how it was learned:
    stated, message, lowered, recovered, raised), configured (the catalogue's figure then),
    learned_at, expires_at (learned_at + `REMEMBER_LIMITS_S`), endpoint, fingerprint, batch_id
    (the batch that learned it). `now` (seconds since the epoch) is injectable for tests.
    """
    now = time.time() if now is None else now
    where, params = _scope(endpoint, key_fingerprint, models)
    return db.frame(
        f"""
        SELECT model, metric, learned AS "limit", source, configured, learned_at,
               learned_at + to_seconds(?) AS expires_at,
               endpoint, key_fingerprint AS fingerprint, batch_id
        FROM limit_learned
        WHERE {where} AND learned_at >= to_timestamp(?)
        QUALIFY row_number() OVER (
            PARTITION BY endpoint, key_fingerprint, model, metric ORDER BY learned_at DESC) = 1
        ORDER BY endpoint, key_fingerprint, model, metric
        """,
        [REMEMBER_LIMITS_S, *params, now - REMEMBER_LIMITS_S],
    )


def forget_limits(
    db: Database,
    *,
    model: str | None = None,
    endpoint: str | None = None,
    key_fingerprint: str | None = None,
    now: float | None = None,
) -> int:
    """Forget the remembered limits in scope (None: any model, endpoint or key): no later batch
    starts from them. Returns how many (identity, model, metric) limits were remembered."""
    now = time.time() if now is None else now
    where, params = _scope(endpoint, key_fingerprint, None if model is None else [model])
    with db.write() as con:
        (remembered,) = con.execute(
            "SELECT count(DISTINCT (endpoint, key_fingerprint, model, metric)) "
            f"FROM limit_learned WHERE {where} AND learned_at >= to_timestamp(?)",
            [*params, now - REMEMBER_LIMITS_S],
        ).fetchone() or (0,)
        con.execute(
            f"UPDATE limit_learned SET forgotten_at = to_timestamp(?) WHERE {where}",
            [now, *params],
        )
    return int(remembered)


def _scope(
    endpoint: str | None, key_fingerprint: str | None, models: Sequence[str] | None
) -> tuple[str, list[Any]]:
    """The SQL condition (and its parameters) for rows that are remembered limits in scope:
    with a quota identity (rows from before migration 7 have none) and not forgotten."""
    conditions = [
        "endpoint IS NOT NULL",
        "key_fingerprint IS NOT NULL",
        "forgotten_at IS NULL",
    ]
    params: list[Any] = []
    for column, value in (("endpoint", endpoint), ("key_fingerprint", key_fingerprint)):
        if value is not None:
            conditions.append(f"{column} = ?")
            params.append(value)
    if models is not None:
        conditions.append("model IN (SELECT unnest(?))")
        params.append([m.removeprefix("models/") for m in models])
    return " AND ".join(conditions), params
