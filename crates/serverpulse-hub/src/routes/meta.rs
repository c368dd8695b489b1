//! Endpoints about the hub itself: liveness and the OpenAPI document.

use axum::Json;
use axum::extract::State;
use serverpulse_proto::responses::Health;

use crate::app::AppState;

/// Liveness; needs no credentials.
#[utoipa::path(get, path = "/api/v1/health", tag = "meta",
    responses((status = 200, description = "The hub is serving", body = Health)))]
pub async fn health(State(state): State<AppState>) -> Json<Health> {
    Json(Health { status: "ok".to_owned(), version: env!("CARGO_PKG_VERSION").to_owned(), leader: state.leads() })
}

/// This API's OpenAPI 3.1 description, generated from the handlers.
pub async fn openapi_document() -> Json<utoipa::openapi::OpenApi> {
    Json(crate::openapi::document())
}
