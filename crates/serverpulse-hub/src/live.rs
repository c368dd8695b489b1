//! Live updates for browsers: what changed, pushed over Server-Sent Events.
//!
//! Whoever changes something a dashboard shows (an agent's report or status, an alert)
//! calls [`publish_server`] or [`publish_alerts`] after the store committed it. Each
//! message is rendered once and shared by every open stream; a browser that falls behind
//! gets a `resync` event and reloads what it shows, so the hub never buffers without
//! bound for a slow client.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::Serialize;
use serverpulse_domain::AgentStatus;
use serverpulse_store::{Server, ServerId};
use tokio::sync::broadcast;

use crate::app::AppState;
use crate::auth::Viewer;

/// Messages kept for slow streams before they are told to resync.
const BACKLOG: usize = 1024;

/// One message to every open stream: an SSE event name and its JSON data.
#[derive(Debug, Clone)]
pub struct LiveMessage {
    pub event: &'static str,
    pub data: Arc<str>,
}

/// The fan-out point. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LiveFeed {
    sender: broadcast::Sender<LiveMessage>,
}

impl Default for LiveFeed {
    fn default() -> Self {
        Self { sender: broadcast::channel(BACKLOG).0 }
    }
}

impl LiveFeed {
    pub fn send(&self, event: &'static str, data: String) {
        // No receiver (no browser open) is the common case, not an error.
        let _ = self.sender.send(LiveMessage { event, data: data.into() });
    }

    pub fn subscribe(&self) -> broadcast::Receiver<LiveMessage> {
        self.sender.subscribe()
    }

    /// Whether any stream is open: with none, there is nothing to render.
    pub fn is_watched(&self) -> bool {
        self.sender.receiver_count() > 0
    }
}

/// What the fleet overview and a server page update from: the newest figures of one server.
#[derive(Debug, Serialize)]
pub struct ServerFigures<'a> {
    pub id: ServerId,
    pub name: &'a str,
    pub status: &'static str,
    pub agent_version: Option<&'a str>,
    /// Agent time of the newest report, Unix ms.
    pub at: Option<i64>,
    pub last_contact: Option<i64>,
    pub cpu: Option<f64>,
    pub memory: Option<f64>,
    pub disk: Option<f64>,
    pub load: Option<f64>,
    pub uptime: Option<u64>,
    pub network_rx_rate: Option<f64>,
    pub network_tx_rate: Option<f64>,
    pub disk_read_rate: Option<f64>,
    pub disk_write_rate: Option<f64>,
}

/// `online`, `disconnected` or `never` (no agent has ever reported), the three states
/// the dashboard distinguishes.
pub fn connection(server: &Server) -> &'static str {
    match (server.agent_status, server.agent_last_contact) {
        (_, None) => "never",
        (AgentStatus::Active, Some(_)) => "online",
        _ => "disconnected",
    }
}

impl<'a> ServerFigures<'a> {
    pub fn of(server: &'a Server) -> Self {
        let metric = |name: &str| server.last_metrics.as_ref().and_then(|m| m[name].as_f64());
        Self {
            id: server.id,
            name: &server.name,
            status: connection(server),
            agent_version: server.agent_version.as_deref(),
            at: server.last_metrics_at,
            last_contact: server.agent_last_contact,
            cpu: metric("cpu_usage"),
            memory: metric("memory_usage"),
            disk: metric("disk_usage"),
            load: metric("load_average"),
            uptime: server.last_metrics.as_ref().and_then(|m| m["uptime"].as_u64()),
            network_rx_rate: metric("network_rx_rate"),
            network_tx_rate: metric("network_tx_rate"),
            disk_read_rate: metric("disk_io_read_rate"),
            disk_write_rate: metric("disk_io_write_rate"),
        }
    }
}

/// Tells browsers the newest state of one server (after its change was committed).
pub async fn publish_server(state: &AppState, id: ServerId) {
    if !state.live.is_watched() {
        return;
    }
    match state.store.get_server(id).await {
        Ok(server) => publish_server_row(state, &server),
        // Removed meanwhile: nothing to show.
        Err(serverpulse_store::StoreError::NotFound) => {}
        Err(e) => tracing::warn!(server_id = id, error = %e, "cannot read a server for a live update"),
    }
}

/// [`publish_server`] with the row in hand.
pub fn publish_server_row(state: &AppState, server: &Server) {
    if !state.live.is_watched() {
        return;
    }
    match serde_json::to_string(&ServerFigures::of(server)) {
        Ok(data) => state.live.send("server", data),
        Err(e) => tracing::warn!(server_id = server.id, error = %e, "cannot render a live update"),
    }
}

/// Tells browsers that alerts changed on `server`, with the fleet's open alert count
/// (the bell) and the server's own counts (its fleet row).
pub async fn publish_alerts(state: &AppState, server: ServerId) {
    if !state.live.is_watched() {
        return;
    }
    match state.store.fleet_counts().await {
        Ok(counts) => {
            let open: u32 = counts.values().map(|c| c.open_alerts).sum();
            let own = counts.get(&server).copied().unwrap_or_default();
            let data = serde_json::json!({"server_id": server, "open": open,
                "server_open": own.open_alerts, "server_failed_services": own.failed_services});
            state.live.send("alerts", data.to_string());
        }
        Err(e) => tracing::warn!(error = %e, "cannot count open alerts for a live update"),
    }
}

/// `GET /api/v1/live`: the event stream (`server`, `alerts`, `resync`), for any signed-in
/// user or API token.
#[utoipa::path(get, path = "/api/v1/live", tag = "servers",
    responses((status = 200, content_type = "text/event-stream",
        description = "Server-Sent Events: `server` (a server's newest figures and status), `alerts` ({server_id}: its alerts changed), `resync` (events were missed: reload)"),
        (status = 401)),
    security(("api_token" = [])))]
pub async fn stream(State(state): State<AppState>, _: Viewer) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let receiver = state.live.subscribe();
    let events = futures_util::stream::unfold(receiver, |mut receiver| async move {
        let event = match receiver.recv().await {
            Ok(message) => Event::default().event(message.event).data(&*message.data),
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                Event::default().event("resync").data(format!("{{\"missed\":{missed}}}"))
            }
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok(event), receiver))
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(20)))
}
