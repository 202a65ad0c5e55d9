//! The decision path shared by every transport: build the policy request
//! from a connection (and request), evaluate it, log it, count it.
//!
//! HTTP/1.1, HTTP/2, TCP tunnels and (issue 6) HTTP/3 all end up in
//! [`Decider::decide`], so a transport cannot forget a context key or skip
//! the decision log.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rustls::pki_types::CertificateDer;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::Error;
use crate::identity::Identity;
use crate::metrics::Metrics;
use crate::policy::{Policy, Verdict};

/// What the gateway knows about a client connection after the handshake.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The client's address.
    pub peer: SocketAddr,
    /// The verified identity.
    pub identity: Arc<Identity>,
    /// The client's chain as presented (leaf first), kept for re-checks.
    pub chain: Arc<Vec<CertificateDer<'static>>>,
    /// `TLSv1.3` or `TLSv1.2`.
    pub tls_version: &'static str,
    /// `h1`, `h2`, `tcp` (and `h3` later).
    pub protocol: &'static str,
}

/// The condition keys of one decision (values are strings or string lists,
/// as ward-policy takes them). Kept as JSON so the log line can be replayed
/// with `ward policy simulate`.
pub type Context = BTreeMap<String, Value>;

/// Request headers that never go into the context (nor, therefore, the
/// decision log): they carry secrets.
const SECRET_HEADERS: &[&str] = &["authorization", "proxy-authorization", "cookie"];

/// Builds the connection-level context keys.
pub fn base_context(conn: &ConnInfo, groups: &[String], now: OffsetDateTime) -> Context {
    let mut c = Context::new();
    let s = |v: String| Value::String(v);
    c.insert("ward:SourceIp".into(), s(conn.peer.ip().to_string()));
    c.insert("ward:CurrentTime".into(), s(rfc3339(now)));
    c.insert("ward:Protocol".into(), s(conn.protocol.into()));
    c.insert("ward:TlsVersion".into(), s(conn.tls_version.into()));
    c.insert(
        "ward:CertSerial".into(),
        s(conn.identity.serial_hex.clone()),
    );
    c.insert(
        "ward:CertFingerprint".into(),
        s(conn.identity.fingerprint_hex()),
    );
    if let Ok(t) = OffsetDateTime::from_unix_timestamp(conn.identity.not_after) {
        c.insert("ward:CertNotAfter".into(), s(rfc3339(t)));
    }
    c.insert(
        "ward:PrincipalType".into(),
        s(conn.identity.principal_type().as_str().into()),
    );
    c.insert(
        "ward:PrincipalGroups".into(),
        Value::Array(groups.iter().cloned().map(Value::String).collect()),
    );
    c
}

/// Adds the per-request keys of an HTTP request.
pub fn add_http_context(
    c: &mut Context,
    method: &str,
    host: &str,
    path: &str,
    headers: &http::HeaderMap,
) {
    c.insert("ward:Method".into(), Value::String(method.into()));
    c.insert("ward:Host".into(), Value::String(host.into()));
    c.insert("ward:Path".into(), Value::String(path.into()));
    for (name, value) in headers {
        let name = name.as_str();
        if SECRET_HEADERS.contains(&name) || name.starts_with("x-ward-") {
            continue;
        }
        if let Ok(v) = value.to_str() {
            // Repeated headers: the first one wins, like most frameworks.
            c.entry(format!("ward:RequestHeader/{name}"))
                .or_insert_with(|| Value::String(v.into()));
        }
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// The result of one decision.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Random id, returned to the client and written to the log.
    pub id: String,
    /// Whether the enforced policy allowed it.
    pub allowed: bool,
    /// The Sid of the statement that decided, if any.
    pub sid: Option<String>,
    /// Hash of the policy version that decided.
    pub policy_hash: String,
}

/// One thing to decide.
#[derive(Debug)]
pub struct Question<'a> {
    /// Route name.
    pub route: &'a str,
    /// `http:GET`, `tcp:Connect`, …
    pub action: String,
    /// `route/<name><path>` or `route/<name>`.
    pub resource: String,
    /// Condition keys.
    pub context: Context,
    /// Why this decision is made: `request`, `connect` or `recheck`.
    pub kind: &'static str,
}

/// Evaluates and records decisions.
#[derive(Debug)]
pub struct Decider {
    log: Mutex<File>,
    metrics: Metrics,
}

impl Decider {
    /// Opens (appends to) the decision log.
    pub fn open(path: &Path, metrics: Metrics) -> Result<Decider, Error> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| Error::File {
                what: "decision log",
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Decider {
            log: Mutex::new(file),
            metrics,
        })
    }

    /// Decides `q` for `conn` with `policy` (and, in shadow mode,
    /// `candidate`), writes the log line and returns the outcome.
    pub fn decide(
        &self,
        conn: &ConnInfo,
        policy: &Policy,
        candidate: Option<&Policy>,
        q: Question<'_>,
    ) -> Outcome {
        let started = Instant::now();
        let principal = conn.identity.principal();
        let verdict = policy.evaluate(&conn.identity, &q.action, &q.resource, &q.context);
        let shadow: Option<Verdict> =
            candidate.map(|c| c.evaluate(&conn.identity, &q.action, &q.resource, &q.context));
        let elapsed = started.elapsed();
        self.metrics.decision_latency.observe(elapsed.as_secs_f64());
        let id = crate::random_id();
        let mut line = json!({
            "time": rfc3339(OffsetDateTime::now_utc()),
            "decision_id": id,
            "kind": q.kind,
            "principal": principal,
            "email": conn.identity.email,
            "serial": conn.identity.serial_hex,
            "route": q.route,
            "action": q.action,
            "resource": q.resource,
            "context": q.context,
            "result": if verdict.allowed { "Allow" } else { "Deny" },
            "outcome": verdict.outcome,
            "matched_sid": verdict.sid,
            "policy_hash": verdict.policy_hash,
            "error": verdict.error,
            "latency_us": u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        });
        if let Some(sh) = &shadow {
            let differs = sh.allowed != verdict.allowed;
            if differs {
                self.metrics.shadow_mismatches.inc();
            }
            if let Some(obj) = line.as_object_mut() {
                obj.insert(
                    "shadow".into(),
                    json!({
                        "result": if sh.allowed { "Allow" } else { "Deny" },
                        "outcome": sh.outcome,
                        "matched_sid": sh.sid,
                        "policy_hash": sh.policy_hash,
                        "differs": differs,
                    }),
                );
            }
        }
        self.write(&line);
        Outcome {
            id,
            allowed: verdict.allowed,
            sid: verdict.sid,
            policy_hash: verdict.policy_hash,
        }
    }

    /// Appends a line about a connection closed by a re-check.
    pub fn log_close(&self, conn: &ConnInfo, route: &str, reason: &str) {
        let line = json!({
            "time": rfc3339(OffsetDateTime::now_utc()),
            "decision_id": crate::random_id(),
            "kind": "close",
            "principal": conn.identity.principal(),
            "serial": conn.identity.serial_hex,
            "route": route,
            "result": "Close",
            "reason": reason,
        });
        self.write(&line);
    }

    fn write(&self, line: &Value) {
        let mut text = line.to_string();
        text.push('\n');
        // One write call per line keeps lines whole under O_APPEND.
        match self.log.lock() {
            Ok(mut f) => {
                if let Err(e) = f.write_all(text.as_bytes()) {
                    tracing::error!(error = %e, "cannot write the decision log");
                }
            }
            Err(_) => tracing::error!("decision log lock poisoned"),
        }
    }
}
