//! Definitions: everything a code location provides (its assets and the resources their
//! computes use), gathered before the graph is validated.

use crate::asset::AssetsDefinition;
use crate::context::Resources;
use crate::daemon::{ScheduleDefinition, Sensor};
use crate::graph::{AssetGraph, GraphError};

/// Assets and resources, as provided by the compiled-in assets and by `orch.toml`.
#[derive(Clone, Default)]
pub struct Definitions {
    pub assets: Vec<AssetsDefinition>,
    pub schedules: Vec<ScheduleDefinition>,
    pub sensors: Vec<std::sync::Arc<dyn Sensor>>,
    pub resources: Resources,
}

impl std::fmt::Debug for Definitions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Definitions")
            .field("assets", &self.assets)
            .field("schedules", &self.schedules)
            .field(
                "sensors",
                &self.sensors.iter().map(|s| s.name()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Definitions {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn asset(mut self, definition: AssetsDefinition) -> Self {
        self.assets.push(definition);
        self
    }

    pub fn assets(mut self, definitions: impl IntoIterator<Item = AssetsDefinition>) -> Self {
        self.assets.extend(definitions);
        self
    }

    pub fn schedule(mut self, schedule: ScheduleDefinition) -> Self {
        self.schedules.push(schedule);
        self
    }

    pub fn sensor(mut self, sensor: std::sync::Arc<dyn Sensor>) -> Self {
        self.sensors.push(sensor);
        self
    }

    pub fn resources(mut self, resources: Resources) -> Self {
        self.resources = resources;
        self
    }

    /// Adds another set of definitions (their resources are added to these).
    pub fn merge(mut self, other: Definitions) -> Self {
        self.assets.extend(other.assets);
        self.schedules.extend(other.schedules);
        self.sensors.extend(other.sensors);
        self.resources = self.resources.merge(&other.resources);
        self
    }

    /// Validates the assets into a graph.
    pub fn graph(&self) -> Result<AssetGraph, GraphError> {
        AssetGraph::new(self.assets.clone())
    }
}

/// A graph error as a message that says where each definition comes from: for a duplicate
/// asset key, `origin(i)` names the `i`th of `assets` (two `[[asset]]` tables of one key are
/// otherwise "defined by `a` and by `a`").
pub fn describe_graph_error(
    error: &GraphError,
    assets: &[AssetsDefinition],
    origin: impl Fn(usize) -> String,
) -> String {
    let GraphError::DuplicateKey { key, .. } = error else {
        return error.to_string();
    };
    let places: Vec<String> = assets
        .iter()
        .enumerate()
        .filter(|(_, d)| d.specs.iter().any(|s| &s.key == key))
        .map(|(i, _)| origin(i))
        .collect();
    match places.as_slice() {
        [first, second, ..] => format!(
            "duplicate asset key `{key}`: defined by {first} and again by {second}; an asset has one definition"
        ),
        _ => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::{ComputeError, Materialization};

    fn def(key: &str) -> AssetsDefinition {
        crate::asset::asset(key)
            .compute(|_ctx| async { Ok::<_, ComputeError>(Materialization::new()) })
            .unwrap()
    }

    /// Issue 14: two `[[asset]]` tables of one key said "defined by `a` and by `a`".
    #[test]
    fn duplicate_keys_name_the_origin_of_each() {
        let defs = Definitions::new().assets([def("x"), def("a"), def("a")]);
        let error = defs.graph().unwrap_err();
        let origin = |i: usize| match i {
            0 => "the compiled-in assets".to_owned(),
            i => format!("[[asset]] number {i} in orch.toml"),
        };
        assert_eq!(
            describe_graph_error(&error, &defs.assets, origin),
            "duplicate asset key `a`: defined by [[asset]] number 1 in orch.toml and again by [[asset]] number 2 in orch.toml; an asset has one definition"
        );
    }
}
