//! `ward_ca_*` Prometheus metrics.
//!
//! One registry per process (the CA is one per process); registration
//! happens on first use so that library users that never serve pay nothing.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry,
};

/// The CA's metric families.
pub struct Metrics {
    registry: Registry,
    /// Certificates issued, by profile (`workload`, `user`, `server`).
    pub issued: IntCounterVec,
    /// Successful renewals.
    pub renewals: IntCounter,
    /// Rejected requests, by error code.
    pub rejections: IntCounterVec,
    /// Time for one HSM signature.
    pub sign_seconds: Histogram,
    /// Seconds since the current CRL was signed (set when scraped).
    pub crl_age_seconds: Gauge,
    /// Certificates revoked.
    pub revocations: IntCounter,
}

fn build() -> Result<Metrics, prometheus::Error> {
    let registry = Registry::new();
    let issued = IntCounterVec::new(
        Opts::new("ward_ca_issued_total", "Certificates issued, by profile."),
        &["profile"],
    )?;
    let renewals = IntCounter::new("ward_ca_renewals_total", "Certificates renewed over mTLS.")?;
    let rejections = IntCounterVec::new(
        Opts::new(
            "ward_ca_rejections_total",
            "Requests refused, by reason code.",
        ),
        &["reason"],
    )?;
    let sign_seconds = Histogram::with_opts(
        HistogramOpts::new(
            "ward_ca_hsm_sign_seconds",
            "Latency of one CA key signature.",
        )
        .buckets(vec![
            0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0,
        ]),
    )?;
    let crl_age_seconds = Gauge::new(
        "ward_ca_crl_age_seconds",
        "Seconds since the CRL was signed.",
    )?;
    let revocations = IntCounter::new("ward_ca_revocations_total", "Certificates revoked.")?;
    registry.register(Box::new(issued.clone()))?;
    registry.register(Box::new(renewals.clone()))?;
    registry.register(Box::new(rejections.clone()))?;
    registry.register(Box::new(sign_seconds.clone()))?;
    registry.register(Box::new(crl_age_seconds.clone()))?;
    registry.register(Box::new(revocations.clone()))?;
    Ok(Metrics {
        registry,
        issued,
        renewals,
        rejections,
        sign_seconds,
        crl_age_seconds,
        revocations,
    })
}

/// The process-wide metrics, or `None` if registration failed (it cannot
/// with these fixed names; metrics must never take the CA down).
pub fn get() -> Option<&'static Metrics> {
    static M: OnceLock<Option<Metrics>> = OnceLock::new();
    M.get_or_init(|| build().ok()).as_ref()
}

/// Records one signature's latency.
pub fn observe_sign(d: Duration) {
    if let Some(m) = get() {
        m.sign_seconds.observe(d.as_secs_f64());
    }
}

/// Counts a refused request under its error code.
pub fn reject(code: &str) {
    if let Some(m) = get() {
        m.rejections.with_label_values(&[code]).inc();
    }
}

/// The text exposition of every metric.
pub fn render() -> String {
    let Some(m) = get() else {
        return String::new();
    };
    let mut buf = Vec::new();
    let _ = prometheus::TextEncoder::new().encode(&m.registry.gather(), &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}
