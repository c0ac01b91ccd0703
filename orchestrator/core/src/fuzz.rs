//! Property tests (proptest) over the parsers that read user input: selections, cron
//! expressions, partition keys and ranges, and the event log's JSON bodies. Each property holds
//! for every input: no panic, errors that point inside the input and stay short, and round
//! trips where there is one. Bounded: `ORCH_FUZZ_CASES` cases per property (default 256, a few
//! seconds in all); set it higher for a longer run (`ORCH_FUZZ_CASES=20000`).

use std::collections::BTreeSet;

use chrono::{TimeZone, Utc};
use proptest::prelude::*;

use crate::event::{EventBody, EventKind};
use crate::graph::AssetGraph;
use crate::metadata::Metadata;
use crate::partitions::PartitionsDefinition;
use crate::plan::tests::{def, hourly};
use crate::plan::{self, PartitionRequest};
use crate::selection::{Selection, SelectionError};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: crate::fuzz_cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Strings built from the pieces a parser looks at, so that the cases reach past the first
/// character check: `pieces` joined, with some noise.
fn made_of(pieces: &'static [&'static str], max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            4 => prop::sample::select(pieces).prop_map(str::to_owned),
            1 => any::<char>().prop_map(|c| c.to_string()),
        ],
        0..max,
    )
    .prop_map(|parts| parts.concat())
}

fn graph() -> AssetGraph {
    AssetGraph::new(vec![
        def("raw/events", &[], hourly()),
        def("staging/events", &["raw/events"], hourly()),
        def(
            "marts/daily",
            &["staging/events"],
            Some(PartitionsDefinition::daily("2026-11-01", "Europe/Paris").unwrap()),
        ),
        def("dim/users", &[], None),
    ])
    .unwrap()
}

const SELECTION_PIECES: &[&str] = &[
    "raw/events",
    "staging/events",
    "marts/daily",
    "dim/users",
    "*",
    "+",
    "++",
    ",",
    " ",
    "group:",
    "tag:",
    "kind:",
    "status:",
    "=",
    "/",
    "default",
    "dbt",
    "failed",
    "missing",
    "é",
];

const CRON_PIECES: &[&str] = &[
    "*",
    " ",
    "  ",
    "0",
    "1",
    "5",
    "7",
    "12",
    "23",
    "29",
    "30",
    "31",
    "59",
    "60",
    "61",
    "99",
    "-",
    ",",
    "/",
    "?",
    "MON",
    "fri",
    "JAN",
    "feb",
    "L",
    "W",
    "#",
    "4294967296",
];

const KEY_PIECES: &[&str] = &[
    "2026", "9999", "0000", "-", ":", "00", "01", "02", "10", "12", "13", "23", "24", "28", "29",
    "30", "31", "32", "59", "60", "99", "1", "9",
];

proptest! {
    #![proptest_config(config())]

    #[test]
    fn selections_parse_or_point_inside_the_input(input in made_of(SELECTION_PIECES, 12)) {
        let g = graph();
        match Selection::parse(&input) {
            Ok(selection) => {
                let _ = selection.resolve(&g);
            }
            Err(SelectionError::Parse { position, .. }) => {
                prop_assert!(position <= input.chars().count());
            }
            Err(e) => prop_assert!(false, "parse gave a resolve error: {e}"),
        }
    }

    #[test]
    fn any_text_is_a_selection_or_a_short_error(input in ".{0,300}") {
        if let Err(e) = Selection::parse(&input).and_then(|s| s.resolve(&graph())) {
            // The excerpt shows at most 80 characters of the input around the position.
            prop_assert!(e.to_string().chars().count() < 600, "{e}");
        }
    }

    #[test]
    fn cron_expressions_parse_or_say_why(input in made_of(CRON_PIECES, 14)) {
        match crate::cron::Cron::parse(&input, "Europe/Paris") {
            Ok(c) => {
                let t = Utc.with_ymd_and_hms(2026, 3, 29, 0, 30, 0).unwrap();
                // A five-field schedule that parses fires (six and seven fields may name
                // seconds and past years).
                let next = c.next_after(t);
                if input.split_whitespace().count() == 5 {
                    prop_assert!(next.is_some(), "`{input}` never fires");
                }
                let _ = c.latest_at_or_before(t);
            }
            Err(e) => prop_assert!(!e.is_empty()),
        }
    }

    #[test]
    fn five_field_crons_from_valid_pieces(
        m in "(\\*|[0-5]?[0-9])(/[1-9])?",
        h in "(\\*|1?[0-9]|2[0-3])",
        dom in "(\\*|[1-9]|[12][0-9]|3[01])",
        mon in "(\\*|[1-9]|1[0-2]|JAN|dec)",
        dow in "(\\*|[0-7]|MON-FRI|[0-5]-7)",
    ) {
        let expr = format!("{m} {h} {dom} {mon} {dow}");
        match crate::cron::parse_cron(&expr) {
            Ok(_) => {}
            // The only refusal of in-range fields: a date that does not exist.
            Err(e) => prop_assert!(e.starts_with("it never fires"), "`{expr}`: {e}"),
        }
    }

    #[test]
    fn partition_keys_validate_or_say_why(key in made_of(KEY_PIECES, 8), other in made_of(KEY_PIECES, 8)) {
        let defs = [
            PartitionsDefinition::hourly("2026-11-01-00:00", "UTC").unwrap(),
            PartitionsDefinition::daily("2026-11-01", "America/Sao_Paulo").unwrap(),
            PartitionsDefinition::static_keys(["2026", "eu", "us"]).unwrap(),
        ];
        for d in &defs {
            match d.window(&key) {
                Ok(Some(w)) => {
                    prop_assert!(w.start < w.end);
                    prop_assert_eq!(d.key_containing(w.start), Some(key.clone()));
                }
                Ok(None) => prop_assert!(!d.is_time()),
                Err(e) => prop_assert!(e.to_string().chars().count() < 400, "{e}"),
            }
            if let Ok(keys) = d.keys_in_range_at_most(&key, &other, 50) {
                prop_assert!(!keys.is_empty() && keys.len() <= 50);
                prop_assert_eq!(keys.first(), Some(&key));
                prop_assert_eq!(keys.last(), Some(&other));
            }
        }
    }

    #[test]
    fn ranges_are_checked_in_bounded_time(from in made_of(KEY_PIECES, 8), to in made_of(KEY_PIECES, 8)) {
        let g = graph();
        let selected: BTreeSet<_> = g.toposorted().iter().cloned().collect();
        let request = PartitionRequest::Range { from, to };
        if plan::check_range_size(&g, &selected, &request, 100).is_ok() {
            let _ = plan::plan(&g, &selected, &request);
        }
    }

    #[test]
    fn event_bodies_decode_or_fail_cleanly(input in ".{0,200}") {
        let _ = serde_json::from_str::<EventBody>(&input);
        let _ = serde_json::from_str::<Metadata>(&input);
        let _ = EventKind::parse(&input);
    }

    #[test]
    fn event_bodies_round_trip(
        message in proptest::option::of(".{0,40}"),
        attempt in proptest::option::of(1u32..10),
        delay in proptest::option::of(any::<u64>()),
        duration in proptest::option::of(0.0f64..1e9),
        end in proptest::option::of("[0-9:-]{0,16}"),
    ) {
        let body = EventBody {
            message,
            attempt,
            retry_delay_ms: delay,
            duration_ms: duration,
            partition_key_end: end,
            ..EventBody::default()
        };
        let text = serde_json::to_string(&body).unwrap();
        let mut back: EventBody = serde_json::from_str(&text).unwrap();
        // serde_json reads floats to within one unit in the last place (no `float_roundtrip`):
        // durations are compared to that precision.
        if let (Some(a), Some(b)) = (back.duration_ms, body.duration_ms) {
            prop_assert!((a - b).abs() <= b.abs() * 1e-15, "{a} != {b}");
            back.duration_ms = body.duration_ms;
        }
        prop_assert_eq!(back, body);
    }

    #[test]
    fn structured_event_json_decodes_or_fails_cleanly(
        keys in prop::collection::vec(prop::sample::select(&["message", "error", "attempt", "retry_delay_ms", "duration_ms", "metadata", "check", "code_version", "partition_key_end", "causes", "row_count"][..]), 0..5),
        values in prop::collection::vec(prop::sample::select(&["null", "1", "-1", "1e400", "\"x\"", "[]", "{}", "{\"message\":\"m\"}", "{\"row_count\":{\"int\":3}}", "true", "18446744073709551616"][..]), 5),
    ) {
        let fields: Vec<String> = keys.iter().zip(values.iter()).map(|(k, v)| format!("\"{k}\":{v}")).collect();
        let text = format!("{{{}}}", fields.join(","));
        if let Ok(body) = serde_json::from_str::<EventBody>(&text) {
            let again = serde_json::to_string(&body).unwrap();
            let _ = serde_json::from_str::<EventBody>(&again).unwrap();
        }
    }
}
