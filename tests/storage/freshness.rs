//! Freshness violations: opened once, resolved, reopened, notified.

use super::*;

conformance!(case_freshness_violations,);

async fn case_freshness_violations(storage: Arc<dyn Storage>) {
    assert!(
        storage
            .freshness_violations(false)
            .await
            .unwrap()
            .is_empty()
    );
    let (a, b) = (key("raw/events"), key("report"));

    assert!(
        storage
            .open_freshness_violation(&NewViolation {
                asset_key: &a,
                detected_at: at(10),
                latest_partition: Some("2024-01-01"),
                latest_materialized_at: Some(at(0)),
                max_lag_secs: 3600,
                message: "stale"
            })
            .await
            .unwrap()
    );
    // Already open: left as it is.
    assert!(
        !storage
            .open_freshness_violation(&NewViolation {
                asset_key: &a,
                detected_at: at(20),
                latest_partition: Some("2024-01-02"),
                latest_materialized_at: Some(at(5)),
                max_lag_secs: 60,
                message: "later"
            })
            .await
            .unwrap()
    );
    assert!(
        storage
            .open_freshness_violation(&NewViolation {
                asset_key: &b,
                detected_at: at(15),
                latest_partition: None,
                latest_materialized_at: None,
                max_lag_secs: 60,
                message: "never materialized é"
            })
            .await
            .unwrap()
    );
    let open_a = FreshnessViolation {
        asset_key: a.clone(),
        detected_at: at(10),
        latest_partition: Some("2024-01-01".to_owned()),
        latest_materialized_at: Some(at(0)),
        max_lag_secs: 3600,
        message: "stale".to_owned(),
        notified_at: None,
        resolved_at: None,
    };
    let open_b = FreshnessViolation {
        asset_key: b.clone(),
        detected_at: at(15),
        latest_partition: None,
        latest_materialized_at: None,
        max_lag_secs: 60,
        message: "never materialized é".to_owned(),
        notified_at: None,
        resolved_at: None,
    };
    assert_eq!(
        storage.freshness_violations(false).await.unwrap(),
        vec![open_a.clone(), open_b.clone()]
    );
    assert_eq!(
        storage.freshness_violations(true).await.unwrap(),
        vec![open_a.clone(), open_b.clone()]
    );
    assert!(open_a.is_open());

    assert!(storage.mark_violation_notified(&a, at(12)).await.unwrap());
    assert!(
        !storage
            .mark_violation_notified(&key("fresh"), at(12))
            .await
            .unwrap()
    );
    let notified_a = FreshnessViolation {
        notified_at: Some(at(12)),
        ..open_a.clone()
    };
    assert_eq!(
        storage.freshness_violations(true).await.unwrap(),
        vec![notified_a.clone(), open_b.clone()]
    );

    assert!(
        storage
            .resolve_freshness_violation(&a, at(30))
            .await
            .unwrap()
    );
    assert!(
        !storage
            .resolve_freshness_violation(&a, at(31))
            .await
            .unwrap()
    );
    assert!(
        !storage
            .resolve_freshness_violation(&key("fresh"), at(31))
            .await
            .unwrap()
    );
    let resolved_a = FreshnessViolation {
        resolved_at: Some(at(30)),
        ..notified_a
    };
    assert!(!resolved_a.is_open());
    assert_eq!(
        storage.freshness_violations(true).await.unwrap(),
        vec![open_b.clone()]
    );
    assert_eq!(
        storage.freshness_violations(false).await.unwrap(),
        vec![resolved_a, open_b.clone()]
    );

    // Stale again: a new violation, not yet notified.
    assert!(
        storage
            .open_freshness_violation(&NewViolation {
                asset_key: &a,
                detected_at: at(40),
                latest_partition: Some("2024-01-03"),
                latest_materialized_at: Some(at(35)),
                max_lag_secs: 3600,
                message: "again"
            })
            .await
            .unwrap()
    );
    let reopened_a = FreshnessViolation {
        asset_key: a.clone(),
        detected_at: at(40),
        latest_partition: Some("2024-01-03".to_owned()),
        latest_materialized_at: Some(at(35)),
        max_lag_secs: 3600,
        message: "again".to_owned(),
        notified_at: None,
        resolved_at: None,
    };
    assert_eq!(
        storage.freshness_violations(true).await.unwrap(),
        vec![reopened_a, open_b]
    );
}
