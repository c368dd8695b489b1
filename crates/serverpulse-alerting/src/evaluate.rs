//! One step of an alert episode for one (rule, server, subject): given the state so far,
//! the newest value and the time, the next state and what happened.
//!
//! ```text
//!            holds                     held for `for`
//!   Ok ───────────────► Pending ─────────────────────► Firing ──┐ level rises: Escalated
//!    ▲  (for = 0: straight to Firing)   │ stops holding    │    ◄─┘
//!    │                                  ▼                  │ recovered (past `recovery`)
//!    └──────────────────────────────── Ok ◄────────────────┘ for `keep_firing_for`: Resolved
//! ```
//!
//! A value between the threshold and the recovery threshold keeps a firing episode
//! firing (hysteresis) and starts nothing new. The state is plain data (serde), stored
//! by the hub so an episode survives a restart.

use serde::{Deserialize, Serialize};

use crate::rule::{Level, Rule};

/// Where an episode stands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Phase {
    Ok,
    /// The condition holds since `since`, not yet for the rule's `for`.
    Pending {
        since: i64,
        level: Level,
    },
    /// The alert fires since `since`; `recovered_since` counts down `keep_firing_for`.
    Firing {
        since: i64,
        level: Level,
        recovered_since: Option<i64>,
    },
}

/// The state kept per (rule, server, subject). Stored as one flat JSON object,
/// `{"phase":"firing","since":…,"level":…,"recovered_since":…,"value":…,"updated_at":…}`
/// (see [`StoredEpisode`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(into = "StoredEpisode", try_from = "StoredEpisode")]
pub struct EpisodeState {
    pub phase: Phase,
    /// The newest value seen.
    pub value: Option<f64>,
    pub updated_at: i64,
}

impl Default for EpisodeState {
    fn default() -> Self {
        Self { phase: Phase::Ok, value: None, updated_at: 0 }
    }
}

/// The name of a [`Phase`] in the stored form.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum PhaseName {
    Ok,
    Pending,
    Firing,
}

/// [`EpisodeState`] as stored: every field at the top level, those of other phases
/// absent. Episodes are read and written on every report, so this form is decoded
/// field by field — a flattened, internally tagged enum would be buffered and
/// decoded twice.
#[derive(Serialize, Deserialize)]
struct StoredEpisode {
    phase: PhaseName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    since: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    level: Option<Level>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    recovered_since: Option<i64>,
    value: Option<f64>,
    updated_at: i64,
}

impl From<EpisodeState> for StoredEpisode {
    fn from(state: EpisodeState) -> Self {
        let (phase, since, level, recovered_since) = match state.phase {
            Phase::Ok => (PhaseName::Ok, None, None, None),
            Phase::Pending { since, level } => (PhaseName::Pending, Some(since), Some(level), None),
            Phase::Firing { since, level, recovered_since } => {
                (PhaseName::Firing, Some(since), Some(level), recovered_since)
            }
        };
        Self { phase, since, level, recovered_since, value: state.value, updated_at: state.updated_at }
    }
}

impl TryFrom<StoredEpisode> for EpisodeState {
    type Error = String;

    fn try_from(stored: StoredEpisode) -> Result<Self, String> {
        let held = |phase: &str| match (stored.since, stored.level) {
            (Some(since), Some(level)) => Ok((since, level)),
            _ => Err(format!("a {phase} episode needs `since` and `level`")),
        };
        let phase = match stored.phase {
            PhaseName::Ok => Phase::Ok,
            PhaseName::Pending => {
                let (since, level) = held("pending")?;
                Phase::Pending { since, level }
            }
            PhaseName::Firing => {
                let (since, level) = held("firing")?;
                Phase::Firing { since, level, recovered_since: stored.recovered_since }
            }
        };
        Ok(Self { phase, value: stored.value, updated_at: stored.updated_at })
    }
}

/// What a step changed, for the alert's lifecycle and the notifications.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Transition {
    /// The condition began; the alert fires once it has held for the rule's `for`.
    Pending { level: Level },
    /// A new episode fires.
    Fired { level: Level, since: i64 },
    /// The firing episode got worse (warning → critical); same episode.
    Escalated { from: Level, to: Level },
    /// The episode is over.
    Resolved { since: i64 },
}

/// Feeds one value observed at `now` (milliseconds) to an episode.
pub fn evaluate(rule: &Rule, state: EpisodeState, value: f64, now: i64) -> (EpisodeState, Option<Transition>) {
    let level = rule.level(value);
    let hold_ms = i64::from(rule.for_seconds) * 1000;
    let keep_ms = i64::from(rule.keep_firing_for) * 1000;
    let (phase, transition) = match (state.phase, level) {
        (Phase::Ok, None) => (Phase::Ok, None),
        (Phase::Ok, Some(level)) if hold_ms == 0 => {
            (Phase::Firing { since: now, level, recovered_since: None }, Some(Transition::Fired { level, since: now }))
        }
        (Phase::Ok, Some(level)) => (Phase::Pending { since: now, level }, Some(Transition::Pending { level })),
        (Phase::Pending { .. }, None) => (Phase::Ok, None),
        (Phase::Pending { since, .. }, Some(level)) if now - since >= hold_ms => {
            (Phase::Firing { since, level, recovered_since: None }, Some(Transition::Fired { level, since }))
        }
        // Pending at the level now seen: a warning that turns critical while pending fires as critical.
        (Phase::Pending { since, .. }, Some(level)) => (Phase::Pending { since, level }, None),
        (Phase::Firing { since, level: current, .. }, Some(level)) if level > current => (
            Phase::Firing { since, level, recovered_since: None },
            Some(Transition::Escalated { from: current, to: level }),
        ),
        (Phase::Firing { since, level, recovered_since }, _) if rule.recovered(value) => {
            let recovered_since = recovered_since.unwrap_or(now);
            if now - recovered_since >= keep_ms {
                (Phase::Ok, Some(Transition::Resolved { since }))
            } else {
                (Phase::Firing { since, level, recovered_since: Some(recovered_since) }, None)
            }
        }
        // Still past a threshold, or in the hysteresis band: keeps firing.
        (Phase::Firing { since, level, .. }, _) => (Phase::Firing { since, level, recovered_since: None }, None),
    };
    (EpisodeState { phase, value: Some(value), updated_at: now }, transition)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::{Metric, Op, Scope};

    const MIN: i64 = 60_000;

    fn cpu_rule() -> Rule {
        Rule {
            name: "cpu".into(),
            metric: Metric::Cpu,
            op: Op::Above,
            warning: Some(80.0),
            critical: Some(95.0),
            for_seconds: 300,
            recovery: Some(75.0),
            keep_firing_for: 0,
            scope: Scope::default(),
            enabled: true,
        }
    }

    /// Runs a series of (minute, value) through `rule`, naming each transition.
    fn run(rule: &Rule, series: &[(i64, f64)]) -> Vec<(i64, String)> {
        let mut state = EpisodeState::default();
        let mut seen = Vec::new();
        for &(minute, value) in series {
            let (next, transition) = evaluate(rule, state, value, minute * MIN);
            state = next;
            if let Some(t) = transition {
                let name = match t {
                    Transition::Pending { level } => format!("pending {}", level.as_str()),
                    Transition::Fired { level, since } => format!("fired {} since {}", level.as_str(), since / MIN),
                    Transition::Escalated { from, to } => format!("escalated {}->{}", from.as_str(), to.as_str()),
                    Transition::Resolved { since } => format!("resolved (since {})", since / MIN),
                };
                seen.push((minute, name));
            }
        }
        seen
    }

    fn names(list: &[(i64, &str)]) -> Vec<(i64, String)> {
        list.iter().map(|(m, s)| (*m, (*s).to_owned())).collect()
    }

    #[test]
    fn table_of_episodes() {
        let rule = cpu_rule();
        // (what, (minute, value) series, expected transitions)
        type Case<'a> = (&'a str, Vec<(i64, f64)>, Vec<(i64, &'a str)>);
        let cases: Vec<Case> = vec![
            (
                "duration not met: no alert",
                vec![(0, 90.0), (2, 91.0), (4, 90.0), (5, 50.0), (6, 90.0)],
                vec![(0, "pending warning"), (6, "pending warning")],
            ),
            (
                "held for 5 minutes: fires with the start of the episode",
                vec![(0, 85.0), (3, 86.0), (5, 85.0)],
                vec![(0, "pending warning"), (5, "fired warning since 0")],
            ),
            (
                "hysteresis: around the threshold it keeps firing, one episode",
                vec![(0, 85.0), (5, 85.0), (6, 79.0), (7, 81.0), (8, 77.0), (9, 82.0), (10, 74.0)],
                vec![(0, "pending warning"), (5, "fired warning since 0"), (10, "resolved (since 0)")],
            ),
            (
                "escalation keeps the episode; recovery ends it",
                vec![(0, 85.0), (5, 85.0), (6, 97.0), (7, 85.0), (8, 60.0)],
                vec![
                    (0, "pending warning"),
                    (5, "fired warning since 0"),
                    (6, "escalated warning->critical"),
                    (8, "resolved (since 0)"),
                ],
            ),
            (
                "critical while pending fires as critical",
                vec![(0, 85.0), (3, 97.0), (5, 97.0)],
                vec![(0, "pending warning"), (5, "fired critical since 0")],
            ),
            (
                "re-firing after recovery is a new episode",
                vec![(0, 90.0), (5, 90.0), (6, 50.0), (7, 90.0), (12, 90.0)],
                vec![
                    (0, "pending warning"),
                    (5, "fired warning since 0"),
                    (6, "resolved (since 0)"),
                    (7, "pending warning"),
                    (12, "fired warning since 7"),
                ],
            ),
        ];
        for (what, series, expected) in cases {
            assert_eq!(run(&rule, &series), names(&expected), "{what}");
        }
    }

    #[test]
    fn keep_firing_for_absorbs_flapping() {
        let rule = Rule { for_seconds: 0, keep_firing_for: 180, recovery: None, ..cpu_rule() };
        let series = [(0, 90.0), (1, 10.0), (2, 90.0), (3, 10.0), (5, 10.0), (6, 10.0)];
        assert_eq!(run(&rule, &series), names(&[(0, "fired warning since 0"), (6, "resolved (since 0)")]));
    }

    #[test]
    fn state_rules_and_absence_are_the_same_machine() {
        // agent_offline: 1 while disconnected, fires at once, resolves at reconnection.
        let offline = Rule {
            name: "offline".into(),
            metric: Metric::AgentOffline,
            op: Op::AtLeast,
            warning: None,
            critical: Some(1.0),
            for_seconds: 0,
            recovery: None,
            keep_firing_for: 0,
            scope: Scope::default(),
            enabled: true,
        };
        let series = [(0, 0.0), (1, 1.0), (2, 1.0), (3, 0.0)];
        assert_eq!(run(&offline, &series), names(&[(1, "fired critical since 1"), (3, "resolved (since 1)")]));
        // no_data: seconds since the last report, warning past 10 minutes.
        let no_data =
            Rule { metric: Metric::NoData, op: Op::Above, warning: Some(600.0), critical: None, ..offline.clone() };
        let series = [(0, 30.0), (5, 330.0), (11, 690.0), (12, 750.0), (13, 5.0)];
        assert_eq!(run(&no_data, &series), names(&[(11, "fired warning since 11"), (13, "resolved (since 11)")]));
    }

    #[test]
    fn an_episode_survives_a_restart_through_its_stored_state() {
        let rule = cpu_rule();
        let (state, _) = evaluate(&rule, EpisodeState::default(), 90.0, 0);
        let (state, _) = evaluate(&rule, state, 90.0, 3 * MIN);
        let stored = serde_json::to_string(&state).unwrap();
        let restored: EpisodeState = serde_json::from_str(&stored).unwrap();
        assert_eq!(restored, state);
        let (state, transition) = evaluate(&rule, restored, 91.0, 5 * MIN);
        assert_eq!(
            transition,
            Some(Transition::Fired { level: Level::Warning, since: 0 }),
            "the hold counts from before"
        );
        let stored = serde_json::to_string(&state).unwrap();
        let (_, transition) = evaluate(&rule, serde_json::from_str(&stored).unwrap(), 50.0, 9 * MIN);
        assert_eq!(transition, Some(Transition::Resolved { since: 0 }), "and the episode is resolved, not forgotten");
    }

    #[test]
    fn episodes_stored_by_earlier_versions_still_read() {
        // The form written before episodes had their own stored form (a flattened,
        // internally tagged phase): `recovered_since` present even when null.
        let firing = r#"{"phase":"firing","since":60000,"level":"critical","recovered_since":null,"value":97.5,"updated_at":120000}"#;
        let state: EpisodeState = serde_json::from_str(firing).unwrap();
        assert_eq!(
            state,
            EpisodeState {
                phase: Phase::Firing { since: 60_000, level: Level::Critical, recovered_since: None },
                value: Some(97.5),
                updated_at: 120_000
            }
        );
        let ok: EpisodeState = serde_json::from_str(r#"{"phase":"ok","value":null,"updated_at":0}"#).unwrap();
        assert_eq!(ok, EpisodeState::default());
        let pending = serde_json::to_string(&EpisodeState {
            phase: Phase::Pending { since: 5, level: Level::Warning },
            value: Some(1.0),
            updated_at: 6,
        })
        .unwrap();
        assert_eq!(pending, r#"{"phase":"pending","since":5,"level":"warning","value":1.0,"updated_at":6}"#);
        let broken = serde_json::from_str::<EpisodeState>(r#"{"phase":"pending","value":1.0,"updated_at":6}"#);
        assert!(broken.unwrap_err().to_string().contains("needs `since` and `level`"));
    }
}
