//! Connections as `serverpulse serve` keeps them: one idle past the hub's limit is
//! closed by the hub, one in use is kept however long it lives, and the hub may hold
//! as many as its hard limit on open files allows. Between requests the hub parks a
//! connection (hyper let go, the socket kept): an answer is sent whole before that,
//! and a next request already begun is served whole after.

use std::time::{Duration, Instant};

use serverpulse_domain::Role;
use serverpulse_hub::connections::IDLE_TIMEOUT;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{HubProcess, free_port, spawn_live, spawn_live_with};

const HEALTH: &[u8] = b"GET /api/v1/health HTTP/1.1\r\nHost: hub\r\n\r\n";

/// Sends a health check on `connection` and reads its whole answer.
async fn health_check(connection: &mut TcpStream) {
    connection.write_all(HEALTH).await.expect("request sent");
    read_health_answer(connection).await;
}

/// Reads a health check's answer from `connection`: 200 and a JSON object.
async fn read_health_answer(connection: &mut TcpStream) {
    let (status, body) = read_response(connection).await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(body.starts_with(b"{") && body.ends_with(b"}"), "the health answer: {}", String::from_utf8_lossy(&body));
}

/// Reads one response from `connection`: its status line and its body (as long as its
/// `content-length` says).
async fn read_response(connection: &mut TcpStream) -> (String, Vec<u8>) {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let byte = connection.read_u8().await.expect("a response head (the connection was closed)");
        head.push(byte);
    }
    let head = String::from_utf8(head).expect("a text head");
    let length: usize = head
        .lines()
        .find_map(|line| line.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
        .expect("a content-length")
        .parse()
        .expect("a number");
    let mut body = vec![0u8; length];
    connection.read_exact(&mut body).await.expect("the whole body");
    (head.lines().next().unwrap_or_default().to_owned(), body)
}

#[tokio::test]
async fn an_idle_connection_is_closed_and_one_in_use_is_kept() {
    let hub = spawn_live().await;
    let address = hub.base.trim_start_matches("http://").to_owned();
    let mut idle = TcpStream::connect(&address).await.expect("connect");
    let mut busy = TcpStream::connect(&address).await.expect("connect");
    health_check(&mut idle).await;
    let answered = Instant::now();
    tokio::time::sleep(IDLE_TIMEOUT / 2).await;
    let mut byte = [0u8; 1];
    let before_its_limit = idle.try_read(&mut byte);
    assert!(
        matches!(&before_its_limit, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "open, with nothing to read, before its limit: {before_its_limit:?}"
    );

    // The busy one asks again within the limit, for longer than the limit in all.
    while answered.elapsed() < IDLE_TIMEOUT + Duration::from_secs(2) {
        health_check(&mut busy).await;
        tokio::time::sleep(IDLE_TIMEOUT / 3).await;
    }
    health_check(&mut busy).await;

    // The idle one was closed by the hub (end of stream, nothing more sent), at its limit.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut rest)).await;
    let read = read.expect("the hub closed the idle connection").expect("read to its end");
    assert_eq!(read, 0, "nothing is sent on an idle connection: {}", String::from_utf8_lossy(&rest));
}

#[tokio::test]
async fn an_answer_larger_than_the_socket_takes_is_sent_whole_before_the_connection_is_parked() {
    // The agent download: megabytes, more than the hub's socket buffers hold.
    let download = tempfile::NamedTempFile::new().expect("temp file");
    let executable: Vec<u8> = (0..8_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    std::fs::write(download.path(), &executable).expect("write it");
    let path = download.path().to_owned();
    let hub = spawn_live_with(move |settings| settings.agent_binary = path).await;
    let address = hub.base.trim_start_matches("http://").to_owned();
    let mut connection = TcpStream::connect(&address).await.expect("connect");
    connection.write_all(b"GET /download/serverpulse-agent HTTP/1.1\r\nHost: hub\r\n\r\n").await.expect("sent");
    // Not read for a while: the hub's writes stall midway.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let (status, body) = read_response(&mut connection).await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(body == executable, "the whole file, and only it: {} bytes of {}", body.len(), executable.len());

    // The same connection, parked after its answer, serves the next request.
    health_check(&mut connection).await;
}

#[tokio::test]
async fn a_request_begun_before_the_last_answer_is_served_whole_after_it() {
    let hub = spawn_live().await;
    let address = hub.base.trim_start_matches("http://").to_owned();
    let mut connection = TcpStream::connect(&address).await.expect("connect");
    // A first request and half of a second, pipelined; the rest of the second after
    // the hub has answered the first (and parked the connection with the half read).
    let (first_half, second_half) = HEALTH.split_at(HEALTH.len() / 2);
    connection.write_all(&[HEALTH, first_half].concat()).await.expect("requests sent");
    read_health_answer(&mut connection).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    connection.write_all(second_half).await.expect("rest sent");
    read_health_answer(&mut connection).await;
}

#[tokio::test]
async fn a_stopping_hub_closes_its_parked_connections_at_once() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut hub = HubProcess::on_data_dir(data.path(), free_port());
    hub.wait_ready().await;
    let address = hub.base.trim_start_matches("http://").to_owned();
    let mut parked = TcpStream::connect(&address).await.expect("connect");
    health_check(&mut parked).await;

    let asked = Instant::now();
    let status = std::process::Command::new("kill").args(["-TERM", &hub.child.id().to_string()]).status();
    assert!(status.expect("kill").success());
    let mut rest = Vec::new();
    let read = tokio::time::timeout(IDLE_TIMEOUT * 2, parked.read_to_end(&mut rest)).await;
    assert_eq!(read.expect("closed").expect("read to its end"), 0, "{}", String::from_utf8_lossy(&rest));
    let exit = hub.child.wait().expect("the hub exits");
    assert!(exit.success(), "graceful shutdown exits 0: {exit:?}");
    // Closed by the stop, not by its idle limit.
    assert!(asked.elapsed() < IDLE_TIMEOUT - Duration::from_secs(1), "stopped after {:?}", asked.elapsed());
}

#[tokio::test]
async fn a_live_feed_streams_past_the_idle_limit() {
    let hub = spawn_live().await;
    let admin = serverpulse_hub::auth::Admin::console();
    serverpulse_hub::admin::add_user(&hub.state, &admin, "viewer@example.test", Role::Viewer, None)
        .await
        .expect("user");
    let (_, token) =
        serverpulse_hub::admin::create_token(&hub.state, &admin, "viewer@example.test", "test").await.expect("token");
    let address = hub.base.trim_start_matches("http://").to_owned();
    let mut feed = TcpStream::connect(&address).await.expect("connect");
    let request = format!("GET /api/v1/live HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer {token}\r\n\r\n");
    feed.write_all(request.as_bytes()).await.expect("request sent");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(feed.read_u8().await.expect("a response head"));
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200") && head.contains("text/event-stream"), "{head}");

    // A response being sent is not idle, however long it lasts.
    tokio::time::sleep(IDLE_TIMEOUT + Duration::from_secs(2)).await;
    let mut byte = [0u8; 1];
    let still = feed.try_read(&mut byte);
    assert!(
        matches!(&still, Ok(n) if *n > 0) || matches!(&still, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the feed is still open past the idle limit: {still:?}"
    );
}

/// The soft and hard limits on open files of process `pid`.
fn open_files_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("read its limits");
    let line = limits.lines().find(|l| l.starts_with("Max open files")).expect("an open files line");
    let fields: Vec<&str> = line.split_whitespace().collect();
    (fields[3].to_owned(), fields[4].to_owned())
}

#[tokio::test]
async fn the_hub_raises_its_open_files_limit_to_the_hard_one() {
    let data = tempfile::tempdir().expect("temp dir");
    let hub = HubProcess::serve_with_open_files(free_port(), &["--data-dir".as_ref(), data.path().as_os_str()], 1024);
    hub.wait_ready().await;
    let (soft, hard) = open_files_limits(hub.child.id());
    assert!(hard == "unlimited" || hard.parse::<u64>().expect("a number") > 1024, "a hard limit above 1,024: {hard}");
    let raised_to = if hard == "unlimited" { "1048576" } else { hard.as_str() };
    assert_eq!(soft, raised_to, "started at 1,024, raised to the hard limit");
}
