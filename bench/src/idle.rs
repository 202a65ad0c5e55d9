//! Memory per idle connection: open N mTLS connections, make one request
//! on each (so the server has set up its whole per-connection HTTP state),
//! leave them idle, and read the server's RSS before and after from
//! `/proc/<pid>/status`. For a multi-process server (nginx: master +
//! workers) the RSS of every given pid is added up.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;

fn rss_kib(pids: &[u32]) -> anyhow::Result<u64> {
    let mut total = 0;
    for pid in pids {
        let path = format!("/proc/{pid}/status");
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        let kib = text
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .with_context(|| format!("{path} has no VmRSS line"))?;
        total += kib;
    }
    Ok(total)
}

async fn open_many(
    dir: &Path,
    addr: SocketAddr,
    n: usize,
) -> anyhow::Result<Vec<crate::load::Sender>> {
    let tls = tokio_rustls::TlsConnector::from(crate::tls::client(dir, true)?);
    let mut held = Vec::with_capacity(n);
    // Batches of 32 handshakes at a time: fast, without a SYN flood.
    let mut left = n;
    while left > 0 {
        let batch = left.min(32);
        let mut tasks = Vec::new();
        for _ in 0..batch {
            let tls = tls.clone();
            tasks.push(tokio::spawn(async move {
                let mut s = crate::load::connect(&tls, addr).await?;
                let status = crate::load::get(&mut s, "localhost", "/").await?;
                anyhow::ensure!(status == 200, "idle probe answered {status}");
                Ok::<_, anyhow::Error>(s)
            }));
        }
        for t in tasks {
            held.push(t.await.context("connection task panicked")??);
        }
        left -= batch;
    }
    Ok(held)
}

/// Prints `<bytes per connection>\t<rss before KiB>\t<rss after KiB>`.
pub async fn run(dir: &Path, addr: SocketAddr, n: usize, pids: &[u32]) -> anyhow::Result<()> {
    anyhow::ensure!(
        n > 0 && !pids.is_empty(),
        "need --n > 0 and at least one pid"
    );
    // Warm up (allocator arenas, TLS session state, upstream pool), let go.
    drop(open_many(dir, addr, 32).await?);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = rss_kib(pids)?;
    let held = open_many(dir, addr, n).await?;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let after = rss_kib(pids)?;
    drop(held);
    #[allow(clippy::cast_precision_loss)]
    let per = (after.saturating_sub(before) * 1024) as f64 / n as f64;
    println!("{per:.0}\t{before}\t{after}");
    Ok(())
}
