//! systemd's readiness protocol: a datagram to `$NOTIFY_SOCKET` (`Type=notify` units,
//! watchdog). Without the variable (not under systemd) nothing happens.

use std::os::unix::net::UnixDatagram;
use std::process::Command;

/// A command that does not inherit `$NOTIFY_SOCKET`: programs the agent runs
/// (`systemctl`, `journalctl`) would otherwise report their own state to systemd as if
/// they were the agent.
pub fn command(program: &str) -> Command {
    let mut command = Command::new(program);
    command.env_remove("NOTIFY_SOCKET");
    command
}

pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let Ok(socket) = UnixDatagram::unbound() else { return };
    let bytes = path.as_encoded_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|addr| socket.send_to_addr(state.as_bytes(), &addr))
    } else {
        socket.send_to(state.as_bytes(), &path)
    };
    if let Err(e) = sent {
        log::debug!("sd_notify {state}: {e}");
    }
}
