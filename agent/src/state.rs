//! `DIR/state.json`: what `ward agent status` shows beyond the certificate
//! itself (next renewal, last error). Only a cache of what the running
//! agent knows: missing or unreadable, it is rebuilt from the certificate.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Error;

/// The persisted state of one identity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// When the agent plans the next renewal (unix seconds).
    #[serde(default)]
    pub next_renewal: Option<i64>,
    /// Last successful renewal or enrolment (unix seconds).
    #[serde(default)]
    pub last_success: Option<i64>,
    /// Last error, cleared by a success.
    #[serde(default)]
    pub last_error: Option<String>,
    /// When the last error happened (unix seconds).
    #[serde(default)]
    pub last_error_at: Option<i64>,
    /// Failed attempts since the last success.
    #[serde(default)]
    pub failures: u32,
}

/// `DIR/state.json`.
pub fn path(dir: &Path) -> PathBuf {
    dir.join("state.json")
}

/// Reads the state, or the empty state when it is missing or unreadable.
pub fn load(dir: &Path) -> State {
    std::fs::read(path(dir))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Writes the state atomically.
pub fn save(dir: &Path, state: &State) -> Result<(), Error> {
    let json = serde_json::to_vec_pretty(state).unwrap_or_default();
    crate::sink::write_atomic(&path(dir), &json, 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_tolerates_garbage() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(load(d.path()), State::default());
        let s = State {
            next_renewal: Some(5),
            last_error: Some("x".into()),
            failures: 2,
            ..State::default()
        };
        save(d.path(), &s).unwrap();
        assert_eq!(load(d.path()), s);
        std::fs::write(path(d.path()), b"{not json").unwrap();
        assert_eq!(load(d.path()), State::default());
    }
}
