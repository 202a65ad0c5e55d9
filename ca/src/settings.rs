//! `ca.toml`: what `ward ca init|serve|…` read.
//!
//! ```toml
//! trust_domain = "corp.example"
//! database = "ca.db"               # relative to this file; the translog shares it
//!
//! [keys]
//! root = "pkcs11:token=ward;object=ward-root?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=env:WARD_HSM_PIN"
//! issuing = "pkcs11:token=ward;object=ward-issuing?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=env:WARD_HSM_PIN"
//! # log = "…object=ward-log…"     # default: the issuing key's token, object `ward-log`
//!
//! [server]
//! listen = "127.0.0.1:8443"
//! dns_names = ["localhost"]
//! max_request_bytes = 65536
//! admins = ["spiffe://corp.example/user/alice"]   # may revoke others' certificates
//! policy_dir = "policies"   # or: ca:Revoke decided by ward-policy documents
//!
//! [profiles]
//! workload_ttl = "1h"
//! user_ttl = "12h"
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::Error;
use crate::identity::{SpiffeId, TrustDomain};
use crate::keys::{KeyRef, Pkcs11Uri};

/// The hard maximum lifetime of any leaf certificate.
pub const MAX_LEAF_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The whole CA config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaConfig {
    /// The only trust domain this CA issues for.
    pub trust_domain: TrustDomain,
    /// SQLite database (certificates, tokens, CA certificates; the
    /// transparency log keeps its own tables in the same file).
    pub database: PathBuf,
    /// Organisation name put in the CA certificates' subjects.
    #[serde(default = "default_org")]
    pub organization: String,
    /// Key references.
    pub keys: KeysConfig,
    /// The HTTPS API.
    #[serde(default)]
    pub server: ServerConfig,
    /// Default lifetimes.
    #[serde(default)]
    pub profiles: ProfilesConfig,
    /// Put a URI name constraint for the trust domain on the intermediate.
    /// Off by default: rustls-webpki ≥ 0.103.12 rejects every chain whose CA
    /// carries a URI name constraint (RUSTSEC-2026-0098), which breaks all
    /// Rust clients including ward's own gateway.
    #[serde(default)]
    pub uri_name_constraints: bool,
}

fn default_org() -> String {
    "ward".into()
}

/// Key references (RFC 7512 `pkcs11:` URIs or `file:` paths).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysConfig {
    /// The root key.
    pub root: String,
    /// The issuing intermediate key.
    pub issuing: String,
    /// The transparency log's tree-head key; default: object `ward-log` in
    /// the issuing key's token (or `log.pem` beside a file issuing key).
    #[serde(default)]
    pub log: Option<String>,
}

/// HTTPS API settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// DNS names in the API's own server certificate.
    #[serde(default = "default_dns")]
    pub dns_names: Vec<String>,
    /// Largest accepted request body.
    #[serde(default = "default_max_body")]
    pub max_request_bytes: usize,
    /// SPIFFE IDs always allowed to revoke others' certificates.
    #[serde(default)]
    pub admins: Vec<SpiffeId>,
    /// Policy directory (ward-policy, `Schema::ca_admin`): who may revoke
    /// others' certificates (`ca:Revoke` on `ca/certs/<serial>`). Relative
    /// to this file. Without it only `admins` may.
    #[serde(default)]
    pub policy_dir: Option<PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            dns_names: default_dns(),
            max_request_bytes: default_max_body(),
            admins: Vec::new(),
            policy_dir: None,
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8443))
}
fn default_dns() -> Vec<String> {
    vec!["localhost".into()]
}
fn default_max_body() -> usize {
    64 * 1024
}

/// Default certificate lifetimes, as durations like `1h`, `12h`, `30m`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfilesConfig {
    /// Workload certificates.
    #[serde(default = "default_workload")]
    pub workload_ttl: String,
    /// User certificates.
    #[serde(default = "default_user")]
    pub user_ttl: String,
}

impl Default for ProfilesConfig {
    fn default() -> Self {
        Self {
            workload_ttl: default_workload(),
            user_ttl: default_user(),
        }
    }
}
fn default_workload() -> String {
    "1h".into()
}
fn default_user() -> String {
    "12h".into()
}

/// Parses `90s`, `15m`, `1h`, `7d` (one number, one unit).
pub fn parse_duration(s: &str) -> Result<Duration, Error> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| {
        Error::bad(
            "bad_duration",
            format!("duration `{s}` must be a number and a unit (s, m, h, d), e.g. `15m`"),
        )
    })?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => {
            return Err(Error::bad(
                "bad_duration",
                format!("duration `{s}` must end in s, m, h or d"),
            ));
        }
    };
    n.checked_mul(mult)
        .filter(|&secs| secs > 0)
        .map(Duration::from_secs)
        .ok_or_else(|| {
            Error::bad(
                "bad_duration",
                format!("duration `{s}` is zero or too large"),
            )
        })
}

/// Parses an RFC 3339 time (`2026-11-30T12:00:00Z`) or a plain date
/// (`2026-11-30`, midnight UTC) into unix seconds, for `--since`.
pub fn parse_time(s: &str) -> Result<i64, Error> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = time::OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t.unix_timestamp());
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s, &fmt)
        .map(|d| d.midnight().assume_utc().unix_timestamp())
        .map_err(|_| {
            Error::bad(
                "bad_time",
                format!(
                    "`{s}` is not an RFC 3339 time (2026-11-30T12:00:00Z) or a date (2026-11-30)"
                ),
            )
        })
}

/// Formats unix seconds as RFC 3339 UTC (for listings).
pub fn format_time(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

/// The current time in unix seconds.
pub fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl CaConfig {
    /// Loads and checks `ca.toml`; a relative `database` is resolved
    /// against the config file's directory.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let mut c: Self = crate::config::load(path)?;
        if c.database.is_relative() {
            let base = path.parent().unwrap_or(Path::new("."));
            c.database = base.join(&c.database);
        }
        if let Some(dir) = c.server.policy_dir.as_mut()
            && dir.is_relative()
        {
            *dir = path.parent().unwrap_or(Path::new(".")).join(&*dir);
        }
        c.check()?;
        Ok(c)
    }

    /// Validates values serde cannot.
    pub fn check(&self) -> Result<(), Error> {
        self.root_key()?;
        self.issuing_key()?;
        self.log_key()?;
        for (name, ttl) in [
            ("profiles.workload_ttl", &self.profiles.workload_ttl),
            ("profiles.user_ttl", &self.profiles.user_ttl),
        ] {
            let d = parse_duration(ttl).map_err(|e| Error::Setup(format!("{name}: {e}")))?;
            if d > MAX_LEAF_TTL {
                return Err(Error::Setup(format!(
                    "{name} = {ttl} is longer than the hard maximum of 7 days"
                )));
            }
        }
        for admin in &self.server.admins {
            if admin.trust_domain() != &self.trust_domain {
                return Err(Error::Setup(format!(
                    "server.admins: {admin} is outside trust domain {}",
                    self.trust_domain
                )));
            }
        }
        Ok(())
    }

    /// The root key reference.
    pub fn root_key(&self) -> Result<KeyRef, Error> {
        KeyRef::parse(&self.keys.root).map_err(|e| Error::Setup(format!("keys.root: {e}")))
    }

    /// The issuing key reference.
    pub fn issuing_key(&self) -> Result<KeyRef, Error> {
        KeyRef::parse(&self.keys.issuing).map_err(|e| Error::Setup(format!("keys.issuing: {e}")))
    }

    /// The transparency log key reference (see [`KeysConfig::log`]).
    pub fn log_key(&self) -> Result<KeyRef, Error> {
        if let Some(log) = &self.keys.log {
            return KeyRef::parse(log).map_err(|e| Error::Setup(format!("keys.log: {e}")));
        }
        Ok(match self.issuing_key()? {
            KeyRef::Pkcs11(u) => KeyRef::Pkcs11(Pkcs11Uri::with_object(&u, "ward-log")),
            KeyRef::File(p) => KeyRef::File(p.with_file_name("log.pem")),
        })
    }

    /// Default lifetime of a profile.
    pub fn ttl(&self, profile: crate::profile::Profile) -> Duration {
        let s = match profile {
            crate::profile::Profile::User => &self.profiles.user_ttl,
            _ => &self.profiles.workload_ttl,
        };
        parse_duration(s).unwrap_or(Duration::from_secs(3600))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time("1970-01-02").unwrap(), 86400);
        assert_eq!(parse_time("1970-01-01T00:01:00Z").unwrap(), 60);
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("7d").unwrap(), MAX_LEAF_TTL);
        for bad in ["", "m", "15", "1w", "0s", "-1h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn minimal_config_gets_safe_defaults() {
        let c: CaConfig = crate::config::parse(
            "trust_domain = \"corp.example\"\ndatabase = \"ca.db\"\n[keys]\nroot = \"file:/r.pem\"\nissuing = \"pkcs11:token=w;object=i?module-path=/m.so&pin-source=env:P\"\n",
            Path::new("ca.toml"),
        )
        .unwrap();
        c.check().unwrap();
        assert!(!c.uri_name_constraints);
        assert_eq!(c.server.max_request_bytes, 65536);
        match c.log_key().unwrap() {
            KeyRef::Pkcs11(u) => assert_eq!(u.object, "ward-log"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_key_is_named() {
        let e = crate::config::parse::<CaConfig>(
            "trust_domain = \"corp.example\"\ndatabase = \"x\"\ndatabse = 1\n[keys]\nroot=\"file:/a\"\nissuing=\"file:/b\"\n",
            Path::new("ca.toml"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("databse"), "{e}");
    }
}
