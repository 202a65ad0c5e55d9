//! Support for the HTTP/3 gateway tests (`tests/gateway_h3.rs`): an rcgen PKI (root → intermediate
//! → leaves, a CRL from the intermediate), a counting HTTP/1.1 upstream and
//! a real `ward gateway run` process on a port free on both TCP and UDP.
//!
//! The PKI is the shared one of `common::pki`, the process the shared
//! `common::gateway::TestGateway`. Only 127.0.0.1; every wait is bounded;
//! the gateway process is killed on drop.

#![allow(dead_code)]

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::gateway::{CountingUpstream, TestGateway, content_length, http_route, stream_ticks};
use super::pki::gateway_sans;
pub use super::pki::{CLIENT, Leaf, OTHER, Pki};

/// The HTTP/3 tests' upstream: counts requests and answers with the
/// request head (and body) it received as the body; `GET /stream` streams
/// for 20 s.
pub fn start_upstream() -> CountingUpstream {
    CountingUpstream::start(echo_head_and_body)
}

fn echo_head_and_body(head: &str, r: &mut BufReader<TcpStream>, w: &mut TcpStream) -> bool {
    if head.starts_with("GET /stream") {
        // A long streaming response: a chunk every 200 ms for 20 s.
        return stream_ticks(
            w,
            "content-type: text/plain\r\n",
            100,
            Duration::from_millis(200),
        );
    }
    let len = content_length(head);
    let mut body = vec![0; len];
    if r.read_exact(&mut body).is_err() {
        return false;
    }
    let mut reply = head.to_string();
    reply.push_str(&String::from_utf8_lossy(&body));
    let resp = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{reply}",
        reply.len()
    );
    w.write_all(resp.as_bytes()).is_ok()
}

pub const ALLOW_POLICY: &str = r#"{
  "Version": "2026-11-01",
  "Statement": [
    {"Sid": "ClientUsesApp", "Effect": "Allow",
     "Principal": {"Spiffe": "spiffe://corp.example/ns/test/sa/client"},
     "Action": ["http:GET", "http:POST"], "Resource": "route/app/*"},
    {"Sid": "NobodyAdmin", "Effect": "Deny", "Principal": "*",
     "Action": "http:*", "Resource": "route/app/admin*"}
  ]
}"#;

pub const DENY_ALL_POLICY: &str = r#"{
  "Version": "2026-11-01",
  "Statement": [
    {"Sid": "Lockdown", "Effect": "Deny", "Principal": "*",
     "Action": ["http:*", "tcp:*"], "Resource": "route/*"}
  ]
}"#;

/// A gateway with one HTTP route `app` to an [`Upstream`]; everything else
/// (paths, log, metrics, signals, the PKI) is the shared [`TestGateway`]
/// it derefs to.
pub struct Gateway {
    pub gw: TestGateway,
    pub upstream: CountingUpstream,
}

super::gateway::deref_to_test_gateway!(Gateway);

impl Gateway {
    /// Starts a gateway with one HTTP route `app` (host `app.test`) and
    /// `extra` appended to the config; `prepare` runs on the PKI before the
    /// gateway starts (to issue or revoke certificates).
    pub fn start(extra: &str, prepare: impl Fn(&mut Pki)) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let mut pki = Pki::new(
            dir.path(),
            "ward test root",
            "ward test issuing",
            gateway_sans(&["app.test"]),
        );
        pki.issue("client", &Leaf::client(CLIENT), false);
        pki.issue("other", &Leaf::client(OTHER), false);
        prepare(&mut pki);
        let upstream = start_upstream();
        let gw = TestGateway::builder(dir, pki, ALLOW_POLICY)
            .quic()
            .reload_poll_secs(1)
            .start(&format!(
                "\n{extra}\n{}",
                http_route("app", "app.test", upstream.port)
            ));
        Gateway { gw, upstream }
    }
}

/// Polls `f` for up to 15 s.
pub fn wait_until(what: &str, f: impl FnMut() -> bool) {
    super::wait_until(what, Duration::from_secs(15), f);
}
