//! Putting the agent on a server: `GET /install.sh?token=…` (a script for one server,
//! with its enrollment token) and `GET /download/serverpulse-agent` (the binary).

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serverpulse_domain::TokenDigest;

use crate::app::AppState;
use crate::body::ApiQuery;
use crate::error::{ApiError, ApiResult};

const SCRIPT: &str = include_str!("../../assets/install.sh");
const UNIT: &str = include_str!("../../assets/serverpulse-agent.service");

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct InstallQuery {
    /// The enrollment token printed when the server was added.
    pub token: String,
}

/// The install script for the server the token belongs to. The token is looked up, not
/// used: it is spent when the agent registers.
#[utoipa::path(get, path = "/install.sh", tag = "install", params(InstallQuery),
    responses((status = 200, description = "POSIX shell script", content_type = "text/x-shellscript"),
              (status = 401, description = "Token unknown, used or expired")))]
pub async fn script(State(state): State<AppState>, ApiQuery(query): ApiQuery<InstallQuery>) -> ApiResult<Response> {
    let token = query.token.trim();
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::EnrollmentRefused);
    }
    let server = state
        .store
        .enrollment_server(&TokenDigest::of(token), state.now())
        .await?
        .ok_or(ApiError::EnrollmentRefused)?;
    let name: String = server.name.chars().filter(|c| !c.is_control() && *c != '"' && *c != '\'').collect();
    let text = render(&state.settings.public_url, token, &name);
    let mut response = text.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/x-shellscript; charset=utf-8"));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The script with its blanks filled in. Every value is checked to be shell-safe where
/// it is inserted (hex token, URL without quotes, name without quotes or controls).
pub fn render(hub_url: &str, token: &str, server_name: &str) -> String {
    SCRIPT
        .replace("@UNIT_FILE@", UNIT.trim_end())
        .replace("@HUB_URL@", hub_url)
        .replace("@ENROLLMENT_TOKEN@", token)
        .replace("@SERVER_NAME@", server_name)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct DownloadQuery {
    /// `uname -m` of the target; the hub serves the build for its own architecture.
    pub arch: Option<String>,
}

/// The agent binary this hub ships with (`agent_binary` in the configuration).
#[utoipa::path(get, path = "/download/serverpulse-agent", tag = "install", params(DownloadQuery),
    responses((status = 200, description = "The executable", content_type = "application/octet-stream"),
              (status = 404, description = "No agent binary for that architecture here")))]
pub async fn agent_binary(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<DownloadQuery>,
) -> ApiResult<Response> {
    let arch = std::env::consts::ARCH;
    if let Some(wanted) = query.arch.as_deref()
        && wanted != arch
        && !(wanted == "amd64" && arch == "x86_64")
    {
        return Err(ApiError::NotFound(format!("this hub has an agent for {arch} only, not {wanted}")));
    }
    let path = state.settings.agent_binary.clone();
    let bytes = tokio::fs::read(&path).await.map_err(|_| {
        ApiError::NotFound(format!(
            "no agent binary at {} on the hub (build it with `cargo build --release -p serverpulse-agent`)",
            path.display()
        ))
    })?;
    let mut response = Response::new(Body::from(bytes));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    Ok(response)
}
