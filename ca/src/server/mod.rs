//! The CA's HTTPS API (hyper 1 + tokio-rustls, JSON).
//!
//! Routes: `GET /v1/bundle`, `POST /v1/enroll`, `POST /v1/renew` (mTLS),
//! `POST /v1/revoke` (mTLS), `GET /v1/crl` (DER), `GET /metrics`; the
//! transparency log's `GET /v1/log/sth`, `/v1/log/entries?start=&end=`,
//! `/v1/log/proof/inclusion?serial=` (or `leaf_hash=&tree_size=`),
//! `/v1/log/proof/consistency?first=&second=` (public, like any CT log) and
//! `GET /v1/certs?identity=&serial=&since=&until=` (mTLS + `ca:ReadLog`).
//! Errors are `{"error": "...", "code": "..."}` with the status from
//! [`crate::Error::status`].
//!
//! Client certificates are *requested*, never required at the TLS layer,
//! and any certificate is accepted there (its handshake signature is still
//! checked); the handlers then authenticate it strictly: it must be, byte
//! for byte, a certificate this CA issued, unexpired and unrevoked. That
//! way enrol and bundle work without a certificate, and an expired, revoked
//! or foreign certificate gets a JSON 401/403 saying so instead of an
//! opaque TLS alert.

pub mod routes;
mod verifier;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::{Ca, Error};

/// Installs aws-lc-rs as the process's rustls provider (idempotent).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Lifetime of the API's own server certificate; it is re-issued after
/// two thirds of it, so a long-running CA never serves an expired one.
const SERVER_CERT_TTL: Duration = Duration::from_secs(24 * 3600);

/// The API's server certificate, swapped in place when re-issued.
#[derive(Debug)]
struct RotatingCert {
    current: RwLock<(Arc<CertifiedKey>, Instant)>,
}

impl RotatingCert {
    fn issue(ca: &Ca) -> Result<Arc<CertifiedKey>, Error> {
        let (chain, key) = ca.server_identity(SERVER_CERT_TTL)?;
        let chain: Vec<CertificateDer<'static>> =
            chain.into_iter().map(CertificateDer::from).collect();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key));
        let signer = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key)
            .map_err(|e| Error::Cert(format!("server key: {e}")))?;
        Ok(Arc::new(CertifiedKey::new(chain, signer)))
    }

    fn due(&self) -> bool {
        self.current
            .read()
            .map(|c| c.1.elapsed() >= SERVER_CERT_TTL * 2 / 3)
            .unwrap_or(true)
    }

    fn replace(&self, key: Arc<CertifiedKey>) {
        if let Ok(mut c) = self.current.write() {
            *c = (key, Instant::now());
        }
    }
}

impl ResolvesServerCert for RotatingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| Arc::clone(&c.0))
    }
}

fn build_tls(ca: &Ca) -> Result<(Arc<rustls::ServerConfig>, Arc<RotatingCert>), Error> {
    install_crypto_provider();
    let certs = Arc::new(RotatingCert {
        current: RwLock::new((RotatingCert::issue(ca)?, Instant::now())),
    });
    let verifier = verifier::AnyClientCert::new(ca.root_der())?;
    let mut cfg = rustls::ServerConfig::builder()
        .with_client_cert_verifier(Arc::new(verifier))
        .with_cert_resolver(certs.clone());
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((Arc::new(cfg), certs))
}

/// Builds the TLS config: the CA's own server certificate (issued now from
/// its intermediate, re-issued by [`serve`] before it expires), ALPN
/// http/1.1, client certificates optional.
pub fn tls_config(ca: &Ca) -> Result<Arc<rustls::ServerConfig>, Error> {
    Ok(build_tls(ca)?.0)
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    ca: Arc<Ca>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let (tls, certs) = build_tls(&ca)?;
    let tls = TlsAcceptor::from(tls);
    let rotate_ca = Arc::clone(&ca);
    let rotation = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(300));
        loop {
            tick.tick().await;
            if !certs.due() {
                continue;
            }
            let ca = Arc::clone(&rotate_ca);
            match tokio::task::spawn_blocking(move || RotatingCert::issue(&ca)).await {
                Ok(Ok(key)) => {
                    certs.replace(key);
                    tracing::info!("re-issued the API server certificate");
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "re-issuing the API server certificate failed; retrying")
                }
                Err(e) => tracing::error!(error = %e, "server certificate task failed"),
            }
        }
    });
    let result = accept_loop(ca, tls, listener, shutdown).await;
    rotation.abort();
    result
}

async fn accept_loop(
    ca: Arc<Ca>,
    tls: TlsAcceptor,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let max_body = ca.config().server.max_request_bytes;
    // Sign the first CRL now so /v1/crl never waits on the HSM cold.
    let first = Arc::clone(&ca);
    let _ = tokio::task::spawn_blocking(move || first.refresh_crl()).await;
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
        };
        let tls = tls.clone();
        let ca = Arc::clone(&ca);
        tokio::spawn(async move {
            handle_connection(ca, tls, tcp, peer, max_body).await;
        });
    }
}

async fn handle_connection(
    ca: Arc<Ca>,
    tls: TlsAcceptor,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    max_body: usize,
) {
    let stream =
        match tokio::time::timeout(std::time::Duration::from_secs(10), tls.accept(tcp)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => return,
        };
    let client_cert: Option<Arc<Vec<u8>>> = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| Arc::new(c.to_vec()));
    let service = service_fn(move |req| {
        let ca = Arc::clone(&ca);
        let client_cert = client_cert.clone();
        async move {
            Ok::<_, std::convert::Infallible>(
                routes::handle(ca, client_cert, peer.ip(), req, max_body).await,
            )
        }
    });
    // A client that trickles its headers is cut off (slowloris).
    if let Err(e) = http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .serve_connection(TokioIo::new(stream), service)
        .await
    {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
