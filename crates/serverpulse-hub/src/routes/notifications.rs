//! Notification channels (admin: they hold destinations and secrets, which are never
//! shown back), silences and maintenance windows (operator sets, viewer reads), and the
//! delivery log (viewer).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use serverpulse_alerting::notify::{Channel, ChannelKind, Route, SECRET_SETTINGS, decode_channel, decode_silence};
use serverpulse_store::{
    DeliveryOutcome, NewNotification, NotificationQuery, NotificationRecord, StoreError, StoredChannel, StoredSilence,
};

use crate::admin::not_found_as;
use crate::app::AppState;
use crate::auth::{Admin, Operator, Viewer};
use crate::body::{ApiPath, ApiQuery, JsonBody};
use crate::delivery::{Notice, send};
use crate::error::{ApiError, ApiResult};
use crate::routes::log::limit;
use crate::routes::servers::Done;

/// A channel as the API shows it: secrets replaced by `********`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChannelView {
    pub id: i64,
    pub name: String,
    pub kind: ChannelKind,
    #[schema(value_type = Object)]
    pub settings: Map<String, Value>,
    pub route: Route,
    pub repeat_every: u32,
    pub enabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<StoredChannel> for ChannelView {
    fn from(stored: StoredChannel) -> Self {
        let settings = stored.channel.redacted_settings();
        let Channel { name, kind, route, repeat_every, enabled, .. } = stored.channel;
        Self {
            id: stored.id,
            name,
            kind,
            settings,
            route,
            repeat_every,
            enabled,
            created_at: stored.created_at,
            updated_at: stored.updated_at,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Channels {
    pub channels: Vec<ChannelView>,
}

fn name_taken(error: StoreError) -> ApiError {
    match error {
        StoreError::Conflict(_) => ApiError::field("name", "another channel has this name"),
        other => not_found_as(other, "channel"),
    }
}

#[utoipa::path(get, path = "/api/v1/channels", tag = "notifications",
    responses((status = 200, body = Channels), (status = 401), (status = 403)), security(("api_token" = [])))]
pub async fn list_channels(State(state): State<AppState>, _: Admin) -> ApiResult<Json<Channels>> {
    let channels = state.store.list_channels().await?.into_iter().map(ChannelView::from).collect();
    Ok(Json(Channels { channels }))
}

#[utoipa::path(post, path = "/api/v1/channels", tag = "notifications",
    request_body(content = Object, description = "{name, kind, settings, route?, repeat_every?, enabled?}"),
    responses((status = 201, body = ChannelView), (status = 400), (status = 401), (status = 403)),
    security(("api_token" = [])))]
pub async fn create_channel(
    State(state): State<AppState>,
    _: Admin,
    body: JsonBody,
) -> ApiResult<(StatusCode, Json<ChannelView>)> {
    let channel = decode_channel(&body.required()?)?;
    let stored = state.store.create_channel(channel, state.now()).await.map_err(name_taken)?;
    state.alerting.audience.forget().await;
    Ok((StatusCode::CREATED, Json(stored.into())))
}

/// Replaces a channel. A secret sent back as `********` keeps its stored value, so what
/// the API showed can be edited and returned as is.
#[utoipa::path(put, path = "/api/v1/channels/{id}", tag = "notifications", params(("id" = i64, Path)),
    request_body(content = Object, description = "as for POST"),
    responses((status = 200, body = ChannelView), (status = 400), (status = 401), (status = 403), (status = 404)),
    security(("api_token" = [])))]
pub async fn update_channel(
    State(state): State<AppState>,
    _: Admin,
    ApiPath(id): ApiPath<i64>,
    body: JsonBody,
) -> ApiResult<Json<ChannelView>> {
    let mut channel = decode_channel(&body.required()?)?;
    let current = state.store.get_channel(id).await.map_err(|e| not_found_as(e, "channel"))?;
    for key in SECRET_SETTINGS {
        if channel.settings.get(*key).and_then(Value::as_str) == Some("********")
            && let Some(kept) = current.channel.settings.get(*key)
        {
            channel.settings.insert((*key).to_owned(), kept.clone());
        }
    }
    let updated = state.store.update_channel(id, channel, state.now()).await.map_err(name_taken)?;
    state.alerting.audience.forget().await;
    Ok(Json(updated.into()))
}

#[utoipa::path(delete, path = "/api/v1/channels/{id}", tag = "notifications", params(("id" = i64, Path)),
    responses((status = 200, body = Done), (status = 401), (status = 403), (status = 404)),
    security(("api_token" = [])))]
pub async fn delete_channel(
    State(state): State<AppState>,
    _: Admin,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Done>> {
    state.store.delete_channel(id, state.now()).await.map_err(|e| not_found_as(e, "channel"))?;
    state.alerting.audience.forget().await;
    Ok(Json(Done { success: true }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TestResult {
    pub success: bool,
    /// What went wrong, when it did.
    pub error: Option<String>,
    /// The delivery log entry of this test.
    pub notification_id: i64,
}

/// Sends a test notification now and says how it went (also in the delivery log).
#[utoipa::path(post, path = "/api/v1/channels/{id}/test", tag = "notifications", params(("id" = i64, Path)),
    responses((status = 200, body = TestResult), (status = 401), (status = 403), (status = 404)),
    security(("api_token" = [])))]
pub async fn test_channel(
    State(state): State<AppState>,
    _: Admin,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<TestResult>> {
    let stored = state.store.get_channel(id).await.map_err(|e| not_found_as(e, "channel"))?;
    let now = state.now();
    let queued = NewNotification { alert_id: None, channel_id: id, event: "test".into() };
    let notification_id = state.store.enqueue_notifications(vec![queued], now).await?.first().copied().unwrap_or(0);
    let notice = Notice::new("test", None, None, &state.settings.public_url);
    let started = std::time::Instant::now();
    let result = send(&state.http, &stored.channel, &notice).await;
    let duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    let error = result.err();
    state
        .store
        .record_delivery(notification_id, DeliveryOutcome { error: error.clone(), duration_ms, retry_at: None }, now)
        .await?;
    Ok(Json(TestResult { success: error.is_none(), error, notification_id }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SilencesQuery {
    /// Only silences not over yet (default true).
    pub active: Option<bool>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Silences {
    pub silences: Vec<StoredSilence>,
}

#[utoipa::path(get, path = "/api/v1/silences", tag = "notifications", params(SilencesQuery),
    responses((status = 200, body = Silences), (status = 401)), security(("api_token" = [])))]
pub async fn list_silences(
    State(state): State<AppState>,
    _: Viewer,
    ApiQuery(query): ApiQuery<SilencesQuery>,
) -> ApiResult<Json<Silences>> {
    let active_at = query.active.unwrap_or(true).then(|| state.now());
    Ok(Json(Silences { silences: state.store.list_silences(active_at).await? }))
}

/// Silences notifications (alerts are still recorded): for a while (`duration_minutes`,
/// or `starts_at`/`ends_at` in Unix ms) or weekly (`weekly: {days, start, duration_minutes}`),
/// for some servers, tags or rules, or everything.
#[utoipa::path(post, path = "/api/v1/silences", tag = "notifications",
    request_body(content = Object, description = "{duration_minutes | starts_at+ends_at | weekly, servers?, tags?, rules?, comment?}"),
    responses((status = 201, body = StoredSilence), (status = 400), (status = 401), (status = 403)),
    security(("api_token" = [])))]
pub async fn create_silence(
    State(state): State<AppState>,
    operator: Operator,
    body: JsonBody,
) -> ApiResult<(StatusCode, Json<StoredSilence>)> {
    let now = state.now();
    let silence = decode_silence(&body.required()?, now)?;
    let by = operator.caller().name().to_owned();
    let created = state.store.create_silence(silence, &by, now).await?;
    state.alerting.audience.forget().await;
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(delete, path = "/api/v1/silences/{id}", tag = "notifications", params(("id" = i64, Path)),
    responses((status = 200, body = Done), (status = 401), (status = 403), (status = 404)),
    security(("api_token" = [])))]
pub async fn delete_silence(
    State(state): State<AppState>,
    _: Operator,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Done>> {
    state.store.delete_silence(id, state.now()).await.map_err(|e| not_found_as(e, "silence"))?;
    state.alerting.audience.forget().await;
    Ok(Json(Done { success: true }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct NotificationsQuery {
    pub alert: Option<i64>,
    pub channel: Option<i64>,
    /// `pending`, `sent` or `failed`.
    pub status: Option<String>,
    /// Default 100, at most 1000.
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Notifications {
    pub notifications: Vec<NotificationRecord>,
}

/// The delivery log: every notification with each attempt (when, how long, the error).
#[utoipa::path(get, path = "/api/v1/notifications", tag = "notifications", params(NotificationsQuery),
    responses((status = 200, body = Notifications), (status = 400), (status = 401)), security(("api_token" = [])))]
pub async fn list_notifications(
    State(state): State<AppState>,
    _: Viewer,
    ApiQuery(query): ApiQuery<NotificationsQuery>,
) -> ApiResult<Json<Notifications>> {
    if let Some(status) = &query.status
        && !["pending", "sent", "failed"].contains(&status.as_str())
    {
        return Err(ApiError::field("status", "must be pending, sent or failed"));
    }
    let query = NotificationQuery {
        alert_id: query.alert,
        channel_id: query.channel,
        status: query.status,
        limit: limit(query.limit)?,
    };
    Ok(Json(Notifications { notifications: state.store.notifications(query).await? }))
}
