//! The dashboard: server-rendered pages (askama templates under `templates/`), made live
//! by a little JavaScript of ours (`web/app.js`) over the SSE feed of [`crate::live`].
//!
//! Pages only read. Everything a page changes goes through the REST API under
//! `/api/v1` with the session cookie and its CSRF token, so validation and role checks
//! live in one place whether a person clicks or a script calls. The exceptions are the
//! forms that manage the session itself ([`session`]).

pub mod alerts_page;
pub mod assets;
pub mod fleet;
pub mod format;
pub mod log_page;
pub mod server_page;
pub mod session;
pub mod settings;

use askama::Template;
use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serverpulse_domain::Role;

use crate::app::AppState;
use crate::error::ApiError;
pub use session::Signed;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/fleet") }))
        .route("/assets/{version}/{name}", get(assets::serve))
        .route("/login", get(session::show_login).post(session::login))
        .route("/setup", get(session::show_setup).post(session::setup))
        .route("/logout", post(session::logout))
        .route("/account", get(session::show_account))
        .route("/account/password", post(session::change_password))
        .route("/fleet", get(fleet::page))
        .route("/alerts", get(alerts_page::page))
        .route("/logs", get(log_page::page))
        .route("/servers/new", get(server_page::add_page))
        .route("/servers/{id}", get(server_page::page))
        .route("/servers/{id}/settings", get(settings::server))
        .route("/settings", get(settings::index))
        .route("/settings/rules", get(settings::rules))
        .route("/settings/channels", get(settings::channels))
        .route("/settings/silences", get(settings::silences))
        .route("/settings/users", get(settings::users))
}

/// What every page's frame shows: who is signed in, the navigation, the bell.
#[derive(Debug, Clone)]
pub struct Chrome {
    pub title: String,
    pub asset: &'static str,
    /// Which navigation entry is current.
    pub nav: &'static str,
    pub email: String,
    pub role: &'static str,
    pub signed_in: bool,
    pub is_admin: bool,
    pub is_operator: bool,
    pub csrf: String,
    pub open_alerts: u32,
}

impl Chrome {
    /// The frame of the pages before sign-in.
    pub fn anonymous(title: &str) -> Self {
        Self {
            title: title.to_owned(),
            asset: assets::VERSION,
            nav: "",
            email: String::new(),
            role: "",
            signed_in: false,
            is_admin: false,
            is_operator: false,
            csrf: String::new(),
            open_alerts: 0,
        }
    }

    pub async fn load(state: &AppState, signed: &Signed, nav: &'static str, title: &str) -> Result<Self, PageError> {
        let counts = state.store.fleet_counts().await.map_err(ApiError::from)?;
        Ok(Self::with_counts(signed, nav, title, counts.values().map(|c| c.open_alerts).sum()))
    }

    pub fn with_counts(signed: &Signed, nav: &'static str, title: &str, open_alerts: u32) -> Self {
        Self {
            title: title.to_owned(),
            asset: assets::VERSION,
            nav,
            email: signed.user.email.clone(),
            role: signed.user.role.as_str(),
            signed_in: true,
            is_admin: signed.allows(Role::Admin),
            is_operator: signed.allows(Role::Operator),
            csrf: signed.csrf(),
            open_alerts,
        }
    }
}

/// Renders a template into an HTML answer.
pub fn render<T: Template>(page: &T) -> Result<Html<String>, PageError> {
    page.render().map(Html).map_err(|e| PageError::from(ApiError::Internal(format!("template: {e}"))))
}

/// A failure shown as a page (the API's errors are JSON; a person gets HTML).
#[derive(Debug)]
pub struct PageError {
    status: StatusCode,
    message: String,
}

impl PageError {
    pub fn new(status: StatusCode, message: &str) -> Self {
        Self { status, message: message.to_owned() }
    }

    pub fn forbidden(role: Role) -> Self {
        Self::new(StatusCode::FORBIDDEN, &format!("This page needs the {role} role. Ask an administrator."))
    }
}

impl From<ApiError> for PageError {
    fn from(error: ApiError) -> Self {
        let status = error.status();
        match &error {
            ApiError::Internal(cause) => tracing::error!(error = %cause, "internal error while rendering a page"),
            ApiError::Unavailable(cause) => tracing::warn!(error = %cause, "storage unavailable for a page"),
            _ => {}
        }
        Self { status, message: error.to_string() }
    }
}

#[derive(Debug, Template)]
#[template(path = "error.html")]
struct ErrorPage {
    chrome: Chrome,
    status: u16,
    message: String,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let page = ErrorPage {
            chrome: Chrome::anonymous("Error"),
            status: self.status.as_u16(),
            message: self.message.clone(),
        };
        let body = page.render().unwrap_or_else(|_| self.message.clone());
        let mut response = (self.status, Html(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}
