//! systemd unit states as agents report them.

use serde::{Deserialize, Serialize};

/// The state of a watched unit. Dialect A sends the first five; dialect B reports
/// systemd's `ActiveState`, which adds the transitional states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ServiceStatus {
    Active,
    Inactive,
    Failed,
    Activating,
    Deactivating,
    Reloading,
    NotFound,
    Unknown,
}

impl ServiceStatus {
    /// Reads a reported status. Unrecognised words become `Unknown` rather than an
    /// error: a new systemd state must not make a whole report bounce.
    pub fn from_wire(word: &str) -> Self {
        match word.trim().to_ascii_lowercase().as_str() {
            "active" | "running" => Self::Active,
            "inactive" | "dead" | "stopped" => Self::Inactive,
            "failed" => Self::Failed,
            "activating" => Self::Activating,
            "deactivating" => Self::Deactivating,
            "reloading" => Self::Reloading,
            "not_found" | "not-found" => Self::NotFound,
            _ => Self::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Inactive => "inactive",
            Self::Failed => "failed",
            Self::Activating => "activating",
            Self::Deactivating => "deactivating",
            Self::Reloading => "reloading",
            Self::NotFound => "not_found",
            Self::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for ServiceStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
