//! Assembling the hub: shared state, the router, and the serve loop with its
//! background tasks and graceful shutdown.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use serverpulse_store::Store;
use tokio::net::TcpListener;

use crate::clock::Clock;
use crate::config::Settings;
use crate::error::ApiError;
use crate::routes;

/// What every handler can reach: a handle on the hub's [`HubState`]. axum clones it for
/// every request (each layer and handler service holds one), so a clone is one
/// reference count, not one per shared part.
#[derive(Clone, Debug)]
pub struct AppState(Arc<HubState>);

impl std::ops::Deref for AppState {
    type Target = HubState;

    fn deref(&self) -> &HubState {
        &self.0
    }
}

/// The parts of the hub every handler and background task shares.
pub struct HubState {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub settings: Arc<Settings>,
    /// What alert evaluations share: each server's lock, the cached rules and audience
    /// (see [`crate::alerting`]).
    pub alerting: crate::alerting::Alerting,
    /// Agents' identities, cached for their authentication.
    pub agents: Arc<crate::auth::AgentIdentities>,
    /// The client notifications go out with.
    pub http: reqwest::Client,
    /// Rung when notifications were queued, so they leave at once.
    pub wake_notifier: Arc<tokio::sync::Notify>,
    /// Changes pushed to open dashboards.
    pub live: crate::live::LiveFeed,
    /// Refused sign-ins per client address.
    pub login_throttle: Arc<crate::web::session::LoginThrottle>,
    /// The group-commit queue reports go through.
    pub ingest: crate::ingest::Ingest,
    /// Where stored reports are pushed too, when export is configured.
    pub exporter: Option<crate::export::Exporter>,
    /// Whether this hub runs the background work on its database (see
    /// [`crate::leadership`]); from the start where no other hub can share it.
    pub leader: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for HubState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubState").field("clock", &self.clock).field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl AppState {
    /// The state with its ingest writer running on the current tokio runtime.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, settings: Settings) -> Self {
        let (state, writer) = Self::with_paused_writer(store, clock, settings);
        tokio::spawn(writer.run());
        state
    }

    /// The state and its ingest writer, not yet running (tests drive it by steps).
    pub fn with_paused_writer(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        settings: Settings,
    ) -> (Self, crate::ingest::Writer) {
        let alerting = crate::alerting::Alerting::default();
        let (ingest, writer) = crate::ingest::Ingest::new(
            crate::ingest::WriterParts { store: store.clone(), alerting: alerting.clone(), clock: clock.clone() },
            &settings,
        );
        let http = crate::notifier::http_client();
        let exporter = settings.export_url.as_deref().map(|url| crate::export::Exporter::start(url, http.clone()));
        let leader = Arc::new(std::sync::atomic::AtomicBool::new(!store.is_shared()));
        let state = Self(Arc::new(HubState {
            leader,
            ingest,
            exporter,
            store,
            clock,
            settings: Arc::new(settings),
            alerting,
            agents: Arc::default(),
            http,
            wake_notifier: Arc::default(),
            live: crate::live::LiveFeed::default(),
            login_throttle: Arc::default(),
        }));
        (state, writer)
    }

    /// Whether this hub runs the background work (sweeps, notifications, summaries,
    /// retention) now.
    pub fn leads(&self) -> bool {
        self.leader.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn now(&self) -> i64 {
        self.clock.now_ms()
    }
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    // Buffering stops a little past the limit; the body extractor turns that into 413.
    let limit = state.settings.body_limit;
    routes::router()
        .merge(crate::web::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn(every_request))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint".to_owned())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed("method not allowed on this endpoint".to_owned())
}

/// What the browser may do with our answers: only our own scripts run, no site frames
/// our pages (clickjacking), no content-type guessing, no full URLs sent elsewhere.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// What every request goes through, in one layer (each layer is a service cloned per
/// request): its answer gets the security headers, and it is logged.
async fn every_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let route = request.extensions().get::<axum::extract::MatchedPath>().cloned();
    let started = std::time::Instant::now();
    let mut response = next.run(request).await;
    add_security_headers(response.headers_mut());
    log_request(&method, route.as_ref().map(|r| r.as_str()), response.status(), started.elapsed());
    response
}

fn add_security_headers(headers: &mut axum::http::HeaderMap) {
    use axum::http::{HeaderValue, header};
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
}

/// One log line per request: method, route template (never the raw path, which may
/// carry ids), status and duration. Headers are never logged: they carry credentials.
fn log_request(
    method: &axum::http::Method,
    route: Option<&str>,
    status: axum::http::StatusCode,
    took: std::time::Duration,
) {
    let route = route.unwrap_or("unmatched");
    let elapsed_ms = took.as_secs_f64() * 1000.0;
    let code = status.as_u16();
    if status.is_server_error() {
        tracing::warn!(%method, route, status = code, elapsed_ms, "request failed");
    } else {
        tracing::debug!(%method, route, status = code, elapsed_ms, "request");
    }
}

/// Serves until `shutdown` resolves, running the background tasks beside the router.
/// In-flight requests finish before this returns.
pub async fn serve(listener: TcpListener, state: AppState, shutdown: impl Future<Output = ()> + Send + 'static) {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let leadership = tokio::spawn(crate::leadership::run(state.clone(), stop_rx.clone()));
    let sharing = tokio::spawn(crate::live::share(state.clone(), stop_rx.clone()));
    let sweeper = tokio::spawn(crate::sweeper::run(state.clone(), stop_rx.clone()));
    let notifier = tokio::spawn(crate::notifier::run(state.clone(), stop_rx.clone()));
    let retention = tokio::spawn(crate::retention::run(state.clone(), stop_rx.clone()));
    let summaries = tokio::spawn(crate::summaries::run(state.clone(), stop_rx));
    crate::connections::serve(listener, router(state), shutdown).await;
    let _ = stop_tx.send(true);
    let _ = sweeper.await;
    let _ = notifier.await;
    let _ = retention.await;
    let _ = summaries.await;
    let _ = sharing.await;
    let _ = leadership.await;
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown requested; finishing in-flight requests");
}
