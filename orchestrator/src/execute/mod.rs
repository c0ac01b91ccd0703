//! Execution: runs a plan on tokio, recording every event as it happens.

pub mod sink;
