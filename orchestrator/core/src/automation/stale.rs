//! Staleness: a materialized asset partition is stale when its code version changed since it
//! was materialized, or when a partition it depends on was materialized after it.

use chrono::{DateTime, Utc};

use super::Facts;
use super::eval::{FactsTable, UNPARTITIONED};
use crate::asset::AssetKey;
use crate::graph::AssetGraph;
use crate::partitions::{PartitionMapping, UpstreamPartitions};

/// Why a partition is stale.
#[derive(Clone, Debug, PartialEq)]
pub enum StaleReason {
    CodeVersionChanged {
        materialized_with: Option<String>,
        current: String,
    },
    UpstreamUpdated {
        dep: AssetKey,
        /// The dependency's partition (empty string: unpartitioned).
        partition: String,
        at: DateTime<Utc>,
    },
}

impl std::fmt::Display for StaleReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StaleReason::CodeVersionChanged {
                materialized_with,
                current,
            } => write!(
                f,
                "code version {current} (materialized with {})",
                materialized_with.as_deref().unwrap_or("none")
            ),
            StaleReason::UpstreamUpdated { dep, partition, at } if partition.is_empty() => {
                write!(f, "{dep} updated at {}", at.format("%Y-%m-%d %H:%M:%S"))
            }
            StaleReason::UpstreamUpdated { dep, partition, at } => write!(
                f,
                "{dep}[{partition}] updated at {}",
                at.format("%Y-%m-%d %H:%M:%S")
            ),
        }
    }
}

/// The first reason `asset`'s partition `slot` (empty string: unpartitioned) is stale, if it is
/// materialized and stale.
pub fn stale_reason(
    graph: &AssetGraph,
    facts: &FactsTable,
    asset: &AssetKey,
    slot: &str,
) -> Option<StaleReason> {
    let spec = graph.spec(asset)?;
    let def = spec.partitions.as_ref();
    let part = (!slot.is_empty()).then_some(slot);
    let own = facts.materialized(asset, part)?;
    if let Some(current) = &spec.code_version
        && own.code_version.as_ref() != Some(current)
    {
        return Some(StaleReason::CodeVersionChanged {
            materialized_with: own.code_version.clone(),
            current: current.clone(),
        });
    }
    for dep in &spec.deps {
        let Some(up) = graph.spec(&dep.key) else {
            continue;
        };
        let up_def = up.partitions.as_ref();
        let mapping = dep
            .mapping
            .clone()
            .unwrap_or_else(|| PartitionMapping::default_for(def, up_def));
        let keys: Vec<&str> = part.into_iter().collect();
        let newest = match mapping.upstream_keys(def, &keys, up_def) {
            Ok(UpstreamPartitions::Unpartitioned) => facts
                .materialized(&dep.key, None)
                .map(|m| (UNPARTITIONED.to_owned(), m.at)),
            Ok(UpstreamPartitions::Keys(keys)) => keys
                .into_iter()
                .filter_map(|k| {
                    let at = facts.materialized(&dep.key, Some(&k))?.at;
                    Some((k, at))
                })
                .max_by_key(|(_, at)| *at),
            Ok(UpstreamPartitions::All) | Err(_) => facts
                .materialized
                .get(&dep.key)
                .and_then(|m| m.iter().max_by_key(|(_, m)| m.at))
                .map(|(k, m)| (k.clone(), m.at)),
        };
        if let Some((partition, at)) = newest
            && at > own.at
        {
            return Some(StaleReason::UpstreamUpdated {
                dep: dep.key.clone(),
                partition,
                at,
            });
        }
    }
    None
}

/// Every stale materialized partition of `asset`, in key order, with its reason.
pub fn stale_partitions(
    graph: &AssetGraph,
    facts: &FactsTable,
    asset: &AssetKey,
) -> Vec<(String, StaleReason)> {
    let mut slots: Vec<&String> = facts
        .materialized
        .get(asset)
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    slots.sort();
    slots
        .into_iter()
        .filter_map(|s| stale_reason(graph, facts, asset, s).map(|r| (s.clone(), r)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asset::{AssetSpec, AssetsDefinition};
    use crate::automation::Materialized;
    use chrono::TimeZone;

    #[test]
    fn stale_after_an_upstream_update_or_a_code_change() {
        let mut a = AssetSpec::new(AssetKey::parse("a").unwrap());
        a.code_version = Some("1".into());
        let mut b = AssetSpec::new(AssetKey::parse("b").unwrap());
        b.deps = vec![crate::asset::AssetDep {
            key: a.key.clone(),
            mapping: None,
        }];
        let defs = [a, b]
            .into_iter()
            .map(|s| {
                AssetsDefinition::multi(s.key.to_user_string(), vec![s], |_ctx| async {
                    Ok::<_, crate::context::ComputeError>(crate::context::Materialization::new())
                })
            })
            .collect();
        let g = AssetGraph::new(defs).unwrap();
        let (ka, kb) = (AssetKey::parse("a").unwrap(), AssetKey::parse("b").unwrap());
        let t = |m| Utc.with_ymd_and_hms(2026, 11, 22, 10, m, 0).unwrap();
        let mut facts = FactsTable::default();
        let m = |id, at, v: Option<&str>| Materialized {
            event_id: id,
            at,
            code_version: v.map(str::to_owned),
        };
        facts.materialize(&ka, "", m(1, t(0), Some("1")));
        facts.materialize(&kb, "", m(2, t(1), None));
        assert_eq!(stale_reason(&g, &facts, &kb, ""), None);
        assert_eq!(stale_reason(&g, &facts, &ka, ""), None);
        facts.materialize(&ka, "", m(3, t(2), Some("1")));
        assert!(matches!(
            stale_reason(&g, &facts, &kb, ""),
            Some(StaleReason::UpstreamUpdated { .. })
        ));
        facts.materialize(&ka, "", m(4, t(3), Some("0")));
        assert_eq!(
            stale_reason(&g, &facts, &ka, "").unwrap().to_string(),
            "code version 1 (materialized with 0)"
        );
        assert_eq!(stale_partitions(&g, &facts, &kb).len(), 1);
    }
}
