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
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rustls::pki_types::CertificateDer;
use serde::Serialize;
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
    set_current_time(&mut c, now);
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

/// Sets `ward:CurrentTime` (the one connection-level key that changes
/// with every request).
pub fn set_current_time(c: &mut Context, now: OffsetDateTime) {
    c.insert("ward:CurrentTime".into(), Value::String(rfc3339(now)));
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
    pub context: &'a Context,
    /// Why this decision is made: `request`, `connect` or `recheck`.
    pub kind: &'static str,
}

/// Evaluates and records decisions.
#[derive(Debug)]
pub struct Decider {
    log: Mutex<File>,
    path: PathBuf,
    metrics: Metrics,
}

/// One decision line. Fields in alphabetical order: the line is
/// byte-for-byte what the earlier `serde_json::Value` rendering produced,
/// without building (and cloning the context into) a `Value` first.
#[derive(Serialize)]
struct DecisionLine<'a> {
    action: &'a str,
    context: &'a Context,
    decision_id: &'a str,
    email: &'a Option<String>,
    error: &'a Option<String>,
    kind: &'a str,
    latency_us: u64,
    matched_sid: &'a Option<String>,
    outcome: &'a str,
    policy_hash: &'a str,
    principal: &'a str,
    resource: &'a str,
    result: &'a str,
    route: &'a str,
    serial: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    shadow: Option<ShadowLine<'a>>,
    time: &'a str,
}

/// The shadow evaluation of a decision line (alphabetical, as above).
#[derive(Serialize)]
struct ShadowLine<'a> {
    differs: bool,
    matched_sid: &'a Option<String>,
    outcome: &'a str,
    policy_hash: &'a str,
    result: &'a str,
}

/// Opens the decision log for appending, readable by owner and group only:
/// it names every principal and where it connected from.
fn open_log(path: &Path) -> Result<File, Error> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
        .map_err(|source| Error::File {
            what: "decision log",
            path: path.to_path_buf(),
            source,
        })
}

impl Decider {
    /// Opens (appends to) the decision log.
    pub fn open(path: &Path, metrics: Metrics) -> Result<Decider, Error> {
        Ok(Decider {
            log: Mutex::new(open_log(path)?),
            path: path.to_path_buf(),
            metrics,
        })
    }

    /// Opens the log file again (after logrotate moved it away); on
    /// failure the old file stays in use.
    pub fn reopen(&self) -> Result<(), Error> {
        let file = open_log(&self.path)?;
        match self.log.lock() {
            Ok(mut f) => *f = file,
            Err(poisoned) => *poisoned.into_inner() = file,
        }
        Ok(())
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
        let verdict = policy.evaluate(&conn.identity, &q.action, &q.resource, q.context);
        let shadow: Option<Verdict> =
            candidate.map(|c| c.evaluate(&conn.identity, &q.action, &q.resource, q.context));
        let elapsed = started.elapsed();
        self.metrics.decision_latency.observe(elapsed.as_secs_f64());
        let id = crate::random_id();
        let time = rfc3339(OffsetDateTime::now_utc());
        let shadow_line = shadow.as_ref().map(|sh| {
            let differs = sh.allowed != verdict.allowed;
            if differs {
                self.metrics.shadow_mismatches.inc();
            }
            ShadowLine {
                differs,
                matched_sid: &sh.sid,
                outcome: &sh.outcome,
                policy_hash: &sh.policy_hash,
                result: if sh.allowed { "Allow" } else { "Deny" },
            }
        });
        let line = DecisionLine {
            action: &q.action,
            context: q.context,
            decision_id: &id,
            email: &conn.identity.email,
            error: &verdict.error,
            kind: q.kind,
            latency_us: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            matched_sid: &verdict.sid,
            outcome: &verdict.outcome,
            policy_hash: &verdict.policy_hash,
            principal,
            resource: &q.resource,
            result: if verdict.allowed { "Allow" } else { "Deny" },
            route: q.route,
            serial: &conn.identity.serial_hex,
            shadow: shadow_line,
            time: &time,
        };
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

    /// Serialises the line straight from borrowed fields (building a
    /// `serde_json::Value` first cloned the whole context per request) and
    /// appends it with one write call, so lines stay whole under O_APPEND
    /// and each decision is in the log before its response is sent.
    fn write(&self, line: &impl Serialize) {
        let mut text = Vec::with_capacity(1024);
        if serde_json::to_writer(&mut text, line).is_err() {
            // Not expected: every field is a string, number or map of them.
            self.metrics.decision_log_lost.inc();
            tracing::error!("cannot serialise a decision log line");
            return;
        }
        text.push(b'\n');
        match self.log.lock() {
            Ok(mut f) => {
                if let Err(e) = f.write_all(&text) {
                    // The request is still decided (fail closed would turn a
                    // full disk into an outage); the gap is counted instead.
                    self.metrics.decision_log_lost.inc();
                    tracing::error!(error = %e, lost = self.metrics.decision_log_lost.get(), "cannot write the decision log; the decision was enforced but is missing from the log");
                }
            }
            Err(_) => {
                self.metrics.decision_log_lost.inc();
                tracing::error!("decision log lock poisoned");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> ConnInfo {
        ConnInfo {
            peer: "10.1.2.3:5555".parse().unwrap(),
            identity: Arc::new(Identity {
                spiffe_id: crate::identity::SpiffeId::parse("spiffe://corp.example/user/alice")
                    .unwrap(),
                uri: "spiffe://corp.example/user/alice".into(),
                email: Some("alice@corp.example".into()),
                serial_hex: "0a".into(),
                fingerprint: [1; 32],
                not_after: 2_000_000_000,
            }),
            chain: Arc::new(Vec::new()),
            tls_version: "TLSv1.3",
            protocol: "h2",
        }
    }

    #[test]
    fn context_has_every_gateway_key_and_no_secrets() {
        let mut c = base_context(&conn(), &["ops".into()], OffsetDateTime::UNIX_EPOCH);
        let mut h = http::HeaderMap::new();
        h.insert("x-team", "payments".parse().unwrap());
        h.insert("authorization", "Bearer secret".parse().unwrap());
        h.insert("cookie", "s=secret".parse().unwrap());
        h.insert("x-ward-identity", "forged".parse().unwrap());
        add_http_context(&mut c, "GET", "app.test", "/v1", &h);
        assert_eq!(c["ward:SourceIp"], "10.1.2.3");
        assert_eq!(c["ward:CurrentTime"], "1970-01-01T00:00:00Z");
        assert_eq!(c["ward:Protocol"], "h2");
        assert_eq!(c["ward:TlsVersion"], "TLSv1.3");
        assert_eq!(c["ward:CertSerial"], "0a");
        assert_eq!(c["ward:CertNotAfter"], "2033-05-18T03:33:20Z");
        assert_eq!(c["ward:PrincipalType"], "user");
        assert_eq!(c["ward:PrincipalGroups"], json!(["ops"]));
        assert_eq!(c["ward:Method"], "GET");
        assert_eq!(c["ward:Host"], "app.test");
        assert_eq!(c["ward:Path"], "/v1");
        assert_eq!(c["ward:RequestHeader/x-team"], "payments");
        assert!(
            !c.keys().any(|k| k.contains("authorization")
                || k.contains("cookie")
                || k.contains("x-ward"))
        );
    }

    #[test]
    fn the_line_is_what_the_value_rendering_was() {
        let conn = conn();
        let mut c = base_context(&conn, &["ops".into()], OffsetDateTime::UNIX_EPOCH);
        add_http_context(&mut c, "GET", "app.test", "/x", &http::HeaderMap::new());
        let sid = Some("A".to_string());
        let none: Option<String> = None;
        let line = DecisionLine {
            action: "http:GET",
            context: &c,
            decision_id: "id",
            email: &conn.identity.email,
            error: &none,
            kind: "request",
            latency_us: 3,
            matched_sid: &sid,
            outcome: "Allow",
            policy_hash: "h",
            principal: conn.identity.principal(),
            resource: "route/app/x",
            result: "Allow",
            route: "app",
            serial: "0a",
            shadow: Some(ShadowLine {
                differs: true,
                matched_sid: &none,
                outcome: "ImplicitDeny",
                policy_hash: "h2",
                result: "Deny",
            }),
            time: "t",
        };
        let old = json!({
            "time": "t", "decision_id": "id", "kind": "request",
            "principal": conn.identity.principal(), "email": conn.identity.email,
            "serial": "0a", "route": "app", "action": "http:GET",
            "resource": "route/app/x", "context": c, "result": "Allow",
            "outcome": "Allow", "matched_sid": "A", "policy_hash": "h",
            "error": null, "latency_us": 3,
            "shadow": {"result": "Deny", "outcome": "ImplicitDeny",
                "matched_sid": null, "policy_hash": "h2", "differs": true},
        });
        assert_eq!(serde_json::to_string(&line).unwrap(), old.to_string());
    }

    #[test]
    fn lines_that_cannot_be_written_are_counted() {
        let metrics = Metrics::new().unwrap();
        let d = Decider::open(Path::new("/dev/full"), metrics.clone()).unwrap();
        for _ in 0..5 {
            d.log_close(&conn(), "app", "test");
        }
        assert_eq!(metrics.decision_log_lost.get(), 5);
    }

    #[test]
    fn every_decision_is_one_json_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("p.json"),
            r#"{"Version": "2026-11-01", "Statement": [{"Sid": "A", "Effect": "Allow",
                "Principal": {"Email": "alice@corp.example"}, "Action": "http:GET",
                "Resource": "route/app/*"}]}"#,
        )
        .unwrap();
        let policy = Policy::load_dir(dir.path()).unwrap();
        let log = dir.path().join("d.jsonl");
        let d = Decider::open(&log, Metrics::new().unwrap()).unwrap();
        let conn = conn();
        let ask = |path: &str, method: &str| {
            let mut c = base_context(&conn, &[], OffsetDateTime::now_utc());
            add_http_context(&mut c, method, "app.test", path, &http::HeaderMap::new());
            d.decide(
                &conn,
                &policy,
                None,
                Question {
                    route: "app",
                    action: format!("http:{method}"),
                    resource: format!("route/app{path}"),
                    context: &c,
                    kind: "request",
                },
            )
        };
        let yes = ask("/x", "GET");
        assert!(yes.allowed);
        assert_eq!(yes.sid.as_deref(), Some("A"));
        let no = ask("/x", "DELETE");
        assert!(!no.allowed);
        assert_ne!(yes.id, no.id);
        let text = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["result"], "Allow");
        assert_eq!(lines[0]["email"], "alice@corp.example");
        assert_eq!(lines[1]["result"], "Deny");
        assert_eq!(lines[1]["decision_id"], no.id.as_str());
        assert_eq!(lines[1]["policy_hash"], policy.hash());
        assert_eq!(lines[1]["context"]["ward:Method"], "DELETE");
    }
}
