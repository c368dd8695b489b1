//! The state of watched systemd units. Read over systemd's D-Bus API ([`Systemd`]), with
//! `systemctl show` as the fallback when the system bus is unreachable, behind a
//! [`ServiceSource`] trait so tests and hosts without systemd can supply their own.
//!
//! The bus is the default because `systemctl` is a process per collection: on a host
//! with systemd that costs more CPU than everything else the agent collects.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::dbus::{self, Call, Connection, DbusError, Value};
use crate::report::ServiceState;

/// Units watched when the configuration names none: common services, reported only if installed.
pub const DEFAULT_UNITS: &[&str] =
    &["ssh", "sshd", "nginx", "apache2", "httpd", "mysql", "mariadb", "postgresql", "docker", "redis-server", "cron"];

/// Where unit states come from.
pub trait ServiceSource: Send {
    /// The state of each of `units`, in order; `not_found` for units systemd does not know.
    fn states(&mut self, units: &[String]) -> Vec<ServiceState>;
}

/// How long a bus that failed is left alone before the next attempt.
const BUS_RETRY: Duration = Duration::from_secs(300);
/// Longest wait for one reply from the bus.
const BUS_TIMEOUT: Duration = Duration::from_secs(5);

/// Every this many readings all units are read again even without a change signal
/// (a safety net for a signal lost, e.g. to a dropped connection).
const FULL_READ_EVERY: u32 = 20;

/// The match rule for systemd's property-change signals of units.
const UNIT_CHANGES: &str = "type='signal',sender='org.freedesktop.systemd1',\
    interface='org.freedesktop.DBus.Properties',member='PropertiesChanged',\
    path_namespace='/org/freedesktop/systemd1/unit'";

/// systemd over D-Bus, falling back to [`Systemctl`] while the bus cannot be used.
///
/// Event-driven where systemd allows it: after `Subscribe` and a match rule for unit
/// property changes, a unit is read again only when a signal says it changed (and all
/// of them every [`FULL_READ_EVERY`] readings); in between, a reading costs one
/// non-blocking look at the socket. Without the subscription every reading asks.
#[derive(Debug, Default)]
pub struct Systemd {
    address: Option<String>,
    bus: Option<Connection>,
    subscribed: bool,
    retry_at: Option<Instant>,
    /// Last known state per unit name as configured.
    known: HashMap<String, ServiceState>,
    readings: u32,
    fallback: Systemctl,
}

impl Systemd {
    /// systemd on the bus at `address` instead of the system bus (tests).
    pub fn at(address: &str) -> Self {
        Self { address: Some(address.to_owned()), ..Self::default() }
    }

    /// Whether the last reading came over the bus (for `check-services`).
    pub fn on_bus(&self) -> bool {
        self.bus.is_some()
    }

    fn connect(&mut self) {
        if self.bus.is_some() || self.retry_at.is_some_and(|at| Instant::now() < at) {
            return;
        }
        let opened = match &self.address {
            Some(address) => Connection::open(address, BUS_TIMEOUT),
            None => Connection::system(BUS_TIMEOUT),
        };
        let mut bus = match opened {
            Ok(bus) => bus,
            Err(e) => return self.give_up_bus(&e),
        };
        let subscribe = Call {
            destination: SYSTEMD,
            path: "/org/freedesktop/systemd1",
            interface: "org.freedesktop.systemd1.Manager",
            member: "Subscribe",
            args: &[],
        };
        self.subscribed = bus.add_match(UNIT_CHANGES).and_then(|()| bus.call(subscribe)).is_ok();
        if !self.subscribed {
            log::info!("no systemd change signals; watched units are read at every collection");
        }
        self.known.clear();
        self.bus = Some(bus);
    }

    fn give_up_bus(&mut self, error: &DbusError) {
        if self.retry_at.is_none() {
            log::info!("systemd D-Bus API unavailable ({error}); reading units with systemctl");
        }
        self.bus = None;
        self.retry_at = Some(Instant::now() + BUS_RETRY);
    }

    /// Units to read now: those never read, those a signal named, or all of them.
    fn stale(&mut self, units: &[String]) -> Result<Vec<String>, DbusError> {
        self.readings = self.readings.wrapping_add(1);
        let Some(bus) = self.bus.as_mut() else { return Ok(units.to_vec()) };
        let signals = bus.take_signals()?;
        if !self.subscribed || signals.overflowed || self.readings.is_multiple_of(FULL_READ_EVERY) {
            return Ok(units.to_vec());
        }
        let changed: Vec<&str> = signals.signals.iter().map(|s| s.path.as_str()).collect();
        Ok(units
            .iter()
            .filter(|u| !self.known.contains_key(*u) || changed.contains(&dbus::unit_path(&unit_name(u)).as_str()))
            .cloned()
            .collect())
    }

    fn read_over_bus(&mut self, units: &[String]) -> Result<Vec<ServiceState>, DbusError> {
        let stale = self.stale(units)?;
        if !stale.is_empty() {
            let Some(bus) = self.bus.as_mut() else { return Err(DbusError::Malformed("not connected")) };
            for state in bus_states(bus, &stale)? {
                self.known.insert(state.name.clone(), state);
            }
        }
        Ok(units.iter().map(|u| self.known.get(u).cloned().unwrap_or_else(|| ServiceState::unknown(u))).collect())
    }
}

impl ServiceSource for Systemd {
    fn states(&mut self, units: &[String]) -> Vec<ServiceState> {
        if units.is_empty() {
            return Vec::new();
        }
        self.connect();
        if self.bus.is_some() {
            match self.read_over_bus(units) {
                Ok(states) => {
                    self.retry_at = None;
                    return states;
                }
                Err(e) => self.give_up_bus(&e),
            }
        }
        self.fallback.states(units)
    }
}

/// Unit types systemd knows; a name without one of these suffixes means `<name>.service`.
const UNIT_TYPES: &[&str] =
    &["service", "socket", "target", "device", "mount", "automount", "swap", "timer", "path", "slice", "scope"];

/// The full unit name systemd would use for `unit` (`nginx` → `nginx.service`).
pub fn unit_name(unit: &str) -> String {
    match unit.rsplit_once('.') {
        Some((_, suffix)) if UNIT_TYPES.contains(&suffix) => unit.to_owned(),
        _ => format!("{unit}.service"),
    }
}

const SYSTEMD: &str = "org.freedesktop.systemd1";
const PROPERTIES: &str = "org.freedesktop.DBus.Properties";
const UNIT: &str = "org.freedesktop.systemd1.Unit";
const SERVICE: &str = "org.freedesktop.systemd1.Service";

/// Every unit's state in one round trip: per unit, `GetAll` of the Unit interface, and
/// for services `MainPID` and `NRestarts`, all written at once. An error here means the
/// bus itself failed (or systemd is not on it); a unit the bus cannot describe is `unknown`.
fn bus_states(bus: &mut Connection, units: &[String]) -> Result<Vec<ServiceState>, DbusError> {
    let names: Vec<String> = units.iter().map(|u| unit_name(u)).collect();
    let paths: Vec<String> = names.iter().map(|n| dbus::unit_path(n)).collect();
    let call = |path, member, args| Call { destination: SYSTEMD, path, interface: PROPERTIES, member, args };
    let mut calls = Vec::with_capacity(units.len() * 3);
    for (name, path) in names.iter().zip(&paths) {
        calls.push(call(path, "GetAll", &[UNIT][..]));
        if name.ends_with(".service") {
            calls.push(call(path, "Get", &[SERVICE, "MainPID"][..]));
            calls.push(call(path, "Get", &[SERVICE, "NRestarts"][..]));
        }
    }
    let mut replies = bus.call_all(&calls)?.into_iter();
    let mut states = Vec::with_capacity(units.len());
    for (unit, name) in units.iter().zip(&names) {
        let unit_reply = replies.next().unwrap_or(Err(DbusError::Malformed("no reply")));
        let (pid, restarts) = if name.ends_with(".service") {
            let number = |reply: Option<Result<Vec<Value>, DbusError>>| {
                reply?.ok()?.first().and_then(Value::as_u64).and_then(|v| u32::try_from(v).ok())
            };
            (number(replies.next()), number(replies.next()))
        } else {
            (None, None)
        };
        let properties = match unit_reply {
            Ok(reply) => reply,
            Err(DbusError::Remote { name, .. })
                if name.contains("ServiceUnknown") || name.contains("NameHasNoOwner") =>
            {
                return Err(DbusError::Remote { name, message: "systemd is not on the bus".to_owned() });
            }
            Err(DbusError::Remote { name, message }) => {
                log::debug!("unit {unit}: {name}: {message}");
                states.push(ServiceState::unknown(unit));
                continue;
            }
            Err(e) => return Err(e),
        };
        let properties = properties.first().map(Value::properties).unwrap_or_default();
        let find = |key: &str| properties.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
        let text = |key: &str| find(key).and_then(Value::as_str);
        let mut state = from_properties(unit, text("LoadState"), text("ActiveState"));
        state.sub_state = text("SubState").filter(|s| !s.is_empty()).map(str::to_owned);
        state.since = find("StateChangeTimestamp")
            .and_then(Value::as_u64)
            .filter(|us| *us > 0)
            .and_then(|us| i64::try_from(us / 1000).ok());
        if state.status != "not_found" {
            state.main_pid = pid.filter(|pid| *pid != 0);
            state.restarts = restarts;
        }
        states.push(state);
    }
    Ok(states)
}

/// The reported status from systemd's `LoadState` and `ActiveState`.
fn from_properties(unit: &str, load: Option<&str>, active: Option<&str>) -> ServiceState {
    let status = match (load, active) {
        (Some("not-found"), _) => "not_found",
        (_, Some(state)) if !state.is_empty() => state,
        _ => "unknown",
    };
    ServiceState::with_status(unit, status)
}

/// `systemctl show` for all watched units in one call (one process per collection,
/// whatever the number of units).
#[derive(Debug)]
pub struct Systemctl {
    /// `--timestamp=unix` (systemd ≥ 247); dropped after an older systemctl refuses it.
    unix_timestamps: bool,
}

impl Default for Systemctl {
    fn default() -> Self {
        Self { unix_timestamps: true }
    }
}

const SHOW_PROPERTIES: &str = "--property=LoadState,ActiveState,SubState,MainPID,NRestarts,StateChangeTimestamp";

impl Systemctl {
    fn show(&self, units: &[String]) -> Option<String> {
        let mut command = crate::sd_notify::command("systemctl");
        command.args(["show", SHOW_PROPERTIES]);
        if self.unix_timestamps {
            command.arg("--timestamp=unix");
        }
        let out = command.arg("--").args(units).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl ServiceSource for Systemctl {
    fn states(&mut self, units: &[String]) -> Vec<ServiceState> {
        if units.is_empty() {
            return Vec::new();
        }
        let mut text = self.show(units);
        if text.is_none() && self.unix_timestamps {
            self.unix_timestamps = false;
            text = self.show(units);
        }
        let text = text.unwrap_or_default();
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
    ServiceState {
        sub_state: get("SubState").map(str::to_owned),
        main_pid: get("MainPID").and_then(|p| p.parse().ok()).filter(|p| *p != 0),
        restarts: get("NRestarts").and_then(|n| n.parse().ok()),
        // `@<seconds>` with --timestamp=unix; an older systemctl's local-time text is not kept.
        since: get("StateChangeTimestamp")
            .and_then(|t| t.strip_prefix('@'))
            .and_then(|secs| secs.parse::<i64>().ok())
            .map(|secs| secs * 1000),
        ..from_properties(unit, get("LoadState"), get("ActiveState"))
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
            "LoadState=loaded\nActiveState=active\nSubState=running\nMainPID=812\nNRestarts=2\nStateChangeTimestamp=@1750537800\n",
        );
        assert_eq!(full.main_pid, Some(812));
        assert_eq!(full.restarts, Some(2));
        assert_eq!(full.since, Some(1_750_537_800_000));
        let old = parse_show(
            "nginx",
            "LoadState=loaded\nActiveState=active\nStateChangeTimestamp=Sat 2025-06-21 20:30:00 UTC\n",
        );
        assert_eq!(old.since, None);
        let running =
            parse_show("nginx", "LoadState=loaded\nActiveState=active\nSubState=running\nMainPID=812\nNRestarts=0\n");
        assert_eq!((running.status.as_str(), running.sub_state.as_deref()), ("active", Some("running")));
        let failed = parse_show("mysql", "LoadState=loaded\nActiveState=failed\nSubState=failed\n");
        assert_eq!(failed.status, "failed");
        let missing = parse_show("nope", "LoadState=not-found\nActiveState=inactive\nSubState=dead\n");
        assert_eq!(missing.status, "not_found");
    }

    #[test]
    fn bare_names_are_services() {
        assert_eq!(unit_name("nginx"), "nginx.service");
        assert_eq!(unit_name("docker.socket"), "docker.socket");
        assert_eq!(unit_name("php8.2-fpm"), "php8.2-fpm.service");
    }
}
