//! The unified log page: every event (agent alerts, status changes, registrations,
//! alerts and notifications, sign-ins and other user actions), filtered, searched, paged
//! backwards, and exported as CSV with the same filters.

use std::collections::HashMap;

use askama::Template;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serverpulse_store::{EventKind, ServerId};

use crate::app::AppState;
use crate::body::ApiQuery;
use crate::error::ApiError;
use crate::routes::log::EventsQuery;
use crate::web::format;
use crate::web::session::encode_query;
use crate::web::{Chrome, PageError, Signed, render};

pub const PAGE_SIZE: u32 = 100;

#[derive(Debug)]
pub struct LogItem {
    pub at: String,
    pub at_iso: String,
    pub severity: &'static str,
    pub kind: &'static str,
    pub server_id: Option<ServerId>,
    pub server: String,
    pub message: String,
}

#[derive(Debug, Template)]
#[template(path = "logs.html")]
pub struct LogPage {
    pub chrome: Chrome,
    pub events: Vec<LogItem>,
    pub kinds: Vec<&'static str>,
    pub kind: String,
    pub severity: String,
    pub q: String,
    pub server: Option<ServerId>,
    pub server_name: String,
    /// The filters as a query string (no paging), for the export link and paging.
    pub filters: String,
    pub older: Option<i64>,
    pub paged: bool,
}

/// `GET /logs`
pub async fn page(
    State(state): State<AppState>,
    signed: Signed,
    ApiQuery(mut query): ApiQuery<EventsQuery>,
) -> Result<Response, PageError> {
    query.limit = Some(PAGE_SIZE);
    let found = state.store.events(query.to_store(PAGE_SIZE)?).await.map_err(ApiError::from)?;
    let servers: HashMap<ServerId, String> =
        state.store.list_servers().await.map_err(ApiError::from)?.into_iter().map(|s| (s.id, s.name)).collect();
    let now = state.now();
    let older = (found.len() == PAGE_SIZE as usize).then(|| found.last().map(|e| e.id)).flatten();
    let events = found
        .into_iter()
        .map(|e| LogItem {
            at: format::ago(Some(e.at), now),
            at_iso: format::timestamp(e.at),
            severity: e.severity.as_str(),
            kind: e.kind.as_str(),
            server_id: e.server_id,
            server: e.server_id.and_then(|id| servers.get(&id).cloned()).unwrap_or_default(),
            message: e.message,
        })
        .collect();
    let mut filters = Vec::new();
    for (key, value) in [("kind", &query.kind), ("severity", &query.severity), ("q", &query.q)] {
        if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
            filters.push(format!("{key}={}", encode_query(value)));
        }
    }
    if let Some(server) = query.server_id {
        filters.push(format!("server_id={server}"));
    }
    let chrome = Chrome::load(&state, &signed, "logs", "Logs").await?;
    let page = LogPage {
        chrome,
        events,
        kinds: EventKind::ALL.iter().map(|k| k.as_str()).collect(),
        kind: query.kind.unwrap_or_default(),
        severity: query.severity.unwrap_or_default(),
        q: query.q.unwrap_or_default(),
        server: query.server_id,
        server_name: query.server_id.and_then(|id| servers.get(&id).cloned()).unwrap_or_default(),
        filters: filters.join("&"),
        older,
        paged: query.before.is_some(),
    };
    Ok(render(&page)?.into_response())
}
