//! The state of watched systemd units, read with `systemctl show` (whose output is
//! stable, documented `Key=Value` lines) behind a [`ServiceSource`] trait so tests and
//! hosts without systemd can supply their own.

use crate::report::ServiceState;

/// Units watched when the configuration names none: common services, reported only if installed.
pub const DEFAULT_UNITS: &[&str] =
    &["ssh", "sshd", "nginx", "apache2", "httpd", "mysql", "mariadb", "postgresql", "docker", "redis-server", "cron"];

/// Where unit states come from.
pub trait ServiceSource: Send {
    /// The state of each of `units`, in order; `not_found` for units systemd does not know.
    fn states(&mut self, units: &[String]) -> Vec<ServiceState>;
}

/// `systemctl show` for all watched units in one call (one process per collection,
/// whatever the number of units).
#[derive(Debug, Default)]
pub struct Systemctl;

const PROPERTIES: &str = "--property=LoadState,ActiveState,SubState,MainPID,NRestarts,StateChangeTimestamp";

impl ServiceSource for Systemctl {
    fn states(&mut self, units: &[String]) -> Vec<ServiceState> {
        if units.is_empty() {
            return Vec::new();
        }
        let output = crate::sd_notify::command("systemctl").args(["show", PROPERTIES, "--"]).args(units).output();
        let text = match output {
            Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
            _ => String::new(),
        };
        let blocks: Vec<&str> = text.split("\n\n").filter(|b| !b.trim().is_empty()).collect();
        units
            .iter()
            .enumerate()
            .map(|(i, unit)| match blocks.get(i).filter(|_| blocks.len() == units.len()) {
                Some(block) => parse_show(unit, block),
                None => ServiceState::unknown(unit),
            })
            .collect()
    }
}

/// Reads one unit's block of `systemctl show` output.
pub fn parse_show(unit: &str, text: &str) -> ServiceState {
    let get = |key: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')))
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let status = match (get("LoadState"), get("ActiveState")) {
        (Some("not-found"), _) => "not_found",
        (_, Some(state)) => state,
        _ => "unknown",
    };
    ServiceState {
        name: unit.to_owned(),
        status: status.to_owned(),
        sub_state: get("SubState").map(str::to_owned),
        main_pid: get("MainPID").and_then(|p| p.parse().ok()).filter(|p| *p != 0),
        restarts: get("NRestarts").and_then(|n| n.parse().ok()),
        since: get("StateChangeTimestamp").map(str::to_owned),
    }
}

/// The units to watch: the configured ones, or the installed units of the default list.
pub fn watched_units(configured: &[String], source: &mut dyn ServiceSource) -> Vec<String> {
    if !configured.is_empty() {
        return configured.to_vec();
    }
    let defaults: Vec<String> = DEFAULT_UNITS.iter().map(|u| (*u).to_owned()).collect();
    // Only units positively seen: without systemd (a container) nothing is watched by default.
    source
        .states(&defaults)
        .into_iter()
        .filter(|s| !matches!(s.status.as_str(), "not_found" | "unknown"))
        .map(|s| s.name)
        .collect()
}

/// Reads every unit in `units`.
pub fn check(units: &[String], source: &mut dyn ServiceSource) -> Vec<ServiceState> {
    source.states(units)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_systemctl_show() {
        let full = parse_show(
            "nginx",
            "LoadState=loaded\nActiveState=active\nSubState=running\nMainPID=812\nNRestarts=2\nStateChangeTimestamp=Sat 2025-06-21 20:30:00 UTC\n",
        );
        assert_eq!(full.main_pid, Some(812));
        assert_eq!(full.restarts, Some(2));
        assert_eq!(full.since.as_deref(), Some("Sat 2025-06-21 20:30:00 UTC"));
        let running =
            parse_show("nginx", "LoadState=loaded\nActiveState=active\nSubState=running\nMainPID=812\nNRestarts=0\n");
        assert_eq!((running.status.as_str(), running.sub_state.as_deref()), ("active", Some("running")));
        let failed = parse_show("mysql", "LoadState=loaded\nActiveState=failed\nSubState=failed\n");
        assert_eq!(failed.status, "failed");
        let missing = parse_show("nope", "LoadState=not-found\nActiveState=inactive\nSubState=dead\n");
        assert_eq!(missing.status, "not_found");
    }
}
