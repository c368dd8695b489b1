//! Every file in `tests/invalid-configs/` is refused with the text its first line expects.

use std::path::Path;

#[test]
fn each_invalid_config_gives_the_expected_error() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/invalid-configs");
    let mut checked = 0;
    let mut failures = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let expectations = text.lines().next().and_then(|l| l.strip_prefix("# expect: ")).unwrap();
        let error = match serverpulse_agent::config::load(&path) {
            Ok(_) => {
                failures.push(format!("{}: accepted", path.display()));
                continue;
            }
            Err(e) => e.to_string(),
        };
        if !error.starts_with(&path.display().to_string()) {
            failures.push(format!("{}: error does not name the file: {error}", path.display()));
        }
        for expected in expectations.split(" | ") {
            if !error.contains(expected) {
                failures.push(format!("{}: {error:?} lacks {expected:?}", path.display()));
            }
        }
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} cases");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn validate_config_command_reports_file_line_column() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/invalid-configs");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_serverpulse-agent"))
        .args(["--config"])
        .arg(dir.join("zero_interval.yml"))
        .arg("validate-config")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("zero_interval.yml:5:"), "{stderr}");
}
