-- Declarative automation. One row per automation tick: `tick_time` is unique (a tick is
-- evaluated once however many daemons race) and so is `previous_id` (each tick extends the
-- latest one, so two daemons cannot both build on the same state). Times are microseconds
-- since the Unix epoch (UTC); JSON is stored as text.
CREATE TABLE automation_ticks (
    id               BIGSERIAL PRIMARY KEY,
    tick_time        BIGINT NOT NULL UNIQUE,
    previous_id      BIGINT NOT NULL UNIQUE,
    daemon           TEXT NOT NULL,
    evaluated_at     BIGINT NOT NULL,
    duration_ms      DOUBLE PRECISION NOT NULL,
    assets_evaluated BIGINT NOT NULL,
    requested        BIGINT NOT NULL,
    run_ids          TEXT NOT NULL
);

-- An asset's evaluation at a tick, kept when it requested runs or its result changed: the
-- condition tree with the partitions each node held for.
CREATE TABLE automation_evaluations (
    tick_id    BIGINT NOT NULL,
    asset_key  TEXT NOT NULL,
    requested  TEXT NOT NULL,
    run_ids    TEXT NOT NULL,
    tree       TEXT NOT NULL,
    PRIMARY KEY (tick_id, asset_key)
);
CREATE INDEX automation_evaluations_asset ON automation_evaluations (asset_key, tick_id);

-- What each asset's next evaluation needs from its last one (AssetState, as JSON).
CREATE TABLE automation_state (
    asset_key  TEXT NOT NULL PRIMARY KEY,
    tick_id    BIGINT NOT NULL,
    state      TEXT NOT NULL
);
