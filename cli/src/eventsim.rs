//! `orch eventsim`: generates the music-streaming site's events (eventsim's four topics) into
//! a sink, as fast as possible or paced in real time, and prints what it wrote.

use std::path::PathBuf;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use clap::{Args, ValueEnum};
use orch_eventsim::{
    Config, CountingSink, DEFAULT_SONGS, JsonlSink, Sink, Speed, Summary, Topic, run,
};
use tokio_util::sync::CancellationToken;

use crate::table::{Table, duration_ms};
use crate::{CmdResult, Failure};

#[derive(Debug, Args)]
pub struct EventsimArgs {
    /// Users at the start (more arrive with --growth-rate).
    #[arg(long, default_value_t = 100)]
    users: u32,
    /// Start of event time: RFC 3339, `YYYY-MM-DD-HH:MM` or `YYYY-MM-DD` (UTC). Default: now.
    #[arg(long, value_name = "TIME")]
    from: Option<String>,
    /// End of event time, excluded; same formats. Default: a day after --from.
    #[arg(long, value_name = "TIME")]
    to: Option<String>,
    /// The same seed with the same options gives the same events.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// `fast` (as fast as possible), `realtime` (event time follows the wall clock) or a
    /// factor such as `60x` (an hour of events a minute).
    #[arg(long, default_value = "fast", value_parser = parse_speed)]
    speed: Speed,
    /// Where events go: `jsonl` writes one file per topic into --out; `count` only counts.
    #[arg(long, value_enum, default_value_t = SinkChoice::Jsonl)]
    sink: SinkChoice,
    /// The folder for --sink jsonl: TOPIC.jsonl for each of the four topics.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// The lake for --sink lake: a folder (default `.orch/lake` in the project), `gs://` or
    /// `s3://`.
    #[arg(long, value_name = "URL")]
    lake: Option<String>,
    /// Annual growth of the user base as a fraction (10 = tenfold a year, as Streamify runs
    /// eventsim); new users arrive as guests.
    #[arg(long, default_value_t = 10.0)]
    growth_rate: f64,
    /// Annual attrition of the user base as a fraction.
    #[arg(long, default_value_t = 0.0)]
    attrition_rate: f64,
    /// Mean seconds between a user's sessions (eventsim's `beta`; default a week, about 2.5
    /// events per user a day). Lower it for a busier service from the same users.
    #[arg(long, value_name = "SECONDS")]
    session_interval: Option<f64>,
    /// Mean seconds between a user's requests within a session (eventsim's `alpha`).
    #[arg(long, value_name = "SECONDS")]
    request_interval: Option<f64>,
    /// Songs in the generated catalogue.
    #[arg(long, default_value_t = DEFAULT_SONGS)]
    songs: usize,
    /// The first user's id.
    #[arg(long, default_value_t = 1)]
    first_user_id: u64,
    /// The Kafka (Redpanda) bootstrap servers for --sink kafka.
    #[arg(long, env = "ORCH_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
    /// For --sink kafka: send at most this many events per second (whatever --speed says).
    #[arg(long, value_name = "EVENTS_PER_SEC")]
    rate: Option<f64>,
    /// For --sink kafka: a librdkafka producer setting, KEY=VALUE (repeatable), e.g.
    /// `-X linger.ms=20 -X compression.type=lz4`.
    #[arg(short = 'X', value_name = "KEY=VALUE", value_parser = crate::stream::parse_setting)]
    kafka: Vec<(String, String)>,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SinkChoice {
    /// Parquet files in the lake, by topic and hour (the platform's embedded default).
    Lake,
    Jsonl,
    /// Each event's JSON to its topic on Kafka (Redpanda), keyed by its event id.
    Kafka,
    Count,
}

fn parse_speed(s: &str) -> Result<Speed, String> {
    s.parse()
}

/// RFC 3339, `YYYY-MM-DD-HH:MM` (a partition key), `YYYY-MM-DDTHH:MM[:SS]` or `YYYY-MM-DD`,
/// the last three in UTC.
fn parse_time(flag: &str, s: &str) -> Result<DateTime<Utc>, Failure> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%d-%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, format) {
            return Ok(t.and_utc());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
    }
    Err(Failure::Usage(format!(
        "{flag} {s:?}: expected RFC 3339 (2026-11-22T10:00:00Z), YYYY-MM-DD-HH:MM or YYYY-MM-DD"
    )))
}

pub async fn run_eventsim(args: EventsimArgs) -> CmdResult {
    let start = match &args.from {
        Some(s) => parse_time("--from", s)?,
        None => {
            let now = Utc::now();
            DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now)
        }
    };
    let end = match &args.to {
        Some(s) => parse_time("--to", s)?,
        None => start + chrono::Duration::days(1),
    };
    let mut config = Config::new(args.seed, args.users, start, end);
    config.speed = args.speed;
    config.growth_rate = args.growth_rate;
    config.attrition_rate = args.attrition_rate;
    for (flag, value, param) in [
        (
            "--session-interval",
            args.session_interval,
            &mut config.site.beta,
        ),
        (
            "--request-interval",
            args.request_interval,
            &mut config.site.alpha,
        ),
    ] {
        if let Some(seconds) = value {
            if !seconds.is_finite() || seconds <= 0.0 {
                return Err(Failure::Usage(format!(
                    "{flag} must be a number of seconds above 0, not {seconds}"
                )));
            }
            *param = seconds;
        }
    }
    config.songs = args.songs;
    config.first_user_id = args.first_user_id;
    config
        .validate()
        .map_err(|e| Failure::Usage(e.to_string()))?;

    let mut lake_sink = None;
    let mut sink: Box<dyn Sink> = match args.sink {
        SinkChoice::Lake => {
            let url = match &args.lake {
                Some(url) => url.clone(),
                None => crate::project::config(None)?
                    .state_dir
                    .join("lake")
                    .display()
                    .to_string(),
            };
            let lake = orch_lake::Lake::open(&url).map_err(|e| Failure::Usage(e.to_string()))?;
            lake_sink = Some(orch_platform::eventsim_sink::LakeSink::new(lake, args.seed));
            Box::new(orch_eventsim::CountingSink::new())
        }
        SinkChoice::Jsonl => {
            let Some(dir) = &args.out else {
                return Err(Failure::Usage(
                    "--sink jsonl writes into a folder: pass --out DIR (or --sink count)".into(),
                ));
            };
            Box::new(JsonlSink::create(dir).await?)
        }
        SinkChoice::Kafka => {
            if args.rate.is_some_and(|r| r.is_nan() || r <= 0.0) {
                return Err(Failure::Usage("--rate must be above 0".into()));
            }
            let producer = orch_streaming::Producer::new(&args.brokers, &args.kafka)?;
            Box::new(orch_streaming::KafkaSink::new(producer, args.rate))
        }
        SinkChoice::Count => Box::new(CountingSink::new()),
    };

    let cancel = CancellationToken::new();
    // The handlers are installed here, before the run starts, so that no early Ctrl-C kills
    // the process with its files half written.
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let stop = cancel.clone();
    let signals = tokio::spawn(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        stop.cancel();
    });
    if !args.json {
        eprintln!(
            "eventsim: {} users from {} to {}, seed {}, {}{}",
            args.users,
            start.to_rfc3339(),
            end.to_rfc3339(),
            args.seed,
            speed_name(args.speed),
            if matches!(args.speed, Speed::RealTime { .. }) {
                " (Ctrl-C stops)"
            } else {
                ""
            }
        );
    }
    let result = match &mut lake_sink {
        Some(lake) => {
            let result = run(&config, &mut *lake, &cancel).await;
            match result {
                Ok(summary) => lake
                    .finish()
                    .await
                    .map(|()| summary)
                    .map_err(orch_eventsim::RunError::from),
                Err(e) => Err(e),
            }
        }
        None => run(&config, &mut sink, &cancel).await,
    };
    signals.abort();
    let summary = result?;
    if let Some(lake) = &lake_sink
        && !args.json
    {
        eprintln!(
            "lake: {} Parquet file(s), {} rows, {} bytes",
            lake.files, lake.rows, lake.bytes
        );
    }
    if args.json {
        println!("{}", summary_json(&summary, &args));
    } else {
        print!("{}", summary_text(&summary, &args));
    }
    Ok(())
}

fn speed_name(speed: Speed) -> String {
    match speed {
        Speed::Fast => "as fast as possible".into(),
        Speed::RealTime { factor: 1.0 } => "in real time".into(),
        Speed::RealTime { factor } => format!("at {factor}x real time"),
    }
}

fn ts(ms: Option<i64>) -> String {
    ms.and_then(DateTime::from_timestamp_millis)
        .map_or_else(|| "-".into(), |t| t.to_rfc3339())
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn summary_text(s: &Summary, args: &EventsimArgs) -> String {
    let mut table = Table::new(&["topic", "events"]);
    for topic in Topic::ALL {
        table.row(vec![topic.name().into(), thousands(s.count(topic))]);
    }
    table.row(vec!["total".into(), thousands(s.events())]);
    let arrived = s.users.saturating_sub(s.initial_users as usize);
    let mut out = table.render();
    out.push_str(&format!(
        "users: {} at the start, {arrived} arrived, {} seen logged in\n",
        s.initial_users, s.users_seen
    ));
    out.push_str(&format!(
        "time span: {} to {} (events from {} to {})\n",
        s.start.to_rfc3339(),
        s.end.to_rfc3339(),
        ts(s.first_ts),
        ts(s.last_ts)
    ));
    out.push_str(&format!(
        "generated in {}: {} events/s\n",
        duration_ms(s.elapsed.as_secs_f64() * 1000.0),
        thousands(s.events_per_second().round() as u64)
    ));
    if let (SinkChoice::Jsonl, Some(dir)) = (args.sink, &args.out) {
        out.push_str(&format!(
            "written to {}\n",
            dir.join("{topic}.jsonl").display()
        ));
    }
    if s.interrupted {
        out.push_str("interrupted: stopped before the end of the time span\n");
    }
    out
}

fn summary_json(s: &Summary, args: &EventsimArgs) -> serde_json::Value {
    let events: serde_json::Map<String, serde_json::Value> = Topic::ALL
        .into_iter()
        .map(|t| (t.name().to_owned(), s.count(t).into()))
        .collect();
    serde_json::json!({
        "seed": args.seed,
        "from": s.start.to_rfc3339(),
        "to": s.end.to_rfc3339(),
        "initial_users": s.initial_users,
        "users": s.users,
        "users_seen": s.users_seen,
        "events": events,
        "total": s.events(),
        "first_ts": s.first_ts,
        "last_ts": s.last_ts,
        "elapsed_s": s.elapsed.as_secs_f64(),
        "events_per_second": s.events_per_second(),
        "interrupted": s.interrupted,
        "out": args.out.as_ref().map(|d| d.display().to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_in_every_accepted_format() {
        let expected: DateTime<Utc> = "2026-11-22T10:00:00Z".parse().expect("time");
        for s in [
            "2026-11-22T10:00:00Z",
            "2026-11-22T11:00:00+01:00",
            "2026-11-22-10:00",
            "2026-11-22T10:00:00",
            "2026-11-22T10:00",
        ] {
            assert_eq!(parse_time("--from", s).ok(), Some(expected), "{s}");
        }
        let midnight: DateTime<Utc> = "2026-11-22T00:00:00Z".parse().expect("time");
        assert_eq!(parse_time("--from", "2026-11-22").ok(), Some(midnight));
        let err = parse_time("--to", "yesterday").err();
        assert!(
            matches!(&err, Some(Failure::Usage(m)) if m.contains("--to \"yesterday\"")),
            "{err:?}"
        );
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
