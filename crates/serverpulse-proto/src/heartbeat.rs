//! `POST /agents/{id}/heartbeat`: `{}` (A), `{"agent_id","timestamp","status"}` (B), or no body.

use serde_json::Value;

use crate::fields::{Errors, Object, ValidationError};
use crate::time::{UnixMillis, parse_timestamp};

/// What a heartbeat said beyond "I am alive".
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Heartbeat {
    pub host_time: Option<UnixMillis>,
    pub status: Option<String>,
    /// The server-driven config version the agent runs (serverpulse-agent).
    pub config_version: Option<u64>,
}

/// `None` is an empty body.
pub fn decode_heartbeat(body: Option<&Value>) -> Result<Heartbeat, ValidationError> {
    let Some(body) = body else {
        return Ok(Heartbeat::default());
    };
    let mut errors = Errors::default();
    let Some(doc) = Object::root(body, &mut errors) else {
        return Err(errors.into_error());
    };
    let host_time = doc
        .string("timestamp", 64, &mut errors)
        .and_then(|text| parse_timestamp(&text).map_err(|why| errors.add("timestamp", why)).ok());
    let status = doc.string("status", 32, &mut errors);
    let config_version = doc.get("config_version").and_then(|v| match v.as_u64() {
        Some(n) => Some(n),
        None => {
            errors.add("config_version", "must be a non-negative integer");
            None
        }
    });
    errors.finish(Heartbeat { host_time, status, config_version })
}
