//! The alerts page: open, acknowledged and resolved alerts filtered by state, severity,
//! server and rule, with acknowledge (and a comment), resolve and silence for operators.
//! The actions call the REST API; the list refreshes itself when alerts change.

use std::collections::HashMap;

use askama::Template;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serverpulse_store::{AlertRecord, ServerId};

use crate::app::AppState;
use crate::body::ApiQuery;
use crate::error::ApiError;
use crate::routes::alerts::AlertsQuery;
use crate::web::format;
use crate::web::session::encode_query;
use crate::web::{Chrome, PageError, Signed, render};

pub const PAGE_SIZE: u32 = 50;

#[derive(Debug)]
pub struct AlertItem {
    pub id: i64,
    pub severity: &'static str,
    pub status: &'static str,
    pub server_id: ServerId,
    pub server: String,
    pub rule_id: i64,
    pub rule: String,
    pub message: String,
    pub figures: String,
    pub started: String,
    pub started_iso: String,
    pub occurrences: i64,
    pub note: String,
    pub silenced: bool,
}

#[derive(Debug)]
pub struct RuleOption {
    pub id: i64,
    pub name: String,
    pub selected: bool,
}

#[derive(Debug, Template)]
#[template(path = "alerts.html")]
pub struct AlertsPage {
    pub chrome: Chrome,
    pub alerts: Vec<AlertItem>,
    pub state: String,
    pub severity: String,
    pub server: Option<ServerId>,
    pub server_name: String,
    pub rule: Option<i64>,
    pub rules: Vec<RuleOption>,
    pub older: Option<String>,
}

impl AlertsPage {
    /// This page's address with one filter removed (the chips' "×").
    pub fn without(&self, filter: &str) -> String {
        let mut parts = Vec::new();
        if filter != "state" && !self.state.is_empty() {
            parts.push(format!("state={}", encode_query(&self.state)));
        }
        if filter != "severity" && !self.severity.is_empty() {
            parts.push(format!("severity={}", encode_query(&self.severity)));
        }
        if let Some(server) = self.server.filter(|_| filter != "server") {
            parts.push(format!("server={server}"));
        }
        if let Some(rule) = self.rule.filter(|_| filter != "rule") {
            parts.push(format!("rule={rule}"));
        }
        format!("/alerts?{}", parts.join("&"))
    }
}

fn item(alert: AlertRecord, servers: &HashMap<ServerId, String>, rules: &HashMap<i64, String>, now: i64) -> AlertItem {
    let figures = match (alert.value, alert.threshold) {
        (Some(value), Some(threshold)) => format!("{value:.1} (threshold {threshold})"),
        (Some(value), None) => format!("{value:.1}"),
        _ => String::new(),
    };
    let note = match (&alert.acknowledged_by, &alert.resolved_by) {
        (_, Some(by)) => format!("resolved by {by} {}", format::ago(alert.resolved_at, now)),
        (Some(by), None) => match alert.ack_comment.as_deref().filter(|c| !c.is_empty()) {
            Some(comment) => format!("acknowledged by {by}: “{comment}”"),
            None => format!("acknowledged by {by}"),
        },
        _ => String::new(),
    };
    AlertItem {
        id: alert.id,
        severity: alert.severity.as_str(),
        status: alert.status.as_str(),
        server_id: alert.server_id,
        server: servers.get(&alert.server_id).cloned().unwrap_or_else(|| format!("server {}", alert.server_id)),
        rule_id: alert.rule_id.unwrap_or(0),
        rule: alert.rule_id.and_then(|id| rules.get(&id).cloned()).unwrap_or_else(|| alert.source.clone()),
        message: alert.message,
        figures,
        started: format::ago(Some(alert.started_at), now),
        started_iso: format::timestamp(alert.started_at),
        occurrences: alert.occurrences,
        note,
        silenced: alert.silenced,
    }
}

/// `GET /alerts` (open alerts unless `state` says otherwise).
pub async fn page(
    State(state): State<AppState>,
    signed: Signed,
    ApiQuery(mut query): ApiQuery<AlertsQuery>,
) -> Result<Response, PageError> {
    if query.state.is_none() {
        query.state = Some("open".to_owned());
    }
    if query.state.as_deref() == Some("all") {
        query.state = None;
    }
    query.limit = Some(PAGE_SIZE);
    let found = state.store.alerts(query.to_store()?).await.map_err(ApiError::from)?;
    let servers: HashMap<ServerId, String> =
        state.store.list_servers().await.map_err(ApiError::from)?.into_iter().map(|s| (s.id, s.name)).collect();
    let rules: Vec<(i64, String)> =
        state.store.list_rules().await.map_err(ApiError::from)?.into_iter().map(|r| (r.id, r.rule.name)).collect();
    let rule_names: HashMap<i64, String> = rules.iter().cloned().collect();
    let now = state.now();
    let full_page = found.len() == PAGE_SIZE as usize;
    let last_id = found.last().map(|a| a.id);
    let alerts: Vec<AlertItem> = found.into_iter().map(|a| item(a, &servers, &rule_names, now)).collect();
    let chrome = Chrome::load(&state, &signed, "alerts", "Alerts").await?;
    let mut page = AlertsPage {
        chrome,
        alerts,
        state: query.state.unwrap_or_else(|| "all".to_owned()),
        severity: query.severity.unwrap_or_default(),
        server: query.server,
        server_name: query.server.and_then(|id| servers.get(&id).cloned()).unwrap_or_default(),
        rule: query.rule,
        rules: rules.into_iter().map(|(id, name)| RuleOption { id, name, selected: query.rule == Some(id) }).collect(),
        older: None,
    };
    if let (true, Some(last)) = (full_page, last_id) {
        page.older = Some(format!("{}&before={last}", page.without("")));
    }
    Ok(render(&page)?.into_response())
}
