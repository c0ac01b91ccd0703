//! Where the runtime reads the time and makes ids: the system's clock, or one a test drives.
//! The core takes both as arguments; only the runtime reads them.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use crate::run::RunId;

/// A new run id (a UUIDv7: its time prefix orders runs by creation), from the system clock
/// and random bits.
pub fn new_run_id() -> RunId {
    RunId::from_parts(Utc::now(), rand::random())
}

/// Where the daemon reads the time. Schedules, leases and the reaper all use it, so a test
/// can run a day of hourly ticks in a second.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told to. Clones share the time.
#[derive(Clone, Debug)]
pub struct ManualClock {
    now: Arc<Mutex<DateTime<Utc>>>,
}

impl ManualClock {
    pub fn new(now: DateTime<Utc>) -> ManualClock {
        ManualClock {
            now: Arc::new(Mutex::new(now)),
        }
    }

    pub fn set(&self, now: DateTime<Utc>) {
        *self.now.lock().expect("clock lock") = now;
    }

    pub fn advance(&self, by: chrono::Duration) {
        let mut now = self.now.lock().expect("clock lock");
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().expect("clock lock")
    }
}
