-- The run queue shared by several daemons, schedule ticks, backfills, sensor cursors and
-- daemon heartbeats. Times are microseconds since the Unix epoch (UTC), as in 0001.

-- A claimed run's lease: `attempt` grows with every claim and fences the lease's writes.
ALTER TABLE runs ADD COLUMN attempt INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN lease_owner TEXT;
ALTER TABLE runs ADD COLUMN lease_expires_at INTEGER;
-- The reaper: runs still in flight, by lease expiry.
CREATE INDEX runs_lease_expires_at ON runs (lease_expires_at)
    WHERE status IN ('STARTING', 'STARTED', 'CANCELING');

-- Schedules turned on or off.
CREATE TABLE schedules (
    name       TEXT NOT NULL PRIMARY KEY,
    enabled    INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Every evaluated tick, once: the primary key makes a tick (and its run) happen at most once.
CREATE TABLE schedule_ticks (
    schedule   TEXT NOT NULL,
    tick_time  INTEGER NOT NULL,
    status     TEXT NOT NULL,
    run_id     TEXT,
    message    TEXT,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (schedule, tick_time)
);

-- Backfills; their runs carry the tag orch/backfill=<id>.
CREATE TABLE backfills (
    id             TEXT NOT NULL PRIMARY KEY,
    selection      TEXT NOT NULL,
    partition_from TEXT NOT NULL,
    partition_to   TEXT NOT NULL,
    run_count      INTEGER NOT NULL,
    created_at     INTEGER NOT NULL
);
CREATE INDEX backfills_created_at ON backfills (created_at);

-- Where each sensor left off.
CREATE TABLE sensor_cursors (
    name       TEXT NOT NULL PRIMARY KEY,
    cursor     TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);

-- The daemons alive, by their last heartbeat.
CREATE TABLE daemon_heartbeats (
    daemon_id    TEXT NOT NULL PRIMARY KEY,
    started_at   INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL,
    info         TEXT NOT NULL
);
CREATE INDEX daemon_heartbeats_heartbeat_at ON daemon_heartbeats (heartbeat_at);
