//! The agent protocol v1 (`shared/PROTOCOL.md`): registration and the authenticated
//! per-agent endpoints. Dialect differences are settled in `serverpulse-proto`; here
//! each request is authenticated, decoded, stored in one transaction, and answered.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serverpulse_domain::{Secret, TokenDigest};
use serverpulse_proto::alert::decode_alerts;
use serverpulse_proto::command::{WireCommand, decode_ack, signing_payload};
use serverpulse_proto::heartbeat::decode_heartbeat;
use serverpulse_proto::register::decode_register;
use serverpulse_proto::report::{Report, decode_metrics_body};
use serverpulse_proto::responses::{
    AckAccepted, AgentConfig, AlertsAccepted, HeartbeatAccepted, MaintenanceOpened, MetricsAccepted, PendingCommands,
    RegisterResponse,
};
use serverpulse_proto::settings::AgentSettings;
use serverpulse_proto::time::format_timestamp;
use serverpulse_store::{
    AckOutcome, AgentContact, AgentCredentials, AgentProfile, Contact, RegisterOutcome, RegistrationWay, ServerId,
    StoreError, Versioned,
};

use serverpulse_alerting::notify::{Schedule, Silence};

use crate::alerting;
use crate::app::AppState;
use crate::auth::{AuthenticatedAgent, bearer_token_from_headers};
use crate::body::{ApiPath, JsonBody};
use crate::error::{ApiError, ApiResult, SERVER_NOT_FOUND};

/// The hub's default intervals, before any per-server settings.
fn default_config(state: &AppState) -> AgentConfig {
    AgentConfig::effective(
        state.settings.collection_interval_secs,
        state.settings.heartbeat_interval_secs,
        AgentSettings::default(),
        0,
    )
}

/// What one server's agent is told to run: the defaults with the server's settings over them.
pub async fn agent_config(state: &AppState, server: ServerId) -> Result<AgentConfig, StoreError> {
    Ok(effective_config(state, state.store.agent_settings(server).await?))
}

/// The hub's defaults with a server's own `settings` over them.
fn effective_config(state: &AppState, settings: Versioned<AgentSettings>) -> AgentConfig {
    AgentConfig::effective(
        state.settings.collection_interval_secs,
        state.settings.heartbeat_interval_secs,
        settings.value,
        settings.version,
    )
}

/// The server behind an authenticated agent vanished mid-request: same answer as a bad token.
fn agent_gone(error: StoreError) -> ApiError {
    match error {
        StoreError::NotFound => ApiError::Unauthorized,
        other => other.into(),
    }
}

/// What the ingest writer made of an agent's request, as [`agent_gone`] answers a
/// vanished server.
fn recorded<T>(outcome: Result<T, ApiError>) -> Result<T, ApiError> {
    match outcome {
        Err(ApiError::NotFound(_)) => Err(ApiError::Unauthorized),
        other => other,
    }
}

fn fresh_credentials() -> Result<(Secret, AgentCredentials), ApiError> {
    let secret = Secret::generate()?;
    let credentials = AgentCredentials { agent_id: uuid::Uuid::new_v4().to_string(), token: secret.digest() };
    Ok((secret, credentials))
}

/// Enrols an agent: by enrollment token, by the credentials it already holds, or by the
/// address its server was added with, in that order.
#[utoipa::path(post, path = "/api/v1/agents/register", tag = "agents",
    request_body(content = Object, description = "Dialect A or B registration document"),
    params(("X-Enrollment-Token" = Option<String>, Header, description = "Enrollment token (alternative to the body member)")),
    responses(
        (status = 200, body = RegisterResponse),
        (status = 400, description = "Invalid document"),
        (status = 401, description = "Enrollment token invalid, used or expired"),
        (status = 404, description = "No server matches"),
        (status = 409, description = "The server's agent is active; IP takeover refused")))]
pub async fn register(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: JsonBody,
) -> ApiResult<Json<RegisterResponse>> {
    let document = body.required()?;
    let header_token = headers.get("x-enrollment-token").and_then(|v| v.to_str().ok());
    let request = decode_register(&document, header_token)?;
    let profile = AgentProfile::registered(&request, &default_config(&state));
    let now = state.now();

    if let Some(token) = &request.enrollment_token {
        let (secret, fresh) = fresh_credentials()?;
        let way = RegistrationWay::Enrollment { token: TokenDigest::of(token), fresh };
        return match state.store.register_agent(way, profile, now).await? {
            RegisterOutcome::Registered { server_id, agent_id, .. } => {
                registered(&state, server_id, agent_id, Some(secret)).await
            }
            _ => Err(ApiError::EnrollmentRefused),
        };
    }

    if let Some(token) = bearer_token_from_headers(&headers) {
        let way = RegistrationWay::ExistingAgent { token: TokenDigest::of(token) };
        if let RegisterOutcome::Registered { server_id, agent_id, .. } =
            state.store.register_agent(way, profile.clone(), now).await?
        {
            return registered(&state, server_id, agent_id, None).await;
        }
    }

    if let Some(ip) = request.server_ip {
        let (secret, fresh) = fresh_credentials()?;
        let way = RegistrationWay::ServerIp { ip, fresh };
        return match state.store.register_agent(way, profile, now).await? {
            RegisterOutcome::Registered { server_id, agent_id, .. } => {
                registered(&state, server_id, agent_id, Some(secret)).await
            }
            RegisterOutcome::AgentActive => Err(ApiError::Conflict(
                "This server already has an active agent; re-register with an enrollment token".to_owned(),
            )),
            RegisterOutcome::NoMatch | RegisterOutcome::EnrollmentRefused => {
                Err(ApiError::NotFound(SERVER_NOT_FOUND.to_owned()))
            }
        };
    }
    Err(ApiError::NotFound(SERVER_NOT_FOUND.to_owned()))
}

async fn registered(
    state: &AppState,
    server_id: i64,
    agent_id: String,
    secret: Option<Secret>,
) -> ApiResult<Json<RegisterResponse>> {
    tracing::info!(server_id, agent_id, new_token = secret.is_some(), "agent registered");
    // The server's agent may have been replaced: its old credentials stop now.
    state.agents.forget_all();
    crate::live::publish_server(state, server_id).await;
    Ok(Json(RegisterResponse {
        success: true,
        agent_id,
        auth_token: secret.map(|s| s.expose().to_owned()),
        server_id,
        config: agent_config(state, server_id).await?,
    }))
}

/// One report, or `{"reports":[…]}`; stored before the answer. Reports whose `seq` is
/// already stored are acknowledged and skipped.
#[utoipa::path(post, path = "/api/v1/agents/{agent_id}/metrics", tag = "agents",
    params(("agent_id" = String, Path)),
    request_body(content = Object, description = "A report (dialect A or B) or {\"reports\":[…]}; may be gzip-encoded"),
    responses((status = 200, body = MetricsAccepted), (status = 400), (status = 401), (status = 413)),
    security(("agent_token" = [])))]
pub async fn metrics(
    State(state): State<AppState>,
    admitted: crate::ingest::Admitted,
    agent: AuthenticatedAgent,
    body: JsonBody,
) -> ApiResult<Json<MetricsAccepted>> {
    let (document, text) = body.required_with_text()?;
    let now = state.now();
    // Each report's document is stored as the agent wrote it, and the parsed one
    // dropped now, while it is still in cache.
    let reports = decode_metrics_body(document, now)?.into_reports_with_text(text);
    // Durable once this returns: the writer committed the batch holding these reports.
    let (outcome, reports) = recorded(state.ingest.submit(&admitted, agent.server_id, reports, now).await)?;
    // The server as the commit left it comes with the outcome, and what its alert
    // rules made of the reports (judged in the same commit).
    if outcome.stored > 0
        && let Some(server) = &outcome.server
    {
        alerting::announce(&state, server.id, &outcome.alerts_touched, outcome.notifies).await;
        crate::live::publish_server_row(&state, server);
        if let Some(exporter) = &state.exporter {
            let stored: Vec<Report> =
                reports.into_iter().filter(|r| r.seq.is_none_or(|seq| outcome.stored_seqs.contains(&seq))).collect();
            exporter.offer(server, &stored);
        }
    }
    let commands_pending = outcome.commands_pending;
    Ok(Json(MetricsAccepted {
        success: true,
        stored: outcome.stored,
        stored_seqs: outcome.stored_seqs,
        duplicate_seqs: outcome.duplicate_seqs,
        commands_pending,
    }))
}

#[utoipa::path(post, path = "/api/v1/agents/{agent_id}/heartbeat", tag = "agents",
    params(("agent_id" = String, Path)),
    request_body(content = Option<Object>, description = "Optional: {} or {\"agent_id\",\"timestamp\",\"status\"}"),
    responses((status = 200, body = HeartbeatAccepted), (status = 400), (status = 401)),
    security(("agent_token" = [])))]
pub async fn heartbeat(
    State(state): State<AppState>,
    admitted: crate::ingest::Admitted,
    agent: AuthenticatedAgent,
    body: JsonBody,
) -> ApiResult<Json<HeartbeatAccepted>> {
    let beat = decode_heartbeat(body.document())?;
    let said = AgentContact { status: beat.status, config_version: beat.config_version };
    // Committed with the other contacts the writer has queued (see `ingest`).
    let contact = Contact { server: agent.server_id, at: state.now(), heartbeat: Some(said) };
    // Its answer (settings, commands waiting) comes from the same commit.
    let answer = recorded(state.ingest.record_contact(&admitted, contact).await)?;
    crate::live::publish_server(&state, agent.server_id).await;
    let config = effective_config(&state, answer.settings);
    Ok(Json(HeartbeatAccepted { success: true, config, commands_pending: answer.commands_pending }))
}

#[utoipa::path(post, path = "/api/v1/agents/{agent_id}/alerts", tag = "agents",
    params(("agent_id" = String, Path)),
    request_body(content = Object, description = "{\"alerts\":[…]} (A) or {\"alert\":{…}} (B)"),
    responses((status = 200, body = AlertsAccepted), (status = 400), (status = 401)),
    security(("agent_token" = [])))]
pub async fn alerts(
    State(state): State<AppState>,
    agent: AuthenticatedAgent,
    body: JsonBody,
) -> ApiResult<Json<AlertsAccepted>> {
    let document = body.required()?;
    let alerts = decode_alerts(&document)?;
    let now = state.now();
    let server = state.store.get_server(agent.server_id).await.map_err(agent_gone)?;
    let audience = state.alerting.audience(&*state.store).await?;
    let notify: Vec<serverpulse_store::Recipients> = alerts
        .iter()
        .map(|a| {
            let (channels, silenced) = audience.recipients(a.severity, &server, None, now);
            serverpulse_store::Recipients { channels, silenced }
        })
        .collect();
    let ids = state.store.store_agent_alerts(agent.server_id, &alerts, &notify, now).await.map_err(agent_gone)?;
    if notify.iter().any(|n| !n.channels.is_empty()) {
        state.wake_notifier.notify_one();
    }
    crate::live::publish_alerts(&state, agent.server_id).await;
    Ok(Json(AlertsAccepted { success: true, stored: ids.len() }))
}

/// Longest maintenance window an agent may open for its own server.
const MAX_AGENT_MAINTENANCE_MINUTES: f64 = 7.0 * 24.0 * 60.0;

/// Opens a maintenance window for the calling agent's own server (`serverpulse-agent
/// maintenance 30m "kernel upgrade"`): alerts are still recorded, nobody is notified.
#[utoipa::path(post, path = "/api/v1/agents/{agent_id}/maintenance", tag = "agents",
    params(("agent_id" = String, Path)),
    request_body(content = Object, description = "{\"duration_minutes\": 1..10080, \"comment\"?: string}"),
    responses((status = 201, body = MaintenanceOpened), (status = 400), (status = 401)),
    security(("agent_token" = [])))]
pub async fn maintenance(
    State(state): State<AppState>,
    agent: AuthenticatedAgent,
    body: JsonBody,
) -> ApiResult<(axum::http::StatusCode, Json<MaintenanceOpened>)> {
    let document = body.required()?;
    let mut errors = serverpulse_proto::fields::Errors::default();
    let Some(doc) = serverpulse_proto::fields::Object::root(&document, &mut errors) else {
        return Err(errors.into_error().into());
    };
    for key in doc.map().keys().filter(|k| !["duration_minutes", "comment"].contains(&k.as_str())) {
        errors.add(key.clone(), "is not a maintenance field (duration_minutes, comment)");
    }
    let minutes = doc.number("duration_minutes", &mut errors);
    if !minutes.is_some_and(|m| (1.0..=MAX_AGENT_MAINTENANCE_MINUTES).contains(&m)) && errors.is_empty() {
        errors.add("duration_minutes", "is required: minutes from 1 to 10080 (a week)");
    }
    let comment = doc.string("comment", 500, &mut errors).unwrap_or_default();
    let minutes = errors.finish(minutes.unwrap_or_default())?;
    let now = state.now();
    let server = state.store.get_server(agent.server_id).await.map_err(agent_gone)?;
    let ends_at = now + (minutes * 60_000.0) as i64;
    let silence = Silence {
        schedule: Schedule::Once { starts_at: now, ends_at },
        servers: vec![agent.server_id],
        tags: Vec::new(),
        rules: Vec::new(),
        comment,
    };
    let by = format!("agent on {}", server.hostname.as_deref().unwrap_or(&server.name));
    let stored = state.store.create_silence(silence, &by, now).await.map_err(agent_gone)?;
    state.alerting.audience.forget().await;
    Ok((axum::http::StatusCode::CREATED, Json(MaintenanceOpened { success: true, silence_id: stored.id, ends_at })))
}

/// Commands waiting for this agent, each signed with a key derived from its token.
#[utoipa::path(get, path = "/api/v1/agents/{agent_id}/commands", tag = "agents",
    params(("agent_id" = String, Path)),
    responses((status = 200, body = PendingCommands), (status = 401)),
    security(("agent_token" = [])))]
pub async fn commands(
    State(state): State<AppState>,
    admitted: crate::ingest::Admitted,
    agent: AuthenticatedAgent,
) -> ApiResult<Json<PendingCommands>> {
    let now = state.now();
    // A contact, committed with the others the writer has queued; nearly every poll
    // finds nothing waiting and ends there. Commands waiting are delivered in a
    // transaction of their own.
    let contact = Contact { server: agent.server_id, at: now, heartbeat: None };
    if recorded(state.ingest.record_contact(&admitted, contact).await)?.commands_pending == 0 {
        return Ok(Json(PendingCommands { success: true, commands: Vec::new() }));
    }
    let pending = state.store.pending_commands(agent.server_id, now).await.map_err(agent_gone)?;
    let commands = pending
        .into_iter()
        .map(|c| {
            let issued_at = format_timestamp(c.issued_at);
            let expires_at = format_timestamp(c.expires_at);
            let signature = agent.token.sign(&signing_payload(&c.id, c.kind, &c.args, &issued_at, &expires_at));
            WireCommand { id: c.id, kind: c.kind, args: c.args, issued_at, expires_at, signature }
        })
        .collect();
    Ok(Json(PendingCommands { success: true, commands }))
}

#[utoipa::path(post, path = "/api/v1/agents/{agent_id}/commands/{command_id}/ack", tag = "agents",
    params(("agent_id" = String, Path), ("command_id" = String, Path)),
    request_body(content = Object, description = "{\"command_id\",\"status\",\"output\",\"exit_code\",\"timestamp\"} or dialect B's {\"command_id\",\"result\",\"timestamp\"}"),
    responses((status = 200, body = AckAccepted), (status = 400), (status = 401), (status = 404)),
    security(("agent_token" = [])))]
pub async fn ack(
    State(state): State<AppState>,
    agent: AuthenticatedAgent,
    ApiPath((_, command_id)): ApiPath<(String, String)>,
    body: JsonBody,
) -> ApiResult<Json<AckAccepted>> {
    let document = body.required()?;
    let ack = decode_ack(&document, &command_id)?;
    let outcome = state.store.ack_command(agent.server_id, &command_id, &ack, state.now()).await.map_err(agent_gone)?;
    match outcome {
        AckOutcome::Recorded => Ok(Json(AckAccepted { success: true, duplicate: false })),
        AckOutcome::Duplicate => Ok(Json(AckAccepted { success: true, duplicate: true })),
        AckOutcome::UnknownCommand => Err(ApiError::not_found("command")),
    }
}
