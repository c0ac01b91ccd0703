//! Schedules, ticks (once each, atomically with their run), backfills and sensor cursors.

use super::*;

conformance!(
    case_schedule_states,
    case_record_tick_once,
    case_record_tick_is_atomic,
    case_backfill_round_trip,
    case_backfill_is_atomic,
    case_sensor_cursors,
    case_prune_ticks_keeps_where_the_next_evaluation_starts,
);

async fn case_schedule_states(storage: Arc<dyn Storage>) {
    assert!(storage.schedule_states().await.unwrap().is_empty());
    let on = storage
        .set_schedule_enabled("nightly", true, at(1))
        .await
        .unwrap();
    assert_eq!(
        on,
        ScheduleState {
            name: "nightly".to_owned(),
            enabled: true,
            updated_at: at(1),
        }
    );
    storage
        .set_schedule_enabled("hourly é", false, at(2))
        .await
        .unwrap();
    let off = storage
        .set_schedule_enabled("nightly", false, at(3))
        .await
        .unwrap();
    assert!(!off.enabled);
    assert_eq!(off.updated_at, at(3));
    let states = storage.schedule_states().await.unwrap();
    assert_eq!(
        states
            .iter()
            .map(|s| (s.name.as_str(), s.enabled, s.updated_at))
            .collect::<Vec<_>>(),
        vec![("hourly é", false, at(2)), ("nightly", false, at(3))]
    );
    storage
        .set_schedule_enabled("nightly", true, at(4))
        .await
        .unwrap();
    assert!(storage.schedule_states().await.unwrap()[1].enabled);
}

async fn case_record_tick_once(storage: Arc<dyn Storage>) {
    let mut run = new_run(RunStatus::Queued, &["daily/report"], 100);
    run.partition_key = Some("2025-06-01".to_owned());
    run.tags.insert("team".to_owned(), "data".to_owned());
    let recorded = storage
        .record_tick(
            &new_tick("daily", at(100), Some(&run), TickStatus::Requested, None),
            at(101),
        )
        .await
        .unwrap();
    let tick = Tick {
        schedule: "daily".to_owned(),
        tick_time: at(100),
        status: TickStatus::Requested,
        run_id: Some(run.run_id),
        message: None,
        created_at: at(101),
    };
    assert_eq!(recorded, TickRecord::Recorded(tick.clone()));
    // The run is queued as create_run would, tagged with its schedule, with its event.
    let stored = storage.get_run(run.run_id).await.unwrap().unwrap();
    assert_eq!(stored.status, RunStatus::Queued);
    assert_eq!(stored.partition_key.as_deref(), Some("2025-06-01"));
    assert_eq!(stored.created_at, at(100));
    assert_eq!(
        stored.tags,
        BTreeMap::from([
            ("team".to_owned(), "data".to_owned()),
            (SCHEDULE_TAG.to_owned(), "daily".to_owned()),
        ])
    );
    assert_eq!(
        kinds(&events_of(&storage, run.run_id).await),
        vec![EventKind::RunEnqueued]
    );
    let by_asset = RunFilter {
        asset_key: Some(key("daily/report")),
        ..RunFilter::default()
    };
    assert_eq!(
        run_ids(&storage.list_runs(&by_asset).await.unwrap()),
        vec![run.run_id]
    );

    // The same tick again (another daemon, or after a restart), with a fresh run: nothing
    // changes, and the answer names the first run.
    let again = new_run(RunStatus::Queued, &["daily/report"], 100);
    let second = storage
        .record_tick(
            &new_tick(
                "daily",
                at(100),
                Some(&again),
                TickStatus::Requested,
                Some("dup"),
            ),
            at(150),
        )
        .await
        .unwrap();
    assert_eq!(second, TickRecord::AlreadyRecorded(tick.clone()));
    assert_eq!(storage.get_run(again.run_id).await.unwrap(), None);
    assert_eq!(
        storage
            .list_runs(&RunFilter::default())
            .await
            .unwrap()
            .len(),
        1
    );
    let skipped_again = storage
        .record_tick(
            &new_tick("daily", at(100), None, TickStatus::Skipped, None),
            at(150),
        )
        .await
        .unwrap();
    assert_eq!(skipped_again, TickRecord::AlreadyRecorded(tick.clone()));

    // A skipped tick records no run.
    let skipped = storage
        .record_tick(
            &new_tick(
                "daily",
                at(200),
                None,
                TickStatus::Skipped,
                Some("no partition for this tick"),
            ),
            at(201),
        )
        .await
        .unwrap();
    let skipped_tick = Tick {
        schedule: "daily".to_owned(),
        tick_time: at(200),
        status: TickStatus::Skipped,
        run_id: None,
        message: Some("no partition for this tick".to_owned()),
        created_at: at(201),
    };
    assert_eq!(skipped, TickRecord::Recorded(skipped_tick.clone()));
    assert_eq!(
        storage
            .list_runs(&RunFilter::default())
            .await
            .unwrap()
            .len(),
        1
    );

    // The same tick time of another schedule is another tick.
    let other = new_run(RunStatus::Queued, &["a"], 100);
    assert!(matches!(
        storage
            .record_tick(
                &new_tick("hourly", at(100), Some(&other), TickStatus::Requested, None),
                at(101)
            )
            .await
            .unwrap(),
        TickRecord::Recorded(_)
    ));
    let queued = claim(&storage, "w", 300, &no_limits()).await.unwrap();
    assert_eq!(
        queued.run.run_id, run.run_id,
        "a tick's run is queued like any other"
    );

    // Newest first, per schedule.
    let third = storage
        .record_tick(
            &new_tick("daily", at(150), None, TickStatus::Skipped, None),
            at(151),
        )
        .await
        .unwrap();
    let TickRecord::Recorded(third) = third else {
        panic!("a new tick");
    };
    assert_eq!(
        storage.schedule_ticks("daily", 10).await.unwrap(),
        vec![skipped_tick.clone(), third, tick]
    );
    assert_eq!(
        storage.schedule_ticks("daily", 1).await.unwrap(),
        vec![skipped_tick]
    );
    assert_eq!(storage.schedule_ticks("hourly", 10).await.unwrap().len(), 1);
    assert!(
        storage
            .schedule_ticks("never", 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn case_record_tick_is_atomic(storage: Arc<dyn Storage>) {
    // A tick whose run cannot be created (its id is taken) is not recorded either.
    let taken = create(&storage, new_run(RunStatus::Queued, &["a"], 0)).await;
    let clash = NewRun {
        run_id: taken.run_id,
        ..new_run(RunStatus::Queued, &["b"], 1)
    };
    assert!(matches!(
        storage
            .record_tick(&new_tick("s", at(1), Some(&clash), TickStatus::Requested, None), at(1))
            .await,
        Err(StorageError::RunExists(id)) if id == taken.run_id
    ));
    assert!(storage.schedule_ticks("s", 10).await.unwrap().is_empty());
    // So a later evaluation of the same tick can still record it.
    let run = new_run(RunStatus::Queued, &["b"], 1);
    assert!(matches!(
        storage
            .record_tick(&new_tick("s", at(1), Some(&run), TickStatus::Requested, None), at(2))
            .await
            .unwrap(),
        TickRecord::Recorded(Tick { run_id: Some(id), .. }) if id == run.run_id
    ));
}

async fn case_backfill_round_trip(storage: Arc<dyn Storage>) {
    assert_eq!(storage.get_backfill("b1").await.unwrap(), None);
    assert!(storage.list_backfills(10).await.unwrap().is_empty());
    let runs = partition_runs(3, 10);
    let b1 = backfill("b1", 3, 10);
    storage.create_backfill(&b1, &runs).await.unwrap();
    assert_eq!(storage.get_backfill("b1").await.unwrap(), Some(b1.clone()));
    for run in &runs {
        let stored = storage.get_run(run.run_id).await.unwrap().unwrap();
        assert_eq!(stored.status, RunStatus::Queued);
        assert_eq!(stored.partition_key, run.partition_key);
        assert_eq!(
            stored.tags.get(BACKFILL_TAG).map(String::as_str),
            Some("b1")
        );
        assert_eq!(
            kinds(&events_of(&storage, run.run_id).await),
            vec![EventKind::RunEnqueued]
        );
    }
    let tagged = RunFilter {
        tag: Some((BACKFILL_TAG.to_owned(), "b1".to_owned())),
        ..RunFilter::default()
    };
    let mut expected: Vec<RunId> = runs.iter().map(|r| r.run_id).collect();
    expected.reverse();
    assert_eq!(
        run_ids(&storage.list_runs(&tagged).await.unwrap()),
        expected
    );
    assert_eq!(
        storage
            .count_runs_by_status(BACKFILL_TAG, "b1")
            .await
            .unwrap(),
        vec![(RunStatus::Queued, 3)]
    );

    // Its runs go through the queue; the counts follow.
    let first = claim(&storage, "w", 20, &no_limits()).await.unwrap();
    assert_eq!(first.run.run_id, runs[0].run_id);
    storage
        .transition_run(first.run.run_id, RunStatus::Started, at(21))
        .await
        .unwrap();
    storage
        .transition_run(first.run.run_id, RunStatus::Success, at(22))
        .await
        .unwrap();
    let second = claim(&storage, "w", 23, &no_limits()).await.unwrap();
    assert_eq!(second.run.run_id, runs[1].run_id);
    assert_eq!(
        storage
            .count_runs_by_status(BACKFILL_TAG, "b1")
            .await
            .unwrap(),
        vec![
            (RunStatus::Queued, 1),
            (RunStatus::Starting, 1),
            (RunStatus::Success, 1)
        ]
    );

    // A second backfill, an empty one; newest first.
    let b2 = backfill("b2", 2, 30);
    storage
        .create_backfill(&b2, &partition_runs(2, 30))
        .await
        .unwrap();
    let b0 = backfill("b0", 0, 40);
    storage.create_backfill(&b0, &[]).await.unwrap();
    assert_eq!(
        storage.list_backfills(10).await.unwrap(),
        vec![b0.clone(), b2.clone(), b1.clone()]
    );
    assert_eq!(storage.list_backfills(2).await.unwrap(), vec![b0, b2]);
    assert_eq!(
        storage
            .count_runs_by_status(BACKFILL_TAG, "b2")
            .await
            .unwrap(),
        vec![(RunStatus::Queued, 2)]
    );
    assert!(
        storage
            .count_runs_by_status(BACKFILL_TAG, "b0")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        storage
            .count_runs_by_status("team", "nobody")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        storage
            .list_runs(&RunFilter::default())
            .await
            .unwrap()
            .len(),
        5
    );
}

async fn case_backfill_is_atomic(storage: Arc<dyn Storage>) {
    let taken = create(&storage, new_run(RunStatus::Queued, &["a"], 0)).await;
    let mut runs = partition_runs(3, 1);
    runs[2].run_id = taken.run_id;
    assert!(matches!(
        storage.create_backfill(&backfill("b", 3, 1), &runs).await,
        Err(StorageError::RunExists(id)) if id == taken.run_id
    ));
    assert_eq!(storage.get_backfill("b").await.unwrap(), None);
    for run in &runs[..2] {
        assert_eq!(storage.get_run(run.run_id).await.unwrap(), None);
        assert!(events_of(&storage, run.run_id).await.is_empty());
    }
    assert_eq!(
        storage
            .list_runs(&RunFilter::default())
            .await
            .unwrap()
            .len(),
        1
    );
    // The same id again is refused.
    storage
        .create_backfill(&backfill("b", 1, 2), &partition_runs(1, 2))
        .await
        .unwrap();
    assert!(
        storage
            .create_backfill(&backfill("b", 1, 3), &partition_runs(1, 3))
            .await
            .is_err()
    );
    assert_eq!(
        storage
            .list_runs(&RunFilter::default())
            .await
            .unwrap()
            .len(),
        2
    );
}

async fn case_sensor_cursors(storage: Arc<dyn Storage>) {
    assert_eq!(storage.sensor_cursor("files").await.unwrap(), None);
    storage
        .set_sensor_cursor("files", "offset=10", at(1))
        .await
        .unwrap();
    storage.set_sensor_cursor("other", "", at(1)).await.unwrap();
    assert_eq!(
        storage.sensor_cursor("files").await.unwrap().as_deref(),
        Some("offset=10")
    );
    storage
        .set_sensor_cursor("files", "{\"offset\": 20, \"é\": true}", at(2))
        .await
        .unwrap();
    assert_eq!(
        storage.sensor_cursor("files").await.unwrap().as_deref(),
        Some("{\"offset\": 20, \"é\": true}")
    );
    assert_eq!(
        storage.sensor_cursor("other").await.unwrap().as_deref(),
        Some("")
    );
}

/// Retention of ticks: schedule and sensor ticks recorded before the cut go, except each
/// name's latest; automation ticks before it go with their evaluations, except the latest tick
/// and the tick of each asset's latest evaluation; a later tick still extends the latest.
async fn case_prune_ticks_keeps_where_the_next_evaluation_starts(storage: Arc<dyn Storage>) {
    use orch::storage::{AutomationEvaluationRecord, AutomationTickWrite, NewAutomationTick};
    for (name, secs) in [("hourly", 10), ("hourly", 20), ("hourly", 30), ("lake", 15)] {
        storage
            .record_tick(&NewTick::skipped(name, at(secs), "nothing"), at(secs))
            .await
            .unwrap();
    }
    // Asset `a` is evaluated at ticks 1 (requesting a run) and 3, `b` at ticks 1 and 2
    // (requesting nothing); ticks 1 to 5, one per 10 s.
    let mut previous = 0;
    let mut ids = Vec::new();
    for i in 1..=5i64 {
        let evaluated: &[&str] = match i {
            1 => &["a", "b"],
            2 => &["b"],
            3 => &["a"],
            _ => &[],
        };
        let evaluations: Vec<AutomationEvaluationRecord> = evaluated
            .iter()
            .map(|k| AutomationEvaluationRecord {
                tick_id: 0,
                tick_time: None,
                asset_key: (*k).to_owned(),
                requested: if i == 1 && *k == "a" {
                    vec!["p".to_owned()]
                } else {
                    vec![]
                },
                run_ids: vec![],
                tree: format!("{{\"tick\": {i}}}"),
            })
            .collect();
        let tick = storage
            .record_automation_tick(&AutomationTickWrite {
                tick: &NewAutomationTick {
                    tick_time: at(i * 10),
                    previous_id: previous,
                    daemon: "d".into(),
                    evaluated_at: at(i * 10),
                    duration_ms: 1.0,
                    assets_evaluated: 2,
                    requested: 0,
                },
                runs: &[],
                evaluations: &evaluations,
                states: &[],
            })
            .await
            .unwrap()
            .expect("recorded");
        previous = tick.id;
        ids.push(tick.id);
    }

    // An evaluation that requested nothing replaced the asset's previous such one; the one
    // that requested a run stays.
    let a = storage.automation_evaluations("a", 10).await.unwrap();
    assert_eq!(a.len(), 2);
    assert_eq!(a[1].requested, ["p"]);
    let b = storage.automation_evaluations("b", 10).await.unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].tick_id, ids[1]);

    // A cut before everything deletes nothing; a batch of one deletes one.
    assert_eq!(storage.prune_schedule_ticks(at(5), 100).await.unwrap(), 0);
    assert_eq!(storage.prune_automation_ticks(at(5), 100).await.unwrap(), 0);
    assert_eq!(storage.prune_schedule_ticks(at(100), 1).await.unwrap(), 1);
    // Everything before the cut: `hourly`'s older tick is left to delete; `lake`'s only tick
    // and `hourly`'s latest stay.
    assert_eq!(storage.prune_schedule_ticks(at(100), 100).await.unwrap(), 1);
    let hourly: Vec<_> = storage
        .schedule_ticks("hourly", 10)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.tick_time)
        .collect();
    assert_eq!(hourly, vec![at(30)]);
    assert_eq!(storage.schedule_ticks("lake", 10).await.unwrap().len(), 1);

    // Automation: ticks 1 and 4 go; 2 holds `b`'s latest evaluation, 3 `a`'s, and 5 is the
    // latest tick.
    let deleted = storage.prune_automation_ticks(at(100), 100).await.unwrap();
    assert_eq!(deleted, 2, "ticks 1 and 4");
    let left: Vec<i64> = storage
        .automation_ticks(10)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(left, vec![ids[4], ids[2], ids[1]]);
    let a = storage.automation_evaluations("a", 10).await.unwrap();
    assert_eq!(a.len(), 1, "`a`'s evaluation at tick 1 went with its tick");
    assert_eq!(a[0].tick_id, ids[2]);
    assert_eq!(a[0].tick_time, Some(at(30)));
    let b = storage.automation_evaluations("b", 10).await.unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].tick_time, Some(at(20)));
    assert_eq!(
        storage.prune_automation_ticks(at(100), 100).await.unwrap(),
        0
    );

    // The next tick extends the latest one.
    let next = storage
        .record_automation_tick(&AutomationTickWrite {
            tick: &NewAutomationTick {
                tick_time: at(60),
                previous_id: ids[4],
                daemon: "d".into(),
                evaluated_at: at(60),
                duration_ms: 1.0,
                assets_evaluated: 2,
                requested: 0,
            },
            runs: &[],
            evaluations: &[],
            states: &[],
        })
        .await
        .unwrap();
    assert!(
        next.is_some(),
        "a tick after the kept latest one is recorded"
    );

    // Through the retention entry point, with runs: the counts add up.
    let pruned = orch::storage::prune_in_batches(storage.as_ref(), at(1000), 1, 100)
        .await
        .unwrap();
    assert_eq!(pruned.runs, 0);
    assert_eq!(pruned.ticks, 1, "tick 5 is no longer the latest");
}
