//! Reload on SIGHUP and when a watched file changes (mtime/size poll).
//!
//! Each part (policy, candidate policies, TLS material) reloads on its own:
//! a part that fails validation is refused with an error log and a metric
//! and its last good version stays in force, so a typo in one policy file
//! never opens or closes the gateway.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::policy::Policy;
use crate::server::{Shared, State, shadow_routes};
use crate::tls::TlsMaterial;

/// A cheap fingerprint of every watched file: path, mtime, size.
fn snapshot(shared: &Shared) -> Vec<(PathBuf, Option<SystemTime>, u64)> {
    let c = &shared.config;
    let mut files: Vec<PathBuf> = vec![c.trust_bundle.clone(), c.cert.clone(), c.key.clone()];
    files.extend(c.crls.iter().cloned());
    let mut dirs = vec![c.policy_dir.clone()];
    dirs.extend(shadow_routes(c).into_iter().map(|(_, _, d)| d));
    for d in dirs {
        files.push(d.clone());
        if let Ok(rd) = std::fs::read_dir(&d) {
            files.extend(rd.filter_map(|e| e.ok().map(|e| e.path())));
        }
    }
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let meta = std::fs::metadata(&p).ok();
            let mtime = meta.as_ref().and_then(|m| m.modified().ok());
            let len = meta.map_or(0, |m| m.len());
            (p, mtime, len)
        })
        .collect()
}

/// Runs forever: reloads on SIGHUP and on file changes.
pub async fn watch(shared: Arc<Shared>) {
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(error = %e, "cannot install the SIGHUP handler; file polling only");
            None
        }
    };
    let poll = shared.config.reload_poll_secs;
    let mut last = snapshot(&shared);
    let mut retry = false;
    let mut tick = tokio::time::interval(Duration::from_secs(poll.max(1)));
    tick.tick().await;
    loop {
        let by_signal = tokio::select! {
            Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
            _ = tick.tick(), if poll > 0 => false,
            else => {
                std::future::pending::<()>().await;
                false
            }
        };
        let now = snapshot(&shared);
        if by_signal || now != last || retry {
            tracing::info!(by_signal, retry, "reloading");
            last = now;
            // A certificate and its key are written one after the other: a
            // poll between the two sees a mismatched pair. Try once more on
            // the next tick before waiting for the next change.
            retry = !reload(&shared) && !retry;
        }
    }
}

fn load_policy(shared: &Shared, part: &'static str, dir: &Path, old: &Arc<Policy>) -> Arc<Policy> {
    match Policy::load_dir(dir) {
        Ok(p) => {
            if p.hash() != old.hash() {
                tracing::info!(part, dir = %dir.display(), hash = p.hash(), "policy reloaded");
            }
            shared.metrics.reloads.with_label_values(&[part]).inc();
            Arc::new(p)
        }
        Err(e) => {
            tracing::error!(part, dir = %dir.display(), error = %e.report(), "policy refused; the last good one stays in force");
            shared
                .metrics
                .reload_failures
                .with_label_values(&[part])
                .inc();
            old.clone()
        }
    }
}

/// Reloads every part once; refused parts keep their last good version.
/// Returns whether every part loaded.
pub fn reload(shared: &Shared) -> bool {
    let failures_before = total_failures(shared);
    if let Err(e) = shared.decider.reopen() {
        tracing::error!(error = %e.report(), "cannot reopen the decision log; still writing the old file");
    }
    let old = shared.current();
    let policy = load_policy(shared, "policy", &shared.config.policy_dir, &old.policy);
    let mut candidates = HashMap::new();
    for (name, _, dir) in shadow_routes(&shared.config) {
        if let Some(prev) = old.candidates.get(&name) {
            candidates.insert(name, load_policy(shared, "candidate_policy", &dir, prev));
        }
    }
    let (tls, server_config) = match TlsMaterial::load(&shared.config).and_then(|m| {
        let sc = m.server_config(shared.config.tls13_only)?;
        let cc = m.upstream_client_config()?;
        Ok((m, sc, cc))
    }) {
        Ok((m, sc, cc)) => {
            shared.metrics.reloads.with_label_values(&["tls"]).inc();
            match shared.upstream_tls.write() {
                Ok(mut c) => *c = cc,
                Err(poisoned) => *poisoned.into_inner() = cc,
            }
            (Arc::new(m), sc)
        }
        Err(e) => {
            tracing::error!(error = %e.report(), "TLS material refused; the last good one stays in force");
            shared
                .metrics
                .reload_failures
                .with_label_values(&["tls"])
                .inc();
            (old.tls.clone(), old.server_config.clone())
        }
    };
    shared.replace(State {
        generation: old.generation + 1,
        tls,
        server_config,
        policy,
        candidates,
    });
    total_failures(shared) == failures_before
}

fn total_failures(shared: &Shared) -> u64 {
    ["policy", "candidate_policy", "tls"]
        .iter()
        .map(|p| shared.metrics.reload_failures.with_label_values(&[p]).get())
        .sum()
}
