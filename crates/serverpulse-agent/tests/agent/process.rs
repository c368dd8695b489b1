//! `serverpulse-agent run` as systemd runs it: readiness and watchdog over
//! `$NOTIFY_SOCKET`, configuration reload on SIGHUP, a clean stop on SIGTERM.

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill").args([&format!("-{name}"), &pid.to_string()]).status().unwrap();
    assert!(status.success());
}

/// Datagrams received until `wanted` arrives (or five seconds pass).
fn wait_for(socket: &UnixDatagram, wanted: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = Vec::new();
    let mut buffer = [0u8; 256];
    while Instant::now() < deadline {
        if let Ok(n) = socket.recv(&mut buffer) {
            let message = String::from_utf8_lossy(&buffer[..n]).into_owned();
            let done = message == wanted;
            seen.push(message);
            if done {
                break;
            }
        }
    }
    seen
}

#[test]
fn notifies_systemd_reloads_on_sighup_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let config = dir.path().join("config.yml");
    // A hub that is not there: the agent keeps running, retrying with back-off.
    let write_config = |level: &str| {
        std::fs::write(
            &config,
            format!(
                "server:\n  endpoint: http://127.0.0.1:9\nstorage:\n  state_dir: {}\nlogging:\n  level: {level}\n\
                 monitoring:\n  log_paths: [{}]\n",
                dir.path().join("state").display(),
                dir.path().join("none.log").display()
            ),
        )
        .unwrap();
    };
    write_config("INFO");
    let child = Command::new(env!("CARGO_BIN_EXE_serverpulse-agent"))
        .arg("--config")
        .arg(&config)
        .arg("run")
        .env("NOTIFY_SOCKET", &socket_path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let started = wait_for(&socket, "READY=1");
    assert_eq!(started.first().map(String::as_str), Some("READY=1"), "{started:?}");
    let fed = wait_for(&socket, "WATCHDOG=1");
    assert!(fed.contains(&"WATCHDOG=1".to_owned()), "{fed:?}");

    write_config("DEBUG");
    signal(child.id(), "HUP");
    std::thread::sleep(Duration::from_millis(1_500));
    signal(child.id(), "TERM");
    let stopping = wait_for(&socket, "STOPPING=1");
    assert!(stopping.contains(&"STOPPING=1".to_owned()), "{stopping:?}");
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "a clean stop exits 0: {:?}", out.status);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("configuration reloaded from"), "{log}");
    assert!(log.contains("registration with http://127.0.0.1:9 failed"), "it says why it is not reporting: {log}");
    assert!(log.contains("stopping;"), "{log}");
}
