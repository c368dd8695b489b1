//! The unified log: events (registrations, status changes, alerts, commands, rule
//! changes), newest first.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use serverpulse_proto::alert::Severity;
use serverpulse_proto::time::format_timestamp;
use serverpulse_store::{EventKind, EventQuery, EventRecord, ServerId};

use crate::app::AppState;
use crate::auth::Viewer;
use crate::body::ApiQuery;
use crate::error::{ApiError, ApiResult};

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    #[serde(alias = "server")]
    pub server_id: Option<ServerId>,
    /// e.g. `agent_status`, `agent_alert`, `service_status`, `user_session`.
    pub kind: Option<String>,
    /// `info`, `warning`, `error` or `critical`.
    pub severity: Option<String>,
    /// Only events whose message contains this text.
    pub q: Option<String>,
    /// Only events older than this id (paging).
    pub before: Option<i64>,
    /// Default 100, at most 1000 (CSV export: at most 100000).
    pub limit: Option<u32>,
}

impl EventsQuery {
    /// The store's query, each parameter checked; empty values mean "any".
    pub fn to_store(&self, max_limit: u32) -> ApiResult<EventQuery> {
        let given = |v: &Option<String>| v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
        let kind = given(&self.kind)
            .map(|k| EventKind::parse(&k).ok_or_else(|| ApiError::field("kind", "is not a known event kind")))
            .transpose()?;
        let severity = given(&self.severity)
            .map(|s| {
                Severity::from_wire(&s)
                    .ok_or_else(|| ApiError::field("severity", "must be info, warning, error or critical"))
            })
            .transpose()?;
        let limit = self.limit.unwrap_or(100);
        if !(1..=max_limit).contains(&limit) {
            return Err(ApiError::field("limit", &format!("must be between 1 and {max_limit}")));
        }
        Ok(EventQuery {
            server_id: self.server_id,
            kind,
            severity,
            search: given(&self.q),
            before_id: self.before,
            limit,
        })
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Events {
    pub events: Vec<EventRecord>,
}

pub fn limit(value: Option<u32>) -> ApiResult<u32> {
    let limit = value.unwrap_or(100);
    if (1..=1_000).contains(&limit) { Ok(limit) } else { Err(ApiError::field("limit", "must be between 1 and 1000")) }
}

#[utoipa::path(get, path = "/api/v1/events", tag = "log", params(EventsQuery),
    responses((status = 200, body = Events), (status = 400), (status = 401)),
    security(("api_token" = [])))]
pub async fn events(
    State(state): State<AppState>,
    _: Viewer,
    ApiQuery(query): ApiQuery<EventsQuery>,
) -> ApiResult<Json<Events>> {
    let events = state.store.events(query.to_store(1_000)?).await?;
    Ok(Json(Events { events }))
}

/// Largest CSV export, in events.
pub const CSV_MAX: u32 = 100_000;

/// The event log as CSV (same filters as `/api/v1/events`; default and maximum 100000
/// rows), for spreadsheets and audits.
#[utoipa::path(get, path = "/api/v1/events.csv", tag = "log", params(EventsQuery),
    responses((status = 200, content_type = "text/csv", description = "id,at,server_id,kind,severity,message"),
              (status = 400), (status = 401)),
    security(("api_token" = [])))]
pub async fn events_csv(
    State(state): State<AppState>,
    _: Viewer,
    ApiQuery(mut query): ApiQuery<EventsQuery>,
) -> ApiResult<impl IntoResponse> {
    query.limit = Some(query.limit.unwrap_or(CSV_MAX));
    let events = state.store.events(query.to_store(CSV_MAX)?).await?;
    let mut csv = String::from("id,at,server_id,kind,severity,message\r\n");
    for e in &events {
        let server = e.server_id.map(|s| s.to_string()).unwrap_or_default();
        let fields = [
            e.id.to_string(),
            format_timestamp(e.at),
            server,
            e.kind.as_str().to_owned(),
            e.severity.as_str().to_owned(),
            e.message.clone(),
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        csv.push_str(&line.join(","));
        csv.push_str("\r\n");
    }
    let headers = [
        (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
        (header::CONTENT_DISPOSITION, "attachment; filename=\"serverpulse-events.csv\""),
    ];
    Ok((headers, csv))
}

/// One CSV field (RFC 4180): quoted when it holds a comma, quote or line break; a
/// leading `=`, `+`, `-` or `@` is prefixed with `'` so spreadsheets do not run it.
fn csv_field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@']) { format!("'{text}") } else { text.to_owned() };
    if text.contains([',', '"', '\r', '\n']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text }
}

#[cfg(test)]
mod tests {
    #[test]
    fn csv_fields_are_quoted_and_defused() {
        assert_eq!(super::csv_field("plain"), "plain");
        assert_eq!(super::csv_field("a,b"), "\"a,b\"");
        assert_eq!(super::csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(super::csv_field("=cmd()"), "'=cmd()");
        assert_eq!(super::csv_field("line\nbreak"), "\"line\nbreak\"");
    }
}
