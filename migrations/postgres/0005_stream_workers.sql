-- The heartbeat of each streaming worker (`orch stream`): what it holds and how far it is, for
-- the UI and for operators. One row per worker id, replaced at every heartbeat. Times are
-- microseconds since the Unix epoch (UTC), as in 0001. (0004 is taken by the web UI's tables.)
CREATE TABLE stream_worker_heartbeats (
    worker_id      TEXT NOT NULL PRIMARY KEY,
    group_id       TEXT NOT NULL,
    -- JSON array of topic names the worker subscribes to.
    topics         TEXT NOT NULL,
    -- JSON array of {"topic": ..., "partition": ...} the worker holds now.
    partitions     TEXT NOT NULL,
    -- Messages behind the partitions' ends, summed over the partitions held (NULL: not known yet).
    lag            BIGINT,
    events_in      BIGINT NOT NULL,
    events_written BIGINT NOT NULL,
    dead_lettered  BIGINT NOT NULL,
    -- The lake path of the last file written, if any.
    last_file      TEXT,
    updated_at     BIGINT NOT NULL
);
CREATE INDEX stream_worker_heartbeats_updated_at ON stream_worker_heartbeats (updated_at);
