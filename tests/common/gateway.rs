//! The one harness for tests that run a real `ward gateway run` process
//! ([`TestGateway`], set up with a [`GatewayBuilder`]), the client command
//! lines they drive it with (curl, `h3_client.py`), the small upstreams
//! behind it ([`CountingUpstream`], [`TcpRecorder`]), and the pieces it is
//! made of: reading a request head, the admin listener (readiness,
//! metrics), the decision log, and signals to the process.
//!
//! Every gateway test file used to carry its own copy of the start-up
//! (config header, policy, spawn, readiness loop) and of the thin methods
//! on top; what really differs between them (ports, log level, trust bundle,
//! CRLs, reload polling) is a [`GatewayBuilder`] option here instead. A
//! test's own gateway type holds a `TestGateway` in a field `gw` next to
//! its upstreams and derefs to it ([`deref_to_test_gateway`]).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::free_port;
use super::pki::{Pki, TD};

/// Reads an HTTP/1.x request head up to the blank line (at most 1000
/// lines); `None` on EOF, error or an endless head.
pub fn read_head(r: &mut BufReader<TcpStream>) -> Option<String> {
    let mut head = String::new();
    for _ in 0..1000 {
        let mut line = String::new();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        if line == "\r\n" || line == "\n" {
            return Some(head);
        }
        head.push_str(&line);
    }
    None
}

/// The first parsable `Content-Length` of a request head read by
/// [`read_head`] (0 without one): how many body bytes a test upstream
/// reads before it answers.
pub fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0)
}

/// How a [`CountingUpstream`] answers one request: given its head, the
/// connection's reader (at the start of the body) and writer; `false` ends
/// the connection.
pub type Answer = fn(&str, &mut BufReader<TcpStream>, &mut TcpStream) -> bool;

/// A tiny HTTP/1.1 upstream on 127.0.0.1 that counts the requests it
/// receives (on any number of keep-alive connections, a thread each) and
/// answers each with an [`Answer`]: the count is how the tests see what got
/// through the gateway, the answer is each test file's own.
pub struct CountingUpstream {
    pub port: u16,
    count: Arc<AtomicUsize>,
}

impl CountingUpstream {
    pub fn start(answer: Answer) -> CountingUpstream {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let count = Arc::new(AtomicUsize::new(0));
        let c = count.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { continue };
                let c = c.clone();
                std::thread::spawn(move || {
                    let mut w = s.try_clone().unwrap();
                    let mut r = BufReader::new(s);
                    while let Some(head) = read_head(&mut r) {
                        c.fetch_add(1, Ordering::SeqCst);
                        if !answer(&head, &mut r, &mut w) {
                            return;
                        }
                    }
                });
            }
        });
        CountingUpstream { port, count }
    }

    /// Requests received so far.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

/// A raw TCP upstream for TCP routes: counts the connections it accepts,
/// keeps every byte each one sends (one buffer per connection, in accept
/// order) and echoes them back. A denied tunnel must leave it untouched.
#[derive(Clone)]
pub struct TcpRecorder {
    pub port: u16,
    pub conns: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl TcpRecorder {
    pub fn start() -> TcpRecorder {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let conns = Arc::new(Mutex::new(Vec::new()));
        let c = conns.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                let c = c.clone();
                let i = {
                    let mut v = c.lock().unwrap();
                    v.push(Vec::new());
                    v.len() - 1
                };
                std::thread::spawn(move || {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
                    let mut buf = [0u8; 16384];
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        c.lock().unwrap()[i].extend_from_slice(&buf[..n]);
                        if s.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        TcpRecorder { port, conns }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.conns.lock().unwrap().len()
    }

    /// Bytes received so far, over all connections.
    pub fn bytes(&self) -> usize {
        self.conns.lock().unwrap().iter().map(Vec::len).sum()
    }

    /// What connection `i` has sent so far.
    pub fn received(&self, i: usize) -> Vec<u8> {
        self.conns.lock().unwrap()[i].clone()
    }
}

/// A long chunked `200` for an [`Answer`]: the head with `fields` (each
/// ending in CRLF), then `ticks` chunks `tick\n`, `every` apart. `false`
/// if the client went away.
pub fn stream_ticks(w: &mut TcpStream, fields: &str, ticks: usize, every: Duration) -> bool {
    let head = format!("HTTP/1.1 200 OK\r\n{fields}transfer-encoding: chunked\r\n\r\n");
    let _ = w.write_all(head.as_bytes());
    for _ in 0..ticks {
        if w.write_all(b"5\r\ntick\n\r\n").is_err() {
            return false;
        }
        std::thread::sleep(every);
    }
    let _ = w.write_all(b"0\r\n\r\n");
    true
}

/// Plain HTTP/1.0 GET on the admin listener at `admin`: (status, body);
/// `(0, "")` if nothing listens. Reads for at most 5 s.
pub fn admin_get(admin: u16, path: &str) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", admin)) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = write!(s, "GET {path} HTTP/1.0\r\nHost: admin\r\n\r\n");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_string();
    (status, body)
}

/// The value of one sample in a Prometheus text page (0 if absent).
pub fn metric_in(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The value of one metric sample from the admin listener (0 if absent).
pub fn metric(admin: u16, name_and_labels: &str) -> f64 {
    metric_in(&admin_get(admin, "/metrics").1, name_and_labels)
}

/// The decision log at `path`, one JSON value per line (unparsable lines,
/// such as a half-written last one, are skipped).
pub fn decisions(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// `kill -<sig> <pid>`; panics if it fails.
pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// Starts `ward --log-level <log_level> gateway run` on `dir/gateway.toml`:
/// stdin and stdout closed, stderr to `dir/gateway.log` (appended to, or
/// truncated first). The caller waits for readiness and kills it on drop.
pub fn spawn(dir: &Path, log_level: &str, append_log: bool) -> Child {
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append_log)
        .truncate(!append_log)
        .open(dir.join("gateway.log"))
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(["--log-level", log_level, "gateway", "run", "--config"])
        .arg(dir.join("gateway.toml"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap()
}

/// A port free on both TCP and UDP at 127.0.0.1, for a gateway that serves
/// HTTP/3 (its QUIC listener binds the TCP listener's port over UDP, and it
/// refuses to start without it): bind TCP to port 0, then UDP to the same
/// port; retry on conflict.
pub fn free_tcp_udp_port() -> u16 {
    for _ in 0..50 {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free on both TCP and UDP after 50 tries");
}

/// A config fragment for one plain HTTP route `name` from `host` to the
/// HTTP/1.1 upstream on 127.0.0.1:`port`; keys of the route may follow.
pub fn http_route(name: &str, host: &str, port: u16) -> String {
    format!(
        "\n[[http_routes]]\nname = \"{name}\"\nhost = \"{host}\"\nupstream = \"http://127.0.0.1:{port}\"\n"
    )
}

// ----------------------------------------------------------- harness ----

/// `impl Deref<Target = TestGateway>` (and `DerefMut`) for a test's own
/// gateway type that holds the [`TestGateway`] in a field `gw` next to its
/// upstreams, so that the shared fields and methods (`port`, `pki`,
/// `path`, `log`, `metric`, `sighup`, ...) are the wrapper's too.
macro_rules! deref_to_test_gateway {
    ($t:ty) => {
        impl std::ops::Deref for $t {
            type Target = $crate::common::gateway::TestGateway;
            fn deref(&self) -> &Self::Target {
                &self.gw
            }
        }

        impl std::ops::DerefMut for $t {
            fn deref_mut(&mut self) -> &mut Self::Target {
                &mut self.gw
            }
        }
    };
}
pub(crate) use deref_to_test_gateway;

/// Where a [`TestGateway`] listens for TLS.
#[derive(Clone, Copy)]
enum ListenPort {
    /// Any port free on TCP, chosen again if it is taken at start-up.
    Free,
    /// Any port free on TCP and UDP ([`free_tcp_udp_port`]), likewise.
    FreeTcpUdp,
    /// This one.
    Fixed(u16),
}

impl ListenPort {
    fn pick(self) -> u16 {
        match self {
            ListenPort::Free => free_port(),
            ListenPort::FreeTcpUdp => free_tcp_udp_port(),
            ListenPort::Fixed(port) => port,
        }
    }
}

/// How a [`TestGateway`] is set up before it starts. The config it writes
/// begins with the keys every test gateway has (listeners, trust domain,
/// `root.pem`/`server.pem`/`server.key` from the [`Pki`], `inter.crl`,
/// `policy/`, `decisions.jsonl`), each changeable here; the test's own
/// fragment (more top-level keys, `[limits]`, routes) follows.
pub struct GatewayBuilder {
    dir: tempfile::TempDir,
    pki: Pki,
    policy: String,
    port: ListenPort,
    trust_bundle: String,
    crls: Vec<String>,
    decision_log: bool,
    reload_poll_secs: Option<u64>,
    log_level: String,
    append_log: bool,
    ready_within: Duration,
}

/// How often a start that found its port taken is tried on new ports.
const START_ATTEMPTS: usize = 3;

impl GatewayBuilder {
    /// Listens on `port` instead of a free TCP port.
    pub fn port(mut self, port: u16) -> Self {
        self.port = ListenPort::Fixed(port);
        self
    }

    /// Listens on a port free on UDP as well ([`free_tcp_udp_port`]), for
    /// the tests that speak HTTP/3 to it (the QUIC listener binds the TCP
    /// listener's port over UDP, and the gateway refuses to start without
    /// it).
    pub fn quic(mut self) -> Self {
        self.port = ListenPort::FreeTcpUdp;
        self
    }

    /// `trust_bundle` file in the directory (default `root.pem`).
    pub fn trust_bundle(mut self, file: &str) -> Self {
        self.trust_bundle = file.into();
        self
    }

    /// `crls` files in the directory (default `["inter.crl"]`).
    pub fn crls(mut self, files: &[&str]) -> Self {
        self.crls = files.iter().map(|f| (*f).to_string()).collect();
        self
    }

    /// Leaves `decision_log` out of the header, for a fragment that sets
    /// its own.
    pub fn without_decision_log(mut self) -> Self {
        self.decision_log = false;
        self
    }

    /// `reload_poll_secs` (unset by default: no file polling).
    pub fn reload_poll_secs(mut self, secs: u64) -> Self {
        self.reload_poll_secs = Some(secs);
        self
    }

    /// `--log-level` (default `info,ward_gateway=debug`).
    pub fn log_level(mut self, level: &str) -> Self {
        self.log_level = level.into();
        self
    }

    /// Appends to `gateway.log` on every (re)start instead of truncating
    /// it, so that a restarted gateway's log still shows the first run.
    pub fn append_log(mut self) -> Self {
        self.append_log = true;
        self
    }

    /// How long to wait for `/readyz` (default 30 s).
    pub fn ready_within(mut self, limit: Duration) -> Self {
        self.ready_within = limit;
        self
    }

    /// Writes the policy and the config (header, then `fragment`), starts
    /// the process and waits until it is ready; panics with its log if it
    /// exits or is not ready in time.
    pub fn start(self, fragment: &str) -> TestGateway {
        self.try_start(fragment)
            .unwrap_or_else(|log| panic!("{log}"))
    }

    /// As [`GatewayBuilder::start`], handing back the log instead of
    /// panicking. A port that was free when chosen may be taken by the
    /// time the gateway binds it (tests run in parallel): then the start is
    /// tried again on new ports, up to [`START_ATTEMPTS`] times in all.
    pub fn try_start(self, fragment: &str) -> Result<TestGateway, String> {
        let dir = self.dir.path();
        std::fs::create_dir_all(dir.join("policy")).unwrap();
        std::fs::write(dir.join("policy/main.json"), &self.policy).unwrap();
        let mut rest = format!(
            r#"trust_domain = "{TD}"
trust_bundle = "{bundle}"
cert = "server.pem"
key = "server.key"
crls = {crls:?}
policy_dir = "policy"
"#,
            bundle = self.trust_bundle,
            crls = self.crls,
        );
        if self.decision_log {
            rest.push_str("decision_log = \"decisions.jsonl\"\n");
        }
        if let Some(secs) = self.reload_poll_secs {
            rest.push_str(&format!("reload_poll_secs = {secs}\n"));
        }
        rest.push_str(fragment);
        let listen = self.port;
        let mut gw = TestGateway {
            child: None,
            dir: self.dir,
            pki: self.pki,
            port: listen.pick(),
            admin: free_port(),
            log_level: self.log_level,
            append_log: self.append_log,
            ready_within: self.ready_within,
        };
        let mut attempt = 1;
        loop {
            let config = format!(
                "\nlisten = \"127.0.0.1:{}\"\nadmin_listen = \"127.0.0.1:{}\"\n{rest}",
                gw.port, gw.admin
            );
            std::fs::write(gw.path("gateway.toml"), config).unwrap();
            match gw.try_spawn() {
                Ok(()) => return Ok(gw),
                Err(log)
                    if attempt < START_ATTEMPTS
                        && log.contains("Address already in use")
                        && !matches!(listen, ListenPort::Fixed(_)) =>
                {
                    attempt += 1;
                    gw.port = listen.pick();
                    gw.admin = free_port();
                }
                Err(log) => return Err(log),
            }
        }
    }
}

/// A running `ward gateway run` process on its own directory (config,
/// policy, certificates, `gateway.log`, `decisions.jsonl`), killed on drop.
pub struct TestGateway {
    /// The process; `None` only between a kill and the next [`TestGateway::spawn`].
    pub child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub pki: Pki,
    pub port: u16,
    pub admin: u16,
    log_level: String,
    append_log: bool,
    ready_within: Duration,
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.kill();
    }
}

impl TestGateway {
    /// A gateway on `dir` (where `pki` wrote its files) under `policy`,
    /// with the defaults of [`GatewayBuilder`]; its ports are chosen when
    /// it starts.
    pub fn builder(dir: tempfile::TempDir, pki: Pki, policy: &str) -> GatewayBuilder {
        GatewayBuilder {
            dir,
            pki,
            policy: policy.into(),
            port: ListenPort::Free,
            trust_bundle: "root.pem".into(),
            crls: vec!["inter.crl".into()],
            decision_log: true,
            reload_poll_secs: None,
            log_level: "info,ward_gateway=debug".into(),
            append_log: false,
            ready_within: Duration::from_secs(30),
        }
    }

    /// (Re)starts the process on the same ports and files and waits until
    /// it is ready; panics with its log otherwise.
    pub fn spawn(&mut self) {
        if let Err(log) = self.try_spawn() {
            panic!("{log}");
        }
    }

    /// As [`TestGateway::spawn`]; `Err` holds why, with the log.
    pub fn try_spawn(&mut self) -> Result<(), String> {
        self.kill();
        self.child = Some(spawn(self.dir.path(), &self.log_level, self.append_log));
        let deadline = Instant::now() + self.ready_within;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                return Err(format!("gateway exited with {status}:\n{}", self.log()));
            }
            if self.admin_get("/readyz").0 == 200 {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "gateway not ready in {:?}:\n{}",
                    self.ready_within,
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL and reap, if running.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Is the process still running?
    pub fn alive(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("gateway.log")).unwrap_or_default()
    }

    pub fn decisions(&self) -> Vec<serde_json::Value> {
        decisions(&self.path("decisions.jsonl"))
    }

    /// The logged decision with this `decision_id`, if any.
    pub fn decision(&self, id: &str) -> Option<serde_json::Value> {
        self.decisions()
            .into_iter()
            .find(|d| d["decision_id"] == id)
    }

    /// Plain HTTP/1.0 GET on the admin listener: (status, body).
    pub fn admin_get(&self, path: &str) -> (u16, String) {
        admin_get(self.admin, path)
    }

    /// The value of one metric sample (0 if absent).
    pub fn metric(&self, name_and_labels: &str) -> f64 {
        metric(self.admin, name_and_labels)
    }

    pub fn signal(&self, sig: &str) {
        signal(self.pid(), sig);
    }

    pub fn sighup(&self) {
        self.signal("HUP");
    }

    /// SIGTERM, then waits up to `limit` for the process to exit; `true`
    /// if it did.
    pub fn terminate_within(&mut self, limit: Duration) -> bool {
        self.signal("TERM");
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.child.as_mut().unwrap().try_wait().unwrap().is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// `https://<host>:<port><path>` on this gateway.
    pub fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.port)
    }

    /// `curl -sS` that trusts the test root, resolves `host` to this
    /// gateway and, with `cert`, presents `<cert>.pem`/`<cert>.key`; the
    /// caller adds its options and URLs ([`TestGateway::url`]).
    pub fn curl_command(&self, cert: Option<&str>, host: &str) -> Command {
        let mut c = Command::new("curl");
        c.args(["-sS", "--cacert"])
            .arg(self.path("root.pem"))
            .arg("--resolve")
            .arg(format!("{host}:{}:127.0.0.1", self.port));
        if let Some(name) = cert {
            c.arg("--cert")
                .arg(self.path(&format!("{name}.pem")))
                .arg("--key")
                .arg(self.path(&format!("{name}.key")));
        }
        c
    }

    /// `tests/clients/h3_client.py` (aioquic) for `path` on `app.test`,
    /// connecting to 127.0.0.1 and trusting the test root, with `cert` as
    /// for [`TestGateway::curl_command`]; the caller adds `--timeout` and
    /// the rest.
    pub fn h3_client_command(&self, cert: Option<&str>, path: &str) -> Command {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/h3_client.py");
        let mut c = Command::new("python3");
        c.arg(script)
            .arg(self.url("app.test", path))
            .arg("--ca")
            .arg(self.path("root.pem"))
            .args(["--connect", "127.0.0.1"]);
        if let Some(name) = cert {
            c.arg("--cert")
                .arg(self.path(&format!("{name}.pem")))
                .arg("--key")
                .arg(self.path(&format!("{name}.key")));
        }
        c
    }

    /// Replaces the policy (atomically: the gateway may poll) and sends
    /// SIGHUP, without waiting for the reload.
    pub fn write_policy(&self, text: &str) {
        let tmp = self.path("policy/.main.json.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(tmp, self.path("policy/main.json")).unwrap();
        self.sighup();
    }

    /// As [`TestGateway::write_policy`], then waits until the gateway has
    /// loaded it (its policy reload counter moves).
    pub fn reload_policy(&self, text: &str) {
        let counter = "ward_gateway_reloads_total{part=\"policy\"}";
        let before = self.metric(counter);
        self.write_policy(text);
        super::wait_until("the new policy", Duration::from_secs(15), || {
            self.metric(counter) > before
        });
    }
}
