//! One server's page (status, live charts over any range, filesystems, interfaces, top
//! processes, services, system, its alerts and events) and the page that adds a server
//! and waits for its agent.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use serverpulse_domain::Role;
use serverpulse_store::{AlertQuery, EventQuery, Server, ServerId};

use crate::admin::not_found_as;
use crate::app::AppState;
use crate::body::ApiPath;
use crate::error::ApiError;
use crate::live::{ServerFigures, connection};
use crate::web::fleet::Gauge;
use crate::web::format;
use crate::web::{Chrome, PageError, Signed, render};

/// The ranges offered as buttons (a custom range is typed in beside them).
pub const RANGES: [&str; 5] = ["1h", "6h", "24h", "7d", "30d"];

#[derive(Debug)]
pub struct FilesystemRow {
    pub mount: String,
    pub device: String,
    pub fstype: String,
    pub used: String,
    pub size: String,
    pub gauge: Gauge,
}

#[derive(Debug)]
pub struct InterfaceRow {
    pub name: String,
    pub rx_rate: String,
    pub tx_rate: String,
    pub rx_total: String,
    pub tx_total: String,
}

#[derive(Debug)]
pub struct ProcessRow {
    pub pid: u64,
    pub name: String,
    pub cpu: String,
    pub memory: String,
}

#[derive(Debug)]
pub struct ServiceRow {
    pub name: String,
    pub status: &'static str,
    pub sub_state: String,
    pub since: String,
    pub since_iso: String,
}

#[derive(Debug)]
pub struct AlertRow {
    pub id: i64,
    pub severity: &'static str,
    pub status: &'static str,
    pub message: String,
    pub started: String,
}

#[derive(Debug)]
pub struct EventRow {
    pub kind: &'static str,
    pub severity: &'static str,
    pub message: String,
    pub at: String,
    pub at_iso: String,
}

#[derive(Debug, Template)]
#[template(path = "server.html")]
pub struct ServerPage {
    pub chrome: Chrome,
    pub id: ServerId,
    pub name: String,
    pub status: &'static str,
    pub hostname: String,
    pub ip: String,
    pub version: String,
    pub tags: Vec<String>,
    pub seen: String,
    pub cpu: Gauge,
    pub memory: Gauge,
    pub disk: Gauge,
    pub load: String,
    pub uptime: String,
    pub network: String,
    pub disk_io: String,
    pub range: String,
    pub ranges: [&'static str; 5],
    pub filesystems: Vec<FilesystemRow>,
    pub interfaces: Vec<InterfaceRow>,
    pub processes: Vec<ProcessRow>,
    pub services: Vec<ServiceRow>,
    pub system: Vec<(String, String)>,
    pub alerts: Vec<AlertRow>,
    pub events: Vec<EventRow>,
}

#[derive(Debug, Deserialize)]
pub struct ServerQuery {
    pub range: Option<String>,
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "–".to_owned(),
        other => other.to_string(),
    }
}

fn filesystems(detail: &Value) -> Vec<FilesystemRow> {
    let Some(list) = detail["filesystems"].as_array() else { return Vec::new() };
    list.iter()
        .map(|fs| FilesystemRow {
            mount: text(&fs["mount"]),
            device: text(&fs["device"]),
            fstype: text(&fs["fstype"]),
            used: fs["used"].as_f64().map_or_else(|| "–".to_owned(), format::bytes),
            size: fs["total"].as_f64().map_or_else(|| "–".to_owned(), format::bytes),
            gauge: Gauge::of(fs["percent"].as_f64()),
        })
        .collect()
}

fn interfaces(detail: &Value) -> Vec<InterfaceRow> {
    let Some(map) = detail["interfaces"].as_object() else { return Vec::new() };
    map.iter()
        .map(|(name, i)| InterfaceRow {
            name: name.clone(),
            rx_rate: format::rate(i["rx_rate"].as_f64()),
            tx_rate: format::rate(i["tx_rate"].as_f64()),
            rx_total: i["rx_bytes"].as_f64().map_or_else(|| "–".to_owned(), format::bytes),
            tx_total: i["tx_bytes"].as_f64().map_or_else(|| "–".to_owned(), format::bytes),
        })
        .collect()
}

fn processes(detail: &Value) -> Vec<ProcessRow> {
    let Some(list) = detail["processes"]["top_cpu"].as_array() else { return Vec::new() };
    list.iter()
        .map(|p| ProcessRow {
            pid: p["pid"].as_u64().unwrap_or(0),
            name: text(&p["name"]),
            cpu: format::percent(p["cpu"].as_f64()),
            memory: p["memory"].as_f64().map_or_else(|| "–".to_owned(), format::bytes),
        })
        .collect()
}

/// What the agent said about its system at registration, as label/value pairs.
fn system(server: &Server) -> Vec<(String, String)> {
    let config = server.agent_config.value();
    let Some(info) = config["system_info"].as_object() else { return Vec::new() };
    info.iter().filter(|(_, v)| !v.is_object() && !v.is_array()).map(|(k, v)| (k.replace('_', " "), text(v))).collect()
}

/// `GET /servers/{id}`
pub async fn page(
    State(state): State<AppState>,
    signed: Signed,
    ApiPath(id): ApiPath<ServerId>,
    Query(query): Query<ServerQuery>,
) -> Result<Response, PageError> {
    let server = state.store.get_server(id).await.map_err(|e| not_found_as(e, "server"))?;
    let now = state.now();
    let range = query.range.filter(|r| RANGES.contains(&r.as_str())).unwrap_or_else(|| "1h".to_owned());
    let latest = match server.last_metrics_at {
        Some(at) => state.store.metrics_history(id, at, at, 1).await.map_err(ApiError::from)?.pop(),
        None => None,
    };
    let detail = latest.as_ref().map(|s| s.raw["metrics"]["detail"].clone()).unwrap_or(Value::Null);
    let services = state.store.services(id).await.map_err(ApiError::from)?;
    let alerts = state
        .store
        .alerts(AlertQuery { server_id: Some(id), limit: 20, ..AlertQuery::default() })
        .await
        .map_err(ApiError::from)?;
    let events = state
        .store
        .events(EventQuery { server_id: Some(id), limit: 20, ..EventQuery::default() })
        .await
        .map_err(ApiError::from)?;
    let figures = ServerFigures::of(&server);
    let chrome = Chrome::load(&state, &signed, "fleet", &server.name).await?;
    let page = ServerPage {
        chrome,
        id,
        name: server.name.clone(),
        status: connection(&server),
        hostname: server.hostname.clone().unwrap_or_else(|| "–".to_owned()),
        ip: server.ip.to_string(),
        version: server.agent_version.clone().unwrap_or_else(|| "–".to_owned()),
        tags: server.tags.clone(),
        seen: format::ago(server.agent_last_contact, now),
        cpu: Gauge::of(figures.cpu),
        memory: Gauge::of(figures.memory),
        disk: Gauge::of(figures.disk),
        load: format::decimal(figures.load),
        uptime: figures.uptime.map_or_else(|| "–".to_owned(), format::duration),
        network: format!("↓ {} ↑ {}", format::rate(figures.network_rx_rate), format::rate(figures.network_tx_rate)),
        disk_io: format!("R {} W {}", format::rate(figures.disk_read_rate), format::rate(figures.disk_write_rate)),
        range,
        ranges: RANGES,
        filesystems: filesystems(&detail),
        interfaces: interfaces(&detail),
        processes: processes(&detail),
        services: services
            .into_iter()
            .map(|s| ServiceRow {
                name: s.name,
                status: s.status.as_str(),
                sub_state: s.sub_state.unwrap_or_default(),
                since: format::ago(Some(s.since), now),
                since_iso: format::timestamp(s.since),
            })
            .collect(),
        system: system(&server),
        alerts: alerts
            .into_iter()
            .map(|a| AlertRow {
                id: a.id,
                severity: a.severity.as_str(),
                status: a.status.as_str(),
                message: a.message,
                started: format::ago(Some(a.started_at), now),
            })
            .collect(),
        events: events
            .into_iter()
            .map(|e| EventRow {
                kind: e.kind.as_str(),
                severity: e.severity.as_str(),
                message: e.message,
                at: format::ago(Some(e.at), now),
                at_iso: format::timestamp(e.at),
            })
            .collect(),
    };
    Ok(render(&page)?.into_response())
}

#[derive(Debug, Template)]
#[template(path = "add_server.html")]
pub struct AddServerPage {
    pub chrome: Chrome,
}

/// `GET /servers/new` (admin): the form; `app.js` posts it to the API, shows the install
/// command, and waits on the live feed for the agent.
pub async fn add_page(State(state): State<AppState>, signed: Signed) -> Result<Response, PageError> {
    if !signed.allows(Role::Admin) {
        return Err(PageError::forbidden(Role::Admin));
    }
    let chrome = Chrome::load(&state, &signed, "add", "Add a server").await?;
    Ok(render(&AddServerPage { chrome })?.into_response())
}
