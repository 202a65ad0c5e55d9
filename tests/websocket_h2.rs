//! WebSockets over HTTP/2 (RFC 8441 extended CONNECT) through
//! `ward gateway run`: a client on Python's `h2` library
//! (`tests/clients/ws_h2_client.py`, WebSocket frames on one h2 stream, mTLS,
//! ALPN h2) and a real HTTP/1.1 WebSocket echo upstream in a thread here,
//! which checks the handshake and answers with the right
//! `Sec-WebSocket-Accept`. Only 127.0.0.1; every wait is bounded.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

mod common;

use common::Proc;
use common::gateway::{TestGateway, http_route, read_head};
use common::pki::{CLIENT, Leaf, Pki, dns};
use common::wait_until;

const CLIENT_PY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/ws_h2_client.py");

const ALLOW_POLICY: &str = r#"{
  "Version": "2026-11-01",
  "Statement": [
    {"Sid": "ClientUsesApp", "Effect": "Allow",
     "Principal": {"Spiffe": "spiffe://corp.example/ns/test/sa/client"},
     "Action": "http:GET", "Resource": "route/app/*"},
    {"Sid": "NobodyAdmin", "Effect": "Deny", "Principal": "*",
     "Action": "http:*", "Resource": "route/app/admin*"}
  ]
}"#;

const DENY_ALL_POLICY: &str = r#"{
  "Version": "2026-11-01",
  "Statement": [
    {"Sid": "Lockdown", "Effect": "Deny", "Principal": "*",
     "Action": "http:*", "Resource": "route/*"}
  ]
}"#;

// ----------------------------------------------------------- upstream ----

/// A WebSocket echo server speaking the HTTP/1.1 upgrade (RFC 6455): it
/// keeps every request head it receives, refuses a handshake without a
/// 16-byte key or version 13, answers 101 with the key's accept value, and
/// echoes each frame it reads (unmasked, as a server must send).
struct EchoUpstream {
    port: u16,
    heads: Arc<Mutex<Vec<String>>>,
    /// Connections that have ended (the gateway closed its side).
    ended: Arc<std::sync::atomic::AtomicUsize>,
}

impl EchoUpstream {
    fn start() -> EchoUpstream {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let ended = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (seen, done) = (heads.clone(), ended.clone());
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { continue };
                let (seen, done) = (seen.clone(), done.clone());
                std::thread::spawn(move || {
                    serve_ws(s, &seen);
                    done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                });
            }
        });
        EchoUpstream { port, heads, ended }
    }

    fn ended(&self) -> usize {
        self.ended.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

fn header_in<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn serve_ws(s: TcpStream, seen: &Mutex<Vec<String>>) {
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let Some(head) = read_head(&mut r) else {
        return;
    };
    seen.lock().unwrap().push(head.clone());
    let key = header_in(&head, "sec-websocket-key").unwrap_or("");
    let good = head.starts_with("GET ")
        && header_in(&head, "upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
        && header_in(&head, "sec-websocket-version") == Some("13")
        && B64.decode(key).is_ok_and(|k| k.len() == 16);
    if !good {
        let _ = w.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n");
        return;
    }
    let accept = B64.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11").as_bytes(),
    ));
    let resp = format!(
        "HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\
         sec-websocket-accept: {accept}\r\n\r\n"
    );
    if w.write_all(resp.as_bytes()).is_err() {
        return;
    }
    // Echo frames until a close frame or the end of the connection.
    loop {
        let mut h = [0u8; 2];
        if r.read_exact(&mut h).is_err() {
            return;
        }
        let opcode = h[0] & 0x0f;
        let mut len = u64::from(h[1] & 0x7f);
        if len == 126 {
            let mut b = [0u8; 2];
            r.read_exact(&mut b).unwrap();
            len = u64::from(u16::from_be_bytes(b));
        } else if len == 127 {
            let mut b = [0u8; 8];
            r.read_exact(&mut b).unwrap();
            len = u64::from_be_bytes(b);
        }
        let mut mask = [0u8; 4];
        if h[1] & 0x80 != 0 {
            r.read_exact(&mut mask).unwrap();
        }
        let mut payload = vec![0u8; usize::try_from(len).unwrap()];
        if r.read_exact(&mut payload).is_err() {
            return;
        }
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
        let mut frame = vec![0x80 | opcode];
        if payload.len() < 126 {
            frame.push(u8::try_from(payload.len()).unwrap());
        } else {
            frame.push(126);
            frame.extend(u16::try_from(payload.len()).unwrap().to_be_bytes());
        }
        frame.extend(&payload);
        if w.write_all(&frame).is_err() || opcode == 8 {
            return;
        }
    }
}

// ------------------------------------------------------------ gateway ----

struct World {
    gw: TestGateway,
    upstream: EchoUpstream,
}

common::gateway::deref_to_test_gateway!(World);

impl World {
    fn start() -> World {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(
            dir.path(),
            "ward ws test root",
            "ward ws test issuing",
            vec![dns("app.test")],
        );
        pki.issue("client", &Leaf::client(CLIENT), false);
        let upstream = EchoUpstream::start();
        let gw = TestGateway::builder(dir, pki, ALLOW_POLICY)
            .reload_poll_secs(1)
            .start(&http_route("app", "app.test", upstream.port));
        World { gw, upstream }
    }

    /// Starts the h2 WebSocket client on `path`.
    fn client(&self, path: &str) -> WsClient {
        let mut cmd = Command::new("python3");
        cmd.arg(CLIENT_PY)
            .arg("--connect")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--authority")
            .arg(format!("app.test:{}", self.port))
            .args(["--path", path, "--ca"])
            .arg(self.path("root.pem"))
            .arg("--cert")
            .arg(self.path("client.pem"))
            .arg("--key")
            .arg(self.path("client.key"));
        WsClient {
            proc: Proc::spawn_talking("websocket client", cmd, &self.path("ws_client.log")),
            seen: Vec::new(),
        }
    }
}

/// The running client: its event lines, and stdin to send messages.
struct WsClient {
    proc: Proc,
    seen: Vec<String>,
}

impl WsClient {
    /// Event lines up to and including the first one `last` accepts;
    /// panics (with what was seen) after `secs`.
    fn until(&mut self, secs: u64, last: impl Fn(&str) -> bool) -> Vec<String> {
        let got = self.proc.lines_until(Duration::from_secs(secs), last);
        self.seen.extend(got.iter().cloned());
        got
    }

    fn send(&mut self, text: &str) {
        self.proc.send_line(text);
    }

    /// The value of a response header the client printed.
    fn header(&self, name: &str) -> Option<String> {
        let prefix = format!("header {name}: ");
        self.seen
            .iter()
            .find_map(|l| l.strip_prefix(&prefix).map(str::to_string))
    }
}

fn is_status(l: &str) -> bool {
    l.starts_with("status ") || l == "closed" || l == "goaway"
}

fn is_end(l: &str) -> bool {
    l == "end" || l.starts_with("reset ") || l == "closed" || l == "goaway"
}

// -------------------------------------------------------------- tests ----

#[test]
fn an_allowed_websocket_over_http2_echoes_both_ways_as_an_upgrade_get() {
    let w = World::start();
    let mut c = w.client("/ws/chat?room=1");
    let events = c.until(10, is_status);
    assert!(
        events.contains(&"settings enable_connect_protocol=1".to_string()),
        "the gateway must announce RFC 8441 support: {events:?}"
    );
    assert_eq!(
        events.last().unwrap(),
        "status 200",
        "{events:?}\n{}",
        w.log()
    );
    assert!(
        c.header("sec-websocket-accept").is_none(),
        "no HTTP/1.1 handshake headers on h2: {:?}",
        c.seen
    );
    let decision_id = c.header("x-ward-decision-id").expect("decision id header");

    c.send("ping");
    assert_eq!(c.until(10, |l| l.starts_with("message ")), ["message ping"]);
    let long = "x".repeat(300);
    c.send(&long);
    assert_eq!(
        c.until(10, |l| l.starts_with("message ")),
        [format!("message {long}")]
    );

    // The upstream saw exactly what an HTTP/1.1 WebSocket client sends.
    let heads = w.upstream.heads();
    assert_eq!(heads.len(), 1, "{heads:?}");
    let head = &heads[0];
    assert!(
        head.starts_with("GET /ws/chat?room=1 HTTP/1.1\r\n"),
        "{head}"
    );
    assert_eq!(header_in(head, "x-ward-identity"), Some(CLIENT), "{head}");
    assert_eq!(
        header_in(head, "x-ward-decision-id"),
        Some(decision_id.as_str())
    );
    assert!(header_in(head, "x-ward-assertion").is_some(), "{head}");

    // And the policy decided `http:GET`, as for an HTTP/1.1 WebSocket.
    let d = w.decision(&decision_id).unwrap();
    assert_eq!(d["action"], "http:GET");
    assert_eq!(d["resource"], "route/app/ws/chat");
    assert_eq!(d["result"], "Allow");
    assert_eq!(d["context"]["ward:Protocol"], "h2");
}

#[test]
fn a_denied_websocket_over_http2_is_403_and_never_reaches_the_upstream() {
    let w = World::start();
    let mut c = w.client("/admin-ws");
    let events = c.until(10, is_status);
    assert_eq!(
        events.last().unwrap(),
        "status 403",
        "{events:?}\n{}",
        w.log()
    );
    let rest = c.until(10, is_end);
    assert!(
        rest.iter()
            .any(|l| l.starts_with("body ") && l.contains("denied by policy")),
        "{rest:?}"
    );
    let id = c.header("x-ward-decision-id").unwrap();
    let d = w.decision(&id).unwrap();
    assert_eq!(d["result"], "Deny");
    assert_eq!(d["matched_sid"], "NobodyAdmin");
    assert_eq!(d["action"], "http:GET");
    assert!(w.upstream.heads().is_empty(), "the upstream was contacted");
}

#[test]
fn an_open_websocket_over_http2_is_closed_when_the_policy_no_longer_allows_it() {
    let w = World::start();
    let mut c = w.client("/ws");
    assert_eq!(c.until(10, is_status).last().unwrap(), "status 200");
    c.send("before");
    assert_eq!(
        c.until(10, |l| l.starts_with("message ")),
        ["message before"]
    );
    assert_eq!(w.upstream.ended(), 0, "the upstream tunnel is open");

    let changed = Instant::now();
    w.write_policy(DENY_ALL_POLICY);
    let ended = c.until(10, is_end);
    let took = changed.elapsed();
    eprintln!("stream ended {took:?} after the policy change: {ended:?}");
    assert!(took < Duration::from_secs(5), "closed after {took:?}");
    assert!(
        !ended.iter().any(|l| l.starts_with("message ")),
        "{ended:?}"
    );
    wait_until("close logged", Duration::from_secs(5), || {
        w.decisions().iter().any(|d| d["kind"] == "close")
    });
    let close = w
        .decisions()
        .into_iter()
        .find(|d| d["kind"] == "close")
        .unwrap();
    assert_eq!(close["route"], "app");
    assert_eq!(close["principal"], CLIENT);
    assert_eq!(
        close["reason"], "policy no longer allows http:GET",
        "{close}"
    );
    let recheck = w
        .decisions()
        .into_iter()
        .find(|d| d["kind"] == "recheck")
        .expect("the re-check decision is logged");
    assert_eq!(recheck["matched_sid"], "Lockdown");
    assert_eq!(
        w.metric("ward_gateway_rechecks_closed_total{reason=\"policy\"}"),
        1.0
    );

    // The gateway's side of the upstream tunnel is closed too, so nothing
    // sent after the close can reach the upstream and come back.
    wait_until("upstream tunnel closed", Duration::from_secs(5), || {
        w.upstream.ended() == 1
    });
    c.send("after");
    let late = c.proc.line(Duration::from_millis(500));
    assert!(
        !late.as_ref().is_some_and(|l| l.starts_with("message ")),
        "{late:?}"
    );
}
