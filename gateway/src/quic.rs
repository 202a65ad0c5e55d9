//! The QUIC listener: HTTP/3 (quinn + h3 + h3-quinn) on the TCP listener's
//! address over UDP, with exactly the same admission as TCP.
//!
//! Nothing about *who* may do *what* is decided here. The rustls config is
//! built by [`TlsMaterial::server_config_with`] from the same
//! [`crate::tls::SpiffeVerifier`] as the TCP listener (chain, CRL, EKU,
//! exactly one SPIFFE ID), the identity comes from the same
//! [`crate::peers::Peers::get`], connection limits are the same counters
//! ([`crate::server::admit`], [`crate::server::claim_identity`]), and every
//! request goes through [`crate::proxy::handle`] — routing, the decision,
//! the decision log, header stripping, the identity headers and the
//! proxying — with `ward:Protocol = h3`. This module only adapts QUIC to
//! those: a body type for h3 request streams, writing the response back,
//! and the connection's life (re-checks, expiry, drain).
//!
//! Things about quinn/h3 worth knowing before changing this file:
//!
//! - A QUIC server learns whether the client certificate is good only when
//!   the client's Finished arrives, and quinn's `Connecting` resolves only
//!   after that, so a refused certificate never yields a `Connection`. The
//!   client, however, considers its handshake complete before the server has
//!   checked its certificate (as with TLS 1.3 on TCP, where curl sees the
//!   refusal only on its first read): a client with a bad certificate sees
//!   `CONNECTION_CLOSE` with a TLS alert as its first request fails.
//! - quinn reports a refused handshake as a `TransportError` whose code is
//!   `0x100 + TLS alert`; the rustls error itself is not reachable, so the
//!   metric reason is derived from the alert ([`handshake_failure_reason`]).
//! - `QuicServerConfig::try_from` requires `max_early_data_size` to be 0 or
//!   `u32::MAX`. We keep 0 *and* issue no session tickets at all: 0-RTT
//!   data is replayable by anyone on the path, and a replayed request must
//!   never be proxied as a new one. Without tickets there is no resumption
//!   either, so every connection presents and verifies its certificate in
//!   full (a resumed session would carry a certificate verified under an
//!   older CRL).
//! - `h3::server::Connection::accept` is a `poll_fn` over state kept in the
//!   connection, so it is safe to cancel in `select!`.
//! - Connection migration is off: `ward:SourceIp` is taken once, at the
//!   handshake, and a policy conditioned on it must keep seeing the address
//!   that actually sends.
//! - quinn *finishes* (FIN, not RESET) a send stream that is dropped, so a
//!   response that must not look whole is reset explicitly
//!   (`stop_stream`), and a connection is closed before its request tasks
//!   are aborted.
//! - h3 refuses connection-specific header fields (RFC 9114 §4.2) in a
//!   response; the proxy already strips hop-by-hop headers, and
//!   [`send_response`] removes any that are left.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes};
use h3::error::Code;
use h3::server::{RequestResolver, RequestStream};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame};
use quinn::crypto::rustls::QuicServerConfig;
use quinn::{IdleTimeout, TransportConfig, VarInt};
use rustls::pki_types::CertificateDer;

use crate::Error;
use crate::config::Config;
use crate::decide::ConnInfo;
use crate::recheck::{Killed, OpenStreams};
use crate::server::{ConnGuard, Shared, State, close_for, recheck_chain, until_expiry};
use crate::tls::TlsMaterial;

/// Application error code with which ward closes a QUIC connection that is
/// no longer allowed (certificate revoked, no longer trusted, or expired).
/// It is not an HTTP/3 code (RFC 9114 §8.1 lets peers treat unknown codes
/// as generic errors); the close reason says what happened. `0x57415244`
/// is "WARD" in ASCII.
pub const CLOSE_NO_LONGER_ALLOWED: u32 = 0x5741_5244;

/// Application error code for a connection refused after the handshake by
/// the per-identity connection limit: HTTP/3's `H3_EXCESSIVE_LOAD`.
const CLOSE_EXCESSIVE_LOAD: u32 = 0x0107;

/// HTTP/3's `H3_NO_ERROR`, to close a drained connection.
const H3_NO_ERROR: u32 = 0x0100;

/// Unidirectional streams a client may open: HTTP/3 needs three (control,
/// QPACK encoder and decoder); the rest leaves room for grease streams.
/// ward uses no server push or WebTransport, so nothing needs more.
const MAX_UNI_STREAMS: u32 = 16;

/// The quinn server config for the current TLS material.
///
/// Limits set here explicitly (rather than left to quinn's defaults, which
/// may change between versions): request streams from
/// `http3.max_concurrent_streams`, uni streams [`MAX_UNI_STREAMS`], idle
/// timeout from `limits.idle_timeout_secs` (the TCP idle limit; 0 = never),
/// and at most `limits.max_connections` handshakes waiting at once.
/// Anti-amplification (at most 3× the bytes received to an unvalidated
/// address, RFC 9000 §8) is built into quinn and always on; stateless
/// retries are left off, like quinn's default, because the 3× limit already
/// bounds what a spoofed source can make us send.
pub fn server_config(config: &Config, tls: &TlsMaterial) -> Result<quinn::ServerConfig, Error> {
    let built = tls.server_config_with(true, &[b"h3"])?;
    let mut rustls_config = (*built).clone();
    // No 0-RTT, and no tickets or session cache, so no resumption: see the
    // module comment.
    rustls_config.max_early_data_size = 0;
    rustls_config.send_tls13_tickets = 0;
    rustls_config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    rustls_config.send_half_rtt_data = false;
    let crypto = QuicServerConfig::try_from(rustls_config)
        .map_err(|e| Error::Tls(format!("QUIC server config: {e}")))?;
    let mut transport = TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(VarInt::from_u32(config.http3.max_concurrent_streams))
        .max_concurrent_uni_streams(VarInt::from_u32(MAX_UNI_STREAMS));
    let idle = match config.limits.idle_timeout_secs {
        0 => None,
        secs => Some(
            IdleTimeout::try_from(Duration::from_secs(secs))
                .map_err(|e| Error::Tls(format!("limits.idle_timeout_secs for QUIC: {e}")))?,
        ),
    };
    transport.max_idle_timeout(idle);
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server
        .transport_config(Arc::new(transport))
        .migration(false)
        .max_incoming(config.limits.max_connections.clamp(1, 1 << 16));
    Ok(server)
}

/// Binds the QUIC endpoint on `addr` (UDP), with the TLS material of
/// `state`; also hands back the server config it was bound with, for
/// [`serve`].
pub fn bind(
    config: &Config,
    state: &State,
    addr: SocketAddr,
) -> Result<(quinn::Endpoint, Arc<quinn::ServerConfig>), Error> {
    let server = Arc::new(server_config(config, &state.tls)?);
    let endpoint =
        quinn::Endpoint::server((*server).clone(), addr).map_err(|source| Error::Listen {
            what: "QUIC (UDP) listener",
            addr: addr.to_string(),
            source,
        })?;
    Ok((endpoint, server))
}

/// Accepts QUIC connections until the gateway drains. Every reload gives
/// new connections a server config built from the new TLS material (open
/// connections are re-checked by their own task).
///
/// `installed` is the endpoint's current server config and the TLS
/// material it was built from. Each connection is accepted with exactly
/// that config (`accept_with`), never with whatever quinn captured: quinn
/// binds a connection to the server config in force when its first packet
/// arrived, which may predate a reload this loop has already seen. So each
/// connection knows the material its handshake was verified with, and is
/// checked again when a reload landed after that (see `connection`).
pub async fn serve(
    shared: Arc<Shared>,
    endpoint: quinn::Endpoint,
    mut installed: (Arc<quinn::ServerConfig>, Arc<TlsMaterial>),
) {
    let mut changes = shared.changes.subscribe();
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        tokio::select! {
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => accept(&shared, incoming, installed.clone()),
                None => break,
            },
            changed = changes.changed() => {
                if changed.is_err() {
                    break;
                }
                let state = shared.current();
                match server_config(&shared.config, &state.tls) {
                    Ok(server) => {
                        let server = Arc::new(server);
                        endpoint.set_server_config(Some((*server).clone()));
                        installed = (server, state.tls.clone());
                    }
                    // Built from material that already loaded for TCP, so
                    // this is not expected; the old config stays.
                    Err(e) => tracing::error!(error = %e.report(), "QUIC server config refused; the last good one stays"),
                }
            }
            _ = shutdown.changed() => break,
        }
    }
    // Draining: refuse new connections; open ones finish on their own tasks
    // (they hold the endpoint alive).
    endpoint.set_server_config(None);
}

fn accept(
    shared: &Arc<Shared>,
    incoming: quinn::Incoming,
    installed: (Arc<quinn::ServerConfig>, Arc<TlsMaterial>),
) {
    let Some(guard) = crate::server::admit(shared) else {
        shared
            .metrics
            .quic_handshakes
            .with_label_values(&["refused", "max_connections"])
            .inc();
        incoming.refuse();
        return;
    };
    tokio::spawn(connection(shared.clone(), incoming, guard, installed));
}

/// A short, stable reason for a refused QUIC handshake (metrics label),
/// from the TLS alert carried in quinn's transport error code. The labels
/// are those of the TCP listener's `tls::handshake_failure_reason`, so the
/// two transports' refusals can be compared (`tests/gateway_h3.rs` does).
pub fn handshake_failure_reason(e: &quinn::ConnectionError) -> &'static str {
    use quinn::ConnectionError as C;
    match e {
        C::TransportError(t) => alert_reason(u64::from(t.code), &t.reason),
        C::TimedOut => "timeout",
        C::ApplicationClosed(_) | C::ConnectionClosed(_) | C::Reset => "closed_by_client",
        C::VersionMismatch => "version",
        C::LocallyClosed | C::CidsExhausted => "local",
    }
}

/// The reason for a transport error `code` (`0x100 + alert` for TLS
/// errors); `reason` is rustls' message, which tells the alerts shared by
/// several errors apart. (quinn does not re-export its `TransportError`, so
/// this takes the parts.)
fn alert_reason(code: u64, reason: &str) -> &'static str {
    if !(0x100..=0x1ff).contains(&code) {
        return "transport";
    }
    let reason = reason.to_ascii_lowercase();
    match code - 0x100 {
        116 => "no_certificate",
        45 if reason.contains("not valid yet") || reason.contains("notvalidyet") => "not_yet_valid",
        45 => "expired",
        44 => "revoked",
        48 => "unknown_issuer",
        120 => "alpn",
        70 => "incompatible",
        // rustls: InvalidPurpose → unsupported_certificate, Other (the
        // SPIFFE identity check of our verifier) → certificate_unknown.
        43 => "wrong_purpose",
        46 => "identity",
        42 => "bad_certificate",
        _ => "tls",
    }
}

async fn connection(
    shared: Arc<Shared>,
    incoming: quinn::Incoming,
    mut guard: ConnGuard,
    (server_config, installed): (Arc<quinn::ServerConfig>, Arc<TlsMaterial>),
) {
    // Subscribed before the handshake: a reload from here on reaches this
    // connection's re-check in `serve_h3`, including one that lands after
    // the post-handshake check below.
    let changes = shared.changes.subscribe();
    let peer = incoming.remote_address();
    let metrics = &shared.metrics;
    let failed = |reason: &str| {
        metrics
            .quic_handshakes
            .with_label_values(&["failed", reason])
            .inc();
    };
    let connecting = match incoming.accept_with(server_config) {
        Ok(c) => c,
        Err(e) => {
            failed(handshake_failure_reason(&e));
            return;
        }
    };
    let timeout = Duration::from_secs(shared.config.limits.handshake_timeout_secs);
    let quic = match tokio::time::timeout(timeout, connecting).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            let reason = handshake_failure_reason(&e);
            failed(reason);
            tracing::info!(%peer, reason, error = %e, "QUIC handshake refused");
            return;
        }
        // Dropping `Connecting` abandons the handshake.
        Err(_) => {
            failed("timeout");
            return;
        }
    };
    // No ticket is ever issued (see `server_config`), so no client can send
    // 0-RTT data; if one tries, quinn discards it for lack of keys.
    metrics.quic_zero_rtt.with_label_values(&["none"]).inc();
    let chain: Vec<CertificateDer<'static>> = quic
        .peer_identity()
        .and_then(|any| any.downcast::<Vec<CertificateDer<'static>>>().ok())
        .map(|b| *b)
        .unwrap_or_default();
    let client = match shared.peers.get(&chain, &shared.config.trust_domain) {
        Ok(client) => client,
        // The verifier already refused these; defence in depth.
        Err(_) => {
            failed("identity");
            quic.close(VarInt::from_u32(CLOSE_NO_LONGER_ALLOWED), b"no identity");
            return;
        }
    };
    // The handshake was verified with `installed`. A reload since then (a
    // new CRL, a new trust bundle) has already re-checked the open
    // connections, so this one must not slip between the two: check it
    // under the current material, as the TCP listener does. (Without this,
    // a client revoked a moment ago could still connect while the accept
    // loop was yet to install the new config.)
    let current = shared.current().tls.clone();
    if !Arc::ptr_eq(&current, &installed)
        && let Some((leaf, rest)) = client.chain.split_first()
        && let Err(e) = current.verifier.recheck(leaf, rest)
    {
        failed("recheck_invalid");
        tracing::info!(%peer, error = %e, "QUIC connection refused: certificate no longer valid after a reload");
        quic.close(
            VarInt::from_u32(CLOSE_NO_LONGER_ALLOWED),
            b"certificate no longer valid",
        );
        return;
    }
    metrics.quic_handshakes.with_label_values(&["ok", ""]).inc();
    if !crate::server::claim_identity(&shared, &mut guard, client.identity.principal(), peer) {
        quic.close(
            VarInt::from_u32(CLOSE_EXCESSIVE_LOAD),
            b"per-identity connection limit",
        );
        return;
    }
    let conn = Arc::new(ConnInfo {
        peer,
        identity: client.identity,
        chain: client.chain,
        tls_version: "TLSv1.3",
        protocol: "h3",
    });
    serve_h3(&shared, conn, quic, changes, current).await;
    drop(guard);
}

/// Serves HTTP/3 on one verified connection until it ends, re-checking it
/// on every reload and closing it when its certificate expires.
async fn serve_h3(
    shared: &Arc<Shared>,
    conn: Arc<ConnInfo>,
    quic: quinn::Connection,
    mut changes: tokio::sync::watch::Receiver<u64>,
    mut tls_seen: Arc<TlsMaterial>,
) {
    let limits = &shared.config.limits;
    let built = h3::server::builder()
        .max_field_section_size(u64::try_from(limits.max_header_bytes).unwrap_or(u64::MAX))
        .build::<_, Bytes>(h3_quinn::Connection::new(quic.clone()))
        .await;
    let mut h3conn = match built {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(peer = %conn.peer, error = %e, "HTTP/3 connection setup failed");
            return;
        }
    };
    let streams = Arc::new(OpenStreams::default());
    let mut tasks = tokio::task::JoinSet::new();
    let mut shutdown = shared.shutdown.subscribe();
    let expiry = tokio::time::sleep(until_expiry(&conn));
    tokio::pin!(expiry);
    let mut draining = false;
    let mut killed: Option<String> = None;
    loop {
        if draining && tasks.is_empty() {
            // Drained: close now rather than leave the client to its idle
            // timeout (and the gateway's drain to its deadline).
            quic.close(VarInt::from_u32(H3_NO_ERROR), b"gateway shutting down");
            break;
        }
        tokio::select! {
            accepted = h3conn.accept() => match accepted {
                Ok(Some(resolver)) => {
                    tasks.spawn(request(shared.clone(), conn.clone(), streams.clone(), resolver));
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(peer = %conn.peer, error = %e, "HTTP/3 connection ended");
                    break;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            changed = changes.changed() => {
                if changed.is_err() {
                    break;
                }
                if let Some(reason) = recheck_chain(shared, &conn, &mut tls_seen) {
                    close_for(shared, &conn, "", "revoked_or_untrusted", &reason);
                    killed = Some(reason);
                    break;
                }
                streams.recheck(shared, &conn);
            }
            () = &mut expiry => {
                let reason = "client certificate expired".to_string();
                close_for(shared, &conn, "", "expired", &reason);
                killed = Some(reason);
                break;
            }
            changed = shutdown.changed(), if !draining => {
                draining = true;
                if changed.is_ok() {
                    // GOAWAY: no new requests; `accept` ends once the
                    // requests in flight are done.
                    if let Err(e) = h3conn.shutdown(0).await {
                        tracing::debug!(peer = %conn.peer, error = %e, "HTTP/3 GOAWAY failed");
                    }
                }
            }
        }
    }
    match killed {
        Some(reason) => {
            // Close first, then stop the tasks: quinn *finishes* a send
            // stream that is dropped, so aborting a task mid-body on a live
            // connection would hand the client a clean end of a truncated
            // response. After `close` no stream sends anything more.
            let mut text = reason.clone().into_bytes();
            text.truncate(200);
            quic.close(VarInt::from_u32(CLOSE_NO_LONGER_ALLOWED), &text);
            streams.kill_all(&reason);
            tasks.abort_all();
        }
        // Requests in flight finish (bounded by the upstream timeouts and,
        // at shutdown, by the drain deadline) before the connection counts
        // as closed.
        None => while tasks.join_next().await.is_some() {},
    }
}

/// One HTTP/3 request: read the head, hand it to the shared HTTP handler,
/// write the response back.
async fn request(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    streams: Arc<OpenStreams>,
    resolver: RequestResolver<h3_quinn::Connection, Bytes>,
) {
    let metrics = shared.metrics.clone();
    let count = |result: &str| metrics.quic_streams.with_label_values(&[result]).inc();
    // Bounded like HTTP/1.1's header read: a client that opens streams and
    // never sends their headers would otherwise hold them (and their
    // slots in `max_concurrent_streams`) for as long as it keeps the
    // connection alive.
    let limit = Duration::from_secs(shared.config.limits.header_read_timeout_secs);
    let resolved = match tokio::time::timeout(limit, resolver.resolve_request()).await {
        Ok(r) => r,
        Err(_) => {
            // Dropping the resolver ends the stream without a response (the
            // resolver does not give access to the stream to reset it;
            // quinn finishes a dropped send stream and stops the receive
            // side), which is all a client that sent no headers can expect.
            count("header_timeout");
            return;
        }
    };
    let (req, stream) = match resolved {
        Ok(r) => r,
        Err(e) => {
            // Malformed head (h3 has already reset the stream or closed the
            // connection, as RFC 9114 requires).
            tracing::debug!(peer = %conn.peer, error = %e, "bad HTTP/3 request");
            count("bad_request");
            return;
        }
    };
    let (mut send, recv) = stream.split();
    // h3 bounds only the bytes of the header section; the count is bounded
    // here, as hyper bounds it on HTTP/1.1 (`limits.max_headers`), so that
    // HTTP/3 cannot hand an upstream a request the TCP listener refuses.
    if req.headers().len() > shared.config.limits.max_headers {
        let resp = crate::proxy::text(
            http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            serde_json::json!({
                "error": "too many header fields",
                "detail": format!("more than limits.max_headers = {}", shared.config.limits.max_headers),
            }),
        );
        send_response(&mut send, resp).await;
        count("too_many_headers");
        return;
    }
    let req = req.map(|()| RecvBody::new(recv));
    let resp = match crate::proxy::handle(shared.clone(), conn, streams, req).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    count(send_response(&mut send, resp).await);
}

/// Writes `resp` on an HTTP/3 stream; returns the stream metric's label.
async fn send_response(
    send: &mut RequestStream<h3_quinn::SendStream<Bytes>, Bytes>,
    resp: http::Response<crate::proxy::Body>,
) -> &'static str {
    let (mut parts, mut body) = resp.into_parts();
    for name in [
        http::header::CONNECTION,
        http::header::TRANSFER_ENCODING,
        http::header::UPGRADE,
        http::header::HeaderName::from_static("keep-alive"),
        http::header::HeaderName::from_static("proxy-connection"),
    ] {
        parts.headers.remove(name);
    }
    parts.version = http::Version::HTTP_3;
    if send
        .send_response(http::Response::from_parts(parts, ()))
        .await
        .is_err()
    {
        return "reset";
    }
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                // A re-check killed the stream, or the upstream broke: reset
                // it, so the client cannot take a truncated body for a
                // whole one.
                send.stop_stream(Code::H3_REQUEST_CANCELLED);
                return if e.is::<Killed>() { "killed" } else { "reset" };
            }
        };
        let sent = match frame.into_data() {
            Ok(data) => send.send_data(data).await,
            Err(frame) => match frame.into_trailers() {
                Ok(trailers) => send.send_trailers(trailers).await,
                Err(_) => Ok(()),
            },
        };
        if sent.is_err() {
            return "reset";
        }
    }
    if send.finish().await.is_err() {
        return "reset";
    }
    "ok"
}

/// An HTTP/3 request body as a `hyper::body::Body`, so that the shared
/// handler streams it upstream like an HTTP/1.1 or HTTP/2 body (never
/// buffered whole).
pub struct RecvBody {
    recv: RequestStream<h3_quinn::RecvStream, Bytes>,
    data_done: bool,
    done: bool,
}

impl RecvBody {
    fn new(recv: RequestStream<h3_quinn::RecvStream, Bytes>) -> RecvBody {
        RecvBody {
            recv,
            data_done: false,
            done: false,
        }
    }
}

impl Body for RecvBody {
    type Data = Bytes;
    type Error = h3::error::StreamError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if !this.data_done {
            match ready!(this.recv.poll_recv_data(cx)) {
                Ok(Some(mut buf)) => {
                    let data = buf.copy_to_bytes(buf.remaining());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(None) => this.data_done = true,
                Err(e) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
        let trailers = ready!(this.recv.poll_recv_trailers(cx));
        this.done = true;
        match trailers {
            Ok(Some(t)) => Poll::Ready(Some(Ok(Frame::trailers(t)))),
            Ok(None) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

impl std::fmt::Debug for RecvBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBody")
            .field("data_done", &self.data_done)
            .field("done", &self.done)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_handshakes_get_the_tcp_reasons() {
        let r = |alert: u64, reason| alert_reason(0x100 + alert, reason);
        assert_eq!(r(116, "peer sent no certificates"), "no_certificate");
        assert_eq!(r(45, "invalid peer certificate: Expired"), "expired");
        assert_eq!(
            r(45, "invalid peer certificate: NotValidYet"),
            "not_yet_valid"
        );
        assert_eq!(r(44, "invalid peer certificate: Revoked"), "revoked");
        assert_eq!(
            r(48, "invalid peer certificate: UnknownIssuer"),
            "unknown_issuer"
        );
        assert_eq!(
            r(43, "invalid peer certificate: InvalidPurpose"),
            "wrong_purpose"
        );
        assert_eq!(r(46, "invalid peer certificate: Other(…)"), "identity");
        assert_eq!(
            r(42, "invalid peer certificate: BadEncoding"),
            "bad_certificate"
        );
        assert_eq!(r(120, "no ALPN"), "alpn");
        assert_eq!(alert_reason(0x0a, "protocol violation"), "transport");
        assert_eq!(
            handshake_failure_reason(&quinn::ConnectionError::TimedOut),
            "timeout"
        );
    }
}
