//! The settings pages: alert rules (viewers read, admins change), notification channels
//! with "send test" (admin), silences and maintenance windows (operators set), users and
//! roles, API tokens (admin), and one server's own settings: name, address, tags, its
//! agent's thresholds and watched units, a fresh install command, removal (admin).
//!
//! Like every page they only read; their forms call the REST API (`app.js`).

use askama::Template;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::Value;
use serverpulse_domain::Role;
use serverpulse_store::ServerId;

use crate::admin::not_found_as;
use crate::app::AppState;
use crate::body::ApiPath;
use crate::error::ApiError;
use crate::web::format;
use crate::web::{Chrome, PageError, Signed, render};

/// A JSON value as a form field shows it: text as is, numbers plainly, lists joined by
/// commas, nothing for null.
fn field(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(field).collect::<Vec<_>>().join(", "),
        Value::Number(n) => match n.as_f64() {
            Some(x) if x.fract() == 0.0 && x.abs() < 1e15 => format!("{}", x as i64),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// The settings tabs a user may open.
#[derive(Debug)]
pub struct Tabs {
    pub current: &'static str,
    pub admin: bool,
}

fn require(signed: &Signed, role: Role) -> Result<(), PageError> {
    if signed.allows(role) { Ok(()) } else { Err(PageError::forbidden(role)) }
}

// ---- rules ------------------------------------------------------------------------------

#[derive(Debug)]
pub struct RuleView {
    pub id: i64,
    pub builtin: bool,
    pub enabled: bool,
    pub name: String,
    pub metric: String,
    pub op: String,
    pub warning: String,
    pub critical: String,
    pub for_seconds: String,
    pub recovery: String,
    pub keep_firing_for: String,
    pub servers: String,
    pub tags: String,
}

impl RuleView {
    pub fn scope(&self) -> String {
        match (self.servers.is_empty(), self.tags.is_empty()) {
            (true, true) => "every server".to_owned(),
            (false, true) => format!("servers {}", self.servers),
            (true, false) => format!("tags {}", self.tags),
            (false, false) => format!("servers {}; tags {}", self.servers, self.tags),
        }
    }
}

#[derive(Debug, Template)]
#[template(path = "settings_rules.html")]
pub struct RulesPage {
    pub chrome: Chrome,
    pub tabs: Tabs,
    pub rules: Vec<RuleView>,
    pub blank: RuleView,
}

/// `GET /settings/rules`
pub async fn rules(State(state): State<AppState>, signed: Signed) -> Result<Response, PageError> {
    let stored = state.store.list_rules().await.map_err(ApiError::from)?;
    let rules = stored
        .into_iter()
        .map(|r| {
            let v = serde_json::to_value(&r.rule).unwrap_or(Value::Null);
            RuleView {
                id: r.id,
                builtin: r.builtin,
                enabled: v["enabled"].as_bool().unwrap_or(true),
                name: field(&v["name"]),
                metric: field(&v["metric"]),
                op: field(&v["op"]),
                warning: field(&v["warning"]),
                critical: field(&v["critical"]),
                for_seconds: field(&v["for"]),
                recovery: field(&v["recovery"]),
                keep_firing_for: field(&v["keep_firing_for"]),
                servers: field(&v["scope"]["servers"]),
                tags: field(&v["scope"]["tags"]),
            }
        })
        .collect();
    let blank = RuleView {
        id: 0,
        builtin: false,
        enabled: true,
        name: String::new(),
        metric: String::new(),
        op: ">".to_owned(),
        warning: String::new(),
        critical: String::new(),
        for_seconds: "300".to_owned(),
        recovery: String::new(),
        keep_firing_for: "0".to_owned(),
        servers: String::new(),
        tags: String::new(),
    };
    let chrome = Chrome::load(&state, &signed, "settings", "Alert rules").await?;
    let tabs = Tabs { current: "rules", admin: signed.allows(Role::Admin) };
    Ok(render(&RulesPage { chrome, tabs, rules, blank })?.into_response())
}

// ---- channels ---------------------------------------------------------------------------

#[derive(Debug)]
pub struct ChannelView {
    pub id: i64,
    pub name: String,
    pub kind: String,
    /// The settings as JSON, secrets shown as `********` (sent back, they are kept).
    pub settings: String,
    pub min_severity: String,
    pub servers: String,
    pub tags: String,
    pub repeat_every: String,
    pub enabled: bool,
}

#[derive(Debug, Template)]
#[template(path = "settings_channels.html")]
pub struct ChannelsPage {
    pub chrome: Chrome,
    pub tabs: Tabs,
    pub channels: Vec<ChannelView>,
}

/// `GET /settings/channels` (admin)
pub async fn channels(State(state): State<AppState>, signed: Signed) -> Result<Response, PageError> {
    require(&signed, Role::Admin)?;
    let stored = state.store.list_channels().await.map_err(ApiError::from)?;
    let channels = stored
        .into_iter()
        .map(|c| {
            let settings = Value::Object(c.channel.redacted_settings());
            let v = serde_json::to_value(&c.channel).unwrap_or(Value::Null);
            ChannelView {
                id: c.id,
                name: field(&v["name"]),
                kind: field(&v["kind"]),
                settings: serde_json::to_string_pretty(&settings).unwrap_or_default(),
                min_severity: field(&v["route"]["min_severity"]),
                servers: field(&v["route"]["servers"]),
                tags: field(&v["route"]["tags"]),
                repeat_every: field(&v["repeat_every"]),
                enabled: v["enabled"].as_bool().unwrap_or(true),
            }
        })
        .collect();
    let chrome = Chrome::load(&state, &signed, "settings", "Notification channels").await?;
    Ok(render(&ChannelsPage { chrome, tabs: Tabs { current: "channels", admin: true }, channels })?.into_response())
}

// ---- silences ---------------------------------------------------------------------------

#[derive(Debug)]
pub struct SilenceView {
    pub id: i64,
    pub when: String,
    pub covers: String,
    pub comment: String,
    pub by: String,
    pub active: bool,
}

#[derive(Debug, Template)]
#[template(path = "settings_silences.html")]
pub struct SilencesPage {
    pub chrome: Chrome,
    pub tabs: Tabs,
    pub silences: Vec<SilenceView>,
}

/// `GET /settings/silences`
pub async fn silences(State(state): State<AppState>, signed: Signed) -> Result<Response, PageError> {
    let now = state.now();
    let stored = state.store.list_silences(Some(now)).await.map_err(ApiError::from)?;
    let silences = stored
        .into_iter()
        .map(|s| {
            let v = serde_json::to_value(&s.silence).unwrap_or(Value::Null);
            let when = match &s.silence.schedule {
                serverpulse_alerting::notify::Schedule::Once { starts_at, ends_at } => {
                    format!("{} → {}", format::timestamp(*starts_at), format::timestamp(*ends_at))
                }
                serverpulse_alerting::notify::Schedule::Weekly { days, start_minute, duration_minutes } => {
                    const NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
                    let days: Vec<&str> = days.iter().filter_map(|d| NAMES.get(usize::from(*d)).copied()).collect();
                    format!(
                        "every {} at {:02}:{:02} UTC for {}",
                        days.join(", "),
                        start_minute / 60,
                        start_minute % 60,
                        format::duration(u64::from(*duration_minutes) * 60)
                    )
                }
            };
            let mut covers = Vec::new();
            for (key, label) in [("servers", "servers"), ("tags", "tags"), ("rules", "rules")] {
                if v[key].as_array().is_some_and(|a| !a.is_empty()) {
                    covers.push(format!("{label} {}", field(&v[key])));
                }
            }
            SilenceView {
                id: s.id,
                when,
                covers: if covers.is_empty() { "everything".to_owned() } else { covers.join("; ") },
                comment: s.silence.comment.clone(),
                by: s.created_by,
                active: s.silence.schedule.active(now),
            }
        })
        .collect();
    let chrome = Chrome::load(&state, &signed, "settings", "Silences").await?;
    let tabs = Tabs { current: "silences", admin: signed.allows(Role::Admin) };
    Ok(render(&SilencesPage { chrome, tabs, silences })?.into_response())
}

// ---- users and tokens -------------------------------------------------------------------

#[derive(Debug)]
pub struct UserView {
    pub id: i64,
    pub email: String,
    pub role: &'static str,
    pub since: String,
    pub me: bool,
}

#[derive(Debug)]
pub struct TokenView {
    pub id: String,
    pub name: String,
    pub email: String,
    pub created: String,
}

#[derive(Debug, Template)]
#[template(path = "settings_users.html")]
pub struct UsersPage {
    pub chrome: Chrome,
    pub tabs: Tabs,
    pub users: Vec<UserView>,
    pub tokens: Vec<TokenView>,
}

/// `GET /settings/users` (admin): users with their roles, and API tokens.
pub async fn users(State(state): State<AppState>, signed: Signed) -> Result<Response, PageError> {
    require(&signed, Role::Admin)?;
    let now = state.now();
    let users = state
        .store
        .list_users()
        .await
        .map_err(ApiError::from)?
        .into_iter()
        .map(|u| UserView {
            id: u.id,
            me: u.id == signed.user.id,
            email: u.email,
            role: u.role.as_str(),
            since: format::ago(Some(u.created_at), now),
        })
        .collect();
    let tokens = state
        .store
        .list_api_tokens()
        .await
        .map_err(ApiError::from)?
        .into_iter()
        .map(|(t, email)| TokenView { id: t.id, name: t.name, email, created: format::ago(Some(t.created_at), now) })
        .collect();
    let chrome = Chrome::load(&state, &signed, "settings", "Users and API tokens").await?;
    Ok(render(&UsersPage { chrome, tabs: Tabs { current: "users", admin: true }, users, tokens })?.into_response())
}

/// `GET /settings`
pub async fn index() -> Redirect {
    Redirect::to("/settings/rules")
}

// ---- one server -------------------------------------------------------------------------

#[derive(Debug, Template)]
#[template(path = "server_settings.html")]
pub struct ServerSettingsPage {
    pub chrome: Chrome,
    pub id: ServerId,
    pub name: String,
    pub ip: String,
    pub tags: String,
    pub agent_enabled: bool,
    pub collection_interval: String,
    pub heartbeat_interval: String,
    pub cpu: String,
    pub memory: String,
    pub disk: String,
    pub load: String,
    pub hold_seconds: String,
    pub hysteresis: String,
    pub services: String,
    pub custom_logs: String,
    pub settings_version: u64,
}

/// `GET /servers/{id}/settings` (admin)
pub async fn server(
    State(state): State<AppState>,
    signed: Signed,
    ApiPath(id): ApiPath<ServerId>,
) -> Result<Response, PageError> {
    require(&signed, Role::Admin)?;
    let server = state.store.get_server(id).await.map_err(|e| not_found_as(e, "server"))?;
    let settings = state.store.agent_settings(id).await.map_err(ApiError::from)?;
    let v = serde_json::to_value(&settings.value).unwrap_or(Value::Null);
    let custom_logs = match &v["custom_logs"] {
        Value::Null => String::new(),
        logs => serde_json::to_string_pretty(logs).unwrap_or_default(),
    };
    let chrome = Chrome::load(&state, &signed, "fleet", &format!("{} · settings", server.name)).await?;
    let page = ServerSettingsPage {
        chrome,
        id,
        name: server.name,
        ip: server.ip.to_string(),
        tags: server.tags.join(", "),
        agent_enabled: server.agent_enabled,
        collection_interval: field(&v["collection_interval"]),
        heartbeat_interval: field(&v["heartbeat_interval"]),
        cpu: field(&v["thresholds"]["cpu"]),
        memory: field(&v["thresholds"]["memory"]),
        disk: field(&v["thresholds"]["disk"]),
        load: field(&v["thresholds"]["load"]),
        hold_seconds: field(&v["thresholds"]["hold_seconds"]),
        hysteresis: field(&v["thresholds"]["hysteresis"]),
        services: field(&v["services"]),
        custom_logs,
        settings_version: settings.version,
    };
    Ok(render(&page)?.into_response())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn fields_show_values_as_typed() {
        assert_eq!(super::field(&json!(85.0)), "85");
        assert_eq!(super::field(&json!(0.5)), "0.5");
        assert_eq!(super::field(&json!(["a", "b"])), "a, b");
        assert_eq!(super::field(&json!(null)), "");
    }
}
