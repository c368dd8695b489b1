//! The HTTP routes, grouped by who calls them: agents ([`agent`]), people and scripts
//! managing the fleet ([`servers`], [`log`]), and anyone ([`meta`]).

pub mod agent;
pub mod alerts;
pub mod charts;
pub mod install;
pub mod log;
pub mod meta;
pub mod metrics;
pub mod notifications;
pub mod servers;
pub mod users;

use axum::Router;
use axum::routing::{get, post};

use crate::app::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/health", get(meta::health))
        .route("/metrics", get(metrics::exposition))
        .route("/install.sh", get(install::script))
        .route("/download/serverpulse-agent", get(install::agent_binary))
        .route("/api/openapi.json", get(meta::openapi_document))
        .route("/api/v1/agents/register", post(agent::register))
        .route("/api/v1/agents/{agent_id}/metrics", post(agent::metrics))
        .route("/api/v1/agents/{agent_id}/heartbeat", post(agent::heartbeat))
        .route("/api/v1/agents/{agent_id}/alerts", post(agent::alerts))
        .route("/api/v1/agents/{agent_id}/maintenance", post(agent::maintenance))
        .route("/api/v1/agents/{agent_id}/commands", get(agent::commands))
        .route("/api/v1/agents/{agent_id}/commands/{command_id}/ack", post(agent::ack))
        .route("/api/v1/servers", get(servers::list).post(servers::create))
        .route("/api/v1/servers/{id}", get(servers::show).patch(servers::update).delete(servers::remove))
        .route("/api/v1/servers/{id}/agent-settings", get(servers::agent_settings).put(servers::set_agent_settings))
        .route("/api/v1/servers/{id}/enrollment", post(servers::enrollment))
        .route("/api/v1/servers/{id}/credentials", post(servers::credentials))
        .route("/api/v1/servers/{id}/metrics", get(servers::metrics))
        .route("/api/v1/servers/{id}/chart", get(charts::chart))
        .route("/api/v1/servers/{id}/services", get(servers::services))
        .route("/api/v1/live", get(crate::live::stream))
        .route("/api/v1/servers/{id}/episodes", get(alerts::episodes))
        .route("/api/v1/servers/{id}/commands", get(servers::list_commands).post(servers::enqueue_command))
        .route("/api/v1/users", get(users::list).post(users::create))
        .route("/api/v1/users/{id}", axum::routing::patch(users::update).delete(users::remove))
        .route("/api/v1/tokens", get(users::list_tokens).post(users::create_token))
        .route("/api/v1/tokens/{id}", axum::routing::delete(users::revoke_token))
        .route("/api/v1/events", get(log::events))
        .route("/api/v1/events.csv", get(log::events_csv))
        .route("/api/v1/alerts", get(alerts::list))
        .route("/api/v1/alerts/{id}", get(alerts::show))
        .route("/api/v1/alerts/{id}/ack", post(alerts::acknowledge))
        .route("/api/v1/alerts/{id}/resolve", post(alerts::resolve))
        .route("/api/v1/rules", get(alerts::list_rules).post(alerts::create_rule))
        .route("/api/v1/rules/backtest", post(alerts::backtest_rule))
        .route("/api/v1/channels", get(notifications::list_channels).post(notifications::create_channel))
        .route(
            "/api/v1/channels/{id}",
            axum::routing::put(notifications::update_channel).delete(notifications::delete_channel),
        )
        .route("/api/v1/channels/{id}/test", post(notifications::test_channel))
        .route("/api/v1/silences", get(notifications::list_silences).post(notifications::create_silence))
        .route("/api/v1/silences/{id}", axum::routing::delete(notifications::delete_silence))
        .route("/api/v1/notifications", get(notifications::list_notifications))
        .route("/api/v1/rules/{id}", get(alerts::show_rule).put(alerts::update_rule).delete(alerts::delete_rule))
}
