//! Signing in and out of the dashboard: the first-run administrator, the login form with
//! its rate limit, the session cookie, password change, and [`Signed`], the extractor
//! every page takes (no session → the login page, or the first-run page while no user
//! exists).
//!
//! Forms without a session yet (login, first run) are protected against cross-site
//! posting by a double-submit token: a random value both in a cookie and in the form.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use askama::Template;
use axum::Extension;
use axum::Form;
use axum::extract::{ConnectInfo, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serverpulse_domain::{Role, Secret, TokenDigest};
use serverpulse_store::{NewSession, NewUser, User};

use crate::admin::MIN_PASSWORD_LEN;
use crate::app::AppState;
use crate::auth::{SESSION_COOKIE, cookie, csrf_matches, csrf_token};
use crate::passwords;
use crate::web::{Chrome, PageError, render};

/// How long a session lasts from sign-in.
pub const SESSION_TTL_MS: i64 = 7 * 24 * 3600 * 1000;
/// The double-submit cookie of the login and first-run forms.
const FORM_COOKIE: &str = "sp_form";
/// Refused sign-ins from one address within [`THROTTLE_WINDOW_MS`] before it must wait.
pub const MAX_FAILED_LOGINS: u32 = 5;
pub const THROTTLE_WINDOW_MS: i64 = 10 * 60 * 1000;

/// A signed-in person, for pages.
#[derive(Debug, Clone)]
pub struct Signed {
    pub user: User,
    pub session: TokenDigest,
    secret: String,
}

impl Signed {
    pub fn csrf(&self) -> String {
        csrf_token(&self.secret)
    }

    pub fn allows(&self, role: Role) -> bool {
        self.user.role.allows(role)
    }

    /// Checks the `_csrf` field of a form posted with this session.
    fn check_form(&self, presented: &str) -> Result<(), PageError> {
        if csrf_matches(Some(presented), &self.csrf()) {
            Ok(())
        } else {
            Err(PageError::new(
                StatusCode::FORBIDDEN,
                "This form expired or came from another site: reload the page and try again.",
            ))
        }
    }
}

impl FromRequestParts<AppState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if let Some(secret) = cookie(&parts.headers, SESSION_COOKIE) {
            let session = TokenDigest::of(secret);
            match state.store.session_user(&session, state.now()).await {
                Ok(Some(user)) => return Ok(Self { user, session, secret: secret.to_owned() }),
                Ok(None) => {}
                Err(e) => return Err(PageError::from(crate::error::ApiError::from(e)).into_response()),
            }
        }
        match state.store.user_count().await {
            Ok(0) => Err(Redirect::to("/setup").into_response()),
            Ok(_) => {
                let next = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
                Err(Redirect::to(&format!("/login?next={}", encode_query(next))).into_response())
            }
            Err(e) => Err(PageError::from(crate::error::ApiError::from(e)).into_response()),
        }
    }
}

/// Refused sign-ins per client address, forgotten after the window.
#[derive(Debug, Default)]
pub struct LoginThrottle {
    failures: Mutex<HashMap<String, (u32, i64)>>,
}

impl LoginThrottle {
    /// Seconds to wait before `client` may try again, if it must.
    pub fn wait(&self, client: &str, now: i64) -> Option<i64> {
        let failures = self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (count, since) = failures.get(client)?;
        let until = since + THROTTLE_WINDOW_MS;
        (*count >= MAX_FAILED_LOGINS && now < until).then(|| (until - now + 999) / 1000)
    }

    pub fn failed(&self, client: &str, now: i64) {
        let mut failures = self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if failures.len() > 10_000 {
            failures.retain(|_, (_, since)| now < *since + THROTTLE_WINDOW_MS);
        }
        let entry = failures.entry(client.to_owned()).or_insert((0, now));
        if now >= entry.1 + THROTTLE_WINDOW_MS {
            *entry = (0, now);
        }
        entry.0 += 1;
    }

    pub fn succeeded(&self, client: &str) {
        self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(client);
    }
}

/// The client's address when the server was started with connection info (as `serve`
/// does); tests that mount the router alone share one key.
fn client_of(connect: Option<Extension<ConnectInfo<SocketAddr>>>) -> String {
    connect.map(|Extension(ConnectInfo(address))| address.ip().to_string()).unwrap_or_else(|| "local".to_owned())
}

/// Percent-encodes a value for a query string.
pub fn encode_query(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~/".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Where to go after signing in: only a path of this site (never `//elsewhere`).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(path) if path.starts_with('/') && !path.starts_with("//") && !path.contains('\\') => path.to_owned(),
        _ => "/fleet".to_owned(),
    }
}

fn secure_flag(state: &AppState) -> &'static str {
    if state.settings.public_url.starts_with("https://") { "; Secure" } else { "" }
}

fn set_cookie(response: &mut Response, value: String) {
    if let Ok(value) = HeaderValue::from_str(&value) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// A fresh double-submit token, set as a cookie on the response that shows the form.
fn form_token(state: &AppState) -> Result<(String, String), PageError> {
    let token = Secret::generate().map_err(crate::error::ApiError::from)?.expose().to_owned();
    let cookie =
        format!("{FORM_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age=3600{}", secure_flag(state));
    Ok((token, cookie))
}

fn check_form_token(headers: &HeaderMap, presented: &str) -> Result<(), PageError> {
    match cookie(headers, FORM_COOKIE) {
        Some(expected) if csrf_matches(Some(presented), expected) => Ok(()),
        _ => Err(PageError::new(
            StatusCode::FORBIDDEN,
            "This form expired or came from another site: reload the page and try again.",
        )),
    }
}

/// Starts a session for `user` and sends the browser on to `next`.
async fn start_session(state: &AppState, user: &User, next: &str) -> Result<Response, PageError> {
    let secret = Secret::generate().map_err(crate::error::ApiError::from)?;
    let now = state.now();
    let session = NewSession { id: secret.digest(), user_id: user.id, expires_at: now + SESSION_TTL_MS };
    state.store.create_session(session, now).await.map_err(crate::error::ApiError::from)?;
    let mut response = Redirect::to(next).into_response();
    set_cookie(
        &mut response,
        format!(
            "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{}",
            secret.expose(),
            SESSION_TTL_MS / 1000,
            secure_flag(state)
        ),
    );
    set_cookie(&mut response, format!("{FORM_COOKIE}=; Path=/; Max-Age=0"));
    Ok(response)
}

#[derive(Debug, Template)]
#[template(path = "login.html")]
struct LoginPage {
    chrome: Chrome,
    form_token: String,
    email: String,
    next: String,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

async fn login_page(
    state: &AppState,
    status: StatusCode,
    email: String,
    next: String,
    error: Option<String>,
) -> Result<Response, PageError> {
    let (token, cookie) = form_token(state)?;
    let page = LoginPage { chrome: Chrome::anonymous("Sign in"), form_token: token, email, next, error };
    let mut response = (status, render(&page)?).into_response();
    set_cookie(&mut response, cookie);
    Ok(response)
}

/// `GET /login`
pub async fn show_login(State(state): State<AppState>, Query(query): Query<NextQuery>) -> Result<Response, PageError> {
    if state.store.user_count().await.map_err(crate::error::ApiError::from)? == 0 {
        return Ok(Redirect::to("/setup").into_response());
    }
    login_page(&state, StatusCode::OK, String::new(), safe_next(query.next.as_deref()), None).await
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: String,
    #[serde(default)]
    _form: String,
}

/// `POST /login`
pub async fn login(
    State(state): State<AppState>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, PageError> {
    check_form_token(&headers, &form._form)?;
    let client = client_of(connect);
    let now = state.now();
    let next = safe_next(Some(&form.next));
    let email = form.email.trim().to_owned();
    if let Some(wait) = state.login_throttle.wait(&client, now) {
        let message =
            format!("Too many failed sign-ins from your address: try again in {} minute(s).", (wait + 59) / 60);
        let mut response = login_page(&state, StatusCode::TOO_MANY_REQUESTS, email, next, Some(message)).await?;
        if let Ok(value) = HeaderValue::from_str(&wait.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return Ok(response);
    }
    let found = state.store.user_by_email(&email).await.map_err(crate::error::ApiError::from)?;
    // Verify against a real hash even for unknown addresses, so both cost the same.
    let stored = found.as_ref().map(|f| f.password_hash.as_str()).unwrap_or(dummy_hash());
    let verified = passwords::verify(&form.password, stored);
    match found {
        Some(found) if verified => {
            state.login_throttle.succeeded(&client);
            start_session(&state, &found.user, &next).await
        }
        _ => {
            state.login_throttle.failed(&client, now);
            if let Err(e) = state.store.record_failed_login(&email, now).await {
                tracing::warn!(error = %e, "cannot log a refused sign-in");
            }
            let message = "Wrong e-mail address or password.".to_owned();
            login_page(&state, StatusCode::UNAUTHORIZED, email, next, Some(message)).await
        }
    }
}

/// An argon2id hash of a password nobody knows, made once: checking an unknown address
/// against it costs what checking a known one costs.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| passwords::hash("no user has this password").unwrap_or_default())
}

#[derive(Debug, Template)]
#[template(path = "setup.html")]
struct SetupPage {
    chrome: Chrome,
    form_token: String,
    email: String,
    errors: HashMap<&'static str, String>,
}

impl SetupPage {
    fn error(&self, field: &str) -> &str {
        self.errors.get(field).map(String::as_str).unwrap_or("")
    }
}

async fn setup_page(
    state: &AppState,
    status: StatusCode,
    email: String,
    errors: HashMap<&'static str, String>,
) -> Result<Response, PageError> {
    let (token, cookie) = form_token(state)?;
    let page = SetupPage { chrome: Chrome::anonymous("Create the administrator"), form_token: token, email, errors };
    let mut response = (status, render(&page)?).into_response();
    set_cookie(&mut response, cookie);
    Ok(response)
}

/// `GET /setup`: only while no user exists.
pub async fn show_setup(State(state): State<AppState>) -> Result<Response, PageError> {
    if state.store.user_count().await.map_err(crate::error::ApiError::from)? > 0 {
        return Ok(Redirect::to("/login").into_response());
    }
    setup_page(&state, StatusCode::OK, String::new(), HashMap::new()).await
}

#[derive(Debug, Deserialize)]
pub struct SetupForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
    #[serde(default)]
    _form: String,
}

/// Problems with a new password, by field.
fn check_new_password(password: &str, confirm: &str, errors: &mut HashMap<&'static str, String>) {
    if password.chars().count() < MIN_PASSWORD_LEN {
        errors.insert("password", format!("Use at least {MIN_PASSWORD_LEN} characters."));
    } else if password != confirm {
        errors.insert("confirm", "The two passwords differ.".to_owned());
    }
}

/// `POST /setup`: creates the first administrator and signs them in.
pub async fn setup(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<SetupForm>,
) -> Result<Response, PageError> {
    check_form_token(&headers, &form._form)?;
    let email = form.email.trim().to_owned();
    let mut errors = HashMap::new();
    if let Err(why) = crate::admin::check_email(&email) {
        errors.insert("email", format!("This {why}."));
    }
    check_new_password(&form.password, &form.confirm, &mut errors);
    if !errors.is_empty() {
        return setup_page(&state, StatusCode::BAD_REQUEST, email, errors).await;
    }
    let password_hash = passwords::hash(&form.password).map_err(|e| crate::error::ApiError::Internal(e.to_string()))?;
    let new = NewUser { email, role: Role::Admin, password_hash };
    match state.store.create_first_user(new, state.now()).await.map_err(crate::error::ApiError::from)? {
        Some(user) => start_session(&state, &user, "/fleet").await,
        // Someone else finished the first run meanwhile.
        None => Ok(Redirect::to("/login").into_response()),
    }
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    _csrf: String,
}

/// `POST /logout`
pub async fn logout(
    State(state): State<AppState>,
    signed: Signed,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    signed.check_form(&form._csrf)?;
    state.store.delete_session(&signed.session, state.now()).await.map_err(crate::error::ApiError::from)?;
    let mut response = Redirect::to("/login").into_response();
    set_cookie(&mut response, format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"));
    Ok(response)
}

#[derive(Debug, Template)]
#[template(path = "account.html")]
struct AccountPage {
    chrome: Chrome,
    errors: HashMap<&'static str, String>,
    saved: bool,
}

impl AccountPage {
    fn error(&self, field: &str) -> &str {
        self.errors.get(field).map(String::as_str).unwrap_or("")
    }
}

/// `GET /account`
pub async fn show_account(State(state): State<AppState>, signed: Signed) -> Result<Response, PageError> {
    let chrome = Chrome::load(&state, &signed, "account", "Your account").await?;
    Ok(render(&AccountPage { chrome, errors: HashMap::new(), saved: false })?.into_response())
}

#[derive(Debug, Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    current: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
    #[serde(default)]
    _csrf: String,
}

/// `POST /account/password`: needs the current password; ends the user's other sessions.
pub async fn change_password(
    State(state): State<AppState>,
    signed: Signed,
    Form(form): Form<PasswordForm>,
) -> Result<Response, PageError> {
    signed.check_form(&form._csrf)?;
    let mut errors = HashMap::new();
    let stored = state.store.user(signed.user.id).await.map_err(crate::error::ApiError::from)?;
    if !passwords::verify(&form.current, &stored.password_hash) {
        errors.insert("current", "This is not your current password.".to_owned());
    }
    check_new_password(&form.password, &form.confirm, &mut errors);
    let chrome = Chrome::load(&state, &signed, "account", "Your account").await?;
    if !errors.is_empty() {
        let page = AccountPage { chrome, errors, saved: false };
        return Ok((StatusCode::BAD_REQUEST, render(&page)?).into_response());
    }
    let hash = passwords::hash(&form.password).map_err(|e| crate::error::ApiError::Internal(e.to_string()))?;
    state
        .store
        .set_password(signed.user.id, &hash, Some(&signed.session), state.now())
        .await
        .map_err(crate::error::ApiError::from)?;
    Ok(render(&AccountPage { chrome, errors, saved: true })?.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        assert_eq!(safe_next(Some("/servers/3?range=6h")), "/servers/3?range=6h");
        assert_eq!(safe_next(Some("//evil.example/")), "/fleet");
        assert_eq!(safe_next(Some("https://evil.example/")), "/fleet");
        assert_eq!(safe_next(Some("/\\evil.example")), "/fleet");
        assert_eq!(safe_next(None), "/fleet");
    }

    #[test]
    fn the_dummy_hash_is_a_real_hash() {
        assert!(!passwords::verify("", dummy_hash()));
        assert!(dummy_hash().starts_with("$argon2id$"));
    }

    #[test]
    fn throttle_counts_failures_per_client_within_the_window() {
        let throttle = LoginThrottle::default();
        for _ in 0..MAX_FAILED_LOGINS {
            assert_eq!(throttle.wait("a", 0), None);
            throttle.failed("a", 0);
        }
        assert_eq!(throttle.wait("a", 1_000), Some(599));
        assert_eq!(throttle.wait("b", 1_000), None, "per client");
        assert_eq!(throttle.wait("a", THROTTLE_WINDOW_MS), None, "the window passes");
        throttle.failed("a", THROTTLE_WINDOW_MS);
        assert_eq!(throttle.wait("a", THROTTLE_WINDOW_MS), None, "a new window starts");
        throttle.succeeded("a");
    }
}
