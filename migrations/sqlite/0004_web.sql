-- What the web UI reads beyond runs and events: the stream workers' heartbeats. Times are microseconds since the Unix epoch (UTC).

-- One row per streaming worker, upserted by its heartbeat: what it consumes and how it keeps up.
CREATE TABLE stream_workers (
    worker_id      TEXT NOT NULL PRIMARY KEY,
    topics         TEXT NOT NULL,
    partitions     TEXT NOT NULL,
    lag            INTEGER NOT NULL,
    events_per_sec REAL NOT NULL,
    last_file      TEXT,
    started_at     INTEGER NOT NULL,
    heartbeat_at   INTEGER NOT NULL
);
CREATE INDEX stream_workers_heartbeat_at ON stream_workers (heartbeat_at);
