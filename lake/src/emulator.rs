//! Talking to fake-gcs-server, the GCS emulator, through object_store's GCS client.
//!
//! object_store speaks GCS's XML API for objects. fake-gcs-server (v1.54) answers it only on
//! its public host (`storage.googleapis.com` unless started with `-public-host`), and takes an
//! XML-API upload (`PUT /{bucket}/{object}`) only as a signed-URL upload, whose answer has no
//! `ETag` header. With an emulator endpoint configured, the lake's HTTP client therefore:
//! - sends every request with `Host: storage.googleapis.com`;
//! - marks a plain upload as a signed-URL upload (`?X-Goog-Algorithm=...`; the emulator checks
//!   no signature), and copies the object's `etag` and `generation` from the JSON answer into
//!   the `ETag` and `x-goog-generation` headers object_store reads.
//!
//! Nothing of this applies to real GCS, which is reached by object_store's own client.

use async_trait::async_trait;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse,
    HttpResponseBody, HttpService, ReqwestConnector,
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
