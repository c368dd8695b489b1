//! Remote commands: what the hub hands out, and the agent's acknowledgement in either dialect.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::fields::{Errors, Object, ValidationError, kind};
use crate::time::{UnixMillis, parse_timestamp};

/// The fixed set of things the hub may ask an agent to do. The agent runs only the
/// types its local configuration allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CommandType {
    RestartService,
    CollectNow,
    ReloadConfig,
    RunCheck,
}

impl CommandType {
    pub const ALL: [Self; 4] = [Self::RestartService, Self::CollectNow, Self::ReloadConfig, Self::RunCheck];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RestartService => "restart_service",
            Self::CollectNow => "collect_now",
            Self::ReloadConfig => "reload_config",
            Self::RunCheck => "run_check",
        }
    }

    pub fn parse(word: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == word)
    }
}

/// A command as sent in `GET /agents/{id}/commands`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WireCommand {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: CommandType,
    pub args: Value,
    /// RFC 3339.
    pub issued_at: String,
    pub expires_at: String,
    /// Hex HMAC-SHA256 over [`signing_payload`], keyed with SHA-256 of the agent's token.
    pub signature: String,
}

/// The bytes a command's signature covers: every field but the signature, in a fixed
/// order, so the agent can check that nothing was altered on the way.
pub fn signing_payload(id: &str, kind: CommandType, args: &Value, issued_at: &str, expires_at: &str) -> Vec<u8> {
    format!("{id}\n{}\n{args}\n{issued_at}\n{expires_at}", kind.as_str()).into_bytes()
}

/// How a command ended on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AckStatus {
    Succeeded,
    Failed,
    Rejected,
}

impl AckStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Rejected => "rejected",
        }
    }

    pub fn parse(word: &str) -> Option<Self> {
        match word {
            "succeeded" | "success" => Some(Self::Succeeded),
            "failed" | "error" => Some(Self::Failed),
            "rejected" => Some(Self::Rejected),
            _ => None,
        }
    }
}

/// Most bytes of command output the hub keeps.
pub const MAX_OUTPUT: usize = 64 * 1024;

/// A validated acknowledgement.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandAck {
    pub status: AckStatus,
    pub output: Option<String>,
    pub exit_code: Option<i64>,
    pub host_time: Option<UnixMillis>,
}

/// Decodes an ack for the command named in the path. Dialect A/ServerPulse send
/// `status`, `output`, `exit_code`; dialect B sends a free-form `result`.
pub fn decode_ack(body: &Value, path_command_id: &str) -> Result<CommandAck, ValidationError> {
    let mut errors = Errors::default();
    let Some(doc) = Object::root(body, &mut errors) else {
        return Err(errors.into_error());
    };
    if let Some(id) = doc.string("command_id", 128, &mut errors)
        && id != path_command_id
    {
        errors.add("command_id", "does not match the command in the URL");
    }
    let host_time = doc
        .string("timestamp", 64, &mut errors)
        .and_then(|text| parse_timestamp(&text).map_err(|why| errors.add("timestamp", why)).ok());
    let exit_code = doc.get("exit_code").and_then(|v| match v.as_i64() {
        Some(code) => Some(code),
        None => {
            errors.add("exit_code", "must be an integer");
            None
        }
    });
    let mut output = match doc.get("output") {
        None => None,
        Some(Value::String(text)) => Some(text.clone()),
        Some(other) => Some(other.to_string()),
    };
    let status = match (doc.get("status"), doc.get("result")) {
        (Some(Value::String(word)), _) => {
            let parsed = AckStatus::parse(word);
            if parsed.is_none() {
                errors.add("status", "must be one of succeeded, failed, rejected");
            }
            parsed
        }
        (Some(other), _) => {
            errors.add("status", format!("must be a string, got {}", kind(other)));
            None
        }
        (None, Some(result)) => {
            let (status, text) = status_from_result(result, exit_code);
            output = output.or(Some(text));
            Some(status)
        }
        (None, None) => {
            errors.add("status", "is required (or a `result`)");
            None
        }
    };
    if let Some(text) = output.as_mut()
        && text.len() > MAX_OUTPUT
    {
        let mut cut = MAX_OUTPUT;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    errors.finish(())?;
    Ok(CommandAck { status: status.unwrap_or(AckStatus::Failed), output, exit_code, host_time })
}

/// Dialect B's `result` is whatever its handler returned: a string, or an object with
/// `success`/`status`/`output`.
fn status_from_result(result: &Value, exit_code: Option<i64>) -> (AckStatus, String) {
    let explicit = match result {
        Value::Object(map) => map.get("status").and_then(Value::as_str).and_then(AckStatus::parse).or_else(|| {
            map.get("success")
                .and_then(Value::as_bool)
                .map(|ok| if ok { AckStatus::Succeeded } else { AckStatus::Failed })
        }),
        Value::Bool(false) => Some(AckStatus::Failed),
        _ => None,
    };
    let status = explicit.unwrap_or(match exit_code {
        Some(code) if code != 0 => AckStatus::Failed,
        _ => AckStatus::Succeeded,
    });
    let text = match result {
        Value::String(text) => text.clone(),
        Value::Object(map) => match map.get("output") {
            Some(Value::String(text)) => text.clone(),
            _ => result.to_string(),
        },
        other => other.to_string(),
    };
    (status, text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ack_dialects() {
        let a = decode_ack(
            &json!({"command_id":"c1","status":"failed","output":"boom","exit_code":3,
            "timestamp":"2025-06-21T20:30:00Z"}),
            "c1",
        )
        .unwrap();
        assert_eq!(a.status, AckStatus::Failed);
        assert_eq!(a.exit_code, Some(3));
        let b = decode_ack(
            &json!({"command_id":"c1","result":{"success":true,"output":"restarted"},
            "timestamp":"2025-06-21T20:30:00.5"}),
            "c1",
        )
        .unwrap();
        assert_eq!(b.status, AckStatus::Succeeded);
        assert_eq!(b.output.as_deref(), Some("restarted"));
        assert!(decode_ack(&json!({"command_id":"other","status":"failed"}), "c1").is_err());
    }
}
