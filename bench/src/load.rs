//! A small mTLS HTTP/1.1 load generator: the fallback when `oha` is not
//! installed (CI's `--quick`), and the client that holds idle connections
//! for the memory figure. It prints the same JSON fields the harness reads
//! from `oha --output-format json`, so the rest of the pipeline is shared.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;

pub type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

/// One mTLS HTTP/1.1 connection, driven in the background.
pub async fn connect(tls: &tokio_rustls::TlsConnector, addr: SocketAddr) -> anyhow::Result<Sender> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from("localhost")?;
    let stream = tls.connect(name, tcp).await?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Sends one GET and reads the whole body; returns the status.
pub async fn get(sender: &mut Sender, host: &str, path: &str) -> anyhow::Result<u16> {
    sender.ready().await?;
    let req = http::Request::get(path)
        .header(http::header::HOST, host)
        .body(Empty::<Bytes>::new())?;
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    resp.into_body().collect().await?;
    Ok(status)
}

/// What one load run measured.
struct Totals {
    ok: u64,
    failed: u64,
    latencies_us: Vec<u64>,
}

/// Runs `connections` workers for `duration`; with `new_conn`, each request
/// gets a fresh connection with a full mTLS handshake (unlike
/// `oha --disable-keepalive`, which may resume TLS sessions). Prints oha-shaped JSON on stdout.
pub async fn run(
    dir: &Path,
    addr: SocketAddr,
    host: &str,
    path: &str,
    connections: usize,
    duration: Duration,
    new_conn: bool,
) -> anyhow::Result<()> {
    let tls = tokio_rustls::TlsConnector::from(crate::tls::client(dir, !new_conn)?);
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for _ in 0..connections.max(1) {
        let tls = tls.clone();
        let host = host.to_string();
        let path = path.to_string();
        tasks.push(tokio::spawn(async move {
            let mut t = Totals {
                ok: 0,
                failed: 0,
                latencies_us: Vec::new(),
            };
            let mut conn: Option<Sender> = None;
            while Instant::now() < deadline {
                let t0 = Instant::now();
                let mut sender = match conn.take() {
                    Some(s) => s,
                    None => match connect(&tls, addr).await {
                        Ok(s) => s,
                        Err(_) => {
                            t.failed += 1;
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    },
                };
                match tokio::time::timeout(Duration::from_secs(10), get(&mut sender, &host, &path))
                    .await
                {
                    Ok(Ok(200)) => {
                        t.ok += 1;
                        t.latencies_us
                            .push(u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX));
                        if !new_conn {
                            conn = Some(sender);
                        }
                    }
                    _ => t.failed += 1,
                }
            }
            t
        }));
    }
    let mut all = Totals {
        ok: 0,
        failed: 0,
        latencies_us: Vec::new(),
    };
    for task in tasks {
        let t = task.await.context("load worker panicked")?;
        all.ok += t.ok;
        all.failed += t.failed;
        all.latencies_us.extend(t.latencies_us);
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.latencies_us.sort_unstable();
    let pct = |p: f64| -> f64 {
        if all.latencies_us.is_empty() {
            return 0.0;
        }
        let last = all.latencies_us.len() - 1;
        // Nearest rank; the index is within bounds by construction.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let i = ((p * last as f64).round() as usize).min(last);
        all.latencies_us.get(i).copied().unwrap_or(0) as f64 / 1000.0
    };
    let total = all.ok + all.failed;
    let out = serde_json::json!({
        "generator": "ward-bench load",
        "summary": {
            "successRate": if total == 0 { 0.0 } else { all.ok as f64 / total as f64 },
            "requestsPerSec": total as f64 / elapsed,
            "total": elapsed,
        },
        "metrics": {"latency_ms": {"p50": pct(0.50), "p99": pct(0.99)}},
        "statusCodeDistribution": {"200": all.ok},
    });
    println!("{out}");
    Ok(())
}

/// Reads an oha (or `load`) JSON result and prints
/// `<successful req/s>\t<p50 ms>\t<p99 ms>\t<success rate>`.
pub fn extract(path: &Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let f = |p: &str| {
        v.pointer(p)
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(0.0)
    };
    let rate = f("/summary/successRate");
    // Only 200s count as work done: a proxy that answers errors fast must
    // not look fast.
    let total = f("/summary/requestsPerSec") * f("/summary/total");
    let ok = v
        .pointer("/statusCodeDistribution/200")
        .and_then(serde_json::Value::as_f64)
        .unwrap_or(0.0);
    let ok_rps = if total > 0.0 {
        ok / f("/summary/total")
    } else {
        0.0
    };
    println!(
        "{ok_rps:.1}\t{:.3}\t{:.3}\t{rate:.4}",
        f("/metrics/latency_ms/p50"),
        f("/metrics/latency_ms/p99")
    );
    Ok(())
}
