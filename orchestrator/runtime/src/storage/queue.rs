//! The run queue, shared by workers in several processes: claiming the oldest QUEUED run
//! under a lease, renewing it, reaping expired ones, and waking the waiting workers. Columns
//! `attempt`, `lease_owner` and `lease_expires_at` of `runs`.
//!
//! A claim returns a [`ClaimedRun`], whose [`Lease`] names the claim's attempt: every later
//! write about the lease takes that `Lease` and is fenced by it, so a worker whose lease
//! expired and was resolved by someone else cannot write over the new state.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::convert::{duration_micros, literal_list, micros, run_status, time};
use super::db::{Db, Sql, Tx};
use super::events::{end_open_steps, insert_events};
use super::runs::{RUN_COLUMNS, RunRow, insert_run};
use super::{Result, SqlStorage, StorageError};
use crate::event::{Event, EventKind};
use crate::run::{NewRun, Run, RunId, RunStatus};

/// Which claim of a run holds its lease: the run and the claim's attempt number, which
/// increases with every claim. Handed out by [`QueueStorage::claim_run`] (and, for the reaper,
/// [`QueueStorage::expired_leases`]); every write about the lease takes it, and the storage
/// refuses it once another attempt holds the run or the run has ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    run_id: RunId,
    attempt: i64,
}

impl Lease {
    /// A lease on `run_id` at `attempt` that no claim handed out. The storage fences it like
    /// any other (a stale or unknown one is refused); it exists for tests of that fencing and
    /// for repairs by hand. A worker uses the lease its claim returned.
    pub fn unchecked(run_id: RunId, attempt: i64) -> Lease {
        Lease { run_id, attempt }
    }

    pub fn run_id(&self) -> RunId {
        self.run_id
    }

    pub fn attempt(&self) -> i64 {
        self.attempt
    }
}

/// A run held by a worker under a lease: what a claim returns (the run, now STARTING), and
/// what [`QueueStorage::expired_leases`] lists.
#[derive(Clone, Debug, PartialEq)]
pub struct ClaimedRun {
    pub run: Run,
    pub owner: String,
    pub expires_at: DateTime<Utc>,
    lease: Lease,
}

impl ClaimedRun {
    /// What fences every write about this claim.
    pub fn lease(&self) -> Lease {
        self.lease
    }

    /// The claim's attempt number (1 for a run's first claim).
    pub fn attempt(&self) -> i64 {
        self.lease.attempt
    }
}

/// Limits checked when claiming a run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueueLimits {
    /// Runs that may be STARTING, STARTED or CANCELING at once, across all workers.
    pub max_concurrent_runs: Option<u32>,
}

/// What renewing a lease found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseState {
    /// Renewed; the run is in this (non-terminal) status. CANCELING means someone asked to
    /// cancel it.
    Held(RunStatus),
    /// The lease is no longer this worker's (another attempt, or the run ended): stop.
    Lost,
}

/// The run queue.
#[async_trait]
pub trait QueueStorage: Send + Sync {
    /// Claims the oldest QUEUED run that shares no asset partition with a run in flight, if the
    /// limits allow one more to start: in one transaction it becomes STARTING with a lease of
    /// `lease_for` owned by `owner` and its attempt number increased. Claimers go one at a time
    /// (Postgres: an advisory transaction lock; SQLite: `BEGIN IMMEDIATE`), so they never get
    /// the same run, never pass the limit together and never start two runs of one asset
    /// partition. Also wakes nobody: see `notify_queue`.
    async fn claim_run(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_for: std::time::Duration,
        limits: &QueueLimits,
    ) -> Result<Option<ClaimedRun>>;

    /// Extends `lease` to `now + lease_for` if it still holds its run and the run has not
    /// ended.
    async fn renew_lease(
        &self,
        lease: &Lease,
        now: DateTime<Utc>,
        lease_for: std::time::Duration,
    ) -> Result<LeaseState>;

    /// Non-terminal runs whose lease expired before `now` (their worker died or hangs).
    async fn expired_leases(&self, now: DateTime<Utc>) -> Result<Vec<ClaimedRun>>;

    /// Fails the run of an expired `lease`, if the lease still holds it and it is still
    /// expired at `now`, recording `reason` as a RUN_FAILURE event in the same transaction.
    /// Returns the failed run, or `None` if someone else resolved or renewed it first.
    async fn fail_expired(
        &self,
        lease: &Lease,
        now: DateTime<Utc>,
        reason: &str,
    ) -> Result<Option<Run>>;

    /// Wakes queue workers waiting in `wait_for_queue` (Postgres: `NOTIFY`, across processes;
    /// SQLite: within this process). Called after a run is queued.
    async fn notify_queue(&self) -> Result<()>;

    /// Waits until `notify_queue` is called (by any process, for Postgres) or `timeout`
    /// passes. Never fails: a dropped listener is reconnected and the timeout covers the gap.
    async fn wait_for_queue(&self, timeout: std::time::Duration);
}

/// The statuses of a run that a worker holds: claimed and not yet over. Only these carry a
/// lease that can be renewed or expire.
const IN_FLIGHT: [RunStatus; 3] = [
    RunStatus::Starting,
    RunStatus::Started,
    RunStatus::Canceling,
];

/// `'STARTING', 'STARTED', 'CANCELING'`, for `status IN (...)`, optionally only the in-flight
/// statuses that may become `to`.
fn in_flight_list(to: Option<RunStatus>) -> String {
    literal_list(
        IN_FLIGHT
            .into_iter()
            .filter(|s| to.is_none_or(|to| s.can_become(to)))
            .map(RunStatus::as_str),
    )
}

/// Queued runs read per page when looking for one to claim, and pages at most: a claim looks
/// past at most this many blocked runs.
const CLAIM_PAGE: i64 = 64;
const CLAIM_PAGES: usize = 16;

/// Whether runs `a` and `b` may materialize one asset partition: they share an asset and their
/// partition ranges overlap (a run without partitions covers them all). Keys of one
/// partitioning compare in time order as text; keys of two (a day and an hour) compare on
/// the coarser one's length, so a day overlaps each of its hours.
pub(super) fn overlaps(a: &Run, b: &Run) -> bool {
    if !a.asset_keys.iter().any(|k| b.asset_keys.contains(k)) {
        return false;
    }
    let (Some(a_start), Some(b_start)) = (a.partition_key.as_deref(), b.partition_key.as_deref())
    else {
        return true;
    };
    let a_end = a.partition_key_end.as_deref().unwrap_or(a_start);
    let b_end = b.partition_key_end.as_deref().unwrap_or(b_start);
    let cut = |s: &str, n: usize| s.get(..n).unwrap_or(s).to_owned();
    let n = [a_start, a_end, b_start, b_end]
        .iter()
        .map(|k| k.len())
        .min()
        .unwrap_or(0);
    cut(a_start, n) <= cut(b_end, n) && cut(b_start, n) <= cut(a_end, n)
}

/// A `runs` row with its lease.
#[derive(sqlx::FromRow)]
struct ClaimRow {
    #[sqlx(flatten)]
    run: RunRow,
    attempt: i64,
    lease_owner: Option<String>,
    lease_expires_at: Option<i64>,
}

impl ClaimRow {
    fn into_claim(self) -> Result<ClaimedRun> {
        let run = self.run.into_run()?;
        let expires_at = self.lease_expires_at.ok_or_else(|| {
            StorageError::Corrupt(format!("run {} is leased without an expiry", run.run_id))
        })?;
        Ok(ClaimedRun {
            lease: Lease {
                run_id: run.run_id,
                attempt: self.attempt,
            },
            run,
            owner: self.lease_owner.unwrap_or_default(),
            expires_at: time(expires_at)?,
        })
    }
}

/// The columns of `runs` that make a [`ClaimedRun`], in [`ClaimRow`]'s order.
fn claim_columns() -> String {
    format!("{RUN_COLUMNS}, attempt, lease_owner, lease_expires_at")
}

/// Queues `runs` in the transaction `tx`, as `create_run` and the executor do for one run:
/// each stored QUEUED (whatever status it carries) and tagged `tag` (its schedule or
/// backfill), with its RUN_ENQUEUED event. The caller calls [`Db::queue_committed`] after the
/// commit, which wakes the queue's waiters.
pub(super) async fn enqueue_runs(
    db: &Db,
    tx: &mut Tx,
    runs: &[NewRun],
    tag: (&str, &str),
) -> Result<Vec<Run>> {
    let mut created = Vec::with_capacity(runs.len());
    let mut events = Vec::with_capacity(runs.len());
    for run in runs {
        let mut run = run.clone();
        run.status = RunStatus::Queued;
        run.tags.insert(tag.0.to_owned(), tag.1.to_owned());
        created.push(insert_run(db, tx, &run).await?);
        events.push(Event::new(
            run.run_id,
            EventKind::RunEnqueued,
            run.created_at,
        ));
    }
    insert_events(db, tx, &events).await?;
    if !runs.is_empty()
        && let Some(notify) = db.queue_notification()
    {
        tx.execute(notify).await?;
    }
    Ok(created)
}

#[async_trait]
impl QueueStorage for SqlStorage {
    async fn claim_run(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_for: std::time::Duration,
        limits: &QueueLimits,
    ) -> Result<Option<ClaimedRun>> {
        debug_assert!(RunStatus::Queued.can_become(RunStatus::Starting));
        let now = micros(now);
        let mut tx = self.db.begin_write().await?;
        // Claimers go one at a time, so that two of them cannot both see room for one more run,
        // nor both start runs of one asset partition.
        if let Some(lock) = self.db.queue_lock() {
            tx.execute(lock).await?;
        }
        let in_flight: Vec<RunRow> = tx
            .fetch_all(Sql::new(format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE status IN ({})",
                in_flight_list(None)
            )))
            .await?;
        if let Some(max) = limits.max_concurrent_runs
            && in_flight.len() >= usize::try_from(max).unwrap_or(usize::MAX)
        {
            tx.commit().await?;
            return Ok(None);
        }
        let in_flight = in_flight
            .into_iter()
            .map(RunRow::into_run)
            .collect::<Result<Vec<Run>>>()?;
        // The oldest queued run that materializes no asset partition a run in flight holds; a
        // run that would is left queued until that run ends (the next claim finds it).
        let mut chosen = None;
        let mut after = i64::MIN;
        'pages: for _ in 0..CLAIM_PAGES {
            let page: Vec<RunRow> = tx
                .fetch_all(
                    Sql::new(format!(
                        "SELECT {RUN_COLUMNS} FROM runs \
                         WHERE status = 'QUEUED' AND id > $1 ORDER BY id LIMIT $2"
                    ))
                    .bind(after)
                    .bind(CLAIM_PAGE),
                )
                .await?;
            let last = page.len() < usize::try_from(CLAIM_PAGE).unwrap_or(usize::MAX);
            for row in page {
                let run = row.into_run()?;
                after = run.id;
                if !in_flight.iter().any(|busy| overlaps(busy, &run)) {
                    chosen = Some(run.run_id);
                    break 'pages;
                }
            }
            if last {
                break;
            }
        }
        let Some(run_id) = chosen else {
            tx.commit().await?;
            return Ok(None);
        };
        let row: Option<ClaimRow> = tx
            .fetch_optional(
                Sql::new(format!(
                    "UPDATE runs SET status = 'STARTING', attempt = attempt + 1, \
                     lease_owner = $1, lease_expires_at = $2, updated_at = $3 \
                     WHERE run_id = $4 AND status = 'QUEUED' RETURNING {}",
                    claim_columns()
                ))
                .bind(owner)
                .bind(now.saturating_add(duration_micros(lease_for)))
                .bind(now)
                .bind(run_id.to_string()),
            )
            .await?;
        tx.commit().await?;
        row.map(ClaimRow::into_claim).transpose()
    }

    async fn renew_lease(
        &self,
        lease: &Lease,
        now: DateTime<Utc>,
        lease_for: std::time::Duration,
    ) -> Result<LeaseState> {
        let status: Option<(String,)> = self
            .db
            .fetch_optional(
                Sql::new(format!(
                    "UPDATE runs SET lease_expires_at = $1 WHERE run_id = $2 AND attempt = $3 \
                     AND status IN ({}) RETURNING status",
                    in_flight_list(None)
                ))
                .bind(micros(now).saturating_add(duration_micros(lease_for)))
                .bind(lease.run_id.to_string())
                .bind(lease.attempt),
            )
            .await?;
        match status {
            None => Ok(LeaseState::Lost),
            Some((status,)) => run_status(&status).map(LeaseState::Held),
        }
    }

    async fn expired_leases(&self, now: DateTime<Utc>) -> Result<Vec<ClaimedRun>> {
        // The same `status IN` list as the partial index `runs_lease_expires_at`.
        let rows: Vec<ClaimRow> = self
            .db
            .fetch_all(
                Sql::new(format!(
                    "SELECT {} FROM runs WHERE status IN ({}) AND lease_expires_at < $1 \
                     ORDER BY lease_expires_at, id",
                    claim_columns(),
                    in_flight_list(None)
                ))
                .bind(micros(now)),
            )
            .await?;
        rows.into_iter().map(ClaimRow::into_claim).collect()
    }

    async fn fail_expired(
        &self,
        lease: &Lease,
        now: DateTime<Utc>,
        reason: &str,
    ) -> Result<Option<Run>> {
        let mut tx = self.db.begin_write().await?;
        let row: Option<RunRow> = tx
            .fetch_optional(
                Sql::new(format!(
                    "UPDATE runs SET status = 'FAILURE', ended_at = $1, updated_at = $1, \
                     lease_owner = NULL, lease_expires_at = NULL \
                     WHERE run_id = $2 AND attempt = $3 AND status IN ({}) \
                     AND lease_expires_at < $1 RETURNING {RUN_COLUMNS}",
                    in_flight_list(Some(RunStatus::Failure)),
                ))
                .bind(micros(now))
                .bind(lease.run_id.to_string())
                .bind(lease.attempt),
            )
            .await?;
        let Some(row) = row else {
            tx.commit().await?;
            return Ok(None);
        };
        let run = row.into_run()?;
        // No step outlives its run: the steps its worker left in flight fail with the run.
        let why = format!("the step did not finish: {reason}");
        end_open_steps(
            &self.db,
            &mut tx,
            lease.run_id,
            now,
            EventKind::StepFailure,
            &why,
        )
        .await?;
        let event = Event::new(lease.run_id, EventKind::RunFailure, now).message(reason);
        insert_events(&self.db, &mut tx, &[event]).await?;
        tx.commit().await?;
        Ok(Some(run))
    }

    async fn notify_queue(&self) -> Result<()> {
        self.db.notify_queue().await
    }

    async fn wait_for_queue(&self, timeout: std::time::Duration) {
        self.db.wait_for_queue(timeout).await
    }
}
