//! Alert rules and their evaluation, kept free of I/O and of the wall clock so every
//! behaviour (a duration not yet met, hysteresis, escalation, recovery, absence) is a
//! pure function tested directly with an injected time.
//!
//! - [`rule`]: what a rule says (metric, operator, thresholds, `for`, recovery,
//!   `keep_firing_for`, scope) and how an administrator's JSON is checked.
//! - [`snapshot`]: what is known about one server at one instant, and the values a
//!   metric takes from it (one per subject: a mount, a unit).
//! - [`evaluate`]: one step of an episode's state machine.
//! - [`notify`]: channels, their routes, and silences (maintenance windows).
//! - [`backtest`]: how often a rule would have fired over stored history.

pub mod backtest;
pub mod evaluate;
pub mod notify;
pub mod rule;
pub mod snapshot;

pub use evaluate::{EpisodeState, Phase, Transition, evaluate};
pub use rule::{Metric, Op, Rule, Scope, decode_rule};
pub use snapshot::Snapshot;
