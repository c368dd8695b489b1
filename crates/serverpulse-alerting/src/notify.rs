//! Who hears about an alert: notification channels (where, how), their routing (which
//! severities, which servers or tags), and silences (when not to notify: one-off or
//! weekly maintenance windows, by server, tag, rule or all). Pure data and matching;
//! delivery is the hub's.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serverpulse_proto::ValidationError;
use serverpulse_proto::alert::Severity;
use serverpulse_proto::fields::{Errors, Object, kind};

use crate::rule::servers_and_tags;

/// The kinds of channel and what each needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// SMTP: `host`, `port`, `security` (`starttls`, `tls`, `none`), `username`?, `password`?, `from`, `to` (list).
    Email,
    /// POST of the alert as JSON to `url`; with `secret`, an `X-ServerPulse-Signature: sha256=<hex HMAC>` header.
    Webhook,
    /// A Slack incoming webhook `url`.
    Slack,
    /// A Discord webhook `url`.
    Discord,
    /// A Telegram bot: `bot_token`, `chat_id`, optional `api_url` (default https://api.telegram.org).
    Telegram,
    /// ntfy: `url` of the topic (e.g. https://ntfy.sh/my-topic), optional `token`.
    Ntfy,
}

impl ChannelKind {
    pub fn parse(word: &str) -> Option<Self> {
        Some(match word {
            "email" => Self::Email,
            "webhook" => Self::Webhook,
            "slack" => Self::Slack,
            "discord" => Self::Discord,
            "telegram" => Self::Telegram,
            "ntfy" => Self::Ntfy,
            _ => return None,
        })
    }

    /// (required, optional) settings of this kind; the secret ones are never shown back.
    fn settings(self) -> (&'static [&'static str], &'static [&'static str]) {
        match self {
            Self::Email => (&["host", "from", "to"], &["port", "security", "username", "password"]),
            Self::Webhook => (&["url"], &["secret"]),
            Self::Slack | Self::Discord => (&["url"], &[]),
            Self::Telegram => (&["bot_token", "chat_id"], &["api_url"]),
            Self::Ntfy => (&["url"], &["token"]),
        }
    }
}

/// Settings that are secrets: kept to be used, never returned by the API.
pub const SECRET_SETTINGS: &[&str] = &["password", "secret", "bot_token", "token"];

/// Which alerts a channel receives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Route {
    /// The least severe alert sent (default `warning`).
    pub min_severity: Severity,
    /// Only these servers / servers with these tags; both empty: every server.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

impl Route {
    pub fn matches(&self, severity: Severity, server: i64, tags: &[String]) -> bool {
        let everywhere = self.servers.is_empty() && self.tags.is_empty();
        severity >= self.min_severity
            && (everywhere || self.servers.contains(&server) || self.tags.iter().any(|t| tags.contains(t)))
    }
}

/// A channel as an administrator defines it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Channel {
    pub name: String,
    pub kind: ChannelKind,
    /// Kind-specific settings (see [`ChannelKind`]).
    pub settings: serde_json::Map<String, Value>,
    pub route: Route,
    /// Seconds between reminders while an alert keeps firing unacknowledged (0: never).
    pub repeat_every: u32,
    pub enabled: bool,
}

impl Channel {
    /// The settings with secrets replaced by `"********"`, for showing.
    pub fn redacted_settings(&self) -> serde_json::Map<String, Value> {
        self.settings
            .iter()
            .map(|(k, v)| {
                let shown = if SECRET_SETTINGS.contains(&k.as_str()) { Value::from("********") } else { v.clone() };
                (k.clone(), shown)
            })
            .collect()
    }
}

const CHANNEL_FIELDS: &[&str] = &["name", "kind", "settings", "route", "repeat_every", "enabled"];

/// Checks a channel sent by an administrator, field by field.
pub fn decode_channel(value: &Value) -> Result<Channel, ValidationError> {
    let mut errors = Errors::default();
    let Some(doc) = Object::root(value, &mut errors) else { return Err(errors.into_error()) };
    unknown(&doc, CHANNEL_FIELDS, &mut errors);
    let name = doc.required_string("name", 100, &mut errors);
    let kind = doc.required_string("kind", 20, &mut errors).and_then(|k| {
        let parsed = ChannelKind::parse(&k);
        if parsed.is_none() {
            errors.add("kind", "must be email, webhook, slack, discord, telegram or ntfy");
        }
        parsed
    });
    let settings = match (doc.object("settings", &mut errors), kind) {
        (Some(settings), Some(kind)) => check_settings(&settings, kind, &mut errors),
        (None, Some(_)) => {
            if !doc.has("settings") {
                errors.add("settings", "is required");
            }
            serde_json::Map::new()
        }
        _ => serde_json::Map::new(),
    };
    let route = match doc.object("route", &mut errors) {
        None => Route { min_severity: Severity::Warning, servers: Vec::new(), tags: Vec::new() },
        Some(route) => decode_route(&route, &mut errors),
    };
    let repeat_every = match doc.number("repeat_every", &mut errors) {
        None => 0,
        Some(n) if n.fract() == 0.0 && (0.0..=7.0 * 86_400.0).contains(&n) && (n == 0.0 || n >= 60.0) => n as u32,
        Some(_) => {
            errors.add("repeat_every", "must be 0 (never) or whole seconds from 60 to 7 days");
            0
        }
    };
    let enabled = boolean(&doc, "enabled", &mut errors);
    match (name, kind) {
        (Some(name), Some(kind)) if errors.is_empty() => {
            Ok(Channel { name, kind, settings, route, repeat_every, enabled })
        }
        _ => Err(errors.into_error()),
    }
}

fn boolean(doc: &Object<'_>, key: &str, errors: &mut Errors) -> bool {
    match doc.get(key) {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            errors.add(doc.child(key), format!("must be true or false, got {}", kind(other)));
            true
        }
    }
}

fn unknown(object: &Object<'_>, known: &[&str], errors: &mut Errors) {
    for key in object.map().keys().filter(|k| !known.contains(&k.as_str())) {
        errors.add(object.child(key), format!("is not a known field ({})", known.join(", ")));
    }
}

fn check_settings(settings: &Object<'_>, kind: ChannelKind, errors: &mut Errors) -> serde_json::Map<String, Value> {
    let (required, optional) = kind.settings();
    let known: Vec<&str> = required.iter().chain(optional).copied().collect();
    unknown(settings, &known, errors);
    for key in required {
        if !settings.has(key) {
            errors.add(settings.child(key), "is required");
        }
    }
    for (key, value) in settings.map() {
        let path = settings.child(key);
        match (key.as_str(), value) {
            ("to", Value::Array(list)) => {
                if list.is_empty() {
                    errors.add(path.clone(), "must name at least one address");
                }
                for (i, address) in list.iter().enumerate() {
                    if !address.as_str().is_some_and(looks_like_address) {
                        errors.add(format!("{path}[{i}]"), "must be an e-mail address");
                    }
                }
            }
            ("to", other) => errors.add(path, format!("must be an array of addresses, got {}", kind_of(other))),
            ("from", v) if !v.as_str().is_some_and(looks_like_address) => errors.add(path, "must be an e-mail address"),
            ("port", v) if !v.as_u64().is_some_and(|p| (1..=65_535).contains(&p)) => {
                errors.add(path, "must be a port number")
            }
            ("security", v) if !matches!(v.as_str(), Some("starttls" | "tls" | "none")) => {
                errors.add(path, "must be starttls, tls or none")
            }
            ("url" | "api_url", v)
                if !v.as_str().is_some_and(|u| u.starts_with("https://") || u.starts_with("http://")) =>
            {
                errors.add(path, "must be an http:// or https:// URL")
            }
            ("chat_id", v) if !(v.is_i64() || v.as_str().is_some_and(|s| !s.is_empty())) => {
                errors.add(path, "must be a chat id (number or @channel)")
            }
            ("port" | "security" | "chat_id" | "from", _) => {}
            (_, v) if !v.as_str().is_some_and(|s| !s.is_empty() && s.len() <= 2048) => {
                errors.add(path, "must be a non-empty string")
            }
            _ => {}
        }
    }
    settings.map().clone()
}

fn kind_of(value: &Value) -> &'static str {
    kind(value)
}

fn looks_like_address(text: &str) -> bool {
    let Some((local, domain)) = text.rsplit_once('@') else { return false };
    !local.is_empty() && domain.contains('.') && !text.chars().any(|c| c.is_whitespace() || c == '<' || c == '>')
}

fn decode_route(route: &Object<'_>, errors: &mut Errors) -> Route {
    unknown(route, &["min_severity", "servers", "tags"], errors);
    let min_severity = match route.get("min_severity") {
        None => Severity::Warning,
        Some(v) => v.as_str().and_then(Severity::from_wire).unwrap_or_else(|| {
            errors.add(route.child("min_severity"), "must be info, warning, error or critical");
            Severity::Warning
        }),
    };
    let (servers, tags) = servers_and_tags(route, errors);
    Route { min_severity, servers, tags }
}

/// When a silence applies: once (from, to), or every week on some days for some minutes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Schedule {
    /// From `starts_at` to `ends_at` (Unix ms).
    Once { starts_at: i64, ends_at: i64 },
    /// Every week on `days` (0 = Monday … 6 = Sunday), from `start_minute` after
    /// midnight UTC, for `duration_minutes` (may run into the next day).
    Weekly { days: Vec<u8>, start_minute: u32, duration_minutes: u32 },
}

impl Schedule {
    pub fn active(&self, now: i64) -> bool {
        match self {
            Self::Once { starts_at, ends_at } => (*starts_at..*ends_at).contains(&now),
            Self::Weekly { days, start_minute, duration_minutes } => {
                const DAY_MS: i64 = 86_400_000;
                const WEEK_MS: i64 = 7 * DAY_MS;
                // 1970-01-01 was a Thursday (weekday 3 counting Monday as 0).
                let since_monday = (now + 3 * DAY_MS).rem_euclid(WEEK_MS);
                let length = i64::from(*duration_minutes) * 60_000;
                days.iter().any(|day| {
                    let start = i64::from(*day) * DAY_MS + i64::from(*start_minute) * 60_000;
                    let offset = (since_monday - start).rem_euclid(WEEK_MS);
                    offset < length
                })
            }
        }
    }
}

/// A silence: matching alerts are recorded as usual but nobody is notified.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Silence {
    pub schedule: Schedule,
    /// What it covers; all empty: everything.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<i64>,
    #[serde(default)]
    pub comment: String,
}

impl Silence {
    pub fn covers(&self, now: i64, server: i64, tags: &[String], rule: Option<i64>) -> bool {
        let targets_something = !self.servers.is_empty() || !self.tags.is_empty();
        let server_matches =
            !targets_something || self.servers.contains(&server) || self.tags.iter().any(|t| tags.contains(t));
        let rule_matches = self.rules.is_empty() || rule.is_some_and(|r| self.rules.contains(&r));
        server_matches && rule_matches && self.schedule.active(now)
    }
}

/// Checks a silence sent by a person (or an agent opening its own maintenance window).
pub fn decode_silence(value: &Value, now: i64) -> Result<Silence, ValidationError> {
    let mut errors = Errors::default();
    let Some(doc) = Object::root(value, &mut errors) else { return Err(errors.into_error()) };
    unknown(
        &doc,
        &["starts_at", "ends_at", "duration_minutes", "weekly", "servers", "tags", "rules", "comment"],
        &mut errors,
    );
    let schedule = if let Some(weekly) = doc.object("weekly", &mut errors) {
        unknown(&weekly, &["days", "start", "duration_minutes"], &mut errors);
        let days: Vec<u8> = match weekly.get("days") {
            Some(Value::Array(days)) if !days.is_empty() => days
                .iter()
                .enumerate()
                .filter_map(|(i, d)| {
                    let day = d.as_str().and_then(weekday);
                    if day.is_none() {
                        errors.add(format!("weekly.days[{i}]"), "must be mon, tue, wed, thu, fri, sat or sun");
                    }
                    day
                })
                .collect(),
            _ => {
                errors.add("weekly.days", "is required: a list of days (mon … sun)");
                Vec::new()
            }
        };
        let start_minute = match weekly.get("start").and_then(Value::as_str).and_then(clock_minute) {
            Some(m) => m,
            None => {
                errors.add("weekly.start", "is required: HH:MM (UTC)");
                0
            }
        };
        let duration_minutes = match weekly.number("duration_minutes", &mut errors) {
            Some(n) if n.fract() == 0.0 && (1.0..=10_080.0).contains(&n) => n as u32,
            _ => {
                errors.add("weekly.duration_minutes", "is required: whole minutes from 1 to 10080");
                0
            }
        };
        Schedule::Weekly { days, start_minute, duration_minutes }
    } else {
        let starts_at = doc.number("starts_at", &mut errors).map_or(now, |n| n as i64);
        let ends_at = match (doc.number("ends_at", &mut errors), doc.number("duration_minutes", &mut errors)) {
            (Some(end), None) => end as i64,
            (None, Some(minutes)) if minutes > 0.0 && minutes <= 525_600.0 => starts_at + (minutes * 60_000.0) as i64,
            (None, Some(_)) => {
                errors.add("duration_minutes", "must be between 1 minute and a year");
                starts_at
            }
            (Some(_), Some(_)) => {
                errors.add("ends_at", "give ends_at or duration_minutes, not both");
                starts_at
            }
            (None, None) => {
                errors.add("ends_at", "is required (or duration_minutes, or weekly)");
                starts_at
            }
        };
        if ends_at <= starts_at && errors.is_empty() {
            errors.add("ends_at", "must be after starts_at");
        }
        Schedule::Once { starts_at, ends_at }
    };
    let (servers, tags) = servers_and_tags(&doc, &mut errors);
    let rules = match doc.get("rules") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(i, v)| {
                let id = v.as_i64().filter(|id| *id > 0);
                if id.is_none() {
                    errors.add(format!("rules[{i}]"), "must be a rule id");
                }
                id
            })
            .collect(),
        Some(other) => {
            errors.add("rules", format!("must be an array of rule ids, got {}", kind(other)));
            Vec::new()
        }
    };
    let comment = doc.string("comment", 500, &mut errors).unwrap_or_default();
    errors.finish(Silence { schedule, servers, tags, rules, comment })
}

fn weekday(word: &str) -> Option<u8> {
    ["mon", "tue", "wed", "thu", "fri", "sat", "sun"].iter().position(|d| *d == word).and_then(|p| u8::try_from(p).ok())
}

fn clock_minute(text: &str) -> Option<u32> {
    let (h, m) = text.split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// 2025-06-23T00:00:00Z, a Monday.
    const MONDAY: i64 = 1_750_636_800_000;
    const HOUR: i64 = 3_600_000;

    #[test]
    fn routes_match_severity_and_servers() {
        let route = Route { min_severity: Severity::Error, servers: vec![], tags: vec!["db".into()] };
        let db = vec!["db".to_owned()];
        assert!(route.matches(Severity::Critical, 1, &db));
        assert!(!route.matches(Severity::Warning, 1, &db), "below the minimum severity");
        assert!(!route.matches(Severity::Critical, 1, &[]), "not a db server");
        let everywhere = Route { min_severity: Severity::Info, servers: vec![], tags: vec![] };
        assert!(everywhere.matches(Severity::Info, 9, &[]));
    }

    #[test]
    fn weekly_windows_follow_the_calendar() {
        // Sundays 23:00 for 2 hours, into Monday.
        let window = Schedule::Weekly { days: vec![6], start_minute: 23 * 60, duration_minutes: 120 };
        assert!(window.active(MONDAY - HOUR / 2), "Sunday 23:30");
        assert!(window.active(MONDAY + HOUR / 2), "Monday 00:30");
        assert!(!window.active(MONDAY + HOUR + 1), "Monday 01:00 is past it");
        assert!(window.active(MONDAY + 7 * 24 * HOUR - HOUR / 2), "the next Sunday too");
        assert!(!window.active(MONDAY + 3 * 24 * HOUR), "Thursday");
    }

    #[test]
    fn silences_cover_what_they_name_while_active() {
        let silence =
            decode_silence(&json!({"duration_minutes": 30, "servers": [4], "comment": "kernel upgrade"}), MONDAY)
                .unwrap();
        assert!(silence.covers(MONDAY + 60_000, 4, &[], Some(1)));
        assert!(!silence.covers(MONDAY + 60_000, 5, &[], Some(1)), "another server");
        assert!(!silence.covers(MONDAY + 31 * 60_000, 4, &[], Some(1)), "over");
        let rule_only = decode_silence(&json!({"ends_at": MONDAY + HOUR, "rules": [2]}), MONDAY).unwrap();
        assert!(rule_only.covers(MONDAY, 9, &[], Some(2)) && !rule_only.covers(MONDAY, 9, &[], None));
        let weekly =
            decode_silence(&json!({"weekly": {"days": ["sun"], "start": "23:00", "duration_minutes": 120}}), 0);
        assert!(weekly.unwrap().covers(MONDAY + HOUR / 2, 1, &[], None));
        let bad = decode_silence(&json!({"weekly": {"days": ["someday"], "start": "25:00"}, "servers": ["x"]}), 0);
        let paths: Vec<String> = bad.unwrap_err().details().keys().cloned().collect();
        assert_eq!(paths, ["servers[0]", "weekly.days[0]", "weekly.duration_minutes", "weekly.start"]);
        assert!(decode_silence(&json!({}), 0).unwrap_err().details().contains_key("ends_at"));
    }

    #[test]
    fn channels_are_checked_and_secrets_are_not_shown() {
        let channel = decode_channel(&json!({"name": "ops hook", "kind": "webhook",
            "settings": {"url": "https://hooks.example.test/x", "secret": "s3cret"},
            "route": {"min_severity": "critical", "tags": ["prod"]}, "repeat_every": 3600}))
        .unwrap();
        assert_eq!(channel.route.min_severity, Severity::Critical);
        assert_eq!(channel.redacted_settings()["secret"], "********");
        assert_eq!(channel.redacted_settings()["url"], "https://hooks.example.test/x");
        let bad = decode_channel(&json!({"name": "mail", "kind": "email",
            "settings": {"host": "smtp.example.test", "from": "nope", "to": ["ops@example.test", "x"], "port": 0,
                         "colour": 1},
            "repeat_every": 5}))
        .unwrap_err();
        let paths: Vec<String> = bad.details().keys().cloned().collect();
        assert_eq!(paths, ["repeat_every", "settings.colour", "settings.from", "settings.port", "settings.to[1]"]);
        assert!(decode_channel(&json!({"name": "x", "kind": "pager"})).unwrap_err().details().contains_key("kind"));
    }
}
