//! Alerts and the rules that raise them: list and inspect alerts (viewer), acknowledge
//! and resolve them (operator), read rules (viewer) and change them (admin).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serverpulse_alerting::backtest::{Episode, backtest};
use serverpulse_alerting::rule::Level;
use serverpulse_alerting::{Phase, Rule, decode_rule};
use serverpulse_proto::alert::Severity;
use serverpulse_store::{AlertId, AlertQuery, AlertRecord, AlertStatus, ServerId, StoreError, StoredRule};

use crate::admin::not_found_as;
use crate::app::AppState;
use crate::auth::{Admin, Operator, Viewer};
use crate::body::{ApiPath, ApiQuery, JsonBody};
use crate::error::{ApiError, ApiResult};
use crate::routes::log::limit;
use crate::routes::servers::{Done, typed};

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AlertsQuery {
    /// `firing`, `acknowledged`, `resolved`, or `open` (firing or acknowledged).
    pub state: Option<String>,
    /// `info`, `warning`, `error` or `critical`.
    pub severity: Option<String>,
    #[serde(alias = "server_id")]
    pub server: Option<ServerId>,
    /// Only alerts raised by this rule.
    pub rule: Option<i64>,
    /// Only alerts older than this id (paging).
    pub before: Option<AlertId>,
    /// Default 100, at most 1000.
    pub limit: Option<u32>,
}

impl AlertsQuery {
    /// The store's query, each parameter checked; empty values mean "any".
    pub fn to_store(&self) -> ApiResult<AlertQuery> {
        let given = |v: &Option<String>| v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
        let (status, open) = match given(&self.state).as_deref() {
            None => (None, false),
            Some("open") => (None, true),
            Some(s) => (
                Some(
                    AlertStatus::parse(s)
                        .ok_or_else(|| ApiError::field("state", "must be open, firing, acknowledged or resolved"))?,
                ),
                false,
            ),
        };
        let severity = given(&self.severity)
            .map(|s| {
                Severity::from_wire(&s)
                    .ok_or_else(|| ApiError::field("severity", "must be info, warning, error or critical"))
            })
            .transpose()?;
        Ok(AlertQuery {
            server_id: self.server,
            status,
            open,
            severity,
            rule_id: self.rule,
            before_id: self.before,
            limit: limit(self.limit)?,
        })
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Alerts {
    pub alerts: Vec<AlertRecord>,
}

#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerts", params(AlertsQuery),
    responses((status = 200, body = Alerts), (status = 400), (status = 401)),
    security(("api_token" = [])))]
pub async fn list(
    State(state): State<AppState>,
    _: Viewer,
    ApiQuery(query): ApiQuery<AlertsQuery>,
) -> ApiResult<Json<Alerts>> {
    let query = query.to_store()?;
    Ok(Json(Alerts { alerts: state.store.alerts(query).await? }))
}

#[utoipa::path(get, path = "/api/v1/alerts/{id}", tag = "alerts", params(("id" = i64, Path)),
    responses((status = 200, body = AlertRecord), (status = 401), (status = 404)),
    security(("api_token" = [])))]
pub async fn show(
    State(state): State<AppState>,
    _: Viewer,
    ApiPath(id): ApiPath<AlertId>,
) -> ApiResult<Json<AlertRecord>> {
    Ok(Json(state.store.alert(id).await.map_err(|e| not_found_as(e, "alert"))?))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Acknowledge {
    /// What is being done about it.
    #[serde(default)]
    pub comment: String,
}

/// Acknowledges an open alert: someone is on it. The episode stays open until it resolves.
#[utoipa::path(post, path = "/api/v1/alerts/{id}/ack", tag = "alerts", params(("id" = i64, Path)),
    request_body = Option<Acknowledge>,
    responses((status = 200, body = AlertRecord), (status = 400), (status = 401), (status = 403), (status = 404),
              (status = 409, description = "The alert is resolved")),
    security(("api_token" = [])))]
pub async fn acknowledge(
    State(state): State<AppState>,
    operator: Operator,
    ApiPath(id): ApiPath<AlertId>,
    body: JsonBody,
) -> ApiResult<Json<AlertRecord>> {
    let request: Acknowledge = if body.document().is_some() { typed(body)? } else { Acknowledge::default() };
    if request.comment.chars().count() > 2_000 {
        return Err(ApiError::field("comment", "must be at most 2000 characters"));
    }
    let by = operator.caller().name().to_owned();
    let alert = state.store.acknowledge_alert(id, &by, request.comment.trim(), state.now()).await;
    let alert = alert.map_err(|e| not_found_as(e, "alert"))?;
    crate::live::publish_alerts(&state, alert.server_id).await;
    Ok(Json(alert))
}

/// Resolves an open alert by hand. If a rule's condition still holds, its next
/// evaluation opens a new episode.
#[utoipa::path(post, path = "/api/v1/alerts/{id}/resolve", tag = "alerts", params(("id" = i64, Path)),
    responses((status = 200, body = AlertRecord), (status = 401), (status = 403), (status = 404),
              (status = 409, description = "Already resolved")),
    security(("api_token" = [])))]
pub async fn resolve(
    State(state): State<AppState>,
    operator: Operator,
    ApiPath(id): ApiPath<AlertId>,
) -> ApiResult<Json<AlertRecord>> {
    let by = operator.caller().name().to_owned();
    let alert = state.store.resolve_alert(id, &by, state.now()).await.map_err(|e| not_found_as(e, "alert"))?;
    crate::live::publish_alerts(&state, alert.server_id).await;
    Ok(Json(alert))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Rules {
    pub rules: Vec<StoredRule>,
}

#[utoipa::path(get, path = "/api/v1/rules", tag = "alerts",
    responses((status = 200, body = Rules), (status = 401)), security(("api_token" = [])))]
pub async fn list_rules(State(state): State<AppState>, _: Viewer) -> ApiResult<Json<Rules>> {
    Ok(Json(Rules { rules: state.store.list_rules().await? }))
}

#[utoipa::path(get, path = "/api/v1/rules/{id}", tag = "alerts", params(("id" = i64, Path)),
    responses((status = 200, body = StoredRule), (status = 401), (status = 404)), security(("api_token" = [])))]
pub async fn show_rule(
    State(state): State<AppState>,
    _: Viewer,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<StoredRule>> {
    Ok(Json(state.store.get_rule(id).await.map_err(|e| not_found_as(e, "rule"))?))
}

/// A rule from a request body, with the servers it names known to exist.
async fn checked_rule(state: &AppState, body: JsonBody) -> ApiResult<Rule> {
    let rule = decode_rule(&body.required()?)?;
    for (i, server) in rule.scope.servers.iter().enumerate() {
        match state.store.get_server(*server).await {
            Ok(_) => {}
            Err(StoreError::NotFound) => {
                return Err(ApiError::field(&format!("scope.servers[{i}]"), "no server has this id"));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(rule)
}

fn name_taken(error: StoreError) -> ApiError {
    match error {
        StoreError::Conflict(_) => ApiError::field("name", "another rule has this name"),
        other => not_found_as(other, "rule"),
    }
}

/// Adds a rule. A rule on a metric that a broader rule also watches overrides it for
/// the servers it names (servers, then tags, then all).
#[utoipa::path(post, path = "/api/v1/rules", tag = "alerts", request_body = Rule,
    responses((status = 201, body = StoredRule), (status = 400), (status = 401), (status = 403)),
    security(("api_token" = [])))]
pub async fn create_rule(
    State(state): State<AppState>,
    _: Admin,
    body: JsonBody,
) -> ApiResult<(StatusCode, Json<StoredRule>)> {
    let rule = checked_rule(&state, body).await?;
    let stored = state.store.create_rule(rule, state.now()).await.map_err(name_taken)?;
    state.alerting.rules.forget().await;
    Ok((StatusCode::CREATED, Json(stored)))
}

#[utoipa::path(put, path = "/api/v1/rules/{id}", tag = "alerts", params(("id" = i64, Path)), request_body = Rule,
    responses((status = 200, body = StoredRule), (status = 400), (status = 401), (status = 403), (status = 404)),
    security(("api_token" = [])))]
pub async fn update_rule(
    State(state): State<AppState>,
    _: Admin,
    ApiPath(id): ApiPath<i64>,
    body: JsonBody,
) -> ApiResult<Json<StoredRule>> {
    let rule = checked_rule(&state, body).await?;
    let stored = state.store.update_rule(id, rule, state.now()).await.map_err(name_taken)?;
    state.alerting.rules.forget().await;
    Ok(Json(stored))
}

#[utoipa::path(delete, path = "/api/v1/rules/{id}", tag = "alerts", params(("id" = i64, Path)),
    responses((status = 200, body = Done), (status = 401), (status = 403), (status = 404)),
    security(("api_token" = [])))]
pub async fn delete_rule(State(state): State<AppState>, _: Admin, ApiPath(id): ApiPath<i64>) -> ApiResult<Json<Done>> {
    state.store.delete_rule(id, state.now()).await.map_err(|e| not_found_as(e, "rule"))?;
    state.alerting.rules.forget().await;
    Ok(Json(Done { success: true }))
}

/// Most samples one backtest replays.
const BACKTEST_SAMPLES: u32 = 200_000;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BacktestRequest {
    /// A rule to try (as for POST /rules), or…
    #[schema(value_type = Option<Object>)]
    pub rule: Option<serde_json::Value>,
    /// …the id of a stored rule.
    pub rule_id: Option<i64>,
    pub server: ServerId,
    /// Unix ms; default: 7 days before `to`.
    pub from: Option<i64>,
    /// Unix ms; default: now.
    pub to: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BacktestResult {
    pub rule: Rule,
    pub server: ServerId,
    pub from: i64,
    pub to: i64,
    /// Samples replayed.
    pub samples: usize,
    /// Episodes that would have fired.
    pub fired: usize,
    pub episodes: Vec<Episode>,
}

/// Replays a server's stored history through a rule: how many times it would have
/// fired, and when.
pub async fn run_backtest(state: &AppState, request: BacktestRequest) -> ApiResult<BacktestResult> {
    let rule = match (request.rule, request.rule_id) {
        (Some(document), None) => decode_rule(&document).map_err(|e| {
            let mut errors = serverpulse_proto::fields::Errors::default();
            for (path, reasons) in e.details() {
                for reason in reasons {
                    errors.add(format!("rule.{path}"), reason.clone());
                }
            }
            ApiError::from(errors.into_error())
        })?,
        (None, Some(id)) => state.store.get_rule(id).await.map_err(|e| not_found_as(e, "rule"))?.rule,
        _ => return Err(ApiError::field("rule", "give a rule or a rule_id (one of them)")),
    };
    state.store.get_server(request.server).await.map_err(|e| not_found_as(e, "server"))?;
    let to = request.to.unwrap_or_else(|| state.now());
    let from = request.from.unwrap_or(to - 7 * 86_400_000);
    if from >= to {
        return Err(ApiError::field("from", "must be before to"));
    }
    let samples = state.store.metrics_history(request.server, from, to, BACKTEST_SAMPLES).await?;
    let mut previous_uptime = None;
    let snapshots: Vec<_> = samples
        .iter()
        .filter_map(|sample| {
            let snapshot = crate::alerting::snapshot_of_sample(sample, previous_uptime);
            previous_uptime = sample.uptime.or(previous_uptime);
            snapshot
        })
        .collect();
    let count = snapshots.len();
    let episodes = backtest(&rule, snapshots).map_err(|why| ApiError::field("rule.metric", &why))?;
    Ok(BacktestResult { rule, server: request.server, from, to, samples: count, fired: episodes.len(), episodes })
}

#[utoipa::path(post, path = "/api/v1/rules/backtest", tag = "alerts", request_body = BacktestRequest,
    responses((status = 200, body = BacktestResult), (status = 400), (status = 401), (status = 404)),
    security(("api_token" = [])))]
pub async fn backtest_rule(
    State(state): State<AppState>,
    _: Viewer,
    body: JsonBody,
) -> ApiResult<Json<BacktestResult>> {
    let request: BacktestRequest = typed(body)?;
    Ok(Json(run_backtest(&state, request).await?))
}

/// Where one rule stands on one server (and subject): `pending` (the condition
/// holds, not yet for the rule's `for`) or `firing`, with the alert it has open (`ok`
/// only for an episode kept by a hub before quiet episodes were dropped).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EpisodeView {
    pub rule_id: i64,
    pub rule: String,
    pub subject: String,
    /// `ok`, `pending` or `firing`.
    pub phase: &'static str,
    /// Since when the condition holds (pending, firing).
    pub since: Option<i64>,
    pub level: Option<Level>,
    /// The newest value the rule saw.
    pub value: Option<f64>,
    pub updated_at: i64,
    pub alert_id: Option<AlertId>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Episodes {
    pub episodes: Vec<EpisodeView>,
}

/// The rules' episodes in progress on a server (pending or firing; quiet ones are not
/// kept): what is about to fire, and what fires.
#[utoipa::path(get, path = "/api/v1/servers/{id}/episodes", tag = "alerts", params(("id" = i64, Path)),
    responses((status = 200, body = Episodes), (status = 401), (status = 404)), security(("api_token" = [])))]
pub async fn episodes(
    State(state): State<AppState>,
    _: Viewer,
    ApiPath(id): ApiPath<ServerId>,
) -> ApiResult<Json<Episodes>> {
    state.store.get_server(id).await.map_err(|e| not_found_as(e, "server"))?;
    let rules = state.store.list_rules().await?;
    let episodes = state
        .store
        .rule_states(id)
        .await?
        .into_iter()
        .map(|s| {
            let (phase, since, level) = match s.state.phase {
                Phase::Ok => ("ok", None, None),
                Phase::Pending { since, level } => ("pending", Some(since), Some(level)),
                Phase::Firing { since, level, .. } => ("firing", Some(since), Some(level)),
            };
            EpisodeView {
                rule_id: s.rule_id,
                rule: rules.iter().find(|r| r.id == s.rule_id).map(|r| r.rule.name.clone()).unwrap_or_default(),
                subject: s.subject,
                phase,
                since,
                level,
                value: s.state.value,
                updated_at: s.state.updated_at,
                alert_id: s.alert_id,
            }
        })
        .collect();
    Ok(Json(Episodes { episodes }))
}
