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

use crate::config::Config;
use crate::policy::Policy;
use crate::server::{Shared, State, shadow_routes};
use crate::tls::TlsMaterial;

/// A cheap fingerprint of every watched file: path, mtime, size.
fn snapshot(shared: &Shared) -> Vec<(PathBuf, Option<SystemTime>, u64)> {
    let c = &shared.config;
    let mut files: Vec<PathBuf> = vec![c.trust_bundle.clone(), c.cert.clone(), c.key.clone()];
    files.extend(shared.config_path.iter().cloned());
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
    let old = shared.current();
    // Routes come from the config file as it is now; a config that does not
    // load or validate keeps the routes in force.
    let routes_config = match &shared.config_path {
        Some(path) => match Config::load(path) {
            Ok(new) => {
                if new.listen != shared.config.listen
                    || new.admin_listen != shared.config.admin_listen
                    || new.trust_domain != shared.config.trust_domain
                {
                    tracing::warn!("listen, admin_listen and trust_domain changes need a restart");
                }
                Some(new)
            }
            Err(e) => {
                tracing::error!(error = %e.report(), "config refused; the routes in force stay");
                shared
                    .metrics
                    .reload_failures
                    .with_label_values(&["config"])
                    .inc();
                None
            }
        },
        None => None,
    };
    let route_source = routes_config.as_ref().unwrap_or(&shared.config);
    if let Err(e) = shared.decider.reopen() {
        tracing::error!(error = %e.report(), "cannot reopen the decision log; still writing the old file");
    }
    let policy = load_policy(shared, "policy", &shared.config.policy_dir, &old.policy);
    let mut candidates = HashMap::new();
    for (name, _, dir) in shadow_routes(route_source) {
        let loaded = match old.candidates.get(&name) {
            Some(prev) => load_policy(shared, "candidate_policy", &dir, prev),
            // A shadow route new in this config: its candidate must load,
            // or the route is shadowed by nothing (logged, not fatal).
            None => match Policy::load_dir(&dir) {
                Ok(p) => Arc::new(p),
                Err(e) => {
                    tracing::error!(route = %name, error = %e.report(), "candidate policy refused");
                    shared
                        .metrics
                        .reload_failures
                        .with_label_values(&["candidate_policy"])
                        .inc();
                    continue;
                }
            },
        };
        candidates.insert(name, loaded);
    }
    let (routes, tcp_routes) = match &routes_config {
        Some(new)
            if new.http_routes != shared_http_routes(&old)
                || new.tcp_routes.as_slice() != old.tcp_routes.as_slice() =>
        {
            shared.metrics.reloads.with_label_values(&["routes"]).inc();
            tracing::info!(
                http = new.http_routes.len(),
                tcp = new.tcp_routes.len(),
                "routes reloaded"
            );
            (
                Arc::new(crate::proxy::routes(new, &shared.upstream_tls)),
                Arc::new(new.tcp_routes.clone()),
            )
        }
        _ => (old.routes.clone(), old.tcp_routes.clone()),
    };
    let (tls, server_config) = match TlsMaterial::load(&shared.config).and_then(|m| {
        let sc = m.server_config(shared.config.tls13_only)?;
        let cc = m.upstream_client_config()?;
        Ok((m, sc, cc))
    }) {
        // Same files: keep the material in force, so connections are not
        // re-verified and the TLS session cache survives.
        Ok((m, _, _)) if m.source_hash == old.tls.source_hash => {
            (old.tls.clone(), old.server_config.clone())
        }
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
        routes,
        tcp_routes,
    });
    total_failures(shared) == failures_before
}

/// The configured HTTP routes behind the parsed ones in force.
fn shared_http_routes(state: &State) -> Vec<crate::config::HttpRoute> {
    state.routes.iter().map(|r| r.config.clone()).collect()
}

fn total_failures(shared: &Shared) -> u64 {
    ["policy", "candidate_policy", "tls", "config"]
        .iter()
        .map(|p| shared.metrics.reload_failures.with_label_values(&[p]).get())
        .sum()
}
