//! The install script the hub serves, run against a fake root: it lays down the binary,
//! a valid configuration holding the enrollment token, the state directory and a
//! hardened systemd unit — and nothing for a token that is not valid.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serverpulse_hub::auth::Admin;

use crate::hub::TestHub;

fn get(url: &str) -> (u16, Vec<u8>) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut response = agent.get(url).call().unwrap();
    (response.status().as_u16(), response.body_mut().with_config().limit(256 << 20).read_to_vec().unwrap())
}

/// Runs the script into `root`, with the freshly built agent instead of a download.
fn run_installer(script: &str, root: &Path) {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .env("SERVERPULSE_INSTALL_ROOT", root)
        .env("SERVERPULSE_AGENT_BINARY", env!("CARGO_BIN_EXE_serverpulse-agent"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_install_script_lays_down_what_it_promises() {
    let dir = tempfile::tempdir().unwrap();
    let hub = TestHub::start(&dir.path().join("hub.db"), |s| {
        s.agent_binary = env!("CARGO_BIN_EXE_serverpulse-agent").into();
    });
    let added = hub.runtime.block_on(serverpulse_hub::admin::add_server(
        hub.state(),
        &Admin::console(),
        "web-1",
        "10.0.0.5".parse().unwrap(),
    ));
    let added = added.unwrap();
    let token = added.enrollment.enrollment_token;
    assert!(added.enrollment.install_command.contains(&format!("{}/install.sh?token={token}", hub.url())));

    let (status, _) = get(&format!("{}/install.sh?token={}", hub.url(), "0".repeat(64)));
    assert_eq!(status, 401, "an unknown token gets no script");
    let (status, script) = get(&format!("{}/install.sh?token={token}", hub.url()));
    assert_eq!(status, 200);
    let script = String::from_utf8(script).unwrap();
    assert!(script.starts_with("#!/bin/sh"));
    assert!(!script.contains('@'), "every blank is filled in");

    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    run_installer(&script, &root);

    let binary = root.join("usr/local/bin/serverpulse-agent");
    assert_eq!(mode(&binary), 0o755);
    let version = std::process::Command::new(&binary).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&version.stdout).contains(env!("CARGO_PKG_VERSION")));

    let config_path = root.join("etc/serverpulse-agent/config.yml");
    assert_eq!(mode(&config_path), 0o640);
    let config = serverpulse_agent::config::load(&config_path).unwrap();
    assert_eq!(config.server.endpoint.as_str(), hub.url());
    assert_eq!(config.server.enrollment_token.as_ref().and_then(|t| t.value()), Some(token.as_str()));
    assert_eq!(mode(&root.join("var/lib/serverpulse-agent")), 0o700);

    let unit = std::fs::read_to_string(root.join("etc/systemd/system/serverpulse-agent.service")).unwrap();
    for line in [
        "Type=notify",
        "ExecStart=/usr/local/bin/serverpulse-agent --config /etc/serverpulse-agent/config.yml run",
        "User=serverpulse-agent",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "ReadWritePaths=/var/lib/serverpulse-agent",
        "Restart=on-failure",
        "CapabilityBoundingSet=",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
    ] {
        assert!(unit.lines().any(|l| l == line), "the unit lacks {line:?}");
    }

    // Running it again keeps the operator's configuration.
    std::fs::write(&config_path, "server:\n  endpoint: https://edited.example\n").unwrap();
    run_installer(&script, &root);
    assert!(std::fs::read_to_string(&config_path).unwrap().contains("edited.example"));

    // The hub also serves the binary the script downloads by default.
    let (status, bytes) = get(&format!("{}/download/serverpulse-agent?arch={}", hub.url(), std::env::consts::ARCH));
    assert_eq!(status, 200);
    assert_eq!(bytes, std::fs::read(env!("CARGO_BIN_EXE_serverpulse-agent")).unwrap());
    let (status, _) = get(&format!("{}/download/serverpulse-agent?arch=sparc64", hub.url()));
    assert_eq!(status, 404);
}
