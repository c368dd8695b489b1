//! Sending one notification over one channel: the message (what, where, how bad, since
//! when, value against threshold, a link to the server) and the wire format of each
//! channel kind. Every send has a deadline; an error says what went wrong in words
//! fit for the delivery log, and never carries a secret.

use std::time::Duration;

use hmac::{Hmac, Mac};
use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message as Mail, Tokio1Executor};
use serde_json::{Map, Value, json};
use serverpulse_alerting::notify::{Channel, ChannelKind};
use serverpulse_proto::alert::Severity;
use serverpulse_proto::time::format_timestamp;
use serverpulse_store::{AlertRecord, Server};
use sha2::Sha256;

/// Longest a single delivery attempt may take.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(15);

/// What a notification says, rendered once for every channel kind.
#[derive(Debug, Clone)]
pub struct Notice {
    /// `firing`, `escalated`, `resolved`, `repeat` or `test`.
    pub event: String,
    pub title: String,
    pub text: String,
    pub severity: Severity,
    /// The document webhooks receive.
    pub document: Value,
}

impl Notice {
    /// The notice for `alert` on `server` (`None` for a channel test).
    pub fn new(event: &str, alert: Option<&AlertRecord>, server: Option<&Server>, public_url: &str) -> Self {
        let Some(alert) = alert else {
            let text = "This is a test notification from ServerPulse: this channel works.".to_owned();
            return Self {
                event: event.to_owned(),
                title: "[ServerPulse] Test notification".to_owned(),
                text: text.clone(),
                severity: Severity::Info,
                document: json!({"event": event, "text": text}),
            };
        };
        let server_name = server.map_or_else(|| format!("server {}", alert.server_id), |s| s.name.clone());
        let link = format!("{}/servers/{}", public_url.trim_end_matches('/'), alert.server_id);
        let state = match event {
            "resolved" => "RESOLVED".to_owned(),
            "escalated" => format!("ESCALATED to {}", alert.severity.as_str().to_uppercase()),
            "repeat" => format!("STILL FIRING ({})", alert.severity.as_str()),
            _ => alert.severity.as_str().to_uppercase(),
        };
        let title = format!("[ServerPulse] {state}: {} on {server_name}", alert.kind);
        let mut lines = vec![format!("{state}: {}", alert.message), format!("Server: {server_name}")];
        if let Some(value) = alert.value {
            let against = alert.threshold.map(|t| format!(" (threshold {t})")).unwrap_or_default();
            lines.push(format!("Value: {value}{against}"));
        }
        lines.push(format!("Since: {}", format_timestamp(alert.started_at)));
        if let Some(resolved) = alert.resolved_at {
            lines.push(format!("Resolved: {}", format_timestamp(resolved)));
        }
        lines.push(format!("Details: {link}"));
        let text = lines.join("\n");
        let document = json!({"event": event, "alert": alert, "server": {"id": alert.server_id, "name": server_name},
                              "link": link, "text": text});
        Self { event: event.to_owned(), title, text, severity: alert.severity, document }
    }
}

fn setting<'a>(settings: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    settings.get(key).and_then(Value::as_str)
}

fn required<'a>(settings: &'a Map<String, Value>, key: &str) -> Result<&'a str, String> {
    setting(settings, key).ok_or_else(|| format!("the channel has no {key}"))
}

/// `sha256=<hex>` of the HMAC-SHA256 of `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    format!("sha256={}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// Sends `notice` over `channel`.
pub async fn send(http: &reqwest::Client, channel: &Channel, notice: &Notice) -> Result<(), String> {
    let settings = &channel.settings;
    match channel.kind {
        ChannelKind::Email => send_mail(settings, notice).await,
        ChannelKind::Webhook => {
            let body = serde_json::to_vec(&notice.document).map_err(|e| e.to_string())?;
            let mut request = http
                .post(required(settings, "url")?)
                .header("content-type", "application/json")
                .header("x-serverpulse-event", &notice.event);
            if let Some(secret) = setting(settings, "secret") {
                request = request.header("x-serverpulse-signature", signature(secret, &body));
            }
            answer(request.body(body).send().await).await
        }
        ChannelKind::Slack => post_json(http, required(settings, "url")?, json!({"text": notice.text})).await,
        ChannelKind::Discord => {
            // Discord refuses messages over 2000 characters.
            let content: String = notice.text.chars().take(1_990).collect();
            post_json(http, required(settings, "url")?, json!({"content": content})).await
        }
        ChannelKind::Telegram => {
            let api = setting(settings, "api_url").unwrap_or("https://api.telegram.org").trim_end_matches('/');
            let url = format!("{api}/bot{}/sendMessage", required(settings, "bot_token")?);
            let chat = settings.get("chat_id").cloned().unwrap_or(Value::Null);
            // The URL holds the token: never let it reach an error message.
            post_json(http, &url, json!({"chat_id": chat, "text": notice.text}))
                .await
                .map_err(|e| e.replace(required(settings, "bot_token").unwrap_or("\u{0}"), "<token>"))
        }
        ChannelKind::Ntfy => {
            let priority = match notice.severity {
                Severity::Critical => "5",
                Severity::Error => "4",
                Severity::Warning => "3",
                Severity::Info => "2",
            };
            let mut request = http
                .post(required(settings, "url")?)
                .header("title", notice.title.as_str())
                .header("priority", priority)
                .header("tags", notice.event.as_str());
            if let Some(token) = setting(settings, "token") {
                request = request.bearer_auth(token);
            }
            answer(request.body(notice.text.clone()).send().await).await
        }
    }
}

async fn post_json(http: &reqwest::Client, url: &str, body: Value) -> Result<(), String> {
    answer(http.post(url).json(&body).send().await).await
}

async fn answer(sent: Result<reqwest::Response, reqwest::Error>) -> Result<(), String> {
    let response = sent.map_err(|e| format!("cannot deliver: {}", e.without_url()))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    let excerpt: String = body.chars().take(200).collect();
    Err(format!("HTTP {}: {}", status.as_u16(), excerpt.trim()))
}

async fn send_mail(settings: &Map<String, Value>, notice: &Notice) -> Result<(), String> {
    let host = required(settings, "host")?;
    let security = setting(settings, "security").unwrap_or("starttls");
    let port = settings.get("port").and_then(Value::as_u64).and_then(|p| u16::try_from(p).ok());
    let mut builder = match security {
        "tls" => AsyncSmtpTransport::<Tokio1Executor>::relay(host).map_err(|e| e.to_string())?,
        "none" => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
        _ => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host).map_err(|e| e.to_string())?,
    };
    if let Some(port) = port {
        builder = builder.port(port);
    }
    if let (Some(user), Some(password)) = (setting(settings, "username"), setting(settings, "password")) {
        builder = builder.credentials(Credentials::new(user.to_owned(), password.to_owned()));
    }
    let transport = builder.timeout(Some(SEND_TIMEOUT)).build();
    let from: Mailbox = required(settings, "from")?.parse().map_err(|e| format!("from: {e}"))?;
    let mut mail = Mail::builder().from(from).subject(notice.title.clone());
    for to in settings.get("to").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
        mail = mail.to(to.parse().map_err(|e| format!("to {to}: {e}"))?);
    }
    let mail = mail.header(ContentType::TEXT_PLAIN).body(notice.text.clone()).map_err(|e| e.to_string())?;
    transport.send(mail).await.map(drop).map_err(|e| format!("SMTP: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hmac_sha256_in_hex() {
        // RFC 4231 test case 2.
        let mac = signature("Jefe", b"what do ya want for nothing?");
        assert_eq!(mac, "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }
}
