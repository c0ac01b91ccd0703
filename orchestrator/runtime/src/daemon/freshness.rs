//! Freshness: whether an asset's latest data is as recent as its policy demands. Pure: the
//! daemon passes what the run history holds and the time.

use chrono::{DateTime, Utc};

use crate::asset::{AssetSpec, FreshnessPolicy};
use crate::storage::AssetPartitionRecord;

/// An asset's freshness at a moment.
#[derive(Clone, Debug, PartialEq)]
pub enum Freshness {
    Fresh,
    /// Too old: what is there, and how late it is.
    Stale {
        latest_partition: Option<String>,
        latest_materialized_at: Option<DateTime<Utc>>,
        message: String,
    },
}

/// Judges an asset with a freshness policy from its recorded partitions.
pub fn evaluate(
    spec: &AssetSpec,
    policy: FreshnessPolicy,
    partitions: &[AssetPartitionRecord],
    now: DateTime<Utc>,
) -> Freshness {
    let max_lag = chrono::Duration::from_std(policy.max_lag).unwrap_or(chrono::Duration::MAX);
    let lag_text = human(policy.max_lag);
    let materialized = partitions
        .iter()
        .filter(|p| p.asset_key == spec.key)
        .filter_map(|p| p.materialization.as_ref().map(|m| (p, m)));
    match spec.partitions.as_ref().filter(|d| d.is_time()) {
        Some(def) => {
            // The newest materialized partition, by the end of its window.
            let newest = materialized
                .filter_map(|(p, m)| {
                    let key = p.partition_key.as_deref()?;
                    let window = def.window(key).ok().flatten()?;
                    Some((window.end, key.to_owned(), m.timestamp))
                })
                .max();
            match newest {
                Some((end, _, _)) if now - end <= max_lag => Freshness::Fresh,
                Some((end, key, at)) => Freshness::Stale {
                    message: format!(
                        "`{}`: the newest materialized partition, {key}, ended {} ago (at most {lag_text} allowed)",
                        spec.key,
                        human_chrono(now - end)
                    ),
                    latest_partition: Some(key),
                    latest_materialized_at: Some(at),
                },
                None => Freshness::Stale {
                    message: format!(
                        "`{}` has no materialized partition (at most {lag_text} of lag allowed)",
                        spec.key
                    ),
                    latest_partition: None,
                    latest_materialized_at: None,
                },
            }
        }
        None => {
            let newest = materialized.map(|(_, m)| m.timestamp).max();
            match newest {
                Some(at) if now - at <= max_lag => Freshness::Fresh,
                Some(at) => Freshness::Stale {
                    message: format!(
                        "`{}` was last materialized {} ago (at most {lag_text} allowed)",
                        spec.key,
                        human_chrono(now - at)
                    ),
                    latest_partition: None,
                    latest_materialized_at: Some(at),
                },
                None => Freshness::Stale {
                    message: format!(
                        "`{}` has never been materialized (at most {lag_text} of lag allowed)",
                        spec.key
                    ),
                    latest_partition: None,
                    latest_materialized_at: None,
                },
            }
        }
    }
}

fn human_chrono(d: chrono::Duration) -> String {
    human(d.to_std().unwrap_or_default())
}

/// `45s`, `12m`, `3h 05m`, `2d 4h`.
pub fn human(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86400, (s % 86400) / 3600),
    }
}

/// Parses `90s`, `15m`, `2h`, `1d` (or a number of seconds).
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (use 90s, 15m, 2h or 1d)"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => return Err(format!("`{s}` is not a duration (use 90s, 15m, 2h or 1d)")),
    };
    Ok(std::time::Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asset::{AssetKey, AssetSpec};
    use crate::partitions::PartitionsDefinition;
    use crate::run::RunId;
    use crate::storage::MaterializationRecord;
    use chrono::TimeZone;
    use std::time::Duration;

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, h, m, 0).unwrap()
    }

    fn record(key: &str, partition: Option<&str>, when: DateTime<Utc>) -> AssetPartitionRecord {
        AssetPartitionRecord {
            asset_key: AssetKey::parse(key).unwrap(),
            partition_key: partition.map(str::to_owned),
            materialization: Some(MaterializationRecord {
                run_id: RunId::from_parts(when, [0; 10]),
                event_id: 1,
                timestamp: when,
                metadata: Default::default(),
                code_version: None,
            }),
            last_failure: None,
        }
    }

    #[test]
    fn hourly_assets_are_judged_by_their_newest_partition() {
        let mut spec = AssetSpec::new(AssetKey::parse("raw/plays").unwrap());
        spec.partitions = Some(PartitionsDefinition::hourly("2026-11-01-00:00", "UTC").unwrap());
        let policy = FreshnessPolicy {
            max_lag: Duration::from_secs(90 * 60),
        };
        let records = [record("raw/plays", Some("2026-11-22-09:00"), at(10, 12))];
        // 09:00 ended at 10:00; at 11:29 that is 89 minutes ago.
        assert_eq!(
            evaluate(&spec, policy, &records, at(11, 29)),
            Freshness::Fresh
        );
        let Freshness::Stale {
            message,
            latest_partition,
            ..
        } = evaluate(&spec, policy, &records, at(11, 31))
        else {
            panic!("expected stale");
        };
        assert_eq!(latest_partition.as_deref(), Some("2026-11-22-09:00"));
        assert_eq!(
            message,
            "`raw/plays`: the newest materialized partition, 2026-11-22-09:00, ended 1h 31m ago (at most 1h 30m allowed)"
        );
        assert!(matches!(
            evaluate(&spec, policy, &[], at(11, 0)),
            Freshness::Stale {
                latest_partition: None,
                ..
            }
        ));
    }

    #[test]
    fn unpartitioned_assets_are_judged_by_their_last_materialization() {
        let spec = AssetSpec::new(AssetKey::parse("dim/songs").unwrap());
        let policy = FreshnessPolicy {
            max_lag: Duration::from_secs(3600),
        };
        let records = [record("dim/songs", None, at(10, 0))];
        assert_eq!(
            evaluate(&spec, policy, &records, at(10, 59)),
            Freshness::Fresh
        );
        assert!(matches!(
            evaluate(&spec, policy, &records, at(11, 1)),
            Freshness::Stale { .. }
        ));
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86400)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert!(parse_duration("2 weeks").is_err());
        assert_eq!(human(Duration::from_secs(2 * 86400 + 4 * 3600)), "2d 4h");
    }
}
