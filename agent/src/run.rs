//! `ward agent run`: keeps every configured identity fresh, each in its
//! own task so that one identity's CA outage or broken hook never delays
//! another.
//!
//! Restart-safe by construction: the only inputs are `agent.toml` and the
//! identity directory. The schedule is recomputed from the certificate on
//! start, and `state.json` is only written for `ward agent status`.

use std::path::Path;
use std::time::{Duration, SystemTime};

use ward_ca::client::{CaClient, RootPin};

use crate::cert::{self, CertInfo, unix};
use crate::config::{AgentConfig, IdentityConfig};
use crate::enroll::{bounded, check_issued, key_and_csr};
use crate::metrics::Metrics;
use crate::schedule::{self, Urgency};
use crate::sink::{self, Pair};
use crate::{Error, hook, state};

/// How often a waiting task re-checks the wall clock: a laptop that slept
/// through the renewal time renews soon after waking, not after the
/// monotonic timer finally fires.
const TICK: Duration = Duration::from_secs(5);
/// How often an identity that cannot be read (not enrolled, expired) is
/// looked at again.
const RECHECK: Duration = Duration::from_secs(15);

/// Runs until SIGTERM or SIGINT.
pub async fn run(config_path: &Path) -> Result<(), Error> {
    crate::tls::install_provider();
    let cfg = AgentConfig::load(config_path)?;
    let metrics = Metrics::new()?;
    if let Some(addr) = cfg.metrics_listen {
        let listener = crate::metrics::bind(addr).await?;
        tracing::info!(%addr, "serving metrics");
        tokio::spawn(crate::metrics::serve(listener, metrics.clone()));
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (name, id) in cfg.identity {
        let metrics = metrics.clone();
        tasks.spawn(async move { keep_fresh(&name, &id, &metrics).await });
    }
    shutdown_signal().await;
    tracing::info!("stopping; certificates on disk stay valid");
    tasks.abort_all();
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Sleeps until the wall clock reaches `at`, in steps of at most [`TICK`].
async fn sleep_until(at: SystemTime) {
    loop {
        let Ok(left) = at.duration_since(SystemTime::now()) else {
            return;
        };
        if left.is_zero() {
            return;
        }
        tokio::time::sleep(left.min(TICK)).await;
    }
}

fn record(dir: &Path, f: impl FnOnce(&mut state::State)) {
    let mut st = state::load(dir);
    f(&mut st);
    if let Err(e) = state::save(dir, &st) {
        tracing::warn!(error = %e, "cannot write state.json (only `ward agent status` uses it)");
    }
}

/// The renewal loop of one identity; never returns.
async fn keep_fresh(name: &str, id: &IdentityConfig, metrics: &Metrics) {
    loop {
        let pair = match sink::read_current(&id.dir) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(identity = name, error = %e, "cannot read the identity's certificate");
                if id.dir.is_dir() {
                    record(&id.dir, |s| {
                        s.last_error = Some(e.to_string());
                        s.last_error_at = Some(unix(SystemTime::now()));
                    });
                }
                tokio::time::sleep(RECHECK).await;
                continue;
            }
        };
        let info = pair.info.clone();
        metrics.set_not_after(name, info.not_after);
        let at = schedule::renew_at(info.not_before, info.not_after, rand::random());
        record(&id.dir, |s| s.next_renewal = Some(unix(at)));
        tracing::info!(
            identity = name,
            spiffe_id = %info.identity,
            serial = %info.serial,
            not_after = %fmt_time(info.not_after),
            renew_at = %fmt_time(at),
            "certificate loaded; renewal scheduled"
        );
        sleep_until(at).await;
        // Someone may have replaced the pair meanwhile (a manual
        // re-enrolment): schedule from the new one instead.
        if let Ok(now_on_disk) = sink::read_current(&id.dir)
            && now_on_disk.info.serial != info.serial
        {
            continue;
        }
        renew_with_retries(name, id, metrics, &pair).await;
    }
}

/// Renews `pair` until it works or the certificate expires. Returns when
/// a new certificate is installed, or when someone replaced the expired
/// one (re-enrolment).
async fn renew_with_retries(name: &str, id: &IdentityConfig, metrics: &Metrics, pair: &Pair) {
    let info = &pair.info;
    let mut attempt: u32 = 0;
    loop {
        let now = SystemTime::now();
        let urgency = schedule::urgency(info.not_before, info.not_after, now);
        if urgency == Urgency::Expired {
            let msg = format!(
                "certificate {} expired at {}; the CA does not renew expired certificates: \
                 re-enrol with `ward agent enroll --out {}` and a new token",
                info.serial,
                fmt_time(info.not_after),
                id.dir.display()
            );
            tracing::error!(identity = name, "{msg}");
            record(&id.dir, |s| {
                s.last_error = Some(msg.clone());
                s.last_error_at = Some(unix(now));
                s.next_renewal = None;
            });
            wait_for_new_certificate(&id.dir, &info.serial).await;
            return;
        }
        match renew_once(name, id, pair).await {
            Ok((new, problems)) => {
                metrics.renewal(name, true);
                metrics.set_not_after(name, new.not_after);
                let done = unix(SystemTime::now());
                record(&id.dir, |s| {
                    s.failures = 0;
                    s.last_success = Some(done);
                    s.last_error = (!problems.is_empty()).then(|| problems.join("; "));
                    s.last_error_at = s.last_error.as_ref().map(|_| done);
                });
                return;
            }
            Err(e) => {
                attempt = attempt.saturating_add(1);
                metrics.renewal(name, false);
                let Some(delay) = schedule::retry_delay(
                    info.not_after,
                    now,
                    attempt,
                    id.retry_max(),
                    rand::random(),
                ) else {
                    continue;
                };
                let left = cert::signed_secs(info.not_after, now).floor();
                if let Some(code) = refused(&e) {
                    tracing::error!(
                        identity = name,
                        code,
                        "the CA refuses this certificate for renewal; retrying will not help \
                         unless that changes: re-enrol with `ward agent enroll` and a new token"
                    );
                }
                match urgency {
                    Urgency::Critical | Urgency::Expired => tracing::error!(
                        identity = name,
                        error = %e,
                        attempt,
                        expires_in_secs = left,
                        retry_in_secs = delay.as_secs_f64(),
                        "renewal failed and the certificate expires SOON; services using it will fail after expiry"
                    ),
                    Urgency::Due | Urgency::Fresh => tracing::warn!(
                        identity = name,
                        error = %e,
                        attempt,
                        expires_in_secs = left,
                        retry_in_secs = delay.as_secs_f64(),
                        "renewal failed; retrying"
                    ),
                }
                record(&id.dir, |s| {
                    s.failures = attempt;
                    s.last_error = Some(e.to_string());
                    s.last_error_at = Some(unix(now));
                    s.next_renewal = Some(unix(now + delay));
                });
                sleep_until(now + delay).await;
            }
        }
    }
}

/// The CA's refusal code when it refuses the client certificate itself
/// (revoked, unknown, expired), as opposed to a transient failure.
fn refused(e: &Error) -> Option<&str> {
    match e {
        Error::Ca(ward_ca::Error::Remote { status, code, .. })
            if (*status == 401 || *status == 403) && code.starts_with("client_cert") =>
        {
            Some(code.as_str())
        }
        _ => None,
    }
}

async fn wait_for_new_certificate(dir: &Path, old_serial: &str) {
    loop {
        tokio::time::sleep(RECHECK).await;
        if let Ok(p) = sink::read_current(dir)
            && p.info.serial != old_serial
        {
            tracing::info!(serial = %p.info.serial, "a new certificate appeared (re-enrolled)");
            return;
        }
    }
}

/// The pin for this identity: the configured fingerprint, or the root
/// saved in `bundle.pem` at enrolment.
fn pin(id: &IdentityConfig) -> Result<(RootPin, String), Error> {
    if let Some(fp) = &id.fingerprint {
        let fp = cert::normalise_fingerprint(fp);
        return Ok((RootPin::Fingerprint(fp.clone()), fp));
    }
    let bundle = sink::read_bundle(&id.dir)?;
    let roots = cert::chain_ders(&bundle, &sink::bundle_path(&id.dir))?;
    let root = roots
        .first()
        .ok_or_else(|| Error::bad_file(sink::bundle_path(&id.dir), "holds no certificate"))?;
    Ok((
        RootPin::Der(root.to_vec()),
        cert::fingerprint(root.as_ref()),
    ))
}

/// One renewal: new key, CSR over mTLS with the current certificate,
/// install, then bundle, CRL and hook. Returns the new certificate and the
/// after-renewal problems (which do not undo the renewal).
async fn renew_once(
    name: &str,
    id: &IdentityConfig,
    pair: &Pair,
) -> Result<(CertInfo, Vec<String>), Error> {
    let (root_pin, root_fp) = pin(id)?;
    let client =
        CaClient::new(&id.ca, root_pin)?.with_client_cert(&pair.chain_pem, &pair.key_pem)?;
    let (key, csr) = key_and_csr(None)?;
    let issued = bounded(client.renew(&csr)).await?;
    let new = check_issued(&issued.chain_pem, &key)?;
    if new.identity != pair.info.identity {
        return Err(Error::BadAnswer(format!(
            "renewal of {} came back for {}",
            pair.info.identity, new.identity
        )));
    }
    let new = sink::install(&id.dir, &issued.chain_pem, &key.serialize_pem())?;
    tracing::info!(
        identity = name,
        old_serial = %pair.info.serial,
        serial = %new.serial,
        not_after = %fmt_time(new.not_after),
        "renewed"
    );
    let mut problems = Vec::new();
    if let Err(e) = refresh_bundle(&client, &id.dir, &root_fp).await {
        tracing::error!(identity = name, error = %e, "cannot refresh bundle.pem");
        problems.push(format!("bundle: {e}"));
    }
    if let Some(path) = &id.crl_file
        && let Err(e) = refresh_crl(&client, path).await
    {
        tracing::error!(identity = name, error = %e, "cannot refresh the CRL file");
        problems.push(format!("crl: {e}"));
    }
    if let Some(h) = &id.hook {
        let what = hook::Renewed {
            name,
            dir: &id.dir,
            serial: &new.serial,
        };
        match hook::run(h, &what, Duration::from_secs(id.hook_timeout_secs)).await {
            Ok(()) => tracing::info!(identity = name, "reload hook ran"),
            Err(e) => {
                tracing::error!(identity = name, error = %e, "reload hook failed");
                problems.push(e.to_string());
            }
        }
    }
    Ok((new, problems))
}

async fn refresh_bundle(client: &CaClient, dir: &Path, root_fp: &str) -> Result<(), Error> {
    let b = bounded(client.bundle()).await?;
    let roots = cert::chain_ders(&b.root_pem, Path::new("<CA bundle>"))?;
    let fp = roots
        .first()
        .map(|r| cert::fingerprint(r.as_ref()))
        .unwrap_or_default();
    if fp != root_fp {
        return Err(Error::FingerprintMismatch {
            url: "the CA".into(),
            expected: root_fp.to_string(),
            actual: fp,
        });
    }
    let path = sink::bundle_path(dir);
    if std::fs::read_to_string(&path).ok().as_deref() != Some(b.root_pem.as_str()) {
        sink::write_atomic(&path, b.root_pem.as_bytes(), 0o644)?;
    }
    Ok(())
}

async fn refresh_crl(client: &CaClient, path: &Path) -> Result<(), Error> {
    let der = bounded(client.crl()).await?;
    x509_parser::parse_x509_crl(&der)
        .map_err(|e| Error::BadAnswer(format!("the CRL does not parse: {e}")))?;
    let data = if path.extension().is_some_and(|e| e == "pem") {
        ward_ca::certutil::pem_block("X509 CRL", &der).into_bytes()
    } else {
        der
    };
    sink::write_atomic(path, &data, 0o644)
}

/// RFC 3339 in UTC.
pub fn fmt_time(t: SystemTime) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix(t))
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{} (unix)", unix(t)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_wraps_at_64() {
        let p = ward_ca::certutil::pem_block("X509 CRL", &[0u8; 100]);
        assert!(p.starts_with("-----BEGIN X509 CRL-----\n"));
        assert!(p.lines().all(|l| l.len() <= 64));
    }

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(fmt_time(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }
}
