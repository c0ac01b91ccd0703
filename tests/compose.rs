//! docker-compose.yml: every service the product names is there, and every `orch` command a
//! service runs is accepted by this `orch` (the command's own arguments, then `--help`: clap
//! refuses an unknown subcommand or flag before it reaches `--help`). No Docker engine runs
//! here; the file is checked, not started.

use std::collections::BTreeMap;

use crate::util::Project;

/// Commands in docker-compose.yml that `orch` does not have in this branch yet.
/// FIXME: `orch web` arrives with the web UI; remove it from here when that is merged (the
/// test below fails until you do, so that this list cannot go stale).
const NOT_YET_IN_ORCH: &[&str] = &[];

/// The services of docker-compose.yml, with each one's command when it is a list.
fn services() -> BTreeMap<String, Option<Vec<String>>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docker-compose.yml");
    let text = std::fs::read_to_string(path).expect("docker-compose.yml at the root");
    let mut doc: serde_yaml::Value = serde_yaml::from_str(&text).expect("valid YAML");
    doc.apply_merge().expect("merge keys resolve");
    let services = doc["services"].as_mapping().expect("a services mapping");
    services
        .iter()
        .map(|(name, service)| {
            let command = service.get("command").map(|c| match c {
                serde_yaml::Value::Sequence(items) => items
                    .iter()
                    .map(|i| i.as_str().expect("command items are strings").to_owned())
                    .collect(),
                other => panic!("{name:?}: write the command as a list, not {other:?}"),
            });
            (name.as_str().unwrap().to_owned(), command)
        })
        .collect()
}

#[test]
fn compose_has_the_platforms_services() {
    let services = services();
    for name in [
        "postgres",
        "redpanda",
        "console",
        "fake-gcs-server",
        "orch-daemon",
        "orch-web",
        "stream-worker-1",
        "stream-worker-2",
        "eventsim",
    ] {
        assert!(
            services.contains_key(name),
            "docker-compose.yml has no {name}"
        );
    }
    let workers = services
        .values()
        .flatten()
        .filter(|c| {
            c.first().map(String::as_str) == Some("orch")
                && c.get(1).map(String::as_str) == Some("stream")
        })
        .count();
    assert_eq!(workers, 2, "two stream workers");
}

#[test]
fn every_orch_command_in_compose_exists() {
    let project = Project::empty();
    let mut checked = Vec::new();
    for (name, command) in services() {
        let Some(command) = command else { continue };
        if command.first().map(String::as_str) != Some("orch") {
            continue;
        }
        let mut args: Vec<&str> = command[1..].iter().map(String::as_str).collect();
        args.push("--help");
        let run = project.run(&args);
        let subcommand = command.get(1).map(String::as_str).unwrap_or("");
        if NOT_YET_IN_ORCH.contains(&subcommand) {
            assert_eq!(
                run.code(),
                2,
                "service {name}: `orch {subcommand}` now exists: remove it from NOT_YET_IN_ORCH"
            );
            assert!(
                run.stderr().contains("unrecognized subcommand"),
                "{}",
                run.stderr()
            );
        } else {
            assert_eq!(
                run.code(),
                0,
                "service {name}: `{}` is refused by orch:\n{}",
                command.join(" "),
                run.stderr()
            );
            assert!(run.stdout().contains("Usage: orch"), "{}", run.stdout());
        }
        checked.push(name);
    }
    assert!(checked.len() >= 5, "orch services checked: {checked:?}");
}
