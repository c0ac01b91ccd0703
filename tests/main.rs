//! The integration tests: one binary, run by the README's test command. Tests that need
//! Postgres use `ORCH_TEST_DATABASE_URL` (default: postgres on 127.0.0.1:5432, database
//! `orch_test`) and fail with instructions when it is unreachable.

mod arrival;
mod automation;
mod browser;
mod cli;
mod compose;
mod daemon;
mod dbt;
mod eventsim;
mod execute;
mod lake;
mod lake_log;
mod platform;
mod queue;
mod sensors;
mod storage;
mod streaming;
mod structure;
mod util;
mod warehouse;
mod web;
