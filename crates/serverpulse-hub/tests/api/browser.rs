//! The dashboard in a real browser: `web/tests/dashboard.mjs` (playwright-core driving
//! Debian's Chromium) against the whole hub on 127.0.0.1, playing the agent itself.
//! Screenshots of each main page land in `$CARGO_TARGET_TMPDIR/dashboard-screenshots`.
//!
//! Needs Node.js, `/usr/bin/chromium` (or `$SERVERPULSE_CHROMIUM`) and the npm packages
//! of `web/` (installed here with `npm ci` when missing); `.ci/run` installs Chromium.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::spawn_live;

fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("web")
}

fn chromium() -> PathBuf {
    std::env::var_os("SERVERPULSE_CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

/// `npm ci` in `web/` unless playwright-core is there already.
fn ensure_packages() {
    if web_dir().join("node_modules/playwright-core/package.json").is_file() {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund"])
        .current_dir(web_dir())
        .status()
        .expect("npm must be installed for the browser tests");
    assert!(status.success(), "npm ci in {} failed", web_dir().display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_works_in_a_real_browser() {
    assert!(
        chromium().is_file(),
        "the browser tests need Chromium at {} (apt-get install chromium, or set SERVERPULSE_CHROMIUM)",
        chromium().display()
    );
    ensure_packages();
    let hub = spawn_live().await;
    let artefacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    let _ = std::fs::remove_dir_all(&artefacts);
    let script = web_dir().join("tests/dashboard.mjs");
    let (base, out) = (hub.base.clone(), artefacts.clone());
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .env("SERVERPULSE_URL", base)
            .env("SERVERPULSE_ARTEFACTS", out)
            .env("SERVERPULSE_CHROMIUM", chromium())
            .output()
            .expect("node must be installed for the browser tests")
    })
    .await
    .expect("browser suite thread");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "browser suite failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}");
    assert!(stdout.contains("all steps passed"), "{stdout}");
    for shot in
        ["01-setup", "02-fleet-empty", "04-add-server-connected", "05-fleet", "06-server", "07-alerts", "08-logs"]
    {
        let file = artefacts.join(format!("{shot}.png"));
        let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        assert!(size > 5_000, "screenshot {} is missing or empty", file.display());
    }
    println!("screenshots: {}", artefacts.display());
}
