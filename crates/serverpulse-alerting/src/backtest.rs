//! How often a rule would have fired over stored history: the samples of a server
//! replayed through the same episode machine, in order, each at its own time.
//!
//! Absence rules (`agent_offline`, `no_data`) depend on time passing without samples
//! and cannot be replayed from the samples themselves; [`backtest`] refuses them.

use serde::Serialize;

use crate::evaluate::{EpisodeState, Transition, evaluate};
use crate::rule::{Level, Rule};
use crate::snapshot::Snapshot;

/// One episode the rule would have had.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Episode {
    pub subject: String,
    /// When the condition began to hold.
    pub started_at: i64,
    /// When the alert would have fired (after `for`).
    pub fired_at: i64,
    /// When it would have resolved; `None`: still firing at the end of the history.
    pub resolved_at: Option<i64>,
    /// The worst level reached.
    pub level: Level,
    /// The most extreme value seen while firing.
    pub peak: f64,
}

/// Replays `snapshots` (oldest first) through `rule`.
pub fn backtest(rule: &Rule, snapshots: impl IntoIterator<Item = Snapshot>) -> Result<Vec<Episode>, String> {
    if rule.metric.is_absence() {
        return Err(format!("{} rules depend on time without samples and cannot be backtested", rule.metric.name()));
    }
    let rising = matches!(rule.op, crate::rule::Op::Above | crate::rule::Op::AtLeast);
    let mut states: Vec<(String, EpisodeState, Option<usize>)> = Vec::new();
    let mut episodes: Vec<Episode> = Vec::new();
    for snapshot in snapshots {
        for (subject, value) in rule.metric.values(&snapshot) {
            let index = match states.iter().position(|(s, _, _)| *s == subject) {
                Some(i) => i,
                None => {
                    states.push((subject.clone(), EpisodeState::default(), None));
                    states.len() - 1
                }
            };
            let (_, state, open) = &mut states[index];
            let (next, transition) = evaluate(rule, *state, value, snapshot.at);
            *state = next;
            if let Some(i) = *open {
                let episode = &mut episodes[i];
                episode.peak = if rising { episode.peak.max(value) } else { episode.peak.min(value) };
            }
            match transition {
                Some(Transition::Fired { level, since }) => {
                    episodes.push(Episode {
                        subject: subject.clone(),
                        started_at: since,
                        fired_at: snapshot.at,
                        resolved_at: None,
                        level,
                        peak: value,
                    });
                    *open = Some(episodes.len() - 1);
                }
                Some(Transition::Escalated { to, .. }) => {
                    if let Some(i) = *open {
                        episodes[i].level = to;
                    }
                }
                Some(Transition::Resolved { .. }) => {
                    if let Some(i) = open.take() {
                        episodes[i].resolved_at = Some(snapshot.at);
                    }
                }
                Some(Transition::Pending { .. }) | None => {}
            }
        }
    }
    Ok(episodes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::decode_rule;
    use serde_json::json;

    fn cpu(at_minute: i64, value: f64) -> Snapshot {
        Snapshot { at: at_minute * 60_000, cpu: Some(value), ..Snapshot::default() }
    }

    #[test]
    fn episodes_over_a_history() {
        let rule = decode_rule(&json!({"name": "cpu", "metric": "cpu", "op": ">", "warning": 80, "critical": 95,
                                       "for": 120, "recovery": 70}))
        .unwrap();
        let history = [
            cpu(0, 85.0),
            cpu(1, 86.0),
            cpu(2, 97.0), // fires (held 2 min) as critical
            cpu(3, 75.0), // hysteresis band: still firing
            cpu(4, 60.0), // resolved
            cpu(5, 90.0),
            cpu(6, 50.0), // pending only: no episode
            cpu(7, 90.0),
            cpu(9, 91.0), // fires, still open at the end
        ];
        let episodes = backtest(&rule, history).unwrap();
        assert_eq!(episodes.len(), 2);
        assert_eq!(
            (
                episodes[0].started_at,
                episodes[0].fired_at,
                episodes[0].resolved_at,
                episodes[0].level,
                episodes[0].peak
            ),
            (0, 120_000, Some(240_000), Level::Critical, 97.0)
        );
        assert_eq!((episodes[1].started_at, episodes[1].resolved_at), (420_000, None));
        let offline = decode_rule(&json!({"name": "o", "metric": "agent_offline"})).unwrap();
        assert!(backtest(&offline, [cpu(0, 1.0)]).is_err());
    }
}
