//! The web layer's errors and how they become responses: bad input is a 4xx with a message the
//! user can act on (and is not logged as a server error); a storage failure is a 500 whose
//! details go to the log, not to the page.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use orch::storage::StorageError;

/// What a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// Malformed input: a bad selection, partition, run id, filter.
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    /// A write action without its token or CSRF proof, or a host this server does not serve.
    #[error("{0}")]
    Forbidden(String),
    /// A read without the access token, where one is set.
    #[error("{0}")]
    Unauthorized(String),
    /// The action is not possible in the current state (e.g. canceling a finished run).
    #[error("{0}")]
    Conflict(String),
    #[error("the run history failed: {0}")]
    Storage(#[from] StorageError),
    #[error("cannot render the page: {0}")]
    Render(#[from] askama::Error),
}

impl WebError {
    pub fn status(&self) -> StatusCode {
        match self {
            WebError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WebError::NotFound(_) => StatusCode::NOT_FOUND,
            WebError::Forbidden(_) => StatusCode::FORBIDDEN,
            WebError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            WebError::Conflict(_) => StatusCode::CONFLICT,
            WebError::Storage(StorageError::RunNotFound(_)) => StatusCode::NOT_FOUND,
            WebError::Storage(StorageError::IllegalTransition { .. }) => StatusCode::CONFLICT,
            WebError::Storage(_) | WebError::Render(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The message shown to the user: internals of server errors stay in the log.
    pub fn public_message(&self) -> String {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
            "internal error: the server could not answer; its log says why".to_owned()
        } else {
            self.to_string()
        }
    }
}

/// An error answered as JSON (`{"error": "..."}`), for the API.
#[derive(Debug)]
pub struct ApiError(pub WebError);

impl<E: Into<WebError>> From<E> for ApiError {
    fn from(e: E) -> Self {
        ApiError(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        let body =
            serde_json::json!({ "error": self.0.public_message(), "status": status.as_u16() });
        (status, axum::Json(body)).into_response()
    }
}

/// An error answered as an HTML page, for the UI.
#[derive(Debug)]
pub struct PageError(pub WebError);

impl<E: Into<WebError>> From<E> for PageError {
    fn from(e: E) -> Self {
        PageError(e.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        let message = self.0.public_message();
        let page = crate::pages::error_page(status, &message);
        (status, axum::response::Html(page)).into_response()
    }
}
