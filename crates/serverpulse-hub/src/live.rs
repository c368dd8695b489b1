//! Live updates for browsers: what changed, pushed over Server-Sent Events.
//!
//! Whoever changes something a dashboard shows (an agent's report or status, an alert)
//! calls [`publish_server`] or [`publish_alerts`] after the store committed it. Each
//! message is rendered once and shared by every open stream; a browser that falls behind
//! gets a `resync` event and reloads what it shows, so the hub never buffers without
//! bound for a slow client.
//!
//! Several hubs on one database pass their messages to each other through it ([`share`]):
//! a browser on one hub sees the reports another hub took in.

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::Serialize;
use serverpulse_domain::AgentStatus;
use serverpulse_store::history::NewestFigures;
use serverpulse_store::{Server, ServerId};
use tokio::sync::{broadcast, mpsc, watch};

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
    /// Where messages also go for the other hubs on the database, once [`share`] runs.
    relay: Arc<OnceLock<mpsc::Sender<LiveMessage>>>,
}

impl Default for LiveFeed {
    fn default() -> Self {
        Self { sender: broadcast::channel(BACKLOG).0, relay: Arc::default() }
    }
}

impl LiveFeed {
    pub fn send(&self, event: &'static str, data: String) {
        let message = LiveMessage { event, data: data.into() };
        if let Some(relay) = self.relay.get() {
            // Full: the other hubs' browsers miss this one (and resync on their next gap).
            let _ = relay.try_send(message.clone());
        }
        self.send_here(message);
    }

    /// To this hub's streams only.
    fn send_here(&self, message: LiveMessage) {
        // No receiver (no browser open) is the common case, not an error.
        let _ = self.sender.send(message);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<LiveMessage> {
        self.sender.subscribe()
    }

    /// Whether any stream may be open: here, or on another hub of the database. With
    /// none, there is nothing to render.
    pub fn is_watched(&self) -> bool {
        self.sender.receiver_count() > 0 || self.relay.get().is_some()
    }
}

/// Bytes of messages one broadcast carries at most (PostgreSQL's limit is 8,000).
const BROADCAST_BYTES: usize = 7_000;

/// What goes between hubs: who sent it, and the messages.
#[derive(Debug, Serialize, serde::Deserialize)]
struct Broadcast {
    from: String,
    messages: Vec<(String, String)>,
}

/// The events browsers know, by name, for messages from other hubs.
fn known_event(name: &str) -> Option<&'static str> {
    ["server", "alerts"].into_iter().find(|known| *known == name)
}

/// Where the store lets other hubs share the database: passes this hub's messages to
/// them (batched: one broadcast carries what queued meanwhile) and theirs to this hub's
/// streams, until `stop` turns true. Returns at once for a database of one hub.
pub async fn share(state: AppState, mut stop: watch::Receiver<bool>) {
    if !state.store.is_shared() {
        return;
    }
    let me = match serverpulse_domain::Secret::generate() {
        Ok(secret) => secret.expose()[..16].to_owned(),
        Err(e) => {
            tracing::error!(error = %e, "no randomness for a hub id: live updates stay on this hub");
            return;
        }
    };
    let (relay, mut outgoing) = mpsc::channel::<LiveMessage>(BACKLOG);
    if state.live.relay.set(relay).is_err() {
        return; // shared already (one serve loop per state)
    }
    let follower = tokio::spawn(follow(state.clone(), me.clone()));
    loop {
        let first = tokio::select! {
            message = outgoing.recv() => message,
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() { break; }
                continue;
            }
        };
        let Some(first) = first else { break };
        let mut size = first.data.len();
        let mut messages = vec![(first.event.to_owned(), first.data.to_string())];
        while size < BROADCAST_BYTES {
            match outgoing.try_recv() {
                Ok(message) if size + message.data.len() <= BROADCAST_BYTES => {
                    size += message.data.len();
                    messages.push((message.event.to_owned(), message.data.to_string()));
                }
                _ => break, // the rest waits for the next broadcast (or is too big to share)
            }
        }
        let payload = serde_json::json!(Broadcast { from: me.clone(), messages }).to_string();
        if payload.len() > BROADCAST_BYTES + 1_000 {
            tracing::warn!(bytes = payload.len(), "a live update too large to share with other hubs");
            continue;
        }
        if let Err(e) = state.store.broadcast(&payload).await {
            tracing::warn!(error = %e, "cannot share live updates with other hubs");
        }
    }
    follower.abort();
}

/// Hands other hubs' messages to this hub's streams, following again after a failure.
async fn follow(state: AppState, me: String) {
    let feed = state.live.clone();
    let deliver = move |payload: String| {
        let Ok(broadcast) = serde_json::from_str::<Broadcast>(&payload) else { return };
        if broadcast.from == me {
            return;
        }
        for (event, data) in broadcast.messages {
            if let Some(event) = known_event(&event) {
                feed.send_here(LiveMessage { event, data: data.into() });
            }
        }
    };
    loop {
        if let Err(e) = state.store.follow_broadcasts(&deliver).await {
            tracing::warn!(error = %e, "lost the live updates of other hubs; following again");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
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
        let metric = |figure: fn(&NewestFigures) -> Option<f64>| server.last_metrics.as_ref().and_then(figure);
        Self {
            id: server.id,
            name: &server.name,
            status: connection(server),
            agent_version: server.agent_version.as_deref(),
            at: server.last_metrics_at,
            last_contact: server.agent_last_contact,
            cpu: metric(|m| m.cpu_usage),
            memory: metric(|m| m.memory_usage),
            disk: metric(|m| m.disk_usage),
            load: metric(|m| m.load_average),
            uptime: server.last_metrics.as_ref().and_then(|m| m.uptime),
            network_rx_rate: metric(|m| m.network_rx_rate),
            network_tx_rate: metric(|m| m.network_tx_rate),
            disk_read_rate: metric(|m| m.disk_io_read_rate),
            disk_write_rate: metric(|m| m.disk_io_write_rate),
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
