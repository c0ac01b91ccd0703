//! The event log: events and logs round trip, what they derive (materializations, failures,
//! checks), big and concurrent appends, and reads across runs (sensors, the web UI).

use super::*;

conformance!(
    case_events_round_trip,
    case_materializations,
    case_failure_after_success,
    case_check_results,
    case_logs_round_trip,
    case_big_batch,
    case_concurrent_appends,
    case_events_after,
    case_asset_events_newest_first,
);

fn full_body() -> EventBody {
    EventBody {
        message: Some("step failed: ünïcödé \"quotes\" \\ and\nnewlines".to_owned()),
        error: Some(ErrorInfo {
            message: "boom".to_owned(),
            causes: vec!["cause one".to_owned(), "root cause".to_owned()],
        }),
        attempt: Some(3),
        retry_delay_ms: Some(1500),
        duration_ms: Some(12.5),
        metadata: Metadata::new()
            .with("row_count", 42_i64)
            .with("big", MetadataValue::Int(i64::MAX))
            .with("ratio", 0.1)
            .with("ok", true)
            .with("note", "text")
            .with("path", MetadataValue::Path("/tmp/x.parquet".to_owned()))
            .with(
                "url",
                MetadataValue::Url("https://example.com/x".to_owned()),
            )
            .with("took", MetadataValue::DurationMs(3.25))
            .with(
                "json",
                serde_json::json!({"z": [1, 2.5, null], "a": {"nested": "yes"}}),
            ),
        code_version: Some("v7".to_owned()),
        check: Some(CheckEvaluation {
            check_name: "not_null".to_owned(),
            passed: false,
            severity: "ERROR".to_owned(),
            description: Some("ids are never null".to_owned()),
        }),
        partition_key_end: Some("2024-01-31".to_owned()),
    }
}

async fn case_events_round_trip(storage: Arc<dyn Storage>) {
    let run = create(&storage, new_run(RunStatus::Started, &["a", "b/c"], 0)).await;
    let other = create(&storage, new_run(RunStatus::Started, &["a"], 0)).await;
    let id = run.run_id;
    let first = vec![
        event(id, EventKind::RunStart, 1),
        Event {
            step_key: Some("a".to_owned()),
            ..event(id, EventKind::StepStart, 2)
        },
        Event {
            step_key: Some("a".to_owned()),
            asset_key: Some(key("a")),
            partition_key: Some("2024-01-01".to_owned()),
            body: full_body(),
            ..event(id, EventKind::StepFailure, 3)
        },
        Event {
            step_key: Some("b__c".to_owned()),
            ..event(id, EventKind::StepStart, 3)
        },
    ];
    let second = vec![
        materialization(id, "b/c", None, 4),
        Event {
            step_key: Some("b__c".to_owned()),
            ..event(id, EventKind::StepSuccess, 5)
        },
        // The same instant as the one before: order is append order, not time.
        event(id, EventKind::EngineEvent, 5).message("done"),
        event(id, EventKind::RunSuccess, 5),
    ];
    storage.append_events(&first).await.unwrap();
    storage
        .append_events(&[event(other.run_id, EventKind::RunStart, 1)])
        .await
        .unwrap();
    storage.append_events(&second).await.unwrap();
    storage.append_events(&[]).await.unwrap();

    let all = events_of(&storage, id).await;
    let expected: Vec<Event> = first.iter().chain(&second).cloned().collect();
    assert_eq!(
        all.iter().map(|e| e.event.clone()).collect::<Vec<_>>(),
        expected,
        "every field round-trips, in order"
    );
    assert!(all.windows(2).all(|w| w[0].id < w[1].id), "ids grow");
    let theirs = events_of(&storage, other.run_id).await;
    assert_eq!(theirs.len(), 1);
    assert!(
        theirs[0].id > all[3].id && theirs[0].id < all[4].id,
        "ids grow across runs"
    );

    let with = async |filter: EventFilter| {
        storage
            .run_events(id, &filter)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect::<Vec<_>>()
    };
    let ids = |idx: &[usize]| idx.iter().map(|&i| all[i].id).collect::<Vec<_>>();

    let f = EventFilter {
        after_id: Some(all[4].id),
        ..EventFilter::default()
    };
    assert_eq!(with(f).await, ids(&[5, 6, 7]));
    let f = EventFilter {
        after_id: Some(all[7].id),
        ..EventFilter::default()
    };
    assert_eq!(with(f).await, ids(&[]));
    let f = EventFilter {
        kinds: vec![EventKind::StepStart, EventKind::RunSuccess],
        ..EventFilter::default()
    };
    assert_eq!(with(f).await, ids(&[1, 3, 7]));
    let f = EventFilter {
        step_key: Some("b__c".to_owned()),
        ..EventFilter::default()
    };
    assert_eq!(with(f).await, ids(&[3, 4, 5]));
    let f = EventFilter {
        limit: Some(3),
        ..EventFilter::default()
    };
    assert_eq!(with(f).await, ids(&[0, 1, 2]));
    let f = EventFilter {
        after_id: Some(all[1].id),
        kinds: vec![
            EventKind::StepStart,
            EventKind::StepSuccess,
            EventKind::StepFailure,
        ],
        step_key: Some("a".to_owned()),
        limit: Some(5),
    };
    assert_eq!(with(f).await, ids(&[2]));
}

async fn case_materializations(storage: Arc<dyn Storage>) {
    let r1 = create(
        &storage,
        new_run(RunStatus::Started, &["daily", "plain"], 0),
    )
    .await;
    let r2 = create(&storage, new_run(RunStatus::Started, &["daily"], 0)).await;
    let with_meta = |mut e: Event, rows: i64, version: &str| {
        e.body.metadata = Metadata::new().with("row_count", rows);
        e.body.code_version = Some(version.to_owned());
        e
    };
    storage
        .append_events(&[
            with_meta(
                materialization(r1.run_id, "daily", Some("2024-01-01"), 1),
                10,
                "v1",
            ),
            with_meta(
                materialization(r1.run_id, "daily", Some("2024-01-02"), 2),
                20,
                "v1",
            ),
            materialization(r1.run_id, "plain", None, 3),
            event(r1.run_id, EventKind::RunSuccess, 4),
        ])
        .await
        .unwrap();
    storage
        .append_events(&[
            with_meta(
                materialization(r2.run_id, "daily", Some("2024-01-01"), 5),
                11,
                "v2",
            ),
            with_meta(
                materialization(r2.run_id, "daily", Some("2024-01-01"), 6),
                12,
                "v3",
            ),
            // A partitioned event of another asset, and events without assets.
            materialization(r2.run_id, "nested/x", Some("k"), 7),
            event(r2.run_id, EventKind::RunSuccess, 8),
        ])
        .await
        .unwrap();

    let e1 = events_of(&storage, r1.run_id).await;
    let e2 = events_of(&storage, r2.run_id).await;

    let all = storage.asset_partitions(&[]).await.unwrap();
    let coordinates: Vec<(String, Option<String>)> = all
        .iter()
        .map(|r| (r.asset_key.to_string(), r.partition_key.clone()))
        .collect();
    assert_eq!(
        coordinates,
        vec![
            ("daily".to_owned(), Some("2024-01-01".to_owned())),
            ("daily".to_owned(), Some("2024-01-02".to_owned())),
            ("nested/x".to_owned(), Some("k".to_owned())),
            ("plain".to_owned(), None),
        ]
    );
    let jan1 = all[0].materialization.as_ref().unwrap();
    assert_eq!(jan1.run_id, r2.run_id, "the latest materialization wins");
    assert_eq!(jan1.event_id, e2[1].id, "and points at its own event");
    assert_eq!(jan1.timestamp, at(6));
    assert_eq!(jan1.metadata.row_count(), Some(12));
    assert_eq!(jan1.code_version.as_deref(), Some("v3"));
    let jan2 = all[1].materialization.as_ref().unwrap();
    assert_eq!(
        (jan2.run_id, jan2.event_id, jan2.timestamp),
        (r1.run_id, e1[1].id, at(2))
    );
    assert_eq!(jan2.metadata, Metadata::new().with("row_count", 20_i64));
    assert_eq!(jan2.code_version.as_deref(), Some("v1"));
    let plain = all[3].materialization.as_ref().unwrap();
    assert_eq!(
        (plain.event_id, plain.code_version.as_deref()),
        (e1[2].id, None)
    );
    assert!(plain.metadata.is_empty());
    assert!(
        all.iter()
            .all(|r| r.last_failure.is_none() && !r.is_failed())
    );

    // Filtered by key, in key order whatever the order asked.
    let some = storage
        .asset_partitions(&[key("plain"), key("daily"), key("missing")])
        .await
        .unwrap();
    assert_eq!(some, vec![all[0].clone(), all[1].clone(), all[3].clone()]);

    // Per asset: the latest over all partitions.
    let latest = storage.latest_by_asset(&[]).await.unwrap();
    assert_eq!(latest.len(), 3);
    assert_eq!(latest[0], all[0], "daily: 2024-01-01 was materialized last");
    assert_eq!(latest[1], all[2]);
    assert_eq!(latest[2], all[3]);
    let one = storage.latest_by_asset(&[key("plain")]).await.unwrap();
    assert_eq!(one, vec![all[3].clone()]);
    assert!(
        storage
            .latest_by_asset(&[key("missing")])
            .await
            .unwrap()
            .is_empty()
    );

    // Later: 2024-01-02 again, so it becomes the latest of `daily`.
    storage
        .append_events(&[materialization(r2.run_id, "daily", Some("2024-01-02"), 9)])
        .await
        .unwrap();
    let latest = storage.latest_by_asset(&[key("daily")]).await.unwrap();
    assert_eq!(latest.len(), 1);
    assert_eq!(latest[0].partition_key.as_deref(), Some("2024-01-02"));
    assert_eq!(latest[0].materialization.as_ref().unwrap().timestamp, at(9));
}

async fn case_failure_after_success(storage: Arc<dyn Storage>) {
    let run = create(&storage, new_run(RunStatus::Started, &["a", "b", "c"], 0)).await;
    let id = run.run_id;
    let mut with_error = failure(id, "a", None, 2);
    with_error.body.error = Some(ErrorInfo {
        message: "disk full".to_owned(),
        causes: vec![],
    });
    with_error.body.message = Some("the step failed".to_owned());
    storage
        .append_events(&[
            materialization(id, "a", None, 1),
            with_error,
            failure(id, "b", Some("p"), 3).message("only a message"),
            failure(id, "c", None, 4),
        ])
        .await
        .unwrap();
    let records = storage.asset_partitions(&[]).await.unwrap();
    let [a, b, c] = &records[..] else {
        panic!("three records: {records:?}");
    };
    assert!(a.is_failed(), "a failure after a success");
    assert_eq!(a.materialization.as_ref().unwrap().timestamp, at(1));
    let f = a.last_failure.as_ref().unwrap();
    assert_eq!((f.run_id, f.timestamp), (id, at(2)));
    assert_eq!(
        f.message.as_deref(),
        Some("disk full"),
        "the error's message first"
    );
    assert!(b.is_failed() && b.materialization.is_none());
    assert_eq!(b.partition_key.as_deref(), Some("p"));
    assert_eq!(
        b.last_failure.as_ref().unwrap().message.as_deref(),
        Some("only a message")
    );
    assert_eq!(c.last_failure.as_ref().unwrap().message, None);

    // A success after the failure: no longer failed, the failure is kept.
    storage
        .append_events(&[materialization(id, "a", None, 5)])
        .await
        .unwrap();
    let a = storage
        .asset_partitions(&[key("a")])
        .await
        .unwrap()
        .remove(0);
    assert!(!a.is_failed());
    assert_eq!(a.last_failure.as_ref().unwrap().timestamp, at(2));

    let latest = storage
        .latest_by_asset(&[key("a"), key("b")])
        .await
        .unwrap();
    assert_eq!(latest.len(), 2);
    assert!(!latest[0].is_failed());
    assert!(latest[1].is_failed() && latest[1].materialization.is_none());
    assert_eq!(latest[1].partition_key.as_deref(), Some("p"));
}

async fn case_check_results(storage: Arc<dyn Storage>) {
    let run = create(&storage, new_run(RunStatus::Started, &["a", "b"], 0)).await;
    let id = run.run_id;
    let mut partitioned = check(id, "a", "fresh", true, 3);
    partitioned.partition_key = Some("2024-01-01".to_owned());
    storage
        .append_events(&[
            check(id, "a", "not_null", true, 1),
            check(id, "b", "unique", false, 2),
            // A check event without a result is stored but derives nothing.
            Event {
                asset_key: Some(key("a")),
                ..event(id, EventKind::AssetCheckEvaluation, 2)
            },
        ])
        .await
        .unwrap();
    storage
        .append_events(&[partitioned, check(id, "a", "not_null", false, 4)])
        .await
        .unwrap();
    let events = events_of(&storage, id).await;
    assert_eq!(events.len(), 5);

    let results = storage.check_results(&key("a"), 10).await.unwrap();
    let summary: Vec<(&str, bool, i64)> = results
        .iter()
        .map(|r| {
            (
                r.evaluation.check_name.as_str(),
                r.evaluation.passed,
                r.event_id,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("not_null", false, events[4].id),
            ("fresh", true, events[3].id),
            ("not_null", true, events[0].id),
        ],
        "newest first"
    );
    let newest = &results[0];
    assert_eq!(newest.run_id, id);
    assert_eq!(newest.asset_key, key("a"));
    assert_eq!(newest.partition_key, None);
    assert_eq!(newest.timestamp, at(4));
    assert_eq!(
        newest.evaluation,
        CheckEvaluation {
            check_name: "not_null".to_owned(),
            passed: false,
            severity: "WARN".to_owned(),
            description: Some("not_null at 4".to_owned()),
        }
    );
    assert_eq!(newest.metadata, Metadata::new().with("secs", 4_i64));
    assert_eq!(results[1].partition_key.as_deref(), Some("2024-01-01"));

    let limited = storage.check_results(&key("a"), 2).await.unwrap();
    assert_eq!(limited, results[..2].to_vec());
    let b = storage.check_results(&key("b"), 10).await.unwrap();
    assert_eq!(b.len(), 1);
    assert!(!b[0].evaluation.passed);
    assert!(
        storage
            .check_results(&key("c"), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn case_logs_round_trip(storage: Arc<dyn Storage>) {
    let run = create(&storage, new_run(RunStatus::Started, &["a", "b"], 0)).await;
    let other = create(&storage, new_run(RunStatus::Started, &["a"], 0)).await;
    let line = |run_id: RunId, step: &str, i: i64, stream: LogStream, level: LogLevel| LogLine {
        run_id,
        step_key: step.to_owned(),
        stream,
        level,
        // Not in time order: order is append order.
        timestamp: at(100 - i),
        message: format!("{step} line {i}\twith tab"),
    };
    let streams = [LogStream::Log, LogStream::Stdout, LogStream::Stderr];
    let levels = [
        LogLevel::Debug,
        LogLevel::Info,
        LogLevel::Warn,
        LogLevel::Error,
    ];
    let mut lines = Vec::new();
    for i in 0..40 {
        let step = if i % 3 == 0 { "b" } else { "a" };
        lines.push(line(
            run.run_id,
            step,
            i,
            streams[i as usize % 3],
            levels[i as usize % 4],
        ));
    }
    storage.append_logs(&lines[..25]).await.unwrap();
    storage
        .append_logs(&[line(other.run_id, "a", 0, LogStream::Log, LogLevel::Info)])
        .await
        .unwrap();
    storage.append_logs(&lines[25..]).await.unwrap();
    storage.append_logs(&[]).await.unwrap();

    assert_eq!(storage.step_logs(run.run_id, None).await.unwrap(), lines);
    let a: Vec<LogLine> = lines
        .iter()
        .filter(|l| l.step_key == "a")
        .cloned()
        .collect();
    assert_eq!(storage.step_logs(run.run_id, Some("a")).await.unwrap(), a);
    assert_eq!(
        storage.step_logs(other.run_id, None).await.unwrap().len(),
        1
    );
    assert!(
        storage
            .step_logs(run.run_id, Some("zzz"))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn case_big_batch(storage: Arc<dyn Storage>) {
    let run = create(&storage, new_run(RunStatus::Started, &["big"], 0)).await;
    let id = run.run_id;
    let partitions = ["p0", "p1", "p2", "p3", "p4", "p5", "p6"];
    let mut events = Vec::new();
    for i in 0..5000_i64 {
        let e = match i % 5 {
            0 | 3 => {
                let mut m = materialization(id, "big", Some(partitions[i as usize % 7]), i);
                m.body.metadata = Metadata::new().with("i", i);
                m
            }
            1 => materialization(id, "other", None, i),
            2 => Event {
                step_key: Some(format!("step_{}", i % 100)),
                ..event(id, EventKind::StepStart, i)
            },
            _ => check(id, "big", "c", i % 2 == 0, i),
        };
        events.push(e);
    }
    storage.append_events(&events).await.unwrap();

    let stored = events_of(&storage, id).await;
    assert_eq!(stored.len(), 5000);
    assert!(
        stored.iter().map(|s| &s.event).eq(events.iter()),
        "all stored, in order"
    );
    let event_ids: HashMap<i64, usize> =
        stored.iter().enumerate().map(|(i, s)| (s.id, i)).collect();

    let records = storage.asset_partitions(&[key("big")]).await.unwrap();
    assert_eq!(records.len(), partitions.len());
    for record in &records {
        let partition = record.partition_key.as_deref().unwrap();
        let last = (0..5000_i64)
            .rev()
            .find(|i| matches!(i % 5, 0 | 3) && partitions[*i as usize % 7] == partition)
            .unwrap();
        let m = record.materialization.as_ref().unwrap();
        assert_eq!(m.timestamp, at(last), "{partition}");
        assert_eq!(m.metadata.get("i"), Some(&MetadataValue::Int(last)));
        assert_eq!(
            event_ids[&m.event_id], last as usize,
            "{partition}: event id"
        );
    }
    let other = storage.asset_partitions(&[key("other")]).await.unwrap();
    assert_eq!(
        event_ids[&other[0].materialization.as_ref().unwrap().event_id],
        4996
    );
    let checks = storage.check_results(&key("big"), 2000).await.unwrap();
    assert_eq!(checks.len(), 1000);
    assert_eq!(event_ids[&checks[0].event_id], 4999);
    assert_eq!(checks[0].timestamp, at(4999));
}

async fn case_concurrent_appends(storage: Arc<dyn Storage>) {
    let run = create(&storage, new_run(RunStatus::Started, &["a"], 0)).await;
    let id = run.run_id;
    const TASKS: usize = 8;
    const BATCHES: u32 = 25;
    const PER_BATCH: u32 = 8;
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let storage = storage.clone();
        tasks.push(tokio::spawn(async move {
            for batch in 0..BATCHES {
                let events: Vec<Event> = (0..PER_BATCH)
                    .map(|i| {
                        let seq = batch * PER_BATCH + i;
                        let mut e = if seq.is_multiple_of(4) {
                            materialization(id, "a", Some(&format!("t{task}")), i64::from(seq))
                        } else {
                            event(id, EventKind::EngineEvent, i64::from(seq))
                        };
                        e.step_key = Some(format!("task{task}"));
                        e.body.attempt = Some(seq);
                        e
                    })
                    .collect();
                storage.append_events(&events).await.unwrap();
                storage
                    .append_logs(&[LogLine {
                        run_id: id,
                        step_key: format!("task{task}"),
                        stream: LogStream::Log,
                        level: LogLevel::Info,
                        timestamp: at(i64::from(batch)),
                        message: batch.to_string(),
                    }])
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let stored = events_of(&storage, id).await;
    assert_eq!(
        stored.len(),
        TASKS * (BATCHES * PER_BATCH) as usize,
        "nothing lost"
    );
    let mut ids: Vec<i64> = stored.iter().map(|s| s.id).collect();
    ids.dedup();
    assert_eq!(ids.len(), stored.len(), "ids unique");
    for task in 0..TASKS {
        let step = format!("task{task}");
        let seqs: Vec<u32> = stored
            .iter()
            .filter(|s| s.event.step_key.as_deref() == Some(step.as_str()))
            .map(|s| s.event.body.attempt.unwrap())
            .collect();
        assert_eq!(
            seqs,
            (0..BATCHES * PER_BATCH).collect::<Vec<_>>(),
            "{step} in order"
        );
        let logs = storage.step_logs(id, Some(&step)).await.unwrap();
        let batches: Vec<String> = logs.into_iter().map(|l| l.message).collect();
        assert_eq!(
            batches,
            (0..BATCHES).map(|b| b.to_string()).collect::<Vec<_>>()
        );
        // Each task's partition holds its own last materialization.
        let record = storage.asset_partitions(&[key("a")]).await.unwrap();
        let mine = record
            .iter()
            .find(|r| r.partition_key.as_deref() == Some(format!("t{task}").as_str()))
            .unwrap();
        let m = mine.materialization.as_ref().unwrap();
        let last_seq = (0..BATCHES * PER_BATCH)
            .rev()
            .find(|s| s.is_multiple_of(4))
            .unwrap();
        assert_eq!(m.timestamp, at(i64::from(last_seq)));
        let event = stored.iter().find(|s| s.id == m.event_id).unwrap();
        assert_eq!(event.event.step_key.as_deref(), Some(step.as_str()));
        assert_eq!(event.event.body.attempt, Some(last_seq));
    }
}

async fn case_events_after(storage: Arc<dyn Storage>) {
    assert!(storage.events_after(0, &[], 100).await.unwrap().is_empty());
    let (r1, r2) = (orch::new_run_id(), orch::new_run_id());
    storage
        .append_events(&[
            event(r1, EventKind::RunStart, 0),
            materialization(r1, "a", None, 1),
        ])
        .await
        .unwrap();
    storage
        .append_events(&[
            event(r2, EventKind::RunStart, 2),
            failure(r2, "b", Some("2024-01-01"), 3),
        ])
        .await
        .unwrap();
    storage
        .append_events(&[
            materialization(r1, "a/b", Some("2024-01-02"), 4),
            materialization(r2, "c", None, 5),
            event(r1, EventKind::RunSuccess, 6),
        ])
        .await
        .unwrap();

    let all = storage.events_after(0, &[], 100).await.unwrap();
    assert_eq!(all.len(), 7);
    assert!(all.windows(2).all(|w| w[0].id < w[1].id));
    let mut expected = events_of(&storage, r1).await;
    expected.extend(events_of(&storage, r2).await);
    expected.sort_by_key(|e| e.id);
    assert_eq!(all, expected);
    assert_eq!(
        all.iter().map(|e| e.event.run_id).collect::<Vec<_>>(),
        [r1, r1, r2, r2, r1, r2, r1]
    );

    let materialized = storage
        .events_after(0, &[EventKind::AssetMaterialization], 100)
        .await
        .unwrap();
    assert_eq!(
        materialized
            .iter()
            .map(|e| e.event.asset_key.clone().unwrap())
            .collect::<Vec<_>>(),
        [key("a"), key("a/b"), key("c")]
    );
    let both = storage
        .events_after(
            0,
            &[EventKind::AssetMaterialization, EventKind::AssetFailed],
            100,
        )
        .await
        .unwrap();
    assert_eq!(
        kinds(&both),
        [
            EventKind::AssetMaterialization,
            EventKind::AssetFailed,
            EventKind::AssetMaterialization,
            EventKind::AssetMaterialization
        ]
    );

    // A cursor: after an id, at most `limit`, resuming where the last page ended.
    let first = storage
        .events_after(0, &[EventKind::AssetMaterialization], 2)
        .await
        .unwrap();
    assert_eq!(first, materialized[..2]);
    let rest = storage
        .events_after(first[1].id, &[EventKind::AssetMaterialization], 2)
        .await
        .unwrap();
    assert_eq!(rest, materialized[2..]);
    let last = all.last().unwrap().id;
    assert!(
        storage
            .events_after(last, &[], 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        storage.events_after(all[4].id, &[], 100).await.unwrap(),
        all[5..]
    );
    assert!(
        storage
            .events_after(0, &[EventKind::StepStart], 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(storage.events_after(0, &[], 0).await.unwrap().is_empty());
}

async fn case_asset_events_newest_first(storage: Arc<dyn Storage>) {
    let run = create(&storage, new_run(RunStatus::Started, &["a/x", "b"], 0)).await;
    let mut events = Vec::new();
    for i in 0..5 {
        let partition = format!("2026-11-22-0{i}:00");
        events.push(materialization(run.run_id, "a/x", Some(&partition), i));
        events.push(materialization(run.run_id, "b", None, i));
    }
    events.push(failure(run.run_id, "a/x", Some("2026-11-22-09:00"), 10));
    storage.append_events(&events).await.unwrap();

    let all = storage
        .asset_events(&key("a/x"), &[], None, 100)
        .await
        .unwrap();
    assert_eq!(all.len(), 6, "five materializations and one failure of a/x");
    assert!(all.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    assert!(all.iter().all(|e| e.event.asset_key == Some(key("a/x"))));
    assert_eq!(all[0].event.kind, EventKind::AssetFailed);

    let mats = storage
        .asset_events(&key("a/x"), &[EventKind::AssetMaterialization], None, 2)
        .await
        .unwrap();
    let partitions: Vec<_> = mats.iter().map(|e| e.event.partition_key.clone()).collect();
    assert_eq!(
        partitions,
        [
            Some("2026-11-22-04:00".to_owned()),
            Some("2026-11-22-03:00".to_owned())
        ]
    );
    // The next page starts below the last id seen.
    let next = storage
        .asset_events(
            &key("a/x"),
            &[EventKind::AssetMaterialization],
            Some(mats[1].id),
            10,
        )
        .await
        .unwrap();
    let partitions: Vec<_> = next.iter().map(|e| e.event.partition_key.clone()).collect();
    assert_eq!(
        partitions,
        ["2026-11-22-02:00", "2026-11-22-01:00", "2026-11-22-00:00"].map(|p| Some(p.to_owned()))
    );
    assert!(
        storage
            .asset_events(&key("nobody"), &[], None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}
