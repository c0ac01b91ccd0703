-- One table for the streaming workers' heartbeats: 0004's `stream_workers` (read by the web UI)
-- and 0005's `stream_worker_heartbeats` (the workers' counters) held the same beat twice. Both
-- hold only the last beat of each worker, rewritten every few seconds, so they are replaced
-- rather than migrated: the workers fill the new table at their next beat. Times are
-- microseconds since the Unix epoch (UTC).
DROP TABLE stream_worker_heartbeats;
DROP TABLE stream_workers;

CREATE TABLE stream_workers (
    worker_id      TEXT NOT NULL PRIMARY KEY,
    group_id       TEXT NOT NULL,
    -- Topic names the worker subscribes to.
    topics         JSONB NOT NULL,
    -- The partitions it holds now, as "topic:partition".
    partitions     JSONB NOT NULL,
    -- Records behind the partitions' ends, summed over those held (NULL: not known yet).
    lag            BIGINT,
    events_in      BIGINT NOT NULL,
    events_written BIGINT NOT NULL,
    dead_lettered  BIGINT NOT NULL,
    -- Records read per second between the last two beats.
    events_per_sec DOUBLE PRECISION NOT NULL,
    -- The lake path of the last file written, if any.
    last_file      TEXT,
    started_at     BIGINT NOT NULL,
    heartbeat_at   BIGINT NOT NULL
);
CREATE INDEX stream_workers_heartbeat_at ON stream_workers (heartbeat_at);
