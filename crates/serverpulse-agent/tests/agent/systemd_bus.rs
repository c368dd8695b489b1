//! Unit state over D-Bus against real peers: Debian's `dbus-daemon` (the reference bus)
//! on a private socket, and a stand-in for systemd written with python3-dbus
//! (`tests/helpers/fake_systemd.py`), so the agent's wire code is checked against
//! implementations it shares nothing with. Then the `systemctl show` fallback.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value as Json;
use serverpulse_agent::dbus::{Call, Connection, DbusError, Value};

/// A child process killed when the test ends, however it ends.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `command` and waits for its first stdout line.
fn first_line(mut command: Command) -> (Reaped, String) {
    let mut child = command.stdout(Stdio::piped()).spawn().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    (Reaped(child), line.trim().to_owned())
}

struct Bus {
    address: String,
    _daemon: Reaped,
    _systemd: Reaped,
    _dir: tempfile::TempDir,
}

/// A private `dbus-daemon` with the fake systemd owning `org.freedesktop.systemd1` on it.
fn bus() -> Bus {
    let dir = tempfile::tempdir().unwrap();
    // The session configuration (anyone may own names and call anything) on our own socket.
    let mut daemon = Command::new("dbus-daemon");
    daemon
        .args(["--session", "--nofork", "--print-address"])
        .arg(format!("--address=unix:path={}", dir.path().join("bus").display()))
        .stderr(Stdio::null());
    let (daemon, address) = first_line(daemon);
    assert!(address.starts_with("unix:path="), "dbus-daemon printed {address:?}");
    let helper = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/helpers/fake_systemd.py");
    // Debian's interpreter: python3-dbus and python3-gi are installed for it (by .ci/run).
    let mut systemd = Command::new("/usr/bin/python3");
    systemd.arg(helper).arg(&address);
    let (systemd, ready) = first_line(systemd);
    assert_eq!(ready, "ready", "the fake systemd did not start");
    Bus { address, _daemon: daemon, _systemd: systemd, _dir: dir }
}

fn properties(reply: &[Value]) -> Vec<(String, Value)> {
    reply[0].properties().into_iter().map(|(k, v)| (k.to_owned(), v.clone())).collect()
}

#[test]
fn the_client_speaks_to_the_reference_bus_and_decodes_every_type() {
    let bus = bus();
    let mut connection = Connection::open(&bus.address, Duration::from_secs(5)).unwrap();

    // The bus itself: a string array and a property map from dbus-daemon.
    let names = connection
        .call(Call {
            destination: "org.freedesktop.DBus",
            path: "/org/freedesktop/DBus",
            interface: "org.freedesktop.DBus",
            member: "ListNames",
            args: &[],
        })
        .unwrap();
    let Value::Array(names) = &names[0] else { panic!("ListNames returned {names:?}") };
    assert!(names.contains(&Value::Str("org.freedesktop.systemd1".into())), "{names:?}");

    fn unit<'a>(path: &'a str, args: &'a [&'a str]) -> Call<'a> {
        Call {
            destination: "org.freedesktop.systemd1",
            path,
            interface: "org.freedesktop.DBus.Properties",
            member: "GetAll",
            args,
        }
    }
    let nginx = serverpulse_agent::dbus::unit_path("nginx.service");
    let reply = connection.call(unit(&nginx, &["org.freedesktop.systemd1.Unit"])).unwrap();
    let props = properties(&reply);
    let get = |key: &str| props.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).unwrap();
    assert_eq!(get("ActiveState"), Value::Str("active".into()));
    assert_eq!(get("StateChangeTimestamp"), Value::Uint64(1_750_537_800_123_456));
    assert_eq!(get("CanStart"), Value::Bool(true));
    assert_eq!(get("Job"), Value::Struct(vec![Value::Uint32(0), Value::Str("/".into())]));
    assert_eq!(
        get("Conditions"),
        Value::Array(vec![Value::Struct(vec![
            Value::Str("ConditionPathExists".into()),
            Value::Bool(false),
            Value::Bool(false),
            Value::Str("/etc/x".into()),
            Value::Int32(1),
        ])])
    );
    assert_eq!(get("InvocationID"), Value::Array(vec![Value::Byte(1), Value::Byte(2), Value::Byte(3)]));
    assert_eq!(get("Requires"), Value::Array(vec![]));
    assert_eq!(get("Weight"), Value::Double(0.5));
    assert_eq!(get("Nice"), Value::Int16(-5));
    assert_eq!(get("Port"), Value::Uint16(8080));
    assert_eq!(get("Offset"), Value::Int64(-42));
    assert_eq!(get("Signature"), Value::Str("a{sv}".into()));
    let nested = get("Nested");
    let inner = nested.properties();
    assert_eq!(inner[0].0, "inner");
    assert_eq!(inner[0].1.properties(), vec![("k", &Value::Uint32(7))]);

    // Errors come back as errors, and the connection stays usable after them.
    let denied = serverpulse_agent::dbus::unit_path("secret.service");
    match connection.call(unit(&denied, &["org.freedesktop.systemd1.Unit"])) {
        Err(DbusError::Remote { name, .. }) => assert_eq!(name, "org.freedesktop.DBus.Error.AccessDenied"),
        other => panic!("expected an error reply, got {other:?}"),
    }
    assert!(connection.call(unit(&nginx, &["org.freedesktop.systemd1.Unit"])).is_ok());
}

fn agent_config(dir: &Path, units: &[&str]) -> PathBuf {
    let config = dir.join("config.yml");
    std::fs::write(
        &config,
        format!(
            "server:\n  endpoint: http://127.0.0.1:9\nstorage:\n  state_dir: {}\nmonitoring:\n  services: [{}]\n",
            dir.join("state").display(),
            units.join(", ")
        ),
    )
    .unwrap();
    config
}

/// `check-services --json` with the given system bus address and `PATH`.
fn check_services(config: &Path, bus: &str, path: &Path) -> (Json, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_serverpulse-agent"))
        .arg("--config")
        .arg(config)
        .args(["check-services", "--json"])
        .env("DBUS_SYSTEM_BUS_ADDRESS", bus)
        .env("PATH", path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (serde_json::from_slice(&out.stdout).unwrap(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn the_agent_reads_units_over_the_bus() {
    let bus = bus();
    let dir = tempfile::tempdir().unwrap();
    let config = agent_config(dir.path(), &["nginx", "mysql", "backup.timer", "nope", "secret"]);
    // No systemctl on PATH: whatever comes back came over the bus.
    let empty = dir.path().join("empty-path");
    std::fs::create_dir(&empty).unwrap();
    let (states, stderr) = check_services(&config, &bus.address, &empty);
    assert!(stderr.contains("systemd D-Bus API"), "{stderr}");
    assert_eq!(
        states,
        serde_json::json!([
            {"name": "nginx", "status": "active", "sub_state": "running", "main_pid": 812, "restarts": 2,
             "since": 1_750_537_800_123_i64},
            {"name": "mysql", "status": "failed", "sub_state": "failed", "restarts": 5, "since": 1_750_537_900_000_i64},
            {"name": "backup.timer", "status": "active", "sub_state": "waiting", "since": 1_750_530_000_000_i64},
            {"name": "nope", "status": "not_found", "sub_state": "dead"},
            {"name": "secret", "status": "unknown"},
        ])
    );
}

#[test]
fn without_a_bus_units_come_from_systemctl_even_an_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let config = agent_config(dir.path(), &["nginx", "mysql"]);
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    // An old systemctl: refuses --timestamp=unix, prints local-time timestamps.
    let script = "#!/bin/sh\nfor a in \"$@\"; do [ \"$a\" = --timestamp=unix ] && exit 1; done\n\
                  printf 'LoadState=loaded\\nActiveState=active\\nSubState=running\\nMainPID=812\\nNRestarts=0\\n\
                  StateChangeTimestamp=Sat 2025-06-21 20:30:00 UTC\\n\\n'\n\
                  printf 'LoadState=loaded\\nActiveState=failed\\nSubState=failed\\nMainPID=0\\nNRestarts=3\\n'\n";
    let systemctl = bin.join("systemctl");
    std::fs::write(&systemctl, script).unwrap();
    std::fs::set_permissions(&systemctl, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let missing_bus = format!("unix:path={}", dir.path().join("no-bus").display());
    let (states, stderr) = check_services(&config, &missing_bus, &bin);
    assert!(stderr.contains("read with systemctl"), "{stderr}");
    assert_eq!(
        states,
        serde_json::json!([
            {"name": "nginx", "status": "active", "sub_state": "running", "main_pid": 812, "restarts": 0},
            {"name": "mysql", "status": "failed", "sub_state": "failed", "restarts": 3},
        ])
    );
}

/// With systemd's change signals, a unit is read again only when it changed: steady
/// collections cost no call at all, and a failure is seen at the next one.
#[test]
fn units_are_read_again_only_when_systemd_says_they_changed() {
    use serverpulse_agent::services::{ServiceSource, Systemd};
    let bus = bus();
    let mut control = Connection::open(&bus.address, Duration::from_secs(5)).unwrap();
    let mut call = |member: &'static str, args: &[&str]| {
        let reply = control
            .call(Call {
                destination: "org.freedesktop.systemd1",
                path: "/org/freedesktop/systemd1",
                interface: "test.FakeSystemd",
                member,
                args,
            })
            .unwrap();
        reply.first().and_then(Value::as_u64)
    };
    let units = vec!["nginx".to_owned(), "mysql".to_owned()];
    let mut systemd = Systemd::at(&bus.address);
    let statuses =
        |systemd: &mut Systemd| systemd.states(&units).into_iter().map(|s| s.status).collect::<Vec<String>>();

    assert_eq!(statuses(&mut systemd), ["active", "failed"]);
    let after_first = call("GetAllCalls", &[]).unwrap();
    for _ in 0..5 {
        assert_eq!(statuses(&mut systemd), ["active", "failed"]);
    }
    assert_eq!(call("GetAllCalls", &[]).unwrap(), after_first, "nothing changed, nothing asked");

    call("SetUnitState", &["nginx.service", "failed", "failed"]);
    assert_eq!(statuses(&mut systemd), ["failed", "failed"], "the change is seen at the next reading");
    assert_eq!(call("GetAllCalls", &[]).unwrap(), after_first + 1, "only the unit that changed was read");
}
