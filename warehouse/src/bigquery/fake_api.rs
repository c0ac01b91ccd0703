//! A stand-in for BigQuery's REST API v2 on 127.0.0.1, for the calls `BigQueryWarehouse`
//! makes, that checks every request against the API's reference (the discovery document's
//! methods, paths, parameters and resource fields with their JSON types) and answers as
//! BigQuery does: jobs RUNNING then DONE, `errorResult` for a failed job, errors as
//! `{"error": {"code", "message", "errors": [...], "status"}}`.
//!
//! Load jobs read their source files for real, from the `gs://` lake on fake-gcs-server, so
//! the rows a load reports are the rows the files hold. A request that breaks the API's shape
//! is answered with 400 `invalid` and recorded in [`FakeBigQuery::problems`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use orch_lake::Lake;
use serde_json::{Value, json};

pub const TOKEN: &str = "test-token-not-a-secret";

/// One request as received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: HashMap<String, String>,
    pub body: Value,
}

#[derive(Debug, Default)]
struct TableState {
    schema: Value,
    /// Rows per partition (`YYYYMMDDHH`).
    partitions: BTreeMap<String, u64>,
}

#[derive(Debug)]
struct FakeJob {
    resource: Value,
    /// Polls (jobs.get) still answered RUNNING.
    running_polls: u32,
}

/// A query the test scripted: its schema and pages of rows.
#[derive(Debug, Clone)]
pub struct Canned {
    pub schema: Value,
    pub pages: Vec<Vec<Value>>,
    /// The first answer (jobs.query) says `jobComplete: false`.
    pub slow: bool,
}

#[derive(Default)]
struct State {
    project: String,
    lake: Option<Lake>,
    requests: Vec<Recorded>,
    problems: Vec<String>,
    datasets: HashSet<String>,
    tables: HashMap<(String, String), TableState>,
    jobs: HashMap<String, FakeJob>,
    fail_next_load: Option<(String, String)>,
    canned: HashMap<String, Canned>,
    failing: HashMap<String, String>,
    query_jobs: HashMap<String, String>,
    next_job: u32,
}

pub struct FakeBigQuery {
    pub endpoint: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeBigQuery {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Answer = (StatusCode, Value);

impl FakeBigQuery {
    /// Serves project `project`; load jobs read their files from `lake`.
    pub async fn start(project: &str, lake: Option<Lake>) -> FakeBigQuery {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State {
            project: project.to_owned(),
            lake,
            ..Default::default()
        }));
        let shared = Arc::clone(&state);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let state = Arc::clone(&shared);
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(Arc::clone(&state), req));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FakeBigQuery {
            endpoint,
            state,
            task,
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Requests that broke the API's shape (none, in a passing test).
    pub fn problems(&self) -> Vec<String> {
        self.state.lock().unwrap().problems.clone()
    }

    /// The next load job ends DONE with this `errorResult`.
    pub fn fail_next_load(&self, reason: &str, message: &str) {
        self.state.lock().unwrap().fail_next_load = Some((reason.into(), message.into()));
    }

    pub fn can_query(&self, sql: &str, canned: Canned) {
        self.state.lock().unwrap().canned.insert(sql.into(), canned);
    }

    /// `sql` is refused as invalid with `message`.
    pub fn refuse_query(&self, sql: &str, message: &str) {
        self.state
            .lock()
            .unwrap()
            .failing
            .insert(sql.into(), message.into());
    }

    /// Rows in the partition `YYYYMMDDHH` of `dataset.table`.
    pub fn partition_rows(&self, dataset: &str, table: &str, partition: &str) -> Option<u64> {
        let state = self.state.lock().unwrap();
        state
            .tables
            .get(&(dataset.into(), table.into()))
            .and_then(|t| t.partitions.get(partition).copied())
    }
}

async fn handle(
    state: Arc<Mutex<State>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let query: HashMap<String, String> = req
        .uri()
        .query()
        .map(|q| url_pairs(q).into_iter().collect())
        .unwrap_or_default();
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = req.into_body().collect().await.unwrap().to_bytes();
    let body: Value = if bytes.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(e) => {
                return Ok(reply(error(
                    400,
                    "invalid",
                    &format!("Invalid JSON payload: {e}"),
                )));
            }
        }
    };
    let recorded = Recorded {
        method: method.clone(),
        path: path.clone(),
        query: query.clone(),
        body: body.clone(),
    };
    state.lock().unwrap().requests.push(recorded);

    if auth.as_deref() != Some(&format!("Bearer {TOKEN}")) {
        return Ok(reply(problem(
            &state,
            401,
            "unauthorized",
            &format!(
                "{method} {path}: Request is missing required authentication credential \
                 (Authorization is {}, not the test's bearer token)",
                if auth.is_some() { "another" } else { "missing" }
            ),
        )));
    }
    if !body.is_null()
        && !content_type
            .as_deref()
            .is_some_and(|c| c.starts_with("application/json"))
    {
        return Ok(reply(problem(
            &state,
            400,
            "invalid",
            &format!("{method} {path}: a JSON body with Content-Type {content_type:?}"),
        )));
    }
    let answer = route(&state, &method, &path, &query, &body).await;
    Ok(reply(answer))
}

fn reply((status, body): Answer) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=UTF-8")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

/// BigQuery's error body.
fn error(code: u16, reason: &str, message: &str) -> Answer {
    let status = match code {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        404 => "NOT_FOUND",
        409 => "ALREADY_EXISTS",
        _ => "UNKNOWN",
    };
    (
        StatusCode::from_u16(code).unwrap(),
        json!({"error": {"code": code, "message": message,
            "errors": [{"message": message, "domain": "global", "reason": reason}],
            "status": status}}),
    )
}

/// A request that breaks the API: recorded, and refused.
fn problem(state: &Mutex<State>, code: u16, reason: &str, message: &str) -> Answer {
    state.lock().unwrap().problems.push(message.to_owned());
    error(code, reason, message)
}

fn url_pairs(query: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn decode(segment: &str) -> String {
    url::form_urlencoded::parse(format!("x={segment}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

async fn route(
    state: &Arc<Mutex<State>>,
    method: &str,
    path: &str,
    query: &HashMap<String, String>,
    body: &Value,
) -> Answer {
    let Some(rest) = path.strip_prefix("/bigquery/v2/projects/") else {
        return problem(state, 404, "notFound", &format!("no API method at {path}"));
    };
    let parts: Vec<String> = rest.split('/').map(decode).collect();
    let project = state.lock().unwrap().project.clone();
    if parts[0] != project {
        return error(404, "notFound", &format!("Not found: Project {}", parts[0]));
    }
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    match (method, &parts[1..]) {
        ("GET", ["datasets", dataset]) => {
            check_query(state, path, query, &[]);
            if state.lock().unwrap().datasets.contains(*dataset) {
                (
                    StatusCode::OK,
                    json!({"kind": "bigquery#dataset", "id": format!("{project}:{dataset}"),
                        "datasetReference": {"projectId": project, "datasetId": dataset},
                        "location": "US"}),
                )
            } else {
                error(
                    404,
                    "notFound",
                    &format!("Not found: Dataset {project}:{dataset}"),
                )
            }
        }
        ("POST", ["datasets"]) => insert_dataset(state, &project, body),
        ("GET", ["datasets", dataset, "tables", table]) => {
            check_query(state, path, query, &["selectedFields", "view"]);
            get_table(state, &project, dataset, table)
        }
        ("POST", ["datasets", dataset, "tables"]) => insert_table(state, &project, dataset, body),
        ("POST", ["jobs"]) => insert_job(state, &project, body).await,
        ("GET", ["jobs", job_id]) => {
            check_query(state, path, query, &["location"]);
            get_job(state, job_id, query).await
        }
        ("POST", ["queries"]) => run_query(state, &project, body),
        ("GET", ["queries", job_id]) => {
            check_query(
                state,
                path,
                query,
                &[
                    "location",
                    "pageToken",
                    "maxResults",
                    "startIndex",
                    "timeoutMs",
                    "formatOptions.useInt64Timestamp",
                ],
            );
            query_results(state, &project, job_id, query)
        }
        _ => problem(
            state,
            404,
            "notFound",
            &format!("{method} {path} is not a BigQuery API method this server plays"),
        ),
    }
}

/// Query parameters must be the method's.
fn check_query(
    state: &Mutex<State>,
    path: &str,
    query: &HashMap<String, String>,
    allowed: &[&str],
) {
    for key in query.keys() {
        if !allowed.contains(&key.as_str()) {
            state
                .lock()
                .unwrap()
                .problems
                .push(format!("{path}: unknown query parameter {key}"));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Shapes, as the discovery document defines them

/// A JSON type of the discovery document: `string` (also int64, uint64 and enums), `integer`
/// (int32, uint32: a JSON number), `boolean`, `object`, `array`.
#[derive(Clone, Copy)]
enum Ty {
    Str,
    /// A string that holds a decimal int64.
    Int64,
    Int,
    Bool,
    Obj,
    Arr,
}

fn check(errors: &mut Vec<String>, at: &str, value: Option<&Value>, ty: Ty, required: bool) {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        if required {
            errors.push(format!("{at} is required"));
        }
        return;
    };
    let ok = match ty {
        Ty::Str => value.is_string(),
        Ty::Int64 => value.as_str().is_some_and(|s| s.parse::<i64>().is_ok()),
        Ty::Int => value.is_i64() || value.is_u64(),
        Ty::Bool => value.is_boolean(),
        Ty::Obj => value.is_object(),
        Ty::Arr => value.is_array(),
    };
    if !ok {
        errors.push(format!("{at} has the wrong JSON type: {value}"));
    }
}

/// Keys of an object must be the resource's fields.
fn known_keys(errors: &mut Vec<String>, at: &str, value: &Value, keys: &[&str]) {
    if let Some(object) = value.as_object() {
        for key in object.keys() {
            if !keys.contains(&key.as_str()) {
                errors.push(format!("{at}.{key} is not a field of the resource"));
            }
        }
    }
}

fn one_of(errors: &mut Vec<String>, at: &str, value: Option<&Value>, allowed: &[&str]) {
    if let Some(v) = value.and_then(Value::as_str)
        && !allowed.contains(&v)
    {
        errors.push(format!("{at} is {v:?}, not one of {allowed:?}"));
    }
}

fn check_table_reference(errors: &mut Vec<String>, at: &str, value: Option<&Value>) {
    check(errors, at, value, Ty::Obj, true);
    if let Some(r) = value {
        known_keys(errors, at, r, &["projectId", "datasetId", "tableId"]);
        for key in ["projectId", "datasetId", "tableId"] {
            check(errors, &format!("{at}.{key}"), r.get(key), Ty::Str, true);
        }
    }
}

const FIELD_TYPES: &[&str] = &[
    "STRING",
    "BYTES",
    "INTEGER",
    "INT64",
    "FLOAT",
    "FLOAT64",
    "NUMERIC",
    "BIGNUMERIC",
    "BOOLEAN",
    "BOOL",
    "TIMESTAMP",
    "DATE",
    "TIME",
    "DATETIME",
    "GEOGRAPHY",
    "RECORD",
    "STRUCT",
    "JSON",
    "RANGE",
];

fn check_schema(errors: &mut Vec<String>, at: &str, value: Option<&Value>) {
    check(errors, at, value, Ty::Obj, true);
    let Some(schema) = value else { return };
    known_keys(errors, at, schema, &["fields"]);
    check(
        errors,
        &format!("{at}.fields"),
        schema.get("fields"),
        Ty::Arr,
        true,
    );
    for (i, field) in schema["fields"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let at = format!("{at}.fields[{i}]");
        known_keys(
            errors,
            &at,
            field,
            &[
                "name",
                "type",
                "mode",
                "fields",
                "description",
                "policyTags",
                "categories",
            ],
        );
        check(
            errors,
            &format!("{at}.name"),
            field.get("name"),
            Ty::Str,
            true,
        );
        check(
            errors,
            &format!("{at}.type"),
            field.get("type"),
            Ty::Str,
            true,
        );
        one_of(
            errors,
            &format!("{at}.type"),
            field.get("type"),
            FIELD_TYPES,
        );
        check(
            errors,
            &format!("{at}.mode"),
            field.get("mode"),
            Ty::Str,
            false,
        );
        one_of(
            errors,
            &format!("{at}.mode"),
            field.get("mode"),
            &["NULLABLE", "REQUIRED", "REPEATED"],
        );
        if let Some(name) = field["name"].as_str()
            && name.to_ascii_lowercase().starts_with("_partition")
        {
            errors.push(format!(
                "{at}.name {name}: BigQuery reserves the _PARTITION prefix"
            ));
        }
    }
}

fn check_time_partitioning(errors: &mut Vec<String>, at: &str, value: Option<&Value>) {
    let Some(tp) = value else { return };
    check(errors, at, Some(tp), Ty::Obj, true);
    known_keys(
        errors,
        at,
        tp,
        &["type", "field", "expirationMs", "requirePartitionFilter"],
    );
    check(errors, &format!("{at}.type"), tp.get("type"), Ty::Str, true);
    one_of(
        errors,
        &format!("{at}.type"),
        tp.get("type"),
        &["DAY", "HOUR", "MONTH", "YEAR"],
    );
    check(
        errors,
        &format!("{at}.field"),
        tp.get("field"),
        Ty::Str,
        false,
    );
    check(
        errors,
        &format!("{at}.expirationMs"),
        tp.get("expirationMs"),
        Ty::Int64,
        false,
    );
}

fn refuse(state: &Mutex<State>, errors: Vec<String>) -> Option<Answer> {
    if errors.is_empty() {
        return None;
    }
    let message = errors.join("; ");
    Some(problem(state, 400, "invalid", &message))
}

// ---------------------------------------------------------------------------------------------
// Datasets and tables

fn insert_dataset(state: &Mutex<State>, project: &str, body: &Value) -> Answer {
    let mut errors = Vec::new();
    known_keys(
        &mut errors,
        "dataset",
        body,
        &[
            "datasetReference",
            "location",
            "friendlyName",
            "labels",
            "description",
        ],
    );
    check(
        &mut errors,
        "dataset.datasetReference",
        body.get("datasetReference"),
        Ty::Obj,
        true,
    );
    let reference = &body["datasetReference"];
    check(
        &mut errors,
        "datasetReference.projectId",
        reference.get("projectId"),
        Ty::Str,
        true,
    );
    check(
        &mut errors,
        "datasetReference.datasetId",
        reference.get("datasetId"),
        Ty::Str,
        true,
    );
    check(
        &mut errors,
        "dataset.location",
        body.get("location"),
        Ty::Str,
        false,
    );
    if let Some(answer) = refuse(state, errors) {
        return answer;
    }
    let dataset = reference["datasetId"].as_str().unwrap().to_owned();
    let mut s = state.lock().unwrap();
    if !s.datasets.insert(dataset.clone()) {
        return error(
            409,
            "duplicate",
            &format!("Already Exists: Dataset {project}:{dataset}"),
        );
    }
    (StatusCode::OK, body.clone())
}

fn table_resource(project: &str, dataset: &str, table: &str, t: &TableState) -> Value {
    let rows: u64 = t.partitions.values().sum();
    json!({"kind": "bigquery#table", "id": format!("{project}:{dataset}.{table}"),
        "tableReference": {"projectId": project, "datasetId": dataset, "tableId": table},
        "numRows": rows.to_string(), "type": "TABLE", "schema": t.schema,
        "timePartitioning": {"type": "HOUR", "field": "ts"}})
}

fn get_table(state: &Mutex<State>, project: &str, dataset: &str, table: &str) -> Answer {
    let s = state.lock().unwrap();
    match s.tables.get(&(dataset.into(), table.into())) {
        Some(t) => (StatusCode::OK, table_resource(project, dataset, table, t)),
        None => error(
            404,
            "notFound",
            &format!("Not found: Table {project}:{dataset}.{table}"),
        ),
    }
}

fn insert_table(state: &Mutex<State>, project: &str, dataset: &str, body: &Value) -> Answer {
    let mut errors = Vec::new();
    known_keys(
        &mut errors,
        "table",
        body,
        &[
            "tableReference",
            "schema",
            "timePartitioning",
            "description",
            "labels",
            "clustering",
        ],
    );
    check_table_reference(
        &mut errors,
        "table.tableReference",
        body.get("tableReference"),
    );
    check_schema(&mut errors, "table.schema", body.get("schema"));
    check_time_partitioning(
        &mut errors,
        "table.timePartitioning",
        body.get("timePartitioning"),
    );
    if body["tableReference"]["datasetId"].as_str() != Some(dataset) {
        errors.push("table.tableReference.datasetId differs from the path's".into());
    }
    if let Some(answer) = refuse(state, errors) {
        return answer;
    }
    let table = body["tableReference"]["tableId"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut s = state.lock().unwrap();
    if !s.datasets.contains(dataset) {
        return error(
            404,
            "notFound",
            &format!("Not found: Dataset {project}:{dataset}"),
        );
    }
    let key = (dataset.to_owned(), table.clone());
    if s.tables.contains_key(&key) {
        return error(
            409,
            "duplicate",
            &format!("Already Exists: Table {project}:{dataset}.{table}"),
        );
    }
    s.tables.insert(
        key,
        TableState {
            schema: body["schema"].clone(),
            ..Default::default()
        },
    );
    (StatusCode::OK, body.clone())
}

// ---------------------------------------------------------------------------------------------
// Jobs

const LOAD_KEYS: &[&str] = &[
    "sourceUris",
    "sourceFormat",
    "destinationTable",
    "writeDisposition",
    "createDisposition",
    "schema",
    "timePartitioning",
    "clustering",
    "schemaUpdateOptions",
    "parquetOptions",
    "ignoreUnknownValues",
    "maxBadRecords",
    "autodetect",
    "decimalTargetTypes",
    "hivePartitioningOptions",
    "destinationTableProperties",
    "useAvroLogicalTypes",
];

async fn insert_job(state: &Mutex<State>, project: &str, body: &Value) -> Answer {
    let mut errors = Vec::new();
    known_keys(&mut errors, "job", body, &["jobReference", "configuration"]);
    check(
        &mut errors,
        "job.jobReference",
        body.get("jobReference"),
        Ty::Obj,
        false,
    );
    let reference = &body["jobReference"];
    known_keys(
        &mut errors,
        "job.jobReference",
        reference,
        &["projectId", "jobId", "location"],
    );
    check(
        &mut errors,
        "jobReference.projectId",
        reference.get("projectId"),
        Ty::Str,
        false,
    );
    check(
        &mut errors,
        "jobReference.jobId",
        reference.get("jobId"),
        Ty::Str,
        false,
    );
    check(
        &mut errors,
        "jobReference.location",
        reference.get("location"),
        Ty::Str,
        false,
    );
    if let Some(id) = reference["jobId"].as_str()
        && (id.is_empty()
            || id.len() > 1024
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
    {
        errors.push(format!(
            "jobReference.jobId {id:?}: letters, digits, _ and - only"
        ));
    }
    check(
        &mut errors,
        "job.configuration",
        body.get("configuration"),
        Ty::Obj,
        true,
    );
    let configuration = &body["configuration"];
    known_keys(
        &mut errors,
        "job.configuration",
        configuration,
        &[
            "load",
            "query",
            "copy",
            "extract",
            "labels",
            "jobTimeoutMs",
            "dryRun",
            "jobType",
        ],
    );
    check(
        &mut errors,
        "configuration.jobTimeoutMs",
        configuration.get("jobTimeoutMs"),
        Ty::Int64,
        false,
    );
    let Some(load) = configuration.get("load") else {
        errors.push("this server plays load jobs only".into());
        return refuse(state, errors).unwrap();
    };
    known_keys(&mut errors, "configuration.load", load, LOAD_KEYS);
    check(
        &mut errors,
        "load.sourceUris",
        load.get("sourceUris"),
        Ty::Arr,
        true,
    );
    let uris: Vec<String> = load["sourceUris"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, uri)| {
            check(
                &mut errors,
                &format!("load.sourceUris[{i}]"),
                Some(uri),
                Ty::Str,
                true,
            );
            uri.as_str().map(str::to_owned)
        })
        .collect();
    if uris.is_empty() {
        errors.push("load.sourceUris: at least one URI".into());
    }
    for uri in &uris {
        if !uri.starts_with("gs://") {
            errors.push(format!("load.sourceUris: {uri} is not a gs:// URI"));
        }
    }
    check(
        &mut errors,
        "load.sourceFormat",
        load.get("sourceFormat"),
        Ty::Str,
        false,
    );
    one_of(
        &mut errors,
        "load.sourceFormat",
        load.get("sourceFormat"),
        &[
            "CSV",
            "NEWLINE_DELIMITED_JSON",
            "AVRO",
            "PARQUET",
            "ORC",
            "DATASTORE_BACKUP",
        ],
    );
    check_table_reference(
        &mut errors,
        "load.destinationTable",
        load.get("destinationTable"),
    );
    check(
        &mut errors,
        "load.writeDisposition",
        load.get("writeDisposition"),
        Ty::Str,
        false,
    );
    one_of(
        &mut errors,
        "load.writeDisposition",
        load.get("writeDisposition"),
        &[
            "WRITE_TRUNCATE",
            "WRITE_APPEND",
            "WRITE_EMPTY",
            "WRITE_TRUNCATE_DATA",
        ],
    );
    check(
        &mut errors,
        "load.createDisposition",
        load.get("createDisposition"),
        Ty::Str,
        false,
    );
    one_of(
        &mut errors,
        "load.createDisposition",
        load.get("createDisposition"),
        &["CREATE_IF_NEEDED", "CREATE_NEVER"],
    );
    if load.get("schema").is_some() {
        check_schema(&mut errors, "load.schema", load.get("schema"));
    }
    check_time_partitioning(
        &mut errors,
        "load.timePartitioning",
        load.get("timePartitioning"),
    );
    let destination = &load["destinationTable"];
    if destination["projectId"].as_str() != Some(project) {
        errors.push("load.destinationTable.projectId is not the job's project".into());
    }
    let table_id = destination["tableId"].as_str().unwrap_or_default();
    let (table, decorator) = table_id.split_once('$').unwrap_or((table_id, ""));
    if !decorator.is_empty()
        && (decorator.len() != 10 || !decorator.bytes().all(|b| b.is_ascii_digit()))
    {
        errors.push(format!(
            "load.destinationTable.tableId {table_id}: an hourly decorator is $YYYYMMDDHH"
        ));
    }
    if let Some(answer) = refuse(state, errors) {
        return answer;
    }
    let dataset = destination["datasetId"].as_str().unwrap().to_owned();
    let mut s = state.lock().unwrap();
    if !s.datasets.contains(&dataset) {
        return error(
            404,
            "notFound",
            &format!("Not found: Dataset {project}:{dataset}"),
        );
    }
    s.next_job += 1;
    let job_id = reference["jobId"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("job_{}", s.next_job));
    if s.jobs.contains_key(&job_id) {
        return error(
            409,
            "duplicate",
            &format!("Already Exists: Job {project}:US.{job_id}"),
        );
    }
    let location = reference["location"].as_str().unwrap_or("US").to_owned();
    let mut resource = json!({
        "kind": "bigquery#job",
        "id": format!("{project}:{location}.{job_id}"),
        "jobReference": {"projectId": project, "jobId": job_id, "location": location},
        "configuration": {"load": load, "jobType": "LOAD"},
        "status": {"state": "RUNNING"},
        "statistics": {"creationTime": "1795341600000", "startTime": "1795341600100"},
    });
    resource["_table"] = json!(table);
    resource["_decorator"] = json!(decorator);
    s.jobs.insert(
        job_id,
        FakeJob {
            resource: resource.clone(),
            running_polls: 1,
        },
    );
    resource
        .as_object_mut()
        .unwrap()
        .retain(|k, _| !k.starts_with('_'));
    (StatusCode::OK, resource)
}

async fn get_job(state: &Mutex<State>, job_id: &str, query: &HashMap<String, String>) -> Answer {
    let (resource, finish) = {
        let mut s = state.lock().unwrap();
        let project = s.project.clone();
        let Some(job) = s.jobs.get_mut(job_id) else {
            return error(
                404,
                "notFound",
                &format!("Not found: Job {project}:{job_id}"),
            );
        };
        let location = job.resource["jobReference"]["location"]
            .as_str()
            .unwrap_or("US")
            .to_owned();
        if query.get("location").is_some_and(|l| *l != location) {
            return error(
                404,
                "notFound",
                &format!(
                    "Not found: Job {project}:{job_id} in {:?}",
                    query["location"]
                ),
            );
        }
        let finish = job.resource["status"]["state"] == "RUNNING" && job.running_polls == 0;
        if job.running_polls > 0 {
            job.running_polls -= 1;
        }
        (job.resource.clone(), finish)
    };
    let resource = if finish {
        finish_load(state, job_id, resource).await
    } else {
        resource
    };
    let mut shown = resource;
    shown
        .as_object_mut()
        .unwrap()
        .retain(|k, _| !k.starts_with('_'));
    (StatusCode::OK, shown)
}

/// Runs a load job: reads its files from the lake, replaces (or appends to) its partition.
async fn finish_load(state: &Mutex<State>, job_id: &str, mut resource: Value) -> Value {
    let load = resource["configuration"]["load"].clone();
    let dataset = load["destinationTable"]["datasetId"]
        .as_str()
        .unwrap()
        .to_owned();
    let table = resource["_table"].as_str().unwrap().to_owned();
    let decorator = resource["_decorator"].as_str().unwrap().to_owned();
    let (lake, failure) = {
        let mut s = state.lock().unwrap();
        (s.lake.clone(), s.fail_next_load.take())
    };
    let mut outcome: Result<(u64, u64), (String, String, String)> = Ok((0, 0));
    if let Some((reason, message)) = failure {
        outcome = Err((reason, message, String::new()));
    } else {
        let lake = lake.expect("a lake for load jobs");
        let root = lake.uri("");
        for uri in load["sourceUris"].as_array().unwrap() {
            let uri = uri.as_str().unwrap();
            let read = match uri.strip_prefix(&root) {
                Some(path) => lake.read_parquet(path).await.map_err(|e| e.to_string()),
                None => Err("outside the lake".into()),
            };
            match read {
                Ok(batches) => {
                    if let Ok((rows, files)) = &mut outcome {
                        *rows += batches.iter().map(|b| b.num_rows() as u64).sum::<u64>();
                        *files += 1;
                    }
                }
                Err(e) => {
                    outcome = Err((
                        "notFound".into(),
                        format!("Not found: URI {uri} ({e})"),
                        uri.to_owned(),
                    ));
                    break;
                }
            }
        }
    }
    let mut s = state.lock().unwrap();
    match outcome {
        Ok((rows, files)) => {
            let write = load["writeDisposition"].as_str().unwrap_or("WRITE_APPEND");
            let create = load["createDisposition"]
                .as_str()
                .unwrap_or("CREATE_IF_NEEDED");
            let key = (dataset.clone(), table.clone());
            if !s.tables.contains_key(&key) && create == "CREATE_IF_NEEDED" {
                s.tables.insert(
                    key.clone(),
                    TableState {
                        schema: load["schema"].clone(),
                        ..Default::default()
                    },
                );
            }
            match s.tables.get_mut(&key) {
                Some(t) => {
                    let partition = t.partitions.entry(decorator.clone()).or_default();
                    if write == "WRITE_TRUNCATE" {
                        *partition = rows;
                    } else {
                        *partition += rows;
                    }
                    resource["status"] = json!({"state": "DONE"});
                    resource["statistics"]["endTime"] = json!("1795341601000");
                    resource["statistics"]["load"] = json!({
                        "inputFiles": files.to_string(),
                        "inputFileBytes": "1024",
                        "outputRows": rows.to_string(),
                        "outputBytes": (rows * 100).to_string(),
                        "badRecords": "0",
                    });
                }
                None => {
                    let message = format!("Not found: Table {}:{dataset}.{table}", s.project);
                    resource["status"] = json!({"state": "DONE",
                        "errorResult": {"reason": "notFound", "message": message},
                        "errors": [{"reason": "notFound", "message": message}]});
                }
            }
        }
        Err((reason, message, location)) => {
            let mut error = json!({"reason": reason, "message": message});
            if !location.is_empty() {
                error["location"] = json!(location);
            }
            resource["status"] = json!({"state": "DONE", "errorResult": error.clone(),
                "errors": [error, {"reason": reason, "message": "Error while reading data, error message: the load job did not complete"}]});
        }
    }
    s.jobs.get_mut(job_id).unwrap().resource = resource.clone();
    resource
}

// ---------------------------------------------------------------------------------------------
// Queries

fn run_query(state: &Mutex<State>, project: &str, body: &Value) -> Answer {
    let mut errors = Vec::new();
    known_keys(
        &mut errors,
        "queryRequest",
        body,
        &[
            "query",
            "useLegacySql",
            "location",
            "timeoutMs",
            "maxResults",
            "requestId",
            "defaultDataset",
            "dryRun",
            "labels",
            "useQueryCache",
            "formatOptions",
            "maximumBytesBilled",
            "parameterMode",
            "queryParameters",
            "kind",
            "connectionProperties",
            "preserveNulls",
        ],
    );
    check(
        &mut errors,
        "queryRequest.query",
        body.get("query"),
        Ty::Str,
        true,
    );
    check(
        &mut errors,
        "queryRequest.useLegacySql",
        body.get("useLegacySql"),
        Ty::Bool,
        true,
    );
    if body["useLegacySql"] != json!(false) {
        errors.push(
            "queryRequest.useLegacySql must be false for standard SQL (it defaults to true)".into(),
        );
    }
    check(
        &mut errors,
        "queryRequest.location",
        body.get("location"),
        Ty::Str,
        false,
    );
    check(
        &mut errors,
        "queryRequest.timeoutMs",
        body.get("timeoutMs"),
        Ty::Int,
        false,
    );
    check(
        &mut errors,
        "queryRequest.maxResults",
        body.get("maxResults"),
        Ty::Int,
        false,
    );
    check(
        &mut errors,
        "queryRequest.requestId",
        body.get("requestId"),
        Ty::Str,
        false,
    );
    if let Some(answer) = refuse(state, errors) {
        return answer;
    }
    let sql = body["query"].as_str().unwrap().to_owned();
    let mut s = state.lock().unwrap();
    s.next_job += 1;
    let job_id = format!("job_q{}", s.next_job);
    let reference = json!({"projectId": project, "jobId": job_id, "location": "US"});
    if let Some(message) = s.failing.get(&sql) {
        return error(400, "invalidQuery", message);
    }
    if let Some(canned) = s.canned.get(&sql).cloned() {
        s.query_jobs.insert(job_id.clone(), sql);
        if canned.slow {
            return (
                StatusCode::OK,
                json!({"kind": "bigquery#queryResponse", "jobReference": reference, "jobComplete": false}),
            );
        }
        return (StatusCode::OK, page(&canned, 0, reference));
    }
    // The loads' own statements, played against the tables' partitions.
    let count = statement_target(&sql, "SELECT COUNT(*) FROM `");
    let delete = statement_target(&sql, "DELETE FROM `");
    let is_count = count.is_some();
    let Some((target, start_ms)) = count.or(delete) else {
        return error(
            400,
            "invalidQuery",
            &format!("this server has no answer to {sql}"),
        );
    };
    let names: Vec<&str> = target.split('.').collect();
    let [p, dataset, table] = names[..] else {
        return error(
            400,
            "invalidQuery",
            &format!("Table name \"{target}\" missing dataset"),
        );
    };
    if p != project {
        return error(404, "notFound", &format!("Not found: Project {p}"));
    }
    let partition = chrono::DateTime::from_timestamp_millis(start_ms)
        .unwrap()
        .format("%Y%m%d%H")
        .to_string();
    let Some(t) = s.tables.get_mut(&(dataset.into(), table.into())) else {
        return error(
            404,
            "notFound",
            &format!("Not found: Table {project}:{dataset}.{table} was not found in location US"),
        );
    };
    if is_count {
        let n = t.partitions.get(&partition).copied().unwrap_or(0);
        (
            StatusCode::OK,
            json!({"kind": "bigquery#queryResponse", "jobReference": reference, "jobComplete": true,
                "schema": {"fields": [{"name": "f0_", "type": "INTEGER", "mode": "NULLABLE"}]},
                "rows": [{"f": [{"v": n.to_string()}]}], "totalRows": "1",
                "totalBytesProcessed": "0", "cacheHit": false}),
        )
    } else {
        let n = t.partitions.remove(&partition).unwrap_or(0);
        (
            StatusCode::OK,
            json!({"kind": "bigquery#queryResponse", "jobReference": reference, "jobComplete": true,
                "numDmlAffectedRows": n.to_string(), "totalBytesProcessed": "0",
                "dmlStats": {"deletedRowCount": n.to_string()}}),
        )
    }
}

/// `{prefix}p.d.t` WHERE ts >= TIMESTAMP_MILLIS(start) ...: the table and the start.
fn statement_target(sql: &str, prefix: &str) -> Option<(String, i64)> {
    let rest = sql.strip_prefix(prefix)?;
    let (target, rest) = rest.split_once('`')?;
    let rest = rest.strip_prefix(" WHERE ts >= TIMESTAMP_MILLIS(")?;
    let (start, rest) = rest.split_once(')')?;
    let start: i64 = start.parse().ok()?;
    let rest = rest.strip_prefix(" AND ts < TIMESTAMP_MILLIS(")?;
    let (end, rest) = rest.split_once(')')?;
    let end: i64 = end.parse().ok()?;
    (rest.is_empty() && end - start == 3_600_000).then(|| (target.to_owned(), start))
}

fn page(canned: &Canned, index: usize, reference: Value) -> Value {
    let total: usize = canned.pages.iter().map(Vec::len).sum();
    let mut answer = json!({"kind": "bigquery#getQueryResultsResponse", "jobReference": reference,
        "jobComplete": true, "schema": canned.schema, "totalRows": total.to_string(),
        "rows": canned.pages.get(index).cloned().unwrap_or_default()});
    if index + 1 < canned.pages.len() {
        answer["pageToken"] = json!(format!("page{}", index + 1));
    }
    answer
}

fn query_results(
    state: &Mutex<State>,
    project: &str,
    job_id: &str,
    query: &HashMap<String, String>,
) -> Answer {
    let s = state.lock().unwrap();
    let Some(canned) = s.query_jobs.get(job_id).and_then(|sql| s.canned.get(sql)) else {
        return error(
            404,
            "notFound",
            &format!("Not found: Job {project}:{job_id}"),
        );
    };
    if query.get("location").is_some_and(|l| l != "US") {
        return error(
            404,
            "notFound",
            &format!("Not found: Job {project}:{job_id}"),
        );
    }
    let index = match query.get("pageToken") {
        None => 0,
        Some(token) => match token.strip_prefix("page").and_then(|n| n.parse().ok()) {
            Some(n) => n,
            None => return error(400, "invalid", &format!("Invalid page token {token}")),
        },
    };
    let reference = json!({"projectId": project, "jobId": job_id, "location": "US"});
    (StatusCode::OK, page(canned, index, reference))
}
