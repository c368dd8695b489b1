//! An agent's connection state and the rule that moves it.

use serde::{Deserialize, Serialize};

/// `inactive` until an agent first registers; `active` while it reports;
/// `disconnected` once it has been silent for longer than `offline_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    Inactive,
    Active,
    Disconnected,
}

impl AgentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inactive => "inactive",
            Self::Active => "active",
            Self::Disconnected => "disconnected",
        }
    }

    pub fn parse(word: &str) -> Option<Self> {
        match word {
            "inactive" => Some(Self::Inactive),
            "active" => Some(Self::Active),
            "disconnected" => Some(Self::Disconnected),
            _ => None,
        }
    }
}

impl std::fmt::Display for AgentStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether an active agent last heard from at `last_contact` counts as gone at `now`.
/// Silence of exactly `offline_after` is still tolerated.
pub fn is_silent(last_contact: i64, now: i64, offline_after_ms: i64) -> bool {
    now.saturating_sub(last_contact) > offline_after_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_boundary() {
        assert!(!is_silent(1_000, 1_000 + 180_000, 180_000));
        assert!(is_silent(1_000, 1_001 + 180_000, 180_000));
        assert!(!is_silent(5_000, 1_000, 180_000), "clock going backwards is not silence");
    }
}
