//! HTTP/3 on the gateway must let through exactly what TCP lets through.
//!
//! A conformance matrix runs the same cases (no certificate, wrong CA,
//! expired, revoked, wrong EKU, no or two SPIFFE IDs, denied by policy,
//! allowed) over HTTP/1.1 and HTTP/2 (curl), and over HTTP/3 with two
//! independent clients: Python's aioquic (`tests/clients/h3_client.py`) and
//! quinn + h3. Every client must see the same outcome. Further tests: no
//! session ticket (so no 0-RTT), and an open HTTP/3 connection re-checked on
//! policy change and closed with ward's application error code when its
//! certificate is revoked. Only 127.0.0.1; every wait is bounded.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use common::h3::{ALLOW_POLICY, CLIENT, DENY_ALL_POLICY, Gateway, Leaf, Pki, wait_until};
use common::pki::uri;
use rcgen::{ExtendedKeyUsagePurpose, SanType};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use time::OffsetDateTime;

/// ward's application close code for a connection no longer allowed
/// ("WARD"); see `ward_gateway::quic::CLOSE_NO_LONGER_ALLOWED`.
const CLOSE_NO_LONGER_ALLOWED: u32 = 0x5741_5244;

/// What a client saw: no HTTP response at all, or a status.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Refused,
    TimedOut,
    Status(u16),
}

#[derive(Debug)]
struct Reply {
    outcome: Outcome,
    headers: Vec<(String, String)>,
    body: String,
    detail: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a status line (`HTTP/1.1 200 OK`, `HTTP/2 403`, `status: 200`),
/// headers and body.
fn parse(text: &str) -> (u16, Vec<(String, String)>, String) {
    let text = text.replace("\r\n", "\n");
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_ascii_lowercase(), v.trim().to_string()))
        })
        .collect();
    (status, headers, body.to_string())
}

fn curl(gw: &Gateway, version: &str, cert: Option<&str>, path: &str) -> Reply {
    let mut c = gw.curl_command(cert, "app.test");
    c.args(["-i", "--max-time", "10", version])
        .arg(gw.url("app.test", path));
    let out = c.output().unwrap();
    let detail = String::from_utf8_lossy(&out.stderr).to_string();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    if stdout.is_empty() {
        let outcome = if out.status.code() == Some(28) {
            Outcome::TimedOut
        } else {
            Outcome::Refused
        };
        return Reply {
            outcome,
            headers: Vec::new(),
            body: String::new(),
            detail,
        };
    }
    let (status, headers, body) = parse(&stdout);
    Reply {
        outcome: Outcome::Status(status),
        headers,
        body,
        detail,
    }
}

fn aioquic(gw: &Gateway, cert: Option<&str>, path: &str, extra: &[&str]) -> Reply {
    let out = gw
        .h3_client_command(cert, path)
        .args(["--timeout", "10"])
        .args(extra)
        .output()
        .unwrap();
    let detail = String::from_utf8_lossy(&out.stderr).to_string();
    let (outcome, text) = match out.status.code() {
        Some(0) => {
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            let (status, _, _) = parse(&text);
            (Outcome::Status(status), text)
        }
        Some(2) => (Outcome::Refused, String::new()),
        Some(3) => (Outcome::TimedOut, String::new()),
        other => panic!("h3_client.py failed ({other:?}): {detail}"),
    };
    let (_, headers, body) = parse(&text);
    Reply {
        outcome,
        headers,
        body,
        detail,
    }
}

// ------------------------------------------------- quinn + h3 client ----

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn client_config(gw: &Gateway, cert: Option<&str>) -> quinn::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(gw.path("root.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots);
    let mut cc = match cert {
        Some(name) => {
            let chain = CertificateDer::pem_file_iter(gw.path(&format!("{name}.pem")))
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_file(gw.path(&format!("{name}.key"))).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    cc.alpn_protocols = vec![b"h3".to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(cc).unwrap();
    quinn::ClientConfig::new(Arc::new(crypto))
}

/// One quinn + h3 connection to the gateway, kept open across requests.
struct H3Client {
    conn: quinn::Connection,
    send: h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
    _endpoint: quinn::Endpoint,
    _driver: tokio::task::JoinHandle<()>,
    port: u16,
}

impl H3Client {
    /// Connects; `Err` with the reason when the connection cannot be set
    /// up (for a refused certificate it usually can: the refusal arrives
    /// with the first request).
    async fn connect(gw: &Gateway, cert: Option<&str>) -> Result<H3Client, String> {
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        endpoint.set_default_client_config(client_config(gw, cert));
        let addr = format!("127.0.0.1:{}", gw.port).parse().unwrap();
        let conn = endpoint
            .connect(addr, "app.test")
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(conn.clone()))
            .await
            .map_err(|e| e.to_string())?;
        let driver = tokio::spawn(async move {
            let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
        });
        Ok(H3Client {
            conn,
            send,
            _endpoint: endpoint,
            _driver: driver,
            port: gw.port,
        })
    }

    async fn get(&mut self, path: &str) -> Result<Reply, String> {
        let req = http::Request::get(format!("https://app.test:{}{path}", self.port))
            .body(())
            .unwrap();
        let mut stream = self
            .send
            .send_request(req)
            .await
            .map_err(|e| e.to_string())?;
        stream.finish().await.map_err(|e| e.to_string())?;
        let resp = stream.recv_response().await.map_err(|e| e.to_string())?;
        let mut body = Vec::new();
        while let Some(mut chunk) = stream.recv_data().await.map_err(|e| e.to_string())? {
            body.extend_from_slice(&chunk.copy_to_bytes(chunk.remaining()));
        }
        Ok(Reply {
            outcome: Outcome::Status(resp.status().as_u16()),
            headers: resp
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                .collect(),
            body: String::from_utf8_lossy(&body).to_string(),
            detail: String::new(),
        })
    }
}

/// A single GET over a fresh quinn + h3 connection.
fn quinn_h3(gw: &Gateway, cert: Option<&str>, path: &str) -> Reply {
    runtime().block_on(async {
        let attempt = async {
            let mut client = H3Client::connect(gw, cert).await?;
            let reply = client.get(path).await;
            client.conn.close(0u32.into(), b"done");
            reply
        };
        match tokio::time::timeout(Duration::from_secs(10), attempt).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(detail)) => Reply {
                outcome: Outcome::Refused,
                headers: Vec::new(),
                body: String::new(),
                detail,
            },
            Err(_) => Reply {
                outcome: Outcome::TimedOut,
                headers: Vec::new(),
                body: String::new(),
                detail: "timed out".into(),
            },
        }
    })
}

// -------------------------------------------------------------- tests ----

/// Issues the certificates of the matrix's bad cases.
fn bad_certificates(pki: &mut Pki) {
    let now = OffsetDateTime::now_utc();
    pki.issue("foreign", &Leaf::client(CLIENT), true);
    let mut expired = Leaf::client(CLIENT);
    expired.not_before = now - Duration::from_secs(7200);
    expired.not_after = now - Duration::from_secs(3600);
    pki.issue("expired", &expired, false);
    let revoked = pki.issue("revoked", &Leaf::client(CLIENT), false);
    pki.revoke(revoked);
    let mut no_spiffe = Leaf::client(CLIENT);
    no_spiffe.sans = vec![SanType::Rfc822Name(
        "alice@corp.example".try_into().unwrap(),
    )];
    pki.issue("nospiffe", &no_spiffe, false);
    let mut two = Leaf::client(CLIENT);
    two.sans
        .push(uri("spiffe://corp.example/ns/test/sa/second"));
    pki.issue("twospiffe", &two, false);
    let mut server_only = Leaf::client(CLIENT);
    server_only.eku = vec![ExtendedKeyUsagePurpose::ServerAuth];
    pki.issue("servereku", &server_only, false);
}

const TCP_HANDSHAKES: &str = "ward_gateway_handshakes_total";
const QUIC_HANDSHAKES: &str = "ward_gateway_quic_handshakes_total";

/// `reason → count` of a handshake counter's failed samples.
fn failed_reasons(gw: &Gateway, family: &str) -> BTreeMap<String, f64> {
    let (_, metrics) = gw.admin_get("/metrics");
    metrics
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(family)?.strip_prefix("{reason=\"")?;
            let (reason, rest) = rest.split_once('"')?;
            let (labels, value) = rest.rsplit_once(' ')?;
            labels
                .contains("result=\"failed\"")
                .then(|| Some((reason.to_string(), value.parse().ok()?)))?
        })
        .collect()
}

#[test]
fn conformance_matrix_http1_http2_http3_see_identical_outcomes() {
    let gw = Gateway::start("", bad_certificates);
    let cases: &[(&str, Option<&str>, &str, Outcome)] = &[
        ("allowed", Some("client"), "/hello", Outcome::Status(200)),
        (
            "denied by policy (explicit deny)",
            Some("client"),
            "/admin",
            Outcome::Status(403),
        ),
        (
            "denied by policy (no allow)",
            Some("other"),
            "/hello",
            Outcome::Status(403),
        ),
        ("no certificate", None, "/hello", Outcome::Refused),
        ("wrong CA", Some("foreign"), "/hello", Outcome::Refused),
        ("expired", Some("expired"), "/hello", Outcome::Refused),
        ("revoked", Some("revoked"), "/hello", Outcome::Refused),
        ("no SPIFFE ID", Some("nospiffe"), "/hello", Outcome::Refused),
        (
            "two SPIFFE IDs",
            Some("twospiffe"),
            "/hello",
            Outcome::Refused,
        ),
        (
            "no clientAuth EKU",
            Some("servereku"),
            "/hello",
            Outcome::Refused,
        ),
    ];
    let mut failures = Vec::new();
    let mut allowed = 0;
    for (name, cert, path, expected) in cases {
        let before: BTreeMap<_, _> = [TCP_HANDSHAKES, QUIC_HANDSHAKES]
            .into_iter()
            .map(|f| (f, failed_reasons(&gw, f)))
            .collect();
        let replies = [
            ("HTTP/1.1 curl", curl(&gw, "--http1.1", *cert, path)),
            ("HTTP/2 curl", curl(&gw, "--http2", *cert, path)),
            ("HTTP/3 aioquic", aioquic(&gw, *cert, path, &[])),
            ("HTTP/3 quinn+h3", quinn_h3(&gw, *cert, path)),
        ];
        if *expected == Outcome::Refused {
            // Both transports refuse for the same reason, counted under the
            // same label (the server counts after the client has given up,
            // hence the wait).
            let delta = |family: &str| {
                let now = failed_reasons(&gw, family);
                now.into_iter()
                    .filter_map(|(k, v)| {
                        let d = v - before
                            .get(family)
                            .and_then(|m| m.get(&k))
                            .copied()
                            .unwrap_or(0.0);
                        (d > 0.0).then_some((k, d))
                    })
                    .collect::<BTreeMap<String, f64>>()
            };
            let mut seen = (BTreeMap::new(), BTreeMap::new());
            wait_until("the refusals to be counted", || {
                seen = (delta(TCP_HANDSHAKES), delta(QUIC_HANDSHAKES));
                seen.0.values().sum::<f64>() >= 2.0 && seen.1.values().sum::<f64>() >= 2.0
            });
            assert_eq!(
                seen.0, seen.1,
                "{name}: TCP vs QUIC handshake failure reasons"
            );
            assert_eq!(seen.0.len(), 1, "{name}: {seen:?}");
        }
        for (client, reply) in &replies {
            if reply.outcome != *expected {
                failures.push(format!(
                    "{name}: {client} saw {:?}, expected {expected:?} ({})",
                    reply.outcome,
                    reply.detail.trim()
                ));
                continue;
            }
            if let Outcome::Status(status) = expected {
                assert!(
                    reply.header("x-ward-decision-id").is_some(),
                    "{name}/{client}: no decision id: {reply:?}"
                );
                if *status == 200 {
                    allowed += 1;
                    // The upstream echoes the request head it received.
                    let body = reply.body.to_ascii_lowercase();
                    assert!(
                        body.contains(&format!("x-ward-identity: {CLIENT}")),
                        "{name}/{client}: {body}"
                    );
                    assert!(body.contains("x-ward-assertion: ey"), "{client}: {body}");
                }
            }
            if (client.starts_with("HTTP/1.1") || client.starts_with("HTTP/2"))
                && let Outcome::Status(_) = expected
            {
                assert_eq!(
                    reply.header("alt-svc"),
                    Some(format!("h3=\":{}\"; ma=86400", gw.port).as_str()),
                    "{name}/{client}: {reply:?}"
                );
            }
        }
    }
    assert!(failures.is_empty(), "{}\n{}", failures.join("\n"), gw.log());
    // Only allowed requests reached the upstream.
    assert_eq!(allowed, 4);
    assert_eq!(gw.upstream.count(), allowed);

    // Every allowed request was decided and logged, once per protocol, with
    // ward:Protocol telling them apart.
    let decisions = gw.decisions();
    let protocols: Vec<&str> = decisions
        .iter()
        .filter(|d| d["result"] == "Allow")
        .filter_map(|d| d["context"]["ward:Protocol"].as_str())
        .collect();
    assert_eq!(
        protocols.iter().filter(|p| **p == "h3").count(),
        2,
        "{decisions:?}"
    );
    assert!(protocols.contains(&"h1") && protocols.contains(&"h2"));
    let h3_denied = decisions
        .iter()
        .filter(|d| d["result"] == "Deny" && d["context"]["ward:Protocol"] == "h3")
        .count();
    assert_eq!(h3_denied, 4, "two denied cases × two HTTP/3 clients");
    let h3_line = decisions
        .iter()
        .find(|d| d["result"] == "Allow" && d["context"]["ward:Protocol"] == "h3")
        .unwrap();
    assert_eq!(h3_line["principal"], CLIENT);
    assert_eq!(h3_line["route"], "app");
    assert_eq!(h3_line["action"], "http:GET");
    assert_eq!(h3_line["context"]["ward:TlsVersion"], "TLSv1.3");

    // QUIC handshakes are counted: 2 clients × 3 good certificates, and
    // 2 × 7 refusals.
    let (_, metrics) = gw.admin_get("/metrics");
    let sum = |prefix: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert_eq!(
        sum("ward_gateway_quic_handshakes_total{reason=\"\",result=\"ok\"}"),
        6.0,
        "{metrics}"
    );
    assert_eq!(
        sum("ward_gateway_quic_handshakes_total{reason=\"no_certificate\",result=\"failed\"}"),
        2.0,
        "{metrics}"
    );
    assert!(
        sum("ward_gateway_quic_handshakes_total{") >= 20.0,
        "{metrics}"
    );
    assert_eq!(
        sum("ward_gateway_quic_streams_total{result=\"ok\"}"),
        6.0,
        "{metrics}"
    );
}

#[test]
fn no_session_ticket_is_issued_so_0rtt_is_impossible() {
    let gw = Gateway::start("", |_| {});
    let reply = aioquic(&gw, Some("client"), "/hello", &["--report-ticket"]);
    assert_eq!(reply.outcome, Outcome::Status(200), "{}", reply.detail);
    assert!(
        reply.body.contains("session_ticket: no"),
        "a ticket would allow 0-RTT (replayable) requests: {}",
        reply.body
    );
    assert_eq!(
        gw.metric("ward_gateway_quic_0rtt_total{result=\"none\"}"),
        1.0
    );
    assert_eq!(
        gw.metric("ward_gateway_quic_0rtt_total{result=\"accepted\"}"),
        0.0
    );
}

#[test]
fn open_h3_connection_follows_policy_reloads_and_is_closed_when_revoked() {
    let mut gw = Gateway::start("", |_| {});
    let victim = gw.pki.issue("victim", &Leaf::client(CLIENT), false);
    let rt = runtime();
    let mut client = rt
        .block_on(async {
            tokio::time::timeout(
                Duration::from_secs(10),
                H3Client::connect(&gw, Some("victim")),
            )
            .await
        })
        .unwrap()
        .unwrap();
    let mut get = |path: &str| {
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(10), client.get(path))
                .await
                .unwrap()
                .unwrap()
        })
        .outcome
    };
    assert_eq!(get("/hello"), Outcome::Status(200));

    // The next request on the same connection is decided by the new policy.
    gw.write_policy(DENY_ALL_POLICY);
    wait_until("deny-all policy on the open connection", || {
        get("/hello") == Outcome::Status(403)
    });
    gw.write_policy(ALLOW_POLICY);
    wait_until("allow policy again", || {
        get("/hello") == Outcome::Status(200)
    });

    // Revoked: the open connection is closed with ward's code, and a new
    // connection with the same certificate is refused (new server config).
    gw.pki.revoke(victim);
    gw.sighup();
    let closed = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(15), client.conn.closed()).await
    });
    let closed = closed.expect("the revoked connection was not closed");
    match closed {
        quinn::ConnectionError::ApplicationClosed(ac) => {
            assert_eq!(
                ac.error_code,
                quinn::VarInt::from_u32(CLOSE_NO_LONGER_ALLOWED),
                "{ac:?}"
            );
            let reason = String::from_utf8_lossy(&ac.reason).to_string();
            assert!(reason.contains("no longer valid"), "{reason}");
        }
        other => panic!("closed with {other:?}, not ward's application code"),
    }
    let started = Instant::now();
    assert_eq!(
        quinn_h3(&gw, Some("victim"), "/hello").outcome,
        Outcome::Refused
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let closes: Vec<_> = gw
        .decisions()
        .into_iter()
        .filter(|d| d["kind"] == "close")
        .collect();
    assert_eq!(closes.len(), 1, "{closes:?}");
    assert!(
        gw.metric("ward_gateway_rechecks_closed_total{reason=\"revoked_or_untrusted\"}") >= 1.0
    );
}

#[test]
fn request_bodies_stream_over_h3_and_spoofed_ward_headers_are_stripped() {
    let gw = Gateway::start("", |_| {});
    let reply = aioquic(
        &gw,
        Some("client"),
        "/upload",
        &[
            "--method",
            "POST",
            "--header",
            "x-ward-identity: spiffe://corp.example/ns/test/sa/admin",
            "--header",
            "content-type: text/plain",
            "--data",
            "ping over quic",
        ],
    );
    assert_eq!(reply.outcome, Outcome::Status(200), "{}", reply.detail);
    let body = reply.body.to_ascii_lowercase();
    assert!(body.starts_with("post /upload http/1.1"), "{body}");
    assert!(body.contains("ping over quic"), "{body}");
    assert!(
        body.contains(&format!("x-ward-identity: {CLIENT}")),
        "{body}"
    );
    assert!(
        !body.contains("sa/admin"),
        "spoofed identity reached the upstream: {body}"
    );
    let post = gw
        .decisions()
        .into_iter()
        .find(|d| d["action"] == "http:POST")
        .unwrap();
    assert_eq!(post["context"]["ward:Protocol"], "h3");
    assert_eq!(post["result"], "Allow");
}

#[test]
fn h3_connections_count_against_the_per_identity_limit() {
    let gw = Gateway::start("[limits]\nmax_connections_per_identity = 1\n", |_| {});
    let rt = runtime();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(20), async {
            let mut first = H3Client::connect(&gw, Some("client")).await.unwrap();
            assert_eq!(
                first.get("/hello").await.unwrap().outcome,
                Outcome::Status(200)
            );
            // A second connection of the same identity, over QUIC or TCP,
            // is over the limit. The gateway closes it right after the
            // handshake, so the client may learn it while still setting up
            // HTTP/3 (h3's control streams) or at its first request: wait
            // for the close on the bare QUIC connection instead of racing.
            let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
            endpoint.set_default_client_config(client_config(&gw, Some("client")));
            let addr = format!("127.0.0.1:{}", gw.port).parse().unwrap();
            let closed = match endpoint.connect(addr, "app.test").unwrap().await {
                Ok(second) => second.closed().await,
                Err(e) => e,
            };
            match closed {
                quinn::ConnectionError::ApplicationClosed(ac) => {
                    assert_eq!(ac.error_code, quinn::VarInt::from_u32(0x0107), "{ac:?}");
                }
                other => panic!("{other:?}"),
            }
            // The first connection is unaffected.
            assert_eq!(
                first.get("/hello").await.unwrap().outcome,
                Outcome::Status(200)
            );
        })
        .await
        .unwrap();
    });
    let tcp = curl(&gw, "--http2", Some("client"), "/hello");
    assert_eq!(tcp.outcome, Outcome::Refused, "{tcp:?}");
    assert!(gw.metric("ward_gateway_limited_total{limit=\"per_identity\"}") >= 2.0);
}

#[test]
fn open_h3_connection_is_closed_when_the_certificate_expires() {
    let gw = Gateway::start("", |_| {});
    let mut short = Leaf::client(CLIENT);
    short.not_after = OffsetDateTime::now_utc() + Duration::from_secs(4);
    gw.pki.issue("short", &short, false);
    let rt = runtime();
    let closed = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(20), async {
            let mut client = H3Client::connect(&gw, Some("short")).await.unwrap();
            assert_eq!(
                client.get("/hello").await.unwrap().outcome,
                Outcome::Status(200)
            );
            client.conn.closed().await
        })
        .await
        .unwrap()
    });
    match closed {
        quinn::ConnectionError::ApplicationClosed(ac) => {
            assert_eq!(
                ac.error_code,
                quinn::VarInt::from_u32(CLOSE_NO_LONGER_ALLOWED)
            );
            assert!(String::from_utf8_lossy(&ac.reason).contains("expired"));
        }
        other => panic!("{other:?}"),
    }
    wait_until("the close in the decision log", || {
        gw.decisions()
            .iter()
            .any(|d| d["kind"] == "close" && d["reason"] == "client certificate expired")
    });
}

#[test]
fn sigterm_closes_idle_h3_connections_instead_of_waiting_for_the_deadline() {
    let mut gw = Gateway::start("[limits]\nshutdown_grace_secs = 30\n", |_| {});
    let rt = runtime();
    let mut client = rt
        .block_on(async {
            tokio::time::timeout(Duration::from_secs(10), async {
                let mut c = H3Client::connect(&gw, Some("client")).await?;
                c.get("/hello").await?;
                Ok::<_, String>(c)
            })
            .await
        })
        .unwrap()
        .unwrap();
    let started = Instant::now();
    assert!(
        gw.terminate_within(Duration::from_secs(10)),
        "the gateway waited for an idle HTTP/3 connection:\n{}",
        gw.log()
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let closed = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(5), client.conn.closed()).await
    });
    match closed {
        Ok(quinn::ConnectionError::ApplicationClosed(ac)) => {
            assert_eq!(ac.error_code, quinn::VarInt::from_u32(0x0100), "{ac:?}");
        }
        other => panic!("{other:?}"),
    }
    // The client's request after GOAWAY is not sent anywhere.
    let after = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(5), client.get("/hello")).await
    });
    assert!(matches!(after, Ok(Err(_))), "{after:?}");
}

#[test]
fn open_h3_stream_is_reset_when_the_policy_no_longer_allows_it() {
    let gw = Gateway::start("", |_| {});
    let rt = runtime();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(30), async {
            let mut c = H3Client::connect(&gw, Some("client")).await.unwrap();
            let req = http::Request::get(format!("https://app.test:{}/stream", gw.port))
                .body(())
                .unwrap();
            let mut stream = c.send.send_request(req).await.unwrap();
            stream.finish().await.unwrap();
            let resp = stream.recv_response().await.unwrap();
            assert_eq!(resp.status(), 200);
            assert!(stream.recv_data().await.unwrap().is_some());
            gw.write_policy(DENY_ALL_POLICY);
            let ended = loop {
                match stream.recv_data().await {
                    Ok(Some(_)) => continue,
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e),
                }
            };
            assert!(
                ended.is_err(),
                "the stream ended cleanly: a killed response must not look whole"
            );
            // The connection itself is still fine; its next request is
            // decided by the new policy.
            assert_eq!(c.get("/hello").await.unwrap().outcome, Outcome::Status(403));
        })
        .await
        .unwrap();
    });
    let close = gw
        .decisions()
        .into_iter()
        .find(|d| d["kind"] == "close")
        .unwrap();
    assert_eq!(close["route"], "app");
    assert_eq!(close["reason"], "policy no longer allows http:GET");
    assert_eq!(
        gw.metric("ward_gateway_quic_streams_total{result=\"killed\"}"),
        1.0
    );
}

#[test]
fn a_stream_whose_headers_never_arrive_is_dropped_after_the_header_timeout() {
    let gw = Gateway::start("[limits]\nheader_read_timeout_secs = 1\n", |_| {});
    let rt = runtime();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(20), async {
            // A real HTTP/3 client that also opens a request stream and
            // sends only the start of a HEADERS frame (type 1, 16 bytes
            // long): a slowloris on one stream.
            let mut client = H3Client::connect(&gw, Some("client")).await.unwrap();
            let (mut send, mut recv) = client.conn.open_bi().await.unwrap();
            send.write_all(&[0x01, 0x10, 0x00]).await.unwrap();
            let started = Instant::now();
            // The gateway gives up on the stream: it ends without a
            // response.
            let read = recv.read_to_end(1024).await;
            assert!(matches!(&read, Ok(b) if b.is_empty()), "{read:?}");
            assert!(started.elapsed() < Duration::from_secs(10));
            // The connection is still usable.
            assert_eq!(
                client.get("/hello").await.unwrap().outcome,
                Outcome::Status(200)
            );
        })
        .await
        .unwrap();
    });
    assert_eq!(
        gw.metric("ward_gateway_quic_streams_total{result=\"header_timeout\"}"),
        1.0
    );
}

#[test]
fn a_renewed_gateway_certificate_is_served_to_new_quic_connections() {
    let gw = Gateway::start("", |_| {});
    let served = || {
        runtime().block_on(async {
            tokio::time::timeout(Duration::from_secs(10), async {
                let mut client = H3Client::connect(&gw, Some("client")).await.unwrap();
                assert_eq!(
                    client.get("/hello").await.unwrap().outcome,
                    Outcome::Status(200)
                );
                let chain = client
                    .conn
                    .peer_identity()
                    .unwrap()
                    .downcast::<Vec<CertificateDer<'static>>>()
                    .unwrap();
                chain[0].as_ref().to_vec()
            })
            .await
            .unwrap()
        })
    };
    let on_disk = || {
        CertificateDer::pem_file_iter(gw.path("server.pem"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .as_ref()
            .to_vec()
    };
    assert_eq!(served(), on_disk());
    let before = on_disk();
    gw.pki.issue_server();
    assert_ne!(on_disk(), before);
    gw.sighup();
    wait_until("the renewed certificate on new QUIC connections", || {
        served() == on_disk()
    });
}
