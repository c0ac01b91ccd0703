//! Runs: creating, reading, listing, moving through statuses; counts by status.

use super::*;

conformance!(
    case_run_round_trip,
    case_duplicate_run_id,
    case_list_runs_filters,
    case_every_transition,
    case_transition_path_keeps_times,
    case_unknown_run,
    case_run_status_counts,
    case_prune_runs_keeps_runs_in_flight_and_asset_state,
);

async fn case_run_round_trip(storage: Arc<dyn Storage>) {
    let parent = create(&storage, new_run(RunStatus::Failure, &["raw/events"], 0)).await;
    let run = NewRun {
        run_id: orch::new_run_id(),
        status: RunStatus::Queued,
        selection: "raw/events+ tag:team=data".to_owned(),
        asset_keys: vec![key("raw/events"), key("staging/sessions"), key("report")],
        partition_key: Some("2024-01-01".to_owned()),
        partition_key_end: Some("2024-01-31".to_owned()),
        step_subset: Some(["report[2024-01-01...2024-01-31]".to_owned()].into()),
        tags: BTreeMap::from([
            ("team".to_owned(), "data".to_owned()),
            ("orch/backfill".to_owned(), "b-1 é ✓".to_owned()),
        ]),
        parent_run_id: Some(parent.run_id),
        root_run_id: Some(parent.run_id),
        created_at: at(10),
    };
    let stored = storage.create_run(&run).await.unwrap();
    assert!(
        stored.id > parent.id,
        "ids grow: {} then {}",
        parent.id,
        stored.id
    );
    let expected = orch::Run {
        id: stored.id,
        run_id: run.run_id,
        status: RunStatus::Queued,
        selection: run.selection.clone(),
        asset_keys: run.asset_keys.clone(),
        partition_key: run.partition_key.clone(),
        partition_key_end: run.partition_key_end.clone(),
        step_subset: run.step_subset.clone(),
        tags: run.tags.clone(),
        parent_run_id: Some(parent.run_id),
        root_run_id: Some(parent.run_id),
        created_at: at(10),
        started_at: None,
        ended_at: None,
        updated_at: at(10),
    };
    assert_eq!(stored, expected);
    assert_eq!(storage.get_run(run.run_id).await.unwrap(), Some(expected));

    // The parent: no partition, no tags, a status other than QUEUED.
    let got = storage.get_run(parent.run_id).await.unwrap().unwrap();
    assert_eq!(got, parent);
    assert_eq!(got.status, RunStatus::Failure);
    assert_eq!(got.partition_key, None);
    assert!(got.tags.is_empty());
    assert_eq!(got.parent_run_id, None);

    // A run of no assets.
    let empty = create(&storage, new_run(RunStatus::Queued, &[], 20)).await;
    assert!(empty.asset_keys.is_empty());
    assert_eq!(storage.get_run(empty.run_id).await.unwrap(), Some(empty));

    assert_eq!(storage.get_run(orch::new_run_id()).await.unwrap(), None);
}

async fn case_duplicate_run_id(storage: Arc<dyn Storage>) {
    let run = new_run(RunStatus::Queued, &["a"], 0);
    let first = create(&storage, run.clone()).await;
    let again = NewRun {
        selection: "something else".to_owned(),
        asset_keys: vec![key("b")],
        tags: BTreeMap::from([("k".to_owned(), "v".to_owned())]),
        ..run.clone()
    };
    match storage.create_run(&again).await {
        Err(StorageError::RunExists(id)) => assert_eq!(id, run.run_id),
        other => panic!("expected RunExists, got {other:?}"),
    }
    assert_eq!(storage.get_run(run.run_id).await.unwrap(), Some(first));
    let all = storage.list_runs(&RunFilter::default()).await.unwrap();
    assert_eq!(run_ids(&all), vec![run.run_id]);
    // Nothing of the refused run leaked into the asset and tag indexes.
    let by_b = RunFilter {
        asset_key: Some(key("b")),
        ..RunFilter::default()
    };
    assert!(storage.list_runs(&by_b).await.unwrap().is_empty());
    let by_tag = RunFilter {
        tag: Some(("k".to_owned(), "v".to_owned())),
        ..RunFilter::default()
    };
    assert!(storage.list_runs(&by_tag).await.unwrap().is_empty());
    // And the storage still works after the refusal.
    create(&storage, new_run(RunStatus::Queued, &["b"], 1)).await;
}

async fn case_list_runs_filters(storage: Arc<dyn Storage>) {
    let tagged = |mut run: NewRun, k: &str, v: &str| {
        run.tags.insert(k.to_owned(), v.to_owned());
        run
    };
    let partitioned = |mut run: NewRun, p: &str| {
        run.partition_key = Some(p.to_owned());
        run
    };
    let r0 = create(&storage, new_run(RunStatus::Success, &["a", "b"], 0)).await;
    let r1 = create(
        &storage,
        tagged(new_run(RunStatus::Failure, &["b"], 1), "team", "x"),
    )
    .await;
    let r2 = create(
        &storage,
        partitioned(new_run(RunStatus::Queued, &["a"], 2), "2024-01-01"),
    )
    .await;
    let r3 = create(
        &storage,
        tagged(
            partitioned(new_run(RunStatus::Started, &["c"], 3), "2024-01-02"),
            "team",
            "y",
        ),
    )
    .await;
    let r4 = create(
        &storage,
        tagged(
            partitioned(new_run(RunStatus::Success, &["a", "c"], 4), "2024-01-01"),
            "team",
            "x",
        ),
    )
    .await;
    let r5 = create(&storage, new_run(RunStatus::Canceled, &["b/c"], 5)).await;

    let list = async |filter: RunFilter| run_ids(&storage.list_runs(&filter).await.unwrap());
    let ids = |runs: &[&orch::Run]| runs.iter().map(|r| r.run_id).collect::<Vec<_>>();

    // Newest first, complete.
    let all = storage.list_runs(&RunFilter::default()).await.unwrap();
    assert_eq!(run_ids(&all), ids(&[&r5, &r4, &r3, &r2, &r1, &r0]));
    assert!(all.windows(2).all(|w| w[0].id > w[1].id));
    assert_eq!(all[1], r4);

    let f = RunFilter {
        statuses: vec![RunStatus::Success],
        ..RunFilter::default()
    };
    assert_eq!(list(f).await, ids(&[&r4, &r0]));
    let f = RunFilter {
        statuses: vec![RunStatus::Failure, RunStatus::Canceled, RunStatus::Started],
        ..RunFilter::default()
    };
    assert_eq!(list(f).await, ids(&[&r5, &r3, &r1]));
    let f = RunFilter {
        statuses: vec![RunStatus::Canceling],
        ..RunFilter::default()
    };
    assert_eq!(list(f).await, ids(&[]));

    let f = RunFilter {
        asset_key: Some(key("a")),
        ..RunFilter::default()
    };
    assert_eq!(list(f).await, ids(&[&r4, &r2, &r0]));
    let f = RunFilter {
        asset_key: Some(key("b/c")),
        ..RunFilter::default()
    };
    assert_eq!(list(f).await, ids(&[&r5]));
    let f = RunFilter {
        asset_key: Some(key("nope")),
        ..RunFilter::default()
    };
    assert_eq!(list(f).await, ids(&[]));

    let f = RunFilter {
        partition_key: Some("2024-01-01".to_owned()),
        ..RunFilter::default()
    };
    assert_eq!(list(f).await, ids(&[&r4, &r2]));

    let f = RunFilter {
        tag: Some(("team".to_owned(), "x".to_owned())),
        ..RunFilter::default()
    };
    assert_eq!(list(f).await, ids(&[&r4, &r1]));
    let f = RunFilter {
        tag: Some(("team".to_owned(), "z".to_owned())),
        ..RunFilter::default()
    };
    assert_eq!(list(f).await, ids(&[]));

    // Filters combine.
    let f = RunFilter {
        statuses: vec![RunStatus::Success, RunStatus::Queued],
        asset_key: Some(key("a")),
        partition_key: Some("2024-01-01".to_owned()),
        tag: Some(("team".to_owned(), "x".to_owned())),
        ..RunFilter::default()
    };
    assert_eq!(list(f).await, ids(&[&r4]));

    // Limit, and keyset pagination through everything.
    let f = RunFilter {
        limit: Some(2),
        ..RunFilter::default()
    };
    assert_eq!(list(f).await, ids(&[&r5, &r4]));
    let mut pages = Vec::new();
    let mut before = None;
    loop {
        let page = storage
            .list_runs(&RunFilter {
                before_id: before,
                limit: Some(4),
                ..RunFilter::default()
            })
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        before = Some(page.last().unwrap().id);
        pages.push(run_ids(&page));
    }
    assert_eq!(
        pages,
        vec![ids(&[&r5, &r4, &r3, &r2]), ids(&[&r1, &r0])],
        "pages of 4"
    );
    let f = RunFilter {
        asset_key: Some(key("a")),
        before_id: Some(r4.id),
        limit: Some(1),
        ..RunFilter::default()
    };
    assert_eq!(list(f).await, ids(&[&r2]));
    // The other way: the runs just newer than a cursor, still newest first.
    let f = RunFilter {
        after_id: Some(r1.id),
        limit: Some(2),
        ..RunFilter::default()
    };
    assert_eq!(list(f).await, ids(&[&r3, &r2]));
    let f = RunFilter {
        after_id: Some(r1.id),
        before_id: Some(r4.id),
        ..RunFilter::default()
    };
    assert_eq!(list(f).await, ids(&[&r3, &r2]));
    let f = RunFilter {
        limit: Some(0),
        ..RunFilter::default()
    };
    assert_eq!(list(f).await, ids(&[]));
}

async fn case_every_transition(storage: Arc<dyn Storage>) {
    let mut legal = 0;
    for from in RunStatus::ALL {
        for to in RunStatus::ALL {
            let run = create(&storage, new_run(from, &["a"], 0)).await;
            let result = storage.transition_run(run.run_id, to, at(60)).await;
            if from.can_become(to) {
                legal += 1;
                let moved = result.unwrap_or_else(|e| panic!("{from} -> {to}: {e}"));
                assert_eq!(moved.status, to, "{from} -> {to}");
                assert_eq!(moved.updated_at, at(60), "{from} -> {to}");
                assert_eq!(moved.created_at, at(0), "{from} -> {to}");
                let started = (to == RunStatus::Started).then(|| at(60));
                assert_eq!(moved.started_at, started, "{from} -> {to}: started_at");
                let ended = to.is_terminal().then(|| at(60));
                assert_eq!(moved.ended_at, ended, "{from} -> {to}: ended_at");
                assert_eq!(storage.get_run(run.run_id).await.unwrap(), Some(moved));
            } else {
                match result {
                    Err(StorageError::IllegalTransition {
                        run_id,
                        from: f,
                        to: t,
                    }) => {
                        assert_eq!((run_id, f, t), (run.run_id, from, to));
                    }
                    other => panic!("{from} -> {to} must be refused, got {other:?}"),
                }
                assert_eq!(
                    storage.get_run(run.run_id).await.unwrap(),
                    Some(run),
                    "{from} -> {to} changed nothing"
                );
            }
        }
    }
    assert_eq!(legal, 13, "the legal transitions of run.rs");
}

async fn case_transition_path_keeps_times(storage: Arc<dyn Storage>) {
    let run = create(&storage, new_run(RunStatus::Queued, &["a"], 0)).await;
    let id = run.run_id;
    let r = storage
        .transition_run(id, RunStatus::Starting, at(1))
        .await
        .unwrap();
    assert_eq!((r.started_at, r.ended_at), (None, None));
    let r = storage
        .transition_run(id, RunStatus::Started, at(2))
        .await
        .unwrap();
    assert_eq!((r.started_at, r.ended_at), (Some(at(2)), None));
    let r = storage
        .transition_run(id, RunStatus::Canceling, at(3))
        .await
        .unwrap();
    assert_eq!((r.started_at, r.ended_at), (Some(at(2)), None));
    let r = storage
        .transition_run(id, RunStatus::Canceled, at(4))
        .await
        .unwrap();
    assert_eq!((r.started_at, r.ended_at), (Some(at(2)), Some(at(4))));
    assert_eq!(r.updated_at, at(4));
    // Over: nothing more.
    for to in RunStatus::ALL {
        assert!(matches!(
            storage.transition_run(id, to, at(5)).await,
            Err(StorageError::IllegalTransition {
                from: RunStatus::Canceled,
                ..
            })
        ));
    }
    assert_eq!(storage.get_run(id).await.unwrap(), Some(r));
}

async fn case_unknown_run(storage: Arc<dyn Storage>) {
    let nobody = orch::new_run_id();
    for to in RunStatus::ALL {
        match storage.transition_run(nobody, to, at(0)).await {
            Err(StorageError::RunNotFound(id)) => assert_eq!(id, nobody),
            other => panic!("transition of an unknown run to {to}: {other:?}"),
        }
    }
    assert!(events_of(&storage, nobody).await.is_empty());
    assert!(storage.step_logs(nobody, None).await.unwrap().is_empty());
}

async fn case_run_status_counts(storage: Arc<dyn Storage>) {
    assert!(storage.run_status_counts().await.unwrap().is_empty());
    for (i, status) in [
        RunStatus::Queued,
        RunStatus::Queued,
        RunStatus::Success,
        RunStatus::Failure,
        RunStatus::Queued,
    ]
    .into_iter()
    .enumerate()
    {
        create(&storage, new_run(status, &["a"], i as i64)).await;
    }
    let mut counts = storage.run_status_counts().await.unwrap();
    counts.sort();
    let mut expected = vec![
        (RunStatus::Queued, 3),
        (RunStatus::Success, 1),
        (RunStatus::Failure, 1),
    ];
    expected.sort();
    assert_eq!(counts, expected);
}

/// Retention deletes finished runs that ended before the cut with their events and logs,
/// oldest first and in batches, never a run in flight, and the assets keep their state.
async fn case_prune_runs_keeps_runs_in_flight_and_asset_state(storage: Arc<dyn Storage>) {
    let finished = |status, ended: i64, created: i64| {
        let storage = storage.clone();
        async move {
            let run = create(&storage, new_run(RunStatus::Queued, &["a"], created)).await;
            storage
                .transition_run(run.run_id, RunStatus::Starting, at(ended - 2))
                .await
                .unwrap();
            storage
                .transition_run(run.run_id, RunStatus::Started, at(ended - 1))
                .await
                .unwrap();
            storage
                .append_events(&[
                    materialization(run.run_id, "a", Some("p"), ended - 1),
                    check(run.run_id, "a", "rows", true, ended - 1),
                ])
                .await
                .unwrap();
            storage
                .append_logs(&[LogLine {
                    run_id: run.run_id,
                    step_key: "a".into(),
                    stream: LogStream::Stdout,
                    level: LogLevel::Info,
                    timestamp: at(ended - 1),
                    message: "hello".into(),
                }])
                .await
                .unwrap();
            if status != RunStatus::Started {
                storage
                    .transition_run(run.run_id, status, at(ended))
                    .await
                    .unwrap();
            }
            run
        }
    };
    let old_ok = finished(RunStatus::Success, 100, 0).await;
    // A check only the oldest run evaluated: its result is the check's latest.
    storage
        .append_events(&[check(old_ok.run_id, "a", "fresh", true, 99)])
        .await
        .unwrap();
    let old_failed = finished(RunStatus::Failure, 110, 1).await;
    let old_running = finished(RunStatus::Started, 120, 2).await;
    let recent = finished(RunStatus::Success, 500, 3).await;

    assert_eq!(
        storage.prune_runs(at(50), 10).await.unwrap(),
        Pruned::default(),
        "nothing ended before 50"
    );
    // A batch of one: the oldest first.
    let first = storage.prune_runs(at(400), 1).await.unwrap();
    assert_eq!(first.runs, 1);
    assert!(first.events >= 1 && first.logs == 1, "{first:?}");
    assert_eq!(storage.get_run(old_ok.run_id).await.unwrap(), None);
    assert!(events_of(&storage, old_ok.run_id).await.is_empty());
    assert!(storage.get_run(old_failed.run_id).await.unwrap().is_some());
    let second = storage.prune_runs(at(400), 10).await.unwrap();
    assert_eq!(second.runs, 1, "the failed run; the running one stays");
    assert_eq!(storage.prune_runs(at(400), 10).await.unwrap().runs, 0);
    for kept in [old_running.run_id, recent.run_id] {
        assert!(storage.get_run(kept).await.unwrap().is_some());
        assert!(!events_of(&storage, kept).await.is_empty());
    }
    let listed = storage.list_runs(&RunFilter::default()).await.unwrap();
    assert_eq!(run_ids(&listed).len(), 2);
    // Check results go with their runs, but the latest of each check stays.
    let checks = storage.check_results(&key("a"), 100).await.unwrap();
    let kept: Vec<(&str, RunId)> = checks
        .iter()
        .map(|c| (c.evaluation.check_name.as_str(), c.run_id))
        .collect();
    assert_eq!(
        kept,
        vec![
            ("rows", recent.run_id),
            ("rows", old_running.run_id),
            ("fresh", old_ok.run_id)
        ]
    );
    // The asset keeps its latest materialization.
    let latest = storage.latest_by_asset(&[key("a")]).await.unwrap();
    assert!(
        latest.iter().any(|r| r.materialization.is_some()),
        "{latest:?}"
    );
}
