//! `POST /agents/register`: the documented form and the modular agent's form.

use std::net::IpAddr;

use serde_json::{Map, Value};

use crate::fields::{Errors, Object, ValidationError, kind};
use crate::time::{UnixMillis, parse_timestamp};

/// The longest enrollment token the hub ever mints is far below this.
const MAX_TOKEN_LEN: usize = 256;

/// A validated registration request. Which of the three ways applies is the hub's call.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisterRequest {
    /// The address the server was added with (dialect A); canonical form.
    pub server_ip: Option<IpAddr>,
    pub hostname: String,
    pub agent_version: Option<String>,
    /// `system_info` (A), or the modular agent's `system`, `release`, `version`,
    /// `machine`, `processor`, gathered into one object.
    pub system_info: Map<String, Value>,
    pub enrollment_token: Option<String>,
    /// The id the modular agent calls itself; informational.
    pub claimed_agent_id: Option<String>,
    pub registration_time: Option<UnixMillis>,
}

/// Decodes the body; `header_token` is the `X-Enrollment-Token` header, if any.
pub fn decode_register(body: &Value, header_token: Option<&str>) -> Result<RegisterRequest, ValidationError> {
    let mut errors = Errors::default();
    let Some(doc) = Object::root(body, &mut errors) else {
        return Err(errors.into_error());
    };
    let hostname = doc.required_string("hostname", 253, &mut errors);
    let server_ip = doc.string("server_ip", 64, &mut errors).and_then(|text| match text.parse::<IpAddr>() {
        Ok(ip) => Some(ip.to_canonical()),
        Err(_) => {
            errors.add("server_ip", "must be an IPv4 or IPv6 address");
            None
        }
    });
    let agent_version = doc.string("agent_version", 64, &mut errors);
    let body_token = doc.string("enrollment_token", MAX_TOKEN_LEN, &mut errors);
    let header_token = header_token.map(str::trim).filter(|t| !t.is_empty());
    if header_token.is_some_and(|t| t.len() > MAX_TOKEN_LEN) {
        errors.add("X-Enrollment-Token", "is too long");
    }
    let enrollment_token = body_token.or(header_token.map(str::to_owned));
    let claimed_agent_id = doc.string("agent_id", 128, &mut errors);
    let registration_time = doc
        .string("registration_time", 64, &mut errors)
        .and_then(|text| parse_timestamp(&text).map_err(|why| errors.add("registration_time", why)).ok());

    let mut system_info = Map::new();
    match doc.get("system_info") {
        Some(Value::Object(info)) => system_info = info.clone(),
        Some(other) => errors.add("system_info", format!("must be a JSON object, got {}", kind(other))),
        None => {
            // Python's platform.processor() is often "", so empty strings are fine here.
            for key in ["system", "release", "version", "machine", "processor"] {
                match doc.get(key) {
                    Some(Value::String(text)) if text.len() <= 256 => {
                        system_info.insert(key.to_owned(), Value::String(text.clone()));
                    }
                    Some(Value::String(_)) => errors.add(key, "must be at most 256 characters"),
                    Some(other) => errors.add(key, format!("must be a string, got {}", kind(other))),
                    None => {}
                }
            }
        }
    }

    errors.finish(())?;
    Ok(RegisterRequest {
        server_ip,
        hostname: hostname.unwrap_or_default(),
        agent_version,
        system_info,
        enrollment_token,
        claimed_agent_id,
        registration_time,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn documented_form() {
        let req = decode_register(
            &json!({"server_ip":"192.168.1.100","hostname":"production-server-01","agent_version":"1.0.0",
                    "system_info":{"os":"Ubuntu 20.04","kernel":"5.4.0-74-generic","arch":"x86_64"}}),
            None,
        )
        .unwrap();
        assert_eq!(req.server_ip, Some("192.168.1.100".parse().unwrap()));
        assert_eq!(req.system_info["os"], "Ubuntu 20.04");
        assert_eq!(req.enrollment_token, None);
    }

    #[test]
    fn modular_form_and_mapped_ipv6() {
        let req = decode_register(
            &json!({"agent_id":"web-01-1718990000","hostname":"web-01","system":"Linux",
                    "release":"6.1.0","version":"#1 SMP","machine":"x86_64","processor":"",
                    "agent_version":"2.0.0","registration_time":"2025-06-21T20:30:00.123456",
                    "server_ip":"::ffff:10.0.0.5"}),
            Some("tok"),
        )
        .unwrap();
        assert_eq!(req.claimed_agent_id.as_deref(), Some("web-01-1718990000"));
        assert_eq!(req.system_info["machine"], "x86_64");
        assert_eq!(req.server_ip, Some("10.0.0.5".parse().unwrap()));
        assert_eq!(req.enrollment_token.as_deref(), Some("tok"));
        assert_eq!(req.agent_version.as_deref(), Some("2.0.0"));
    }

    #[test]
    fn bad_ip_is_named() {
        let err = decode_register(&json!({"hostname":"h","server_ip":"300.1.1.1"}), None).unwrap_err();
        assert!(err.details().contains_key("server_ip"));
    }
}
