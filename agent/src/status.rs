//! `ward agent status`: one line per identity, and an exit code usable as
//! a health check (unhealthy when a certificate is expired, within its
//! last 10 % of life, or unreadable).

use std::fmt::Write as _;
use std::path::Path;
use std::time::SystemTime;

use crate::cert::{self, unix};
use crate::config::AgentConfig;
use crate::run::fmt_time;
use crate::schedule::{self, Urgency};
use crate::{Error, sink, state};

/// The report and whether every identity is healthy.
#[derive(Debug, Clone)]
pub struct Report {
    /// Human-readable text, one block per identity.
    pub text: String,
    /// False when any identity is expired, critical or unreadable.
    pub healthy: bool,
}

/// Builds the status report for every identity in `agent.toml`.
pub fn status(config_path: &Path, now: SystemTime) -> Result<Report, Error> {
    let cfg = AgentConfig::load(config_path)?;
    let mut text = String::new();
    let mut healthy = true;
    for (name, id) in &cfg.identity {
        let st = state::load(&id.dir);
        let _ = writeln!(text, "{name}:");
        match sink::read_current(&id.dir) {
            Ok(pair) => {
                let i = &pair.info;
                let urgency = schedule::urgency(i.not_before, i.not_after, now);
                let verdict = match urgency {
                    Urgency::Fresh => "ok",
                    Urgency::Due => "ok (renewal due)",
                    Urgency::Critical => "UNHEALTHY: in the last 10% of its lifetime",
                    Urgency::Expired => "UNHEALTHY: EXPIRED, re-enrol with `ward agent enroll`",
                };
                if urgency >= Urgency::Critical {
                    healthy = false;
                }
                let next = st
                    .next_renewal
                    .filter(|_| urgency != Urgency::Expired)
                    .map(|t| {
                        SystemTime::UNIX_EPOCH
                            + std::time::Duration::from_secs(t.max(0).unsigned_abs())
                    })
                    .unwrap_or_else(|| schedule::renew_at(i.not_before, i.not_after, 0.5));
                let _ = writeln!(text, "  identity:      {}", i.identity);
                let _ = writeln!(text, "  serial:        {}", i.serial);
                let _ = writeln!(
                    text,
                    "  expires:       {} (in {} s)",
                    fmt_time(i.not_after),
                    cert::signed_secs(i.not_after, now).floor()
                );
                if urgency == Urgency::Expired {
                    let _ = writeln!(text, "  next renewal:  none (expired)");
                } else {
                    let _ = writeln!(
                        text,
                        "  next renewal:  {} (in {} s)",
                        fmt_time(next),
                        cert::signed_secs(next, now).max(0.0).floor()
                    );
                }
                let _ = writeln!(text, "  status:        {verdict}");
            }
            Err(e) => {
                healthy = false;
                let _ = writeln!(text, "  status:        UNHEALTHY: {e}");
            }
        }
        match (&st.last_error, st.last_error_at) {
            (Some(e), Some(at)) => {
                let at = SystemTime::UNIX_EPOCH
                    + std::time::Duration::from_secs(at.max(0).unsigned_abs());
                let _ = writeln!(text, "  last error:    {} ({e})", fmt_time(at));
            }
            (Some(e), None) => {
                let _ = writeln!(text, "  last error:    {e}");
            }
            _ => {
                let _ = writeln!(text, "  last error:    none");
            }
        }
        if let Some(t) = st.last_success {
            let _ = writeln!(
                text,
                "  last success:  {}",
                fmt_time(
                    SystemTime::UNIX_EPOCH
                        + std::time::Duration::from_secs(t.max(0).unsigned_abs())
                )
            );
        }
        let _ = unix(now);
    }
    Ok(Report { text, healthy })
}
