//! Pool slots shared by every process: acquire, release, renew, expire, concurrent acquirers.

use super::*;

conformance!(
    case_pool_slots_acquire_and_release,
    case_pool_slots_renew_and_expire,
    case_pool_slots_concurrent_acquirers,
);

const TTL: Duration = Duration::from_secs(30);

async fn acquire(
    storage: &Arc<dyn Storage>,
    pool: &str,
    limit: u32,
    run: RunId,
    step: &str,
    secs: i64,
) -> bool {
    storage
        .try_acquire_pool_slot(&slot(pool, run, step), limit, at(secs), TTL)
        .await
        .unwrap()
}

fn usage(pools: &[(&str, u64)]) -> Vec<(String, u64)> {
    pools.iter().map(|(p, n)| ((*p).to_owned(), *n)).collect()
}

async fn case_pool_slots_acquire_and_release(storage: Arc<dyn Storage>) {
    let (r1, r2, r3) = (orch::new_run_id(), orch::new_run_id(), orch::new_run_id());
    assert!(storage.pool_usage(at(0)).await.unwrap().is_empty());

    assert!(acquire(&storage, "warehouse", 2, r1, "a", 0).await);
    assert!(acquire(&storage, "warehouse", 2, r2, "a", 0).await);
    // Full: a third step waits, whatever its run.
    assert!(!acquire(&storage, "warehouse", 2, r3, "c", 1).await);
    assert!(!acquire(&storage, "warehouse", 2, r1, "b", 1).await);
    // A slot already held is held again, though the pool is full.
    assert!(acquire(&storage, "warehouse", 2, r1, "a", 1).await);
    // Pools are counted apart; a limit of 0 admits nobody.
    assert!(acquire(&storage, "api", 1, r3, "c", 1).await);
    assert!(!acquire(&storage, "api", 1, r3, "d", 1).await);
    assert!(!acquire(&storage, "empty", 0, r3, "c", 1).await);
    assert_eq!(
        storage.pool_usage(at(1)).await.unwrap(),
        usage(&[("api", 1), ("warehouse", 2)])
    );

    storage
        .release_pool_slot(&slot("warehouse", r1, "a"))
        .await
        .unwrap();
    // Releasing what one does not hold changes nothing.
    storage
        .release_pool_slot(&slot("warehouse", r1, "a"))
        .await
        .unwrap();
    storage
        .release_pool_slot(&slot("api", r1, "c"))
        .await
        .unwrap();
    storage
        .release_pool_slot(&slot("nowhere", orch::new_run_id(), "x"))
        .await
        .unwrap();
    assert_eq!(
        storage.pool_usage(at(2)).await.unwrap(),
        usage(&[("api", 1), ("warehouse", 1)])
    );
    assert!(acquire(&storage, "warehouse", 2, r3, "c", 2).await);
    assert!(!acquire(&storage, "warehouse", 2, r1, "a", 2).await);
    // A higher limit (the configuration changed) admits more.
    assert!(acquire(&storage, "warehouse", 3, r1, "a", 2).await);
    assert_eq!(
        storage.pool_usage(at(2)).await.unwrap(),
        usage(&[("api", 1), ("warehouse", 3)])
    );

    for (pool, run, step) in [
        ("warehouse", r1, "a"),
        ("warehouse", r2, "a"),
        ("warehouse", r3, "c"),
        ("api", r3, "c"),
    ] {
        storage
            .release_pool_slot(&slot(pool, run, step))
            .await
            .unwrap();
    }
    assert!(storage.pool_usage(at(3)).await.unwrap().is_empty());
}

async fn case_pool_slots_renew_and_expire(storage: Arc<dyn Storage>) {
    let (r1, r2, r3) = (orch::new_run_id(), orch::new_run_id(), orch::new_run_id());
    let renew = async |run: RunId, step: &str, secs: i64| {
        storage
            .renew_pool_slot(&slot("p", run, step), at(secs), TTL)
            .await
            .unwrap()
    };

    assert!(acquire(&storage, "p", 1, r1, "a", 0).await);
    // Renewed at 20: held until 50.
    assert!(renew(r1, "a", 20).await);
    assert!(!acquire(&storage, "p", 1, r2, "b", 40).await);
    assert_eq!(
        storage.pool_usage(at(49)).await.unwrap(),
        usage(&[("p", 1)])
    );
    // At its expiry a slot no longer counts.
    assert!(storage.pool_usage(at(50)).await.unwrap().is_empty());
    assert!(acquire(&storage, "p", 1, r2, "b", 50).await);
    // The expired slot was deleted by that acquirer: seen from before its expiry, only the
    // new slot is left.
    assert_eq!(
        storage.pool_usage(at(45)).await.unwrap(),
        usage(&[("p", 1)])
    );
    // An expired slot cannot be renewed (it is gone, or someone else may hold its place),
    // nor can a slot never held.
    assert!(!renew(r1, "a", 51).await);
    assert!(!renew(r3, "c", 51).await);
    assert!(!acquire(&storage, "p", 1, r1, "a", 51).await);

    // A slot that expired without anyone deleting it: not renewed, but taken again if there
    // is room.
    assert!(
        storage
            .try_acquire_pool_slot(&slot("q", r3, "c"), 1, at(0), Duration::from_secs(10))
            .await
            .unwrap()
    );
    assert!(
        !storage
            .renew_pool_slot(&slot("q", r3, "c"), at(10), TTL)
            .await
            .unwrap()
    );
    assert!(acquire(&storage, "q", 1, r3, "c", 11).await);
    assert!(
        storage
            .renew_pool_slot(&slot("q", r3, "c"), at(12), TTL)
            .await
            .unwrap()
    );
    assert_eq!(
        storage.pool_usage(at(41)).await.unwrap(),
        usage(&[("p", 1), ("q", 1)])
    );
    // Re-acquiring a held slot extends it too.
    assert!(acquire(&storage, "q", 1, r3, "c", 20).await);
    assert_eq!(
        storage.pool_usage(at(49)).await.unwrap(),
        usage(&[("p", 1), ("q", 1)])
    );
    assert_eq!(
        storage.pool_usage(at(50)).await.unwrap(),
        usage(&[("p", 1)])
    );

    storage
        .release_pool_slot(&slot("p", r2, "b"))
        .await
        .unwrap();
    assert!(!renew(r2, "b", 52).await);
    assert!(acquire(&storage, "p", 1, r1, "a", 52).await);
}

async fn case_pool_slots_concurrent_acquirers(storage: Arc<dyn Storage>) {
    // Acquirers on one storage, all at once: exactly the limit get a slot.
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let storage = storage.clone();
            tokio::spawn(async move {
                storage
                    .try_acquire_pool_slot(
                        &slot("p", orch::new_run_id(), &format!("s{i}")),
                        3,
                        at(0),
                        TTL,
                    )
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut acquired = 0;
    for task in tasks {
        acquired += usize::from(task.await.unwrap());
    }
    assert_eq!(acquired, 3);
    assert_eq!(storage.pool_usage(at(0)).await.unwrap(), usage(&[("p", 3)]));
}
