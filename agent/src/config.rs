//! `agent.toml`: which identities the agent keeps fresh.
//!
//! ```toml
//! # Optional: Prometheus metrics on a loopback address.
//! metrics_listen = "127.0.0.1:9464"
//!
//! [identity.web]                       # one section per identity, independent
//! ca = "https://ca.corp.example:8443"
//! dir = "/var/lib/ward/web"            # what `ward agent enroll --out` wrote
//! fingerprint = "sha256:…"             # optional: default is the root in DIR/bundle.pem
//! crl_file = "/var/lib/ward/web/ca.crl" # optional: refreshed after each renewal (DER; PEM if it ends in .pem)
//! retry_max_secs = 300                 # cap of the retry backoff
//! hook_timeout_secs = 30
//!
//! [identity.web.hook]                  # optional: after each renewal, one of
//! command = ["systemctl", "reload", "nginx"]
//! # pid_file = "/run/nginx.pid"        # or a signal to the pid in this file
//! # signal = "HUP"
//! ```
//!
//! Relative paths are relative to the config file's directory.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::Error;

/// The whole `agent.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Loopback address for `/metrics`; none by default.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// The identities, by name.
    #[serde(default)]
    pub identity: BTreeMap<String, IdentityConfig>,
}

/// One identity: a directory of files and the CA that renews them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// CA API URL, `https://host:port`.
    pub ca: String,
    /// Identity directory (see [`crate::sink`]).
    pub dir: PathBuf,
    /// `sha256:<hex>` of the CA root; default: the root saved in `DIR/bundle.pem`.
    #[serde(default)]
    pub fingerprint: Option<String>,
    /// Where to keep the CA's CRL, refreshed after each renewal.
    #[serde(default)]
    pub crl_file: Option<PathBuf>,
    /// Cap of the retry backoff, seconds.
    #[serde(default = "default_retry_max")]
    pub retry_max_secs: u64,
    /// How long a hook command may run.
    #[serde(default = "default_hook_timeout")]
    pub hook_timeout_secs: u64,
    /// What to run after each renewal.
    #[serde(default)]
    pub hook: Option<HookConfig>,
}

/// A reload hook: a command, or a signal to the process in a pid file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookConfig {
    /// Program and arguments, run without a shell.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// File holding the pid to signal.
    #[serde(default)]
    pub pid_file: Option<PathBuf>,
    /// Signal name for `pid_file`, e.g. `HUP` (default) or `USR1`.
    #[serde(default)]
    pub signal: Option<String>,
}

fn default_retry_max() -> u64 {
    300
}
fn default_hook_timeout() -> u64 {
    30
}

impl IdentityConfig {
    /// Cap of the retry backoff.
    pub fn retry_max(&self) -> Duration {
        Duration::from_secs(self.retry_max_secs.max(1))
    }
}

/// Signals a hook may send (by name, as `kill -s` takes them).
const SIGNALS: &[&str] = &["HUP", "USR1", "USR2", "TERM", "INT", "QUIT"];

impl AgentConfig {
    /// Loads `agent.toml`, resolves relative paths and checks what serde
    /// cannot.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let mut c: Self = ward_ca::config::load(path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let bad = |message: String| Error::Config {
            path: path.to_path_buf(),
            message,
        };
        if c.identity.is_empty() {
            return Err(bad(
                "no identity configured; add an [identity.<name>] section with `ca` and `dir`"
                    .into(),
            ));
        }
        if let Some(m) = c.metrics_listen
            && !m.ip().is_loopback()
        {
            return Err(bad(format!(
                "metrics_listen = {m} is not a loopback address; metrics are only served on 127.0.0.1 or ::1"
            )));
        }
        for (name, id) in &mut c.identity {
            if !id.ca.starts_with("https://") {
                return Err(bad(format!(
                    "identity.{name}.ca = {:?} must be an https:// URL",
                    id.ca
                )));
            }
            id.dir = base.join(&id.dir);
            if let Some(crl) = &id.crl_file {
                id.crl_file = Some(base.join(crl));
            }
            if let Some(h) = &mut id.hook {
                match (&h.command, &h.pid_file) {
                    (Some(cmd), None) if !cmd.is_empty() && h.signal.is_none() => {}
                    (None, Some(pid)) => {
                        h.pid_file = Some(base.join(pid));
                        let sig = h.signal.get_or_insert_with(|| "HUP".into());
                        if !SIGNALS.contains(&sig.as_str()) {
                            return Err(bad(format!(
                                "identity.{name}.hook.signal = {sig:?}: use one of {}",
                                SIGNALS.join(", ")
                            )));
                        }
                    }
                    _ => {
                        return Err(bad(format!(
                            "identity.{name}.hook: set either a non-empty `command`, or `pid_file` (with an optional `signal`)"
                        )));
                    }
                }
            }
        }
        Ok(c)
    }

    /// The identity named `name`, or the only one when `name` is `None`.
    pub fn pick(&self, name: Option<&str>, path: &Path) -> Result<(&str, &IdentityConfig), Error> {
        let bad = |message: String| Error::Config {
            path: path.to_path_buf(),
            message,
        };
        let names = || self.identity.keys().cloned().collect::<Vec<_>>().join(", ");
        match name {
            Some(n) => self
                .identity
                .get_key_value(n)
                .map(|(k, v)| (k.as_str(), v))
                .ok_or_else(|| bad(format!("no identity `{n}`; configured: {}", names()))),
            None if self.identity.len() == 1 => self
                .identity
                .iter()
                .next()
                .map(|(k, v)| (k.as_str(), v))
                .ok_or_else(|| bad("no identity configured".into())),
            None => Err(bad(format!(
                "several identities are configured ({}); pick one with --identity",
                names()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<AgentConfig, Error> {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("agent.toml");
        std::fs::write(&p, text).unwrap();
        AgentConfig::load(&p)
    }

    #[test]
    fn loads_identities_with_defaults_and_resolves_paths() {
        let c = load(
            "[identity.web]\nca = \"https://ca:8443\"\ndir = \"web\"\n[identity.web.hook]\npid_file = \"x.pid\"\n\n[identity.db]\nca = \"https://ca:8443\"\ndir = \"/abs/db\"\n",
        )
        .unwrap();
        assert_eq!(c.identity.len(), 2);
        let web = &c.identity["web"];
        assert!(web.dir.is_absolute() && web.dir.ends_with("web"));
        assert_eq!(web.retry_max_secs, 300);
        assert_eq!(web.hook.as_ref().unwrap().signal.as_deref(), Some("HUP"));
        assert_eq!(c.identity["db"].dir, PathBuf::from("/abs/db"));
        assert!(c.pick(None, Path::new("a")).is_err());
        assert_eq!(c.pick(Some("db"), Path::new("a")).unwrap().0, "db");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let e = load("[identity.web]\nca = \"https://ca\"\ndir = \"d\"\nhok = 1\n").unwrap_err();
        assert!(e.to_string().contains("hok"), "{e}");
        let e =
            load("metrics_listen = \"0.0.0.0:9\"\n[identity.w]\nca = \"https://c\"\ndir = \"d\"\n")
                .unwrap_err();
        assert!(e.to_string().contains("loopback"), "{e}");
        let e = load(
            "[identity.w]\nca = \"https://c\"\ndir = \"d\"\n[identity.w.hook]\ncommand = []\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("identity.w.hook"), "{e}");
        let e = load("").unwrap_err();
        assert!(e.to_string().contains("no identity"), "{e}");
    }
}
