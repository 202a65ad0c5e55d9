//! The one upstream every target talks to: a plain HTTP listener (behind
//! ward and nginx) and an mTLS listener (the "direct" floor, no proxy hop),
//! both in the same process and serving the same bodies:
//! `/1k` → 1 KiB, `/1m` → 1 MiB, anything else → `ok\n`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

struct Bodies {
    small: Bytes,
    kib: Bytes,
    mib: Bytes,
}

fn respond(bodies: &Bodies, req: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let body = match req.uri().path() {
        "/1k" => bodies.kib.clone(),
        "/1m" => bodies.mib.clone(),
        _ => bodies.small.clone(),
    };
    let mut resp = Response::new(Full::new(body));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/octet-stream"),
    );
    resp
}

async fn serve_conn<I>(io: I, bodies: Arc<Bodies>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| {
        let r = respond(&bodies, &req);
        async move { Ok::<_, std::convert::Infallible>(r) }
    });
    let _ = auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(io), svc)
        .await;
}

/// Serves until killed. Prints one line `ready plain=<addr> tls=<addr>`.
pub async fn run(dir: &Path, plain: SocketAddr, tls: SocketAddr) -> anyhow::Result<()> {
    let bodies = Arc::new(Bodies {
        small: Bytes::from_static(b"ok\n"),
        kib: Bytes::from(vec![b'k'; 1024]),
        mib: Bytes::from(vec![b'm'; 1024 * 1024]),
    });
    let acceptor = tokio_rustls::TlsAcceptor::from(crate::tls::server(dir)?);
    let plain_l = tokio::net::TcpListener::bind(plain).await?;
    let tls_l = tokio::net::TcpListener::bind(tls).await?;
    println!(
        "ready plain={} tls={}",
        plain_l.local_addr()?,
        tls_l.local_addr()?
    );
    let b = Arc::clone(&bodies);
    let plain_task = tokio::spawn(async move {
        loop {
            let Ok((s, _)) = plain_l.accept().await else {
                continue;
            };
            let _ = s.set_nodelay(true);
            tokio::spawn(serve_conn(s, Arc::clone(&b)));
        }
    });
    let tls_task = tokio::spawn(async move {
        loop {
            let Ok((s, _)) = tls_l.accept().await else {
                continue;
            };
            let _ = s.set_nodelay(true);
            let acceptor = acceptor.clone();
            let b = Arc::clone(&bodies);
            tokio::spawn(async move {
                if let Ok(t) = acceptor.accept(s).await {
                    serve_conn(t, b).await;
                }
            });
        }
    });
    let _ = tokio::join!(plain_task, tls_task);
    Ok(())
}
