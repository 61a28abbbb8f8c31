"""Hand-made call-log rows for the query and CLI tests, with figures worked out by hand.

Two finished batches an hour apart on two models: chapter scripts (`b-script`: four requests,
two 429s, a 500 and one request that fails with a 400) and image prompts (`b-images`: three
requests, one 429). The comments give each attempt's outcome and when it ended.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from scriptgen_nb.store import Database

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
FLASH = "gemini-2.5-flash"
LITE = "gemini-2.0-flash-lite"
SCRIPT = "GENERATE_SCRIPT"
IMAGES = "GENERATE_IMAGE_PROMPTS"

# (request, attempt, model, error kind, HTTP status, input, output, thoughts, cost,
#  seconds after the batch's start when sent, latency ms)
Call = tuple[
    str, int, str, str | None, int, int | None, int | None, int | None, float, float, float
]
SCRIPT_CALLS: list[Call] = [
    ("r0", 1, FLASH, None, 200, 100, 200, 10, 0.0010, 0.0, 1000),  # ok, ends 1.0
    ("r1", 1, FLASH, "rate_limited", 429, None, None, None, 0.0, 0.9, 200),  # ends 1.1
    ("r1", 2, LITE, None, 200, 120, 180, 0, 0.0002, 2.0, 800),  # ok, ends 2.8
    ("r2", 1, FLASH, "quota_exhausted", 429, None, None, None, 0.0, 3.0, 100),  # ends 3.1
    ("r2", 2, LITE, None, 200, 90, 150, 0, 0.0001, 4.0, 600),  # ok, ends 4.6
    ("r3", 1, LITE, "server_error", 500, None, None, None, 0.0, 5.0, 500),  # ends 5.5
    ("r3", 2, LITE, "invalid_request", 400, None, None, None, 0.0, 6.0, 200),  # ends 6.2
]
IMAGE_CALLS: list[Call] = [
    ("p0", 1, FLASH, None, 200, 50, 80, 20, 0.0004, 0.0, 2000),  # ok, ends 2.0
    ("p1", 1, FLASH, None, 200, 60, 90, 0, 0.0003, 0.5, 1500),  # ok, ends 2.0
    ("p2", 1, FLASH, "rate_limited", 429, None, None, None, 0.0, 1.0, 100),  # ends 1.1
    ("p2", 2, LITE, None, 200, 40, 60, 0, 0.00005, 2.5, 700),  # ok, ends 3.2
]


def insert(db: Database, table: str, rows: list[dict[str, Any]]) -> None:
    """Insert rows (dicts with the same keys) into one of the log's tables."""
    columns = list(rows[0])
    marks = ", ".join("?" for _ in columns)
    with db.write() as con:
        con.executemany(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})",
            [[row[c] for c in columns] for row in rows],
        )


def batch_row(batch_id: str, **fields: Any) -> dict[str, Any]:
    """A `batch_log` row; `fields` override the defaults (a finished batch at T0)."""
    return {
        "batch_id": batch_id,
        "operation": SCRIPT,
        "project_id": None,
        "mode": "live",
        "status": "finished",
        "request_count": 0,
        "success_count": 0,
        "failure_count": 0,
        "not_run_count": 0,
        "cached_count": 0,
        "concurrency_strategy": "auto",
        "concurrency_value": 8,
        "models": [FLASH, LITE],
        "models_used": [FLASH, LITE],
        "estimated_cost": 0.0,
        "pid": 4242,
        "hostname": "build-host-elsewhere",
        "started_at": T0,
        "heartbeat_at": T0,
        "finished_at": None,
        "duration_ms": None,
        **fields,
    }


def call_rows(
    batch_id: str, operation: str, project_id: str, start: datetime, calls: list[Call]
) -> list[dict[str, Any]]:
    """`ai_api_call` rows for one batch's attempts."""
    order = {request: i for i, request in enumerate(dict.fromkeys(c[0] for c in calls))}
    rows = []
    for request, attempt, model, kind, http, tin, tout, thought, cost, sent_s, ms in calls:
        created = start + timedelta(seconds=sent_s)
        rows.append(
            {
                "call_id": f"{batch_id}/{request}/{attempt}",
                "batch_id": batch_id,
                "request_id": request,
                "request_index": order[request],
                "operation": operation,
                "project_id": project_id,
                "model": model,
                "attempt": attempt,
                "status": "ERROR" if kind else "SUCCESS",
                "http_status": http,
                "error_kind": kind,
                "error_message": f"{kind} from {model} at {sent_s}s" if kind else None,
                "finish_reason": None if kind else "STOP",
                "input_tokens": tin,
                "output_tokens": tout,
                "thought_tokens": thought,
                "estimated_cost": cost,
                "latency_ms": ms,
                "queue_ms": 5.0,
                "created_at": created,
                "finished_at": created + timedelta(milliseconds=ms),
            }
        )
    return rows


def result_rows(batch_id: str, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`result` rows: each request's last attempt decides; cost and tokens of all attempts."""
    results: dict[str, dict[str, Any]] = {}
    for call in calls:
        prior = results.get(call["request_id"])
        billed = prior["estimated_cost"] if prior else 0.0
        results[call["request_id"]] = {
            "batch_id": batch_id,
            "request_id": call["request_id"],
            "request_index": call["request_index"],
            "cache_key": f"key-{call['request_id']}",
            "success": call["status"] == "SUCCESS",
            "cached": False,
            "text": f"text of {call['request_id']}" if call["status"] == "SUCCESS" else None,
            "error_kind": call["error_kind"],
            "error_message": call["error_message"],
            "model": call["model"],
            "attempts": call["attempt"],
            "estimated_cost": billed + call["estimated_cost"],
            "finished_at": call["finished_at"],
        }
    return list(results.values())


def fill(db: Database) -> None:
    """The two finished batches, their attempts and the scripts batch's results."""
    script = call_rows("b-script", SCRIPT, "doc", T0, SCRIPT_CALLS)
    images = call_rows("b-images", IMAGES, "art", T0 + HOUR, IMAGE_CALLS)
    insert(
        db,
        "batch_log",
        [
            batch_row(
                "b-script",
                project_id="doc",
                request_count=4,
                success_count=3,
                failure_count=1,
                estimated_cost=0.0013,
                input_tokens=310,
                output_tokens=530,
                thought_tokens=10,
                heartbeat_at=T0 + timedelta(seconds=6),
                finished_at=T0 + timedelta(seconds=7),
                duration_ms=7000.0,
            ),
            batch_row(
                "b-images",
                operation=IMAGES,
                project_id="art",
                request_count=3,
                success_count=3,
                estimated_cost=0.00075,
                input_tokens=150,
                output_tokens=230,
                thought_tokens=20,
                started_at=T0 + HOUR,
                heartbeat_at=T0 + HOUR + timedelta(seconds=3),
                finished_at=T0 + HOUR + timedelta(seconds=4),
                duration_ms=3500.0,
            ),
        ],
    )
    insert(db, "ai_api_call", script + images)
    # Stored out of order: results() must sort by request_index.
    insert(db, "result", list(reversed(result_rows("b-script", script))))


def remember(
    db: Database,
    model: str,
    limit: int,
    *,
    metric: str = "rpm",
    source: str = "stated",
    configured: int | None = 5,
    endpoint: str = "google",
    fingerprint: str = "fp",
    learned_at: float | None = None,
) -> None:
    """A limit learned now (or at `learned_at`, seconds since the epoch) for a quota identity."""
    row = {
        "batch_id": "b-learned",
        "model": model,
        "metric": metric,
        "configured": configured,
        "learned": limit,
        "learned_at": datetime.fromtimestamp(
            time.time() if learned_at is None else learned_at, UTC
        ),
        "source": source,
        "endpoint": endpoint,
        "key_fingerprint": fingerprint,
    }
    insert(db, "limit_learned", [row])
