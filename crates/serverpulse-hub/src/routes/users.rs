//! Users over REST (admin only): list them, add one with a role. The password is chosen
//! by the caller or generated and shown once; it is kept only as an argon2id hash.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serverpulse_domain::Role;
use serverpulse_store::User;

use crate::admin;
use crate::app::AppState;
use crate::auth::Admin;
use crate::body::JsonBody;
use crate::error::{ApiError, ApiResult};
use crate::routes::servers::typed;

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
