//! The state of watched systemd units, read with `systemctl show` (whose output is
//! stable, documented `Key=Value` lines) behind a [`ServiceSource`] trait so tests and
//! hosts without systemd can supply their own.

use std::process::Command;

use crate::report::ServiceState;

/// Units watched when the configuration names none: common services, reported only if installed.
pub const DEFAULT_UNITS: &[&str] =
    &["ssh", "sshd", "nginx", "apache2", "httpd", "mysql", "mariadb", "postgresql", "docker", "redis-server", "cron"];

/// Where unit states come from.
pub trait ServiceSource: Send {
    /// The state of `unit`; `not_found` when systemd does not know it.
    fn state(&mut self, unit: &str) -> ServiceState;
}

/// `systemctl show --property=… <unit>`.
#[derive(Debug, Default)]
pub struct Systemctl;

impl ServiceSource for Systemctl {
    fn state(&mut self, unit: &str) -> ServiceState {
        let output = Command::new("systemctl")
            .args(["show", "--property=LoadState,ActiveState,SubState,MainPID,NRestarts", "--", unit])
            .output();
        match output {
            Ok(out) if out.status.success() => parse_show(unit, &String::from_utf8_lossy(&out.stdout)),
            _ => ServiceState { name: unit.to_owned(), status: "unknown".to_owned(), sub_state: None },
        }
    }
}

/// Reads `systemctl show` output.
pub fn parse_show(unit: &str, text: &str) -> ServiceState {
    let get = |key: &str| {
        text.lines().find_map(|line| line.strip_prefix(key).and_then(|rest| rest.strip_prefix('='))).map(str::trim)
    };
    let status = match (get("LoadState"), get("ActiveState")) {
        (Some("not-found"), _) => "not_found",
        (_, Some(state)) if !state.is_empty() => state,
        _ => "unknown",
    };
    ServiceState {
        name: unit.to_owned(),
        status: status.to_owned(),
        sub_state: get("SubState").filter(|s| !s.is_empty()).map(str::to_owned),
    }
}

/// The units to watch: the configured ones, or the installed units of the default list.
pub fn watched_units(configured: &[String], source: &mut dyn ServiceSource) -> Vec<String> {
    if !configured.is_empty() {
        return configured.to_vec();
    }
    DEFAULT_UNITS
        .iter()
        .filter(|unit| source.state(unit).status != "not_found")
        .map(|unit| (*unit).to_owned())
        .collect()
}

/// Reads every unit in `units`.
pub fn check(units: &[String], source: &mut dyn ServiceSource) -> Vec<ServiceState> {
    units.iter().map(|unit| source.state(unit)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_systemctl_show() {
        let running =
            parse_show("nginx", "LoadState=loaded\nActiveState=active\nSubState=running\nMainPID=812\nNRestarts=0\n");
        assert_eq!((running.status.as_str(), running.sub_state.as_deref()), ("active", Some("running")));
        let failed = parse_show("mysql", "LoadState=loaded\nActiveState=failed\nSubState=failed\n");
        assert_eq!(failed.status, "failed");
        let missing = parse_show("nope", "LoadState=not-found\nActiveState=inactive\nSubState=dead\n");
        assert_eq!(missing.status, "not_found");
    }
}
