//! The run queue: claims oldest first under limits, leases fenced by the claim, expired
//! leases reaped, cancellation reaching the worker, and waking the waiting workers.

use super::*;

conformance!(
    case_claim_oldest_first,
    case_claim_respects_max_concurrent_runs,
    case_claim_never_runs_one_asset_partition_twice_at_once,
    case_renew_lease_is_fenced,
    case_expired_leases_and_fail_expired,
    case_fail_expired_ends_the_steps_in_flight,
    case_terminal_transitions_clear_the_lease,
    case_request_cancel,
    case_cancel_a_claimed_run,
    case_queue_wakeups,
);

fn at_most(runs: u32) -> QueueLimits {
    QueueLimits {
        max_concurrent_runs: Some(runs),
    }
}

/// The run ids of the leases, in order.
fn leased(leases: &[ClaimedRun]) -> Vec<RunId> {
    leases.iter().map(|l| l.run.run_id).collect()
}

async fn case_claim_oldest_first(storage: Arc<dyn Storage>) {
    assert_eq!(
        claim(&storage, "w", 0, &no_limits()).await,
        None,
        "nothing queued"
    );
    // Runs that are not QUEUED are never claimed.
    for status in RunStatus::ALL {
        if status != RunStatus::Queued {
            create(&storage, new_run(status, &["x"], 0)).await;
        }
    }
    let queued: Vec<orch::Run> = {
        let mut runs = Vec::new();
        for i in 0..3 {
            let (a, b) = (format!("a{i}"), format!("b{i}"));
            runs.push(create(&storage, new_run(RunStatus::Queued, &[&a, &b], i)).await);
        }
        runs
    };
    for (i, run) in queued.iter().enumerate() {
        let owner = format!("worker-{i}");
        let lease = claim(&storage, &owner, 100, &no_limits()).await.unwrap();
        let expected = orch::Run {
            status: RunStatus::Starting,
            updated_at: at(100),
            ..run.clone()
        };
        assert_eq!(
            (
                &lease.run,
                lease.attempt(),
                lease.lease(),
                &lease.owner,
                lease.expires_at
            ),
            (
                &expected,
                1,
                Lease::unchecked(run.run_id, 1),
                &owner,
                at(100) + LEASE
            ),
            "claim {i} takes the oldest QUEUED run"
        );
        assert_eq!(storage.get_run(run.run_id).await.unwrap(), Some(expected));
        // Claiming appends no event: the worker records RUN_STARTING itself.
        assert!(events_of(&storage, run.run_id).await.is_empty());
    }
    assert_eq!(
        claim(&storage, "w", 101, &no_limits()).await,
        None,
        "all claimed"
    );
    // A claimed run goes on through the usual transitions.
    let r = storage
        .transition_run(queued[0].run_id, RunStatus::Started, at(102))
        .await
        .unwrap();
    assert_eq!(r.started_at, Some(at(102)));
}

async fn case_claim_respects_max_concurrent_runs(storage: Arc<dyn Storage>) {
    let mut queued = Vec::new();
    for i in 0..5 {
        let a = format!("a{i}");
        queued.push(create(&storage, new_run(RunStatus::Queued, &[&a], i)).await);
    }
    assert_eq!(
        claim(&storage, "w", 10, &at_most(0)).await,
        None,
        "a limit of 0 starts nothing"
    );
    // A run already in flight (started by someone else) counts.
    let other = create(&storage, new_run(RunStatus::Started, &["x"], 0)).await;
    let first = claim(&storage, "w", 10, &at_most(2)).await.unwrap();
    assert_eq!(first.run.run_id, queued[0].run_id);
    assert_eq!(
        claim(&storage, "w", 10, &at_most(2)).await,
        None,
        "STARTING + STARTED = 2"
    );
    storage
        .transition_run(first.run.run_id, RunStatus::Started, at(11))
        .await
        .unwrap();
    assert_eq!(
        claim(&storage, "w", 11, &at_most(2)).await,
        None,
        "STARTED + STARTED = 2"
    );
    // CANCELING still counts; only the end of a run makes room.
    storage.request_cancel(other.run_id, at(12)).await.unwrap();
    assert_eq!(
        claim(&storage, "w", 12, &at_most(2)).await,
        None,
        "CANCELING counts"
    );
    storage
        .transition_run(other.run_id, RunStatus::Canceled, at(13))
        .await
        .unwrap();
    let second = claim(&storage, "w", 13, &at_most(2)).await.unwrap();
    assert_eq!(second.run.run_id, queued[1].run_id);
    assert_eq!(claim(&storage, "w", 13, &at_most(2)).await, None);
    // A larger limit, or none, lets more start.
    let third = claim(&storage, "w", 14, &at_most(3)).await.unwrap();
    assert_eq!(third.run.run_id, queued[2].run_id);
    let fourth = claim(&storage, "w", 14, &no_limits()).await.unwrap();
    assert_eq!(fourth.run.run_id, queued[3].run_id);
    storage
        .transition_run(first.run.run_id, RunStatus::Success, at(15))
        .await
        .unwrap();
    assert_eq!(
        claim(&storage, "w", 15, &at_most(4))
            .await
            .map(|l| l.run.run_id),
        Some(queued[4].run_id)
    );
}

async fn case_renew_lease_is_fenced(storage: Arc<dyn Storage>) {
    let run = create(&storage, new_run(RunStatus::Queued, &["a"], 0)).await;
    let lease = claim(&storage, "w", 100, &no_limits()).await.unwrap();
    assert_eq!(lease.attempt(), 1);
    let held = lease.lease();
    assert_eq!((held.run_id(), held.attempt()), (run.run_id, 1));
    let renew = |lease: Lease, now: i64| {
        let storage = storage.clone();
        async move {
            storage
                .renew_lease(&lease, at(now), Duration::from_secs(60))
                .await
                .unwrap()
        }
    };
    let attempt = |n: i64| Lease::unchecked(run.run_id, n);
    assert_eq!(
        renew(held, 120).await,
        LeaseState::Held(RunStatus::Starting)
    );
    // Renewed until 180: not expired at 170 (the claim's lease ended at 130).
    assert!(storage.expired_leases(at(170)).await.unwrap().is_empty());
    let expired = storage.expired_leases(at(181)).await.unwrap();
    assert_eq!(leased(&expired), vec![run.run_id]);
    assert_eq!(expired[0].expires_at, at(180));
    // Another attempt's worker cannot renew, and changes nothing.
    assert_eq!(renew(attempt(2), 150).await, LeaseState::Lost);
    assert_eq!(renew(attempt(0), 150).await, LeaseState::Lost);
    assert_eq!(
        storage.expired_leases(at(181)).await.unwrap()[0].expires_at,
        at(180)
    );
    // Renewing does not touch the run.
    let before = storage.get_run(run.run_id).await.unwrap().unwrap();
    assert_eq!(
        renew(held, 121).await,
        LeaseState::Held(RunStatus::Starting)
    );
    assert_eq!(storage.get_run(run.run_id).await.unwrap(), Some(before));

    storage
        .transition_run(run.run_id, RunStatus::Started, at(130))
        .await
        .unwrap();
    assert_eq!(renew(held, 131).await, LeaseState::Held(RunStatus::Started));
    // A cancel request reaches the worker through its renewal.
    storage.request_cancel(run.run_id, at(132)).await.unwrap();
    assert_eq!(
        renew(held, 133).await,
        LeaseState::Held(RunStatus::Canceling)
    );
    storage
        .transition_run(run.run_id, RunStatus::Canceled, at(134))
        .await
        .unwrap();
    assert_eq!(renew(held, 135).await, LeaseState::Lost, "the run ended");
    // An unknown run has no lease.
    assert_eq!(
        storage
            .renew_lease(&Lease::unchecked(orch::new_run_id(), 1), at(0), LEASE)
            .await
            .unwrap(),
        LeaseState::Lost
    );
    // A run started without the queue (no claim) has no lease to renew.
    let direct = create(&storage, new_run(RunStatus::Started, &["a"], 0)).await;
    assert_eq!(
        storage
            .renew_lease(&Lease::unchecked(direct.run_id, 0), at(1), LEASE)
            .await
            .unwrap(),
        LeaseState::Held(RunStatus::Started),
        "attempt 0 is a run that was never claimed"
    );
    assert!(
        storage.expired_leases(at(1_000_000)).await.unwrap().len() == 1,
        "only the renewed unclaimed run has an expiry"
    );
}

async fn case_expired_leases_and_fail_expired(storage: Arc<dyn Storage>) {
    let short = Duration::from_secs(10);
    let a = create(&storage, new_run(RunStatus::Queued, &["a"], 0)).await;
    let b = create(&storage, new_run(RunStatus::Queued, &["b"], 1)).await;
    let c = create(&storage, new_run(RunStatus::Queued, &["c"], 2)).await;
    let lease_a = storage
        .claim_run("w1", at(100), short, &no_limits())
        .await
        .unwrap()
        .unwrap();
    let lease_b = storage
        .claim_run("w2", at(101), short, &no_limits())
        .await
        .unwrap()
        .unwrap();
    let lease_c = storage
        .claim_run("w3", at(102), short, &no_limits())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        leased(&[lease_a.clone(), lease_b.clone(), lease_c.clone()]),
        vec![a.run_id, b.run_id, c.run_id]
    );
    storage
        .transition_run(b.run_id, RunStatus::Started, at(103))
        .await
        .unwrap();
    storage.request_cancel(c.run_id, at(104)).await.unwrap();

    assert!(
        storage.expired_leases(at(110)).await.unwrap().is_empty(),
        "expiry is exclusive"
    );
    let expired = storage.expired_leases(at(111)).await.unwrap();
    assert_eq!(leased(&expired), vec![a.run_id]);
    assert_eq!(expired[0], lease_a);
    // Every in-flight status, oldest expiry first.
    let expired = storage.expired_leases(at(200)).await.unwrap();
    assert_eq!(leased(&expired), vec![a.run_id, b.run_id, c.run_id]);
    assert_eq!(
        expired
            .iter()
            .map(|l| (l.run.status, l.owner.as_str(), l.attempt()))
            .collect::<Vec<_>>(),
        vec![
            (RunStatus::Starting, "w1", 1),
            (RunStatus::Started, "w2", 1),
            (RunStatus::Canceling, "w3", 1)
        ]
    );

    let reason = "worker w1 stopped renewing its lease";
    // Fenced by the attempt...
    assert_eq!(
        storage
            .fail_expired(&Lease::unchecked(a.run_id, 2), at(120), reason)
            .await
            .unwrap(),
        None
    );
    // ... and by the expiry: not yet expired, or renewed meanwhile.
    assert_eq!(
        storage
            .fail_expired(&lease_a.lease(), at(110), reason)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        storage
            .renew_lease(&lease_b.lease(), at(115), short)
            .await
            .unwrap(),
        LeaseState::Held(RunStatus::Started)
    );
    assert_eq!(
        storage
            .fail_expired(&lease_b.lease(), at(120), reason)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        storage.get_run(a.run_id).await.unwrap().unwrap().status,
        RunStatus::Starting
    );
    assert!(
        events_of(&storage, a.run_id).await.is_empty(),
        "nothing recorded when refused"
    );

    let failed = storage
        .fail_expired(&expired[0].lease(), at(120), reason)
        .await
        .unwrap()
        .expect("expired and still attempt 1");
    assert_eq!(failed.status, RunStatus::Failure);
    assert_eq!(
        (failed.ended_at, failed.updated_at),
        (Some(at(120)), at(120))
    );
    assert_eq!(storage.get_run(a.run_id).await.unwrap(), Some(failed));
    let events = events_of(&storage, a.run_id).await;
    assert_eq!(kinds(&events), vec![EventKind::RunFailure]);
    assert_eq!(events[0].event.body.message.as_deref(), Some(reason));
    assert_eq!(events[0].event.timestamp, at(120));
    // Resolved once: the second reaper finds nothing, and the worker has lost its lease.
    assert_eq!(
        storage
            .fail_expired(&lease_a.lease(), at(121), reason)
            .await
            .unwrap(),
        None
    );
    assert_eq!(events_of(&storage, a.run_id).await.len(), 1);
    assert_eq!(
        storage
            .renew_lease(&lease_a.lease(), at(121), short)
            .await
            .unwrap(),
        LeaseState::Lost
    );
    // b's renewal made its lease (until 125) outlast c's (until 112).
    assert_eq!(
        leased(&storage.expired_leases(at(200)).await.unwrap()),
        vec![c.run_id, b.run_id]
    );

    // A CANCELING run whose worker died fails too.
    let c_failed = storage
        .fail_expired(&lease_c.lease(), at(200), "gone")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c_failed.status, RunStatus::Failure);
    // A run that ends normally leaves the reaper's sight.
    storage
        .transition_run(b.run_id, RunStatus::Success, at(130))
        .await
        .unwrap();
    assert!(storage.expired_leases(at(10_000)).await.unwrap().is_empty());
    assert_eq!(
        storage
            .fail_expired(&lease_b.lease(), at(10_000), reason)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        storage.get_run(b.run_id).await.unwrap().unwrap().status,
        RunStatus::Success
    );
    // Unknown runs: nothing to fail.
    assert_eq!(
        storage
            .fail_expired(&Lease::unchecked(orch::new_run_id(), 1), at(10_000), reason)
            .await
            .unwrap(),
        None
    );
}

async fn case_terminal_transitions_clear_the_lease(storage: Arc<dyn Storage>) {
    for to in [RunStatus::Success, RunStatus::Failure, RunStatus::Canceled] {
        let run = create(&storage, new_run(RunStatus::Queued, &["a"], 0)).await;
        let lease = claim(&storage, "w", 0, &no_limits()).await.unwrap();
        assert_eq!(lease.run.run_id, run.run_id);
        let path: &[RunStatus] = match to {
            RunStatus::Success => &[RunStatus::Started, RunStatus::Success],
            RunStatus::Failure => &[RunStatus::Failure],
            _ => &[RunStatus::Canceling, RunStatus::Canceled],
        };
        for &status in path {
            storage
                .transition_run(run.run_id, status, at(1))
                .await
                .unwrap();
        }
        assert!(
            storage.expired_leases(at(1_000)).await.unwrap().is_empty(),
            "a {to} run holds no lease"
        );
        assert_eq!(
            storage
                .renew_lease(&lease.lease(), at(2), LEASE)
                .await
                .unwrap(),
            LeaseState::Lost
        );
    }
}

async fn case_request_cancel(storage: Arc<dyn Storage>) {
    for status in RunStatus::ALL {
        let run = create(&storage, new_run(status, &["a"], 0)).await;
        let result = storage.request_cancel(run.run_id, at(50)).await;
        let events = kinds(&events_of(&storage, run.run_id).await);
        match status {
            RunStatus::Queued => {
                let canceled = result.unwrap();
                assert_eq!(canceled.status, RunStatus::Canceled);
                assert_eq!(
                    (canceled.ended_at, canceled.updated_at),
                    (Some(at(50)), at(50))
                );
                assert_eq!(events, vec![EventKind::RunCanceled]);
            }
            RunStatus::Starting | RunStatus::Started => {
                let canceling = result.unwrap();
                assert_eq!(canceling.status, RunStatus::Canceling, "from {status}");
                assert_eq!((canceling.ended_at, canceling.updated_at), (None, at(50)));
                assert_eq!(events, vec![EventKind::RunCanceling]);
            }
            RunStatus::Canceling => {
                assert_eq!(result.unwrap(), run, "unchanged");
                assert!(events.is_empty());
            }
            RunStatus::Success | RunStatus::Failure | RunStatus::Canceled => {
                match result {
                    Err(StorageError::IllegalTransition { run_id, from, to }) => {
                        assert_eq!(
                            (run_id, from, to),
                            (run.run_id, status, RunStatus::Canceling)
                        );
                    }
                    other => panic!("canceling a {status} run: {other:?}"),
                }
                assert!(events.is_empty());
            }
        }
        let stored = storage.get_run(run.run_id).await.unwrap().unwrap();
        let expected = match status {
            RunStatus::Queued => RunStatus::Canceled,
            RunStatus::Starting | RunStatus::Started => RunStatus::Canceling,
            other => other,
        };
        assert_eq!(stored.status, expected, "from {status}");
    }
    // A second request for a CANCELING run changes nothing and records nothing more.
    let run = create(&storage, new_run(RunStatus::Started, &["a"], 0)).await;
    let first = storage.request_cancel(run.run_id, at(1)).await.unwrap();
    assert_eq!(
        storage.request_cancel(run.run_id, at(2)).await.unwrap(),
        first
    );
    assert_eq!(events_of(&storage, run.run_id).await.len(), 1);

    let nobody = orch::new_run_id();
    assert!(matches!(
        storage.request_cancel(nobody, at(0)).await,
        Err(StorageError::RunNotFound(id)) if id == nobody
    ));
}

async fn case_cancel_a_claimed_run(storage: Arc<dyn Storage>) {
    let run = create(&storage, new_run(RunStatus::Queued, &["a"], 0)).await;
    let lease = claim(&storage, "w", 10, &no_limits()).await.unwrap();
    let canceling = storage.request_cancel(run.run_id, at(11)).await.unwrap();
    assert_eq!(canceling.status, RunStatus::Canceling);
    // The worker keeps its lease while it stops, then ends the run.
    assert_eq!(
        storage
            .renew_lease(&lease.lease(), at(12), LEASE)
            .await
            .unwrap(),
        LeaseState::Held(RunStatus::Canceling)
    );
    let canceled = storage
        .transition_run(run.run_id, RunStatus::Canceled, at(13))
        .await
        .unwrap();
    assert_eq!(canceled.ended_at, Some(at(13)));
    // A canceled QUEUED run is never claimed.
    let queued = create(&storage, new_run(RunStatus::Queued, &["a"], 1)).await;
    storage.request_cancel(queued.run_id, at(14)).await.unwrap();
    assert_eq!(claim(&storage, "w", 15, &no_limits()).await, None);
}

// ---------------------------------------------------------------------------------------------
// Waking queue workers

/// Waits out any wake-up already pending (from the case's earlier steps), so that the next
/// wait starts clean.
async fn settle(storage: &Arc<dyn Storage>) {
    for _ in 0..50 {
        let start = Instant::now();
        storage.wait_for_queue(Duration::from_millis(200)).await;
        if start.elapsed() >= Duration::from_millis(190) {
            return;
        }
    }
    panic!("the queue keeps waking up with nothing happening");
}

/// Starts a waiter with a long timeout, then does `poke` every 50 ms (a waiter that is not yet
/// listening would miss a single one) until the waiter returns; returns how long it waited.
async fn woken_by(storage: &Arc<dyn Storage>, mut poke: impl AsyncFnMut()) -> Duration {
    let waiter = {
        let storage = storage.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            storage.wait_for_queue(Duration::from_secs(30)).await;
            start.elapsed()
        })
    };
    let deadline = Instant::now() + Duration::from_secs(40);
    while !waiter.is_finished() && Instant::now() < deadline {
        poke().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    waiter.await.unwrap()
}

async fn case_queue_wakeups(storage: Arc<dyn Storage>) {
    // Nobody notifies: the wait lasts its timeout.
    let start = Instant::now();
    storage.wait_for_queue(Duration::from_millis(300)).await;
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(5),
        "waited {waited:?} for a 300 ms timeout"
    );

    let waited = woken_by(&storage, async || storage.notify_queue().await.unwrap()).await;
    assert!(
        waited < Duration::from_secs(5),
        "notify_queue woke the waiter after {waited:?}"
    );

    // Queuing a run wakes the waiters too.
    settle(&storage).await;
    let mut created = 0;
    let waited = woken_by(&storage, async || {
        created += 1;
        create(&storage, new_run(RunStatus::Queued, &["a"], created)).await;
    })
    .await;
    assert!(
        waited < Duration::from_secs(5),
        "create_run woke the waiter after {waited:?}"
    );

    settle(&storage).await;
    let mut backfills = 0;
    let waited = woken_by(&storage, async || {
        backfills += 1;
        let id = format!("b{backfills}");
        storage
            .create_backfill(&backfill(&id, 1, 0), &partition_runs(1, 0))
            .await
            .unwrap();
    })
    .await;
    assert!(
        waited < Duration::from_secs(5),
        "create_backfill woke the waiter after {waited:?}"
    );

    settle(&storage).await;
    let mut ticks = 0;
    let waited = woken_by(&storage, async || {
        ticks += 1;
        let run = new_run(RunStatus::Queued, &["a"], ticks);
        storage
            .record_tick(
                &new_tick("s", at(ticks), Some(&run), TickStatus::Requested, None),
                at(ticks),
            )
            .await
            .unwrap();
    })
    .await;
    assert!(
        waited < Duration::from_secs(5),
        "record_tick woke the waiter after {waited:?}"
    );

    // A wake-up while nobody waits is kept for the next wait (once the storage has waited:
    // a Postgres storage starts listening on its first wait), then the queue is quiet again.
    settle(&storage).await;
    storage.notify_queue().await.unwrap();
    let start = Instant::now();
    storage.wait_for_queue(Duration::from_secs(20)).await;
    let waited = start.elapsed();
    assert!(
        waited < Duration::from_secs(5),
        "a kept wake-up ended the wait after {waited:?}"
    );

    // After all that, a quiet queue waits out its timeout again.
    settle(&storage).await;
    let start = Instant::now();
    storage.wait_for_queue(Duration::from_millis(300)).await;
    assert!(start.elapsed() >= Duration::from_millis(300));
}

/// A run failed for its expired lease leaves no step in flight: every step started (or up
/// for retry) and not ended gets a STEP_FAILURE saying why, with its asset and partition.
async fn case_fail_expired_ends_the_steps_in_flight(storage: Arc<dyn Storage>) {
    let run = create(&storage, new_run(RunStatus::Queued, &["a", "b", "c"], 0)).await;
    let lease = storage
        .claim_run("w1", at(100), Duration::from_secs(10), &no_limits())
        .await
        .unwrap()
        .unwrap();
    storage
        .transition_run(run.run_id, RunStatus::Started, at(101))
        .await
        .unwrap();
    let step = |kind: EventKind, step: &str, secs: i64| {
        let mut e = event(run.run_id, kind, secs).step(step);
        e.asset_key = Some(key(step));
        e.partition_key = Some("2026-11-22-10:00".into());
        e
    };
    storage
        .append_events(&[
            step(EventKind::StepStart, "a", 102),
            step(EventKind::StepSuccess, "a", 103),
            step(EventKind::StepStart, "b", 103),
            step(EventKind::StepStart, "c", 103),
            step(EventKind::StepUpForRetry, "c", 104),
        ])
        .await
        .unwrap();
    storage
        .fail_expired(
            &lease.lease(),
            at(200),
            "worker w1 stopped renewing its lease",
        )
        .await
        .unwrap()
        .expect("expired");
    let events = events_of(&storage, run.run_id).await;
    let ended: Vec<(Option<&str>, EventKind)> = events
        .iter()
        .filter(|e| e.event.timestamp == at(200))
        .map(|e| (e.event.step_key.as_deref(), e.event.kind))
        .collect();
    assert_eq!(
        ended,
        vec![
            (Some("b"), EventKind::StepFailure),
            (Some("c"), EventKind::StepFailure),
            (None, EventKind::RunFailure),
        ],
        "the steps in flight end before the run"
    );
    let b = &events
        .iter()
        .find(|e| {
            e.event.step_key.as_deref() == Some("b") && e.event.kind == EventKind::StepFailure
        })
        .unwrap()
        .event;
    assert_eq!(b.asset_key, Some(key("b")));
    assert_eq!(b.partition_key.as_deref(), Some("2026-11-22-10:00"));
    assert!(
        b.body
            .message
            .as_deref()
            .is_some_and(|m| m.contains("stopped renewing its lease")),
        "{b:?}"
    );
}

/// A run of an asset partition that a run in flight holds waits, while later runs of other
/// partitions or assets are claimed past it; it is claimed once that run ends.
async fn case_claim_never_runs_one_asset_partition_twice_at_once(storage: Arc<dyn Storage>) {
    let partitioned = |keys: &[&str], from: &str, to: Option<&str>, created| NewRun {
        partition_key: Some(from.into()),
        partition_key_end: to.map(str::to_owned),
        ..new_run(RunStatus::Queued, keys, created)
    };
    let busy = create(
        &storage,
        partitioned(&["a", "b"], "2026-11-22-10:00", None, 0),
    )
    .await;
    let same = create(&storage, partitioned(&["b"], "2026-11-22-10:00", None, 1)).await;
    let range = create(
        &storage,
        partitioned(&["a"], "2026-11-22-08:00", Some("2026-11-22-11:00"), 2),
    )
    .await;
    let day = create(&storage, partitioned(&["a"], "2026-11-22", None, 3)).await;
    let whole = create(&storage, new_run(RunStatus::Queued, &["b"], 4)).await;
    let other_hour = create(&storage, partitioned(&["a"], "2026-11-22-11:00", None, 5)).await;
    let other_asset = create(&storage, partitioned(&["c"], "2026-11-22-10:00", None, 6)).await;

    let first = claim(&storage, "w", 10, &no_limits()).await.unwrap();
    assert_eq!(first.run.run_id, busy.run_id);
    // `same` (b at 10:00), `range` (a over 08:00-11:00), `day` (a on the 22nd) and `whole` (all
    // of b) each share a partition with `busy`: the oldest run free of it is claimed.
    let second = claim(&storage, "w", 11, &no_limits()).await.unwrap();
    assert_eq!(second.run.run_id, other_hour.run_id, "a at 11:00 is free");
    let third = claim(&storage, "w", 12, &no_limits()).await.unwrap();
    assert_eq!(third.run.run_id, other_asset.run_id, "c is free");
    assert_eq!(claim(&storage, "w", 13, &no_limits()).await, None);

    // When `busy` ends, `same` and `whole` (b) may go; `range` and `day` still wait for a at
    // 11:00.
    storage
        .transition_run(busy.run_id, RunStatus::Failure, at(14))
        .await
        .unwrap();
    let next = claim(&storage, "w", 15, &no_limits()).await.unwrap();
    assert_eq!(next.run.run_id, same.run_id);
    assert_eq!(
        claim(&storage, "w", 16, &no_limits()).await,
        None,
        "whole b waits for b at 10:00; a waits for a at 11:00"
    );
    for done in [same.run_id, other_hour.run_id] {
        storage
            .transition_run(done, RunStatus::Failure, at(17))
            .await
            .unwrap();
    }
    let mut rest = Vec::new();
    while let Some(lease) = claim(&storage, "w", 18, &no_limits()).await {
        rest.push(lease.run.run_id);
    }
    assert_eq!(
        rest,
        vec![range.run_id, whole.run_id],
        "day waits for the range"
    );
    storage
        .transition_run(range.run_id, RunStatus::Failure, at(19))
        .await
        .unwrap();
    assert_eq!(
        claim(&storage, "w", 20, &no_limits())
            .await
            .map(|l| l.run.run_id),
        Some(day.run_id)
    );
}
