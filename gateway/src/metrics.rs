//! Prometheus metrics, all named `ward_gateway_*`, served by the admin
//! listener. One registry per gateway (not the global one) so that tests and
//! a future multi-gateway process do not collide.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

/// Every metric the gateway exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// TLS handshakes by result (`ok`/`failed`) and reason.
    pub handshakes: IntCounterVec,
    /// HTTP requests by route, decision and status.
    pub requests: IntCounterVec,
    /// Request latency (decision + upstream response headers), by route.
    pub latency: HistogramVec,
    /// Time spent in policy evaluation alone.
    pub decision_latency: Histogram,
    /// TCP tunnels by route and decision.
    pub tunnels: IntCounterVec,
    /// Open client connections.
    pub active_connections: IntGauge,
    /// Idle HTTP/1.1 connections parked without hyper's buffers (a subset
    /// of `active_connections`).
    pub parked_connections: IntGauge,
    /// Successful reloads by what was reloaded.
    pub reloads: IntCounterVec,
    /// Refused reloads by what failed (the last good state stays).
    pub reload_failures: IntCounterVec,
    /// Long-lived connections closed by a re-check, by reason.
    pub rechecks_closed: IntCounterVec,
    /// Connections and requests refused by a limit, by limit.
    pub limited: IntCounterVec,
    /// Seconds until our own certificate expires.
    pub own_cert_expiry: IntGauge,
    /// Seconds since the oldest loaded CRL was issued.
    pub crl_age: IntGauge,
    /// Shadow-mode evaluations that disagreed with the enforced policy.
    pub shadow_mismatches: IntCounter,
    /// Decision-log lines that could not be written (disk full, I/O
    /// error). The decisions themselves were still enforced; this counts
    /// the gap in the audit trail so that it is reported, not silent.
    pub decision_log_lost: IntCounter,
    /// QUIC handshakes by result (`ok`/`failed`/`refused`) and reason.
    pub quic_handshakes: IntCounterVec,
    /// HTTP/3 request streams by how they ended (`ok`, `reset`, `killed`,
    /// `bad_request`, `header_timeout`).
    pub quic_streams: IntCounterVec,
    /// QUIC connections by 0-RTT result: always `none` (no ticket is ever
    /// issued, so no client can send early data) or `rejected`.
    pub quic_zero_rtt: IntCounterVec,
}

fn must<T>(r: Result<T, prometheus::Error>) -> Result<T, crate::Error> {
    r.map_err(|_| crate::Error::Crypto("cannot register metrics"))
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Result<Metrics, crate::Error> {
        let registry = Registry::new();
        let cv = |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, crate::Error> {
            let c = must(IntCounterVec::new(Opts::new(name, help), labels))?;
            must(registry.register(Box::new(c.clone())))?;
            Ok(c)
        };
        let handshakes = cv(
            "ward_gateway_handshakes_total",
            "TLS handshakes by result and reason",
            &["result", "reason"],
        )?;
        let requests = cv(
            "ward_gateway_requests_total",
            "HTTP requests by route, decision and status",
            &["route", "decision", "status"],
        )?;
        let tunnels = cv(
            "ward_gateway_tcp_tunnels_total",
            "TCP tunnels by route and decision",
            &["route", "decision"],
        )?;
        let reloads = cv(
            "ward_gateway_reloads_total",
            "Successful reloads by part",
            &["part"],
        )?;
        let reload_failures = cv(
            "ward_gateway_reload_failures_total",
            "Refused reloads by part; the last good state stays in force",
            &["part"],
        )?;
        let rechecks_closed = cv(
            "ward_gateway_rechecks_closed_total",
            "Long-lived connections closed after a re-check, by reason",
            &["reason"],
        )?;
        let limited = cv(
            "ward_gateway_limited_total",
            "Connections and requests refused by a limit (max_connections, per_identity, idle, headers)",
            &["limit"],
        )?;
        let latency = must(HistogramVec::new(
            HistogramOpts::new(
                "ward_gateway_request_duration_seconds",
                "Request latency until the response headers, by route",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
            ]),
            &["route"],
        ))?;
        must(registry.register(Box::new(latency.clone())))?;
        let decision_latency = must(Histogram::with_opts(
            HistogramOpts::new(
                "ward_gateway_decision_duration_seconds",
                "Policy evaluation time",
            )
            .buckets(vec![0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01]),
        ))?;
        must(registry.register(Box::new(decision_latency.clone())))?;
        let active_connections = must(IntGauge::new(
            "ward_gateway_active_connections",
            "Open client connections",
        ))?;
        must(registry.register(Box::new(active_connections.clone())))?;
        let parked_connections = must(IntGauge::new(
            "ward_gateway_parked_connections",
            "Idle HTTP/1.1 connections parked without their HTTP buffers",
        ))?;
        must(registry.register(Box::new(parked_connections.clone())))?;
        let own_cert_expiry = must(IntGauge::new(
            "ward_gateway_own_cert_expiry_seconds",
            "Seconds until the gateway's own certificate expires",
        ))?;
        must(registry.register(Box::new(own_cert_expiry.clone())))?;
        let crl_age = must(IntGauge::new(
            "ward_gateway_crl_age_seconds",
            "Seconds since the oldest loaded CRL was issued (thisUpdate)",
        ))?;
        must(registry.register(Box::new(crl_age.clone())))?;
        let shadow_mismatches = must(IntCounter::new(
            "ward_gateway_shadow_mismatches_total",
            "Shadow evaluations whose result differs from the enforced policy",
        ))?;
        must(registry.register(Box::new(shadow_mismatches.clone())))?;
        let decision_log_lost = must(IntCounter::new(
            "ward_gateway_decision_log_lost_total",
            "Decision log lines that could not be written (disk full, I/O error); decisions were still enforced",
        ))?;
        must(registry.register(Box::new(decision_log_lost.clone())))?;
        let quic_handshakes = cv(
            "ward_gateway_quic_handshakes_total",
            "QUIC handshakes by result and reason",
            &["result", "reason"],
        )?;
        let quic_streams = cv(
            "ward_gateway_quic_streams_total",
            "HTTP/3 request streams by how they ended",
            &["result"],
        )?;
        let quic_zero_rtt = cv(
            "ward_gateway_quic_0rtt_total",
            "QUIC connections by 0-RTT result (0-RTT is never accepted)",
            &["result"],
        )?;
        Ok(Metrics {
            registry,
            handshakes,
            requests,
            latency,
            decision_latency,
            tunnels,
            active_connections,
            parked_connections,
            reloads,
            reload_failures,
            rechecks_closed,
            limited,
            own_cert_expiry,
            crl_age,
            shadow_mismatches,
            decision_log_lost,
            quic_handshakes,
            quic_streams,
            quic_zero_rtt,
        })
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .is_err()
        {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}
