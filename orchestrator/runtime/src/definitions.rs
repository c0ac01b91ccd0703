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
