//! Runs: their identity, their status and the transitions between statuses that are legal.
//!
//! The storage refuses any other transition atomically (`UPDATE ... WHERE status IN (legal
//! predecessors)`), so that two processes racing on one run cannot both win.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::asset::AssetKey;

/// A run's id: a UUIDv7, so that ids sort by creation time.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RunId(pub Uuid);

impl RunId {
    /// A run id made at `at` from `random` bits: a UUIDv7, whose time prefix orders ids by
    /// creation. The runtime passes its clock and a random source; tests pass fixed ones.
    pub fn from_parts(at: DateTime<Utc>, random: [u8; 10]) -> Self {
        let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
        RunId(uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid())
    }

    pub fn parse(s: &str) -> Result<Self, uuid::Error> {
        Uuid::parse_str(s).map(RunId)
    }

    /// The last eight hex digits, as lists show it: the UUIDv7's random tail (its head is the
    /// creation time, the same for runs created in the same minute).
    pub fn short(&self) -> String {
        let hex = self.0.simple().to_string();
        hex[hex.len() - 8..].to_owned()
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RunId({})", self.0)
    }
}

/// A run's lifecycle, as in Dagster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum RunStatus {
    #[default]
    Queued,
    Starting,
    Started,
    Success,
    Failure,
    Canceling,
    Canceled,
}

impl RunStatus {
    pub const ALL: [RunStatus; 7] = [
        RunStatus::Queued,
        RunStatus::Starting,
        RunStatus::Started,
        RunStatus::Success,
        RunStatus::Failure,
        RunStatus::Canceling,
        RunStatus::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "QUEUED",
            RunStatus::Starting => "STARTING",
            RunStatus::Started => "STARTED",
            RunStatus::Success => "SUCCESS",
            RunStatus::Failure => "FAILURE",
            RunStatus::Canceling => "CANCELING",
            RunStatus::Canceled => "CANCELED",
        }
    }

    /// Parses a status, case-insensitively.
    pub fn parse(s: &str) -> Option<Self> {
        let upper = s.to_ascii_uppercase();
        RunStatus::ALL.into_iter().find(|st| st.as_str() == upper)
    }

    /// Whether the run is over: nothing may follow.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Success | RunStatus::Failure | RunStatus::Canceled
        )
    }

    /// The statuses a run may move to from this one.
    pub fn successors(self) -> &'static [RunStatus] {
        use RunStatus::*;
        match self {
            Queued => &[Starting, Canceling, Canceled, Failure],
            Starting => &[Started, Canceling, Canceled, Failure],
            Started => &[Success, Failure, Canceling],
            Canceling => &[Canceled, Failure],
            Success | Failure | Canceled => &[],
        }
    }

    /// The statuses from which a run may move to `self`.
    pub fn predecessors(self) -> Vec<RunStatus> {
        RunStatus::ALL
            .into_iter()
            .filter(|from| from.successors().contains(&self))
            .collect()
    }

    pub fn can_become(self, to: RunStatus) -> bool {
        self.successors().contains(&to)
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a run materializes over which partitions, as stored with the run.
#[derive(Clone, Debug, PartialEq)]
pub struct NewRun {
    pub run_id: RunId,
    pub status: RunStatus,
    /// The selection as the user typed it.
    pub selection: String,
    /// The keys the selection resolved to.
    pub asset_keys: Vec<AssetKey>,
    /// A single partition key, or the first key of a range.
    pub partition_key: Option<String>,
    /// The last key of a range (`None` for a single partition).
    pub partition_key_end: Option<String>,
    /// Only these steps of the plan (a re-execution from failure); `None`: all of them.
    pub step_subset: Option<BTreeSet<String>>,
    pub tags: BTreeMap<String, String>,
    pub parent_run_id: Option<RunId>,
    pub root_run_id: Option<RunId>,
    pub created_at: DateTime<Utc>,
}

impl NewRun {
    /// A run `run_id` made at `created_at`, QUEUED, of nothing yet: fill in the rest.
    pub fn new(run_id: RunId, created_at: DateTime<Utc>) -> Self {
        NewRun {
            run_id,
            status: RunStatus::Queued,
            selection: String::new(),
            asset_keys: Vec::new(),
            partition_key: None,
            partition_key_end: None,
            step_subset: None,
            tags: BTreeMap::new(),
            parent_run_id: None,
            root_run_id: None,
            created_at,
        }
    }
}

/// A stored run.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    /// Storage order: later runs have larger ids. Used as the pagination cursor.
    pub id: i64,
    pub run_id: RunId,
    pub status: RunStatus,
    pub selection: String,
    pub asset_keys: Vec<AssetKey>,
    pub partition_key: Option<String>,
    pub partition_key_end: Option<String>,
    /// Only these steps of the plan (a re-execution from failure); `None`: all of them.
    pub step_subset: Option<BTreeSet<String>>,
    pub tags: BTreeMap<String, String>,
    pub parent_run_id: Option<RunId>,
    pub root_run_id: Option<RunId>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

impl Run {
    /// The run `new` as stored under `id`, not started yet.
    pub fn from_new(new: &NewRun, id: i64) -> Run {
        Run {
            id,
            run_id: new.run_id,
            status: new.status,
            selection: new.selection.clone(),
            asset_keys: new.asset_keys.clone(),
            partition_key: new.partition_key.clone(),
            partition_key_end: new.partition_key_end.clone(),
            step_subset: new.step_subset.clone(),
            tags: new.tags.clone(),
            parent_run_id: new.parent_run_id,
            root_run_id: new.root_run_id,
            created_at: new.created_at,
            started_at: None,
            ended_at: None,
            updated_at: new.created_at,
        }
    }

    /// The partition as shown to users: `K`, `A...B` or empty.
    pub fn partition_display(&self) -> String {
        match (&self.partition_key, &self.partition_key_end) {
            (Some(a), Some(b)) => format!("{a}...{b}"),
            (Some(a), None) => a.clone(),
            _ => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_statuses_have_no_successors() {
        for status in RunStatus::ALL {
            assert_eq!(status.is_terminal(), status.successors().is_empty());
            assert_eq!(
                RunStatus::parse(&status.to_string().to_lowercase()),
                Some(status)
            );
        }
        assert!(RunStatus::Started.can_become(RunStatus::Success));
        assert!(!RunStatus::Queued.can_become(RunStatus::Success));
        assert!(!RunStatus::Success.can_become(RunStatus::Started));
        assert_eq!(
            RunStatus::Canceled.predecessors(),
            vec![RunStatus::Queued, RunStatus::Starting, RunStatus::Canceling]
        );
    }
}
