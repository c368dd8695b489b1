//! The dashboard over HTTP: first run, sign-in and its rate limit, sessions and password
//! change, CSRF on every state-changing route, roles on pages, the fleet page's filters
//! and paging, chart data, the CSV export and the live feed. (The browser suite,
//! `browser.rs`, drives the same pages in Chromium.)

use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use serverpulse_domain::Role;
use serverpulse_hub::auth::Admin;

use crate::support::{T0, TestHub, spawn_app};

/// A client that shows redirects instead of following them.
fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

/// `value` of `name="<field>" value="…"` in a page.
fn hidden(html: &str, field: &str) -> String {
    let marker = format!("name=\"{field}\" value=\"");
    let start = html.find(&marker).unwrap_or_else(|| panic!("no {field} in page")) + marker.len();
    html[start..].split('"').next().expect("value").to_owned()
}

/// `name=value` of the cookie `name` a response sets, if any.
fn set_cookie(response: &reqwest::Response, name: &str) -> Option<(String, String)> {
    response.headers().get_all(SET_COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(|v| {
        let pair = v.split(';').next()?;
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| (format!("{key}={value}"), v.to_owned()))
    })
}

/// A signed-in browser: its cookie header and CSRF token.
struct Browser {
    cookie: String,
    csrf: String,
}

async fn page(hub: &TestHub, path: &str, cookie: Option<&str>) -> (StatusCode, String, reqwest::header::HeaderMap) {
    let mut request = client().get(hub.url(path));
    if let Some(cookie) = cookie {
        request = request.header(COOKIE, cookie);
    }
    let response = request.send().await.expect("request");
    let (status, headers) = (response.status(), response.headers().clone());
    (status, response.text().await.expect("body"), headers)
}

async fn post_form(hub: &TestHub, path: &str, cookie: &str, form: &[(&str, &str)]) -> reqwest::Response {
    client().post(hub.url(path)).header(COOKIE, cookie).form(form).send().await.expect("request")
}

/// Signs in through the login form; `None` if refused.
async fn sign_in(hub: &TestHub, email: &str, password: &str) -> Result<Browser, StatusCode> {
    let response = client().get(hub.url("/login")).send().await.expect("login page");
    let (form_cookie, _) = set_cookie(&response, "sp_form").expect("form cookie");
    let html = response.text().await.expect("body");
    let form =
        [("_form", hidden(&html, "_form").as_str()), ("email", email), ("password", password), ("next", "/fleet")]
            .map(|(k, v)| (k, v.to_owned()));
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let response = post_form(hub, "/login", &form_cookie, &form).await;
    if response.status() != StatusCode::SEE_OTHER {
        return Err(response.status());
    }
    let (cookie, attributes) = set_cookie(&response, "sp_session").expect("session cookie");
    assert!(attributes.contains("HttpOnly") && attributes.contains("SameSite=Lax"), "{attributes}");
    let (_, html, _) = page(hub, "/account", Some(&cookie)).await;
    Ok(Browser { csrf: hidden(&html, "_csrf"), cookie })
}

async fn user(hub: &TestHub, role: Role, password: &str) -> String {
    let email = format!("{}-{}@example.test", role.as_str(), uuid::Uuid::new_v4().simple());
    serverpulse_hub::admin::add_user(&hub.state, &Admin::console(), &email, role, Some(password.to_owned()))
        .await
        .expect("user");
    email
}

impl Browser {
    async fn api(&self, hub: &TestHub, method: Method, path: &str, body: Option<Value>, csrf: bool) -> (u16, Value) {
        let mut request = client().request(method, hub.url(path)).header(COOKIE, &self.cookie);
        if csrf {
            request = request.header("x-csrf-token", &self.csrf);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn first_run_sign_in_password_change_and_sign_out() {
    let hub = spawn_app().await;
    let (status, _, headers) = page(&hub, "/fleet", None).await;
    assert_eq!((status, headers[LOCATION].to_str().unwrap()), (StatusCode::SEE_OTHER, "/setup"));

    let response = client().get(hub.url("/setup")).send().await.unwrap();
    let (form_cookie, _) = set_cookie(&response, "sp_form").expect("double-submit cookie");
    let token = hidden(&response.text().await.unwrap(), "_form");
    let good = [
        ("_form", token.as_str()),
        ("email", "root@example.test"),
        ("password", "long enough pw"),
        ("confirm", "long enough pw"),
    ];
    // Without the double-submit cookie (a cross-site post) nothing happens.
    assert_eq!(post_form(&hub, "/setup", "sp_form=forged", &good).await.status(), StatusCode::FORBIDDEN);
    let short =
        [("_form", token.as_str()), ("email", "root@example.test"), ("password", "short"), ("confirm", "short")];
    let refused = post_form(&hub, "/setup", &form_cookie, &short).await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert!(refused.text().await.unwrap().contains("at least 12 characters"));
    assert_eq!(hub.state.store.user_count().await.unwrap(), 0);
    let created = post_form(&hub, "/setup", &form_cookie, &good).await;
    assert_eq!(created.status(), StatusCode::SEE_OTHER);
    let (first, _) = set_cookie(&created, "sp_session").expect("signed in at once");
    let (_, _, headers) = page(&hub, "/setup", None).await;
    assert_eq!(headers[LOCATION], "/login", "the first run happens once");
    let (status, html, _) = page(&hub, "/fleet", Some(&first)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("No servers yet") && html.contains("Add your first server"));

    // Two sessions; the password changes in one, the other ends.
    let a = sign_in(&hub, "root@example.test", "long enough pw").await.expect("sign in");
    let b = sign_in(&hub, "root@example.test", "long enough pw").await.expect("sign in again");
    let change = |current: &'static str, csrf: String| {
        vec![
            ("current", current.to_owned()),
            ("password", "a new long password".to_owned()),
            ("confirm", "a new long password".to_owned()),
            ("_csrf", csrf),
        ]
    };
    let form = |fields: &[(&'static str, String)]| fields.iter().map(|(k, v)| (*k, v.clone())).collect::<Vec<_>>();
    let missing = client()
        .post(hub.url("/account/password"))
        .header(COOKIE, &a.cookie)
        .form(&form(&change("long enough pw", String::new())))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::FORBIDDEN, "no CSRF token");
    let wrong = client()
        .post(hub.url("/account/password"))
        .header(COOKIE, &a.cookie)
        .form(&form(&change("wrong", a.csrf.clone())))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::BAD_REQUEST);
    assert!(wrong.text().await.unwrap().contains("not your current password"));
    let changed = client()
        .post(hub.url("/account/password"))
        .header(COOKIE, &a.cookie)
        .form(&form(&change("long enough pw", a.csrf.clone())))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), StatusCode::OK);
    assert!(changed.text().await.unwrap().contains("Password changed"));
    assert_eq!(page(&hub, "/fleet", Some(&a.cookie)).await.0, StatusCode::OK, "the changing session stays");
    let (status, _, headers) = page(&hub, "/fleet", Some(&b.cookie)).await;
    assert_eq!((status, headers[LOCATION].to_str().unwrap()), (StatusCode::SEE_OTHER, "/login?next=/fleet"));
    assert_eq!(sign_in(&hub, "root@example.test", "long enough pw").await.err(), Some(StatusCode::UNAUTHORIZED));

    let out = post_form(&hub, "/logout", &a.cookie, &[("_csrf", a.csrf.as_str())]).await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert!(set_cookie(&out, "sp_session").expect("cleared").1.contains("Max-Age=0"));
    assert_eq!(page(&hub, "/fleet", Some(&a.cookie)).await.0, StatusCode::SEE_OTHER, "signed out");
    let log = hub.get("/api/v1/events?kind=user_session", Some(&hub.token_for(Role::Admin).await)).await.expect(200);
    let messages: Vec<&str> =
        log["events"].as_array().unwrap().iter().map(|e| e["message"].as_str().unwrap()).collect();
    assert_eq!(messages[..2], ["root@example.test signed out", "refused sign-in as root@example.test"]);
    assert_eq!(messages.iter().filter(|m| m.ends_with("signed in")).count(), 3, "setup, then two sign-ins");
}

#[tokio::test]
async fn sign_in_is_rate_limited_per_address() {
    let hub = spawn_app().await;
    let email = user(&hub, Role::Viewer, "the right password").await;
    for _ in 0..serverpulse_hub::web::session::MAX_FAILED_LOGINS {
        assert_eq!(sign_in(&hub, &email, "wrong").await.err(), Some(StatusCode::UNAUTHORIZED));
    }
    let response = client().get(hub.url("/login")).send().await.unwrap();
    let (form_cookie, _) = set_cookie(&response, "sp_form").unwrap();
    let token = hidden(&response.text().await.unwrap(), "_form");
    let blocked = post_form(
        &hub,
        "/login",
        &form_cookie,
        &[("_form", &token), ("email", &email), ("password", "the right password")],
    )
    .await;
    assert_eq!(blocked.status(), StatusCode::TOO_MANY_REQUESTS, "even the right password waits");
    assert!(blocked.headers()["retry-after"].to_str().unwrap().parse::<u32>().unwrap() > 0);
    hub.clock.advance(serverpulse_hub::web::session::THROTTLE_WINDOW_MS);
    assert!(sign_in(&hub, &email, "the right password").await.is_ok(), "the window passed");
}

/// Every state-changing route of the API, taken from the OpenAPI document, refuses a
/// session request without the CSRF token, and changes nothing.
#[tokio::test]
async fn every_state_changing_route_needs_the_csrf_token_with_a_session() {
    let hub = spawn_app().await;
    let email = user(&hub, Role::Admin, "admin password 1").await;
    let admin = sign_in(&hub, &email, "admin password 1").await.expect("admin");
    let (server, _) = hub.add_server(&hub.token_for(Role::Admin).await, "csrf", "10.77.0.1").await;
    let document = hub.get("/api/openapi.json", None).await.expect(200);
    let before = hub.snapshot().await;
    let mut checked = 0;
    for (path, operations) in document["paths"].as_object().expect("paths") {
        if path.starts_with("/api/v1/agents/") {
            continue; // agents use bearer tokens, never cookies
        }
        let concrete = path.replace("{id}", &server.to_string());
        for method in operations.as_object().expect("operations").keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            if method == Method::GET {
                continue;
            }
            let (status, body) = admin.api(&hub, method.clone(), &concrete, Some(json!({})), false).await;
            assert_eq!(status, 403, "{method} {path} without CSRF token: {body}");
            assert!(body["error"].as_str().unwrap_or("").contains("CSRF"), "{method} {path}: {body}");
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} state-changing routes found");
    assert_eq!(hub.snapshot().await, before, "a refused request wrote something");

    // With the token the same session acts, within its role.
    let (status, _) =
        admin.api(&hub, Method::POST, "/api/v1/servers", Some(json!({"name": "ok", "ip": "10.77.0.2"})), true).await;
    assert_eq!(status, 201);
    let viewer_email = user(&hub, Role::Viewer, "viewer password").await;
    let viewer = sign_in(&hub, &viewer_email, "viewer password").await.expect("viewer");
    let (status, body) =
        viewer.api(&hub, Method::POST, "/api/v1/servers", Some(json!({"name": "no", "ip": "10.77.0.3"})), true).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["error"].as_str().unwrap().contains("admin role"), "{body}");
    let (status, _) = viewer.api(&hub, Method::GET, "/api/v1/servers", None, false).await;
    assert_eq!(status, 200, "reading needs no CSRF token");
    // Session-forms too: signing out needs the token.
    assert_eq!(post_form(&hub, "/logout", &admin.cookie, &[("_csrf", "forged")]).await.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn pages_need_a_session_and_admin_pages_an_admin() {
    let hub = spawn_app().await;
    let viewer_email = user(&hub, Role::Viewer, "viewer password").await;
    let (server, _) = hub.add_server(&hub.token_for(Role::Admin).await, "p", "10.78.0.1").await;
    let pages = ["/fleet", "/alerts", "/logs", "/account", "/servers/new", &format!("/servers/{server}")];
    for path in pages {
        let (status, _, headers) = page(&hub, path, None).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{path}");
        assert!(headers[LOCATION].to_str().unwrap().starts_with("/login?next="), "{path}");
    }
    let viewer = sign_in(&hub, &viewer_email, "viewer password").await.expect("viewer");
    for path in pages {
        let (status, html, _) = page(&hub, path, Some(&viewer.cookie)).await;
        if path == "/servers/new" {
            assert_eq!(status, StatusCode::FORBIDDEN);
            assert!(html.contains("needs the admin role"));
        } else {
            assert_eq!(status, StatusCode::OK, "{path}");
            assert!(!html.contains("href=\"/servers/new\""), "{path} offers a viewer to add servers");
        }
    }
    let (status, _, _) = page(&hub, "/servers/999999", Some(&viewer.cookie)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = page(&hub, "/assets/old/app.js", None).await;
    assert_eq!(status, StatusCode::OK, "assets need no session");
}

#[tokio::test]
async fn the_fleet_page_searches_filters_sorts_and_pages() {
    let hub = spawn_app().await;
    let admin_token = hub.token_for(Role::Admin).await;
    let email = user(&hub, Role::Viewer, "viewer password").await;
    let viewer = sign_in(&hub, &email, "viewer password").await.expect("viewer");
    // 120 servers never connected, and 3 with agents reporting CPU 10, 95, 50.
    for i in 0..120 {
        hub.add_server(&admin_token, &format!("idle-{i:03}"), &format!("10.79.{}.{}", i / 200, i % 200 + 1)).await;
    }
    for (ip, cpu) in [("10.80.0.1", 10.0), ("10.80.0.2", 95.0), ("10.80.0.3", 50.0)] {
        let (_, agent, token) = hub.registered_agent(&admin_token, ip).await;
        let report = json!({"timestamp": "2025-06-21T20:30:00Z", "metrics": {"cpu_usage": cpu, "memory_usage": 1.0, "disk_usage": 1.0}});
        hub.post(&format!("/api/v1/agents/{agent}/metrics"), Some(&token), report).await.ok();
    }
    let names = |html: &str| -> Vec<String> {
        html.split("class=\"server-name\"")
            .skip(1)
            .map(|s| s.split('>').nth(1).unwrap().split('<').next().unwrap().to_owned())
            .collect()
    };
    let (_, html, _) = page(&hub, "/fleet", Some(&viewer.cookie)).await;
    assert!(html.contains("data-summary=\"total\">123<"), "summary counts every server");
    assert!(html.contains("data-summary=\"online\">3<") && html.contains("data-summary=\"never\">120<"));
    assert_eq!(names(&html).len(), 100, "one page of 100 rows");
    assert!(html.contains("page 1 of 2"));
    let (_, html, _) = page(&hub, "/fleet?page=2", Some(&viewer.cookie)).await;
    assert_eq!(names(&html).len(), 23);
    let (_, html, _) = page(&hub, "/fleet?sort=cpu&dir=desc", Some(&viewer.cookie)).await;
    assert_eq!(
        names(&html)[..3],
        ["srv-10.80.0.2", "srv-10.80.0.3", "srv-10.80.0.1"],
        "highest CPU first, unknown last"
    );
    let (_, html, _) = page(&hub, "/fleet?status=online&sort=cpu", Some(&viewer.cookie)).await;
    assert_eq!(names(&html), ["srv-10.80.0.1", "srv-10.80.0.3", "srv-10.80.0.2"]);
    let (_, html, _) = page(&hub, "/fleet?q=IDLE-11", Some(&viewer.cookie)).await;
    assert_eq!(names(&html), (110..120).map(|i| format!("idle-{i:03}")).collect::<Vec<_>>(), "case-insensitive search");
    let (_, html, _) = page(&hub, "/fleet?q=nothing-like-this", Some(&viewer.cookie)).await;
    assert!(html.contains("No server matches"));
    let (status, html, _) = page(&hub, "/fleet?sort=colour", Some(&viewer.cookie)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("colour") && html.contains("is not one of: name, status, cpu"), "{html}");
}

#[tokio::test]
async fn chart_data_is_reduced_to_buckets_and_checked() {
    let hub = spawn_app().await;
    let admin_token = hub.token_for(Role::Admin).await;
    let (server, agent, token) = hub.registered_agent(&admin_token, "10.81.0.1").await;
    let reports: Vec<Value> = (0..120)
        .map(|i| {
            let at = serverpulse_proto::time::format_timestamp(T0 - 3_600_000 + i * 30_000);
            json!({"seq": i, "timestamp": at, "metrics": {"cpu_usage": (i % 10) as f64 * 10.0, "memory_usage": 50.0, "disk_usage": 10.0}})
        })
        .collect();
    hub.post(&format!("/api/v1/agents/{agent}/metrics"), Some(&token), json!({"reports": reports})).await.ok();
    let raw = hub
        .get(&format!("/api/v1/servers/{server}/chart?from={}&to={T0}", T0 - 3_600_000), Some(&admin_token))
        .await
        .ok();
    assert_eq!((raw["step"].as_i64(), raw["banded"].as_bool()), (Some(30_000), Some(false)));
    assert_eq!(raw["t"].as_array().unwrap().len(), 120);
    let coarse = hub
        .get(&format!("/api/v1/servers/{server}/chart?from={}&to={T0}&points=10", T0 - 3_600_000), Some(&admin_token))
        .await
        .ok();
    assert_eq!(coarse["step"], json!(600_000), "10 points over an hour: 10-minute buckets");
    assert_eq!(coarse["banded"], json!(true));
    let cpu = &coarse["series"]["cpu"];
    assert_eq!(cpu["min"][1], json!(0.0));
    assert_eq!(cpu["max"][1], json!(90.0), "peaks survive the reduction");
    assert_eq!(cpu["avg"][1], json!(45.0));
    let bad = hub.get(&format!("/api/v1/servers/{server}/chart?points=5"), Some(&admin_token)).await.expect(400);
    assert!(bad["details"]["points"][0].is_string(), "{bad}");
    let bad = hub
        .get(&format!("/api/v1/servers/{server}/chart?from={T0}&to={}", T0 - 1), Some(&admin_token))
        .await
        .expect(400);
    assert!(bad["details"]["from"][0].is_string(), "{bad}");
    hub.get("/api/v1/servers/424242/chart", Some(&admin_token)).await.expect(404);
}

#[tokio::test]
async fn the_event_log_exports_as_csv_with_its_filters() {
    let hub = spawn_app().await;
    let token = hub.token_for(Role::Viewer).await;
    let admin_token = hub.token_for(Role::Admin).await;
    hub.add_server(&admin_token, "=formula, \"quoted\"", "10.82.0.1").await;
    let response =
        client().get(hub.url("/api/v1/events.csv?kind=server_added")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/csv; charset=utf-8");
    assert!(response.headers()["content-disposition"].to_str().unwrap().contains("attachment"));
    let csv = response.text().await.unwrap();
    let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines[0], "id,at,server_id,kind,severity,message");
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(lines[1].contains(",server_added,info,\"server =formula, \"\"quoted\"\" added\""), "{csv}");
    let bad = hub.get("/api/v1/events.csv?kind=nonsense", Some(&token)).await.expect(400);
    assert!(bad["details"]["kind"][0].is_string(), "{bad}");
}

#[tokio::test]
async fn the_live_feed_streams_server_and_alert_changes() {
    let hub = spawn_app().await;
    let admin_token = hub.token_for(Role::Admin).await;
    let (server, agent, token) = hub.registered_agent(&admin_token, "10.83.0.1").await;
    let viewer = hub.token_for(Role::Viewer).await;
    assert_eq!(client().get(hub.url("/api/v1/live")).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let mut stream = client().get(hub.url("/api/v1/live")).bearer_auth(&viewer).send().await.unwrap();
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let report = json!({"timestamp": "2025-06-21T20:30:00Z", "metrics": {"cpu_usage": 12.5, "memory_usage": 1.0, "disk_usage": 1.0}});
    hub.post(&format!("/api/v1/agents/{agent}/metrics"), Some(&token), report).await.ok();
    let alert = json!({"alerts": [{"type": "oom_kill", "severity": "critical", "message": "killed", "timestamp": "2025-06-21T20:30:00Z"}]});
    hub.post(&format!("/api/v1/agents/{agent}/alerts"), Some(&token), alert).await.ok();
    let mut seen = String::new();
    while !(seen.contains("event: server") && seen.contains("event: alerts")) {
        let chunk =
            tokio::time::timeout(std::time::Duration::from_secs(5), stream.chunk()).await.expect("event in time");
        seen.push_str(&String::from_utf8_lossy(&chunk.unwrap().expect("stream open")));
    }
    let data = |event: &str| -> Value {
        let line = seen.split("\n\n").find(|e| e.contains(&format!("event: {event}"))).unwrap();
        serde_json::from_str(line.split("data: ").nth(1).unwrap().trim()).unwrap()
    };
    let server_event = data("server");
    assert_eq!((server_event["id"].as_i64(), server_event["status"].as_str()), (Some(server), Some("online")));
    assert_eq!(server_event["cpu"], json!(12.5));
    assert_eq!(data("alerts"), json!({"server_id": server, "open": 1, "server_open": 1, "server_failed_services": 0}));
}
