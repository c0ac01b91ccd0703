//! The lake as the late-file sensor sees it: [`LakeFiles`] lists each topic's day folders (one
//! listing), then each day from the sensor's lookback on (one listing per day), through the
//! lake's own layout, on a local folder, GCS or S3 alike. The platform's `lake_late_files`
//! sensor and every `[[sensor]] type = "lake"` of `orch.toml` read the lake through it.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use orch::daemon::{LakeListing, LakeSensor};
use orch_lake::{Lake, Topic};

/// The lake's raw files, newest modification per topic and hour.
pub struct LakeFiles(Arc<Lake>);

impl LakeFiles {
    /// A late-file sensor named `name` over `lake`.
    pub fn sensor(name: &str, lake: Arc<Lake>) -> LakeSensor {
        LakeSensor::over(name, Arc::new(LakeFiles(lake)))
    }

    /// A late-file sensor over the lake at `url` (a folder, `gs://...` or `s3://...`).
    pub fn sensor_at(name: &str, url: &str) -> Result<LakeSensor, String> {
        let lake = Lake::open(url).map_err(|e| e.to_string())?;
        Ok(LakeFiles::sensor(name, Arc::new(lake)))
    }
}

#[async_trait::async_trait]
impl LakeListing for LakeFiles {
    fn describe(&self) -> String {
        self.0.url().to_owned()
    }

    async fn newest_files(
        &self,
        since: DateTime<Utc>,
    ) -> Result<BTreeMap<(String, String), DateTime<Utc>>, String> {
        let mut newest = BTreeMap::new();
        let first = since.date_naive();
        for topic in Topic::ALL {
            let days = self
                .0
                .list_raw_days(topic)
                .await
                .map_err(|e| e.to_string())?;
            for day in days.into_iter().filter(|d| *d >= first) {
                let hours = self
                    .0
                    .newest_raw_files_of_day(topic, day)
                    .await
                    .map_err(|e| e.to_string())?;
                for (hour, modified) in hours {
                    newest.insert((topic.as_str().to_owned(), hour.to_string()), modified);
                }
            }
        }
        Ok(newest)
    }
}
