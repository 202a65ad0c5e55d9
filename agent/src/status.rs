//! `ward agent status`: one line per identity, and an exit code usable as
//! a health check (unhealthy when a certificate is expired, within its
//! last 10 % of life, or unreadable).

use std::fmt::Write as _;
use std::path::Path;
use std::time::SystemTime;

use crate::cert;
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
    }
    Ok(Report { text, healthy })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn install(dir: &Path, life: Duration) -> CertInfoTimes {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::default();
        let now = time::OffsetDateTime::now_utc();
        p.not_before = now;
        p.not_after = now + life;
        p.subject_alt_names = vec![rcgen::SanType::URI(
            "spiffe://corp.example/ns/a/sa/b".try_into().unwrap(),
        )];
        let info = sink::install(
            dir,
            &p.self_signed(&key).unwrap().pem(),
            &key.serialize_pem(),
        )
        .unwrap();
        CertInfoTimes {
            not_before: info.not_before,
            serial: info.serial,
        }
    }

    struct CertInfoTimes {
        not_before: SystemTime,
        serial: String,
    }

    #[test]
    fn healthy_until_the_last_tenth_then_unhealthy() {
        let d = tempfile::tempdir().unwrap();
        let cfg = d.path().join("agent.toml");
        std::fs::write(
            &cfg,
            "[identity.web]\nca = \"https://ca:1\"\ndir = \"web\"\n",
        )
        .unwrap();
        assert!(
            !status(&cfg, SystemTime::now()).unwrap().healthy,
            "not enrolled"
        );
        let c = install(&d.path().join("web"), Duration::from_secs(1000));
        let at = |s: u64| c.not_before + Duration::from_secs(s);
        let r = status(&cfg, at(10)).unwrap();
        assert!(r.healthy, "{}", r.text);
        assert!(
            r.text.contains(&c.serial) && r.text.contains("last error:    none"),
            "{}",
            r.text
        );
        assert!(status(&cfg, at(800)).unwrap().healthy);
        let r = status(&cfg, at(950)).unwrap();
        assert!(!r.healthy && r.text.contains("last 10%"), "{}", r.text);
        let r = status(&cfg, at(2000)).unwrap();
        assert!(!r.healthy && r.text.contains("EXPIRED"), "{}", r.text);

        state::save(
            &d.path().join("web"),
            &state::State {
                last_error: Some("connecting to ca:1: refused".into()),
                last_error_at: Some(cert::unix(at(5))),
                ..state::State::default()
            },
        )
        .unwrap();
        let r = status(&cfg, at(10)).unwrap();
        assert!(r.text.contains("connecting to ca:1: refused"), "{}", r.text);
    }
}
