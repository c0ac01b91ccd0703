//! Talking to fake-gcs-server, the GCS emulator, through object_store's GCS client.
//!
//! object_store speaks GCS's XML API for objects. fake-gcs-server (v1.54) answers it only on
//! its public host (`storage.googleapis.com` unless started with `-public-host`), and takes an
//! XML-API upload (`PUT /{bucket}/{object}`) only as a signed-URL upload, whose answer has no
//! `ETag` header. With an emulator endpoint configured, the lake's HTTP client therefore:
//! - sends every request with `Host: storage.googleapis.com`;
//! - marks a plain upload as a signed-URL upload (`?X-Goog-Algorithm=...`; the emulator checks
//!   no signature), and copies the object's `etag` and `generation` from the JSON answer into
//!   the `ETag` and `x-goog-generation` headers object_store reads;
//! - answers a create-only upload (`x-goog-if-generation-match: 0`, object_store's
//!   `PutMode::Create`) itself when the object exists, with GCS's `412 Precondition Failed`:
//!   the emulator ignores the precondition. The check and the upload hold a lock file shared by
//!   every process using the same emulator, so the emulation is as atomic as GCS's own.
//!
//! Nothing of this applies to real GCS, which is reached by object_store's own client.

use async_trait::async_trait;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpRequestBody,
    HttpResponse, HttpResponseBody, HttpService, ReqwestConnector,
};
use object_store::{ClientOptions, HeaderValue};

/// fake-gcs-server's default public host.
pub(crate) const PUBLIC_HOST: &str = "storage.googleapis.com";

/// Builds the HTTP client for a GCS emulator.
#[derive(Debug, Default)]
pub(crate) struct FakeGcsConnector;

impl HttpConnector for FakeGcsConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let inner = ReqwestConnector::default().connect(options)?;
        Ok(HttpClient::new(FakeGcsService { inner }))
    }
}

#[derive(Debug)]
struct FakeGcsService {
    inner: HttpClient,
}

/// A plain object upload of the XML API: `PUT /{bucket}/{object}`, no query, not a copy.
fn is_plain_upload(req: &HttpRequest) -> bool {
    req.method().as_str() == "PUT"
        && req.uri().query().is_none()
        && !req.headers().contains_key("x-goog-copy-source")
}

#[async_trait]
impl HttpService for FakeGcsService {
    async fn call(&self, mut req: HttpRequest) -> Result<HttpResponse, HttpError> {
        req.headers_mut()
            .insert("host", HeaderValue::from_static(PUBLIC_HOST));
        let upload = is_plain_upload(&req);
        let create_only = upload
            && req
                .headers()
                .get("x-goog-if-generation-match")
                .is_some_and(|v| v.as_bytes() == b"0");
        let _lock = if create_only {
            let lock = lock_emulator(req.uri().authority().map(|a| a.as_str()).unwrap_or(""))
                .await
                .map_err(|e| HttpError::new(HttpErrorKind::Request, e))?;
            let mut head = HttpRequest::new(HttpRequestBody::empty());
            *head.method_mut() = "HEAD".parse().expect("a method");
            *head.uri_mut() = req.uri().clone();
            head.headers_mut()
                .insert("host", HeaderValue::from_static(PUBLIC_HOST));
            let exists = self.inner.execute(head).await?;
            if exists.status().is_success() {
                let mut refused = HttpResponse::new(HttpResponseBody::from(
                    bytes::Bytes::from_static(b"<Error><Code>PreconditionFailed</Code></Error>"),
                ));
                *refused.status_mut() = 412u16.try_into().expect("a status");
                return Ok(refused);
            }
            Some(lock)
        } else {
            None
        };
        if upload {
            let uri = format!("{}?X-Goog-Algorithm=GOOG4-RSA-SHA256", req.uri());
            *req.uri_mut() = uri
                .parse()
                .map_err(|e| HttpError::new(HttpErrorKind::Request, e))?;
        }
        let response = self.inner.execute(req).await?;
        if !upload || !response.status().is_success() || response.headers().contains_key("etag") {
            return Ok(response);
        }
        let (mut parts, body) = response.into_parts();
        let bytes = body.bytes().await?;
        let object: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| HttpError::new(HttpErrorKind::Decode, e))?;
        for (field, header, quote) in [
            ("etag", "etag", true),
            ("generation", "x-goog-generation", false),
        ] {
            if let Some(value) = object[field].as_str() {
                let value = if quote {
                    format!("\"{value}\"")
                } else {
                    value.to_owned()
                };
                if let Ok(value) = HeaderValue::from_str(&value) {
                    parts.headers.insert(header, value);
                }
            }
        }
        Ok(HttpResponse::from_parts(
            parts,
            HttpResponseBody::from(bytes),
        ))
    }
}

/// Takes the lock file of the emulator at `authority` (one per emulator, shared by every process
/// on this machine): held while a create-only upload checks and writes.
async fn lock_emulator(authority: &str) -> std::io::Result<std::fs::File> {
    let name: String = authority
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let path = std::env::temp_dir().join(format!("orch-fake-gcs-{name}.lock"));
    tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        file.lock()?;
        Ok(file)
    })
    .await
    .map_err(std::io::Error::other)?
}
