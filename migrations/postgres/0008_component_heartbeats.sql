-- Heartbeats of the components that report to the run history from outside the engine
-- (`orch stream`'s workers are kind `stream_worker`): one row per kind and name, replaced at
-- every beat, with what the component says about itself as JSON the engine does not read.
-- Replaces 0006's `stream_workers`, whose rows are carried over. Times are microseconds since
-- the Unix epoch (UTC).
CREATE TABLE component_heartbeats (
    kind         TEXT NOT NULL,
    name         TEXT NOT NULL,
    detail       JSONB NOT NULL,
    started_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    -- When it said it stopped; NULL while it runs (or if it died without saying so).
    stopped_at   BIGINT,
    PRIMARY KEY (kind, name)
);
CREATE INDEX component_heartbeats_last_seen_at ON component_heartbeats (kind, last_seen_at);

INSERT INTO component_heartbeats (kind, name, detail, started_at, last_seen_at, stopped_at)
SELECT 'stream_worker', worker_id,
       jsonb_build_object('group_id', group_id, 'topics', topics, 'partitions', partitions,
                          'lag', lag, 'events_in', events_in, 'events_written', events_written,
                          'dead_lettered', dead_lettered, 'events_per_sec', events_per_sec,
                          'last_file', last_file),
       started_at, heartbeat_at, NULL
FROM stream_workers;

DROP TABLE stream_workers;
