//! The OpenAPI document, assembled from the `#[utoipa::path]` annotations on the handlers.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::live;
use crate::routes::{agent, alerts, charts, install, log, meta, metrics, notifications, servers, users};

#[derive(OpenApi)]
#[openapi(
    info(title = "ServerPulse hub API", description = "Agent protocol v1 and the fleet management API."),
    paths(
        meta::health, metrics::exposition,
        agent::register, agent::metrics, agent::heartbeat, agent::alerts, agent::maintenance, agent::commands, agent::ack,
        servers::list, servers::create, servers::show, servers::update, servers::remove,
        servers::agent_settings, servers::set_agent_settings, servers::enrollment, servers::credentials, servers::metrics, servers::services,
        charts::chart, live::stream,
        servers::list_commands, servers::enqueue_command,
        log::events, log::events_csv, users::list, users::create, users::update, users::remove,
        users::list_tokens, users::create_token, users::revoke_token,
        alerts::list, alerts::show, alerts::acknowledge, alerts::resolve,
        alerts::list_rules, alerts::show_rule, alerts::create_rule, alerts::update_rule, alerts::delete_rule,
        alerts::backtest_rule, alerts::episodes,
        notifications::list_channels, notifications::create_channel, notifications::update_channel,
        notifications::delete_channel, notifications::test_channel, notifications::list_silences,
        notifications::create_silence, notifications::delete_silence, notifications::list_notifications,
        install::script, install::agent_binary,
    ),
    modifiers(&BearerSchemes),
    tags(
        (name = "agents", description = "Called by serverpulse-agent and compatible agents (bearer: agent token)"),
        (name = "servers", description = "The inventory (bearer: API token; viewer reads, operator acts, admin manages)"),
        (name = "log", description = "The unified event log"),
        (name = "alerts", description = "Alerts (viewer reads, operator acknowledges and resolves) and rules (admin changes)"),
        (name = "notifications", description = "Channels (admin), silences (operator sets) and the delivery log"),
        (name = "users", description = "People who use the dashboard and the API (admin)"),
        (name = "meta", description = "About the hub"),
        (name = "install", description = "Installing the agent on a server"),
    )
)]
struct ApiDoc;

struct BearerSchemes;

impl Modify for BearerSchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for name in ["agent_token", "api_token"] {
            components.add_security_scheme(
                name,
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
