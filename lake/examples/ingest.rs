//! The streaming worker's CPU path without Kafka: eventsim's JSON decoded and validated, into
//! hourly Arrow batches, encoded as Parquet, by stage. For profiling (`perf record`) and for
//! comparing changes; `orch bench stream` measures the whole worker.
//!
//! ```sh
//! cargo run --release -p orch-lake --example ingest -- 500000
//! ```

use std::time::Instant;

use chrono::{DateTime, Utc};
use orch_lake::{EncodedFile, FileName, HourlyBatches, Lineage, Topic, decode};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(500_000);
    let start: DateTime<Utc> = "2026-11-22T00:00:00Z".parse().unwrap();
    let mut config =
        orch_eventsim::Config::new(1, 200_000, start, start + chrono::Duration::days(7));
    config.speed = orch_eventsim::Speed::Fast;
    let records: Vec<(Topic, Vec<u8>, String)> = orch_eventsim::Simulation::new(&config)
        .unwrap()
        .take(n)
        .map(|event| {
            let mut json = Vec::new();
            event.write_json(&mut json).unwrap();
            let topic: Topic = event.topic().name().parse().unwrap();
            (topic, json, event.event_id().to_string())
        })
        .collect();
    let bytes: usize = records.iter().map(|r| r.1.len()).sum();
    println!(
        "{n} events, {:.0} bytes of JSON each",
        bytes as f64 / n as f64
    );

    let began = Instant::now();
    let mut valid = 0;
    for (topic, json, _) in &records {
        valid += decode(*topic, json).is_ok() as usize;
    }
    let decode_s = began.elapsed().as_secs_f64();
    assert_eq!(valid, n);
    println!(
        "decode:            {:6.2} µs/event",
        decode_s * 1e6 / n as f64
    );

    let now = Utc::now();
    let began = Instant::now();
    let mut batches: Vec<HourlyBatches> =
        Topic::ALL.iter().map(|t| HourlyBatches::new(*t)).collect();
    let mut hours = Vec::new();
    for (offset, (topic, json, key)) in records.iter().enumerate() {
        let mut event = decode(*topic, json).unwrap();
        event.event_id = Some(key.clone());
        let i = Topic::ALL.iter().position(|t| t == topic).unwrap();
        batches[i]
            .append(&event, &Lineage::kafka(0, offset as i64, now))
            .unwrap();
        if batches[i].len() >= 10_000 {
            hours.extend(batches[i].drain().into_iter().map(|h| (*topic, h)));
        }
    }
    for (i, b) in batches.iter_mut().enumerate() {
        hours.extend(b.drain().into_iter().map(|h| (Topic::ALL[i], h)));
    }
    let append_s = began.elapsed().as_secs_f64();
    println!(
        "decode + append:   {:6.2} µs/event ({} hour batches)",
        append_s * 1e6 / n as f64,
        hours.len()
    );

    let began = Instant::now();
    let mut out = 0;
    for (topic, hour) in &hours {
        let name = FileName::kafka(
            "kafka",
            0,
            hour.min_offset.unwrap(),
            hour.max_offset.unwrap(),
        )
        .unwrap();
        let file =
            EncodedFile::parquet(*topic, hour.hour, &name, std::slice::from_ref(&hour.batch))
                .unwrap();
        out += file.bytes.len();
    }
    let encode_s = began.elapsed().as_secs_f64();
    println!(
        "Parquet encoding:  {:6.2} µs/event ({:.0} bytes/event)",
        encode_s * 1e6 / n as f64,
        out as f64 / n as f64
    );
    println!(
        "total:             {:6.2} µs/event, {:.0} events per CPU-second",
        (append_s + encode_s) * 1e6 / n as f64,
        n as f64 / (append_s + encode_s)
    );
}
