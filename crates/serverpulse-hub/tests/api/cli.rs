//! The `serverpulse` binary itself: inventory, users and tokens from the command line,
//! and `serve` answering on the address it was given.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

fn serverpulse(data_dir: &std::path::Path, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_serverpulse"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("SERVERPULSE_CONFIG")
        .env_remove("SERVERPULSE_DATABASE_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run serverpulse");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn inventory_users_and_tokens_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    let (ok, out, err) = serverpulse(&data, &["server", "add", "--name", "web-1", "--ip", "10.70.0.1", "--json"], None);
    assert!(ok, "{err}");
    let added: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(added["server"]["name"], "web-1");
    assert_eq!(added["enrollment_token"].as_str().unwrap().len(), 64);
    assert!(added["expires_at"].is_i64());
    assert!(added["install_command"].as_str().unwrap().contains("install.sh?token="));

    let (ok, out, _) = serverpulse(&data, &["server", "add", "--name", "web-2", "--ip", "10.70.0.2"], None);
    assert!(ok);
    assert!(out.contains("Enrollment token") && out.contains("Install the agent"), "{out}");

    let (ok, out, _) = serverpulse(&data, &["server", "list", "--json"], None);
    assert!(ok);
    let list: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);

    let (ok, _, err) = serverpulse(&data, &["server", "add", "--name", "bad", "--ip", "300.0.0.1"], None);
    assert!(!ok);
    assert!(err.contains("ip: must be an IPv4 or IPv6 address"), "{err}");

    let (ok, out, err) = serverpulse(
        &data,
        &["user", "add", "--email", "ops@example.test", "--role", "operator", "--password-stdin", "--json"],
        Some("a long enough password\n"),
    );
    assert!(ok, "{err}");
    let user: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(user["role"], "operator");
    assert_eq!(user["password"], Value::Null, "a given password is not echoed");

    let (ok, out, _) = serverpulse(&data, &["user", "add", "--email", "view@example.test", "--role", "viewer"], None);
    assert!(ok);
    assert!(out.contains("Generated password (shown once):"), "{out}");

    let (ok, _, err) = serverpulse(&data, &["user", "add", "--email", "ops@example.test", "--role", "admin"], None);
    assert!(!ok);
    assert!(err.contains("exists"), "{err}");

    let (ok, out, err) = serverpulse(&data, &["token", "create", "--email", "ops@example.test", "--json"], None);
    assert!(ok, "{err}");
    let token: Value = serde_json::from_str(&out).unwrap();
    assert!(token["token"].as_str().unwrap().starts_with("sp_"));

    let id = list[0]["id"].as_i64().unwrap().to_string();
    let (ok, out, _) = serverpulse(&data, &["server", "remove", &id], None);
    assert!(ok, "{out}");
    let (ok, out, _) = serverpulse(&data, &["server", "list", "--json"], None);
    assert!(ok);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap().as_array().unwrap().len(), 1);
}

#[test]
fn a_bad_config_file_names_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hub.yml");
    std::fs::write(&config, "listen: 127.0.0.1:0\nheartbeat_interval: 30\nofline_after: 90\n").unwrap();
    let config_arg = config.to_str().unwrap();
    let (ok, _, err) = serverpulse(&dir.path().join("d"), &["--config", config_arg, "serve"], None);
    assert!(!ok);
    assert!(err.contains(&format!("{config_arg}:3:")), "{err}");
    assert!(err.contains("ofline_after"), "{err}");
}

#[test]
fn serve_answers_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let listen = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_serverpulse"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["serve", "--listen", &listen])
        .env_remove("SERVERPULSE_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut answer = None;
    for _ in 0..100 {
        if let Ok(mut stream) = std::net::TcpStream::connect(&listen) {
            use std::io::Read;
            write!(stream, "GET /api/v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
            let mut text = String::new();
            stream.read_to_string(&mut text).unwrap();
            answer = Some(text);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let answer = answer.expect("the hub never answered");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#""status":"ok""#));
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "graceful shutdown exits 0, got {exit:?}");
}
