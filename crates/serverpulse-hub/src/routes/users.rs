//! Users and API tokens over REST (admin only): list, add with a role, change the role,
//! remove; mint and revoke tokens. Passwords and token secrets are shown once, kept only
//! as hashes.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serverpulse_domain::Role;
use serverpulse_store::{ApiToken, User, UserId};

use crate::admin::{self, not_found_as};
use crate::app::AppState;
use crate::auth::Admin;
use crate::body::{ApiPath, JsonBody};
use crate::error::{ApiError, ApiResult};
use crate::routes::servers::{Done, typed};

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Users {
    pub users: Vec<User>,
}

#[utoipa::path(get, path = "/api/v1/users", tag = "users",
    responses((status = 200, body = Users), (status = 401), (status = 403)), security(("api_token" = [])))]
pub async fn list(State(state): State<AppState>, _: Admin) -> ApiResult<Json<Users>> {
    Ok(Json(Users { users: state.store.list_users().await? }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    pub email: String,
    /// `viewer`, `operator` or `admin`.
    pub role: String,
    /// At least 12 characters; generated (and returned once) when absent.
    pub password: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedUser {
    pub success: bool,
    pub user: User,
    /// Only when the hub generated it: shown this once.
    pub password: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = CreateUser,
    responses((status = 201, body = CreatedUser), (status = 400), (status = 401), (status = 403),
              (status = 409, description = "A user with this e-mail address exists")),
    security(("api_token" = [])))]
pub async fn create(
    State(state): State<AppState>,
    caller: Admin,
    body: JsonBody,
) -> ApiResult<(StatusCode, Json<CreatedUser>)> {
    let request: CreateUser = typed(body)?;
    let role =
        Role::parse(&request.role).ok_or_else(|| ApiError::field("role", "must be viewer, operator or admin"))?;
    let (user, password) = admin::add_user(&state, &caller, &request.email, role, request.password).await?;
    Ok((StatusCode::CREATED, Json(CreatedUser { success: true, user, password })))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    /// `viewer`, `operator` or `admin`.
    pub role: String,
}

/// Changes a user's role. The last administrator cannot be demoted (409).
#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "users", params(("id" = i64, Path)), request_body = UpdateUser,
    responses((status = 200, body = User), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409)),
    security(("api_token" = [])))]
pub async fn update(
    State(state): State<AppState>,
    caller: Admin,
    ApiPath(id): ApiPath<UserId>,
    body: JsonBody,
) -> ApiResult<Json<User>> {
    let request: UpdateUser = typed(body)?;
    let role =
        Role::parse(&request.role).ok_or_else(|| ApiError::field("role", "must be viewer, operator or admin"))?;
    let user = state.store.set_user_role(id, role, caller.caller().name(), state.now()).await;
    Ok(Json(user.map_err(|e| not_found_as(e, "user"))?))
}

/// Removes a user with their sessions and API tokens. The last administrator stays (409).
#[utoipa::path(delete, path = "/api/v1/users/{id}", tag = "users", params(("id" = i64, Path)),
    responses((status = 200, body = Done), (status = 401), (status = 403), (status = 404), (status = 409)),
    security(("api_token" = [])))]
pub async fn remove(
    State(state): State<AppState>,
    caller: Admin,
    ApiPath(id): ApiPath<UserId>,
) -> ApiResult<Json<Done>> {
    state.store.delete_user(id, caller.caller().name(), state.now()).await.map_err(|e| not_found_as(e, "user"))?;
    Ok(Json(Done { success: true }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenEntry {
    #[serde(flatten)]
    pub token: ApiToken,
    pub email: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Tokens {
    pub tokens: Vec<TokenEntry>,
}

/// API tokens in use (never their secrets).
#[utoipa::path(get, path = "/api/v1/tokens", tag = "users",
    responses((status = 200, body = Tokens), (status = 401), (status = 403)), security(("api_token" = [])))]
pub async fn list_tokens(State(state): State<AppState>, _: Admin) -> ApiResult<Json<Tokens>> {
    let tokens = state.store.list_api_tokens().await?;
    Ok(Json(Tokens { tokens: tokens.into_iter().map(|(token, email)| TokenEntry { token, email }).collect() }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// What the token is for (`grafana`, `ci`).
    pub name: String,
    /// Whose rights it carries.
    pub email: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    pub success: bool,
    #[serde(flatten)]
    pub token: ApiToken,
    /// The token to present as `Authorization: Bearer …`: shown this once.
    pub secret: String,
}

#[utoipa::path(post, path = "/api/v1/tokens", tag = "users", request_body = CreateToken,
    responses((status = 201, body = CreatedToken), (status = 400), (status = 401), (status = 403), (status = 404)),
    security(("api_token" = [])))]
pub async fn create_token(
    State(state): State<AppState>,
    caller: Admin,
    body: JsonBody,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    let request: CreateToken = typed(body)?;
    let (token, secret) = admin::create_token(&state, &caller, &request.email, &request.name).await?;
    Ok((StatusCode::CREATED, Json(CreatedToken { success: true, token, secret })))
}

#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "users", params(("id" = String, Path)),
    responses((status = 200, body = Done), (status = 401), (status = 403), (status = 404)), security(("api_token" = [])))]
pub async fn revoke_token(
    State(state): State<AppState>,
    caller: Admin,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Done>> {
    let revoked = state.store.revoke_api_token(&id, caller.caller().name(), state.now()).await;
    revoked.map_err(|e| not_found_as(e, "token"))?;
    Ok(Json(Done { success: true }))
}
