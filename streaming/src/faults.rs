//! Faults injected on purpose, for the fault tests only: `ORCH_STREAM_FAULTS` (unset in
//! production, where every method here does nothing).
//!
//! `ORCH_STREAM_FAULTS=crash_after_commit=0.02,fail_put=0.05` makes a worker abort (as SIGKILL
//! would) right after 2% of its log commits, having put a random part of the batch's files, and
//! fail 5% of its file puts (retried, as a real store's error would be).
//! `ORCH_STREAM_FAULTS_SEED` fixes the draws.

use std::sync::{Arc, Mutex};

use orch_lake::LakeError;

/// The faults a worker injects.
#[derive(Clone, Default)]
pub(crate) struct Faults(Option<Arc<Settings>>);

struct Settings {
    crash_after_commit: f64,
    fail_put: f64,
    rng: Mutex<u64>,
}

impl Faults {
    /// From `ORCH_STREAM_FAULTS` and `ORCH_STREAM_FAULTS_SEED`.
    pub fn from_env() -> Faults {
        let Ok(spec) = std::env::var("ORCH_STREAM_FAULTS") else {
            return Faults(None);
        };
        let mut settings = Settings {
            crash_after_commit: 0.0,
            fail_put: 0.0,
            rng: Mutex::new(
                std::env::var("ORCH_STREAM_FAULTS_SEED")
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| {
                        u64::from(std::process::id()) ^ chrono::Utc::now().timestamp_micros() as u64
                    })
                    | 1,
            ),
        };
        for part in spec.split(',').filter(|p| !p.is_empty()) {
            let (key, value) = part.split_once('=').unwrap_or((part, "1"));
            let p: f64 = value.parse().unwrap_or(0.0);
            match key {
                "crash_after_commit" => settings.crash_after_commit = p,
                "fail_put" => settings.fail_put = p,
                other => tracing::warn!(fault = other, "unknown fault in ORCH_STREAM_FAULTS"),
            }
        }
        tracing::warn!(%spec, "injecting faults (ORCH_STREAM_FAULTS)");
        Faults(Some(Arc::new(settings)))
    }

    fn draw(settings: &Settings) -> f64 {
        let mut x = settings.rng.lock().expect("not poisoned");
        // xorshift64*
        *x ^= *x >> 12;
        *x ^= *x << 25;
        *x ^= *x >> 27;
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// After a commit of a batch of `files` files: where to crash (before putting file `i`, or
    /// after all of them when `i == files`), if at all.
    pub fn crash_point(&self, files: usize) -> Option<usize> {
        let settings = self.0.as_ref()?;
        if Faults::draw(settings) >= settings.crash_after_commit {
            return None;
        }
        Some(((Faults::draw(settings) * (files + 1) as f64) as usize).min(files))
    }

    /// An injected failure of the put of `path`, sometimes.
    pub fn put_error(&self, path: &str) -> Result<(), LakeError> {
        let Some(settings) = self.0.as_ref() else {
            return Ok(());
        };
        if Faults::draw(settings) < settings.fail_put {
            return Err(LakeError::Store {
                action: "write",
                path: path.to_owned(),
                lake: "(fault injection)".to_owned(),
                message: "injected failure (ORCH_STREAM_FAULTS=fail_put)".to_owned(),
                hint: "",
            });
        }
        Ok(())
    }

    /// Ends the process at once, as SIGKILL would.
    pub fn crash(when: &str) -> ! {
        eprintln!("ORCH_STREAM_FAULTS: crashing {when}");
        std::process::abort()
    }
}
