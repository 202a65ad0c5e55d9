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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
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
/// as ward-policy takes them), in the gateway's spelling (`ward:SourceIp`).
/// Kept as JSON so the log line can be replayed with `ward policy simulate`.
///
/// Layered: the connection's keys ([`base_context`]) are built once, with
/// their ward-policy form, and shared by every request of the connection
/// under one policy generation; a request adds only its own keys. A key of
/// the request's layer hides the base's value of that key. Reads, the log
/// line and the policy see one flat map either way.
#[derive(Debug, Clone, Default)]
pub struct Context {
    base: Arc<BaseContext>,
    own: BTreeMap<String, Value>,
}

/// The shared keys of a [`Context`], in every form a request needs.
#[derive(Debug, Default)]
struct BaseContext {
    json: BTreeMap<String, Value>,
    /// The same keys as ward-policy takes them (lower-cased, text values).
    policy: Arc<ward_policy::Context>,
    /// Each entry of `json`, in its order, as its `"key":value` text in
    /// the decision log (empty if it could not be rendered; then it is
    /// rendered with the line).
    rendered: Vec<Vec<u8>>,
}

impl Context {
    /// An empty context.
    pub fn new() -> Context {
        Context::default()
    }

    /// Sets a key (replacing its value, also one from the base).
    pub fn insert(&mut self, key: impl Into<String>, value: Value) {
        self.own.insert(key.into(), value);
    }

    /// The value of a key (exact spelling).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.own.get(key).or_else(|| self.base.json.get(key))
    }

    /// Every key in order with its value.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries().map(|e| match e {
            Entry::Own(k, v) | Entry::Base(k, v, _) => (k, v),
        })
    }

    /// The merged keys, each saying where it comes from.
    fn entries(&self) -> impl Iterator<Item = Entry<'_>> {
        let mut own = self.own.iter().peekable();
        let mut base = self.base.json.iter().enumerate().peekable();
        std::iter::from_fn(move || {
            let own_key: Option<&String> = own.peek().map(|(k, _)| *k);
            let base_key: Option<&String> = base.peek().map(|(_, (k, _))| *k);
            let from_own = match (own_key, base_key) {
                (None, None) => return None,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some(o), Some(b)) => {
                    if o == b {
                        base.next();
                    }
                    o <= b
                }
            };
            if from_own {
                own.next().map(|(k, v)| Entry::Own(k, v))
            } else {
                base.next().map(|(i, (k, v))| Entry::Base(k, v, i))
            }
        })
    }

    /// Writes the context as the JSON object [`Serialize`] makes, the
    /// shared keys from their text rendered once with the base.
    fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        out.push(b'{');
        for (n, e) in self.entries().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            match e {
                Entry::Base(_, _, i)
                    if self.base.rendered.get(i).is_some_and(|t| !t.is_empty()) =>
                {
                    out.extend_from_slice(self.base.rendered.get(i).map_or(&[][..], |t| t));
                }
                Entry::Own(k, v) | Entry::Base(k, v, _) => write_entry(out, k, v)?,
            }
        }
        out.push(b'}');
        Ok(())
    }

    /// Makes the keys set so far the shared base of later layers: the
    /// ward-policy form of them is built here, once.
    pub fn into_base(self) -> Context {
        let mut json = self.base.json.clone();
        json.extend(self.own);
        let mut policy = ward_policy::Context::new();
        let mut rendered = Vec::with_capacity(json.len());
        for (k, v) in &json {
            add_policy_key(&mut policy, k, v);
            let mut text = Vec::new();
            if write_entry(&mut text, k, v).is_err() {
                text.clear();
            }
            rendered.push(text);
        }
        Context {
            base: Arc::new(BaseContext {
                json,
                policy: Arc::new(policy),
                rendered,
            }),
            own: BTreeMap::new(),
        }
    }

    /// An empty layer over this context's base (its own keys are not
    /// kept: call [`Context::into_base`] first).
    pub fn layer(&self) -> Context {
        Context {
            base: self.base.clone(),
            own: BTreeMap::new(),
        }
    }

    /// The context as ward-policy takes it: the shared base and this
    /// request's keys over it.
    pub fn to_policy(&self) -> ward_policy::Context {
        let mut ctx = ward_policy::Context::over(self.base.policy.clone());
        for (k, v) in &self.own {
            add_policy_key(&mut ctx, k, v);
        }
        ctx
    }
}

impl std::ops::Index<&str> for Context {
    type Output = Value;

    /// The value of a key, `null` when absent (as `serde_json::Value`
    /// indexes).
    fn index(&self, key: &str) -> &Value {
        static NULL: Value = Value::Null;
        self.get(key).unwrap_or(&NULL)
    }
}

/// One key of a [`Context`]: its own, or its base's `i`-th.
enum Entry<'a> {
    Own(&'a str, &'a Value),
    Base(&'a str, &'a Value, usize),
}

/// `"key":value` as JSON.
fn write_entry(out: &mut Vec<u8>, k: &str, v: &Value) -> serde_json::Result<()> {
    serde_json::to_writer(&mut *out, k)?;
    out.push(b':');
    serde_json::to_writer(&mut *out, v)
}

/// One key in ward-policy's form: strings as they are, arrays as sets of
/// their strings, anything else as its JSON text. `set` replaces whatever
/// value a base had for the key, as in the JSON map.
fn add_policy_key(ctx: &mut ward_policy::Context, k: &str, v: &Value) {
    let values = match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_string))
            .collect(),
        other => vec![other.to_string()],
    };
    ctx.set(k, values);
}

impl Serialize for Context {
    /// As the flat JSON object of every key.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

/// Request headers that never go into the context (nor, therefore, the
/// decision log): they carry secrets.
const SECRET_HEADERS: &[&str] = &["authorization", "proxy-authorization", "cookie"];

/// Builds the connection-level context keys, as the shared base of the
/// context (see [`Context`]).
pub fn base_context(conn: &ConnInfo, groups: &[String], now: OffsetDateTime) -> Context {
    let mut c = Context::new();
    let s = |v: String| Value::String(v);
    c.insert("ward:SourceIp", s(conn.peer.ip().to_string()));
    set_current_time(&mut c, now);
    c.insert("ward:Protocol", s(conn.protocol.into()));
    c.insert("ward:TlsVersion", s(conn.tls_version.into()));
    c.insert("ward:CertSerial", s(conn.identity.serial_hex.clone()));
    c.insert("ward:CertFingerprint", s(conn.identity.fingerprint_hex()));
    if let Ok(t) = OffsetDateTime::from_unix_timestamp(conn.identity.not_after) {
        c.insert("ward:CertNotAfter", s(rfc3339(t)));
    }
    c.insert(
        "ward:PrincipalType",
        s(conn.identity.principal_type().as_str().into()),
    );
    c.insert(
        "ward:PrincipalGroups",
        Value::Array(groups.iter().cloned().map(Value::String).collect()),
    );
    c.into_base()
}

/// Sets `ward:CurrentTime` (the one connection-level key that changes
/// with every request).
pub fn set_current_time(c: &mut Context, now: OffsetDateTime) {
    c.insert("ward:CurrentTime", Value::String(rfc3339(now)));
}

/// Adds the per-request keys of an HTTP request.
pub fn add_http_context(
    c: &mut Context,
    method: &str,
    host: &str,
    path: &str,
    headers: &http::HeaderMap,
) {
    c.insert("ward:Method", Value::String(method.into()));
    c.insert("ward:Host", Value::String(host.into()));
    c.insert("ward:Path", Value::String(path.into()));
    const PREFIX: &str = "ward:RequestHeader/";
    for (name, value) in headers {
        let name = name.as_str();
        if SECRET_HEADERS.contains(&name) || name.starts_with("x-ward-") {
            continue;
        }
        if let Ok(v) = value.to_str() {
            let mut key = String::with_capacity(PREFIX.len() + name.len());
            key.push_str(PREFIX);
            key.push_str(name);
            // Repeated headers: the first one wins, like most frameworks.
            if c.get(&key).is_none() {
                c.insert(key, Value::String(v.into()));
            }
        }
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// A decision id: 32 hex digits, unique in the log, to correlate a client's
/// 403 or an upstream's request with its log line.
///
/// The first 16 digits are random, drawn once per process; the last 16
/// are a per-process counter put through a keyed bijection. Unique: in one
/// process the counter never repeats and a bijection keeps distinct
/// counters distinct; across processes (restarts, several gateways writing
/// one log) 64 random bits collide with negligible probability. Guessable
/// only in a way that does not matter: a correlation id grants nothing and
/// the log it points into is for operators; the mix just keeps one
/// client's id from showing the neighbouring ids at a glance. Drawing 128
/// random bits from aws-lc per decision was 1.4 % of a request's CPU.
pub fn decision_id() -> String {
    struct Ids {
        prefix: u64,
        key: u64,
        next: AtomicU64,
    }
    static IDS: OnceLock<Ids> = OnceLock::new();
    let ids = IDS.get_or_init(|| {
        let mut seed = [0u8; 16];
        if aws_lc_rs::rand::fill(&mut seed).is_err() {
            // Never expected; the clock and pid still differ between runs.
            let n = OffsetDateTime::now_utc().unix_timestamp_nanos() as u128;
            seed = (n ^ (u128::from(std::process::id()) << 96)).to_be_bytes();
        }
        let [a, b] = [&seed[..8], &seed[8..]].map(|h| {
            let mut w = [0u8; 8];
            w.copy_from_slice(h);
            u64::from_be_bytes(w)
        });
        Ids {
            prefix: a,
            key: b,
            next: AtomicU64::new(0),
        }
    });
    let n = ids.next.fetch_add(1, Ordering::Relaxed);
    let mut hex = [0u8; 32];
    put_hex(&mut hex[..16], ids.prefix);
    put_hex(&mut hex[16..], mix(n.wrapping_add(ids.key)));
    String::from_utf8_lossy(&hex).into_owned()
}

/// splitmix64's finaliser: each step (xor with a right shift of itself,
/// multiplication by an odd constant) is invertible, so the whole is a
/// bijection on u64.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Lower-case hex of `v`, big-endian, into 16 bytes.
fn put_hex(out: &mut [u8], v: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, o) in out.iter_mut().enumerate().take(16) {
        let nibble = (v >> (60 - 4 * i)) & 0xf;
        *o = HEX[nibble as usize];
    }
}

/// The result of one decision.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Unique id ([`decision_id`]), returned to the client and written to
    /// the log.
    pub id: String,
    /// Whether the enforced policy allowed it.
    pub allowed: bool,
    /// The Sid of the statement that decided, if any.
    pub sid: Option<String>,
    /// Hash of the policy version that decided.
    pub policy_hash: String,
}

/// One thing to decide. Action and resource are owned (`String`) or
/// borrowed (`&str`), so that a request whose standing decision already
/// holds them does not copy them again.
#[derive(Debug)]
pub struct Question<'a, S: AsRef<str> = String> {
    /// Route name.
    pub route: &'a str,
    /// `http:GET`, `tcp:Connect`, …
    pub action: S,
    /// `route/<name><path>` or `route/<name>`.
    pub resource: S,
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
/// [`DecisionLine::render`] writes `action` and `context` (the
/// connection's keys from their text made once per connection), serde
/// the rest.
#[derive(Serialize)]
struct DecisionLine<'a> {
    #[serde(skip)]
    action: &'a str,
    #[serde(skip)]
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

impl DecisionLine<'_> {
    /// The JSON object, as a derived `Serialize` of every field would
    /// write it.
    fn render(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        out.extend_from_slice(br#"{"action":"#);
        serde_json::to_writer(&mut *out, self.action)?;
        out.extend_from_slice(br#","context":"#);
        self.context.write_json(out)?;
        // The other fields as an object whose `{` becomes the `,` that
        // continues this one.
        let at = out.len();
        serde_json::to_writer(&mut *out, self)?;
        if let Some(b) = out.get_mut(at) {
            *b = b',';
        }
        Ok(())
    }
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
        q: Question<'_, impl AsRef<str>>,
    ) -> Outcome {
        let (action, resource) = (q.action.as_ref(), q.resource.as_ref());
        let started = Instant::now();
        let principal = conn.identity.principal();
        let verdict = policy.evaluate(&conn.identity, action, resource, q.context);
        let shadow: Option<Verdict> =
            candidate.map(|c| c.evaluate(&conn.identity, action, resource, q.context));
        let elapsed = started.elapsed();
        self.metrics.decision_latency.observe(elapsed.as_secs_f64());
        let id = decision_id();
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
            action,
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
            resource,
            result: if verdict.allowed { "Allow" } else { "Deny" },
            route: q.route,
            serial: &conn.identity.serial_hex,
            shadow: shadow_line,
            time: &time,
        };
        self.write(|out| line.render(out));
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
            "decision_id": decision_id(),
            "kind": "close",
            "principal": conn.identity.principal(),
            "serial": conn.identity.serial_hex,
            "route": route,
            "result": "Close",
            "reason": reason,
        });
        self.write(|out| serde_json::to_writer(out, &line));
    }

    /// Serialises the line straight from borrowed fields (building a
    /// `serde_json::Value` first cloned the whole context per request) and
    /// appends it with one write call, so lines stay whole under O_APPEND
    /// and each decision is in the log before its response is sent. The
    /// buffer is the calling thread's, reused for every line it writes.
    fn write(&self, render: impl FnOnce(&mut Vec<u8>) -> serde_json::Result<()>) {
        thread_local! {
            static LINE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        LINE.with(|buf| match buf.try_borrow_mut() {
            Ok(mut text) => {
                text.clear();
                self.write_with(render, &mut text);
                // A rare huge line (many large headers) does not stay.
                if text.capacity() > 64 * 1024 {
                    *text = Vec::new();
                }
            }
            Err(_) => self.write_with(render, &mut Vec::with_capacity(1024)),
        });
    }

    fn write_with(
        &self,
        render: impl FnOnce(&mut Vec<u8>) -> serde_json::Result<()>,
        text: &mut Vec<u8>,
    ) {
        if render(text).is_err() {
            // Not expected: every field is a string, number or map of them.
            self.metrics.decision_log_lost.inc();
            tracing::error!("cannot serialise a decision log line");
            return;
        }
        text.push(b'\n');
        match self.log.lock() {
            Ok(mut f) => {
                if let Err(e) = f.write_all(text) {
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
pub(crate) mod tests {
    use super::*;

    pub(crate) fn conn() -> ConnInfo {
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
        assert!(!c.iter().any(|(k, _)| k.contains("authorization")
            || k.contains("cookie")
            || k.contains("x-ward")));
    }

    /// The flat map of the context as it was built before the layering:
    /// every key inserted into one `BTreeMap`.
    fn flat(
        conn: &ConnInfo,
        groups: &[String],
        headers: &http::HeaderMap,
    ) -> BTreeMap<String, Value> {
        let mut c = BTreeMap::new();
        let s = |v: &str| Value::String(v.into());
        c.insert("ward:SourceIp".to_string(), s("10.1.2.3"));
        c.insert("ward:CurrentTime".into(), s("1970-01-01T00:00:01Z"));
        c.insert("ward:Protocol".into(), s(conn.protocol));
        c.insert("ward:TlsVersion".into(), s(conn.tls_version));
        c.insert("ward:CertSerial".into(), s(&conn.identity.serial_hex));
        c.insert(
            "ward:CertFingerprint".into(),
            s(&conn.identity.fingerprint_hex()),
        );
        c.insert("ward:CertNotAfter".into(), s("2033-05-18T03:33:20Z"));
        c.insert("ward:PrincipalType".into(), s("user"));
        c.insert("ward:PrincipalGroups".into(), json!(groups));
        c.insert("ward:Method".into(), s("POST"));
        c.insert("ward:Host".into(), s("app.test"));
        c.insert("ward:Path".into(), s("/v1"));
        for (name, value) in headers {
            if name == "authorization" {
                continue;
            }
            c.entry(format!("ward:RequestHeader/{name}"))
                .or_insert_with(|| s(value.to_str().unwrap()));
        }
        c
    }

    #[test]
    fn a_layered_context_is_the_flat_map() {
        let conn = conn();
        let groups = vec!["ops".to_string(), "dba".to_string()];
        let mut h = http::HeaderMap::new();
        h.append("x-team", "payments".parse().unwrap());
        h.append("x-team", "second".parse().unwrap());
        h.append("accept", "*/*".parse().unwrap());
        h.append("authorization", "Bearer secret".parse().unwrap());
        let base = base_context(&conn, &groups, OffsetDateTime::UNIX_EPOCH);
        let mut c = base.layer();
        set_current_time(
            &mut c,
            OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(1),
        );
        add_http_context(&mut c, "POST", "app.test", "/v1", &h);
        let want = flat(&conn, &groups, &h);
        let got: BTreeMap<String, Value> =
            c.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        assert_eq!(got, want);
        assert_eq!(c["ward:RequestHeader/x-team"], "payments", "first wins");
        assert_eq!(c["ward:Nothing"], Value::Null);
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            serde_json::to_string(&want).unwrap(),
            "the log line's context is byte for byte the flat map's"
        );
        let mut text = Vec::new();
        c.write_json(&mut text).unwrap();
        assert_eq!(
            text,
            serde_json::to_vec(&want).unwrap(),
            "also from the base's own text"
        );
        // What the policy sees: as the flat map was converted before.
        let mut policy = ward_policy::Context::new();
        for (k, v) in &want {
            match v {
                Value::String(s) => {
                    policy.insert(k, s.clone());
                }
                Value::Array(items) => {
                    policy.set(
                        k,
                        items
                            .iter()
                            .map(|i| i.as_str().unwrap().to_string())
                            .collect(),
                    );
                }
                other => panic!("unexpected {other}"),
            }
        }
        assert_eq!(c.to_policy(), policy);
        // The base is shared, not changed by a request's keys.
        assert_eq!(base["ward:CurrentTime"], "1970-01-01T00:00:00Z");
        assert_eq!(base["ward:Method"], Value::Null);
        assert_eq!(base.layer()["ward:Path"], Value::Null);
    }

    #[test]
    fn decision_ids_are_unique_across_threads() {
        let per_thread = 20_000;
        let threads: Vec<_> = (0..8)
            .map(|_| {
                std::thread::spawn(move || {
                    (0..per_thread).map(|_| decision_id()).collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all = std::collections::HashSet::new();
        let mut prefixes = std::collections::HashSet::new();
        for t in threads {
            for id in t.join().unwrap() {
                assert_eq!(id.len(), 32, "{id}");
                assert!(
                    id.bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                    "{id}"
                );
                prefixes.insert(id[..16].to_string());
                assert!(all.insert(id.clone()), "duplicate id {id}");
            }
        }
        assert_eq!(all.len(), 8 * per_thread);
        assert_eq!(prefixes.len(), 1, "one random prefix per process");
        // Consecutive ids do not look consecutive.
        let (a, b) = (decision_id(), decision_id());
        let low = |s: &str| u64::from_str_radix(&s[16..], 16).unwrap();
        assert!(low(&a).abs_diff(low(&b)) > 1 << 20, "{a} {b}");
    }

    #[test]
    fn the_id_mix_is_a_bijection_on_a_sample() {
        let mut seen = std::collections::HashSet::new();
        for n in 0..100_000u64 {
            assert!(seen.insert(mix(n)));
            assert!(seen.insert(mix(u64::MAX - n)));
        }
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
        let mut text = Vec::new();
        line.render(&mut text).unwrap();
        assert_eq!(String::from_utf8(text).unwrap(), old.to_string());
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
