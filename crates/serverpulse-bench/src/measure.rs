//! Measurements of a running process from outside: CPU time and proportional set size
//! from `/proc`, and fsync calls counted by `perf stat` on the syscall tracepoints.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// User plus system CPU seconds of process `pid` so far (`/proc/PID/stat`).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Proportional set size of process `pid` in bytes (`/proc/PID/smaps_rollup`).
pub fn pss_bytes(pid: u32) -> Option<u64> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let line = rollup.lines().find(|l| l.starts_with("Pss:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// `perf stat` counting the fsync and fdatasync calls of one process until stopped.
#[derive(Debug)]
pub struct FsyncCounter {
    perf: Child,
}

impl FsyncCounter {
    /// Starts counting for `pid`; `None` where perf or its tracepoints are unavailable.
    pub fn start(pid: u32) -> Option<Self> {
        let perf = Command::new("perf")
            .args(["stat", "-x", ",", "-e", "syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync", "-p"])
            .arg(pid.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .ok()?;
        std::thread::sleep(Duration::from_millis(300)); // attached before the window opens
        Some(Self { perf })
    }

    /// Stops counting and returns the calls seen.
    pub fn stop(mut self) -> Option<u64> {
        // perf prints its counts when interrupted.
        Command::new("kill").args(["-INT", &self.perf.id().to_string()]).status().ok()?;
        let output = std::mem::replace(&mut self.perf, Command::new("true").spawn().ok()?).wait_with_output().ok()?;
        let text = String::from_utf8_lossy(&output.stderr);
        let counts: Vec<u64> = text
            .lines()
            .filter(|l| l.contains("sys_enter_f"))
            .filter_map(|l| l.split(',').next()?.parse().ok())
            .collect();
        (!counts.is_empty()).then(|| counts.iter().sum())
    }
}

/// The value at quantile `q` (0–1) of sorted `values`.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_cpu_time_and_memory() {
        let pid = std::process::id();
        assert!(cpu_seconds(pid).is_some());
        assert!(pss_bytes(pid).is_some_and(|b| b > 100_000));
        assert_eq!(cpu_seconds(u32::MAX), None, "no such process");
    }

    #[test]
    fn quantiles_pick_from_the_sorted_values() {
        let values: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&values, 0.5), Duration::from_millis(51));
        assert_eq!(quantile(&values, 0.99), Duration::from_millis(100));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }
}
