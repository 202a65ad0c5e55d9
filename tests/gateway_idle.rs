//! Parked HTTP/1.1 connections (gateway/src/park.rs) against a real
//! `ward gateway run`: a keep-alive connection left idle drops hyper's
//! buffers (the `ward_gateway_parked_connections` gauge proves it parked)
//! and must still serve what comes next byte for byte, and everything the
//! connection loop enforces (idle timeout, header read timeout, revocation,
//! SIGTERM) must still reach it. The client is an in-process rustls client
//! over a blocking socket so that the test controls every write and pause.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::hardening::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

const PARKED: &str = "ward_gateway_parked_connections";

/// A keep-alive HTTP/1.1 client over mTLS.
struct Client {
    tls: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    buf: Vec<u8>,
}

impl Client {
    fn connect(gw: &Gateway, cert: &str) -> Client {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(gw.path("root.pem")).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let chain = CertificateDer::pem_file_iter(gw.path(&format!("{cert}.pem")))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(gw.path(&format!("{cert}.key"))).unwrap();
        let mut cc = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
        cc.alpn_protocols = vec![b"http/1.1".to_vec()];
        let conn =
            rustls::ClientConnection::new(Arc::new(cc), ServerName::try_from("app.test").unwrap())
                .unwrap();
        let sock = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Client {
            tls: rustls::StreamOwned::new(conn, sock),
            buf: Vec::new(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.tls.write_all(bytes).unwrap();
        self.tls.flush().unwrap();
    }

    /// Reads one response: (status, body); `None` if the connection ends
    /// (or nothing comes for 10 s) first.
    fn response(&mut self) -> Option<(u16, String)> {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).to_string();
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .expect("responses here have a content-length");
                if self.buf.len() >= end + 4 + len {
                    let body = String::from_utf8_lossy(&self.buf[end + 4..end + 4 + len]);
                    let status = status_of(&head);
                    let body = body.to_string();
                    self.buf.drain(..end + 4 + len);
                    return Some((status, body));
                }
            }
            let mut chunk = [0u8; 4096];
            match self.tls.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    fn get(&mut self, path: &str) -> Option<(u16, String)> {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: app.test\r\n\r\n").as_bytes());
        self.response()
    }

    /// Whether the gateway closes the connection within `limit` (reads
    /// see EOF or an error rather than waiting).
    fn closed_within(&mut self, limit: Duration) -> bool {
        let start = Instant::now();
        self.tls
            .sock
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        while start.elapsed() < limit {
            let mut b = [0u8; 64];
            match self.tls.read(&mut b) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return true,
            }
        }
        false
    }
}

/// Waits (at most 5 s) until `n` connections are parked.
fn wait_parked(gw: &Gateway, n: f64) {
    wait_until(&format!("{n} parked connection(s)"), 5, || {
        gw.metric(PARKED) == n
    });
}

#[test]
fn an_idle_keep_alive_connection_parks_and_serves_the_next_request() {
    let gw = Gateway::start("");
    let mut c = Client::connect(&gw, "client");
    assert_eq!(c.get("/v1/first"), Some((200, "ok".into())));
    wait_parked(&gw, 1.0);
    assert_eq!(c.get("/v1/second"), Some((200, "ok".into())));
    // A denied request on the resumed connection is still decided.
    assert_eq!(c.get("/admin").map(|r| r.0), Some(403));
    wait_parked(&gw, 1.0);
    assert_eq!(c.get("/v1/third"), Some((200, "ok".into())));
    assert_eq!(gw.app.targets(), ["/v1/first", "/v1/second", "/v1/third"]);
    assert_eq!(gw.metric("ward_gateway_active_connections"), 1.0);
    drop(c);
    wait_until("connection counted as closed", 5, || {
        gw.metric("ward_gateway_active_connections") == 0.0 && gw.metric(PARKED) == 0.0
    });
}

#[test]
fn pipelined_requests_in_one_write_are_answered_in_order_after_a_park() {
    let gw = Gateway::start("");
    let mut c = Client::connect(&gw, "client");
    assert_eq!(c.get("/v1/warm").map(|r| r.0), Some(200));
    wait_parked(&gw, 1.0);
    c.send(
        b"GET /v1/p1 HTTP/1.1\r\nHost: app.test\r\n\r\n\
          GET /admin HTTP/1.1\r\nHost: app.test\r\n\r\n\
          GET /v1/p3 HTTP/1.1\r\nHost: app.test\r\n\r\n",
    );
    assert_eq!(c.response().map(|r| r.0), Some(200));
    assert_eq!(c.response().map(|r| r.0), Some(403));
    assert_eq!(c.response().map(|r| r.0), Some(200));
    assert_eq!(gw.app.targets(), ["/v1/warm", "/v1/p1", "/v1/p3"]);
    // And the same for a pipeline whose second head is split across a
    // park: the first half must wait in the parked connection.
    c.send(b"GET /v1/p4 HTTP/1.1\r\nHost: app.test\r\n\r\nGET /v1/p5 HTTP/1.1\r\nHo");
    assert_eq!(c.response().map(|r| r.0), Some(200));
    std::thread::sleep(Duration::from_millis(600));
    wait_parked(&gw, 1.0);
    c.send(b"st: app.test\r\n\r\n");
    assert_eq!(c.response().map(|r| r.0), Some(200));
    assert_eq!(
        gw.app.targets(),
        ["/v1/warm", "/v1/p1", "/v1/p3", "/v1/p4", "/v1/p5"]
    );
}

#[test]
fn a_request_head_split_across_a_park_is_served() {
    let gw = Gateway::start("");
    let mut c = Client::connect(&gw, "client");
    assert_eq!(c.get("/v1/warm").map(|r| r.0), Some(200));
    wait_parked(&gw, 1.0);
    c.send(b"GET /v1/split HTTP/1.1\r\nHost: app.test\r\nX-Fir");
    // Longer than the quiet period: the half head is parked with the
    // connection.
    std::thread::sleep(Duration::from_millis(600));
    wait_parked(&gw, 1.0);
    c.send(b"st: one\r\nX-Second: two\r\n\r\n");
    assert_eq!(c.response(), Some((200, "ok".into())));
    let heads = gw.app.heads();
    let last = heads.last().unwrap().to_ascii_lowercase();
    assert!(last.starts_with("get /v1/split http/1.1"), "{last}");
    assert!(last.contains("x-first: one"), "{last}");
    assert!(last.contains("x-second: two"), "{last}");
}

#[test]
fn a_head_dribbled_across_parks_still_times_out() {
    let gw = Gateway::start("header_read_timeout_secs = 2\n");
    let mut c = Client::connect(&gw, "client");
    assert_eq!(c.get("/v1/warm").map(|r| r.0), Some(200));
    wait_parked(&gw, 1.0);
    c.send(b"GET /v1/slow-head HTTP/1.1\r\nHost: app.test\r\n");
    let start = Instant::now();
    let mut closed = false;
    // Every pause is longer than the quiet period, so the connection parks
    // between the dribbles: the header clock must survive the parks.
    while start.elapsed() < Duration::from_secs(8) {
        std::thread::sleep(Duration::from_millis(400));
        if c.tls.write_all(b"X-Slow: a\r\n").is_err() || c.tls.flush().is_err() {
            closed = true;
            break;
        }
        if c.closed_within(Duration::from_millis(100)) {
            closed = true;
            break;
        }
    }
    assert!(closed, "a dribbled head outlived the header read timeout");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "closed only after {:?}",
        start.elapsed()
    );
    assert_eq!(gw.app.targets(), ["/v1/warm"]);
}

#[test]
fn a_client_that_never_sends_a_request_is_closed_after_the_header_timeout() {
    let gw = Gateway::start("header_read_timeout_secs = 2\n");
    let mut c = Client::connect(&gw, "client");
    // The handshake completes on the first read or write: write nothing,
    // but make rustls finish it.
    c.tls.conn.complete_io(&mut c.tls.sock).unwrap();
    wait_parked(&gw, 1.0);
    let start = Instant::now();
    assert!(c.closed_within(Duration::from_secs(6)));
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn between_requests_only_the_idle_timeout_applies_not_the_header_timeout() {
    let gw = Gateway::start("header_read_timeout_secs = 1\n");
    let mut c = Client::connect(&gw, "client");
    assert_eq!(c.get("/v1/a").map(|r| r.0), Some(200));
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(c.get("/v1/b").map(|r| r.0), Some(200));
}

#[test]
fn the_idle_timeout_closes_a_parked_connection() {
    let gw = Gateway::start("idle_timeout_secs = 2\n");
    let mut c = Client::connect(&gw, "client");
    assert_eq!(c.get("/v1/a").map(|r| r.0), Some(200));
    wait_parked(&gw, 1.0);
    assert!(c.closed_within(Duration::from_secs(6)));
    assert!(gw.metric("ward_gateway_limited_total{limit=\"idle\"}") >= 1.0);
    wait_until("parked gauge back to 0", 5, || {
        gw.metric(PARKED) == 0.0 && gw.metric("ward_gateway_active_connections") == 0.0
    });
}

#[test]
fn revoking_the_client_certificate_closes_a_parked_connection() {
    let mut gw = Gateway::start("");
    let serial = gw.pki.issue_client("later", CLIENT);
    let mut revoked = Client::connect(&gw, "later");
    let mut kept = Client::connect(&gw, "client");
    assert_eq!(revoked.get("/v1/a").map(|r| r.0), Some(200));
    assert_eq!(kept.get("/v1/a").map(|r| r.0), Some(200));
    wait_parked(&gw, 2.0);
    gw.pki.revoke(serial);
    gw.sighup();
    assert!(
        revoked.closed_within(Duration::from_secs(10)),
        "a parked connection outlived the revocation of its certificate"
    );
    assert!(
        gw.metric("ward_gateway_rechecks_closed_total{reason=\"revoked_or_untrusted\"}") >= 1.0
    );
    // The other parked connection was re-checked too, and kept.
    assert_eq!(kept.get("/v1/b").map(|r| r.0), Some(200));
}

#[test]
fn sigterm_closes_parked_connections_at_once() {
    let mut gw = Gateway::start("shutdown_grace_secs = 30\n");
    let mut clients: Vec<Client> = (0..3).map(|_| Client::connect(&gw, "client")).collect();
    for c in &mut clients {
        assert_eq!(c.get("/v1/a").map(|r| r.0), Some(200));
    }
    wait_parked(&gw, 3.0);
    let start = Instant::now();
    gw.signal("TERM");
    for c in &mut clients {
        assert!(c.closed_within(Duration::from_secs(5)));
    }
    wait_until("gateway exited", 5, || !gw.alive());
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "parked connections held the drain for {:?}",
        start.elapsed()
    );
}
