//! `ward connect`: a local TCP listener whose every connection becomes an
//! mTLS connection to the gateway (SNI = the TCP route's host), so tools
//! without mTLS (psql, ssh, a browser) can reach services behind it.
//!
//! The certificate and trust bundle are read again for every connection,
//! so a renewal by `ward agent run` is picked up without a restart, and a
//! gateway restart or network change only fails the connections made
//! while it lasts. Both legs get TCP keepalives so idle tunnels survive
//! NAT timeouts and dead peers are noticed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::net::{TcpListener, TcpStream};

use crate::{Error, sink};

/// Time allowed to reach the gateway and finish the handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle time before the first keepalive probe, and between probes.
const KEEPALIVE: Duration = Duration::from_secs(30);

/// Where to forward to and as whom.
#[derive(Debug, Clone)]
pub struct Forward {
    /// Gateway `host:port`.
    pub gateway: String,
    /// TLS server name: the TCP route's SNI host (also checked in the
    /// gateway's certificate).
    pub sni: String,
    /// Identity directory whose current certificate is presented.
    pub dir: PathBuf,
}

/// Binds the local listener; only loopback addresses are accepted, since
/// anyone who can reach the port can use the identity.
pub async fn bind(listen: SocketAddr) -> Result<TcpListener, Error> {
    if !listen.ip().is_loopback() {
        return Err(Error::Net {
            action: "refusing to listen on",
            addr: listen.to_string(),
            source: std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "not a loopback address: anyone reaching it would use this identity",
            ),
        });
    }
    TcpListener::bind(listen)
        .await
        .map_err(|source| Error::Net {
            action: "listening on",
            addr: listen.to_string(),
            source,
        })
}

/// Accepts local connections forever, one tunnel task each.
pub async fn serve(listener: TcpListener, fwd: Forward) -> Result<(), Error> {
    crate::tls::install_provider();
    ServerName::try_from(fwd.sni.clone())
        .map_err(|e| Error::Tls(format!("--sni {}: {e}", fwd.sni)))?;
    let fwd = Arc::new(fwd);
    loop {
        let (local, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let fwd = Arc::clone(&fwd);
        tokio::spawn(async move {
            match tunnel(local, &fwd).await {
                Ok((up, down)) => {
                    tracing::info!(%peer, sni = %fwd.sni, bytes_up = up, bytes_down = down, "tunnel closed");
                }
                Err(e) => tracing::error!(%peer, sni = %fwd.sni, error = %e, "tunnel failed"),
            }
        });
    }
}

fn keepalive(s: &TcpStream) {
    let ka = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE)
        .with_interval(KEEPALIVE);
    if let Err(e) = socket2::SockRef::from(s).set_tcp_keepalive(&ka) {
        tracing::debug!(error = %e, "cannot enable TCP keepalive");
    }
}

/// One local connection: connect, handshake with the files as they are
/// now, then copy both ways until both sides are done.
async fn tunnel(mut local: TcpStream, fwd: &Forward) -> Result<(u64, u64), Error> {
    let pair = sink::read_current(&fwd.dir)?;
    let bundle = sink::read_bundle(&fwd.dir)?;
    let cfg = crate::tls::gateway_client(&bundle, &pair)?;
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&fwd.gateway))
        .await
        .map_err(|_| Error::Net {
            action: "connecting to",
            addr: fwd.gateway.clone(),
            source: std::io::ErrorKind::TimedOut.into(),
        })?
        .map_err(|source| Error::Net {
            action: "connecting to",
            addr: fwd.gateway.clone(),
            source,
        })?;
    let _ = tcp.set_nodelay(true);
    let _ = local.set_nodelay(true);
    keepalive(&tcp);
    keepalive(&local);
    let name = ServerName::try_from(fwd.sni.clone())
        .map_err(|e| Error::Tls(format!("--sni {}: {e}", fwd.sni)))?;
    let mut tls = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio_rustls::TlsConnector::from(cfg).connect(name, tcp),
    )
    .await
    .map_err(|_| Error::Tls(format!("handshake with {} timed out", fwd.gateway)))?
    .map_err(|e| Error::Tls(format!("handshake with {}: {e}", fwd.gateway)))?;
    tracing::debug!(serial = %pair.info.serial, sni = %fwd.sni, "tunnel open");
    tokio::io::copy_bidirectional(&mut local, &mut tls)
        .await
        .map_err(|source| Error::Net {
            action: "forwarding through",
            addr: fwd.gateway.clone(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn listens_only_on_loopback() {
        let e = bind("0.0.0.0:0".parse().unwrap()).await.unwrap_err();
        assert!(e.to_string().contains("loopback"), "{e}");
        let l = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        assert!(l.local_addr().unwrap().ip().is_loopback());
    }

    #[tokio::test]
    async fn both_legs_get_keepalive_probes() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let s = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        keepalive(&s);
        let r = socket2::SockRef::from(&s);
        assert!(r.keepalive().unwrap());
        assert_eq!(r.tcp_keepalive_time().unwrap(), KEEPALIVE);
        assert_eq!(r.tcp_keepalive_interval().unwrap(), KEEPALIVE);
    }

    #[tokio::test]
    async fn a_missing_identity_fails_the_tunnel_not_the_listener() {
        let d = tempfile::tempdir().unwrap();
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let fwd = Forward {
            gateway: "127.0.0.1:1".into(),
            sni: "db.test".into(),
            dir: d.path().to_path_buf(),
        };
        let server = tokio::spawn(serve(l, fwd));
        for _ in 0..2 {
            let mut c = TcpStream::connect(addr).await.unwrap();
            let mut buf = [0u8; 1];
            let n = tokio::time::timeout(
                Duration::from_secs(5),
                tokio::io::AsyncReadExt::read(&mut c, &mut buf),
            )
            .await
            .unwrap()
            .unwrap_or(0);
            assert_eq!(n, 0, "closed without data");
        }
        assert!(!server.is_finished());
        server.abort();
    }
}
