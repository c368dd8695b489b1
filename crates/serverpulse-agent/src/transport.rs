//! Talking to the hub over HTTP(S): registration, reports (gzip batches), heartbeats,
//! commands. Blocking (ureq), one connection pool, TLS through rustls with ring, an
//! optional private CA, and the proxy from the environment (`HTTPS_PROXY`, `ALL_PROXY`).
//!
//! Failures are sorted by what the caller should do: [`TransportError::Unavailable`]
//! (keep the data, retry later), [`TransportError::Unauthorized`] (credentials are no
//! longer valid), [`TransportError::Refused`] (the hub will never accept this request).

use std::io::Write;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;
use serverpulse_proto::responses::{
    AckAccepted, AlertsAccepted, HeartbeatAccepted, MaintenanceOpened, MetricsAccepted, PendingCommands,
    RegisterResponse,
};
use ureq::tls::{RootCerts, TlsConfig};
use ureq::unversioned::transport::Connector;

use crate::coalesce::CoalescingConnector;

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Network failure, timeout, 5xx, 429 or 503: the request may succeed later.
    #[error("hub unavailable: {0}")]
    Unavailable(String),
    /// 429 or 503 with `Retry-After`: the hub is shedding load and says when to come back.
    #[error("hub busy, asked to retry in {retry_after_ms} ms: {message}")]
    Busy { retry_after_ms: i64, message: String },
    /// 401: the agent's credentials are not (or no longer) valid.
    #[error("the hub refused the agent's credentials (401)")]
    Unauthorized,
    /// Any other 4xx: resending the same request will not help.
    #[error("the hub refused the request ({status}): {message}")]
    Refused { status: u16, message: String },
    /// The agent's own setup is wrong (unreadable CA file, …).
    #[error("{0}")]
    Setup(String),
}

/// An agent id and its token.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub agent_id: String,
    pub token: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("agent_id", &self.agent_id).finish_non_exhaustive()
    }
}

/// A client for one hub.
#[derive(Debug, Clone)]
pub struct Hub {
    agent: ureq::Agent,
    base: String,
    gzip: std::sync::Arc<std::sync::Mutex<Gzip>>,
}

impl Hub {
    pub fn from_config(config: &Config) -> Result<Self, TransportError> {
        let mut tls = TlsConfig::builder();
        if let Some(path) = &config.security.ca_cert_file {
            let pem = std::fs::read(path)
                .map_err(|e| TransportError::Setup(format!("cannot read CA file {}: {e}", path.display())))?;
            let certs: Vec<_> = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(cert)) => Some(cert),
                    _ => None,
                })
                .collect();
            if certs.is_empty() {
                return Err(TransportError::Setup(format!("{} holds no PEM certificate", path.display())));
            }
            tls = tls.root_certs(RootCerts::new_with_certs(&certs));
        }
        if !config.security.verify_ssl {
            tls = tls.disable_verification(true);
        }
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // Per-phase limits, none on name resolution: a resolve timeout makes ureq run
            // every lookup (even of an IP literal) on a thread of its own, per request.
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_send_request(Some(Duration::from_secs(10)))
            .timeout_send_body(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(30)))
            .timeout_recv_body(Some(Duration::from_secs(30)))
            .tls_config(tls.build())
            .proxy(ureq::Proxy::try_from_env())
            .user_agent(concat!("serverpulse-agent/", env!("CARGO_PKG_VERSION")))
            .build();
        let connector = ureq::unversioned::transport::DefaultConnector::new().chain(CoalescingConnector);
        let agent = ureq::Agent::with_parts(agent, connector, ureq::unversioned::resolver::DefaultResolver::default());
        Ok(Self { agent, base: config.server.endpoint.base().to_owned(), gzip: std::sync::Arc::default() })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    fn agent_url(&self, credentials: &Credentials, rest: &str) -> String {
        self.url(&format!("/agents/{}{rest}", percent_encode(&credentials.agent_id)))
    }

    fn send<T: DeserializeOwned>(
        &self,
        method: &str,
        url: &str,
        bearer: Option<&str>,
        extra: &[(&str, &str)],
        body: Option<(Vec<u8>, bool)>,
    ) -> Result<T, TransportError> {
        let mut request = ureq::http::Request::builder().method(method).uri(url);
        if let Some(token) = bearer {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        let body_bytes = match body {
            Some((bytes, gzipped)) => {
                request = request.header("Content-Type", "application/json");
                if gzipped {
                    request = request.header("Content-Encoding", "gzip");
                }
                bytes
            }
            None => Vec::new(),
        };
        let request = request.body(body_bytes).map_err(|e| TransportError::Setup(e.to_string()))?;
        let mut response = self.agent.run(request).map_err(|e| TransportError::Unavailable(e.to_string()))?;
        let status = response.status().as_u16();
        let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(retry_after_ms);
        let text = response.body_mut().read_to_string().unwrap_or_default();
        match status {
            429 | 503 if retry_after.is_some() => Err(TransportError::Busy {
                retry_after_ms: retry_after.unwrap_or_default(),
                message: error_text(&text),
            }),
            200..=299 => serde_json::from_str(&text)
                .map_err(|e| TransportError::Refused { status, message: format!("unexpected answer: {e}") }),
            401 => Err(TransportError::Unauthorized),
            408 | 429 | 500..=599 => Err(TransportError::Unavailable(format!("HTTP {status}: {}", error_text(&text)))),
            _ => Err(TransportError::Refused { status, message: error_text(&text) }),
        }
    }

    pub fn health(&self) -> Result<serverpulse_proto::responses::Health, TransportError> {
        self.send("GET", &self.url("/health"), None, &[], None)
    }

    /// Registers; `bearer` for pre-provisioned credentials, `enrollment` for a token.
    pub fn register(
        &self,
        body: &Value,
        bearer: Option<&str>,
        enrollment: Option<&str>,
    ) -> Result<RegisterResponse, TransportError> {
        let headers: Vec<(&str, &str)> = enrollment.map(|t| ("X-Enrollment-Token", t)).into_iter().collect();
        self.send("POST", &self.url("/agents/register"), bearer, &headers, Some((body.to_string().into_bytes(), false)))
    }

    /// Sends reports (each a JSON document's text) as one gzip-compressed
    /// `{"reports":[…]}` batch.
    pub fn send_reports(&self, credentials: &Credentials, reports: &[&str]) -> Result<MetricsAccepted, TransportError> {
        let mut body = String::with_capacity(reports.iter().map(|r| r.len() + 1).sum::<usize>() + 16);
        body.push_str("{\"reports\":[");
        for (i, report) in reports.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(report);
        }
        body.push_str("]}");
        self.send(
            "POST",
            &self.agent_url(credentials, "/metrics"),
            Some(&credentials.token),
            &[],
            Some((self.gzip.lock().unwrap_or_else(std::sync::PoisonError::into_inner).encode(body.as_bytes()), true)),
        )
    }

    pub fn heartbeat(&self, credentials: &Credentials, body: &Value) -> Result<HeartbeatAccepted, TransportError> {
        self.send(
            "POST",
            &self.agent_url(credentials, "/heartbeat"),
            Some(&credentials.token),
            &[],
            Some((body.to_string().into_bytes(), false)),
        )
    }

    pub fn alerts(&self, credentials: &Credentials, body: &Value) -> Result<AlertsAccepted, TransportError> {
        self.send(
            "POST",
            &self.agent_url(credentials, "/alerts"),
            Some(&credentials.token),
            &[],
            Some((body.to_string().into_bytes(), false)),
        )
    }

    pub fn maintenance(&self, credentials: &Credentials, body: &Value) -> Result<MaintenanceOpened, TransportError> {
        self.send(
            "POST",
            &self.agent_url(credentials, "/maintenance"),
            Some(&credentials.token),
            &[],
            Some((body.to_string().into_bytes(), false)),
        )
    }

    pub fn commands(&self, credentials: &Credentials) -> Result<PendingCommands, TransportError> {
        self.send("GET", &self.agent_url(credentials, "/commands"), Some(&credentials.token), &[], None)
    }

    pub fn ack(
        &self,
        credentials: &Credentials,
        command_id: &str,
        body: &Value,
    ) -> Result<AckAccepted, TransportError> {
        let rest = format!("/commands/{}/ack", percent_encode(command_id));
        self.send(
            "POST",
            &self.agent_url(credentials, &rest),
            Some(&credentials.token),
            &[],
            Some((body.to_string().into_bytes(), false)),
        )
    }
}

/// A gzip encoder kept between reports: a fresh deflate state allocates and zeroes
/// about a hundred kilobytes of tables (fresh pages each time, as the allocation is
/// above malloc's mmap threshold), which cost more than compressing a report.
#[derive(Debug)]
pub struct Gzip {
    deflate: flate2::Compress,
}

impl Default for Gzip {
    fn default() -> Self {
        Self { deflate: flate2::Compress::new(flate2::Compression::fast(), false) }
    }
}

impl Gzip {
    /// `bytes` as one gzip member (RFC 1952): header, raw deflate, CRC-32 and length.
    pub fn encode(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.deflate.reset();
        let mut out = Vec::with_capacity(bytes.len() / 2 + 64);
        // Magic, deflate, no flags, no time, fastest, Unix.
        out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 3]);
        let mut input = bytes;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(256));
            }
            let before = self.deflate.total_in();
            let status = self.deflate.compress_vec(input, &mut out, flate2::FlushCompress::Finish);
            let consumed = usize::try_from(self.deflate.total_in() - before).unwrap_or(input.len());
            input = &input[consumed.min(input.len())..];
            match status {
                Ok(flate2::Status::StreamEnd) => break,
                Ok(_) => {}
                // Deflating into a growing Vec does not fail; keep the body valid if it ever did.
                Err(_) => return gzip_fresh(bytes),
            }
        }
        let mut crc = flate2::Crc::new();
        crc.update(bytes);
        out.extend_from_slice(&crc.sum().to_le_bytes());
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out
    }
}

fn gzip_fresh(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}

/// The hub's `error` member, or the raw text.
fn error_text(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| body.chars().take(200).collect())
}

fn percent_encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `Retry-After` in delta-seconds (the form the hub sends), capped at an hour.
fn retry_after_ms(value: &str) -> Option<i64> {
    value.trim().parse::<u32>().ok().map(|s| i64::from(s.min(3_600)) * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// The kept encoder makes standard gzip, again and again.
    #[test]
    fn gzip_members_decode_and_the_encoder_is_reusable() {
        let mut gzip = Gzip::default();
        let long = "{\"cpu\": 12.5}".repeat(5_000);
        for text in ["", "a report", long.as_str(), "a report"] {
            let mut decoded = String::new();
            flate2::read::GzDecoder::new(&gzip.encode(text.as_bytes())[..]).read_to_string(&mut decoded).unwrap();
            assert_eq!(decoded, text);
        }
    }

    #[test]
    fn retry_after_is_read_in_seconds_and_capped() {
        assert_eq!(retry_after_ms("5"), Some(5_000));
        assert_eq!(retry_after_ms(" 120 "), Some(120_000));
        assert_eq!(retry_after_ms("86400"), Some(3_600_000));
        assert_eq!(retry_after_ms("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }
}
