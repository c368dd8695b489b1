//! Reading request bodies and parameters so that every failure is a JSON error.
//!
//! Bodies are buffered up to the configured limit, inflated if sent with
//! `Content-Encoding: gzip` (with the same limit on the inflated size, so a small bomb
//! cannot expand without bound), checked to be UTF-8 and parsed as JSON. Unknown
//! members are kept: validation happens in `serverpulse-proto`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;
use serde_json::Value;
use serverpulse_proto::body_text::BodyText;
use serverpulse_proto::gzip::InflateError;

use crate::app::AppState;
use crate::error::ApiError;

/// A JSON body; `None` when the request had no body at all.
#[derive(Debug)]
pub struct JsonBody {
    /// The document, and the body's text (inflated) it was parsed from.
    parsed: Option<(Value, BodyText)>,
}

impl JsonBody {
    /// The document, if the request had a body.
    pub fn document(&self) -> Option<&Value> {
        self.parsed.as_ref().map(|(document, _)| document)
    }

    /// The document, or a 400 saying a body is required.
    pub fn required(self) -> Result<Value, ApiError> {
        self.required_with_text().map(|(document, _)| document)
    }

    /// The document and the text it was parsed from, or a 400 saying a body is required.
    pub fn required_with_text(self) -> Result<(Value, BodyText), ApiError> {
        self.parsed.ok_or_else(|| ApiError::field("body", "a JSON body is required"))
    }
}

impl FromRequest<AppState> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let limit = state.settings.body_limit;
        let encoding = request
            .headers()
            .get(header::CONTENT_ENCODING)
            .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase());
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection: BytesRejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge { limit }
            } else {
                ApiError::field("body", &rejection.body_text())
            }
        })?;
        let (text, gzip) = match encoding.as_deref() {
            None | Some("identity") | Some("") => (bytes.to_vec(), None),
            Some("gzip") | Some("x-gzip") => (inflate(&bytes, limit)?, Some(bytes)),
            Some(other) => {
                return Err(ApiError::UnsupportedMediaType(format!(
                    "Content-Encoding {other:?} is not supported; use gzip or none"
                )));
            }
        };
        let text = String::from_utf8(text).map_err(|e| not_utf8(e.utf8_error()))?;
        if text.trim().is_empty() {
            return Ok(JsonBody { parsed: None });
        }
        let (document, text) = BodyText::parse(text).map_err(not_json)?;
        // What was sent is kept beside what it says: a report may be stored as sent.
        // (The buffer is taken over where nothing else holds it, else copied.)
        let text = match gzip {
            Some(body) => text.sent_as_gzip(Vec::from(body)),
            None => text,
        };
        Ok(JsonBody { parsed: Some((document, text)) })
    }
}

fn inflate(compressed: &[u8], limit: usize) -> Result<Vec<u8>, ApiError> {
    serverpulse_proto::gzip::inflate(compressed, limit).map_err(|error| match error {
        InflateError::TooLarge { limit } => ApiError::PayloadTooLarge { limit },
        invalid @ InflateError::Invalid(_) => ApiError::field("body", &invalid.to_string()),
    })
}

fn not_utf8(error: std::str::Utf8Error) -> ApiError {
    ApiError::field("body", &format!("must be UTF-8 (invalid byte at offset {})", error.valid_up_to()))
}

/// Empty (or whitespace-only) is `None`; anything else must be UTF-8 JSON.
pub fn parse_json(bytes: &[u8]) -> Result<Option<Value>, ApiError> {
    let text = std::str::from_utf8(bytes).map_err(not_utf8)?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str(text).map(Some).map_err(not_json)
}

fn not_json(error: serde_json::Error) -> ApiError {
    ApiError::field("body", &format!("is not valid JSON: {error}"))
}

/// Wraps one of axum's parameter extractors so that its failures become JSON errors
/// under the given field name instead of axum's plain-text rejections.
macro_rules! json_rejecting {
    ($(#[$doc:meta])* $name:ident wraps $inner:ident as $field:literal) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name<T>(pub T);

        impl<T, S> FromRequestParts<S> for $name<T>
        where
            T: DeserializeOwned + Send,
            S: Send + Sync,
        {
            type Rejection = ApiError;

            async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
                $inner::<T>::from_request_parts(parts, state)
                    .await
                    .map(|$inner(value)| Self(value))
                    .map_err(|rejection| ApiError::field($field, &rejection.body_text()))
            }
        }
    };
}

json_rejecting!(
    /// `Path` whose failures are JSON errors under `path`.
    ApiPath wraps Path as "path"
);
json_rejecting!(
    /// `Query` whose failures are JSON errors under `query`.
    ApiQuery wraps Query as "query"
);

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn gzip_bomb_is_refused_by_inflated_size() {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(&vec![b' '; 1_000_000]).unwrap();
        let compressed = encoder.finish().unwrap();
        assert!(compressed.len() < 10_000);
        assert!(matches!(inflate(&compressed, 100_000), Err(ApiError::PayloadTooLarge { limit: 100_000 })));
        assert_eq!(inflate(&compressed, 1_000_000).unwrap().len(), 1_000_000);
    }

    #[test]
    fn json_edge_cases() {
        assert!(parse_json(b"").unwrap().is_none());
        assert!(parse_json(b"  \n").unwrap().is_none());
        assert!(parse_json(b"{\"a\":NaN}").is_err());
        assert!(parse_json(b"\xff\xfe{}").is_err());
        assert!(parse_json(b"{}").unwrap().is_some());
    }
}
