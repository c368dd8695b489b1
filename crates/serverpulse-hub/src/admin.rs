//! Operations on the inventory, users and tokens, shared by the REST API and the
//! `serverpulse` command line so both enforce the same rules. Each takes the
//! capability it needs ([`Admin`], [`Operator`]) as proof of the caller's role.

use std::net::IpAddr;

use serde::Serialize;
use serde_json::Value;
use serverpulse_domain::secret::RandomnessUnavailable;
use serverpulse_domain::{Role, Secret};
use serverpulse_proto::command::CommandType;
use serverpulse_proto::settings::AgentSettings;
use serverpulse_store::{
    AgentCredentials, ApiToken, CommandRecord, EnrollmentGrant, NewApiToken, NewCommand, NewServer, NewUser, Server,
    ServerId, ServerPatch, StoreError, User, Versioned,
};

use crate::app::AppState;
use crate::auth::{Admin, MintedApiToken, Operator};
use crate::error::ApiError;
use crate::passwords;

impl From<RandomnessUnavailable> for ApiError {
    fn from(e: RandomnessUnavailable) -> Self {
        Self::Internal(e.to_string())
    }
}

/// A one-time enrollment token, shown once, and how to use it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct IssuedEnrollment {
    pub enrollment_token: String,
    /// Unix milliseconds.
    pub expires_at: i64,
    /// One line to run as root on the server.
    pub install_command: String,
}

/// The answer to adding a server.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AddedServer {
    #[schema(value_type = Object)]
    pub server: Server,
    #[serde(flatten)]
    pub enrollment: IssuedEnrollment,
}

/// Credentials for an agent configured by hand (pre-provisioned), shown once.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct IssuedCredentials {
    pub server_id: ServerId,
    pub agent_id: String,
    pub auth_token: String,
}

/// A server name: 1–128 printable characters.
pub fn check_name(field: &str, name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 128 || name.chars().any(char::is_control) {
        return Err(ApiError::field(field, "must be 1 to 128 printable characters"));
    }
    Ok(name.to_owned())
}

/// Tags as given, trimmed and without repeats; at most 20 of 1 to 64 characters.
pub fn check_tags(tags: &[String]) -> Result<Vec<String>, ApiError> {
    if tags.len() > 20 {
        return Err(ApiError::field("tags", "at most 20 tags"));
    }
    let mut checked: Vec<String> = Vec::with_capacity(tags.len());
    for (i, tag) in tags.iter().enumerate() {
        let tag = tag.trim();
        if tag.is_empty() || tag.chars().count() > 64 || tag.chars().any(char::is_control) {
            return Err(ApiError::field(&format!("tags[{i}]"), "must be 1 to 64 printable characters"));
        }
        if !checked.iter().any(|t| t == tag) {
            checked.push(tag.to_owned());
        }
    }
    Ok(checked)
}

pub fn parse_ip(field: &str, text: &str) -> Result<IpAddr, ApiError> {
    text.trim()
        .parse::<IpAddr>()
        .map(|ip| ip.to_canonical())
        .map_err(|_| ApiError::field(field, "must be an IPv4 or IPv6 address"))
}

fn enrollment(state: &AppState, now: i64) -> Result<(Secret, EnrollmentGrant), ApiError> {
    let secret = Secret::generate()?;
    let grant = EnrollmentGrant { token: secret.digest(), expires_at: now + state.settings.enrollment_ttl_ms };
    Ok((secret, grant))
}

fn issued(state: &AppState, secret: &Secret, expires_at: i64) -> IssuedEnrollment {
    IssuedEnrollment {
        enrollment_token: secret.expose().to_owned(),
        expires_at,
        install_command: format!(
            "curl -fsSL '{}/install.sh?token={}' | sudo sh",
            state.settings.public_url,
            secret.expose()
        ),
    }
}

pub async fn add_server(state: &AppState, _: &Admin, name: &str, ip: IpAddr) -> Result<AddedServer, ApiError> {
    let name = check_name("name", name)?;
    let now = state.now();
    let (secret, grant) = enrollment(state, now)?;
    let expires_at = grant.expires_at;
    let server = state.store.create_server(NewServer { name, ip }, grant, now).await?;
    tracing::info!(server_id = server.id, "server added");
    Ok(AddedServer { server, enrollment: issued(state, &secret, expires_at) })
}

pub async fn new_enrollment(state: &AppState, _: &Admin, server: ServerId) -> Result<IssuedEnrollment, ApiError> {
    let now = state.now();
    let (secret, grant) = enrollment(state, now)?;
    let expires_at = grant.expires_at;
    state.store.add_enrollment(server, grant, now).await.map_err(|e| not_found_as(e, "server"))?;
    Ok(issued(state, &secret, expires_at))
}

pub async fn issue_credentials(state: &AppState, _: &Admin, server: ServerId) -> Result<IssuedCredentials, ApiError> {
    let secret = Secret::generate()?;
    let agent_id = uuid::Uuid::new_v4().to_string();
    state
        .store
        .set_agent_credentials(
            server,
            AgentCredentials { agent_id: agent_id.clone(), token: secret.digest() },
            state.now(),
        )
        .await
        .map_err(|e| not_found_as(e, "server"))?;
    state.agents.forget_all();
    Ok(IssuedCredentials { server_id: server, agent_id, auth_token: secret.expose().to_owned() })
}

pub async fn update_server(
    state: &AppState,
    _: &Admin,
    server: ServerId,
    patch: ServerPatch,
) -> Result<Server, ApiError> {
    let updated = state.store.update_server(server, patch, state.now()).await.map_err(|e| not_found_as(e, "server"))?;
    state.agents.forget_all(); // the agent may have been disabled
    Ok(updated)
}

/// Replaces a server's agent settings (validated by the caller); agents pick them up at
/// their next heartbeat.
pub async fn set_agent_settings(
    state: &AppState,
    _: &Admin,
    server: ServerId,
    settings: AgentSettings,
) -> Result<Versioned<AgentSettings>, ApiError> {
    state.store.set_agent_settings(server, settings, state.now()).await.map_err(|e| not_found_as(e, "server"))
}

pub async fn remove_server(state: &AppState, _: &Admin, server: ServerId) -> Result<(), ApiError> {
    state.store.delete_server(server, state.now()).await.map_err(|e| not_found_as(e, "server"))?;
    state.agents.forget_all();
    Ok(())
}

/// Adds a user. Without a password one is generated and returned (shown once).
/// The shortest password a user may choose.
pub const MIN_PASSWORD_LEN: usize = 12;

/// Whether `email` (already trimmed) is plausibly an e-mail address.
pub fn check_email(email: &str) -> Result<(), String> {
    let plausible = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !email.contains(char::is_whitespace)
        });
    if plausible { Ok(()) } else { Err("must be an e-mail address".to_owned()) }
}

pub async fn add_user(
    state: &AppState,
    _: &Admin,
    email: &str,
    role: Role,
    password: Option<String>,
) -> Result<(User, Option<String>), ApiError> {
    let email = email.trim().to_owned();
    check_email(&email).map_err(|why| ApiError::field("email", &why))?;
    let (password, generated) = match password {
        Some(p) if p.chars().count() >= MIN_PASSWORD_LEN => (p, false),
        Some(_) => return Err(ApiError::field("password", &format!("must be at least {MIN_PASSWORD_LEN} characters"))),
        None => (passwords::generate()?, true),
    };
    let password_hash = passwords::hash(&password).map_err(|e| ApiError::Internal(e.to_string()))?;
    let user =
        state.store.create_user(NewUser { email, role, password_hash }, state.now()).await.map_err(|e| match e {
            StoreError::Conflict(_) => ApiError::Conflict("a user with this e-mail address exists".to_owned()),
            other => other.into(),
        })?;
    Ok((user, generated.then_some(password)))
}

/// Creates an API token for the user with `email`; returns it with the secret (shown once).
pub async fn create_token(
    state: &AppState,
    _: &Admin,
    email: &str,
    name: &str,
) -> Result<(ApiToken, String), ApiError> {
    let name = check_name("name", name)?;
    let user = state.store.user_by_email(email.trim()).await?.ok_or_else(|| ApiError::not_found("user"))?;
    let minted = MintedApiToken::generate()?;
    let token = state
        .store
        .create_api_token(
            NewApiToken { id: minted.id.clone(), user_id: user.user.id, name, secret: minted.secret.digest() },
            state.now(),
        )
        .await?;
    Ok((token, minted.presentable()))
}

pub async fn enqueue_command(
    state: &AppState,
    operator: &Operator,
    server: ServerId,
    kind: CommandType,
    args: Value,
    ttl_ms: Option<i64>,
) -> Result<CommandRecord, ApiError> {
    let now = state.now();
    let ttl = ttl_ms.unwrap_or(state.settings.command_ttl_ms);
    state
        .store
        .enqueue_command(
            server,
            NewCommand {
                id: uuid::Uuid::new_v4().to_string(),
                kind,
                args,
                expires_at: now + ttl,
                issued_by: operator.caller().name().to_owned(),
            },
            now,
        )
        .await
        .map_err(|e| not_found_as(e, "server"))
}

/// `StoreError::NotFound` named after what was looked for.
pub fn not_found_as(error: StoreError, what: &str) -> ApiError {
    match error {
        StoreError::NotFound => ApiError::not_found(what),
        other => other.into(),
    }
}
