//! A closed batch into the lake: one Parquet file per event hour and one dead-letter file per
//! hour of dead letters, each named from the partition and the offsets it holds, so that writing
//! the same records again replaces the same files.

use std::collections::BTreeMap;

use orch_lake::{DeadLetter, FileName, Hour, Lake, LakeError, WrittenFile};

use crate::buffer::Flush;

/// The `_source` of rows read from Kafka, and the first part of their files' names.
pub const SOURCE: &str = "kafka";

/// Writes `flush` to `lake`: durable when it returns. Files that were written before an error
/// are left; writing the flush again replaces them.
pub async fn write_flush(lake: &Lake, flush: &Flush) -> Result<Vec<WrittenFile>, LakeError> {
    let mut written = Vec::with_capacity(flush.hours.len() + 1);
    for hour in &flush.hours {
        let (Some(first), Some(last)) = (hour.min_offset, hour.max_offset) else {
            continue;
        };
        let name = FileName::kafka(SOURCE, flush.partition, first, last)?;
        written.push(
            lake.write_parquet(
                flush.topic,
                hour.hour,
                &name,
                std::slice::from_ref(&hour.batch),
            )
            .await?,
        );
    }
    let mut by_hour: BTreeMap<Hour, Vec<DeadLetter>> = BTreeMap::new();
    for letter in &flush.dead_letters {
        by_hour
            .entry(letter.hour())
            .or_default()
            .push(letter.clone());
    }
    for (hour, letters) in by_hour {
        let offsets = letters.iter().filter_map(|l| l.offset);
        let (first, last) = (
            offsets.clone().min().unwrap_or(flush.first_offset),
            offsets.max().unwrap_or(flush.last_offset),
        );
        let name = FileName::kafka(SOURCE, flush.partition, first, last)?;
        written.push(
            lake.write_dead_letters(flush.topic, hour, &name, &letters)
                .await?,
        );
    }
    Ok(written)
}
