//! The one place that decides status codes: every failure a handler can meet becomes an
//! [`ApiError`], and every `ApiError` becomes a JSON body `{"success":false,"error":…}`.

use std::collections::BTreeMap;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use serverpulse_proto::ValidationError;
use serverpulse_store::StoreError;

/// What a full ingest queue tells agents to wait, seconds.
pub const BUSY_RETRY_AFTER_SECS: u32 = 2;

/// The registration failure text that deployed agents look for.
pub const SERVER_NOT_FOUND: &str = "Server not found in ServerPulse. Please add the server first.";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body or a parameter failed validation; names the fields.
    #[error("{0}")]
    Invalid(#[from] ValidationError),
    /// No credentials, wrong credentials, or credentials of someone else.
    #[error("Unauthorized")]
    Unauthorized,
    /// An enrollment token that is unknown, used or expired.
    #[error("Enrollment token is invalid, used or expired")]
    EnrollmentRefused,
    /// Authenticated, but the role does not allow it.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The ingest queue is full: come back after [`BUSY_RETRY_AFTER_SECS`].
    #[error("the hub is busy storing reports; retry after {BUSY_RETRY_AFTER_SECS} s")]
    Busy,
    /// The database failed; the request may be retried.
    #[error("storage unavailable, retry later")]
    Unavailable(String),
    /// A bug or corrupt data; logged in full, reported vaguely.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn field(path: &str, why: &str) -> Self {
        Self::Invalid(ValidationError::field(path, why))
    }

    pub fn not_found(what: &str) -> Self {
        Self::NotFound(format!("{what} not found"))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Invalid(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized | Self::EnrollmentRefused => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Unavailable(_) | Self::Busy => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound => Self::not_found("resource"),
            StoreError::Conflict(what) => Self::Conflict(what),
            StoreError::Backend(what) => Self::Unavailable(what),
            StoreError::Corrupt(what) => Self::Internal(what),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = match &self {
            Self::Invalid(problem) => {
                let details: BTreeMap<_, _> = problem.details().clone();
                json!({"success": false, "error": problem.summary(), "details": details})
            }
            Self::Unavailable(cause) => {
                tracing::warn!(error = %cause, "storage unavailable");
                json!({"success": false, "error": self.to_string()})
            }
            Self::Internal(cause) => {
                tracing::error!(error = %cause, "internal error while serving a request");
                json!({"success": false, "error": self.to_string()})
            }
            _ => json!({"success": false, "error": self.to_string()}),
        };
        let mut response = (status, Json(body)).into_response();
        if matches!(self, Self::Busy) {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(BUSY_RETRY_AFTER_SECS));
        } else if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
