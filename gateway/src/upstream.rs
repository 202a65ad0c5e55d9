//! Connections to upstreams: plain TCP, or TLS verified against the trust
//! bundle (or `upstream_ca`) presenting the gateway's own certificate when
//! the upstream asks for one (mTLS), with ALPN so an HTTPS upstream may
//! choose HTTP/2.
//!
//! The TLS client config sits behind a lock and is replaced on reload, so a
//! renewed gateway certificate is used for new upstream connections without
//! a restart.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::recheck::BoxError;

/// The current upstream TLS client config, shared with the reloader.
pub type SharedClientConfig = Arc<RwLock<Arc<ClientConfig>>>;

/// A `tower_service::Service<Uri>` for hyper-util's pooled client.
/// It always dials one route's upstream, whatever URI it is asked for.
#[derive(Debug, Clone)]
pub struct Connector {
    http: HttpConnector,
    tls: SharedClientConfig,
    scheme: http::uri::Scheme,
    upstream: http::uri::Authority,
}

impl Connector {
    /// A connector to `scheme://upstream`; `http` must have
    /// `enforce_http(false)`.
    pub fn new(
        http: HttpConnector,
        tls: SharedClientConfig,
        scheme: http::uri::Scheme,
        upstream: http::uri::Authority,
    ) -> Connector {
        Connector {
            http,
            tls,
            scheme,
            upstream,
        }
    }
}

/// An upstream connection, with or without TLS.
#[derive(Debug)]
pub enum UpstreamIo {
    /// Cleartext.
    Plain(TokioIo<TcpStream>),
    /// TLS (boxed: the TLS state is large).
    Tls(Box<TokioIo<TlsStream<TcpStream>>>),
}

impl tower_service::Service<Uri> for Connector {
    type Response = UpstreamIo;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<UpstreamIo, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, _requested: Uri) -> Self::Future {
        let https = self.scheme == http::uri::Scheme::HTTPS;
        let target = Uri::builder()
            .scheme(http::uri::Scheme::HTTP)
            .authority(self.upstream.clone())
            .path_and_query("/")
            .build();
        let host = self.upstream.host().trim_matches(['[', ']']).to_string();
        let target = match target {
            Ok(t) => t,
            Err(e) => return Box::pin(async move { Err(Box::new(e) as BoxError) }),
        };
        let connecting = self.http.call(target);
        let config = match self.tls.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        Box::pin(async move {
            let tcp = connecting.await?;
            if !https {
                return Ok(UpstreamIo::Plain(tcp));
            }
            let name = ServerName::try_from(host)?;
            let tls = TlsConnector::from(config)
                .connect(name, tcp.into_inner())
                .await?;
            Ok(UpstreamIo::Tls(Box::new(TokioIo::new(tls))))
        })
    }
}

impl Connection for UpstreamIo {
    fn connected(&self) -> Connected {
        match self {
            UpstreamIo::Plain(s) => s.connected(),
            UpstreamIo::Tls(s) => {
                let (tcp, session) = s.inner().get_ref();
                let connected = tcp.connected();
                if session.alpn_protocol() == Some(b"h2") {
                    connected.negotiated_h2()
                } else {
                    connected
                }
            }
        }
    }
}

impl Read for UpstreamIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_read(cx, buf),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl Write for UpstreamIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_write(cx, buf),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_flush(cx),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_shutdown(cx),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
