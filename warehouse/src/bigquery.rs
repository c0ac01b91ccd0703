//! The production warehouse: BigQuery, through gcp-bigquery-client (its REST API v2).
//!
//! A staging load is one BigQuery load job per topic and hour: the hour's Parquet files in a
//! `gs://` lake, by their URIs, into the hour's partition of `{project}.{dataset}.{topic}`
//! (the partition decorator `{topic}$YYYYMMDDHH`) with `WRITE_TRUNCATE`, so that loading an
//! hour again replaces that hour and never adds to it. The raw tables are partitioned by hour
//! on `ts` and have the topic's schema (the lake's Arrow schema in BigQuery's types: `ts`,
//! `registration` and `_ingested_at` are `TIMESTAMP`s, where the DuckDB raw tables keep `ts`
//! and `registration` as epoch milliseconds; the dbt staging models read either).
//!
//! De-duplication: a load job copies what the files hold. The DuckDB load keeps one row per
//! event id or source position; a BigQuery load job cannot, so the raw table may hold an event
//! twice (a file rewritten under another name after a crash, an event delivered twice) and the
//! dbt staging models de-duplicate by event id (`qualify row_number() over (partition by
//! event_id ...) = 1`). [`LoadReport::duplicates`] is therefore always 0 here.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_schema::DataType;
use async_trait::async_trait;
use chrono::DateTime;
use gcp_bigquery_client::Client;
use gcp_bigquery_client::auth::Authenticator;
use gcp_bigquery_client::client_builder::ClientBuilder;
use gcp_bigquery_client::error::BQError;
use gcp_bigquery_client::model::dataset::Dataset;
use gcp_bigquery_client::model::error_proto::ErrorProto;
use gcp_bigquery_client::model::field_type::FieldType;
use gcp_bigquery_client::model::get_query_results_parameters::GetQueryResultsParameters;
use gcp_bigquery_client::model::job::Job;
use gcp_bigquery_client::model::job_configuration::JobConfiguration;
use gcp_bigquery_client::model::job_configuration_load::JobConfigurationLoad;
use gcp_bigquery_client::model::job_reference::JobReference;
use gcp_bigquery_client::model::query_request::QueryRequest;
use gcp_bigquery_client::model::query_response::QueryResponse;
use gcp_bigquery_client::model::table::Table;
use gcp_bigquery_client::model::table_field_schema::TableFieldSchema;
use gcp_bigquery_client::model::table_reference::TableReference;
use gcp_bigquery_client::model::table_row::TableRow;
use gcp_bigquery_client::model::table_schema::TableSchema;
use gcp_bigquery_client::model::time_partitioning::TimePartitioning;
use orch_lake::{Hour, Lake, Topic, col};
use serde_json::Value;

use crate::{LoadReport, QueryResult, TableRef, Warehouse, WarehouseError, hour_key};

/// BigQuery's REST API v2, under an endpoint (`https://bigquery.googleapis.com` by default).
pub const API_PATH: &str = "/bigquery/v2";

/// How orch authenticates to BigQuery.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// A service account's JSON key file.
    ServiceAccountKeyFile(PathBuf),
    /// Application default credentials, as Google's clients find them:
    /// `GOOGLE_APPLICATION_CREDENTIALS` (a service-account key or gcloud's user credentials),
    /// `~/.config/gcloud/application_default_credentials.json`, or the metadata server on GCP.
    ApplicationDefault,
    /// A fixed OAuth access token (an emulator, a test, `gcloud auth print-access-token`).
    /// Never shown: `Debug` prints it redacted.
    AccessToken(String),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::ServiceAccountKeyFile(path) => f
                .debug_tuple("ServiceAccountKeyFile")
                .field(&path.display())
                .finish(),
            Credentials::ApplicationDefault => f.write_str("ApplicationDefault"),
            Credentials::AccessToken(_) => f.write_str("AccessToken(<redacted>)"),
        }
    }
}

/// Where and how to reach BigQuery.
#[derive(Debug, Clone)]
pub struct BigQueryConfig {
    /// The project that owns the datasets and runs (and pays for) the jobs.
    pub project: String,
    /// The dataset of the raw tables (default [`crate::RAW_DATASET`]).
    pub dataset: String,
    /// Where the dataset lives and the jobs run (`US`, `EU`, `europe-west1`, ...); it must be
    /// the lake bucket's location. `None`: BigQuery's default (US) for a new dataset, and jobs
    /// run where their tables are.
    pub location: Option<String>,
    pub credentials: Credentials,
    /// The API's endpoint, without the `/bigquery/v2` path: an emulator, or a test server
    /// (`http://127.0.0.1:9050`). `None`: `https://bigquery.googleapis.com`.
    pub endpoint: Option<String>,
    /// Pause between two polls of a running job.
    pub poll_interval: Duration,
    /// How long a job may run before the operation gives up on it (the job is left running).
    pub job_timeout: Duration,
}

impl BigQueryConfig {
    /// `project`'s `raw` dataset, application default credentials, BigQuery's endpoint.
    pub fn new(project: impl Into<String>) -> BigQueryConfig {
        BigQueryConfig {
            project: project.into(),
            dataset: crate::RAW_DATASET.to_owned(),
            location: None,
            credentials: Credentials::ApplicationDefault,
            endpoint: None,
            poll_interval: Duration::from_secs(1),
            job_timeout: Duration::from_secs(30 * 60),
        }
    }

    /// From the environment: `ORCH_BIGQUERY_PROJECT` (required), `ORCH_BIGQUERY_DATASET`,
    /// `ORCH_BIGQUERY_LOCATION`, `ORCH_BIGQUERY_KEY_FILE` (a service-account key; otherwise
    /// application default credentials) and `ORCH_BIGQUERY_ENDPOINT`.
    pub fn from_env() -> Result<BigQueryConfig, WarehouseError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let project = var("ORCH_BIGQUERY_PROJECT").ok_or_else(|| WarehouseError::Open {
            target: "bigquery".into(),
            reason: "set ORCH_BIGQUERY_PROJECT to the project of the warehouse".into(),
        })?;
        let mut config = BigQueryConfig::new(project);
        if let Some(dataset) = var("ORCH_BIGQUERY_DATASET") {
            config.dataset = dataset;
        }
        config.location = var("ORCH_BIGQUERY_LOCATION");
        if let Some(key) = var("ORCH_BIGQUERY_KEY_FILE") {
            config.credentials = Credentials::ServiceAccountKeyFile(key.into());
        }
        config.endpoint = var("ORCH_BIGQUERY_ENDPOINT");
        Ok(config)
    }

    fn target(&self) -> String {
        format!("bigquery:{}.{}", self.project, self.dataset)
    }
}

/// A fixed access token as gcp-bigquery-client's authenticator.
#[derive(Clone)]
struct FixedToken(String);

#[async_trait]
impl Authenticator for FixedToken {
    async fn access_token(&self) -> Result<String, BQError> {
        Ok(self.0.clone())
    }
}

/// The BigQuery warehouse. The client (and its credentials) is made on first use.
pub struct BigQueryWarehouse {
    config: BigQueryConfig,
    client: tokio::sync::OnceCell<Client>,
}

impl fmt::Debug for BigQueryWarehouse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BigQueryWarehouse")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What a query returned, all pages.
struct QueryOutput {
    fields: Vec<TableFieldSchema>,
    rows: Vec<TableRow>,
    dml_affected_rows: Option<u64>,
}

impl BigQueryWarehouse {
    pub fn new(config: BigQueryConfig) -> BigQueryWarehouse {
        BigQueryWarehouse {
            config,
            client: tokio::sync::OnceCell::new(),
        }
    }

    pub fn config(&self) -> &BigQueryConfig {
        &self.config
    }

    async fn client(&self) -> Result<&Client, WarehouseError> {
        self.client
            .get_or_try_init(|| async {
                let open = |reason: String| WarehouseError::Open {
                    target: self.config.target(),
                    reason,
                };
                let http = reqwest::Client::builder()
                    .connect_timeout(Duration::from_secs(30))
                    .timeout(Duration::from_secs(300))
                    .build()
                    .map_err(|e| open(format!("cannot make an HTTP client: {e}")))?;
                let mut builder = ClientBuilder::new();
                builder.with_client(http);
                if let Some(endpoint) = &self.config.endpoint {
                    builder
                        .with_v2_base_url(format!("{}{API_PATH}", endpoint.trim_end_matches('/')));
                }
                match &self.config.credentials {
                    Credentials::ServiceAccountKeyFile(path) => {
                        let path = path.to_str().ok_or_else(|| {
                            open(format!("the key file path {} is not UTF-8", path.display()))
                        })?;
                        builder
                            .build_from_service_account_key_file(path)
                            .await
                            .map_err(|e| open(format!("with the key file {path}: {e}")))
                    }
                    Credentials::ApplicationDefault => builder
                        .build_from_application_default_credentials()
                        .await
                        .map_err(|e| open(format!("with application default credentials: {e}"))),
                    Credentials::AccessToken(token) => builder
                        .build_from_authenticator(Arc::new(FixedToken(token.clone())))
                        .await
                        .map_err(|e| open(e.to_string())),
                }
            })
            .await
    }

    fn table_id(&self, table: &str) -> String {
        format!(
            "`{}.{}.{}`",
            self.config.project, self.config.dataset, table
        )
    }

    /// Creates the raw dataset when it is missing.
    async fn ensure_dataset(&self) -> Result<(), WarehouseError> {
        let client = self.client().await?;
        let (project, dataset) = (&self.config.project, &self.config.dataset);
        match client.dataset().get(project, dataset).await {
            Ok(_) => return Ok(()),
            Err(e) if status(&e) == Some(404) => {}
            Err(e) => return Err(api_error(&format!("get dataset {project}.{dataset}"), e)),
        }
        let mut new = Dataset::new(project, dataset);
        if let Some(location) = &self.config.location {
            new = new.location(location);
        }
        match client.dataset().create(new).await {
            // 409: another load made it meanwhile.
            Err(e) if status(&e) != Some(409) => {
                Err(api_error(&format!("create dataset {project}.{dataset}"), e))
            }
            _ => Ok(()),
        }
    }

    /// Creates the raw table of `topic` when it is missing; whether it existed.
    async fn ensure_table(&self, topic: Topic) -> Result<bool, WarehouseError> {
        let client = self.client().await?;
        let (project, dataset) = (&self.config.project, &self.config.dataset);
        let name = topic.as_str();
        match client.table().get(project, dataset, name, None).await {
            Ok(_) => return Ok(true),
            Err(e) if status(&e) == Some(404) => {}
            Err(e) => {
                return Err(api_error(
                    &format!("get table {project}.{dataset}.{name}"),
                    e,
                ));
            }
        }
        self.ensure_dataset().await?;
        let table = Table::new(project, dataset, name, raw_schema(topic)?)
            .time_partitioning(hourly_on_ts());
        match client.table().create(table).await {
            Err(e) if status(&e) != Some(409) => Err(api_error(
                &format!("create table {project}.{dataset}.{name}"),
                e,
            )),
            _ => Ok(false),
        }
    }

    /// Runs `sql` (standard SQL) to the end and reads every page of its rows.
    async fn run_query(&self, sql: &str) -> Result<QueryOutput, WarehouseError> {
        let client = self.client().await?;
        let project = &self.config.project;
        let failed = |e: BQError| WarehouseError::query(describe(&e), sql);
        let mut request = QueryRequest::new(sql);
        request.use_legacy_sql = false;
        request.location = self.config.location.clone();
        request.timeout_ms = Some(10_000);
        request.request_id = Some(uuid::Uuid::now_v7().to_string());
        let mut response: QueryResponse =
            client.job().query(project, request).await.map_err(failed)?;
        let job = response.job_reference.clone().unwrap_or_default();
        let job_id = job.job_id.clone();
        let location = job
            .location
            .clone()
            .or_else(|| self.config.location.clone());
        let started = Instant::now();
        // Not done within the request's timeout: wait for it, then page through its rows.
        while !response.job_complete.unwrap_or(false) {
            let Some(job_id) = &job_id else {
                return Err(WarehouseError::query(
                    "BigQuery answered an unfinished query without its job reference",
                    sql,
                ));
            };
            if started.elapsed() > self.config.job_timeout {
                return Err(WarehouseError::query(
                    format!(
                        "query job {job_id} still running after {} s (left running)",
                        started.elapsed().as_secs()
                    ),
                    sql,
                ));
            }
            let params = GetQueryResultsParameters {
                location: location.clone(),
                timeout_ms: Some(10_000),
                ..Default::default()
            };
            response = client
                .job()
                .get_query_results(project, job_id, params)
                .await
                .map_err(failed)?
                .into();
        }
        // `errors` on a complete answer are warnings ("do not necessarily mean that the job
        // has completed or was unsuccessful"): a failed query is answered with an HTTP error.
        let fields = response
            .schema
            .as_ref()
            .and_then(|s| s.fields.clone())
            .unwrap_or_default();
        let dml_affected_rows = response
            .num_dml_affected_rows
            .as_deref()
            .and_then(|n| n.parse().ok());
        let mut rows = response.rows.take().unwrap_or_default();
        let mut page_token = response.page_token.take();
        while let Some(token) = page_token {
            let Some(job_id) = &job_id else { break };
            let params = GetQueryResultsParameters {
                location: location.clone(),
                page_token: Some(token),
                ..Default::default()
            };
            let page = client
                .job()
                .get_query_results(project, job_id, params)
                .await
                .map_err(failed)?;
            rows.extend(page.rows.unwrap_or_default());
            page_token = page.page_token;
        }
        Ok(QueryOutput {
            fields,
            rows,
            dml_affected_rows,
        })
    }

    /// Inserts `job` and waits for it to finish; its final state.
    async fn run_job(&self, job: Job, what: &str) -> Result<Job, WarehouseError> {
        let client = self.client().await?;
        let project = &self.config.project;
        let reference = job.job_reference.clone().unwrap_or_default();
        let job_id = reference.job_id.clone().unwrap_or_default();
        let inserted = match client.job().insert(project, job).await {
            Ok(inserted) => inserted,
            Err(e) => return Err(api_error(&format!("{what}: insert job {job_id}"), e)),
        };
        let location = inserted
            .job_reference
            .as_ref()
            .and_then(|r| r.location.clone())
            .or(reference.location);
        let started = Instant::now();
        let mut job = inserted;
        loop {
            let status = job.status.clone().unwrap_or_default();
            if status.state.as_deref() == Some("DONE") {
                if let Some(error) = &status.error_result {
                    let mut message = format!("{what}: job {job_id} failed: {}", error_text(error));
                    let others: Vec<String> = status
                        .errors
                        .iter()
                        .flatten()
                        .filter(|e| e.message != error.message)
                        .map(error_text)
                        .collect();
                    if !others.is_empty() {
                        message.push_str("\n  ");
                        message.push_str(&others.join("\n  "));
                    }
                    return Err(WarehouseError::BigQuery(message));
                }
                return Ok(job);
            }
            if started.elapsed() > self.config.job_timeout {
                return Err(WarehouseError::BigQuery(format!(
                    "{what}: job {job_id} still {} after {} s (left running)",
                    status.state.as_deref().unwrap_or("PENDING"),
                    started.elapsed().as_secs()
                )));
            }
            tokio::time::sleep(self.config.poll_interval).await;
            job = client
                .job()
                .get_job(project, &job_id, location.as_deref())
                .await
                .map_err(|e| api_error(&format!("{what}: get job {job_id}"), e))?;
        }
    }

    fn load_job(&self, topic: Topic, hour: Hour, uris: Vec<String>) -> Result<Job, WarehouseError> {
        let load = JobConfigurationLoad {
            source_uris: Some(uris),
            source_format: Some("PARQUET".into()),
            destination_table: Some(TableReference::new(
                &self.config.project,
                &self.config.dataset,
                &partition_table(topic, hour),
            )),
            write_disposition: Some("WRITE_TRUNCATE".into()),
            create_disposition: Some("CREATE_IF_NEEDED".into()),
            schema: Some(raw_schema(topic)?),
            time_partitioning: Some(hourly_on_ts()),
            ..Default::default()
        };
        Ok(Job {
            job_reference: Some(JobReference {
                job_id: Some(format!(
                    "orch_load_{}_{}_{}",
                    topic.as_str(),
                    partition_suffix(hour),
                    uuid::Uuid::now_v7().simple()
                )),
                location: self.config.location.clone(),
                project_id: Some(self.config.project.clone()),
            }),
            configuration: Some(JobConfiguration {
                load: Some(load),
                ..Default::default()
            }),
            ..Default::default()
        })
    }
}

#[async_trait]
impl Warehouse for BigQueryWarehouse {
    fn kind(&self) -> &'static str {
        "bigquery"
    }

    fn raw_table(&self, topic: Topic) -> TableRef {
        TableRef::new(self.config.dataset.clone(), topic.as_str())
    }

    async fn load_hour(
        &self,
        lake: &Lake,
        topic: Topic,
        hour: Hour,
    ) -> Result<LoadReport, WarehouseError> {
        if !lake.url().starts_with("gs://") {
            return Err(WarehouseError::Unsupported(format!(
                "BigQuery loads from a gs:// lake; {} is not one",
                lake.url()
            )));
        }
        let files = lake.list_files(topic, hour).await?;
        let bytes: u64 = files.iter().map(|f| f.size).sum();
        let table = self.raw_table(topic);
        let existed = self.ensure_table(topic).await?;
        let in_hour = format!(
            "{ts} >= TIMESTAMP_MILLIS({start}) AND {ts} < TIMESTAMP_MILLIS({end})",
            ts = col::TS,
            start = hour.start().timestamp_millis(),
            end = hour.end().timestamp_millis(),
        );
        let target = self.table_id(topic.as_str());
        let (rows, replaced) = if files.is_empty() {
            // A load job needs at least one source URI: an hour without files empties its
            // partition with a DML DELETE, whose affected rows are the rows it replaced.
            let replaced = if existed {
                self.run_query(&format!("DELETE FROM {target} WHERE {in_hour}"))
                    .await?
                    .dml_affected_rows
                    .unwrap_or(0)
            } else {
                0
            };
            (0, replaced)
        } else {
            // Load statistics count the rows written, not those the truncation dropped: count
            // the partition first (another load of the same hour in between would make this
            // figure stale, never the table wrong).
            let replaced = if existed {
                let counted = self
                    .run_query(&format!("SELECT COUNT(*) FROM {target} WHERE {in_hour}"))
                    .await?;
                counted
                    .rows
                    .first()
                    .and_then(|r| {
                        r.columns
                            .as_ref()?
                            .first()?
                            .value
                            .as_ref()?
                            .as_str()?
                            .parse()
                            .ok()
                    })
                    .unwrap_or(0)
            } else {
                0
            };
            let uris = files.iter().map(|f| lake.uri(&f.path)).collect();
            let job = self.load_job(topic, hour, uris)?;
            let what = format!(
                "loading {} into {}.{}.{}",
                hour_key(hour),
                self.config.project,
                self.config.dataset,
                partition_table(topic, hour)
            );
            let done = self.run_job(job, &what).await?;
            let rows = done
                .statistics
                .and_then(|s| s.load)
                .and_then(|l| l.output_rows)
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| {
                    WarehouseError::BigQuery(format!(
                        "{what}: the finished job has no statistics.load.outputRows"
                    ))
                })?;
            (rows, replaced)
        };
        Ok(LoadReport {
            table,
            hour: hour_key(hour),
            files: files.len(),
            bytes,
            rows,
            duplicates: 0,
            replaced,
        })
    }

    async fn query(&self, sql: &str) -> Result<QueryResult, WarehouseError> {
        let out = self.run_query(sql).await?;
        let rows = out
            .rows
            .iter()
            .map(|row| {
                let cells = row.columns.as_deref().unwrap_or_default();
                out.fields
                    .iter()
                    .enumerate()
                    .map(|(i, field)| {
                        let value = cells.get(i).and_then(|c| c.value.as_ref());
                        value.map_or(Value::Null, |v| convert(field, v))
                    })
                    .collect()
            })
            .collect();
        Ok(QueryResult {
            columns: out.fields.iter().map(|f| f.name.clone()).collect(),
            rows,
        })
    }

    async fn row_count(&self, table: &TableRef) -> Result<Option<u64>, WarehouseError> {
        // The table's metadata (numRows), not a count query: free, and exact for tables that
        // only load jobs write (numRows leaves out a streaming buffer, which they have none of).
        let client = self.client().await?;
        let project = &self.config.project;
        match client
            .table()
            .get(project, &table.dataset, &table.table, None)
            .await
        {
            Ok(found) => Ok(Some(
                found
                    .num_rows
                    .as_deref()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0),
            )),
            Err(e) if status(&e) == Some(404) => Ok(None),
            Err(e) => Err(api_error(&format!("get table {project}.{table}"), e)),
        }
    }
}

/// `{topic}$YYYYMMDDHH`: the hour's partition of the topic's raw table.
pub fn partition_table(topic: Topic, hour: Hour) -> String {
    format!("{}${}", topic.as_str(), partition_suffix(hour))
}

fn partition_suffix(hour: Hour) -> String {
    hour.start().format("%Y%m%d%H").to_string()
}

fn hourly_on_ts() -> TimePartitioning {
    TimePartitioning::per_hour().field(col::TS)
}

/// The BigQuery type of a lake column.
fn field_type(name: &str, data_type: &DataType) -> Result<FieldType, WarehouseError> {
    Ok(match data_type {
        DataType::Timestamp(_, _) => FieldType::Timestamp,
        DataType::Utf8 | DataType::LargeUtf8 => FieldType::String,
        DataType::Int64 | DataType::Int32 => FieldType::Integer,
        DataType::Float64 => FieldType::Float,
        DataType::Boolean => FieldType::Boolean,
        other => {
            return Err(WarehouseError::Unsupported(format!(
                "the lake column {name} has type {other}, which the BigQuery load does not map"
            )));
        }
    })
}

/// The raw table of `topic`: the lake's columns in BigQuery's types, required where the lake's
/// are.
pub fn raw_schema(topic: Topic) -> Result<TableSchema, WarehouseError> {
    let mut fields = Vec::new();
    for field in topic.schema().fields() {
        let mut bq =
            TableFieldSchema::new(field.name(), field_type(field.name(), field.data_type())?);
        bq.mode = Some(
            if field.is_nullable() {
                "NULLABLE"
            } else {
                "REQUIRED"
            }
            .into(),
        );
        fields.push(bq);
    }
    Ok(TableSchema::new(fields))
}

/// The HTTP status of an API error.
fn status(e: &BQError) -> Option<i64> {
    match e {
        BQError::ResponseError { error } => Some(error.error.code),
        BQError::RequestError(e) => e.status().map(|s| i64::from(s.as_u16())),
        _ => None,
    }
}

/// An API error in one line: BigQuery's message, its reason and the HTTP status.
fn describe(e: &BQError) -> String {
    match e {
        BQError::ResponseError { error } => {
            let reason = error
                .error
                .errors
                .first()
                .and_then(|e| e.get("reason"))
                .map(|r| format!(", {r}"))
                .unwrap_or_default();
            format!(
                "{} (HTTP {}{reason})",
                error.error.message, error.error.code
            )
        }
        other => other.to_string(),
    }
}

fn api_error(what: &str, e: BQError) -> WarehouseError {
    WarehouseError::BigQuery(format!("{what}: {}", describe(&e)))
}

fn error_text(e: &ErrorProto) -> String {
    let mut text = e.message.clone().unwrap_or_else(|| "(no message)".into());
    if let Some(reason) = &e.reason {
        text.push_str(&format!(" ({reason})"));
    }
    if let Some(location) = e.location.as_ref().filter(|l| !l.is_empty()) {
        text.push_str(&format!(" at {location}"));
    }
    text
}

/// One cell of BigQuery's JSON rows (`{"v": ...}`, every scalar a string) as a typed value.
fn convert(field: &TableFieldSchema, v: &Value) -> Value {
    if field.mode.as_deref() == Some("REPEATED") {
        let scalar = TableFieldSchema {
            mode: None,
            ..field.clone()
        };
        return match v {
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|item| match item.get("v") {
                        Some(inner) => convert(&scalar, inner),
                        None => Value::Null,
                    })
                    .collect(),
            ),
            _ => Value::Null,
        };
    }
    if v.is_null() {
        return Value::Null;
    }
    match field.r#type {
        FieldType::Record | FieldType::Struct => {
            let subfields = field.fields.as_deref().unwrap_or_default();
            let cells = v.get("f").and_then(Value::as_array);
            Value::Object(
                subfields
                    .iter()
                    .enumerate()
                    .map(|(i, sub)| {
                        let cell = cells
                            .and_then(|c| c.get(i))
                            .and_then(|c| c.get("v"))
                            .map_or(Value::Null, |inner| convert(sub, inner));
                        (sub.name.clone(), cell)
                    })
                    .collect(),
            )
        }
        _ => {
            let Some(text) = v.as_str() else {
                return v.clone();
            };
            match field.r#type {
                FieldType::Integer | FieldType::Int64 => text
                    .parse::<i64>()
                    .map_or_else(|_| Value::String(text.into()), Value::from),
                FieldType::Float | FieldType::Float64 => text
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    // NaN and the infinities have no JSON number: kept as BigQuery spells them.
                    .map_or_else(|| Value::String(text.into()), Value::Number),
                FieldType::Boolean | FieldType::Bool => match text {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    _ => Value::String(text.into()),
                },
                FieldType::Timestamp => {
                    Value::String(timestamp_text(text).unwrap_or_else(|| text.to_owned()))
                }
                _ => Value::String(text.into()),
            }
        }
    }
}

/// A TIMESTAMP as BigQuery's JSON rows carry it (seconds since the epoch in floating-point
/// notation, `1.7953416E9`, or, with `useInt64Timestamp`, integer microseconds) as BigQuery
/// casts it to a string: `2026-11-22 10:00:00.123+00` (UTC, fraction only when non-zero).
pub fn timestamp_text(raw: &str) -> Option<String> {
    let micros = epoch_micros(raw)?;
    let time = DateTime::from_timestamp_micros(micros)?;
    let mut text = time.format("%Y-%m-%d %H:%M:%S").to_string();
    let fraction = micros.rem_euclid(1_000_000);
    if fraction != 0 {
        let digits = format!("{fraction:06}");
        text.push('.');
        text.push_str(digits.trim_end_matches('0'));
    }
    text.push_str("+00");
    Some(text)
}

/// Microseconds since the epoch from BigQuery's decimal (`1795341600.5`, `1.7953416005E9`)
/// or integer-microsecond form, exactly (no floating point).
fn epoch_micros(raw: &str) -> Option<i64> {
    let raw = raw.trim();
    let is_decimal = raw.contains(['.', 'e', 'E']);
    if !is_decimal {
        // Integer microseconds (useInt64Timestamp).
        return raw.parse().ok();
    }
    let (mantissa, exponent) = match raw.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().ok()?),
        None => (raw, 0),
    };
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, mantissa),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = format!("{int_part}{frac_part}");
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // value = digits * 10^(exponent - len(frac)); in microseconds: * 10^6.
    let scale = exponent - frac_part.len() as i32 + 6;
    let mut value: i128 = digits.parse().ok()?;
    if scale >= 0 {
        value = value.checked_mul(10i128.checked_pow(scale as u32)?)?;
    } else {
        let divisor = 10i128.checked_pow((-scale) as u32)?;
        // Round to the nearest microsecond.
        value = (value + divisor / 2) / divisor;
    }
    let value = i64::try_from(value).ok()?;
    Some(if negative { -value } else { value })
}

#[cfg(test)]
mod fake_api;
#[cfg(test)]
mod tests;
