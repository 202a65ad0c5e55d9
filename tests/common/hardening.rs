//! Shared harness for the hardening suites (issue 10): a throwaway PKI made
//! with rcgen, upstreams that record the raw request head they receive, a
//! real `ward gateway run` process, and a raw-bytes TLS client
//! (`openssl s_client -quiet`) so that nothing between the test and the
//! gateway normalises what is sent. Only 127.0.0.1; every wait is bounded;
//! children are killed on drop.

#![allow(dead_code)]

use std::io::{BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::gateway::{TestGateway, content_length, http_route, read_head};
use super::pki::gateway_sans;
pub use super::pki::{CLIENT, OTHER, Pki};

/// The client may use route `app` (except its admin area) and nothing else;
/// `other` may use nothing. Route `secret` is reachable by nobody, so any
/// request recorded by its upstream is a bypass.
pub const POLICY: &str = r#"{
  "Version": "2026-11-01",
  "Statement": [
    {"Sid": "ClientUsesApp", "Effect": "Allow",
     "Principal": {"Spiffe": "spiffe://corp.example/ns/test/sa/client"},
     "Action": ["http:GET", "http:POST"], "Resource": ["route/app/*", "route/slow/*", "route/down/*"]},
    {"Sid": "NobodyAdmin", "Effect": "Deny", "Principal": "*",
     "Action": "http:*", "Resource": "route/app/admin*"}
  ]
}"#;

/// Request targets that try to reach the denied `/admin*` of route `app`
/// (or another route) through a path the policy might read differently
/// from the upstream: dot segments, encoded slashes and dots, overlong
/// UTF-8, NULs, backslashes, matrix parameters, absolute and asterisk
/// forms. The same list runs over HTTP/1.1 (`attack_gateway.rs`) and
/// HTTP/3 (`attack_h3_tcp.rs`), so both transports face every trick.
pub const PATH_TRICKS: &[&[u8]] = &[
    b"/v1/../admin",
    b"/v1/./../admin",
    b"/%2e%2e/admin",
    b"/v1/%2e%2e/admin",
    b"/v1/%2E%2E/admin",
    b"/v1/.%2e/admin",
    b"/v1%2F..%2Fadmin",
    b"/v1%2fadmin",
    b"//admin",
    b"/v1//../admin",
    b"/admin;/x",
    b"/v1/..;/admin",
    b"/v1;/../admin",
    b"/%61dmin",
    b"/ADMIN",
    b"/v1/%c0%ae%c0%ae/admin",
    b"/v1/\xc0\xae\xc0\xae/admin",
    b"/v1\\..\\admin",
    b"/v1/%5c../admin",
    b"/v1/%00/../admin",
    b"/v1/..%00/admin",
    b"/v1/%252e%252e/admin",
    b"/v1/..\t/admin",
    b"http://secret.test/x",
    b"*",
    b"admin",
];

/// Decodes percent-escapes once (invalid ones stay as they are), as an
/// upstream that decodes before routing would.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).to_string()
}

// ---------------------------------------------------------- upstreams ----

/// An HTTP/1.1 upstream that records every request head it receives, byte
/// for byte, and answers `200 ok`. A request for a path starting `/slow`
/// waits `slow` before answering.
#[derive(Clone)]
pub struct Recorder {
    pub port: u16,
    pub heads: Arc<Mutex<Vec<String>>>,
    pub open: Arc<AtomicUsize>,
}

impl Recorder {
    pub fn start(slow: Duration) -> Recorder {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let open = Arc::new(AtomicUsize::new(0));
        let (h, o) = (heads.clone(), open.clone());
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { continue };
                let (h, o) = (h.clone(), o.clone());
                std::thread::spawn(move || {
                    o.fetch_add(1, Ordering::SeqCst);
                    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
                    let mut w = s.try_clone().unwrap();
                    let mut r = BufReader::new(s);
                    while let Some(head) = read_head(&mut r) {
                        h.lock().unwrap().push(head.clone());
                        let len = content_length(&head);
                        let mut body = vec![0; len.min(1 << 20)];
                        if r.read_exact(&mut body).is_err() {
                            break;
                        }
                        if head
                            .split_whitespace()
                            .nth(1)
                            .is_some_and(|p| p.starts_with("/slow"))
                        {
                            std::thread::sleep(slow);
                        }
                        if w.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                            .is_err()
                        {
                            break;
                        }
                    }
                    o.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Recorder { port, heads, open }
    }

    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }

    /// The request targets (second word of each request line) received.
    pub fn targets(&self) -> Vec<String> {
        self.heads()
            .iter()
            .filter_map(|h| h.split_whitespace().nth(1).map(str::to_string))
            .collect()
    }

    pub fn clear(&self) {
        self.heads.lock().unwrap().clear();
    }
}

pub use super::free_port;

// ------------------------------------------------------------ gateway ----

/// The hardening gateway: four routes to [`Recorder`]s (or to nothing);
/// the process, its files and the thin methods on it are the shared
/// [`TestGateway`] it derefs to.
pub struct Gateway {
    pub gw: TestGateway,
    pub app: Recorder,
    pub secret: Recorder,
    pub slow: Recorder,
}

super::gateway::deref_to_test_gateway!(Gateway);

impl Gateway {
    /// Starts a gateway with routes `app` (app.test), `secret` (secret.test,
    /// denied to everyone), `slow` (slow.test, upstream answers `/slow*`
    /// after 4 s) and `down` (down.test, nothing listening). `limits` is
    /// extra `[limits]` keys.
    pub fn start(limits: &str) -> Gateway {
        Gateway::start_with("", limits)
    }

    /// As [`Gateway::start`], with extra top-level keys `top` (one setting
    /// `decision_log` replaces the default one).
    pub fn start_with(top: &str, limits: &str) -> Gateway {
        Gateway::start_on(false, top, limits)
    }

    /// As [`Gateway::start_with`], on a port free on UDP as well, for the
    /// tests that speak HTTP/3 to it (the QUIC listener binds the TCP
    /// listener's port over UDP, and the gateway refuses to start without
    /// it).
    pub fn start_quic(top: &str, limits: &str) -> Gateway {
        Gateway::start_on(true, top, limits)
    }

    fn start_on(quic: bool, top: &str, limits: &str) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(
            dir.path(),
            "ward hardening root",
            "ward hardening issuing",
            gateway_sans(&["app.test", "secret.test", "slow.test", "down.test"]),
        );
        pki.issue_client("client", CLIENT);
        pki.issue_client("other", OTHER);
        let app = Recorder::start(Duration::ZERO);
        let secret = Recorder::start(Duration::ZERO);
        let slow = Recorder::start(Duration::from_secs(4));
        let mut builder = TestGateway::builder(dir, pki, POLICY)
            .reload_poll_secs(1)
            .log_level("info")
            .append_log();
        if quic {
            builder = builder.quic();
        }
        if top.contains("decision_log") {
            builder = builder.without_decision_log();
        }
        let dead = free_port();
        let gw = builder.start(&format!(
            "{top}\n\n[limits]\nupstream_connect_timeout_secs = 2\n{limits}\n{}{}{}{}",
            http_route("app", "app.test", app.port),
            http_route("secret", "secret.test", secret.port),
            http_route("slow", "slow.test", slow.port),
            http_route("down", "down.test", dead),
        ));
        Gateway {
            gw,
            app,
            secret,
            slow,
        }
    }

    /// Sends `bytes` over TLS (SNI `sni`, client cert `cert`, ALPN `alpn`)
    /// with `openssl s_client`, then collects everything the gateway sends
    /// back until it closes or `wait` passes. Nothing is normalised.
    pub fn raw_tls(
        &self,
        cert: Option<&str>,
        sni: &str,
        alpn: &str,
        bytes: &[u8],
        wait: Duration,
    ) -> Vec<u8> {
        self.raw_tls_sni(cert, Some(sni), alpn, bytes, wait)
    }

    /// `openssl s_client -quiet` to the gateway, which sends stdin as it is
    /// and prints only what comes back: SNI `sni` (none with `None`), ALPN
    /// `alpn`, the test root trusted, and with `cert` the client
    /// certificate `<cert>.pem`/`.key`.
    pub fn s_client(&self, cert: Option<&str>, sni: Option<&str>, alpn: &str) -> Command {
        let mut c = Command::new("openssl");
        c.args([
            "s_client",
            "-quiet",
            "-nocommands",
            "-verify_quiet",
            "-connect",
        ])
        .arg(format!("127.0.0.1:{}", self.port));
        match sni {
            Some(sni) => c.args(["-servername", sni]),
            None => c.arg("-noservername"),
        };
        c.args(["-alpn", alpn, "-CAfile"])
            .arg(self.path("root.pem"));
        if let Some(name) = cert {
            c.arg("-cert")
                .arg(self.path(&format!("{name}.pem")))
                .arg("-cert_chain")
                .arg(self.path(&format!("{name}.pem")))
                .arg("-key")
                .arg(self.path(&format!("{name}.key")));
        }
        c
    }

    /// As [`Gateway::raw_tls`]; `sni: None` sends no server name at all
    /// (`-noservername`).
    pub fn raw_tls_sni(
        &self,
        cert: Option<&str>,
        sni: Option<&str>,
        alpn: &str,
        bytes: &[u8],
        wait: Duration,
    ) -> Vec<u8> {
        let mut c = self.s_client(cert, sni, alpn);
        let mut child = c
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(if std::env::var_os("WARD_DEBUG_RAW").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let payload = bytes.to_vec();
        // Writing may block if the gateway stops reading: do it aside.
        // (s_client -quiet ignores EOF on stdin, so closing it is fine.)
        std::thread::spawn(move || {
            let _ = stdin.write_all(&payload);
            let _ = stdin.flush();
        });
        let mut stdout = child.stdout.take().unwrap();
        let out = Arc::new(Mutex::new(Vec::new()));
        let o = out.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 16384];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                o.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        let _ = reader.join();
        out.lock().unwrap().clone()
    }

    /// One raw HTTP/1.1 exchange: (status, whole response text). 0 means
    /// the gateway answered nothing (closed the connection).
    pub fn raw_http1(&self, cert: Option<&str>, sni: &str, request: &[u8]) -> (u16, String) {
        let out = self.raw_tls(cert, sni, "http/1.1", request, Duration::from_secs(6));
        let text = String::from_utf8_lossy(&out).to_string();
        (status_of(&text), text)
    }

    /// curl with the named client certificate against `host`.
    pub fn curl(
        &self,
        cert: Option<&str>,
        host: &str,
        extra: &[&str],
        path: &str,
    ) -> std::process::Output {
        let mut c = self.curl_command(cert, host);
        c.args(["--max-time", "10"]).args(extra);
        c.arg(self.url(host, path));
        c.output().unwrap()
    }

    /// Status code of a simple GET through curl (0 on transport failure).
    pub fn status(&self, cert: Option<&str>, host: &str, path: &str) -> u16 {
        let out = self.curl(cert, host, &["-o", "/dev/null", "-w", "%{http_code}"], path);
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    }
}

impl Gateway {
    /// Status codes of GETs for `paths`, all on one curl connection (0 for
    /// a transport failure).
    pub fn statuses(&self, cert: Option<&str>, host: &str, paths: &[String]) -> Vec<u16> {
        let mut c = self.curl_command(cert, host);
        c.args(["--max-time", "20"]);
        for p in paths {
            c.args(["-o", "/dev/null", "-w", "%{http_code}\\n"]);
            c.arg(self.url(host, p));
        }
        let out = c.output().unwrap();
        let mut v: Vec<u16> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().parse().unwrap_or(0))
            .collect();
        v.resize(paths.len(), 0);
        if v.contains(&0) {
            eprintln!("curl: {}", String::from_utf8_lossy(&out.stderr));
        }
        v
    }
}

impl Gateway {
    /// Hand-made HTTP/3 requests (`tests/clients/h3_attack.py`, aioquic),
    /// one QUIC connection each, with SNI `sni`: every case is
    /// `{"headers": [[name, value], ...], "data": optional body}`, sent
    /// exactly as given. Returns one `{status, headers, body, error}` per
    /// case (`status` null when no response came). The gateway's
    /// certificate is verified for SNI `app.test`; any other SNI is an
    /// attacker's choice the certificate need not cover, so it is not
    /// verified then.
    pub fn raw_h3(
        &self,
        cert: Option<&str>,
        sni: &str,
        cases: &[serde_json::Value],
    ) -> Vec<serde_json::Value> {
        let file = self.path("h3-cases.json");
        std::fs::write(&file, serde_json::to_vec(cases).unwrap()).unwrap();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/h3_attack.py");
        let mut c = Command::new("python3");
        c.arg(script)
            .arg(&file)
            .args(["--port", &self.port.to_string(), "--sni", sni, "--ca"])
            .arg(self.path("root.pem"));
        if sni != "app.test" {
            c.arg("--no-verify");
        }
        if let Some(name) = cert {
            c.arg("--cert")
                .arg(self.path(&format!("{name}.pem")))
                .arg("--key")
                .arg(self.path(&format!("{name}.key")));
        }
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "h3_attack.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let results: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(results.len(), cases.len(), "{results:?}");
        results
    }
}

/// An HTTP/3 request head for [`Gateway::raw_h3`]: the four pseudo-headers
/// of a GET, then `extra`, in that order.
pub fn h3_get(authority: &str, path: &str, extra: &[(&str, &str)]) -> serde_json::Value {
    let mut headers = vec![
        [":method", "GET"],
        [":scheme", "https"],
        [":authority", authority],
        [":path", path],
    ];
    headers.extend(extra.iter().map(|(k, v)| [*k, *v]));
    serde_json::json!({ "headers": headers })
}

pub fn status_of(text: &str) -> u16 {
    text.strip_prefix("HTTP/1.1 ")
        .and_then(|t| t.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Resident set size (kB) and open file descriptors of a process.
pub fn rss_and_fds(pid: u32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    (rss, fds)
}

pub fn wait_until(what: &str, secs: u64, f: impl FnMut() -> bool) {
    super::wait_until(what, Duration::from_secs(secs), f);
}

// --------------------------------------------------------- raw HTTP/2 ----

pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What every HTTP/2 conversation opens with: the client preface and an
/// empty SETTINGS frame. Frames to send follow.
pub fn h2_start() -> Vec<u8> {
    let mut h2 = H2_PREFACE.to_vec();
    h2.extend(h2_frame(4, 0, 0, &[]));
    h2
}

pub fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn hpack_int(out: &mut Vec<u8>, first: u8, prefix_bits: u8, mut v: usize) {
    let max = (1usize << prefix_bits) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

/// HPACK "literal header field without indexing — new name", no Huffman.
pub fn hpack(headers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in headers {
        out.push(0);
        hpack_int(&mut out, 0, 7, k.len());
        out.extend_from_slice(k.as_bytes());
        hpack_int(&mut out, 0, 7, v.len());
        out.extend_from_slice(v.as_bytes());
    }
    out
}

/// HEADERS (END_STREAM | END_HEADERS) for a GET.
pub fn h2_get(stream: u32, authority: &str, path: &str) -> Vec<u8> {
    h2_get_with(stream, authority, path, &[])
}

/// A GET with `extra` header fields after the pseudo-headers: HEADERS
/// (END_STREAM), then CONTINUATION frames, each at most 16,000 bytes (under
/// the default max frame size), the last one with END_HEADERS. A block that
/// fits is one HEADERS frame with END_STREAM | END_HEADERS.
pub fn h2_get_with(stream: u32, authority: &str, path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut fields = vec![
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", authority),
        (":path", path),
    ];
    fields.extend_from_slice(extra);
    let block = hpack(&fields);
    let chunks: Vec<&[u8]> = block.chunks(16000).collect();
    let mut out = Vec::new();
    for (i, c) in chunks.iter().enumerate() {
        let kind = if i == 0 { 1 } else { 9 };
        let flags = if i + 1 == chunks.len() { 0x4 } else { 0 } | if i == 0 { 0x1 } else { 0 };
        out.extend(h2_frame(kind, flags, stream, c));
    }
    out
}

/// Parses a server byte stream into (type, flags, stream, payload) frames.
pub fn h2_frames(mut b: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
    let mut v = Vec::new();
    while b.len() >= 9 {
        let len = (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]);
        if b.len() < 9 + len {
            break;
        }
        let stream = u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff;
        v.push((b[3], b[4], stream, b[9..9 + len].to_vec()));
        b = &b[9 + len..];
    }
    v
}

/// HTTP/2 `:status` of a stream's HEADERS, when the server sent it with the
/// static-table index (hyper does for 200/204/206/304/400/404/500) or as a
/// literal with an indexed name; None otherwise.
pub fn h2_status(frames: &[(u8, u8, u32, Vec<u8>)], stream: u32) -> Option<u16> {
    let (_, _, _, p) = frames.iter().find(|f| f.0 == 1 && f.2 == stream)?;
    let first = *p.first()?;
    let indexed = [
        (0x88, 200),
        (0x89, 204),
        (0x8a, 206),
        (0x8b, 304),
        (0x8c, 400),
        (0x8d, 404),
        (0x8e, 500),
    ];
    if let Some((_, s)) = indexed.iter().find(|(b, _)| *b == first) {
        return Some(*s);
    }
    // Literal with name index 8 (:status): 0x08 / 0x48 / 0x18 then length 3.
    if matches!(first & 0x0f, 8) && p.get(1) == Some(&3) {
        return std::str::from_utf8(p.get(2..5)?).ok()?.parse().ok();
    }
    None
}
