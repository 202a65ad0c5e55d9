//! TCP routes: after the handshake, decide `tcp:Connect` once, then tunnel
//! raw bytes to the upstream. The tunnel is re-decided whenever the policy,
//! trust bundle or CRL changes and closed when the certificate expires,
//! because a database session can outlive its permission by hours.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::config::TcpRoute;
use crate::decide::{ConnInfo, Question, base_context};
use crate::server::{Shared, close_for, recheck_chain, until_expiry};

/// Decides `tcp:Connect` for `conn` on `route` with the current state.
fn decide(shared: &Shared, conn: &ConnInfo, route: &TcpRoute, kind: &'static str) -> bool {
    let state = shared.current();
    let groups = state.policy.groups_of(&conn.identity);
    let context = base_context(conn, &groups, OffsetDateTime::now_utc());
    shared
        .decider
        .decide(
            conn,
            &state.policy,
            state.candidates.get(&route.name).map(|p| p.as_ref()),
            Question {
                route: &route.name,
                action: "tcp:Connect".into(),
                resource: format!("route/{}", route.name),
                context: &context,
                kind,
            },
        )
        .allowed
}

/// Serves one TCP-route connection until either side closes or a re-check
/// says no. `changes` was subscribed before the handshake and `tls_seen` is
/// the TLS material the chain was last verified with, so a reload during
/// the decision or the upstream connect is re-checked, not missed.
pub async fn serve(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    route: TcpRoute,
    mut tls: crate::tls_stream::ServerTls,
    mut changes: tokio::sync::watch::Receiver<u64>,
    mut tls_seen: Arc<crate::tls::TlsMaterial>,
) {
    let allowed = decide(&shared, &conn, &route, "connect");
    shared
        .metrics
        .tunnels
        .with_label_values(&[route.name.as_str(), if allowed { "allow" } else { "deny" }])
        .inc();
    if !allowed {
        let _ = tls.shutdown().await;
        return;
    }
    let timeout = Duration::from_secs(shared.config.limits.upstream_connect_timeout_secs);
    let mut upstream = match tokio::time::timeout(timeout, TcpStream::connect(&route.upstream))
        .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::warn!(route = %route.name, upstream = %route.upstream, error = %e, "cannot connect to the upstream");
            let _ = tls.shutdown().await;
            return;
        }
        Err(_) => {
            tracing::warn!(route = %route.name, upstream = %route.upstream, "upstream connect timed out");
            let _ = tls.shutdown().await;
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    let mut shutdown = shared.shutdown.subscribe();
    let expiry = tokio::time::sleep(until_expiry(&conn));
    tokio::pin!(expiry);
    let copy = tokio::io::copy_bidirectional(&mut tls, &mut upstream);
    tokio::pin!(copy);
    loop {
        tokio::select! {
            res = &mut copy => {
                if let Err(e) = res {
                    tracing::debug!(route = %route.name, error = %e, "tunnel ended with an error");
                }
                return;
            }
            changed = changes.changed() => {
                if changed.is_err() {
                    continue;
                }
                if let Some(reason) = recheck_chain(&shared, &conn, &mut tls_seen) {
                    close_for(&shared, &conn, &route.name, "revoked_or_untrusted", &reason);
                    return;
                }
                let still_routed = shared
                    .current()
                    .tcp_routes
                    .iter()
                    .any(|r| r.sni == route.sni && r.upstream == route.upstream);
                if !still_routed {
                    close_for(&shared, &conn, &route.name, "route", "route removed or changed by a config reload");
                    return;
                }
                if !decide(&shared, &conn, &route, "recheck") {
                    close_for(&shared, &conn, &route.name, "policy", "policy no longer allows tcp:Connect");
                    return;
                }
            }
            () = &mut expiry => {
                close_for(&shared, &conn, &route.name, "expired", "client certificate expired");
                return;
            }
            changed = shutdown.changed() => {
                if changed.is_ok() {
                    return;
                }
            }
        }
    }
}
