//! What the agent must remember across restarts: the credentials it obtained at
//! registration and the next report `seq`. One JSON file, mode 0600, replaced atomically
//! (write, fsync, rename, fsync the directory) so a crash leaves the old or the new
//! version, never half of one.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serverpulse_proto::responses::AgentConfig;

#[derive(Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AgentState {
    /// The hub these credentials belong to.
    #[serde(default)]
    pub hub: Option<String>,
    #[serde(default)]
    pub agent_id: Option<String>,
    #[serde(default)]
    pub auth_token: Option<String>,
    #[serde(default)]
    pub server_id: Option<i64>,
    /// Every `seq` below this may have been used; a restarted agent starts here.
    #[serde(default)]
    pub next_seq: u64,
    /// Last seen status of each watched unit, so a restart does not re-announce a failure.
    #[serde(default)]
    pub services: std::collections::BTreeMap<String, String>,
    /// The newest per-server settings the hub sent (`config_version` > 0), so a restart
    /// while the hub is away still runs them.
    #[serde(default)]
    pub hub_settings: Option<AgentConfig>,
}

impl std::fmt::Debug for AgentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentState")
            .field("hub", &self.hub)
            .field("agent_id", &self.agent_id)
            .field("auth_token", &self.auth_token.as_ref().map(|_| "…"))
            .field("server_id", &self.server_id)
            .field("next_seq", &self.next_seq)
            .field("services", &self.services)
            .field("hub_settings", &self.hub_settings)
            .finish()
    }
}

impl AgentState {
    /// Credentials, if registered with `hub`.
    pub fn credentials_for(&self, hub: &str) -> Option<(&str, &str)> {
        match (&self.hub, &self.agent_id, &self.auth_token) {
            (Some(h), Some(id), Some(token)) if h == hub => Some((id, token)),
            _ => None,
        }
    }
}

/// The state file inside the state directory.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: not a ServerPulse agent state file: {why}")]
    Corrupt { path: String, why: String },
}

impl StateFile {
    pub fn in_dir(dir: &Path) -> Self {
        Self { path: dir.join("state.json") }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, source: std::io::Error) -> StateError {
        StateError::Io { path: self.path.display().to_string(), source }
    }

    /// The saved state, or a fresh one if none was ever saved.
    pub fn load(&self) -> Result<AgentState, StateError> {
        match fs::read_to_string(&self.path) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| StateError::Corrupt { path: self.path.display().to_string(), why: e.to_string() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AgentState::default()),
            Err(e) => Err(self.io(e)),
        }
    }

    pub fn save(&self, state: &AgentState) -> Result<(), StateError> {
        let text = serde_json::to_vec_pretty(state).map_err(|e| self.io(std::io::Error::other(e)))?;
        write_atomically(&self.path, &text).map_err(|e| self.io(e))
    }
}

/// Replaces `path` with `bytes` (mode 0600) so that readers see the old or the new content.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    {
        let mut file = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn round_trip_private_and_fresh_when_missing() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::in_dir(&dir.path().join("nested"));
        assert_eq!(file.load().unwrap(), AgentState::default());
        let state = AgentState {
            hub: Some("https://hub".into()),
            agent_id: Some("a".into()),
            auth_token: Some("secret".into()),
            server_id: Some(3),
            next_seq: 42,
            services: [("nginx".to_owned(), "failed".to_owned())].into(),
            hub_settings: Some(AgentConfig {
                services: Some(vec!["mysql".into()]),
                config_version: 4,
                ..AgentConfig::effective(30, 60, Default::default(), 0)
            }),
        };
        file.save(&state).unwrap();
        assert_eq!(file.load().unwrap(), state);
        assert_eq!(fs::metadata(file.path()).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(state.credentials_for("https://hub"), Some(("a", "secret")));
        assert_eq!(state.credentials_for("https://other"), None);
        assert!(!format!("{state:?}").contains("secret"));
        fs::write(file.path(), "{not json").unwrap();
        assert!(matches!(file.load(), Err(StateError::Corrupt { .. })));
    }
}
