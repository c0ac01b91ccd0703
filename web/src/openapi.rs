//! The OpenAPI 3.1 document of the JSON API, served at `/api/v1/openapi.json`. Written by
//! hand next to the routes; a router test checks that every API route is in it.

use axum::Json;
use serde_json::{Value, json};

fn get(summary: &str, params: Value) -> Value {
    json!({ "summary": summary, "parameters": params,
            "responses": { "200": { "description": "OK", "content": { "application/json": {} } },
                           "400": { "$ref": "#/components/responses/Error" },
                           "404": { "$ref": "#/components/responses/Error" } } })
}

fn post(summary: &str, params: Value, body: Option<Value>) -> Value {
    let mut op = json!({ "summary": summary, "parameters": params,
            "security": [ {}, { "token": [] } ],
            "responses": { "200": { "description": "OK" }, "201": { "description": "Created" },
                           "400": { "$ref": "#/components/responses/Error" },
                           "403": { "$ref": "#/components/responses/Error" },
                           "404": { "$ref": "#/components/responses/Error" },
                           "409": { "$ref": "#/components/responses/Error" } } });
    if let Some(schema) = body {
        op["requestBody"] =
            json!({ "required": true, "content": { "application/json": { "schema": schema } } });
    }
    op
}

fn path_param(name: &str, description: &str) -> Value {
    json!({ "name": name, "in": "path", "required": true, "description": description, "schema": { "type": "string" } })
}

fn query(name: &str, description: &str) -> Value {
    json!({ "name": name, "in": "query", "required": false, "description": description, "schema": { "type": "string" } })
}

/// The document.
pub fn spec() -> Value {
    let run_id = path_param("run_id", "the run's id (a UUID)");
    json!({
        "openapi": "3.1.0",
        "info": { "title": "orch API", "version": "1", "description": "Runs, assets, lineage, schedules, backfills, stream workers and mart charts of an orch deployment. Write operations need `Authorization: Bearer ORCH_WEB_TOKEN` when the server listens beyond loopback." },
        "paths": {
            "/api/v1/overview": { "get": get("Run counts, recent runs, failing assets, schedules, workers", json!([])) },
            "/api/v1/runs": {
                "get": get("Runs, newest first, keyset-paginated", json!([
                    query("status", "statuses, comma separated (queued, started, success, failure, ...)"),
                    query("asset", "runs that selected this asset key"),
                    query("partition", "runs over this partition key"),
                    query("tag", "key=value"),
                    query("launched_by", "what launched the runs: schedule, sensor, backfill, automation, web, cli, dev (not with `tag`)"),
                    query("before", "the `next` cursor of the previous page"),
                    query("limit", "1 to 500, default 50")])),
                "post": post("Materialize a selection (queues a run)", json!([]), Some(json!({
                    "type": "object", "required": ["selection"],
                    "properties": { "selection": { "type": "string" }, "partition": { "type": "string" },
                                    "from": { "type": "string" }, "to": { "type": "string" } } })))
            },
            "/api/v1/runs/{run_id}": { "get": get("A run and its steps", json!([run_id])) },
            "/api/v1/runs/{run_id}/events": { "get": get("A run's event log", json!([run_id,
                query("kind", "event kinds, comma separated"), query("step", "a step key"), query("after", "events after this id")])) },
            "/api/v1/runs/{run_id}/logs": { "get": get("A run's step logs (stdout, stderr, logger)", json!([run_id, query("step", "a step key")])) },
            "/api/v1/runs/{run_id}/cancel": { "post": post("Cancel a queued or running run", json!([run_id]), None) },
            "/api/v1/runs/{run_id}/reexecute": { "post": post("Re-execute a finished run", json!([run_id]), Some(json!({
                "type": "object", "properties": { "from_failure": { "type": "boolean" } } }))) },
            "/api/v1/assets": { "get": get("The asset catalog", json!([query("select", "a selection (Dagster's syntax, `status:stale` included)")])) },
            "/api/v1/assets/{key}": { "get": get("An asset: history, partitions, checks, lineage", json!([path_param("key", "the asset key, a/b")])) },
            "/api/v1/lineage": { "get": get("The lineage graph: assets (group, state, stale, layer) and edges", json!([query("select", "a selection, `status:stale` included")])) },
            "/api/v1/schedules": { "get": get("Schedules and sensors with their recent ticks", json!([])) },
            "/api/v1/schedules/{name}": { "post": post("Turn a schedule on or off", json!([path_param("name", "the schedule")]), Some(json!({
                "type": "object", "required": ["enabled"], "properties": { "enabled": { "type": "boolean" } } }))) },
            "/api/v1/backfills": {
                "get": get("Backfills with their progress", json!([])),
                "post": post("Launch a backfill: one run per partition", json!([]), Some(json!({
                    "type": "object", "required": ["selection", "from", "to"],
                    "properties": { "selection": { "type": "string" }, "from": { "type": "string" }, "to": { "type": "string" } } })))
            },
            "/api/v1/backfills/{id}": { "get": get("A backfill's progress", json!([path_param("id", "the backfill id")])) },
            "/api/v1/stream-workers": { "get": get("Streaming workers seen in the last hour", json!([])) },
            "/api/v1/marts/{chart}": { "get": get("A dashboard chart's rows", json!([path_param("chart", "top_songs, top_artists, active_users, stream_hours, listening_by_location, listening_by_hour, gender, level, logins, plays, active_users_by_period, top_songs_in_period, top_artists_in_period, locations_in_period (at `?grain=minute|hour|day|week|month|year`, default day), segments")])) },
            "/api/v1/openapi.json": { "get": get("This document", json!([])) }
        },
        "components": {
            "securitySchemes": { "token": { "type": "http", "scheme": "bearer" } },
            "responses": { "Error": { "description": "What is wrong, in words", "content": { "application/json": { "schema": {
                "type": "object", "properties": { "error": { "type": "string" }, "status": { "type": "integer" } } } } } } }
        }
    })
}

pub async fn document() -> Json<Value> {
    Json(spec())
}
