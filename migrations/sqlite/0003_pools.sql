-- Concurrency pools shared by every process on one run history, the event log read across
-- runs (sensors), and freshness violations. Times are microseconds since the Unix epoch (UTC),
-- as in 0001.

-- The slots held in each pool: one row per step that holds one. A row whose `expires_at` has
-- passed belongs to a process that stopped renewing it (it died or hangs): it does not count,
-- and the next acquirer of the pool deletes it.
CREATE TABLE pool_slots (
    pool        TEXT NOT NULL,
    run_id      TEXT NOT NULL,
    step_key    TEXT NOT NULL,
    owner       TEXT NOT NULL,
    acquired_at INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (pool, run_id, step_key)
);
CREATE INDEX pool_slots_pool_expires_at ON pool_slots (pool, expires_at);

-- Sensors read the events of every run of some kinds, in id order.
CREATE INDEX event_log_type_id ON event_log (event_type, id);

-- The latest freshness violation of each asset: open while `resolved_at` is NULL.
CREATE TABLE freshness_violations (
    asset_key              TEXT NOT NULL PRIMARY KEY,
    detected_at            INTEGER NOT NULL,
    latest_partition       TEXT,
    latest_materialized_at INTEGER,
    max_lag_secs           INTEGER NOT NULL,
    message                TEXT NOT NULL,
    notified_at            INTEGER,
    resolved_at            INTEGER
);
