-- Run history, Postgres: runs, the event log and what derives from it, and step logs.
-- Times are microseconds since the Unix epoch (UTC); the application supplies them.
-- Asset keys are stored `a/b`; in derived tables an unpartitioned asset has partition key ''.

CREATE TABLE runs (
    id                BIGSERIAL PRIMARY KEY,
    run_id            TEXT NOT NULL UNIQUE,
    status            TEXT NOT NULL,
    selection         TEXT NOT NULL,
    asset_keys        JSONB NOT NULL,
    partition_key     TEXT,
    partition_key_end TEXT,
    tags              JSONB NOT NULL,
    parent_run_id     TEXT,
    root_run_id       TEXT,
    created_at        BIGINT NOT NULL,
    started_at        BIGINT,
    ended_at          BIGINT,
    updated_at        BIGINT NOT NULL
);
CREATE INDEX runs_status_id ON runs (status, id);
CREATE INDEX runs_created_at ON runs (created_at);
CREATE INDEX runs_partition_key_id ON runs (partition_key, id);

-- The assets a run selected, to list runs by asset.
CREATE TABLE run_assets (
    run_id    TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    asset_key TEXT NOT NULL,
    PRIMARY KEY (run_id, asset_key)
);
CREATE INDEX run_assets_asset_key ON run_assets (asset_key, run_id);

-- A run's tags, to list runs by tag.
CREATE TABLE run_tags (
    run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    key    TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
);
CREATE INDEX run_tags_key_value ON run_tags (key, value, run_id);

-- The event log: the source of truth. Ids are allocated by the writer, in append order.
CREATE TABLE event_log (
    id            BIGSERIAL PRIMARY KEY,
    run_id        TEXT NOT NULL,
    step_key      TEXT,
    asset_key     TEXT,
    partition_key TEXT,
    event_type    TEXT NOT NULL,
    timestamp     BIGINT NOT NULL,
    body          JSONB NOT NULL
);
CREATE INDEX event_log_run_id ON event_log (run_id, id);
CREATE INDEX event_log_asset ON event_log (asset_key, event_type, id);

-- Derived from the event log: the latest materialization and failure per asset partition.
CREATE TABLE asset_partitions (
    asset_key         TEXT NOT NULL,
    partition_key     TEXT NOT NULL,
    mat_run_id        TEXT,
    mat_event_id      BIGINT,
    mat_timestamp     BIGINT,
    mat_metadata      JSONB,
    mat_code_version  TEXT,
    failure_run_id    TEXT,
    failure_event_id  BIGINT,
    failure_timestamp BIGINT,
    failure_message   TEXT,
    updated_at        BIGINT NOT NULL,
    PRIMARY KEY (asset_key, partition_key)
);

-- Derived from the event log: every check evaluation.
CREATE TABLE asset_check_results (
    id            BIGSERIAL PRIMARY KEY,
    event_id      BIGINT NOT NULL,
    run_id        TEXT NOT NULL,
    asset_key     TEXT NOT NULL,
    partition_key TEXT NOT NULL,
    check_name    TEXT NOT NULL,
    passed        BOOLEAN NOT NULL,
    severity      TEXT NOT NULL,
    description   TEXT,
    metadata      JSONB NOT NULL,
    timestamp     BIGINT NOT NULL
);
CREATE INDEX asset_check_results_asset ON asset_check_results (asset_key, id);

-- Step logs: the logger's lines and child processes' output.
CREATE TABLE step_logs (
    id        BIGSERIAL PRIMARY KEY,
    run_id    TEXT NOT NULL,
    step_key  TEXT NOT NULL,
    stream    TEXT NOT NULL,
    level     TEXT NOT NULL,
    timestamp BIGINT NOT NULL,
    message   TEXT NOT NULL
);
CREATE INDEX step_logs_run_step ON step_logs (run_id, step_key, id);
