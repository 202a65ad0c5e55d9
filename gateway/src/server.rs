//! The TCP+TLS listener, per-connection handling and shutdown.
//!
//! State that reloads (TLS material, policies) lives in one `Arc<State>`
//! behind a lock: a connection takes a snapshot when it starts (and each
//! request takes a fresh one), so a reload never changes the ground under a
//! decision in progress, and new connections see the new state at once.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::Error;
use crate::assertion::Signer;
use crate::config::{Config, Mode, TcpRoute};
use crate::decide::{ConnInfo, Decider};
use crate::idle::{Activity, Tracked};
use crate::metrics::Metrics;
use crate::park::{Guarded, H1};
use crate::peers::Peers;
use crate::policy::Policy;
use crate::proxy::Route;
use crate::recheck::OpenStreams;
use crate::tls::TlsMaterial;
use crate::tls_stream::ServerTls;
use crate::upstream::SharedClientConfig;

/// Everything that a reload may replace.
#[derive(Debug)]
pub struct State {
    /// Increases with every reload.
    pub generation: u64,
    /// Trust bundle, CRLs, verifier, own certificate and key.
    pub tls: Arc<TlsMaterial>,
    /// rustls config built from `tls`.
    pub server_config: Arc<ServerConfig>,
    /// The enforced policy.
    pub policy: Arc<Policy>,
    /// Candidate policies of shadow-mode routes, by route name.
    pub candidates: HashMap<String, Arc<Policy>>,
    /// HTTP routes with their upstream clients (reloaded with the config).
    pub routes: Arc<Vec<Route>>,
    /// TCP routes (reloaded with the config).
    pub tcp_routes: Arc<Vec<TcpRoute>>,
}

/// Everything shared by all connections for the life of the process.
#[derive(Debug)]
pub struct Shared {
    /// The config the process started with. Routes (and their candidate
    /// policy directories) reload from `config_path`; listeners, limits,
    /// paths and the trust domain need a restart.
    pub config: Config,
    /// Where the config came from, for route reloads.
    pub config_path: Option<std::path::PathBuf>,
    state: RwLock<Arc<State>>,
    /// Ticks (with the new generation) after every reload.
    pub changes: watch::Sender<u64>,
    /// Becomes `true` when the gateway starts draining.
    pub shutdown: watch::Sender<bool>,
    /// Metrics.
    pub metrics: Metrics,
    /// Assertion signer.
    pub signer: Signer,
    /// Decision evaluation and log.
    pub decider: Decider,
    /// TLS client config for HTTPS upstreams, replaced on reload.
    pub upstream_tls: SharedClientConfig,
    per_identity: Mutex<HashMap<String, usize>>,
    /// The chains and identities of open connections, one copy per client.
    pub peers: Peers,
    /// hyper's HTTP/1.1 settings, shared by every connection (a parked
    /// connection starts a new hyper connection from them on resume).
    pub h1_builder: Arc<http1::Builder>,
    /// Set once listeners are up.
    pub ready: AtomicBool,
    /// `Alt-Svc` advertising HTTP/3 on TCP responses (`None` when HTTP/3 is
    /// off).
    pub alt_svc: Option<http::HeaderValue>,
}

impl Shared {
    /// The current state snapshot.
    pub fn current(&self) -> Arc<State> {
        match self.state.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the state and tells open connections.
    pub fn replace(&self, new: State) {
        let generation = new.generation;
        let new = Arc::new(new);
        match self.state.write() {
            Ok(mut s) => *s = new,
            Err(poisoned) => *poisoned.into_inner() = new,
        }
        self.changes.send_replace(generation);
    }
}

/// Loads everything a state needs; every part must succeed (start, check).
/// Route clients are built by [`with_routes`] once the upstream TLS config
/// exists.
pub fn load_state(config: &Config, generation: u64) -> Result<State, Error> {
    let tls = TlsMaterial::load(config)?;
    let server_config = tls.server_config(config.tls13_only)?;
    let policy = Policy::load_dir(&config.policy_dir)?;
    let mut candidates = HashMap::new();
    for (name, mode, dir) in shadow_routes(config) {
        if mode == Mode::Shadow {
            candidates.insert(name, Arc::new(Policy::load_dir(&dir)?));
        }
    }
    Ok(State {
        generation,
        tls: Arc::new(tls),
        server_config,
        policy: Arc::new(policy),
        candidates,
        routes: Arc::new(Vec::new()),
        tcp_routes: Arc::new(config.tcp_routes.clone()),
    })
}

/// `state` with the HTTP routes of `config` and their upstream clients.
pub fn with_routes(mut state: State, config: &Config, tls: &SharedClientConfig) -> State {
    state.routes = Arc::new(crate::proxy::routes(config, tls));
    state.tcp_routes = Arc::new(config.tcp_routes.clone());
    state
}

/// (route name, mode, candidate dir) of every route with a candidate.
pub fn shadow_routes(config: &Config) -> Vec<(String, Mode, std::path::PathBuf)> {
    let http = config
        .http_routes
        .iter()
        .filter_map(|r| Some((r.name.clone(), r.mode, r.candidate_policy_dir.clone()?)));
    let tcp = config
        .tcp_routes
        .iter()
        .filter_map(|r| Some((r.name.clone(), r.mode, r.candidate_policy_dir.clone()?)));
    http.chain(tcp).collect()
}

/// Decrements the connection counters when a connection ends, however it
/// ends. Shared by the TCP and QUIC listeners so both count against the
/// same `max_connections` and per-identity limits.
pub(crate) struct ConnGuard {
    shared: Arc<Shared>,
    principal: Option<String>,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.shared.metrics.active_connections.dec();
        if let Some(p) = &self.principal
            && let Ok(mut m) = self.shared.per_identity.lock()
            && let Some(n) = m.get_mut(p)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(p);
            }
        }
    }
}

/// Runs the gateway until SIGTERM/SIGINT, then drains.
pub async fn run(config: Config, config_path: Option<std::path::PathBuf>) -> Result<(), Error> {
    crate::tls::install_default_provider();
    let metrics = Metrics::new()?;
    if let Some(fetch) = &config.crl_fetch {
        // Start with the CA's current CRL; if the CA is unreachable, a CRL
        // file from an earlier run will do, and no CRL at all refuses to
        // start (fail closed).
        if let Err(e) = crate::crl::fetch_once(fetch, &config.trust_bundle).await {
            if fetch.file.exists() {
                tracing::warn!(url = %fetch.url, error = %e, "CRL fetch failed at start; using the CRL file from before");
            } else {
                return Err(e);
            }
        }
    }
    let state = load_state(&config, 1)?;
    metrics
        .own_cert_expiry
        .set(state.tls.own_not_after - time::OffsetDateTime::now_utc().unix_timestamp());
    let decider = Decider::open(&config.decision_log, metrics.clone())?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Listen {
            what: "listener",
            addr: config.listen.to_string(),
            source,
        })?;
    let admin = TcpListener::bind(config.admin_listen)
        .await
        .map_err(|source| Error::Listen {
            what: "admin listener",
            addr: config.admin_listen.to_string(),
            source,
        })?;
    // HTTP/3 on the same port over UDP; a port that cannot be bound fails
    // the start, as the TCP listener does.
    let quic = if config.http3.enabled {
        let addr = listener.local_addr().unwrap_or(config.listen);
        let (endpoint, server) = crate::quic::bind(&config, &state, addr)?;
        Some((endpoint, (server, state.tls.clone())))
    } else {
        None
    };
    let alt_svc = quic.as_ref().and_then(|(q, _)| {
        let port = q.local_addr().map(|a| a.port()).ok()?;
        http::HeaderValue::from_str(&format!(
            "h3=\":{port}\"; ma={}",
            config.http3.alt_svc_max_age_secs
        ))
        .ok()
    });
    let (changes, _) = watch::channel(1);
    let (shutdown, _) = watch::channel(false);
    let upstream_tls: SharedClientConfig =
        Arc::new(RwLock::new(state.tls.upstream_client_config()?));
    let state = with_routes(state, &config, &upstream_tls);
    let h1_builder = Arc::new(h1_builder(&config.limits));
    let shared = Arc::new(Shared {
        upstream_tls,
        config,
        config_path,
        state: RwLock::new(Arc::new(state)),
        changes,
        shutdown,
        metrics,
        signer: Signer::generate()?,
        decider,
        per_identity: Mutex::new(HashMap::new()),
        peers: Peers::default(),
        h1_builder,
        ready: AtomicBool::new(false),
        alt_svc,
    });
    if let Some((endpoint, installed)) = quic {
        tokio::spawn(crate::quic::serve(shared.clone(), endpoint, installed));
    }
    tokio::spawn(crate::admin::serve(shared.clone(), admin));
    tokio::spawn(crate::reload::watch(shared.clone()));
    tokio::spawn(crate::crl::fetch_loop(shared.clone()));
    shared.ready.store(true, Ordering::SeqCst);
    tracing::info!(
        listen = %shared.config.listen,
        admin = %shared.config.admin_listen,
        "gateway ready"
    );

    let mut terminate = signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut interrupt = signal(tokio::signal::unix::SignalKind::interrupt())?;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => accept(&shared, stream, peer),
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    drop(listener);
    shared.ready.store(false, Ordering::SeqCst);
    let grace = Duration::from_secs(shared.config.limits.shutdown_grace_secs);
    tracing::info!(grace_secs = grace.as_secs(), "draining connections");
    shared.shutdown.send_replace(true);
    let deadline = tokio::time::Instant::now() + grace;
    while shared.metrics.active_connections.get() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tracing::info!(
        left = shared.metrics.active_connections.get(),
        "gateway stopped"
    );
    Ok(())
}

fn signal(kind: tokio::signal::unix::SignalKind) -> Result<tokio::signal::unix::Signal, Error> {
    tokio::signal::unix::signal(kind).map_err(|source| Error::Listen {
        what: "signal handler",
        addr: format!("{kind:?}"),
        source,
    })
}

fn accept(shared: &Arc<Shared>, stream: TcpStream, peer: SocketAddr) {
    if let Some(guard) = admit(shared) {
        tokio::spawn(connection(shared.clone(), stream, peer, guard));
    }
}

/// Counts a new connection (any transport) against `max_connections`;
/// `None`, counted in `limited`, when the gateway is full.
pub(crate) fn admit(shared: &Arc<Shared>) -> Option<ConnGuard> {
    if usize::try_from(shared.metrics.active_connections.get()).unwrap_or(0)
        >= shared.config.limits.max_connections
    {
        shared
            .metrics
            .limited
            .with_label_values(&["max_connections"])
            .inc();
        return None;
    }
    shared.metrics.active_connections.inc();
    Some(ConnGuard {
        shared: shared.clone(),
        principal: None,
    })
}

/// Counts a verified connection against its identity's limit; `false`
/// (counted and logged) when that identity holds too many already.
pub(crate) fn claim_identity(
    shared: &Shared,
    guard: &mut ConnGuard,
    principal: &str,
    peer: SocketAddr,
) -> bool {
    let limit = shared.config.limits.max_connections_per_identity;
    let over = match shared.per_identity.lock() {
        Ok(mut m) => {
            let n = m.entry(principal.to_string()).or_insert(0);
            if *n >= limit {
                true
            } else {
                *n += 1;
                false
            }
        }
        Err(_) => true,
    };
    if over {
        shared
            .metrics
            .limited
            .with_label_values(&["per_identity"])
            .inc();
        tracing::info!(%peer, %principal, "per-identity connection limit reached");
        return false;
    }
    guard.principal = Some(principal.to_string());
    true
}

async fn connection(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    mut guard: ConnGuard,
) {
    let _ = stream.set_nodelay(true);
    // Everything up to the start of serving lives in this block: a local
    // of the function body would keep its slot in the task (rustc saves a
    // local whose scope spans an await, moved out or not), and the task
    // lives as long as the connection.
    let serving: Pin<Box<dyn Future<Output = ()> + Send>> = {
        // Subscribed before the handshake: a reload from here on reaches the
        // connection's re-check once it is served, including one that lands
        // between the post-handshake check below and the start of serving.
        let changes = shared.changes.subscribe();
        let state = shared.current();
        let timeout = Duration::from_secs(shared.config.limits.handshake_timeout_secs);
        // Boxed, timer included: the handshake's state holds a whole TLS
        // stream, and the task keeps the room of whatever it awaits.
        let handshake = Box::pin(tokio::time::timeout(
            timeout,
            ServerTls::accept(stream, state.server_config.clone()),
        ));
        let (tls, sni) = match handshake.await {
            Ok(Ok(accepted)) => accepted,
            Ok(Err(e)) => {
                let reason = crate::tls::handshake_failure_reason(&e);
                shared
                    .metrics
                    .handshakes
                    .with_label_values(&["failed", reason])
                    .inc();
                tracing::info!(%peer, reason, error = %e, "handshake refused");
                return;
            }
            Err(_) => {
                shared
                    .metrics
                    .handshakes
                    .with_label_values(&["failed", "timeout"])
                    .inc();
                return;
            }
        };
        let session = tls.session();
        let client = match shared.peers.get(
            session.peer_certificates().unwrap_or_default(),
            &shared.config.trust_domain,
        ) {
            Ok(client) => client,
            // The verifier already refused these; this is defence in depth.
            Err(_) => {
                shared
                    .metrics
                    .handshakes
                    .with_label_values(&["failed", "identity"])
                    .inc();
                return;
            }
        };
        // A resumed session skips the client verifier: the certificate it was
        // made with may have expired or been revoked since. (A reload builds a
        // new session cache, so a new CRL already ends resumption, but expiry
        // and the current trust bundle are checked here.)
        // Also when a reload landed during the handshake: the connection must
        // not escape the re-check that the open connections just had.
        let checked_with = shared.current().tls.clone();
        let reloaded = !Arc::ptr_eq(&checked_with, &state.tls);
        if (reloaded || session.handshake_kind() == Some(rustls::HandshakeKind::Resumed))
            && let Some((leaf, rest)) = client.chain.split_first()
            && let Err(e) = checked_with.verifier.recheck(leaf, rest)
        {
            shared
                .metrics
                .handshakes
                .with_label_values(&["failed", "resumed_invalid"])
                .inc();
            tracing::info!(%peer, error = %e, "resumed session refused: certificate no longer valid");
            return;
        }
        shared
            .metrics
            .handshakes
            .with_label_values(&["ok", ""])
            .inc();
        let tls_version = match session.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "unknown",
        };
        let sni = sni.map(|s| s.to_ascii_lowercase());
        let h2 = session.alpn_protocol() == Some(b"h2");

        if !claim_identity(&shared, &mut guard, client.identity.principal(), peer) {
            return;
        }

        let tcp_route = sni
            .as_deref()
            .and_then(|sni| state.tcp_routes.iter().find(|r| r.sni == sni).cloned());
        let conn = Arc::new(ConnInfo {
            peer,
            identity: client.identity,
            chain: client.chain,
            tls_version,
            protocol: if tcp_route.is_some() {
                "tcp"
            } else if h2 {
                "h2"
            } else {
                "h1"
            },
        });
        match tcp_route {
            Some(route) => Box::pin(crate::tcp::serve(
                shared,
                conn,
                route,
                tls,
                changes,
                checked_with,
            )),
            None => Box::pin(serve_http(shared, conn, tls, changes, checked_with)),
        }
    };
    serving.await;
    drop(guard);
}

/// Why an open connection must be closed after a reload, if it must: the
/// chain no longer verifies under the current trust bundle and CRLs, or has
/// expired. `seen` is the TLS material the chain was last verified with;
/// only new material is worth verifying again (a policy-only reload leaves
/// it as it was), and `seen` becomes the current one.
pub fn recheck_chain(
    shared: &Shared,
    conn: &ConnInfo,
    seen: &mut Arc<TlsMaterial>,
) -> Option<String> {
    let current = shared.current().tls.clone();
    if Arc::ptr_eq(&current, seen) {
        return None;
    }
    *seen = current.clone();
    let (leaf, rest) = conn.chain.split_first()?;
    match current.verifier.recheck(leaf, rest) {
        Ok(()) => None,
        Err(e) => Some(format!("certificate no longer valid: {e}")),
    }
}

/// How long until the client certificate expires (zero if it has).
pub fn until_expiry(conn: &ConnInfo) -> Duration {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    Duration::from_secs(u64::try_from(conn.identity.not_after - now).unwrap_or(0))
}

/// Serves HTTP on an accepted connection. Not an `async fn`: its
/// arguments would stay in the connection's task for its whole life (the
/// TLS stream alone is over 1 KiB), although the stream moves into the
/// boxed HTTP connection at once.
///
/// `changes` was subscribed before the handshake and `tls_seen` is the TLS
/// material the chain was last verified with, so a reload between the
/// handshake and this point is not missed.
fn serve_http(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    tls: ServerTls,
    mut changes: tokio::sync::watch::Receiver<u64>,
    mut tls_seen: Arc<TlsMaterial>,
) -> impl std::future::Future<Output = ()> + Send {
    let limits = &shared.config.limits;
    let streams = Arc::new(OpenStreams::default());
    let activity = Activity::new();
    let svc = {
        let shared = shared.clone();
        let conn = conn.clone();
        let streams = streams.clone();
        let activity = activity.clone();
        service_fn(move |req: Request<Incoming>| {
            // Both bodies keep the request in flight, so that an HTTP/1.1
            // connection is never parked while either still moves.
            activity.head_done();
            let in_flight = activity.in_flight();
            let req = req.map(|b| Guarded::new(b, activity.in_flight()));
            let resp = crate::proxy::handle(shared.clone(), conn.clone(), streams.clone(), req);
            let alt_svc = shared.alt_svc.clone();
            async move {
                let mut resp = resp.await?;
                // Advertise HTTP/3 on the same port (RFC 7838).
                if let Some(v) = alt_svc {
                    resp.headers_mut().insert(http::header::ALT_SVC, v);
                }
                Ok::<_, std::convert::Infallible>(resp.map(|b| Guarded::new(b, in_flight)))
            }
        })
    };
    let io = Tracked::new(tls, activity.clone());
    // ALPN decides the protocol (HTTP/2 over TLS needs ALPN `h2`, RFC 9113
    // 3.2); without ALPN the client speaks HTTP/1.1.
    let (mut h1, mut h2) = (None, None);
    if conn.protocol == "h2" {
        let mut builder = http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits.max_concurrent_streams)
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
            .keep_alive_interval(Duration::from_secs(30))
            .enable_connect_protocol();
        h2 = Some(Box::pin(builder.serve_connection(TokioIo::new(io), svc)));
    } else {
        let header_timeout = Duration::from_secs(limits.header_read_timeout_secs);
        h1 = Some(Box::new(H1::new(
            shared.h1_builder.clone(),
            io,
            svc,
            activity.clone(),
            header_timeout,
            shared.metrics.parked_connections.clone(),
            conn.peer,
            streams.clone(),
        )));
    }
    // Asks hyper (or the parked connection) to close once nothing is in
    // flight.
    macro_rules! graceful_shutdown {
        () => {
            if let Some(c) = h1.as_mut() {
                c.graceful_shutdown();
            }
            if let Some(c) = h2.as_mut() {
                c.as_mut().graceful_shutdown();
            }
        };
    }
    let idle_limit = Duration::from_secs(limits.idle_timeout_secs);
    async move {
        let mut shutdown = shared.shutdown.subscribe();
        // One timer for the certificate's expiry and the idle check, at
        // whichever is due first: the task of every idle connection holds
        // it, and a timer is over 100 bytes.
        let start = tokio::time::Instant::now();
        let expiry_at = start + until_expiry(&conn);
        let mut idle_at = (!idle_limit.is_zero()).then(|| start + idle_limit);
        let timer = tokio::time::sleep_until(expiry_at);
        tokio::pin!(timer);
        // `http_done`: hyper has finished with the connection; upgraded streams
        // (WebSockets) may still be open and are still re-checked until they end.
        let (mut http_done, mut closing, mut expired) = (false, false, false);
        // The chain is verified again only when the TLS material changed.
        loop {
            let emptied = streams.emptied.notified();
            if http_done && streams.is_empty() {
                break;
            }
            let due = [
                (!expired).then_some(expiry_at),
                idle_at.filter(|_| !closing),
            ]
            .into_iter()
            .flatten()
            .min();
            if let Some(at) = due
                && timer.deadline() != at
            {
                timer.as_mut().reset(at);
            }
            tokio::select! {
                res = std::future::poll_fn(|cx| match (h1.as_mut(), h2.as_mut()) {
                    (Some(c), _) => c.poll(cx),
                    (_, Some(c)) => c.as_mut().poll(cx),
                    (None, None) => std::task::Poll::Ready(Ok(())),
                }), if !http_done => {
                    if let Err(e) = res {
                        tracing::debug!(peer = %conn.peer, error = %e, "connection ended with an error");
                    }
                    http_done = true;
                }
                changed = changes.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    if let Some(reason) = recheck_chain(&shared, &conn, &mut tls_seen) {
                        if !closing {
                            close_for(&shared, &conn, "", "revoked_or_untrusted", &reason);
                        }
                        streams.kill_all(&reason);
                        if !http_done && !closing {
                            graceful_shutdown!();
                        }
                        closing = true;
                    } else {
                        streams.recheck(&shared, &conn);
                    }
                }
                () = &mut timer, if due.is_some() => {
                    let now = tokio::time::Instant::now();
                    if !expired && now >= expiry_at {
                        expired = true;
                        close_for(&shared, &conn, "", "expired", "client certificate expired");
                        streams.kill_all("client certificate expired");
                        if !http_done && !closing {
                            graceful_shutdown!();
                        }
                        closing = true;
                    } else if let Some(at) = idle_at
                        && !closing
                        && now >= at
                    {
                        let deadline = tokio::time::Instant::from_std(activity.last() + idle_limit);
                        if deadline <= now && streams.is_empty() {
                            tracing::debug!(peer = %conn.peer, "closing idle connection");
                            shared.metrics.limited.with_label_values(&["idle"]).inc();
                            if !http_done {
                                graceful_shutdown!();
                            }
                            closing = true;
                        } else {
                            idle_at = Some(deadline.max(now + Duration::from_secs(1)));
                        }
                    }
                }
                changed = shutdown.changed(), if !closing => {
                    if changed.is_ok() && !http_done {
                        graceful_shutdown!();
                    }
                    closing = true;
                }
                () = emptied, if http_done => {}
            }
        }
    }
}

/// hyper's HTTP/1.1 server settings from the limits.
fn h1_builder(limits: &crate::config::Limits) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(limits.header_read_timeout_secs))
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(limits.max_headers);
    builder
}

/// Logs, counts and records in the decision log why a connection is closed.
pub fn close_for(shared: &Shared, conn: &ConnInfo, route: &str, label: &str, reason: &str) {
    tracing::info!(
        peer = %conn.peer,
        principal = %conn.identity.spiffe_id,
        route,
        reason,
        "closing connection after re-check"
    );
    shared
        .metrics
        .rechecks_closed
        .with_label_values(&[label])
        .inc();
    shared.decider.log_close(conn, route, reason);
}
