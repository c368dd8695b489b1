//! Every kind of bad request gets a 4xx with a JSON error naming the problem, the hub
//! keeps serving, and the database is byte-for-byte what it was.

use std::io::Write;

use reqwest::Method;
use serde_json::json;
use serverpulse_domain::Role;
use serverpulse_hub::config::Settings;

use crate::support::{gzip, spawn_with};

#[derive(Clone, Copy)]
enum Who {
    Nobody,
    Agent,
    OtherAgent,
    Malformed,
    Wrong,
    Admin,
}

enum Body {
    None,
    Json(serde_json::Value),
    Raw(Vec<u8>),
}

struct Case {
    name: &'static str,
    method: Method,
    /// `{agent}`, `{server}` and `{command}` are filled in.
    path: &'static str,
    who: Who,
    headers: &'static [(&'static str, &'static str)],
    body: Body,
    status: u16,
    /// A key expected in `details` (for 400s).
    field: Option<&'static str>,
}

const LIMIT: usize = 64 * 1024;

fn report() -> serde_json::Value {
    json!({"timestamp":"2025-06-21T20:30:00Z",
           "metrics":{"cpu_usage":10.0,"memory_usage":20.0,"disk_usage":30.0}})
}

fn with(path: &[&str], value: serde_json::Value) -> serde_json::Value {
    let mut doc = report();
    let mut cursor = &mut doc;
    for key in &path[..path.len() - 1] {
        cursor = &mut cursor[*key];
    }
    cursor[path[path.len() - 1]] = value;
    doc
}

fn without(path: &[&str]) -> serde_json::Value {
    let mut doc = report();
    let mut cursor = &mut doc;
    for key in &path[..path.len() - 1] {
        cursor = &mut cursor[*key];
    }
    cursor.as_object_mut().unwrap().remove(path[path.len() - 1]);
    doc
}

fn nested(cpu: serde_json::Value, memory: Option<serde_json::Value>, disk: serde_json::Value) -> serde_json::Value {
    let mut metrics = json!({"cpu": cpu, "disk": disk});
    if let Some(memory) = memory {
        metrics["memory"] = memory;
    }
    json!({"timestamp":"2025-06-21T20:30:00.5","metrics": metrics})
}

fn cases() -> Vec<Case> {
    use Body::{Json, Raw};
    use Who::*;
    const M: &str = "/api/v1/agents/{agent}/metrics";
    let post = Method::POST;
    let case = |name, path, who, body, status, field| Case {
        name,
        method: Method::POST,
        path,
        who,
        headers: &[],
        body,
        status,
        field,
    };
    let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    bomb.write_all(&vec![b' '; LIMIT * 4]).unwrap();
    let bomb = bomb.finish().unwrap();
    let future = chrono::DateTime::from_timestamp_millis(crate::support::T0 + 86_400_000).unwrap().to_rfc3339();
    let mut cases = vec![
        case("truncated JSON", M, Agent, Raw(br#"{"timestamp":"#.to_vec()), 400, Some("body")),
        case(
            "NaN literal",
            M,
            Agent,
            Raw(br#"{"timestamp":"2025-06-21T20:30:00Z","metrics":{"cpu_usage":NaN}}"#.to_vec()),
            400,
            Some("body"),
        ),
        case("non-UTF-8 body", M, Agent, Raw(b"{\"timestamp\":\"\xff\xfe\"}".to_vec()), 400, Some("body")),
        case("empty body", M, Agent, Body::None, 400, Some("body")),
        case("array instead of object", M, Agent, Json(json!([report()])), 400, Some("body")),
        case("bare string", M, Agent, Json(json!("hello")), 400, Some("body")),
        case("missing metrics", M, Agent, Json(without(&["metrics"])), 400, Some("metrics")),
        case("missing timestamp", M, Agent, Json(without(&["timestamp"])), 400, Some("timestamp")),
        case("numeric timestamp", M, Agent, Json(with(&["timestamp"], json!(1750537800))), 400, Some("timestamp")),
        case("garbage timestamp", M, Agent, Json(with(&["timestamp"], json!("yesterday"))), 400, Some("timestamp")),
        case("far-future timestamp", M, Agent, Json(with(&["timestamp"], json!(future))), 400, Some("timestamp")),
        case(
            "cpu as string",
            M,
            Agent,
            Json(with(&["metrics", "cpu_usage"], json!("45"))),
            400,
            Some("metrics.cpu_usage"),
        ),
        case(
            "cpu over 100",
            M,
            Agent,
            Json(with(&["metrics", "cpu_usage"], json!(145.0))),
            400,
            Some("metrics.cpu_usage"),
        ),
        case(
            "cpu negative",
            M,
            Agent,
            Json(with(&["metrics", "cpu_usage"], json!(-1))),
            400,
            Some("metrics.cpu_usage"),
        ),
        case(
            "memory missing",
            M,
            Agent,
            Json(without(&["metrics", "memory_usage"])),
            400,
            Some("metrics.memory_usage"),
        ),
        case(
            "disk 100.5",
            M,
            Agent,
            Json(with(&["metrics", "disk_usage"], json!(100.5))),
            400,
            Some("metrics.disk_usage"),
        ),
        case("negative uptime", M, Agent, Json(with(&["metrics", "uptime"], json!(-5))), 400, Some("metrics.uptime")),
        case(
            "negative load",
            M,
            Agent,
            Json(with(&["metrics", "load_average"], json!(-0.1))),
            400,
            Some("metrics.load_average"),
        ),
        case(
            "negative counter",
            M,
            Agent,
            Json(with(&["metrics", "network_rx"], json!(-1024))),
            400,
            Some("metrics.network_rx"),
        ),
        case(
            "counter beyond i64",
            M,
            Agent,
            Json(with(&["metrics", "disk_io_write"], json!(1e30))),
            400,
            Some("metrics.disk_io_write"),
        ),
        case(
            "response_time as text",
            M,
            Agent,
            Json(with(&["metrics", "response_time"], json!("fast"))),
            400,
            Some("metrics.response_time"),
        ),
        case("metrics as array", M, Agent, Json(with(&["metrics"], json!([1, 2]))), 400, Some("metrics")),
        case("services not a list", M, Agent, Json(with(&["services"], json!("ssh"))), 400, Some("services")),
        case(
            "service without name",
            M,
            Agent,
            Json(with(&["services"], json!([{"status":"active"}]))),
            400,
            Some("services[0].name"),
        ),
        case("negative seq", M, Agent, Json(with(&["seq"], json!(-1))), 400, Some("seq")),
        case("seq as text", M, Agent, Json(with(&["seq"], json!("7"))), 400, Some("seq")),
        case("empty batch", M, Agent, Json(json!({"reports": []})), 400, Some("reports")),
        case("batch not a list", M, Agent, Json(json!({"reports": {"a": 1}})), 400, Some("reports")),
        case(
            "one bad report spoils the batch",
            M,
            Agent,
            Json(json!({"reports": [with(&["seq"], json!(1)), with(&["metrics", "cpu_usage"], json!(101))]})),
            400,
            Some("reports[1].metrics.cpu_usage"),
        ),
        case(
            "nested without cpu percent",
            M,
            Agent,
            Json(nested(json!({"usage_per_core": [1.0]}), Some(json!({"virtual": {"percent": 5.0}})), json!({}))),
            400,
            Some("metrics.cpu.usage_percent"),
        ),
        case(
            "nested disk used above total",
            M,
            Agent,
            Json(nested(
                json!({"usage_percent": 5.0}),
                Some(json!({"virtual": {"percent": 5.0}})),
                json!({"usage": {"/": {"used": 200, "total": 100}}}),
            )),
            400,
            Some("metrics.disk.usage./.used"),
        ),
        case(
            "nested without memory",
            M,
            Agent,
            Json(nested(json!({"usage_percent": 5.0}), None, json!({}))),
            400,
            Some("metrics.memory"),
        ),
        Case {
            name: "gzip header, plain body",
            method: post.clone(),
            path: M,
            who: Agent,
            headers: &[("content-encoding", "gzip")],
            body: Json(report()),
            status: 400,
            field: Some("body"),
        },
        Case {
            name: "unsupported encoding",
            method: post.clone(),
            path: M,
            who: Agent,
            headers: &[("content-encoding", "br")],
            body: Json(report()),
            status: 415,
            field: None,
        },
        case("body over the limit", M, Agent, Raw(vec![b' '; LIMIT + 1]), 413, None),
        Case {
            name: "gzip bomb",
            method: post.clone(),
            path: M,
            who: Agent,
            headers: &[("content-encoding", "gzip")],
            body: Raw(bomb),
            status: 413,
            field: None,
        },
        case("no credentials", M, Nobody, Json(report()), 401, None),
        case("not a bearer header", M, Malformed, Json(report()), 401, None),
        case("wrong token", M, Wrong, Json(report()), 401, None),
        case("another agent's token", M, OtherAgent, Json(report()), 401, None),
        case("unknown agent id", "/api/v1/agents/not-an-agent/metrics", Agent, Json(report()), 401, None),
        case(
            "heartbeat body is a list",
            "/api/v1/agents/{agent}/heartbeat",
            Agent,
            Json(json!([1])),
            400,
            Some("body"),
        ),
        case(
            "heartbeat bad timestamp",
            "/api/v1/agents/{agent}/heartbeat",
            Agent,
            Json(json!({"timestamp":"soon"})),
            400,
            Some("timestamp"),
        ),
        case("heartbeat wrong token", "/api/v1/agents/{agent}/heartbeat", Wrong, Json(json!({})), 401, None),
        case(
            "maintenance too long",
            "/api/v1/agents/{agent}/maintenance",
            Agent,
            Json(json!({"duration_minutes": 100_000})),
            400,
            Some("duration_minutes"),
        ),
        case(
            "maintenance unknown field",
            "/api/v1/agents/{agent}/maintenance",
            Agent,
            Json(json!({"duration_minutes": 5, "servers": [1]})),
            400,
            Some("servers"),
        ),
        case("maintenance wrong token", "/api/v1/agents/{agent}/maintenance", Wrong, Json(json!({})), 401, None),
        case(
            "alerts missing",
            "/api/v1/agents/{agent}/alerts",
            Agent,
            Json(json!({"agent_id":"x"})),
            400,
            Some("alerts"),
        ),
        case("alerts empty", "/api/v1/agents/{agent}/alerts", Agent, Json(json!({"alerts": []})), 400, Some("alerts")),
        case(
            "unknown severity",
            "/api/v1/agents/{agent}/alerts",
            Agent,
            Json(json!({"alerts":[{"type":"t","message":"m","severity":"urgent"}]})),
            400,
            Some("alerts[0].severity"),
        ),
        case(
            "alert without message",
            "/api/v1/agents/{agent}/alerts",
            Agent,
            Json(json!({"alerts":[{"type":"t","severity":"info"}]})),
            400,
            Some("alerts[0].message"),
        ),
        case(
            "single alert not an object",
            "/api/v1/agents/{agent}/alerts",
            Agent,
            Json(json!({"alert":"disk"})),
            400,
            Some("alert"),
        ),
        case(
            "ack of unknown command",
            "/api/v1/agents/{agent}/commands/nope/ack",
            Agent,
            Json(json!({"status":"succeeded"})),
            404,
            None,
        ),
        case(
            "ack with bogus status",
            "/api/v1/agents/{agent}/commands/{command}/ack",
            Agent,
            Json(json!({"status":"done"})),
            400,
            Some("status"),
        ),
        case(
            "ack naming another command",
            "/api/v1/agents/{agent}/commands/{command}/ack",
            Agent,
            Json(json!({"command_id":"other","status":"succeeded"})),
            400,
            Some("command_id"),
        ),
        case(
            "ack without status",
            "/api/v1/agents/{agent}/commands/{command}/ack",
            Agent,
            Json(json!({"output":"x"})),
            400,
            Some("status"),
        ),
        case(
            "register without hostname",
            "/api/v1/agents/register",
            Nobody,
            Json(json!({"server_ip":"10.0.0.1"})),
            400,
            Some("hostname"),
        ),
        case(
            "register with bad IP",
            "/api/v1/agents/register",
            Nobody,
            Json(json!({"hostname":"h","server_ip":"10.0.0.256"})),
            400,
            Some("server_ip"),
        ),
        case(
            "register system_info not object",
            "/api/v1/agents/register",
            Nobody,
            Json(json!({"hostname":"h","server_ip":"10.0.0.1","system_info":"linux"})),
            400,
            Some("system_info"),
        ),
        case("register not JSON", "/api/v1/agents/register", Nobody, Raw(b"hostname=h".to_vec()), 400, Some("body")),
        case(
            "register unknown server",
            "/api/v1/agents/register",
            Nobody,
            Json(json!({"hostname":"h","server_ip":"10.66.0.1"})),
            404,
            None,
        ),
        case("server with bad IP", "/api/v1/servers", Admin, Json(json!({"name":"n","ip":"nowhere"})), 400, Some("ip")),
        case(
            "server with unknown member",
            "/api/v1/servers",
            Admin,
            Json(json!({"name":"n","ip":"10.0.0.1","colour":"red"})),
            400,
            Some("body"),
        ),
        case(
            "server with empty name",
            "/api/v1/servers",
            Admin,
            Json(json!({"name":"  ","ip":"10.0.0.1"})),
            400,
            Some("name"),
        ),
        case(
            "command of unknown type",
            "/api/v1/servers/{server}/commands",
            Admin,
            Json(json!({"type":"rm_rf"})),
            400,
            Some("type"),
        ),
        case(
            "restart without a service",
            "/api/v1/servers/{server}/commands",
            Admin,
            Json(json!({"type":"restart_service"})),
            400,
            Some("args.service"),
        ),
        case(
            "command for unknown server",
            "/api/v1/servers/99999/commands",
            Admin,
            Json(json!({"type":"collect_now"})),
            404,
            None,
        ),
    ];
    let get = |name, path, status, field| Case {
        name,
        method: Method::GET,
        path,
        who: Admin,
        headers: &[],
        body: Body::None,
        status,
        field,
    };
    cases.extend([
        get("server id not a number", "/api/v1/servers/abc", 400, Some("path")),
        get("server that does not exist", "/api/v1/servers/99999", 404, None),
        get("history with garbage from", "/api/v1/servers/{server}/metrics?from=last+week", 400, Some("from")),
        get("history with from after to", "/api/v1/servers/{server}/metrics?from=2000&to=1000", 400, Some("from")),
        get("events with zero limit", "/api/v1/events?limit=0", 400, Some("limit")),
        get("events of unknown kind", "/api/v1/events?kind=party", 400, Some("kind")),
        get("no such endpoint", "/api/v1/nowhere", 404, None),
    ]);
    cases.push(Case {
        name: "wrong method",
        method: Method::PUT,
        path: "/api/v1/health",
        who: Nobody,
        headers: &[],
        body: Body::None,
        status: 405,
        field: None,
    });
    cases.push(Case {
        name: "server delete without token",
        method: Method::DELETE,
        path: "/api/v1/servers/{server}",
        who: Nobody,
        headers: &[],
        body: Body::None,
        status: 401,
        field: None,
    });
    cases
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_writes_nothing() {
    let mut settings = Settings::defaults();
    settings.body_limit = LIMIT;
    let hub = spawn_with(settings).await;
    let admin = hub.token_for(Role::Admin).await;
    let (server_id, agent, token) = hub.registered_agent(&admin, "10.20.0.1").await;
    let (_, _, other_token) = hub.registered_agent(&admin, "10.20.0.2").await;
    let queued = hub
        .post(&format!("/api/v1/servers/{server_id}/commands"), Some(&admin), json!({"type":"collect_now"}))
        .await
        .expect(201);
    let command = queued["id"].as_str().unwrap().to_owned();
    // One good report first, so "unchanged" covers rows that exist.
    hub.post(&format!("/api/v1/agents/{agent}/metrics"), Some(&token), report()).await.ok();

    let before = hub.snapshot().await;
    let cases = cases();
    assert!(cases.len() >= 40, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let path = case
            .path
            .replace("{agent}", &agent)
            .replace("{server}", &server_id.to_string())
            .replace("{command}", &command);
        let bearer = match case.who {
            Who::Nobody => None,
            Who::Agent => Some(token.clone()),
            Who::OtherAgent => Some(other_token.clone()),
            Who::Wrong => Some("f".repeat(64)),
            Who::Malformed => None,
            Who::Admin => Some(admin.clone()),
        };
        let mut headers: Vec<(&str, &str)> = case.headers.to_vec();
        if matches!(case.who, Who::Malformed) {
            headers.push(("authorization", "Token abc"));
        }
        let body = match &case.body {
            Body::None => None,
            Body::Json(value) => Some(value.to_string().into_bytes()),
            Body::Raw(bytes) => Some(bytes.clone()),
        };
        let answer = hub.send_raw(case.method.clone(), &path, bearer.as_deref(), &headers, body).await;
        let mut problems = Vec::new();
        if answer.status.as_u16() != case.status {
            problems.push(format!("status {} (wanted {})", answer.status, case.status));
        }
        if answer.body["success"] != json!(false) || !answer.body["error"].is_string() {
            problems.push("error body lacks success:false / error".to_owned());
        }
        if let Some(field) = case.field
            && answer.body["details"].get(field).is_none()
        {
            problems.push(format!("details lack {field:?}"));
        }
        if !problems.is_empty() {
            failures.push(format!("{}: {} — {}", case.name, problems.join(", "), answer.body));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
    assert_eq!(hub.snapshot().await, before, "a refused request changed the database");

    // Still serving, and still storing.
    hub.get("/api/v1/health", None).await.expect(200);
    let gz = gzip(with(&["seq"], json!(77)).to_string().as_bytes());
    hub.send_raw(
        Method::POST,
        &format!("/api/v1/agents/{agent}/metrics"),
        Some(&token),
        &[("content-encoding", "gzip")],
        Some(gz),
    )
    .await
    .ok();
}

#[tokio::test]
async fn a_disabled_agent_is_refused() {
    let hub = spawn_with(Settings::defaults()).await;
    let admin = hub.token_for(Role::Admin).await;
    let (server_id, agent, token) = hub.registered_agent(&admin, "10.21.0.1").await;
    hub.send(
        Method::PATCH,
        &format!("/api/v1/servers/{server_id}"),
        Some(&admin),
        Some(json!({"agent_enabled": false})),
    )
    .await
    .expect(200);
    let before = hub.snapshot().await;
    let answer = hub.post(&format!("/api/v1/agents/{agent}/metrics"), Some(&token), report()).await.expect(401);
    assert_eq!(answer["error"], "Unauthorized");
    assert_eq!(hub.snapshot().await, before);
}
