//! The demo upstream: a tiny HTTP/1.1 server on loopback that answers every
//! request with the identity the gateway vouched for, so that the first
//! `curl` shows what a service behind ward sees.
//!
//! Hand-written (one request per connection, `Connection: close`) because it
//! only ever talks to the gateway, which pools and retries on its own.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Largest request head accepted; the gateway's own limit is 64 KiB.
const MAX_HEAD: usize = 64 * 1024;

/// Serves forever on `listener`.
pub async fn serve(listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(30), answer(stream)).await;
        });
    }
}

async fn answer(stream: TcpStream) -> std::io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut request_line = String::new();
    r.read_line(&mut request_line).await?;
    let mut identity = None;
    let mut decision = None;
    let mut length = 0u64;
    let mut seen = request_line.len();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await? == 0 {
            break;
        }
        seen += line.len();
        if seen > MAX_HEAD {
            return Ok(());
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            let value = value.trim().to_string();
            match name.trim().to_ascii_lowercase().as_str() {
                "x-ward-identity" => identity = Some(value),
                "x-ward-decision-id" => decision = Some(value),
                "content-length" => length = value.parse().unwrap_or(0),
                _ => {}
            }
        }
    }
    // Drain a request body so the gateway sees a clean exchange.
    tokio::io::copy(&mut (&mut r).take(length), &mut tokio::io::sink()).await?;
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or("?"), parts.next().unwrap_or("?"));
    let body = format!(
        "hello from the ward demo upstream\nrequest: {method} {path}\nX-Ward-Identity: {}\nX-Ward-Decision-Id: {}\n",
        identity.as_deref().unwrap_or("(none)"),
        decision.as_deref().unwrap_or("(none)"),
    );
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    w.write_all(head.as_bytes()).await?;
    if method != "HEAD" {
        w.write_all(body.as_bytes()).await?;
    }
    w.shutdown().await
}
