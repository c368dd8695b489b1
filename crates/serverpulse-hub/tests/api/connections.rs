//! Connections as `serverpulse serve` keeps them: one idle past the hub's limit is
//! closed by the hub, one in use is kept however long it lives, and the hub may hold
//! as many as its hard limit on open files allows.

use std::time::{Duration, Instant};

use serverpulse_hub::connections::IDLE_TIMEOUT;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{HubProcess, free_port, spawn_live};

const HEALTH: &[u8] = b"GET /api/v1/health HTTP/1.1\r\nHost: hub\r\n\r\n";

/// Sends a health check on `connection` and reads its whole answer.
async fn health_check(connection: &mut TcpStream) {
    connection.write_all(HEALTH).await.expect("request sent");
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    // The answer is small (a JSON object): its head and body come in a read or a few.
    while !answer.ends_with(b"}") {
        let read = connection.read(&mut buffer).await.expect("answer read");
        assert!(read > 0, "connection closed before its answer: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buffer[..read]);
    }
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
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
