//! The OpenAPI 3.1 document of the JSON API, served at `/api/v1/openapi.json`. Written by
//! hand next to the routes: every operation has the schema of its success response, typed
//! parameters and every status it can answer; a router test checks that every API route is in
//! it, and the schemathesis run of the test command (`scripts/schemathesis`) checks the
//! server against it.

use axum::Json;
use serde_json::{Value, json};

fn r(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn error(description: &str) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": r("Error") } } })
}

fn ok(description: &str, schema: Value) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": schema } } })
}

/// The statuses every request may get: the Host check (403) and, where a token is set, the
/// token (401).
fn common(responses: &mut Value) {
    responses["401"] = error(
        "The server has an access token (ORCH_WEB_TOKEN) and the request carries none, or a wrong one",
    );
    responses["403"] = error(
        "The Host (or Origin) is not one this server answers to (DNS rebinding protection), or a write lacks the full token",
    );
}

fn get(summary: &str, params: Value, schema: Value, statuses: &[u16]) -> Value {
    let mut responses = json!({ "200": ok("OK", schema) });
    for s in statuses {
        responses[s.to_string()] = match s {
            400 => error("Bad input (a parameter): what is wrong, in words"),
            404 => error("No such resource"),
            409 => error("Not possible now (the marts' warehouse is not there or not built yet)"),
            _ => error("Error"),
        };
    }
    common(&mut responses);
    json!({ "summary": summary, "parameters": params, "security": [ {}, { "token": [] } ], "responses": responses })
}

/// A write: `success` is its status (200 or 201) with `schema`.
fn post(
    summary: &str,
    params: Value,
    body: Option<(Value, bool)>,
    success: u16,
    schema: Value,
    statuses: &[u16],
) -> Value {
    let mut responses = json!({});
    responses[success.to_string()] = ok(if success == 201 { "Created" } else { "OK" }, schema);
    for s in statuses {
        responses[s.to_string()] = match s {
            400 => error(
                "Bad input: the body, a selection, a partition key or range (with the limit on ranges), in words",
            ),
            404 => error("No such run or schedule"),
            409 => error("Not possible in the current state (e.g. canceling a finished run)"),
            _ => error("Error"),
        };
    }
    common(&mut responses);
    let mut op = json!({ "summary": summary, "parameters": params,
            "security": [ {}, { "token": [] } ], "responses": responses });
    if let Some((schema, required)) = body {
        op["requestBody"] = json!({ "required": required,
            "content": { "application/json": { "schema": schema } } });
    }
    op
}

fn path_param(name: &str, description: &str, schema: Value) -> Value {
    json!({ "name": name, "in": "path", "required": true, "description": description, "schema": schema })
}

fn query(name: &str, description: &str, schema: Value) -> Value {
    json!({ "name": name, "in": "query", "required": false, "description": description, "schema": schema })
}

fn string() -> Value {
    json!({ "type": "string" })
}

fn nullable_string() -> Value {
    json!({ "type": ["string", "null"] })
}

fn strings() -> Value {
    json!({ "type": "array", "items": { "type": "string" } })
}

fn string_map() -> Value {
    json!({ "type": "object", "additionalProperties": { "type": "string" } })
}

fn count_map() -> Value {
    json!({ "type": "object", "additionalProperties": { "type": "integer", "minimum": 0 } })
}

fn object(required: &[&str], properties: Value) -> Value {
    json!({ "type": "object", "required": required, "properties": properties })
}

fn list_of(field: &str, item: Value) -> Value {
    object(
        &[field],
        json!({ field: { "type": "array", "items": item } }),
    )
}

/// The schemas of the responses, as the views serialize them.
fn schemas() -> Value {
    let number_or_null = json!({ "type": ["number", "null"] });
    let int_or_null = json!({ "type": ["integer", "null"] });
    let run = object(
        &[
            "run_id",
            "short_id",
            "position",
            "status",
            "selection",
            "assets",
            "tags",
            "created_at",
            "is_terminal",
        ],
        json!({
            "run_id": { "type": "string", "format": "uuid" },
            "short_id": string(), "position": { "type": "integer" },
            "status": { "type": "string", "enum": ["QUEUED", "STARTING", "STARTED", "SUCCESS", "FAILURE", "CANCELING", "CANCELED"] },
            "selection": string(), "assets": strings(),
            "partition": nullable_string(), "partition_end": nullable_string(),
            "tags": string_map(),
            "parent_run_id": nullable_string(), "root_run_id": nullable_string(),
            "created_at": string(), "started_at": nullable_string(), "ended_at": nullable_string(),
            "duration": nullable_string(), "is_terminal": { "type": "boolean" }
        }),
    );
    let step = object(
        &["key", "status", "attempts"],
        json!({ "key": string(), "status": string(), "attempts": { "type": "integer", "minimum": 0 },
                "started_at": nullable_string(), "duration_ms": number_or_null,
                "error": nullable_string() }),
    );
    let event = object(
        &["id", "kind", "timestamp", "message"],
        json!({ "id": { "type": "integer" }, "kind": string(), "step_key": nullable_string(),
                "asset_key": nullable_string(), "partition": nullable_string(),
                "timestamp": string(), "message": string(), "error": nullable_string() }),
    );
    let log = object(
        &["step_key", "stream", "level", "timestamp", "message"],
        json!({ "step_key": string(), "stream": string(), "level": string(),
                "timestamp": string(), "message": string() }),
    );
    let asset_row = object(
        &["key", "group", "kinds", "state", "checks"],
        json!({ "key": string(), "group": string(), "kinds": strings(),
                "description": nullable_string(), "partitions": nullable_string(),
                "state": string(), "last_materialized_at": nullable_string(),
                "last_run_id": nullable_string(), "last_partition": nullable_string(),
                "checks": strings() }),
    );
    let mut asset = asset_row.clone();
    for (k, v) in [
        ("owners", strings()),
        ("tags", string_map()),
        ("code_version", nullable_string()),
        ("upstream", strings()),
        ("downstream", strings()),
        (
            "history",
            json!({ "type": "array", "items": object(&["event_id", "run_id", "timestamp"], json!({
            "event_id": { "type": "integer" }, "run_id": string(), "partition": nullable_string(),
            "timestamp": string(), "row_count": int_or_null, "duration_ms": number_or_null })) }),
        ),
        (
            "partition_grid",
            json!({ "type": "array", "items": object(&["key", "state"], json!({ "key": string(), "state": string() })) }),
        ),
        (
            "checks",
            json!({ "type": "array", "items": object(&["name", "severity", "blocking", "latest"], json!({
            "name": string(), "severity": string(), "blocking": { "type": "boolean" },
            "description": nullable_string(), "latest": string(), "latest_at": nullable_string() })) }),
        ),
        ("sql", nullable_string()),
        ("suggested_partition", nullable_string()),
    ] {
        asset["properties"][k] = v;
    }
    for k in [
        "owners",
        "tags",
        "upstream",
        "downstream",
        "history",
        "partition_grid",
    ] {
        if let Some(required) = asset["required"].as_array_mut() {
            required.push(json!(k));
        }
    }
    let tick = object(
        &["tick_time", "status"],
        json!({ "tick_time": string(), "status": string(), "run_id": nullable_string(), "message": nullable_string() }),
    );
    let schedule = object(
        &["name", "cron", "timezone", "selection", "enabled", "ticks"],
        json!({ "name": string(), "cron": string(), "timezone": string(), "selection": string(),
                "enabled": { "type": "boolean" }, "next_tick": nullable_string(),
                "ticks": { "type": "array", "items": r("Tick") } }),
    );
    let sensor = object(
        &["name", "ticks"],
        json!({ "name": string(), "ticks": { "type": "array", "items": r("Tick") } }),
    );
    let backfill = object(
        &[
            "id",
            "selection",
            "from",
            "to",
            "run_count",
            "created_at",
            "by_status",
        ],
        json!({ "id": string(), "selection": string(), "from": string(), "to": string(),
                "run_count": { "type": "integer", "minimum": 0 }, "created_at": string(),
                "by_status": count_map(), "ended": { "type": "integer", "minimum": 0 },
                "percent": { "type": "integer", "minimum": 0, "maximum": 100 } }),
    );
    let worker = object(
        &["worker_id", "group_id", "topics", "partitions"],
        json!({ "worker_id": string(), "group_id": string(), "topics": strings(), "partitions": strings(),
                "lag": int_or_null, "events_in": { "type": "integer" }, "events_written": { "type": "integer" },
                "dead_lettered": { "type": "integer" }, "events_per_sec": number_or_null,
                "last_file": nullable_string(), "started_at": string(), "heartbeat_at": string() }),
    );
    json!({
        "Error": object(&["error", "status"], json!({ "error": string(), "status": { "type": "integer", "minimum": 400, "maximum": 599 } })),
        "Run": run,
        "Step": step,
        "Event": event,
        "Log": log,
        "AssetRow": asset_row,
        "Asset": asset,
        "Tick": tick,
        "Schedule": schedule,
        "Sensor": sensor,
        "Backfill": backfill,
        "Worker": worker,
        "RunsPage": object(&["runs"], json!({ "runs": { "type": "array", "items": r("Run") }, "next": int_or_null, "prev": int_or_null })),
        "RunDetail": object(&["run", "steps"], json!({ "run": r("Run"), "steps": { "type": "array", "items": r("Step") } })),
        "Overview": object(
            &["run_counts", "recent_runs", "failing_assets", "asset_count", "schedules", "workers", "daemons"],
            json!({ "run_counts": count_map(), "recent_runs": { "type": "array", "items": r("Run") },
                    "failing_assets": { "type": "array", "items": r("AssetRow") },
                    "asset_count": { "type": "integer", "minimum": 0 },
                    "schedules": { "type": "array", "items": r("Schedule") },
                    "workers": { "type": "array", "items": r("Worker") }, "daemons": strings() })),
        "Lineage": object(&["nodes", "edges", "groups"], json!({
            "nodes": { "type": "array", "items": object(&["key", "group", "state", "stale", "kinds", "layer"], json!({
                "key": string(), "group": string(), "state": string(), "stale": { "type": "boolean" },
                "kinds": strings(), "description": { "type": ["string", "null"] },
                "layer": { "type": "integer", "minimum": 0 } })) },
            "edges": { "type": "array", "items": { "type": "array", "items": { "type": "integer", "minimum": 0 }, "minItems": 2, "maxItems": 2 } },
            "groups": strings() })),
        "Chart": object(&["chart", "title", "mart", "shape", "rows"], json!({
            "chart": string(), "title": string(), "mart": string(), "shape": string(),
            "rows": { "type": "array", "items": { "type": "array" } } })),
        "ScheduleState": object(&["name", "enabled"], json!({ "name": string(), "enabled": { "type": "boolean" } })),
        "OpenApi": object(&["openapi", "paths"], json!({ "openapi": string(), "paths": { "type": "object" } })),
    })
}

/// The document.
pub fn spec() -> Value {
    let uuid = json!({ "type": "string", "format": "uuid" });
    let run_id = path_param("run_id", "the run's id (a UUID)", uuid);
    let selection = json!({ "type": "string", "minLength": 1, "maxLength": orch::selection::MAX_SELECTION_CHARS });
    let key = json!({ "type": "string", "minLength": 1, "maxLength": 200 });
    let charts = json!({ "type": "string", "enum": crate::marts::Chart::every().map(|c| c.name()).collect::<Vec<_>>() });
    json!({
        "openapi": "3.1.0",
        "info": { "title": "orch API", "version": "1", "description": "Runs, assets, lineage, schedules, backfills, stream workers and mart charts of an orch deployment. Every request's Host must be one the server answers to (localhost, the bound address, names given with --allowed-host). When the server has an access token (always beyond loopback), every call needs `Authorization: Bearer ORCH_WEB_TOKEN` (reads also take ORCH_WEB_READ_TOKEN). A range covers at most `max_range_partitions` partitions (10,000 by default)." },
        "paths": {
            "/api/v1/overview": { "get": get("Run counts, recent runs, failing assets, schedules, workers", json!([]), r("Overview"), &[]) },
            "/api/v1/runs": {
                "get": get("Runs, newest first, keyset-paginated", json!([
                    query("status", "statuses, comma separated (queued, started, success, failure, ...)", string()),
                    query("asset", "runs that selected this asset key", string()),
                    query("partition", "runs over this partition key", string()),
                    query("tag", "key=value", string()),
                    query("launched_by", "what launched the runs: schedule, sensor, backfill, automation, web, cli, dev (not with `tag`)", string()),
                    query("before", "the `next` cursor of the previous page", json!({ "type": "integer" })),
                    query("after", "the `prev` cursor of the next page: the newer runs nearest to it", json!({ "type": "integer" })),
                    query("limit", "runs on the page", json!({ "type": "integer", "minimum": 1, "maximum": 500, "default": 50 }))]),
                    r("RunsPage"), &[400]),
                "post": post("Materialize a selection (queues a run)", json!([]), Some((json!({
                    "type": "object", "required": ["selection"],
                    "properties": { "selection": selection, "partition": key.clone(),
                                    "from": key.clone(), "to": key.clone() } }), true)), 201, r("Run"), &[400])
            },
            "/api/v1/runs/{run_id}": { "get": get("A run and its steps", json!([run_id]), r("RunDetail"), &[400, 404]) },
            "/api/v1/runs/{run_id}/events": { "get": get("A run's event log", json!([run_id,
                query("kind", "event kinds, comma separated", string()), query("step", "a step key", string()),
                query("after", "events after this id", json!({ "type": "integer" }))]),
                list_of("events", r("Event")), &[400, 404]) },
            "/api/v1/runs/{run_id}/logs": { "get": get("A run's step logs (stdout, stderr, logger)", json!([run_id, query("step", "a step key", string())]),
                list_of("logs", r("Log")), &[400, 404]) },
            "/api/v1/runs/{run_id}/cancel": { "post": post("Cancel a queued or running run", json!([run_id]), None, 200, r("Run"), &[400, 404, 409]) },
            "/api/v1/runs/{run_id}/reexecute": { "post": post("Re-execute a finished run (the body is optional: none re-executes it whole)", json!([run_id]), Some((json!({
                "type": "object", "properties": { "from_failure": { "type": "boolean" } } }), false)), 201, r("Run"), &[400, 404, 409]) },
            "/api/v1/assets": { "get": get("The asset catalog", json!([query("select", "a selection (Dagster's syntax, `status:stale` included)", string())]),
                list_of("assets", r("AssetRow")), &[400]) },
            "/api/v1/assets/{key}": { "get": get("An asset: history, partitions, checks, lineage", json!([path_param("key", "the asset key, a/b", string())]),
                r("Asset"), &[400, 404]) },
            "/api/v1/lineage": { "get": get("The lineage graph: assets (group, state, stale, layer) and edges", json!([query("select", "a selection, `status:stale` included", string())]), r("Lineage"), &[400]) },
            "/api/v1/schedules": { "get": get("Schedules and sensors with their recent ticks", json!([]),
                object(&["schedules", "sensors"], json!({ "schedules": { "type": "array", "items": r("Schedule") },
                                                          "sensors": { "type": "array", "items": r("Sensor") } })), &[]) },
            "/api/v1/schedules/{name}": { "post": post("Turn a schedule on or off", json!([path_param("name", "the schedule", string())]), Some((json!({
                "type": "object", "required": ["enabled"], "properties": { "enabled": { "type": "boolean" } } }), true)), 200, r("ScheduleState"), &[400, 404]) },
            "/api/v1/backfills": {
                "get": get("Backfills with their progress", json!([]), list_of("backfills", r("Backfill")), &[]),
                "post": post("Launch a backfill: one run per partition", json!([]), Some((json!({
                    "type": "object", "required": ["selection", "from", "to"],
                    "properties": { "selection": selection, "from": key.clone(), "to": key,
                        "confirm": { "type": "boolean", "description": "queue it though it makes more runs than `confirm_runs_above` (400 without it)" } } }), true)), 201, r("Backfill"), &[400])
            },
            "/api/v1/backfills/{id}": { "get": get("A backfill's progress", json!([path_param("id", "the backfill id", string())]), r("Backfill"), &[404]) },
            "/api/v1/stream-workers": { "get": get("Streaming workers seen in the last hour", json!([]), list_of("workers", r("Worker")), &[]) },
            "/api/v1/marts/{chart}": { "get": get("A dashboard chart's rows", json!([path_param("chart", "the chart (the by-period ones at `?grain=`)", charts),
                query("grain", "the grain of a by-period chart (default day)", json!({ "type": "string", "enum": crate::marts::Grain::ALL.map(|g| g.name()) }))]), r("Chart"), &[400, 404, 409]) },
            "/api/v1/openapi.json": { "get": get("This document", json!([]), r("OpenApi"), &[]) }
        },
        "components": {
            "securitySchemes": { "token": { "type": "http", "scheme": "bearer" } },
            "schemas": schemas()
        }
    })
}

pub async fn document() -> Json<Value> {
    Json(spec())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 14: no 2xx response had a schema, `run_id` and `limit` were loosely typed, the
    /// marts' 409 was missing.
    #[test]
    fn every_operation_has_a_success_schema_typed_parameters_and_its_statuses() {
        let doc = spec();
        let schemas = &doc["components"]["schemas"];
        let mut operations = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                operations += 1;
                let responses = op["responses"].as_object().unwrap();
                let success: Vec<_> = responses.keys().filter(|s| s.starts_with('2')).collect();
                assert_eq!(success.len(), 1, "{method} {path}: one success status");
                let schema =
                    &responses[success[0].as_str()]["content"]["application/json"]["schema"];
                assert!(schema.is_object(), "{method} {path}: no response schema");
                for status in ["401", "403"] {
                    assert!(
                        responses.contains_key(status),
                        "{method} {path}: no {status}"
                    );
                }
                for p in op["parameters"].as_array().unwrap() {
                    assert!(
                        p["schema"]["type"].is_string(),
                        "{method} {path}: untyped {p}"
                    );
                }
                if path.contains("{run_id}") {
                    assert!(responses.contains_key("404") && responses.contains_key("400"));
                }
            }
        }
        assert_eq!(operations, 19);
        let run_id = &doc["paths"]["/api/v1/runs/{run_id}"]["get"]["parameters"][0]["schema"];
        assert_eq!(run_id["format"], "uuid");
        let limit = doc["paths"]["/api/v1/runs"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "limit")
            .expect("runs take a limit");
        assert_eq!(
            (limit["name"].as_str(), limit["schema"]["type"].as_str()),
            (Some("limit"), Some("integer"))
        );
        assert!(doc["paths"]["/api/v1/marts/{chart}"]["get"]["responses"]["409"].is_object());
        // Every reference resolves.
        let text = doc.to_string();
        for part in text.split("#/components/schemas/").skip(1) {
            let name = part.split('"').next().unwrap();
            assert!(schemas.get(name).is_some(), "dangling reference to {name}");
        }
    }
}
