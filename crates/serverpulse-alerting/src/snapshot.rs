//! What is known about one server at one instant, and the values a rule's metric takes
//! from it: one per subject (`""` for the host, a mount point, a unit name), since one
//! rule on `disk:*` or `service:*` watches many things, each with its own episode.

use std::collections::BTreeMap;

use crate::rule::{Metric, MountSelector};

/// One server's figures at `at` (Unix ms). Fields are `None` when the agent did not send them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub at: i64,
    pub cpu: Option<f64>,
    pub memory: Option<f64>,
    pub swap: Option<f64>,
    /// Used percentage of the root filesystem.
    pub disk: Option<f64>,
    /// Used percentage per mount point.
    pub mounts: Vec<(String, f64)>,
    pub load: Option<f64>,
    pub cores: Option<u32>,
    pub network_rx_rate: Option<f64>,
    pub network_tx_rate: Option<f64>,
    pub disk_read_rate: Option<f64>,
    pub disk_write_rate: Option<f64>,
    pub custom: BTreeMap<String, f64>,
    /// (unit, status) of the watched units.
    pub services: Vec<(String, String)>,
    /// The agent rebooted since its previous report (uptime went down).
    pub rebooted: bool,
    pub agent_offline: bool,
    /// When the newest report was taken, if any ever arrived.
    pub last_report_at: Option<i64>,
}

impl Metric {
    /// (subject, value) pairs for this metric in `snapshot`; empty when it has no value.
    pub fn values(&self, snapshot: &Snapshot) -> Vec<(String, f64)> {
        let host = |value: Option<f64>| value.map(|v| (String::new(), v)).into_iter().collect();
        let flag = |on: bool| if on { 1.0 } else { 0.0 };
        match self {
            Self::Cpu => host(snapshot.cpu),
            Self::Memory => host(snapshot.memory),
            Self::Swap => host(snapshot.swap),
            Self::Disk(MountSelector::Root) => host(snapshot.disk),
            Self::Disk(MountSelector::Mount(mount)) => {
                snapshot.mounts.iter().filter(|(m, _)| m == mount).cloned().collect()
            }
            Self::Disk(MountSelector::Every) => snapshot.mounts.clone(),
            Self::Load => host(snapshot.load),
            Self::LoadPerCore => {
                host(snapshot.load.zip(snapshot.cores.filter(|c| *c > 0)).map(|(l, c)| l / f64::from(c)))
            }
            Self::NetworkRxRate => host(snapshot.network_rx_rate),
            Self::NetworkTxRate => host(snapshot.network_tx_rate),
            Self::DiskReadRate => host(snapshot.disk_read_rate),
            Self::DiskWriteRate => host(snapshot.disk_write_rate),
            Self::Custom(name) => host(snapshot.custom.get(name).copied()),
            Self::Service(pattern) => snapshot
                .services
                .iter()
                .filter(|(unit, _)| glob(pattern, unit))
                .map(|(unit, status)| (unit.clone(), flag(status == "failed")))
                .collect(),
            Self::AgentOffline => host(Some(flag(snapshot.agent_offline))),
            Self::NoData => host(snapshot.last_report_at.map(|t| ((snapshot.at - t).max(0) / 1000) as f64)),
            Self::Reboot => host(Some(flag(snapshot.rebooted))),
        }
    }
}

/// `*` any run of characters, `?` one character; everything else literal.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("*", "nginx"));
        assert!(glob("php*-fpm", "php8.2-fpm"));
        assert!(glob("nginx", "nginx"));
        assert!(glob("ng?nx", "nginx"));
        assert!(!glob("ng?nx", "nginxx"));
        assert!(!glob("php*-fpm", "php8.2-fpm2"));
        assert!(glob("*a*b*", "xxaxxbxx"));
    }

    #[test]
    fn one_value_per_subject() {
        let snapshot = Snapshot {
            at: 100_000,
            load: Some(3.0),
            cores: Some(2),
            mounts: vec![("/".into(), 40.0), ("/var".into(), 93.0)],
            services: vec![("nginx".into(), "active".into()), ("php8.2-fpm".into(), "failed".into())],
            last_report_at: Some(40_000),
            ..Snapshot::default()
        };
        assert_eq!(Metric::LoadPerCore.values(&snapshot), [(String::new(), 1.5)]);
        assert_eq!(Metric::parse("disk:/var").unwrap().values(&snapshot), [("/var".to_owned(), 93.0)]);
        assert_eq!(Metric::parse("disk:*").unwrap().values(&snapshot).len(), 2);
        assert_eq!(
            Metric::parse("service:*").unwrap().values(&snapshot),
            [("nginx".to_owned(), 0.0), ("php8.2-fpm".to_owned(), 1.0)]
        );
        assert_eq!(Metric::NoData.values(&snapshot), [(String::new(), 60.0)]);
        assert!(Metric::Cpu.values(&snapshot).is_empty(), "no figure, no value");
    }
}
