//! The unified log: events (registrations, status changes, alerts, commands, rule
//! changes), newest first.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serverpulse_store::{EventKind, EventQuery, EventRecord, ServerId};

use crate::app::AppState;
use crate::auth::Viewer;
use crate::body::ApiQuery;
use crate::error::{ApiError, ApiResult};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    pub server_id: Option<ServerId>,
    /// e.g. `agent_status`, `agent_alert`, `service_status`.
    pub kind: Option<String>,
    /// Only events older than this id (paging).
    pub before: Option<i64>,
    /// Default 100, at most 1000.
    pub limit: Option<u32>,
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
    let kind = query
        .kind
        .as_deref()
        .map(|k| EventKind::parse(k).ok_or_else(|| ApiError::field("kind", "is not a known event kind")))
        .transpose()?;
    let events = state
        .store
        .events(EventQuery { server_id: query.server_id, kind, before_id: query.before, limit: limit(query.limit)? })
        .await?;
    Ok(Json(Events { events }))
}
