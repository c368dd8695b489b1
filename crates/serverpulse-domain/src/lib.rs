//! The ServerPulse vocabulary shared by the store and the hub, and the pure rules over it.
//!
//! Nothing here does IO or knows about HTTP or SQL: roles, agent status, the secrets the
//! hub hands out (and how they are kept), and how cumulative counters become rates.
//! Keeping these pure is what lets every loop of the hub be tested with an injected clock.

pub mod agent_status;
pub mod rate;
pub mod role;
pub mod secret;

pub use agent_status::AgentStatus;
pub use role::Role;
pub use secret::{Secret, TokenDigest};
