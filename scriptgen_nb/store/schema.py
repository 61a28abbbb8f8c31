"""The call log's schema, as an append-only list of migrations.

Each migration is applied once, in order, and recorded in `schema_migration`, so a fresh file
and an old one reach the same schema the same way. Never edit a migration that has shipped:
append a new one. Table names are snake_case versions of the seed's (`AIAPICall` ->
`ai_api_call`, `batchLog` -> `batch_log`). This module holds SQL (and builds some); it imports
nothing.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


MIGRATIONS: list[Migration] = []
migration = MIGRATIONS.append


def _rebuilt_without_keys(table: str, *not_null: str) -> str:
    """SQL rebuilding `table` without its primary key (DuckDB cannot drop one), rows and column
    types kept (CREATE TABLE AS keeps types, not constraints: NOT NULL is set again)."""
    required = "".join(f"ALTER TABLE {table} ALTER COLUMN {c} SET NOT NULL;\n" for c in not_null)
    return (
        f"CREATE TABLE {table}_rebuilt AS SELECT * FROM {table};\n"
        f"DROP TABLE {table};\n"
        f"ALTER TABLE {table}_rebuilt RENAME TO {table};\n" + required
    )


migration(
    Migration(
        1,
        "call log: batches, requests, attempts, results",
        """
CREATE TABLE batch_log (
    batch_id             VARCHAR PRIMARY KEY,
    operation            VARCHAR,   -- the batch's operation (seed: operation)
    project_id           VARCHAR,
    mode                 VARCHAR,   -- live | batch_api
    status               VARCHAR,   -- running | finished | cancelled | failed
    request_count        INTEGER,   -- NULL while a generator's length is unknown
    success_count        INTEGER DEFAULT 0,
    failure_count        INTEGER DEFAULT 0,
    not_run_count        INTEGER DEFAULT 0,
    cached_count         INTEGER DEFAULT 0,
    concurrency_strategy VARCHAR,   -- auto | fixed | seed
    concurrency_value    INTEGER,   -- the in-flight cap
    models               VARCHAR[], -- the ladder, in preference order
    models_used          VARCHAR[],
    input_tokens         BIGINT DEFAULT 0,
    output_tokens        BIGINT DEFAULT 0,
    thought_tokens       BIGINT DEFAULT 0,
    estimated_cost       DOUBLE DEFAULT 0,
    endpoint             VARCHAR,   -- "google" or the emulator's base URL
    cache_mode           VARCHAR,   -- use | refresh | off
    store_text           BOOLEAN,
    package_version      VARCHAR,
    sdk_version          VARCHAR,
    pid                  INTEGER,
    hostname             VARCHAR,
    started_at           TIMESTAMPTZ,
    heartbeat_at         TIMESTAMPTZ,
    finished_at          TIMESTAMPTZ,
    duration_ms          DOUBLE
);

CREATE TABLE request (
    batch_id        VARCHAR NOT NULL,
    request_id      VARCHAR NOT NULL,
    request_index   INTEGER NOT NULL,
    cache_key       VARCHAR NOT NULL,
    operation       VARCHAR,
    project_id      VARCHAR,
    prompt          VARCHAR,   -- NULL when text is not stored (privacy)
    prompt_hash     VARCHAR NOT NULL,
    system          VARCHAR,
    config          JSON,      -- generation settings, pinned model, metadata
    response_schema JSON,      -- as JSON Schema
    schema_name     VARCHAR,   -- the Pydantic class, module:qualname, when one was given
    template_hash   VARCHAR,
    PRIMARY KEY (batch_id, request_id)
);

CREATE TABLE ai_api_call (
    call_id         VARCHAR PRIMARY KEY,   -- batch_id/request_id/attempt
    batch_id        VARCHAR NOT NULL,
    request_id      VARCHAR NOT NULL,
    request_index   INTEGER,
    operation       VARCHAR,
    project_id      VARCHAR,
    model           VARCHAR,
    attempt         INTEGER,
    status          VARCHAR,   -- SUCCESS | ERROR
    http_status     INTEGER,
    error_kind      VARCHAR,
    error_message   VARCHAR,
    finish_reason   VARCHAR,
    model_version   VARCHAR,
    input_tokens    INTEGER,
    output_tokens   INTEGER,
    thought_tokens  INTEGER,
    estimated_cost  DOUBLE,
    latency_ms      DOUBLE,
    queue_ms        DOUBLE,
    retry_delay_s   DOUBLE,
    template_hash   VARCHAR,
    package_version VARCHAR,
    sdk_version     VARCHAR,
    created_at      TIMESTAMPTZ,
    finished_at     TIMESTAMPTZ
);

CREATE TABLE result (
    batch_id       VARCHAR NOT NULL,
    request_id     VARCHAR NOT NULL,
    request_index  INTEGER NOT NULL,
    cache_key      VARCHAR NOT NULL,
    success        BOOLEAN NOT NULL,
    cached         BOOLEAN NOT NULL,
    text           VARCHAR,   -- NULL when text is not stored (privacy)
    text_hash      VARCHAR,
    data           JSON,
    error_kind     VARCHAR,
    error_message  VARCHAR,
    finish_reason  VARCHAR,
    model          VARCHAR,
    model_version  VARCHAR,
    attempts       INTEGER,
    input_tokens   INTEGER,
    output_tokens  INTEGER,
    thought_tokens INTEGER,
    estimated_cost DOUBLE,
    latency_ms     DOUBLE,
    queue_ms       DOUBLE,
    finished_at    TIMESTAMPTZ,
    PRIMARY KEY (batch_id, request_id)
);

CREATE INDEX result_by_cache_key ON result (cache_key);
CREATE INDEX call_by_model_time ON ai_api_call (model, created_at);
""",
    )
)

migration(
    Migration(
        2,
        "projects: chapters, script versions, image prompts",
        """
CREATE TABLE project (
    project_id      VARCHAR PRIMARY KEY,
    title           VARCHAR NOT NULL,
    premise         VARCHAR,   -- the topic the chapters develop
    audience        VARCHAR,
    style           VARCHAR,
    language        VARCHAR,
    target_length_s INTEGER,   -- the target length of each chapter's video
    created_at      TIMESTAMPTZ
);

CREATE TABLE chapter (
    project_id VARCHAR NOT NULL,
    number     INTEGER NOT NULL,
    title      VARCHAR NOT NULL,
    summary    VARCHAR,
    PRIMARY KEY (project_id, number)
);

CREATE TABLE script_version (
    project_id VARCHAR NOT NULL,
    chapter    INTEGER NOT NULL,
    version    INTEGER NOT NULL,   -- 1, 2, ... per chapter; the highest is current
    script     JSON NOT NULL,      -- title, scenes, estimated duration, word count
    batch_id   VARCHAR,            -- the call that produced it (batch_log, request, result)
    request_id VARCHAR,
    created_at TIMESTAMPTZ,
    PRIMARY KEY (project_id, chapter, version)
);

CREATE TABLE image_prompt (
    project_id      VARCHAR NOT NULL,
    chapter         INTEGER NOT NULL,
    script_version  INTEGER NOT NULL,   -- the script version whose scenes they illustrate
    scene           INTEGER NOT NULL,   -- 1-based, in the script's order
    prompt          VARCHAR NOT NULL,
    style           VARCHAR,
    aspect_ratio    VARCHAR,
    negative_prompt VARCHAR,
    batch_id        VARCHAR,
    request_id      VARCHAR,
    created_at      TIMESTAMPTZ,
    PRIMARY KEY (project_id, chapter, script_version, scene)
);
""",
    )
)

migration(
    Migration(
        3,
        "limits the engine learned from 429s",
        """
CREATE TABLE limit_learned (
    batch_id   VARCHAR NOT NULL,
    model      VARCHAR NOT NULL,
    metric     VARCHAR NOT NULL,   -- rpm | tpm | rpd
    configured INTEGER,            -- the catalogue's figure (NULL when it had none)
    learned    INTEGER NOT NULL,   -- what the engine now keeps to
    learned_at TIMESTAMPTZ NOT NULL
);
""",
    )
)

migration(
    Migration(
        4,
        "Batch API jobs: the intent before the call, the job after it, ingestion once",
        """
CREATE TABLE batch_job (
    job_key       VARCHAR PRIMARY KEY,   -- client key: sha256(batch_id/chunk), in the display name
    batch_id      VARCHAR NOT NULL,      -- the batch_log row its results belong to
    chunk         INTEGER NOT NULL,      -- 0, 1, ... within the batch
    display_name  VARCHAR NOT NULL,      -- what batches.list shows: scriptgen-<job_key>
    job_name      VARCHAR,               -- batches/...; NULL until the service answered create
    model         VARCHAR NOT NULL,
    model_spec    JSON NOT NULL,         -- the ModelSpec whose batch price bills the answers
    endpoint      VARCHAR NOT NULL,      -- "google" or the emulator's base URL
    input_mode    VARCHAR NOT NULL,      -- inline | file
    input_file    VARCHAR,               -- files/... of an uploaded JSONL input
    input_bytes   BIGINT,
    state         VARCHAR NOT NULL,      -- intent, then JOB_STATE_PENDING/RUNNING/SUCCEEDED/...
    request_ids   VARCHAR[] NOT NULL,    -- in submission order
    request_count INTEGER NOT NULL,
    intent_at     TIMESTAMPTZ NOT NULL,  -- written before batches.create was called
    submitted_at  TIMESTAMPTZ,           -- the service's createTime (else when it answered)
    finished_at   TIMESTAMPTZ,           -- the service's endTime (else when we saw it end)
    turnaround_s  DOUBLE,                -- create -> done, measured
    checked_at    TIMESTAMPTZ,           -- the last poll
    ingested      BOOLEAN NOT NULL DEFAULT false,
    ingested_at   TIMESTAMPTZ,
    matched_by    VARCHAR,               -- key | position | mixed: how answers met requests
    error         VARCHAR                -- why the job (not a row) failed
);

CREATE INDEX batch_job_by_batch ON batch_job (batch_id);
""",
    )
)

migration(
    Migration(
        5,
        "the log's big tables without primary keys; one index, on result.cache_key",
        # DuckDB keeps an ART index whole in memory while it checkpoints, and the log checkpoints
        # every flush: the primary keys of request / ai_api_call / result and the model-time
        # index grew the writer's peak memory with every row ever logged and made each flush
        # slower. Their keys are unique by construction (the engine ends each request once and
        # numbers its attempts); the time filters use DuckDB's zone maps. DuckDB cannot drop a
        # primary key, so each table is rebuilt (CREATE TABLE AS keeps types, not NOT NULL).
        "DROP INDEX call_by_model_time;\nDROP INDEX result_by_cache_key;\n"
        + _rebuilt_without_keys(
            "request", "batch_id", "request_id", "request_index", "cache_key", "prompt_hash"
        )
        + _rebuilt_without_keys("ai_api_call", "call_id", "batch_id", "request_id")
        + _rebuilt_without_keys(
            "result", "batch_id", "request_id", "request_index", "cache_key", "success", "cached"
        )
        + "CREATE INDEX result_by_cache_key ON result (cache_key);\n",
    )
)

migration(
    Migration(
        6,
        "cost as billed: cached input tokens, unknown prices, notices about the ladder",
        # estimated_cost is NULL on an attempt or result whose model's price is unknown (never
        # 0); batch_log.estimated_cost is then the priced part and unpriced_count says how many
        # results it leaves out.
        """
ALTER TABLE ai_api_call ADD COLUMN cached_tokens INTEGER;  -- of input_tokens, at the cached price
ALTER TABLE result ADD COLUMN cached_tokens INTEGER;
ALTER TABLE batch_log ADD COLUMN cached_tokens BIGINT DEFAULT 0;
ALTER TABLE batch_log ADD COLUMN unpriced_count INTEGER DEFAULT 0;  -- results of unknown price
ALTER TABLE batch_log ADD COLUMN notices VARCHAR[];  -- retired models named, unknown prices
""",
    )
)

migration(
    Migration(
        7,
        "learned limits kept per quota identity (endpoint, key fingerprint), with their source",
        """
-- stated | message | lowered | recovered | raised (engine/values.py LimitSource)
ALTER TABLE limit_learned ADD COLUMN source VARCHAR;
-- the quota identity: "google" or the base URL, and the key's fingerprint (engine/identity.py),
-- never the key; NULL in rows from before version 7, which are history only
ALTER TABLE limit_learned ADD COLUMN endpoint VARCHAR;
ALTER TABLE limit_learned ADD COLUMN key_fingerprint VARCHAR;
-- set when the user forgets the limit: no later batch starts from it
ALTER TABLE limit_learned ADD COLUMN forgotten_at TIMESTAMPTZ;
""",
    )
)

migration(
    Migration(
        8,
        "what happened to each model during a batch (parked, backing off, exhausted, gone)",
        """
CREATE TABLE model_event (
    batch_id VARCHAR NOT NULL,
    model    VARCHAR NOT NULL,
    state    VARCHAR NOT NULL,   -- parked | backing_off | exhausted | cooling | gone | ready
    until_s  DOUBLE,             -- seconds until usable again; NULL: not in this batch
    reason   VARCHAR,            -- the 429's quota ids, the service's message, ...
    happened_at TIMESTAMPTZ NOT NULL
);
""",
    )
)

migration(
    Migration(
        9,
        "whether a batch's answers were simulated (an emulator), so reports keep real spend apart",
        # The endpoint answered as a scriptgen emulator (endpoints.is_emulator): its answers and
        # spend are not real. Rows from before version 9 are judged by their endpoint: an
        # emulator was always on this machine's loopback address.
        r"""
ALTER TABLE batch_log ADD COLUMN simulated BOOLEAN DEFAULT false;
UPDATE batch_log SET simulated = regexp_matches(
    coalesce(endpoint, ''), '^https?://(127\.[0-9.]+|localhost|\[::1\])(:[0-9]+)?(/|$)'
);
""",
    )
)

migration(
    Migration(
        10,
        "the batch settings a retry carries over: its budget and its attempts per request",
        # `scriptgen retry` / `%scriptgen retry` run the failures again with these unless told
        # otherwise (retries.py); NULL in rows from before version 10 (and budget_usd: none).
        """
ALTER TABLE batch_log ADD COLUMN budget_usd DOUBLE;
ALTER TABLE batch_log ADD COLUMN max_attempts INTEGER;
""",
    )
)
