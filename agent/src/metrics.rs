//! `ward_agent_*` metrics, served on an optional loopback listener.
//!
//! Seconds to expiry is computed when scraped (from each identity's
//! notAfter), so it is exact without a timer updating it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use prometheus::{Encoder, GaugeVec, IntCounterVec, Opts, Registry, TextEncoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::Error;

/// The agent's metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    expiry: GaugeVec,
    renewals: IntCounterVec,
    not_after: Arc<Mutex<BTreeMap<String, SystemTime>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// A fresh registry with the agent's metrics.
    pub fn new() -> Result<Self, Error> {
        let registry = Registry::new();
        let expiry = GaugeVec::new(
            Opts::new(
                "ward_agent_seconds_to_expiry",
                "Seconds until the identity's current certificate expires (negative once expired).",
            ),
            &["identity"],
        )
        .map_err(|e| Error::Metrics(e.to_string()))?;
        let renewals = IntCounterVec::new(
            Opts::new(
                "ward_agent_renewals_total",
                "Renewal attempts by identity and result (ok, error).",
            ),
            &["identity", "result"],
        )
        .map_err(|e| Error::Metrics(e.to_string()))?;
        registry
            .register(Box::new(expiry.clone()))
            .and_then(|()| registry.register(Box::new(renewals.clone())))
            .map_err(|e| Error::Metrics(e.to_string()))?;
        Ok(Self {
            registry,
            expiry,
            renewals,
            not_after: Arc::new(Mutex::new(BTreeMap::new())),
        })
    }

    /// The identity's current certificate expires at `t`.
    pub fn set_not_after(&self, identity: &str, t: SystemTime) {
        if let Ok(mut m) = self.not_after.lock() {
            m.insert(identity.to_string(), t);
        }
    }

    /// Counts one renewal attempt; `ok` is its outcome.
    pub fn renewal(&self, identity: &str, ok: bool) {
        self.renewals
            .with_label_values(&[identity, if ok { "ok" } else { "error" }])
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let now = SystemTime::now();
        if let Ok(m) = self.not_after.lock() {
            for (id, t) in m.iter() {
                self.expiry
                    .with_label_values(&[id.as_str()])
                    .set(crate::cert::signed_secs(*t, now).floor());
            }
        }
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// Binds the metrics listener (loopback only; checked by the config).
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, Error> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Net {
            action: "listening for metrics on",
            addr: addr.to_string(),
            source,
        })
}

/// Answers `GET /metrics` (HTTP/1.0 style, one request per connection).
pub async fn serve(listener: tokio::net::TcpListener, metrics: Metrics) {
    loop {
        let Ok((mut s, _)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            let mut n = 0;
            let read = async {
                while n < buf.len() {
                    match s.read(&mut buf[n..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(k) => n += k,
                    }
                    if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            };
            if tokio::time::timeout(std::time::Duration::from_secs(5), read)
                .await
                .is_err()
            {
                return;
            }
            let head = String::from_utf8_lossy(&buf[..n]);
            let (status, body) = if head.starts_with("GET /metrics ") {
                ("200 OK", metrics.render())
            } else {
                (
                    "404 Not Found",
                    "only GET /metrics is served here\n".to_string(),
                )
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(resp.as_bytes()).await;
            let _ = s.shutdown().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_expiry_and_renewals() {
        let m = Metrics::new().unwrap();
        m.set_not_after(
            "web",
            SystemTime::now() + std::time::Duration::from_secs(100),
        );
        m.renewal("web", true);
        m.renewal("web", false);
        let text = m.render();
        assert!(
            text.contains("ward_agent_renewals_total{identity=\"web\",result=\"ok\"} 1"),
            "{text}"
        );
        let line = text
            .lines()
            .find(|l| l.starts_with("ward_agent_seconds_to_expiry{identity=\"web\"}"))
            .unwrap();
        let v: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!((98.0..=100.0).contains(&v), "{line}");
    }
}
