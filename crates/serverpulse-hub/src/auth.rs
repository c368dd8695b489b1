//! Who is calling: agents by their bearer token, people and scripts by API token or
//! browser session, each with a role.
//!
//! A browser session is a cookie holding a 256-bit secret (only its SHA-256 is stored).
//! Requests that change something and ride on the cookie must also carry the session's
//! CSRF token in `X-CSRF-Token` (or `_csrf` in a form): a hash of the same secret under
//! another label, so a page of ours can embed it and another site cannot know it.
//!
//! Roles are capabilities. A handler that needs an operator takes an [`Operator`]
//! argument; the only way to get one is to present a token whose user has at least that
//! role. Failing that, the request ends with 401 (no or bad credentials) or 403 (role too
//! low) before the handler runs.
//!
//! Agents authenticate on every report, so their identities are kept in memory for a
//! few seconds ([`AgentIdentities`]); every change of an agent's credentials or status
//! made through this hub forgets them at once.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use serverpulse_domain::{Role, Secret, TokenDigest};
use serverpulse_store::{AgentIdentity, ServerId, Store, StoreError, User};

use crate::app::AppState;
use crate::error::ApiError;

/// The token after `Bearer `, if the header has that form.
pub fn bearer_token(parts: &Parts) -> Option<&str> {
    bearer_token_from_headers(&parts.headers)
}

pub fn bearer_token_from_headers(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// An authenticated agent: the `{agent_id}` in the path owns the bearer token.
#[derive(Debug, Clone)]
pub struct AuthenticatedAgent {
    pub server_id: ServerId,
    pub agent_id: String,
    /// The digest of its token: the key that signs what the hub sends it.
    pub token: TokenDigest,
}

impl FromRequestParts<AppState> for AuthenticatedAgent {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let agent_id = agent_id_from_path(parts.uri.path()).ok_or(ApiError::Unauthorized)?;
        let token = bearer_token(parts).ok_or(ApiError::Unauthorized)?;
        // Hash before looking anything up, so unknown ids and wrong tokens cost the same.
        let presented = TokenDigest::of(token);
        let identity = state.agents.get(&*state.store, &agent_id).await?;
        match identity {
            Some(identity) if identity.enabled && identity.token == presented => {
                Ok(Self { server_id: identity.server_id, agent_id: identity.agent_id, token: identity.token })
            }
            _ => Err(ApiError::Unauthorized),
        }
    }
}

/// The agent identities the store gave, kept until the store's agent-changes counter
/// moves (`Store::agent_changes`, read at most every [`AgentIdentities::CHECK_EVERY`]): a
/// change made anywhere — this hub, another one sharing the database, the CLI — applies
/// here within that time, and reports need no read of their agent's identity meanwhile.
/// This hub's own changes apply at once ([`AgentIdentities::forget_all`]). Only
/// identities that exist are kept, so the map is bounded by the fleet.
#[derive(Debug, Default)]
pub struct AgentIdentities {
    /// Each identity with the counter as it was before the identity was read.
    known: std::sync::RwLock<std::collections::HashMap<String, (u64, AgentIdentity)>>,
    /// The counter as last read, and when.
    counter: std::sync::Mutex<Option<(std::time::Instant, u64)>>,
}

impl AgentIdentities {
    pub const CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

    pub async fn get(&self, store: &dyn Store, agent_id: &str) -> Result<Option<AgentIdentity>, StoreError> {
        let counter = self.counter(store).await?;
        if let Ok(known) = self.known.read()
            && let Some((read_under, identity)) = known.get(agent_id)
            && *read_under == counter
        {
            return Ok(Some(identity.clone()));
        }
        let found = store.agent_identity(agent_id).await?;
        if let Ok(mut known) = self.known.write() {
            match &found {
                Some(identity) => known.insert(agent_id.to_owned(), (counter, identity.clone())),
                None => known.remove(agent_id),
            };
        }
        Ok(found)
    }

    /// The agent-changes counter, read from the store when last read a while ago.
    async fn counter(&self, store: &dyn Store) -> Result<u64, StoreError> {
        if let Ok(counter) = self.counter.lock()
            && let Some((read_at, value)) = *counter
            && read_at.elapsed() < Self::CHECK_EVERY
        {
            return Ok(value);
        }
        let value = store.agent_changes().await?;
        if let Ok(mut counter) = self.counter.lock() {
            *counter = Some((std::time::Instant::now(), value));
        }
        Ok(value)
    }

    /// After any change of agents' credentials or status: the next request of each reads
    /// the store.
    pub fn forget_all(&self) {
        if let Ok(mut known) = self.known.write() {
            known.clear();
        }
    }
}

/// `/api/v1/agents/{agent_id}/…` → `agent_id` (percent-decoded).
fn agent_id_from_path(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/api/v1/agents/")?;
    let raw = rest.split('/').next()?;
    let decoded = percent_decode(raw)?;
    (!decoded.is_empty()).then_some(decoded)
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The prefix of every API token, so leaked tokens are recognisable by scanners.
pub const API_TOKEN_PREFIX: &str = "sp_";

/// A freshly minted API token: `sp_<id>_<secret>`. Only the id and the secret's digest are stored.
#[derive(Debug)]
pub struct MintedApiToken {
    pub id: String,
    pub secret: Secret,
}

impl MintedApiToken {
    pub fn generate() -> Result<Self, serverpulse_domain::secret::RandomnessUnavailable> {
        let id = Secret::generate()?.expose()[..16].to_owned();
        Ok(Self { id, secret: Secret::generate()? })
    }

    /// The full token as the user must present it (shown once).
    pub fn presentable(&self) -> String {
        format!("{API_TOKEN_PREFIX}{}_{}", self.id, self.secret.expose())
    }
}

/// Splits `sp_<id>_<secret>`.
fn split_api_token(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(API_TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 16 && secret.len() == 64).then_some((id, secret))
}

/// The cookie a browser session rides on.
pub const SESSION_COOKIE: &str = "sp_session";
/// The header a session's state-changing requests carry the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The value of cookie `name`, if the request has it.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
        .filter(|value| !value.is_empty())
}

/// The CSRF token of the session whose cookie secret is `secret`.
pub fn csrf_token(secret: &str) -> String {
    TokenDigest::of(&format!("csrf:{secret}")).to_hex()
}

/// Compares a presented CSRF token with the expected one in constant time.
pub fn csrf_matches(presented: Option<&str>, expected: &str) -> bool {
    use subtle::ConstantTimeEq;
    presented.is_some_and(|p| p.len() == expected.len() && bool::from(p.as_bytes().ct_eq(expected.as_bytes())))
}

/// Methods that never change anything, so need no CSRF token.
fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// A person or script authenticated by API token or browser session.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: User,
    /// The session's id (digest of its cookie secret) when the caller is a browser.
    pub session: Option<TokenDigest>,
}

impl Caller {
    async fn authenticate(parts: &Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(token) = bearer_token(parts) {
            return Self::by_api_token(token, state).await;
        }
        let secret = cookie(&parts.headers, SESSION_COOKIE).ok_or(ApiError::Unauthorized)?;
        let id = TokenDigest::of(secret);
        let user = state.store.session_user(&id, state.now()).await?.ok_or(ApiError::Unauthorized)?;
        if !is_safe(&parts.method) {
            let presented = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
            if !csrf_matches(presented, &csrf_token(secret)) {
                return Err(ApiError::Forbidden(
                    "missing or wrong CSRF token: reload the page and try again".to_owned(),
                ));
            }
        }
        Ok(Self { user, session: Some(id) })
    }

    async fn by_api_token(token: &str, state: &AppState) -> Result<Self, ApiError> {
        let (id, secret) = split_api_token(token).ok_or(ApiError::Unauthorized)?;
        let presented = TokenDigest::of(secret);
        let Some((stored, user)) = state.store.api_token(id).await? else {
            return Err(ApiError::Unauthorized);
        };
        if stored.secret != presented {
            return Err(ApiError::Unauthorized);
        }
        Ok(Self { user, session: None })
    }

    /// How this caller is named in the event log.
    pub fn name(&self) -> &str {
        &self.user.email
    }

    pub fn require(self, needed: Role) -> Result<Self, ApiError> {
        if self.user.role.allows(needed) {
            Ok(self)
        } else {
            Err(ApiError::Forbidden(format!("this action needs the {needed} role; your token has {}", self.user.role)))
        }
    }
}

macro_rules! capability {
    ($(#[$doc:meta])* $name:ident, $role:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name(Caller);

        impl $name {
            pub fn caller(&self) -> &Caller {
                &self.0
            }
        }

        impl FromRequestParts<AppState> for $name {
            type Rejection = ApiError;

            async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
                Caller::authenticate(parts, state).await?.require($role).map(Self)
            }
        }
    };
}

capability!(
    /// May read everything.
    Viewer,
    Role::Viewer
);
capability!(
    /// May act on servers (queue commands) and read.
    Operator,
    Role::Operator
);
capability!(
    /// May manage servers, users and tokens.
    Admin,
    Role::Admin
);

impl Admin {
    /// The local console: whoever runs `serverpulse` on the hub's machine with access
    /// to its database is an administrator already.
    pub fn console() -> Self {
        Self(Caller {
            user: User { id: 0, email: "console".to_owned(), role: Role::Admin, created_at: 0 },
            session: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_ids_come_from_the_path() {
        assert_eq!(agent_id_from_path("/api/v1/agents/abc/metrics").as_deref(), Some("abc"));
        assert_eq!(agent_id_from_path("/api/v1/agents/web%2D01/heartbeat").as_deref(), Some("web-01"));
        assert_eq!(agent_id_from_path("/api/v1/servers/1"), None);
        assert_eq!(agent_id_from_path("/api/v1/agents/%zz/x"), None);
    }

    #[test]
    fn cookies_and_csrf() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, "theme=dark; sp_session=abc".parse().unwrap());
        headers.append(header::COOKIE, "other=1".parse().unwrap());
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "other"), Some("1"));
        assert_eq!(cookie(&headers, "sp"), None);
        let expected = csrf_token("abc");
        assert_ne!(expected, csrf_token("abd"));
        assert!(csrf_matches(Some(&expected), &expected));
        assert!(!csrf_matches(Some(&csrf_token("abd")), &expected));
        assert!(!csrf_matches(None, &expected));
        assert!(!csrf_matches(Some(""), &expected));
    }

    #[test]
    fn api_tokens_split() {
        let minted = MintedApiToken::generate().unwrap();
        let token = minted.presentable();
        let (id, secret) = split_api_token(&token).unwrap();
        assert_eq!(id, minted.id);
        assert_eq!(secret, minted.secret.expose());
        assert!(split_api_token("sp_short_x").is_none());
        assert!(split_api_token("Bearer").is_none());
    }
}
