//! The server inventory over REST: list and inspect (viewer), add, change and remove
//! (admin), queue commands (operator), read history.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serverpulse_proto::command::CommandType;
use serverpulse_proto::responses::AgentConfig;
use serverpulse_proto::settings::{AgentSettings, decode_agent_settings};
use serverpulse_proto::time::parse_timestamp;
use serverpulse_store::{CommandRecord, Sample, Server, ServerId, ServerPatch, ServiceChange, ServiceRecord};

use crate::admin::{self, AddedServer, IssuedCredentials, IssuedEnrollment, not_found_as};
use crate::app::AppState;
use crate::auth::{Admin, Operator, Viewer};
use crate::body::{ApiPath, ApiQuery, JsonBody};
use crate::error::{ApiError, ApiResult};

/// Decodes a REST body into `T`, refusing unknown members; errors land under `body`.
pub fn typed<T: serde::de::DeserializeOwned>(body: JsonBody) -> ApiResult<T> {
    let document = body.required()?;
    serde_json::from_value(document).map_err(|e| ApiError::field("body", &e.to_string()))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ServerList {
    pub servers: Vec<Server>,
}

#[utoipa::path(get, path = "/api/v1/servers", tag = "servers",
    responses((status = 200, body = ServerList), (status = 401)), security(("api_token" = [])))]
pub async fn list(State(state): State<AppState>, _: Viewer) -> ApiResult<Json<ServerList>> {
    Ok(Json(ServerList { servers: state.store.list_servers().await? }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateServer {
    pub name: String,
    /// The address the server's agent will register from (IPv4 or IPv6).
    pub ip: String,
}

/// Adds a server; the answer holds its one-time enrollment token and install command.
#[utoipa::path(post, path = "/api/v1/servers", tag = "servers", request_body = CreateServer,
    responses((status = 201, body = AddedServer), (status = 400), (status = 401), (status = 403)),
    security(("api_token" = [])))]
pub async fn create(
    State(state): State<AppState>,
    admin: Admin,
    body: JsonBody,
) -> ApiResult<(StatusCode, Json<AddedServer>)> {
    let request: CreateServer = typed(body)?;
    let ip = admin::parse_ip("ip", &request.ip)?;
    let added = admin::add_server(&state, &admin, &request.name, ip).await?;
    Ok((StatusCode::CREATED, Json(added)))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ServerDetail {
    pub server: Server,
    pub services: Vec<ServiceRecord>,
}

#[utoipa::path(get, path = "/api/v1/servers/{id}", tag = "servers", params(("id" = i64, Path)),
    responses((status = 200, body = ServerDetail), (status = 401), (status = 404)),
    security(("api_token" = [])))]
pub async fn show(
    State(state): State<AppState>,
    _: Viewer,
    ApiPath(id): ApiPath<ServerId>,
) -> ApiResult<Json<ServerDetail>> {
    let server = state.store.get_server(id).await.map_err(|e| not_found_as(e, "server"))?;
    let services = state.store.services(id).await?;
    Ok(Json(ServerDetail { server, services }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateServer {
    pub name: Option<String>,
    pub ip: Option<String>,
    /// `false` makes the agent's token stop working until re-enabled.
    pub agent_enabled: Option<bool>,
    /// Replaces the server's tags (rules and silences can name a tag).
    pub tags: Option<Vec<String>>,
}

#[utoipa::path(patch, path = "/api/v1/servers/{id}", tag = "servers", params(("id" = i64, Path)),
    request_body = UpdateServer,
    responses((status = 200, body = Server), (status = 400), (status = 401), (status = 403), (status = 404)),
    security(("api_token" = [])))]
pub async fn update(
    State(state): State<AppState>,
    admin: Admin,
    ApiPath(id): ApiPath<ServerId>,
    body: JsonBody,
) -> ApiResult<Json<Server>> {
    let request: UpdateServer = typed(body)?;
    let patch = ServerPatch {
        name: request.name.as_deref().map(|n| admin::check_name("name", n)).transpose()?,
        ip: request.ip.as_deref().map(|ip| admin::parse_ip("ip", ip)).transpose()?,
        agent_enabled: request.agent_enabled,
        tags: request.tags.as_deref().map(admin::check_tags).transpose()?,
    };
    Ok(Json(admin::update_server(&state, &admin, id, patch).await?))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Done {
    pub success: bool,
}

#[utoipa::path(delete, path = "/api/v1/servers/{id}", tag = "servers", params(("id" = i64, Path)),
    responses((status = 200, body = Done), (status = 401), (status = 403), (status = 404)),
    security(("api_token" = [])))]
pub async fn remove(
    State(state): State<AppState>,
    admin: Admin,
    ApiPath(id): ApiPath<ServerId>,
) -> ApiResult<Json<Done>> {
    admin::remove_server(&state, &admin, id).await?;
    Ok(Json(Done { success: true }))
}

/// One server's agent settings, what its agent is told, and what it says it runs.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AgentSettingsView {
    pub server_id: ServerId,
    /// Revision of `settings` (0: never set); each change adds one.
    pub version: u64,
    pub settings: AgentSettings,
    /// What the agent receives at its next heartbeat: the hub's defaults with `settings` over them.
    pub effective: AgentConfig,
    /// The revision the agent reported in its last heartbeat (`null` until it reports one).
    pub applied_version: Option<u64>,
}

async fn settings_view(state: &AppState, id: ServerId) -> ApiResult<AgentSettingsView> {
    let server = state.store.get_server(id).await.map_err(|e| not_found_as(e, "server"))?;
    let stored = state.store.agent_settings(id).await.map_err(|e| not_found_as(e, "server"))?;
    let effective = crate::routes::agent::agent_config(state, id).await.map_err(|e| not_found_as(e, "server"))?;
    Ok(AgentSettingsView {
        server_id: id,
        version: stored.version,
        settings: stored.value,
        effective,
        applied_version: server.agent_config.value()["heartbeat"]["config_version"].as_u64(),
    })
}

#[utoipa::path(get, path = "/api/v1/servers/{id}/agent-settings", tag = "servers", params(("id" = i64, Path)),
    responses((status = 200, body = AgentSettingsView), (status = 401), (status = 404)),
    security(("api_token" = [])))]
pub async fn agent_settings(
    State(state): State<AppState>,
    _: Viewer,
    ApiPath(id): ApiPath<ServerId>,
) -> ApiResult<Json<AgentSettingsView>> {
    Ok(Json(settings_view(&state, id).await?))
}

/// Replaces the server's agent settings as a whole (members left out fall back to the
/// agent's own file and the hub's default intervals). Unknown members are refused.
#[utoipa::path(put, path = "/api/v1/servers/{id}/agent-settings", tag = "servers", params(("id" = i64, Path)),
    request_body = AgentSettings,
    responses((status = 200, body = AgentSettingsView), (status = 400), (status = 401), (status = 403), (status = 404)),
    security(("api_token" = [])))]
pub async fn set_agent_settings(
    State(state): State<AppState>,
    admin: Admin,
    ApiPath(id): ApiPath<ServerId>,
    body: JsonBody,
) -> ApiResult<Json<AgentSettingsView>> {
    let settings = decode_agent_settings(&body.required()?)?;
    admin::set_agent_settings(&state, &admin, id, settings).await?;
    Ok(Json(settings_view(&state, id).await?))
}

/// Mints another one-time enrollment token (e.g. to reinstall the agent).
#[utoipa::path(post, path = "/api/v1/servers/{id}/enrollment", tag = "servers", params(("id" = i64, Path)),
    responses((status = 201, body = IssuedEnrollment), (status = 401), (status = 403), (status = 404)),
    security(("api_token" = [])))]
pub async fn enrollment(
    State(state): State<AppState>,
    admin: Admin,
    ApiPath(id): ApiPath<ServerId>,
) -> ApiResult<(StatusCode, Json<IssuedEnrollment>)> {
    Ok((StatusCode::CREATED, Json(admin::new_enrollment(&state, &admin, id).await?)))
}

/// Issues agent credentials for an agent configured by hand; replaces any previous ones.
#[utoipa::path(post, path = "/api/v1/servers/{id}/credentials", tag = "servers", params(("id" = i64, Path)),
    responses((status = 201, body = IssuedCredentials), (status = 401), (status = 403), (status = 404)),
    security(("api_token" = [])))]
pub async fn credentials(
    State(state): State<AppState>,
    admin: Admin,
    ApiPath(id): ApiPath<ServerId>,
) -> ApiResult<(StatusCode, Json<IssuedCredentials>)> {
    Ok((StatusCode::CREATED, Json(admin::issue_credentials(&state, &admin, id).await?)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// RFC 3339 or Unix milliseconds; default one hour before `to`.
    pub from: Option<String>,
    /// RFC 3339 or Unix milliseconds; default now.
    pub to: Option<String>,
    /// At most this many samples (default 1000, at most 10000).
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct History {
    pub server_id: ServerId,
    pub from: i64,
    pub to: i64,
    pub samples: Vec<Sample>,
}

pub fn instant(field: &str, text: &str) -> ApiResult<i64> {
    if let Ok(ms) = text.trim().parse::<i64>() {
        return Ok(ms);
    }
    parse_timestamp(text).map_err(|why| ApiError::field(field, &why))
}

/// Raw stored reports in a time range, oldest first.
#[utoipa::path(get, path = "/api/v1/servers/{id}/metrics", tag = "servers",
    params(("id" = i64, Path), HistoryQuery),
    responses((status = 200, body = History), (status = 400), (status = 401), (status = 404)),
    security(("api_token" = [])))]
pub async fn metrics(
    State(state): State<AppState>,
    _: Viewer,
    ApiPath(id): ApiPath<ServerId>,
    ApiQuery(query): ApiQuery<HistoryQuery>,
) -> ApiResult<Json<History>> {
    let to = query.to.as_deref().map(|t| instant("to", t)).transpose()?.unwrap_or_else(|| state.now());
    let from = query.from.as_deref().map(|t| instant("from", t)).transpose()?.unwrap_or(to - 3_600_000);
    if from > to {
        return Err(ApiError::field("from", "must not be after `to`"));
    }
    let limit = query.limit.unwrap_or(1_000);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::field("limit", "must be between 1 and 10000"));
    }
    state.store.get_server(id).await.map_err(|e| not_found_as(e, "server"))?;
    let samples = state.store.metrics_history(id, from, to, limit).await?;
    Ok(Json(History { server_id: id, from, to, samples }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Services {
    pub services: Vec<ServiceRecord>,
    /// Newest first.
    pub history: Vec<ServiceChange>,
}

#[utoipa::path(get, path = "/api/v1/servers/{id}/services", tag = "servers", params(("id" = i64, Path)),
    responses((status = 200, body = Services), (status = 401), (status = 404)),
    security(("api_token" = [])))]
pub async fn services(
    State(state): State<AppState>,
    _: Viewer,
    ApiPath(id): ApiPath<ServerId>,
) -> ApiResult<Json<Services>> {
    state.store.get_server(id).await.map_err(|e| not_found_as(e, "server"))?;
    Ok(Json(Services {
        services: state.store.services(id).await?,
        history: state.store.service_history(id, 200).await?,
    }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CommandList {
    pub commands: Vec<CommandRecord>,
}

#[utoipa::path(get, path = "/api/v1/servers/{id}/commands", tag = "servers", params(("id" = i64, Path)),
    responses((status = 200, body = CommandList), (status = 401), (status = 404)),
    security(("api_token" = [])))]
pub async fn list_commands(
    State(state): State<AppState>,
    _: Viewer,
    ApiPath(id): ApiPath<ServerId>,
) -> ApiResult<Json<CommandList>> {
    state.store.get_server(id).await.map_err(|e| not_found_as(e, "server"))?;
    Ok(Json(CommandList { commands: state.store.list_commands(id, 200).await? }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnqueueCommand {
    /// `restart_service`, `collect_now`, `reload_config` or `run_check`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub args: Value,
    /// Seconds until the command expires unexecuted (default from configuration).
    pub ttl_seconds: Option<u32>,
}

#[utoipa::path(post, path = "/api/v1/servers/{id}/commands", tag = "servers", params(("id" = i64, Path)),
    request_body = EnqueueCommand,
    responses((status = 201, body = CommandRecord), (status = 400), (status = 401), (status = 403), (status = 404)),
    security(("api_token" = [])))]
pub async fn enqueue_command(
    State(state): State<AppState>,
    operator: Operator,
    ApiPath(id): ApiPath<ServerId>,
    body: JsonBody,
) -> ApiResult<(StatusCode, Json<CommandRecord>)> {
    let request: EnqueueCommand = typed(body)?;
    let kind = CommandType::parse(&request.kind).ok_or_else(|| {
        ApiError::field("type", "must be one of restart_service, collect_now, reload_config, run_check")
    })?;
    let args = match request.args {
        Value::Null => Value::Object(serde_json::Map::new()),
        Value::Object(map) => Value::Object(map),
        _ => return Err(ApiError::field("args", "must be a JSON object")),
    };
    if kind == CommandType::RestartService && args.get("service").and_then(Value::as_str).is_none_or(str::is_empty) {
        return Err(ApiError::field("args.service", "is required for restart_service"));
    }
    let ttl_ms = match request.ttl_seconds {
        Some(0) => return Err(ApiError::field("ttl_seconds", "must be at least 1")),
        Some(secs) => Some(i64::from(secs) * 1000),
        None => None,
    };
    let record = admin::enqueue_command(&state, &operator, id, kind, args, ttl_ms).await?;
    Ok((StatusCode::CREATED, Json(record)))
}
