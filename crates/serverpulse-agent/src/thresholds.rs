//! Local threshold alerts (`alerts.*_threshold`): one alert when a figure has stayed
//! above its threshold for the hold time, one recovery message when it has come back
//! below the threshold minus a margin — never one alert per collection, and no flapping
//! while the value hovers around the line.

use serde_json::{Value, json};
use serverpulse_proto::time::format_timestamp;

use crate::collector::Flat;
use crate::config::AlertsSection;

/// The figures thresholds apply to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Figure {
    Cpu,
    Memory,
    Disk,
    Load,
}

impl Figure {
    fn name(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Memory => "memory",
            Self::Disk => "disk",
            Self::Load => "load",
        }
    }

    fn of(self, flat: &Flat) -> Option<f64> {
        match self {
            Self::Cpu => Some(flat.cpu_usage),
            Self::Memory => Some(flat.memory_usage),
            Self::Disk => flat.disk_usage,
            Self::Load => Some(flat.load_average),
        }
    }

    fn unit(self) -> &'static str {
        if self == Self::Load { "" } else { " %" }
    }
}

/// Where one figure stands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Phase {
    Normal,
    /// Above the threshold since `since`, not yet for the hold time.
    Pending {
        since: i64,
    },
    /// Alert sent; stays until the value drops below the recovery line.
    Firing {
        since: i64,
    },
}

/// One threshold with its hysteresis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rule {
    pub figure: Figure,
    pub threshold: f64,
    /// Below this the episode is over.
    pub recover_below: f64,
    pub hold_ms: i64,
}

/// What a step produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Fired { value: f64, since: i64 },
    Recovered { value: f64, since: i64 },
}

/// The rule for one instant: pure, so tests walk it through any series.
pub fn step(rule: &Rule, phase: Phase, value: f64, now: i64) -> (Phase, Option<Change>) {
    match phase {
        Phase::Normal if value > rule.threshold => {
            if rule.hold_ms <= 0 {
                (Phase::Firing { since: now }, Some(Change::Fired { value, since: now }))
            } else {
                (Phase::Pending { since: now }, None)
            }
        }
        Phase::Normal => (Phase::Normal, None),
        Phase::Pending { .. } if value <= rule.threshold => (Phase::Normal, None),
        Phase::Pending { since } if now - since >= rule.hold_ms => {
            (Phase::Firing { since }, Some(Change::Fired { value, since }))
        }
        Phase::Pending { since } => (Phase::Pending { since }, None),
        Phase::Firing { since } if value < rule.recover_below => {
            (Phase::Normal, Some(Change::Recovered { value, since }))
        }
        Phase::Firing { since } => (Phase::Firing { since }, None),
    }
}

/// The four rules of the configuration, with their phases.
#[derive(Debug, Clone)]
pub struct Thresholds {
    rules: Vec<(Rule, Phase)>,
}

impl Thresholds {
    pub fn from_config(alerts: &AlertsSection) -> Self {
        let hold_ms = i64::from(alerts.hold_seconds) * 1000;
        let percent =
            |figure, threshold: f64| Rule { figure, threshold, recover_below: threshold - alerts.hysteresis, hold_ms };
        let load = alerts.load_threshold;
        Self {
            rules: vec![
                (percent(Figure::Cpu, alerts.cpu_threshold.0), Phase::Normal),
                (percent(Figure::Memory, alerts.memory_threshold.0), Phase::Normal),
                (percent(Figure::Disk, alerts.disk_threshold.0), Phase::Normal),
                (Rule { figure: Figure::Load, threshold: load, recover_below: load * 0.9, hold_ms }, Phase::Normal),
            ],
        }
    }

    /// New thresholds that keep each figure's ongoing episode (a change of threshold
    /// neither re-announces an alert already raised nor loses its recovery message).
    pub fn reconfigured(&self, alerts: &AlertsSection) -> Self {
        let mut next = Self::from_config(alerts);
        for ((rule, phase), (old_rule, old_phase)) in next.rules.iter_mut().zip(&self.rules) {
            if rule.figure == old_rule.figure {
                *phase = *old_phase;
            }
        }
        next
    }

    /// Feeds one collection; returns the alert documents to send (wire format A).
    pub fn observe(&mut self, flat: &Flat, now: i64) -> Vec<Value> {
        let mut alerts = Vec::new();
        for (rule, phase) in &mut self.rules {
            let Some(value) = rule.figure.of(flat) else { continue };
            let (next, change) = step(rule, *phase, value, now);
            *phase = next;
            let name = rule.figure.name();
            let unit = rule.figure.unit();
            let alert = match change {
                None => continue,
                Some(Change::Fired { value, since }) => json!({
                    "type": format!("{name}_threshold"),
                    "severity": "warning",
                    "message": format!("{name} at {value:.1}{unit}, above {:.1}{unit} since {}",
                                       rule.threshold, format_timestamp(since)),
                    "details": {"state": "firing", "value": value, "threshold": rule.threshold, "since": format_timestamp(since)},
                    "timestamp": format_timestamp(now),
                }),
                Some(Change::Recovered { value, since }) => json!({
                    "type": format!("{name}_threshold"),
                    "severity": "info",
                    "message": format!("{name} back to {value:.1}{unit} (below {:.1}{unit}) after {} s",
                                       rule.recover_below, (now - since) / 1000),
                    "details": {"state": "resolved", "value": value, "threshold": rule.threshold, "since": format_timestamp(since)},
                    "timestamp": format_timestamp(now),
                }),
            };
            alerts.push(alert);
        }
        alerts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Threshold;

    const RULE: Rule = Rule { figure: Figure::Cpu, threshold: 80.0, recover_below: 75.0, hold_ms: 60_000 };

    /// Runs a series of (time, value) through the rule and lists what it said.
    fn run(series: &[(i64, f64)]) -> Vec<(i64, &'static str)> {
        let mut phase = Phase::Normal;
        let mut said = Vec::new();
        for &(at, value) in series {
            let (next, change) = step(&RULE, phase, value, at);
            phase = next;
            match change {
                Some(Change::Fired { .. }) => said.push((at, "fired")),
                Some(Change::Recovered { .. }) => said.push((at, "recovered")),
                None => {}
            }
        }
        said
    }

    #[test]
    fn a_short_spike_is_not_an_alert() {
        assert_eq!(run(&[(0, 95.0), (30_000, 95.0), (60_000, 50.0), (90_000, 95.0)]), []);
    }

    #[test]
    fn one_alert_per_episode_and_one_recovery() {
        let series = [(0, 90.0), (30_000, 91.0), (60_000, 92.0), (90_000, 99.0), (120_000, 70.0), (150_000, 70.0)];
        assert_eq!(run(&series), [(60_000, "fired"), (120_000, "recovered")]);
    }

    #[test]
    fn hovering_around_the_threshold_does_not_flap() {
        let mut series = vec![(0, 85.0), (60_000, 85.0)];
        for i in 0..10 {
            series.push((90_000 + i * 30_000, if i % 2 == 0 { 79.0 } else { 81.0 }));
        }
        series.push((500_000, 74.0));
        assert_eq!(run(&series), [(60_000, "fired"), (500_000, "recovered")]);
    }

    #[test]
    fn observe_speaks_the_alert_protocol_and_survives_reconfiguration() {
        let section = AlertsSection { hold_seconds: 0, ..AlertsSection::default() };
        let mut thresholds = Thresholds::from_config(&section);
        let flat = |cpu: f64| Flat {
            cpu_usage: cpu,
            memory_usage: 10.0,
            disk_usage: Some(10.0),
            uptime: 1,
            load_average: 0.1,
            network_rx: 0,
            network_tx: 0,
            disk_io_read: 0,
            disk_io_write: 0,
        };
        let fired = thresholds.observe(&flat(97.0), 1_000);
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0]["type"], "cpu_threshold");
        assert_eq!(fired[0]["severity"], "warning");
        assert!(thresholds.observe(&flat(96.0), 2_000).is_empty());
        // A new threshold (from the hub) keeps the episode: no second alert, and the
        // recovery still comes.
        let mut thresholds =
            thresholds.reconfigured(&AlertsSection { cpu_threshold: Threshold(90.0), ..section.clone() });
        assert!(thresholds.observe(&flat(96.0), 2_500).is_empty());
        let recovered = thresholds.observe(&flat(10.0), 3_000);
        assert_eq!(recovered[0]["details"]["state"], "resolved");
        let decoded = serverpulse_proto::alert::decode_alerts(&json!({"alerts": recovered})).unwrap();
        assert_eq!(decoded[0].severity, serverpulse_proto::alert::Severity::Info);
    }
}
